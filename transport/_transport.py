"""The transport process: one per connection, driving a SocketConnection.

Two ways to run one. A stream transport (the WebSocket) calls :func:`serve_stream` in
the connection's own greenlet, which becomes the process and reads frames from its socket
between mailbox messages. A message-fed transport (the in-memory one tests use) spawns
:func:`serve` and feeds it frames as messages: ``(FRAME, opcode, data)`` for a frame from
the client, ``(REMOTE_CLOSED, code)`` when the client went away and ``(IDLE_TIMEOUT,)``
when it was silent too long. Either way ``io.send(opcode, data)`` writes a frame (raising
:class:`ConnectionLost` if it cannot) and ``io.close(code, reason)`` ends the connection;
processes give a transport its pushes with :func:`push`.

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

__all__ = [
    "FRAME",
    "IDLE_TIMEOUT",
    "OUTBOUND_POLICIES",
    "REMOTE_CLOSED",
    "ConnectionLost",
    "OutboundQueue",
    "TransportIO",
    "close_code",
    "outbound_statistics",
    "push",
    "serve",
    "serve_stream",
    "stream_transports",
]

FRAME = "$frame"
REMOTE_CLOSED = "$remote_closed"
IDLE_TIMEOUT = "$idle_timeout"
_IDLE_CHECK = "$idle_check"
_WRITE_REST = "$write_rest"
_OVERFLOW = "$outbound_overflow"
# Stands in the mailbox for a frame drop_oldest dropped.
_DROPPED = ("$dropped",)
#: Close code for a client that stopped reading (1013, Try Again Later: phoenix.js
#: reconnects, and a client that catches up is served again).
SLOW_CONSUMER_CLOSE = 1013
SLOW_CONSUMER = ("shutdown", "slow_consumer")
OUTBOUND_POLICIES = ("close", "drop_oldest")
# A transport handling a run of mailbox messages tries its socket after this many.
_MESSAGES_PER_READ = 16

# Stream transports waiting idle (mailbox empty, between frames), by process record, with
# their io: a push to one of them is written by the pushing process at once when the
# socket takes it without waiting, instead of waking the transport to write it.
_idle_transports: dict[Any, Any] = {}
# Every stream transport's OutboundQueue, by process record.
_outbound: dict[Any, "OutboundQueue"] = {}


def push(transport_pid: Any, msg: tuple) -> None:
    """Give a transport ``('socket_push', opcode, data)``, as ``actors.send`` does.

    When the transport is idle, the frame is written from the caller if the socket accepts
    it without blocking: no wake-up and no greenlet switch per frame (for a broadcast,
    one per subscriber). The wire sees the same frames in the same order: a transport
    with anything queued, any tracing under way, a busy socket and a payload that is not
    a frame all go through the mailbox, and the rest of a partly written frame is the
    transport's next write.
    """
    proc = transport_pid._proc
    if proc is None:
        return  # a dead transport: dropped, as any send to a dead pid
    # While anything is traced, every push is a message, so tracers see sends and receives.
    if not _rt._tracing:
        io = _idle_transports.get(proc)
        if io is not None and not proc.mailbox:
            try:
                done = io.send_nowait(msg[1], msg[2])
            except (TypeError, ValueError):
                done = False  # not a frame: the transport fails on it, as with any send
            if done is True:
                return
            if done is not False:
                queue = _outbound.get(proc)
                if queue is not None:
                    queue.add(len(done))
                actors.send(transport_pid, (_WRITE_REST, done))
                return
    queue = _outbound.get(proc)
    if queue is not None and not queue.admit(proc, _push_size(msg)):
        return
    actors.send(transport_pid, msg)


def outbound_statistics(pid: Any) -> dict[str, int] | None:
    """The outbound queue of a stream transport (:meth:`OutboundQueue.statistics`), read
    without asking the process (which may be blocked writing to a client that stopped
    reading); None for any other process."""
    proc = getattr(pid, "_proc", None)
    queue = _outbound.get(proc) if proc is not None else None
    return queue.statistics() if queue is not None else None


def stream_transports(handler: Any, endpoint: Any = None) -> list:
    """The pids of the live stream transports (WebSocket connections) of a socket handler,
    of one endpoint if given: what the drainer closes and operators count."""
    return [
        proc.pid
        for proc, queue in list(_outbound.items())
        if queue.conn is not None
        and queue.conn.handler is handler
        and (endpoint is None or queue.conn.socket.endpoint is endpoint)
    ]


def _push_size(msg: tuple) -> int:
    data = msg[2] if len(msg) == 3 else None
    return len(data) if data.__class__ in (bytes, str, bytearray, memoryview) else 0


class OutboundQueue:
    """The frames queued for one stream transport, counted in bytes, with its bound.

    ``max_bytes`` bounds what may wait in the transport's mailbox for its socket (the
    frames a slow client has not taken yet); a fastlane frame shared by many sockets is
    counted once per socket and never copied. Past the bound, ``policy`` decides:
    ``"close"`` ends the connection (close code 1013, exit ``('shutdown',
    'slow_consumer')``, one warning), ``"drop_oldest"`` drops the oldest queued frames to
    make room and counts them in ``dropped``. :meth:`statistics` gives the figures.
    """

    __slots__ = ("max_bytes", "policy", "bytes", "frames", "high_water", "dropped", "overflowed", "io", "conn", "_scan")

    def __init__(self, max_bytes: int | None, policy: str, io: Any, conn: Any = None) -> None:
        self.max_bytes = max_bytes
        self.policy = policy
        self.io = io
        self.conn = conn
        self.bytes = 0
        self.frames = 0
        self.high_water = 0
        self.dropped = 0
        self.overflowed = False
        self._scan = 0  # leading mailbox entries drop_oldest already looked at

    def statistics(self) -> dict[str, int]:
        """Queued bytes and frames now, the most bytes ever queued, frames dropped."""
        return {"bytes": self.bytes, "frames": self.frames, "high_water": self.high_water, "dropped": self.dropped, "max_bytes": self.max_bytes}

    def add(self, size: int) -> None:
        self.bytes += size
        self.frames += 1
        if self.bytes > self.high_water:
            self.high_water = self.bytes

    def taken(self, size: int) -> None:
        """The transport took a queued frame of ``size`` bytes from its mailbox."""
        self.bytes = max(0, self.bytes - size)
        self.frames = max(0, self.frames - 1)

    def admit(self, proc: Any, size: int) -> bool:
        """Count a frame about to be queued; False when the policy says not to queue it."""
        if self.overflowed:
            return False
        if self.max_bytes is None or self.bytes + size <= self.max_bytes:
            self.add(size)
            return True
        if self.policy == "drop_oldest":
            self._drop_oldest(proc, self.bytes + size - self.max_bytes)
            if self.bytes + size <= self.max_bytes:
                self.add(size)
                return True
            self.dropped += 1  # larger than the whole bound: the new frame goes
            return False
        self._overflow(proc)
        return False

    def _drop_oldest(self, proc: Any, needed: int) -> None:
        # Entries are replaced in place (never removed) so a selective receive under way in
        # the transport keeps its place in the mailbox.
        mailbox = proc.mailbox
        i = self._scan
        while needed > 0 and i < len(mailbox):
            msg = mailbox[i]
            if msg.__class__ is tuple and len(msg) == 3 and msg[0] == "socket_push":
                size = _push_size(msg)
                mailbox[i] = _DROPPED
                self.bytes = max(0, self.bytes - size)
                self.frames = max(0, self.frames - 1)
                self.dropped += 1
                needed -= size
            i += 1
        self._scan = i

    def _overflow(self, proc: Any) -> None:
        self.overflowed = True
        log.warning(
            "closing socket %s: its client is not reading (%d bytes queued, max_outbound_bytes=%d)",
            proc.pid,
            self.bytes,
            self.max_bytes,
        )
        actors.send(proc.pid, (_OVERFLOW,))
        abort = getattr(self.io, "abort", None)
        if abort is not None:
            abort("slow consumer")  # a write blocked on the full socket fails now


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


def serve_stream(
    conn: Any,
    io: TransportIO,
    stream: Any,
    idle_timeout: float,
    max_outbound_bytes: int | None = None,
    outbound_policy: str = "close",
) -> None:
    """Run the connection in the calling greenlet, which becomes its transport process and
    reads the client's frames itself (no reader greenlet, no mailbox hop per frame).

    ``stream.read_nowait()`` gives the next client message ``(opcode, data)``, None once
    the connection has ended, or ``stream.would_block`` when no complete message is
    buffered; ``stream.read_event`` is a gevent watcher that fires when
    more input (or EOF) is there, after which ``stream.input_ready()`` is called;
    ``stream.input_at`` is the ``time.monotonic()`` of the last bytes received. The socket
    closes after ``idle_timeout`` seconds without input (Cowboy's ``idle_timeout``).
    ``max_outbound_bytes`` and ``outbound_policy`` bound the frames queued for the socket
    (:class:`OutboundQueue`; None: counted, not bounded). Returns once the process has exited; the
    caller finishes the TCP close.
    """
    proc = _rt._adopt_current("transport.serve")
    actors.set_label(("socket", conn.handler.__qualname__, conn.socket.id))
    queue = _outbound[proc] = OutboundQueue(max_outbound_bytes, outbound_policy, io, conn)
    try:
        _run(_stream_loop, conn, io, proc, stream, idle_timeout, queue)
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
    finally:
        del _outbound[proc]


def _run(loop: Any, conn: Any, io: TransportIO, *args: Any) -> None:
    try:
        reason = loop(conn, io, *args)
    except ConnectionLost:
        queue = args[-1] if args and args[-1].__class__ is OutboundQueue else None
        if queue is not None and queue.overflowed:
            # The write failed because the pusher aborted it for a client that stopped reading.
            conn.terminate(SLOW_CONSUMER)
            actors.exit(SLOW_CONSUMER)
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


def _stream_loop(conn: Any, io: TransportIO, proc: Any, stream: Any, idle_timeout: float, queue: OutboundQueue | None) -> Any:
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
    idle = _idle_transports
    direct = getattr(io, "send_nowait", None) is not None
    since_read = 0
    try:
        while True:
            # Messages and frames alternate, and a busy mailbox still lets the socket be
            # looked at every few messages: neither source can starve the other.
            if mailbox:
                msg = mailbox.popleft()
                if queue is not None:
                    if queue._scan:
                        queue._scan -= 1  # every entry moved one place towards the front
                    if msg.__class__ is tuple and msg:
                        if msg is _DROPPED:
                            continue  # uncounted when drop_oldest dropped it
                        tag = msg[0]
                        if tag == "socket_push" or tag is _WRITE_REST:
                            queue.taken(_push_size(msg) if tag == "socket_push" else len(msg[1]))
                            if queue.overflowed:
                                continue  # closing: nothing more is written
                        elif tag is _OVERFLOW:
                            io.close(SLOW_CONSUMER_CLOSE, "slow consumer")
                            conn.terminate(SLOW_CONSUMER)
                            return SLOW_CONSUMER
                if msg is idle_check:
                    now = monotonic()
                    left = stream.input_at + idle_timeout - now
                    if left <= 0:
                        return _idle(conn, io)
                    timer.close()
                    timer = get_hub().loop.timer(left)
                    timer.start(actors.send, proc.pid, idle_check)
                    continue
                end = _on_message(conn, io, msg)
                if end is not _GO_ON:
                    return end
                since_read += 1
                if since_read >= _MESSAGES_PER_READ:
                    since_read = 0
                    stream.input_ready()  # the socket may have input the loop has not seen
            frame = read()
            if frame is would_block:
                if mailbox:
                    continue
                if direct:
                    idle[proc] = io
                    try:
                        fired = wait(proc, watcher)
                    finally:
                        del idle[proc]
                else:
                    fired = wait(proc, watcher)
                if fired is io_ready:
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
    if msg.__class__ is tuple and len(msg) == 2 and msg[0] is _WRITE_REST:
        io.write_rest(msg[1])
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
    queue = _outbound.get(actors.self()._proc)
    if queue is not None:
        state["outbound"] = queue.statistics()
    return state


def _system_request(conn: Any, io: Any, from_: Any, request: Any) -> None:
    """Answer OTP's sys requests, as every GenServer does, so tools need no private access."""
    if request.__class__ is str and request in ("get_state", "get_status"):
        state = snapshot(conn, io)
        if request == "get_status":
            # A socket handler's format_status(status) decides what tools see (as a
            # GenServer's does); get_state stays raw, as sys:get_state is.
            shown = actors.formatted_status(conn.handler(), {"state": state})["state"]
            state = {"pid": actors.self(), "module": "transport.serve", "status": "running", "state": shown}
        actors.reply(from_, state)
    else:
        actors.reply(from_, ("error", ("unknown_system_msg", request)))
