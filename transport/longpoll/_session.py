"""The LongPoll session: one process per client session, Phoenix's ``LongPoll.Server``.

It is the socket's transport process, as a WebSocket connection's process is: it owns the
:class:`~transport.SocketConnection`, its channels monitor it, pushes and fastlane
broadcasts arrive in its mailbox, ``disconnect`` to the socket id and the drainer stop it.
It runs under the endpoint's LongPoll supervisor (temporary: a session that ends is gone;
its client starts a new one).

Client side (plain functions the HTTP handler calls; the handler's request is a process).
A request names the session by pid when the session lives in this endpoint instance,
otherwise by its private PubSub topic (so a poll that reached another instance sharing the
PubSub and the secret still reaches it); answers go back the same way, tagged with the
request's ``ref``:

``(SUBSCRIBE, reply_to, ref)``      -> ``(SUBSCRIBED, ref)``: the session is alive
``(FLUSH, reply_to, ref)``          -> ``(MESSAGES, [text], ref)`` at once when anything is
                                       buffered; else the request waits and gets
                                       ``(NOW_AVAILABLE, ref)`` when something is, and flushes
                                       again. A newer flush supersedes a waiting one, which
                                       gets ``(SUPERSEDED, ref)`` and answers 204 at once.
``(DISPATCH, reply_to, frames, ref)`` -> ``(DISPATCHED, status, ref)``: 200, or 400 when a
                                       frame could not be decoded (the session then closes,
                                       as a WebSocket does on a bad frame)
``(FAILED, ref)``                   answers a flush after the buffer overflowed (500)

Policies (where we differ from Phoenix, on purpose):

* The buffer is bounded (``max_buffer_messages``, ``max_buffer_bytes``). A push that
  would overflow it drops the buffer, logs a warning, and marks the session failed: its
  next poll is answered ``{"status": 500}``, on which phoenix.js closes the transport and
  reconnects (a new session, its channels rejoined), and the session stops with
  ``('shutdown', 'buffer_full')``. A client that never polls again is stopped by the
  inactivity rule anyway.
* A binary frame (a V2 binary push, reply or broadcast) cannot travel in the JSON list of
  messages (Phoenix puts the raw bytes there, which no client can read): it is dropped
  and a warning is logged once per session.
* The session stops when no poll arrived for 1.5 x ``window_ms`` (``('shutdown',
  'inactive')``, as Phoenix), checked exactly at that deadline.
"""

from __future__ import annotations

import logging
from time import monotonic
from typing import Any

import actors
from actors._gen_server import _SYSTEM

from .. import pubsub
from .._message import InvalidMessageError
from .._transport import _system_request
from ._core import MessageBuffer

log = logging.getLogger("transport.longpoll")

__all__ = [
    "DISPATCH",
    "DISPATCHED",
    "FAILED",
    "FLUSH",
    "MESSAGES",
    "NOW_AVAILABLE",
    "SUBSCRIBE",
    "SUBSCRIBED",
    "SUPERSEDED",
    "run_session",
]

SUBSCRIBE = "lp:subscribe"
SUBSCRIBED = "lp:subscribed"
FLUSH = "lp:flush"
MESSAGES = "lp:messages"
NOW_AVAILABLE = "lp:now_available"
SUPERSEDED = "lp:superseded"
DISPATCH = "lp:dispatch"
DISPATCHED = "lp:dispatched"
FAILED = "lp:failed"
_CHECK_IDLE = "lp:check_idle"

_CLIENT_TAGS = frozenset((SUBSCRIBE, FLUSH, DISPATCH))


class _SessionIO:
    """What operators see of a session (the debug shell's ``sockets()``)."""

    __slots__ = ("peer", "path", "buffer", "bytes_in", "bytes_out", "frames_in", "priv_topic")

    def __init__(self, peer: str | None, path: str | None, buffer: MessageBuffer, priv_topic: str) -> None:
        self.peer = peer
        self.path = path
        self.buffer = buffer
        self.priv_topic = priv_topic
        self.bytes_in = 0
        self.bytes_out = 0
        self.frames_in = 0

    def info(self) -> dict[str, Any]:
        stats = self.buffer.statistics()
        return {
            "transport": "longpoll",
            "peer": self.peer,
            "path": self.path,
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "frames_in": self.frames_in,
            "frames_out": stats["total_out"],
            "buffered": stats["messages"],
            "buffered_bytes": stats["bytes"],
        }


