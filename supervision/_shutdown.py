"""Stopping children the way OTP's supervisor does, and the supervisor reports."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from gevent import get_hub

import actors
from actors import TIMEOUT, Pid
from actors import _runtime as rt

log = logging.getLogger("supervision")


def report(level: int, event: str, supervisor: Any, child_id: Any, pid: Any, reason: Any, action: str) -> None:
    """One structured line per supervisor event, with extras for log processors."""
    log.log(
        level,
        "supervisor %s: %s: child %r (%s) reason %r; %s",
        supervisor,
        event,
        child_id,
        pid,
        reason,
        action,
        extra={
            "supervisor": str(supervisor),
            "event": event,
            "child_id": child_id,
            "child_pid": str(pid),
            "reason": reason,
            "action": action,
        },
    )


def _take_exit(me: Any, pid: Pid) -> Any:
    """Remove a queued ('EXIT', pid, reason) and return it (None if there is none)."""
    for i, m in enumerate(me.mailbox):
        if m.__class__ is tuple and len(m) == 3 and m[0] == "EXIT" and m[1] == pid:
            del me.mailbox[i]
            return m
    return None


def _down(ref: Any, timeout: float | None) -> Any:
    return actors.receive(
        lambda m: m.__class__ is tuple and len(m) == 5 and m[1] is ref and m[0] == "DOWN",
        timeout,
        default=TIMEOUT,
    )


def shutdown_one(pid: Pid, shutdown: Any) -> Any:
    """Stop one child and wait for it: returns its exit reason.

    brutal_kill kills at once; a number of milliseconds sends ``shutdown`` and kills when
    that time is up; ``infinity`` waits as long as it takes. A child that already died
    (its EXIT is queued) is not signalled: its own reason is returned.
    """
    me = rt._current()
    ref = actors.monitor(pid)
    actors.unlink(pid)
    early = _take_exit(me, pid)
    if early is not None:
        _down(ref, None)
        return early[2]
    if shutdown == "brutal_kill":
        actors.exit(pid, "kill")
        return _down(ref, None)[4]
    actors.exit(pid, "shutdown")
    timeout = None if shutdown == "infinity" else shutdown / 1000.0
    msg = _down(ref, timeout)
    if msg is TIMEOUT:
        actors.exit(pid, "kill")
        msg = _down(ref, None)
    return msg[4]


def shutdown_many(children: Iterable[tuple[Pid, Any]]) -> dict[Pid, Any]:
    """Stop many children at once (a dynamic supervisor's way): reasons by pid.

    Every child is signalled first, then all are awaited. Children are grouped by their
    shutdown time, one deadline per group, so waiting for N children costs O(N).
    """
    me = rt._current()
    children = list(children)
    # Unlink everyone first so no new EXIT can arrive, then take the EXITs already queued
    # in one pass: scanning the mailbox per child would be quadratic, since each child's
    # DOWN lands in the mailbox as it dies.
    for pid, _shutdown in children:
        actors.unlink(pid)
    pids = {pid for pid, _shutdown in children}
    reasons: dict[Pid, Any] = {}  # children that had died before we asked them to
    if me.mailbox:
        kept = []
        for m in me.mailbox:
            if m.__class__ is tuple and len(m) == 3 and m[0] == "EXIT" and m[1] in pids:
                reasons.setdefault(m[1], m[2])
            else:
                kept.append(m)
        me.mailbox.clear()
        me.mailbox.extend(kept)
    refs: dict[Any, Pid] = {}
    groups: dict[float, set[Any]] = {}  # shutdown ms -> refs of the children given that time
    for pid, shutdown in children:
        ref = actors.monitor(pid)
        refs[ref] = pid
        if pid in reasons:
            continue
        if shutdown == "brutal_kill":
            actors.exit(pid, "kill")
        else:
            actors.exit(pid, "shutdown")
            if shutdown != "infinity":
                groups.setdefault(shutdown, set()).add(ref)
    start = get_hub().loop.now()
    deadlines = sorted((start + ms / 1000.0, ms) for ms in groups)
    while refs:
        timeout = None
        if deadlines:
            timeout = max(0.0, deadlines[0][0] - get_hub().loop.now())
        msg = actors.receive(
            lambda m: m.__class__ is tuple and len(m) == 5 and m[0] == "DOWN" and m[1] in refs,
            timeout,
            default=TIMEOUT,
        )
        if msg is TIMEOUT:
            _due, ms = deadlines.pop(0)
            for ref in groups.pop(ms):
                late = refs.get(ref)
                if late is not None:  # still alive when its group's time ran out
                    actors.exit(late, "kill")
            continue
        ref = msg[1]
        pid = refs.pop(ref)
        reasons.setdefault(pid, msg[4])
    return reasons


def is_clean_exit(reason: Any) -> bool:
    """normal, shutdown or ('shutdown', term): a transient child is not restarted."""
    if reason.__class__ is str:
        return reason in ("normal", "shutdown")
    return reason.__class__ is tuple and len(reason) == 2 and reason[0] == "shutdown"


def expected_shutdown_reason(reason: Any, shutdown: Any) -> bool:
    """Whether a child stopped by its supervisor ended as it should have."""
    if shutdown == "brutal_kill":
        return reason == "killed" if reason.__class__ is str else False
    return reason.__class__ is str and reason == "shutdown"
