"""The transport process: one per connection, driving a SocketConnection.

Two ways to run one. A stream transport (the WebSocket) calls :func:`serve_stream` in
the connection's own greenlet, which becomes the process and reads frames from its socket
between mailbox messages, or :func:`spawn_stream`, which hands that process to a greenlet
of its own (the server's greenlet may end) so that it can hibernate when idle. A
message-fed transport (the in-memory one tests use) spawns
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

from gevent import GreenletExit, get_hub, spawn_raw

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
    "outbound_queues",
    "outbound_statistics",
    "push",
    "serve",
    "serve_stream",
    "spawn_stream",
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
#: Seconds without input after which a spawned stream transport with nothing queued
#: hibernates (drops its greenlet until input, a message or a partly written push wakes
#: it; direct pushes need no wake-up), as a channel does after its ``hibernate_after``.
HIBERNATE_AFTER = 15.0

# Stream transports waiting idle (mailbox empty, between frames), by process record, with
# their io: a push to one of them is written by the pushing process at once when the
# socket takes it without waiting, instead of waking the transport to write it.
_idle_transports: dict[Any, Any] = {}
# Every stream transport's OutboundQueue, by process record.
_outbound: dict[Any, OutboundQueue] = {}


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
                pushed_partly(transport_pid, proc, done)
                return
    queue_push(transport_pid, proc, msg)


def pushed_partly(transport_pid: Any, proc: Any, rest: Any) -> None:
    """A direct write (``io.send_nowait``) took only part of a frame: the transport writes
    ``rest`` next, before anything else."""
    queue = _outbound.get(proc)
    if queue is not None:
        queue.add(len(rest))
    actors.send(transport_pid, (_WRITE_REST, rest))


def queue_push(transport_pid: Any, proc: Any, msg: tuple) -> None:
    """``msg`` through the transport's mailbox, within its outbound bound."""
    queue = _outbound.get(proc)
    if queue is not None and not queue.admit(proc, _push_size(msg)):
        return
    actors.send(transport_pid, msg)


def outbound_statistics(pid: Any) -> dict[str, int | None] | None:
    """The outbound queue of a stream transport (:meth:`OutboundQueue.statistics`), read
    without asking the process (which may be blocked writing to a client that stopped
    reading); None for any other process."""
    proc = getattr(pid, "_proc", None)
    queue = _outbound.get(proc) if proc is not None else None
    return queue.statistics() if queue is not None else None


def outbound_queues() -> list[OutboundQueue]:
    """The :class:`OutboundQueue` of every live stream transport (one per WebSocket): a
    snapshot for operator tools, which read the counters without asking any process."""
    return list(_outbound.values())


