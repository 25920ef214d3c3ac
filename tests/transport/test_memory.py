"""transport._memory: free heap memory goes back to the system after a burst ends."""

from __future__ import annotations

import sys

import pytest

import actors
from transport import _memory
from transport._memory import ReclaimPolicy


def test_policy_trims_once_after_a_deep_drop_from_the_peak():
    policy = ReclaimPolicy(min_drop=1000, ratio=0.5)
    assert [policy.observe(n) for n in (10, 5000, 4000, 2600)] == [False] * 4  # not under half yet
    assert policy.observe(2400) is True
    assert policy.observe(2400) is False  # the peak restarted from here
    assert policy.observe(100) is True  # 2,300 fewer than the new peak and under half of it


def test_policy_ignores_small_servers_and_steady_load():
    policy = ReclaimPolicy(min_drop=1000, ratio=0.5)
    assert not any(policy.observe(n) for n in (10, 900, 0, 900, 0))  # drops under min_drop
    assert not any(policy.observe(n) for n in (20_000, 19_000, 21_000, 15_000, 12_000))


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_malloc_trim_returns_freed_heap_to_the_system():
    blocks = [bytes(2048) for _ in range(60_000)]  # ~120 MiB through malloc (over pymalloc's 512 B)
    keep = blocks[-1]
    high = _rss_kib()
    del blocks  # freed to glibc, which keeps it
    assert _memory.malloc_trim() is True
    low = _rss_kib()
    assert high - low > 60 * 1024, (high, low)
    assert keep == bytes(2048)


def test_the_reclaimer_trims_when_processes_are_gone():
    me = actors.self()
    reclaimer = actors.spawn(_memory._reclaimer, 0.02, ReclaimPolicy(min_drop=500, ratio=0.5), lambda: actors.send(me, "trimmed"))
    try:
        crowd = [actors.spawn(actors.receive) for _ in range(1500)]
        assert actors.receive(lambda m: m == "trimmed", timeout=0.2, default=None) is None  # a peak, no drop
        for pid in crowd:
            actors.exit(pid, "kill")
        assert actors.receive(lambda m: m == "trimmed", timeout=5) == "trimmed"
        assert actors.receive(lambda m: m == "trimmed", timeout=0.2, default=None) is None  # once
    finally:
        actors.exit(reclaimer, "kill")
