"""The transport process: one per connection, driving a SocketConnection.

A transport (WebSocket, LongPoll, or the in-memory one tests use) spawns
:func:`serve` with the connection's state and an ``io`` object, then feeds it frames as
messages: ``(FRAME, opcode, data)`` for a frame from the client, ``(REMOTE_CLOSED,
code)`` when the client went away and ``(IDLE_TIMEOUT,)`` when it was silent too long.
``io.send(opcode, data)`` writes a frame (raising :class:`ConnectionLost` if it cannot)
and ``io.close(code, reason)`` ends the connection.

WebSock terminate reasons, as seed 001 names them: ``'remote'`` (the client closed),
``'timeout'`` (idle), ``'normal'``/``'shutdown'`` stops, and an error when it crashed.

Exit reasons (what the channels see through their monitors): a clean close exits
``normal`` (channels rewrite it to ``('shutdown', 'closed')``); a frame that cannot be
decoded closes the connection with 1011, as Phoenix's transport crash does, and exits with
``('error', 'invalid_message')``; a crash exits with the exception.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

import actors
from actors._gen_server import _SYSTEM

from ._message import InvalidMessageError

log = logging.getLogger("transport")

__all__ = ["FRAME", "IDLE_TIMEOUT", "REMOTE_CLOSED", "ConnectionLost", "TransportIO", "close_code", "serve"]

FRAME = "$frame"
REMOTE_CLOSED = "$remote_closed"
IDLE_TIMEOUT = "$idle_timeout"


class ConnectionLost(Exception):
    """io.send could not write: the client is gone or stopped reading (write timeout)."""

NORMAL_CLOSURE = 1000
INTERNAL_ERROR = 1011
SERVICE_RESTART = 1012


class TransportIO(Protocol):
    """What serve() needs from a connection."""

    def send(self, opcode: str, data: Any) -> None: ...

    def close(self, code: int, reason: str = "") -> None: ...

    def info(self) -> dict[str, Any]:
        """For operators: transport, peer, path, and bytes/frames in and out."""
        ...


def close_code(reason: Any) -> int:
    """The WebSocket close code for a socket stop reason."""
    if reason == ("shutdown", "restart"):
        return SERVICE_RESTART
    if reason.__class__ is str and reason in ("normal", "shutdown"):
        return NORMAL_CLOSURE
    if reason.__class__ is tuple and len(reason) == 2 and reason[0] == "shutdown":
        return NORMAL_CLOSURE
    return INTERNAL_ERROR


def serve(conn: Any, io: TransportIO) -> None:
    """Run the transport process loop until the connection closes."""
    actors.set_label(("socket", conn.handler.__qualname__, conn.socket.id))
    try:
        reason = _loop(conn, io)
    except ConnectionLost:
        conn.terminate("remote")  # nobody left to write to: end quietly
    except BaseException as e:
        # A crash, or an exit signal from outside: the client still gets a close frame.
        io.close(close_code(e.reason) if isinstance(e, actors.Exit) else INTERNAL_ERROR)
        raise
    else:
        if reason is not None:
            actors.exit(reason)


def _loop(conn: Any, io: TransportIO) -> Any:
    """Returns None for a clean end, or the abnormal reason the process must exit with."""
    conn.init()
    receive = actors.receive
    while True:
        msg = receive()
        if msg.__class__ is tuple and msg and msg[0] is FRAME:
            try:
                result = conn.handle_in(msg[2], msg[1])
            except InvalidMessageError as e:
                log.warning("closing socket %s: invalid message from client: %s", actors.self(), e)
                io.close(INTERNAL_ERROR, "invalid message")
                conn.terminate(("error", "invalid_message"))
                return ("error", "invalid_message")
        elif msg.__class__ is tuple and msg and msg[0] is REMOTE_CLOSED:
            conn.terminate("remote")
            return None
        elif msg.__class__ is tuple and len(msg) == 3 and msg[0] is _SYSTEM:
            _system_request(conn, io, msg[1], msg[2])
            continue
        elif msg.__class__ is tuple and msg and msg[0] is IDLE_TIMEOUT:
            io.close(NORMAL_CLOSURE, "timeout")
            conn.terminate("timeout")
            return None
        else:
            result = conn.handle_info(msg)
        if result is None:
            continue
        kind = result[0]
        if kind == "push":
            io.send(*result[1])
        elif kind == "reply":
            io.send(*result[2])
        else:  # ('stop', reason)
            reason = result[1]
            io.close(close_code(reason))
            conn.terminate(reason)
            return None


def snapshot(conn: Any, io: Any) -> dict[str, Any]:
    """What an operator sees of a socket: who, where, which channels, how much traffic."""
    socket = conn.socket
    state = {
        "handler": conn.handler.__qualname__,
        "id": socket.id,
        "serializer": type(socket.serializer).__name__,
        "channels": {topic: entry[0] for topic, entry in conn.channels.items()},
    }
    info = getattr(io, "info", None)
    state.update(info() if info is not None else {})
    return state


def _system_request(conn: Any, io: Any, from_: Any, request: Any) -> None:
    """Answer OTP's sys requests, as every GenServer does, so tools need no private access."""
    if request.__class__ is str and request in ("get_state", "get_status"):
        state = snapshot(conn, io)
        if request == "get_status":
            state = {"pid": actors.self(), "module": "transport.serve", "status": "running", "state": state}
        actors.reply(from_, state)
    else:
        actors.reply(from_, ("error", ("unknown_system_msg", request)))