def stream_transports(handler: Any, endpoint: Any = None) -> list:
    """The pids of the live stream transports (WebSocket connections) of a socket handler
    (None: of every handler), of one endpoint if given: what the drainer closes and
    operators count."""
    return [
        proc.pid
        for proc, queue in list(_outbound.items())
        if queue.conn is not None
        and (handler is None or queue.conn.handler is handler)
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

    def statistics(self) -> dict[str, int | None]:
        """Queued bytes and frames now, the most bytes ever queued, frames dropped."""
        return {
            "bytes": self.bytes,
            "frames": self.frames,
            "high_water": self.high_water,
            "dropped": self.dropped,
            "max_bytes": self.max_bytes,
        }

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

    def write_rest(self, rest: Any) -> None: ...

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
    state = _Stream(conn, io, proc, stream, idle_timeout, queue, None)
    try:
        _run(_stream_loop, conn, io, state)
        _rt._release_current("normal")
    except actors.Exit as e:
        _rt._release_current(e.reason)
    except GreenletExit:
        _rt._release_current("killed")  # the server is stopping its connections
        raise
    except Exception as e:  # noqa: BLE001 - a crash: logged once, as for any process
        if proc.alive:
            log.error(
                "Process %s (transport.serve) crashed: %r", proc.pid, e, exc_info=e, extra={"pid": str(proc.pid), "reason": e}
            )
        _rt._release_current(e)
    finally:
        del _outbound[proc]


class _Stream:
    """A stream transport's state, kept outside its greenlet so that it can hibernate."""

    __slots__ = ("conn", "io", "proc", "stream", "idle_timeout", "queue", "hibernate_after", "timer", "idle_check")

    def __init__(
        self,
        conn: Any,
        io: Any,
        proc: Any,
        stream: Any,
        idle_timeout: float,
        queue: OutboundQueue,
        hibernate_after: float | None,
    ) -> None:
        self.conn = conn
        self.io = io
        self.proc = proc
        self.stream = stream
        self.idle_timeout = idle_timeout
        self.queue = queue
        self.hibernate_after = hibernate_after  # None: never (an adopted greenlet cannot)
        self.timer: Any = None  # the idle-check timer; None until the loop first runs
        self.idle_check = (_IDLE_CHECK, proc.pid)


def spawn_stream(
    conn: Any,
    io: TransportIO,
    stream: Any,
    idle_timeout: float,
    max_outbound_bytes: int | None = None,
    outbound_policy: str = "close",
    hibernate_after: float | None = HIBERNATE_AFTER,
) -> Any:
    """:func:`serve_stream` as the calling process's next body: the caller returns at once
    and the connection's process becomes the transport, pid and all. Under our HTTP server
    the connection is already a process and the transport runs in its greenlet once the
    HTTP handler has returned; another server's handler greenlet is adopted, hands the
    process to a new greenlet, and may end.

    The transport then waits on its socket without any greenlet of the server's, and after
    ``hibernate_after`` seconds without input (None: never) with nothing queued it
    hibernates: no greenlet at all until input or a message arrives, while pushes are still
    written directly to its socket. Once the process has exited it finishes the closing
    handshake (``stream.wait_closed()``) itself. Returns the pid.
    """
    proc = _rt._current()
    queue = _outbound[proc] = OutboundQueue(max_outbound_bytes, outbound_policy, io, conn)
    state = _Stream(conn, io, proc, stream, idle_timeout, queue, hibernate_after)
    proc.label = ("socket", conn.handler.__qualname__, conn.socket.id)  # set_label's, for the proc at hand
    _rt._handoff("transport.serve", _stream_main, (state,), proc)
    return proc.pid


def _stream_main(state: _Stream) -> None:
    """The body of a spawned stream transport, when it starts and at each wake-up."""
    proc = state.proc
    try:
        _run(_stream_loop, state.conn, state.io, state)
        reason: Any = "normal"
    except _rt._Hibernate:
        raise
    except actors.Exit as e:
        reason = e.reason
    except GreenletExit:
        reason = "killed"
    except Exception as e:  # noqa: BLE001 - a crash: logged once, as for any process
        if proc.alive:
            extra = {"pid": str(proc.pid), "reason": e}
            log.error("Process %s (transport.serve) crashed: %r", proc.pid, e, exc_info=e, extra=extra)
        reason = e
    # Exit first (channels see the DOWN now), then finish the TCP close as a dead process.
    _rt._terminate(proc, reason)
    _stream_ended(state)


def _stream_ended(state: _Stream) -> None:
    proc = state.proc
    _idle_transports.pop(proc, None)
    _outbound.pop(proc, None)
    if state.timer is not None:
        state.timer.close()
    state.stream.wait_closed()


def _hibernated_exit(state: _Stream, reason: Any) -> None:
    # Called from the hub when a hibernating transport is killed: close as a live one does
    # (a close frame with the code for the reason), in a greenlet, since writing may wait.
    state.stream.read_event.stop()
    _idle_transports.pop(state.proc, None)

    def close() -> None:
        state.io.close(close_code(reason))
        _stream_ended(state)

    spawn_raw(close)


def _input_wakes(state: _Stream) -> None:
    # The read watcher's callback while hibernating (in the hub): start the process.
    state.stream.read_event.stop()
    state.stream.input_ready()
    proc = state.proc
    wakeup = proc.waiter
    if wakeup is not None and proc.alive:
        proc.waiter = None
        wakeup.switch(True)


def _run(loop: Any, conn: Any, io: TransportIO, *args: Any) -> None:
    try:
        # A plain call for the stream loop: a star call would add a C frame to the stack
        # the transport's greenlet saves at every switch.
        reason = loop(conn, io, args[0]) if len(args) == 1 else loop(conn, io, *args)
    except ConnectionLost:
        queue = args[-1].queue if args and args[-1].__class__ is _Stream else None
        if queue is not None and queue.overflowed:
            # The write failed because the pusher aborted it for a client that stopped reading.
            conn.terminate(SLOW_CONSUMER)
            actors.exit(SLOW_CONSUMER)
        conn.terminate("remote")  # nobody left to write to: end quietly
    except _rt._Hibernate:
        raise
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


def _arm(state: _Stream, seconds: float) -> None:
    timer = state.timer = get_hub().loop.timer(seconds)
    timer.start(actors.send, state.proc.pid, state.idle_check)


def _stream_loop(conn: Any, io: TransportIO, state: _Stream) -> Any:
    proc = state.proc
    stream = state.stream
    idle_timeout = state.idle_timeout
    queue = state.queue
    hibernate_after = state.hibernate_after
    read = stream.read_nowait
    watcher = stream.read_event
    idle = _idle_transports
    # The idle timeout is a timer message, as Cowboy's is: one timer per connection, not
    # one per wait. It fires at most once per idle period; input since it was armed only
    # re-arms it for the time left. With hibernation it also fires hibernate_after after
    # the last input.
    first = min(idle_timeout, hibernate_after) if hibernate_after is not None else idle_timeout
    if state.timer is None:
        conn.init()
        _arm(state, first)
    else:  # woken from hibernation: by input, a message, or the timer's own message
        watcher.stop()
        idle.pop(proc, None)
        stream.input_ready()
        state.timer.close()
        _arm(state, min(first, max(0.0, stream.input_at + idle_timeout - monotonic())))
    mailbox = proc.mailbox
    would_block = stream.would_block
    wait = _rt._wait_watcher
    io_ready = _rt.WATCHER_FIRED
    idle_check = state.idle_check
    direct = getattr(io, "send_nowait", None) is not None
    since_read = 0
    hibernating = False
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
                    state.timer.close()
                    if hibernate_after is not None:
                        asleep_in = stream.input_at + hibernate_after - now
                        if asleep_in <= 0 and not mailbox and direct:
                            _arm(state, left)
                            hibernating = True
                            _hibernate(state)
                        if asleep_in > 0:
                            left = min(left, asleep_in)
                    _arm(state, left)
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
        if not hibernating:
            state.timer.close()


def _hibernate(state: _Stream) -> None:
    """Hibernate an idle spawned transport: its socket's read watcher or any message wakes
    it, and pushes are written directly meanwhile (it stays in ``_idle_transports``)."""
    _idle_transports[state.proc] = state.io
    state.stream.read_event.start(_input_wakes, state)
    _rt._hibernate(_stream_main, (state,), _hibernated_exit)


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
