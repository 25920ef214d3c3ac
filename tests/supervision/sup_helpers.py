"""Test workers that report their life to the test process."""

from __future__ import annotations

from typing import Any

import actors
from actors import Pid


def _worker_loop(tag: Any, observer: Pid, trap: bool, starter: Pid, ack: Any) -> None:
    if trap:
        actors.trap_exit(True)
    actors.send(starter, ack)
    actors.send(observer, ("started", tag, actors.self()))
    while True:
        msg = actors.receive()
        if msg == "stop":
            return
        if isinstance(msg, tuple) and msg[0] == "crash":
            raise RuntimeError(f"{tag} told to crash")
        if isinstance(msg, tuple) and msg[0] == "exit":
            actors.exit(msg[1])
        if isinstance(msg, tuple) and msg[0] == "EXIT" and trap:
            actors.send(observer, ("terminating", tag, msg[2]))
            actors.exit(msg[2])


def start_worker(tag: Any, observer: Pid, trap: bool = False) -> Pid:
    """A start function: a linked worker that announces ('started', tag, pid).

    Synchronous like OTP's proc_lib starts: it returns once the worker has set its
    trap_exit flag, so a shutdown right after the start cannot catch it unprepared.
    """
    ack = actors.make_ref()
    pid = actors.spawn_link(_worker_loop, tag, observer, trap, actors.self(), ack)
    actors.receive(lambda m: m is ack, 5)
    return pid


def worker_spec(tag: Any, observer: Pid, **fields: Any) -> dict[str, Any]:
    """A child spec for ``start_worker``."""
    return {"id": tag, "start": (start_worker, (tag, observer, fields.pop("trap", False))), **fields}


def expect_started(tag: Any, timeout: float = 2.0) -> Pid:
    """Wait for a worker's start announcement."""
    msg = actors.receive(lambda m: isinstance(m, tuple) and m[:2] == ("started", tag), timeout)
    return msg[2]


def started_order(count: int, timeout: float = 2.0) -> list[Any]:
    """The tags of the next ``count`` start announcements, in arrival order."""
    tags = []
    for _ in range(count):
        msg = actors.receive(lambda m: isinstance(m, tuple) and m[0] == "started", timeout)
        tags.append(msg[1])
    return tags


def assert_no_more_starts(timeout: float = 0.05) -> None:
    """No further start announcement arrives (restarts happen synchronously, so a short
    wait after the supervisor has answered a call is enough)."""
    msg = actors.receive(lambda m: isinstance(m, tuple) and m[0] == "started", timeout, default=None)
    assert msg is None, f"unexpected start: {msg}"


def down(ref: Any, timeout: float = 5.0) -> Any:
    """The reason of the DOWN for ``ref``."""
    msg = actors.receive(lambda m: isinstance(m, tuple) and len(m) == 5 and m[0] == "DOWN" and m[1] is ref, timeout)
    return msg[4]