class _Session:
    __slots__ = (
        "conn", "pubsub_server", "priv_topic", "idle_s", "buffer", "io", "waiting", "notified",
        "last_poll", "failed", "warned_binary", "me",
    )  # fmt: skip

    def __init__(self, conn: Any, priv_topic: str, opts: dict, peer: str | None, path: str | None) -> None:
        self.conn = conn
        self.pubsub_server = conn.socket.pubsub_server
        self.priv_topic = priv_topic
        self.idle_s = opts["window_ms"] * 1.5 / 1000.0
        self.buffer = MessageBuffer(opts["max_buffer_messages"], opts["max_buffer_bytes"])
        self.io = _SessionIO(peer, path, self.buffer, priv_topic)
        self.waiting: tuple[Any, Any] | None = None  # (reply_to, ref) of a poll waiting
        self.notified = False
        self.last_poll = monotonic()
        self.failed = False
        self.warned_binary = False
        self.me = actors.self()

    # -- answering requests -----------------------------------------------------------

    def answer(self, reply_to: Any, msg: tuple) -> None:
        if reply_to.__class__ is str:
            pubsub.broadcast_from(self.pubsub_server, self.me, reply_to, msg)
        else:
            actors.send(reply_to, msg)

    def on_client(self, msg: tuple) -> Any:
        tag = msg[0]
        if tag == FLUSH and len(msg) == 3:
            return self.flush(msg[1], msg[2])
        if tag == DISPATCH and len(msg) == 4:
            return self.dispatch(msg[1], msg[2], msg[3])
        if tag == SUBSCRIBE and len(msg) == 3:
            self.answer(msg[1], (SUBSCRIBED, msg[2]))
        return None

    def flush(self, reply_to: Any, ref: Any) -> Any:
        self.last_poll = monotonic()
        if self.failed:
            self.answer(reply_to, (FAILED, ref))
            self.conn.terminate(("shutdown", "buffer_full"))
            return ("shutdown", "buffer_full")
        if self.buffer:
            self.io.bytes_out += self.buffer.size
            self.answer(reply_to, (MESSAGES, self.buffer.take(), ref))
            self.waiting = None
            return None
        old = self.waiting
        if old is not None and old[1] != ref:
            self.answer(old[0], (SUPERSEDED, old[1]))
        self.waiting = (reply_to, ref)
        self.notified = False
        return None

    def dispatch(self, reply_to: Any, frames: list, ref: Any) -> Any:
        conn = self.conn
        io = self.io
        for opcode, data in frames:
            if opcode == "binary" and data.__class__ is str:
                # A request on another node sent the frames over the PubSub: the Redis wire
                # (Erlang terms) hands back a binary holding valid UTF-8 as str.
                data = data.encode("utf-8")
            io.frames_in += 1
            io.bytes_in += len(data)
            try:
                result = conn.handle_in(data, opcode)
            except InvalidMessageError as e:
                log.warning("closing LongPoll session %s: invalid message from client: %s", self.me, e)
                self.answer(reply_to, (DISPATCHED, 400, ref))
                conn.terminate(("error", "invalid_message"))
                return ("error", "invalid_message")
            end = self.on_result(result)
            if end is not None:
                self.answer(reply_to, (DISPATCHED, 200, ref))
                return end
        self.answer(reply_to, (DISPATCHED, 200, ref))
        return None

    # -- what the socket layer gives the client ---------------------------------------

    def on_result(self, result: Any) -> Any:
        if result is None:
            return None
        kind = result[0]
        if kind == "push":
            self.buffer_frame(result[1])
        elif kind == "reply":
            self.buffer_frame(result[2])
        else:  # ('stop', reason)
            reason = result[1]
            self.conn.terminate(reason)
            return reason
        return None

    def buffer_frame(self, frame: tuple) -> None:
        opcode, data = frame
        if opcode != "text":
            if not self.warned_binary:
                self.warned_binary = True
                log.warning(
                    "LongPoll session %s dropped a binary frame: LongPoll carries text frames only "
                    "(further binary frames of this session are dropped silently)",
                    self.me,
                )
            return
        if self.failed:
            return
        if not self.buffer.append(data):
            self.failed = True
            log.warning(
                "LongPoll session %s: buffer full (%d messages, %d bytes; bounds %d, %d): "
                "the client's next poll gets status 500 and the session closes",
                self.me, len(self.buffer), self.buffer.size, self.buffer.max_messages, self.buffer.max_bytes,
            )  # fmt: skip
            self.buffer.clear()
        if self.waiting is not None and not self.notified:
            self.notified = True
            self.answer(self.waiting[0], (NOW_AVAILABLE, self.waiting[1]))


def run_session(conn: Any, priv_topic: str, opts: dict, peer: str | None = None, path: str | None = None) -> None:
    """The session process's body: run until inactive, disconnected, drained or failed."""
    actors.set_label(("socket", conn.handler.__qualname__, conn.socket.id))
    conn.init()
    session = _Session(conn, priv_topic, opts, peer, path)
    pubsub.subscribe(session.pubsub_server, priv_topic)
    me = session.me
    timer = actors.send_after(me, _CHECK_IDLE, session.idle_s * 1000)
    receive = actors.receive
    reason: Any = None
    try:
        while reason is None:
            msg = receive()
            cls = msg.__class__
            if cls is tuple and msg and msg[0].__class__ is str and msg[0] in _CLIENT_TAGS:
                reason = session.on_client(msg)
            elif cls is str and msg == _CHECK_IDLE:
                left = session.last_poll + session.idle_s - monotonic()
                if left <= 0:
                    conn.terminate(("shutdown", "inactive"))
                    reason = ("shutdown", "inactive")
                else:
                    timer = actors.send_after(me, _CHECK_IDLE, left * 1000)
            elif cls is tuple and len(msg) == 3 and msg[0] is _SYSTEM:
                _system_request(conn, session.io, msg[1], msg[2])
            else:
                reason = session.on_result(conn.handle_info(msg))
    finally:
        actors.cancel_timer(timer)
        if session.waiting is not None:
            # A poll waiting on a session that ends is answered now (204), not at its window.
            session.answer(session.waiting[0], (SUPERSEDED, session.waiting[1]))
    if reason != "normal":
        actors.exit(reason)
