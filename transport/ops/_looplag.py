"""Event-loop lag: how late the gevent hub runs a timer, sampled while someone watches.

A greenlet sleeps ``interval`` seconds again and again and records how much later than
asked it woke up. Every process of the server shares that loop, so the lag is the time
any socket may wait before its next frame is handled: what a stalled loop (a long
computation, a listing that does not yield) costs everyone. Started by the first user
(:func:`acquire`), stopped with the last (:func:`release`); off, it costs nothing.
"""

from __future__ import annotations

import math
import time
from collections import deque
from typing import Any

import gevent

__all__ = ["LoopLag", "acquire", "percentile", "release"]

INTERVAL = 0.05  # seconds between samples: 20 wake-ups a second
KEEP = 12_000  # samples kept (10 minutes at the default interval)


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values`` by the nearest-rank method; 0.0 if empty."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]


class LoopLag:
    """Samples ``(monotonic time, lag seconds)`` from a sleeping greenlet."""

    def __init__(self, interval: float = INTERVAL, keep: int = KEEP) -> None:
        self.interval = interval
        self.samples: deque[tuple[float, float]] = deque(maxlen=keep)
        self._greenlet: Any = None

    def start(self) -> None:
        """Start sampling (idempotent)."""
        if self._greenlet is None:
            self._greenlet = gevent.spawn(self._run)

    def stop(self) -> None:
        """Stop sampling."""
        g, self._greenlet = self._greenlet, None
        if g is not None:
            g.kill(block=False)

    @property
    def running(self) -> bool:
        """Whether the sampler runs."""
        return self._greenlet is not None

    def _run(self) -> None:
        interval = self.interval
        append = self.samples.append
        while True:
            start = time.monotonic()
            gevent.sleep(interval)
            now = time.monotonic()
            append((now, max(0.0, now - start - interval)))

    def window(self, since: float | None) -> dict[str, float]:
        """``{'p99', 'max', 'samples'}`` (seconds) over the samples taken after ``since``
        (a ``time.monotonic()`` value; None: every sample kept)."""
        lags = [lag for t, lag in list(self.samples) if since is None or t > since]
        return {"p99": percentile(lags, 0.99), "max": max(lags) if lags else 0.0, "samples": len(lags)}


_shared: LoopLag | None = None
_users = 0


def acquire() -> LoopLag:
    """The process-wide sampler, started if this is its first user."""
    global _shared, _users
    if _shared is None:
        _shared = LoopLag()
    _users += 1
    _shared.start()
    return _shared


def release() -> None:
    """One user fewer; the last one stops the sampler."""
    global _users
    _users = max(0, _users - 1)
    if _users == 0 and _shared is not None:
        _shared.stop()
