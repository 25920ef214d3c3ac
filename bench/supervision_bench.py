#!/usr/bin/env python3
"""Benchmark the partitioned channel supervisor pool against bare processes.

Usage::

    python bench/supervision_bench.py            # 100k children, 3 runs (~1-2 min)
    python bench/supervision_bench.py --quick    # 20k children, 3 runs

``pool``: start N temporary children (each idle in ``receive``) under a
``PartitionSupervisor`` (partitions = CPU cores) with ``start_child_in_partition`` keyed
by a counter — the path Phoenix takes for every channel join — then shut the whole tree
down. ``bare``: spawn N processes idle in ``receive`` with ``actors.spawn`` and kill them.
Each (implementation, run) runs in a fresh child interpreter. Targets: start time and
KiB per child <= 1.5x the bare processes'. A benchmark, not a test: exit 0 unless a child
fails.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from time import perf_counter

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE), HERE]

from _harness import emit, print_report, rss_bytes, run_child, settle  # noqa: E402

IMPLS = ("pool", "bare")
# The pool is measured two ways: OTP's start_child (a call per child) and spawn_child
# (Task.Supervisor style, no round trip). The bare side is the same in both.
CHILD_TIMEOUT = 240.0


def _idle() -> None:
    import actors

    while True:
        actors.receive()


def _start_idle_linked() -> object:
    import actors

    return actors.spawn_link(_idle)


def measure(impl: str, n: int, how: str) -> dict:
    """Start n idle children (pool) or processes (bare); time, RSS per child, teardown."""
    import gevent

    import actors
    import supervision

    actors.trap_exit(True)
    spec = supervision.child_spec({"id": "child", "start": _start_idle_linked, "restart": "temporary"})
    if impl == "pool":
        pool = supervision.PartitionSupervisor.start_link("bench.pool")
        for i in range(1000):  # warm-up: first-use allocations are not the batch's
            supervision.start_child_in_partition("bench.pool", i, spec)
        for row in supervision.which_children(pool):
            for child in supervision.which_children(row.pid):
                supervision.terminate_child(row.pid, child.pid)
    else:
        warm = [actors.spawn(_idle) for _ in range(1000)]
        gevent.sleep(0)
        for pid in warm:
            actors.exit(pid, "kill")
        gevent.sleep(0)
    settle()
    baseline_procs = len(actors.processes())
    rss0 = rss_bytes()
    t0 = perf_counter()
    if impl == "pool" and how == "start_child":
        start = supervision.start_child_in_partition
        pids = [start("bench.pool", i, spec) for i in range(n)]
    elif impl == "pool":
        spawn_in = supervision.spawn_child_in_partition
        pids = [spawn_in("bench.pool", i, _idle) for i in range(n)]
    else:
        spawn = actors.spawn
        pids = [spawn(_idle) for _ in range(n)]
    gevent.sleep(0)  # every child has run to its receive
    t_start = perf_counter() - t0
    settle()
    rss1 = rss_bytes()
    assert len(actors.processes()) == baseline_procs + n, "not every child is alive"
    t1 = perf_counter()
    if impl == "pool":
        actors.stop(pool, "shutdown")
    else:
        for pid in pids:
            actors.exit(pid, "kill")
    gevent.sleep(0)
    t_stop = perf_counter() - t1
    del pids
    left = len(actors.processes()) - 1  # the benchmark's own adopted process
    if left:
        raise RuntimeError(f"{left} processes left after teardown")
    return {
        "start_s": t_start,
        "us_per_child": t_start / n * 1e6,
        "kib_per_child": (rss1 - rss0) / 1024 / n,
        "stop_s": t_stop,
    }


ROWS = [
    ("start_child", "start_s", "start_child: {n:,} children", "s", "low", ("<=", 1.5)),
    ("start_child", "us_per_child", "start_child: per child", "us", "low", None),
    ("start_child", "kib_per_child", "start_child: RSS per child", "KiB", "low", ("<=", 1.5)),
    ("start_child", "stop_s", "start_child: shut the tree down / kill all", "s", "low", None),
    ("spawn_child", "start_s", "spawn_child: {n:,} children", "s", "low", ("<=", 1.5)),
    ("spawn_child", "us_per_child", "spawn_child: per child", "us", "low", None),
    ("spawn_child", "kib_per_child", "spawn_child: RSS per child", "KiB", "low", ("<=", 1.5)),
    ("spawn_child", "stop_s", "spawn_child: shut the tree down / kill all", "s", "low", None),
]
SCENARIOS = ("start_child", "spawn_child")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="20k children")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("-n", type=int, help="children per run (default 100,000)")
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        scenario, impl, params = args.child
        emit(measure(impl, json.loads(params)["n"], scenario))
        return 0
    params = {"n": args.n or (20_000 if args.quick else 100_000)}
    runs = max(1, args.runs)
    print(f"supervision benchmark: {params['n']:,} children, {runs} runs, {os.cpu_count()} CPUs (partitions)")
    results: dict = {s: {i: [] for i in IMPLS} for s in SCENARIOS}
    failed = False
    for r in range(runs):
        for scenario in SCENARIOS:
            for impl in IMPLS if r % 2 == 0 else IMPLS[::-1]:
                res = run_child(__file__, scenario, impl, params, CHILD_TIMEOUT)
                failed |= res is None
                results[scenario][impl].append(res)
                print(f"  run {r + 1} {scenario:<11} {impl:<5} {res}", flush=True)
    verdicts = print_report(results, ROWS, [], params, runs, IMPLS)
    met = sum(ok for _, ok in verdicts)
    print(f"\ntargets met: {met}/{len(verdicts)}" + "".join(f"\n  MISS: {line}" for line, ok in verdicts if not ok))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
