"""Give memory back to the system after a burst of connections ends.

glibc's allocator keeps freed memory in its arenas: after 15,000 connections were opened
and closed, ``phx-serve`` held 223 MiB where it started at 34, although only its nine
start-up processes were alive; ``malloc_trim(0)`` brought it to 75 MiB (the rest is
CPython's own small-object arenas and caches that stay mapped while any object in them
lives). Nothing of ours was leaking (no process, name, subscription or cyclic garbage left).

The reclaimer is one small process that looks every ``interval`` seconds at how many
processes are alive and trims once the count has fallen well below the peak since the
last trim: at least ``min_drop`` fewer processes and under ``ratio`` of the peak. A steady
server never trims; a server whose clients all left trims once. ``phx-serve`` and
:func:`transport.http.main` start it; elsewhere, start it with
:func:`start_memory_reclaimer`. Without glibc (musl, macOS) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from collections.abc import Callable
from typing import Any

import actors

__all__ = ["ReclaimPolicy", "malloc_trim", "start_memory_reclaimer"]

log = logging.getLogger("transport.memory")


def _load_trim() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


_trim = _load_trim()


def malloc_trim() -> bool:
    """Return free heap memory to the system now; False where the C library cannot."""
    if _trim is None:
        return False
    _trim(0)
    return True


class ReclaimPolicy:
    """When to trim: the pure part of the reclaimer, fed one process count at a time."""

    def __init__(self, min_drop: int = 2_000, ratio: float = 0.5) -> None:
        self.min_drop = min_drop
        self.ratio = ratio
        self.peak = 0

    def observe(self, alive: int) -> bool:
        """Record ``alive`` processes; True when it is time to trim (the peak then resets)."""
        if alive > self.peak:
            self.peak = alive
            return False
        if self.peak - alive >= self.min_drop and alive < self.peak * self.ratio:
            self.peak = alive
            return True
        return False


def _reclaimer(interval: float, policy: ReclaimPolicy, trim: Callable[[], Any]) -> None:
    actors.set_label(("memory_reclaimer",))
    while True:
        actors.receive(lambda m: False, timeout=interval, default=None)
        alive = len(actors.processes())
        if policy.observe(alive):
            if trim():
                log.debug("returned free heap memory to the system (%d processes alive)", alive)


def start_memory_reclaimer(interval: float = 5.0, min_drop: int = 2_000, ratio: float = 0.5) -> actors.Pid:
    """Spawn the reclaimer (see the module docs); its pid."""
    return actors.spawn(_reclaimer, interval, ReclaimPolicy(min_drop, ratio), malloc_trim)
