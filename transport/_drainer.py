"""The socket drainer: on shutdown, close every socket gracefully, in batches.

It sits in the endpoint's tree after the channel pools, so it stops before them: its
``terminate`` sends ``phx_drain`` to every channel process, ``batch_size`` at a time,
``batch_interval`` ms apart. Each channel tells its transport to close, which a WebSocket
does with code 1012 (service restart), so clients reconnect elsewhere instead of all at
once. A socket with no channel joined is closed with 1012 as well, after the last round
(Phoenix leaves those to the listener's shutdown, and their clients see 1006).

Options and defaults (Phoenix's): ``batch_size=10_000``, ``batch_interval=2_000`` ms,
``shutdown=30_000`` ms (the most the whole drain may take), ``log='info'``.
"""

from __future__ import annotations

import logging
from typing import Any

import gevent

import actors
from actors import GenServer
from supervision import ChildSpec, which_children

from . import _telemetry
from ._message import Broadcast
from ._transport import stream_transports

log = logging.getLogger("transport.socket")

__all__ = ["Drainer"]

DEFAULTS = {"batch_size": 10_000, "batch_interval": 2_000, "shutdown": 30_000, "log": "info"}


class Drainer(GenServer):
    """Drains an endpoint's sockets when the tree shuts down."""

    @classmethod
    def child_spec(cls, arg: Any = None) -> ChildSpec:
        """``arg``: ``(endpoint, handler, options)``; shutdown is the drain's time limit."""
        endpoint, handler, options = arg
        opts = {**DEFAULTS, **(options or {})}
        unknown = set(opts) - set(DEFAULTS)
        if unknown:
            raise TypeError(f"drainer: unknown option(s) {sorted(unknown)}; known: {sorted(DEFAULTS)}")
        for key in ("batch_size", "batch_interval", "shutdown"):
            if isinstance(opts[key], bool) or not isinstance(opts[key], int) or opts[key] < (1 if key == "batch_size" else 0):
                raise ValueError(f"drainer: {key} must be a non-negative int (batch_size >= 1); got {opts[key]!r}")
        return ChildSpec(
            id=("drainer", endpoint.pool_name(handler)),
            start=(cls.start_link, ((endpoint, handler, opts),)),
            shutdown=opts["shutdown"],
        )

    def init(self, arg: Any) -> Any:
        actors.trap_exit(True)  # so the supervisor's shutdown reaches terminate
        return ("ok", arg)

    def terminate(self, reason: Any, state: Any) -> None:
        endpoint, handler, opts = state
        pool = endpoint.pool_name(handler)
        channels = _channel_pids(pool)
        sockets = stream_transports(handler, endpoint)
        total = len(channels)
        size, interval = opts["batch_size"], opts["batch_interval"]
        rounds = total // size + 1
        level = logging.INFO if opts["log"] else None
        if (total or sockets) and level is not None:
            log.log(level, "Shutting down %d sockets (%d channels) in %d rounds of %dms", len(sockets), total, rounds, interval)
        meta = {"endpoint": endpoint, "socket": handler, "interval": interval, "log": opts["log"]}
        _telemetry.execute(("phoenix", "socket_drain"), {"count": total, "total": total, "index": 0, "rounds": rounds}, meta)
        drain = Broadcast(topic="phoenix", event="phx_drain", payload={})
        for index in range(rounds):
            batch = channels[index * size : (index + 1) * size]
            # A helper sends the batch, so a huge batch never holds up this process's timer.
            actors.spawn(_send_all, batch, drain)
            if index + 1 < rounds:
                gevent.sleep(interval / 1000.0)  # pacing between rounds, as Phoenix's drainer
                _telemetry.execute(
                    ("phoenix", "socket_drain"),
                    {"count": len(batch), "total": total, "index": index + 1, "rounds": rounds},
                    meta,
                )
        # Sockets with no channel have nothing to drain them; Phoenix leaves them to the
        # listener's shutdown (the client sees 1006). They are told to restart too (1012),
        # and the ones whose channels were drained above are already closing.
        actors.spawn(_send_all, sockets, "socket_drain")


def _send_all(pids: list, message: Any) -> None:
    for pid in pids:
        actors.send(pid, message)


def _channel_pids(pool: str) -> list:
    top = actors.whereis(pool)
    if top is None:
        return []
    pids: list[actors.Pid] = []
    for row in which_children(top):
        if isinstance(row.pid, actors.Pid):
            pids.extend(child.pid for child in which_children(row.pid) if isinstance(child.pid, actors.Pid))
    return pids
