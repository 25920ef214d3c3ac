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
from time import monotonic
from typing import Any, Protocol

from gevent import GreenletExit, get_hub

import actors
from actors import _runtime as _rt
from actors._gen_server import _SYSTEM

from ._message import InvalidMessageError

log = logging.getLogger("transport")

__all__ = ["FRAME", "IDLE_TIMEOUT", "REMOTE_CLOSED", "ConnectionLost", "TransportIO", "close_code", "serve", "serve_stream"]

FRAME = "$frame"
REMOTE_CLOSED = "$remote_closed"
IDLE_TIMEOUT = "$idle_timeout"
_IDLE_CHECK = "$idle_check"


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
    """Run the transport process loop, fed frames as messages, until the connection closes."""
    actors.set_label(("socket", conn.handler.__qualname__, conn.socket.id))
    _run(_loop, conn, io)


def serve_stream(conn: Any, io: TransportIO, stream: Any, idle_timeout: float) -> None:
    """Run the connection in the calling greenlet, which becomes its transport process and
    reads the client's frames itself (no reader greenlet, no mailbox hop per frame).

    ``stream.read_nowait()`` gives the next client message ``(opcode, data)``, None once
    the connection has ended, or ``stream.would_block`` when no complete message is
    buffered; ``stream.read_event`` is a gevent watcher that fires when
    more input (or EOF) is there; ``stream.bytes_in`` counts bytes received. The socket
    closes after ``idle_timeout`` seconds without input (Cowboy's ``idle_timeout``).
    Returns once the process has exited; the caller finishes the TCP close.
    """
    proc = _rt._adopt_current("transport.serve")
    actors.set_label(("socket", conn.handler.__qualname__, conn.socket.id))
    try:
        _run(_stream_loop, conn, io, proc, stream, idle_timeout)
        _rt._release_current("normal")
    except actors.Exit as e:
        _rt._release_current(e.reason)
    except GreenletExit:
        _rt._release_current("killed")  # the server is stopping its connections
        raise
    except Exception as e:  # noqa: BLE001 - a crash: logged once, as for any process
        if proc.alive:
            log.error("Process %s (transport.serve) crashed: %r", proc.pid, e, exc_info=e, extra={"pid": str(proc.pid), "reason": e})
        _rt._release_current(e)


def _run(loop: Any, conn: Any, io: TransportIO, *args: Any) -> None:
    try:
        reason = loop(conn, io, *args)
    except ConnectionLost:
        conn.terminate("remote")  # nobody left to write to: end quietly
    except BaseException as e:
        # A crash, or an exit signal from outside: the client still gets a close frame.
        io.close(close_code(e.reason) if isinstance(e, actors.Exit) else INTERNAL_ERROR)
        raise
    else:
        if reason is not None:
            actors.exit(reason)


# What the handlers return to keep the loop going; anything else ends it: None for a
# clean end, or the abnormal reason the process must exit with.
_GO_ON = object()


def _loop(conn: Any, io: TransportIO) -> Any:
    conn.init()
    receive = actors.receive
    while True:
        msg = receive()
        if msg.__class__ is tuple and msg and msg[0] is FRAME:
            end = _on_frame(conn, io, msg[1], msg[2])
        elif msg.__class__ is tuple and msg and msg[0] is REMOTE_CLOSED:
            conn.terminate("remote")
            return None
        elif msg.__class__ is tuple and msg and msg[0] is IDLE_TIMEOUT:
            return _idle(conn, io)
        else:
            end = _on_message(conn, io, msg)
        if end is not _GO_ON:
            return end


def _stream_loop(conn: Any, io: TransportIO, proc: Any, stream: Any, idle_timeout: float) -> Any:
    conn.init()
    mailbox = proc.mailbox
    read = stream.read_nowait
    watcher = stream.read_event
    would_block = stream.would_block
    wait = _rt._wait_watcher
    io_ready = _rt.WATCHER_FIRED
    # The idle timeout is a timer message, as Cowboy's is: one timer per connection, not
    # one per wait. It fires at most once per idle period; input since it was armed only
    # re-arms it for the time left.
    idle_check = (_IDLE_CHECK, proc.pid)
    timer = get_hub().loop.timer(idle_timeout)
    timer.start(actors.send, proc.pid, idle_check)
    seen_bytes = stream.bytes_in
    idle_since = monotonic()
    try:
        while True:
            # Messages and frames alternate: neither source can starve the other.
            if mailbox:
                msg = mailbox.popleft()
                if msg is idle_check:
                    now = monotonic()
                    if stream.bytes_in != seen_bytes:
                        seen_bytes = stream.bytes_in
                        idle_since = now
                    if now - idle_since >= idle_timeout:
                        return _idle(conn, io)
                    timer.close()
                    timer = get_hub().loop.timer(idle_since + idle_timeout - now)
                    timer.start(actors.send, proc.pid, idle_check)
                    continue
                end = _on_message(conn, io, msg)
                if end is not _GO_ON:
                    return end
            frame = read()
            if frame is would_block:
                if mailbox:
                    continue
                if wait(proc, watcher) is io_ready:
                    stream.input_ready()
                if not proc.alive:
                    _rt._raise_death(proc)
                continue
            if frame is None:
                conn.terminate("remote")
                return None
            end = _on_frame(conn, io, frame[0], frame[1])
            if end is not _GO_ON:
                return end
    finally:
        timer.close()


def _idle(conn: Any, io: TransportIO) -> None:
    io.close(NORMAL_CLOSURE, "timeout")
    conn.terminate("timeout")
    return None


def _on_frame(conn: Any, io: TransportIO, opcode: str, data: Any) -> Any:
    try:
        result = conn.handle_in(data, opcode)
    except InvalidMessageError as e:
        log.warning("closing socket %s: invalid message from client: %s", actors.self(), e)
        io.close(INTERNAL_ERROR, "invalid message")
        conn.terminate(("error", "invalid_message"))
        return ("error", "invalid_message")
    return _on_result(conn, io, result)


def _on_message(conn: Any, io: TransportIO, msg: Any) -> Any:
    if msg.__class__ is tuple and len(msg) == 3 and msg[0] is _SYSTEM:
        _system_request(conn, io, msg[1], msg[2])
        return _GO_ON
    return _on_result(conn, io, conn.handle_info(msg))


def _on_result(conn: Any, io: TransportIO, result: Any) -> Any:
    if result is None:
        return _GO_ON
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
    return _GO_ON


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
