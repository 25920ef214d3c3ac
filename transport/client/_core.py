"""The client's protocol, without I/O: phoenix.js's Socket, Channel and Push as pure state.

A driver (asyncio or blocking) owns one :class:`SocketCore` and moves data through it, as
the ``websockets`` library's I/O layer moves bytes through its ``Protocol``:

* it calls the user's side (:meth:`SocketCore.connect`, :meth:`SocketCore.channel`,
  :meth:`ChannelCore.join`, :meth:`ChannelCore.push`, :meth:`ChannelCore.leave`,
  :meth:`SocketCore.disconnect`) and the transport's side (:meth:`~SocketCore.transport_opened`,
  :meth:`~SocketCore.receive_frame`, :meth:`~SocketCore.transport_closed`), each with the
  current time ``now`` (seconds, any monotonic clock);
* it calls :meth:`~SocketCore.advance` once the clock passes :meth:`~SocketCore.next_deadline`;
* after each call it drains :meth:`~SocketCore.commands` (:class:`Open` a connection,
  :class:`Send` a frame on it, :class:`Close` it) and :meth:`~SocketCore.events_received`
  (what the user hears about: messages, replies, joins, errors, opens and closes).

Every connection has an id (``Open.conn``); the driver passes it back with what happens on
that connection, and the core ignores news from a connection it has given up on.

The rules are phoenix.js's (``socket.js``, ``channel.js``, ``push.js``, ``timer.js``):
reconnect after 10, 50, 100, 150, 200, 250, 500, 1000, 2000 ms then every 5 s after an
unclean close (none after :meth:`~SocketCore.disconnect`, nor when the server closes with
1000); a heartbeat every 30 s, and no reply to it within the heartbeat timeout closes the
connection and reconnects; every channel that was joining or joined is errored when the
connection goes and rejoins as soon as a new one opens; a channel errored while connected
(``phx_error``, a refused or timed-out join) rejoins after 1, 2, 5 then every 10 s; pushes
made while a channel is not joined wait in a buffer (bounded here) and go out after the
join, unless their timeout passes first; a buffered push's timeout restarts when it is sent.

Where this differs from phoenix.js, on purpose:

* phoenix.js queues a join made before the socket opens in the socket's send buffer, and
  re-sends it after a failed connection, so a server can see the same join twice. Here a
  join waits, unsent, for the connection and is sent once.
* phoenix.js's ``leave()`` closes the channel at once whatever the server says; here a leave
  on an open socket waits for the server's answer (ok or error) or its timeout.
* The push buffer is bounded (``max_buffered_pushes``): one more push raises BufferFull.
* Heartbeats are skipped on transports that ask for it (LongPoll, as phoenix.js).
"""

from __future__ import annotations

import heapq
import itertools
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol
from urllib.parse import urlencode, urlsplit, urlunsplit

from .._message import Binary, Broadcast, InvalidMessageError, Message, Reply
from ..serializers import V1, V2, Frame, Serializer
from ._errors import BufferFull, ChannelStateError

__all__ = [
    "ChannelClosed",
    "ChannelCore",
    "ChannelErrored",
    "ChannelEvent",
    "ClientSerializer",
    "Close",
    "Closed",
    "Joined",
    "Open",
    "Opened",
    "ProtocolError",
    "Push",
    "PushDone",
    "Send",
    "SocketCore",
    "TransportError",
    "default_reconnect_after",
    "default_rejoin_after",
    "endpoint_url",
    "serializer_for",
]

log = logging.getLogger("transport.client")

ChannelState = Literal["closed", "errored", "joined", "joining", "leaving"]
SocketState = Literal["closed", "connecting", "open", "closing"]

_RECONNECT_MS = (10, 50, 100, 150, 200, 250, 500, 1000, 2000)
_REJOIN_MS = (1000, 2000, 5000)


def default_reconnect_after(tries: int) -> float:
    """phoenix.js's reconnect schedule, in seconds: 10, 50, ... 2000 ms, then 5 s."""
    return _RECONNECT_MS[tries - 1] / 1000 if 1 <= tries <= len(_RECONNECT_MS) else 5.0


def default_rejoin_after(tries: int) -> float:
    """phoenix.js's rejoin schedule, in seconds: 1, 2, 5, then 10."""
    return _REJOIN_MS[tries - 1] / 1000 if 1 <= tries <= len(_REJOIN_MS) else 10.0


class ClientSerializer(Serializer, Protocol):
    """A serializer that also speaks the client's side of the protocol (V1 and V2 do)."""

    def client_encode(self, msg: Message) -> Frame:
        """Encode a message as a client sends it."""
        ...

    def client_decode(self, data: str | bytes, opcode: str) -> Message | Reply | Broadcast:
        """Decode a server frame as a client does."""
        ...


def serializer_for(vsn: str) -> ClientSerializer:
    """The serializer speaking ``vsn`` (``"1.0.0"`` or ``"2.0.0"``)."""
    if vsn.startswith("1."):
        return V1
    if vsn.startswith("2."):
        return V2
    raise ValueError(f"unknown vsn {vsn!r}: the client speaks '1.0.0' and '2.0.0'")


def endpoint_url(url: str, transport: str, params: dict[str, Any], vsn: str) -> str:
    """The transport URL for a socket mounted at ``url``, as phoenix.js builds it.

    ``url`` is the mount (``ws://host:4000/socket``); ``/websocket`` or ``/longpoll`` is
    appended (a URL already ending in either is accepted), then the connect params and
    ``vsn``. LongPoll uses ``http(s)``.
    """
    parts = urlsplit(url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    if scheme not in ("ws", "wss"):
        raise ValueError(f"socket URL must be ws://, wss://, http:// or https://, got {url!r}")
    if transport == "longpoll":
        scheme = "http" if scheme == "ws" else "https"
    path = parts.path.rstrip("/")
    for suffix in ("/websocket", "/longpoll"):
        if path.endswith(suffix):
            path = path[: -len(suffix)]
    path = f"{path}/{transport}"
    query = [q for q in parts.query.split("&") if q]
    pairs = [(k, _param(v)) for k, v in params.items()]
    pairs.append(("vsn", vsn))
    query.append(urlencode(pairs))
    return urlunsplit((scheme, parts.netloc, path, "&".join(query), ""))


def _param(value: Any) -> str:
    if value is True or value is False:
        return "true" if value else "false"
    return "" if value is None else str(value)


# --- what the core asks of its driver -------------------------------------------------


@dataclass(frozen=True, slots=True)
class Open:
    """Open connection ``conn`` (then report it with ``transport_opened`` or ``transport_closed``)."""

    conn: int


@dataclass(frozen=True, slots=True)
class Send:
    """Send ``frame`` (``("text", str)`` or ``("binary", bytes)``) on connection ``conn``."""

    conn: int
    frame: tuple[str, str | bytes]


@dataclass(frozen=True, slots=True)
class Close:
    """Close connection ``conn`` with ``code`` and ``reason`` (then report ``transport_closed``)."""

    conn: int
    code: int
    reason: str


# --- what the core tells its user -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Opened:
    """A connection opened (the first one, or a reconnect)."""

    conn: int


@dataclass(frozen=True, slots=True)
class Closed:
    """A connection closed; ``reconnect_in`` seconds until the next attempt, or None."""

    conn: int
    code: int | None
    reason: str
    reconnect_in: float | None
    was_open: bool


@dataclass(frozen=True, slots=True)
class TransportError:
    """A connection failed (``error`` is what the driver reported)."""

    conn: int
    error: Any


@dataclass(frozen=True, slots=True)
class ProtocolError:
    """A frame from the server could not be decoded; it was dropped."""

    error: str


@dataclass(frozen=True, slots=True)
class ChannelEvent:
    """A message for a channel: a push or a broadcast from the server."""

    channel: ChannelCore
    message: Message


@dataclass(frozen=True, slots=True)
class Joined:
    """The channel joined (``rejoin`` after the first time); ``response`` is the join's reply."""

    channel: ChannelCore
    response: Any
    rejoin: bool


@dataclass(frozen=True, slots=True)
class ChannelErrored:
    """The channel is errored (it will rejoin): ``reason`` says why."""

    channel: ChannelCore
    reason: Any


@dataclass(frozen=True, slots=True)
class ChannelClosed:
    """The channel closed for good: ``reason`` is ``"leave"`` or ``"server"`` (``phx_close``)."""

    channel: ChannelCore
    reason: str


@dataclass(frozen=True, slots=True)
class PushDone:
    """A push completed: ``status`` is ``"ok"``, ``"error"`` (or another reply status) or ``"timeout"``."""

    push: Push
    status: str
    response: Any


# --- timers ----------------------------------------------------------------------------


class _Timer:
    __slots__ = ("cancelled", "fn", "seq", "when")

    def __init__(self, when: float, seq: int, fn: Callable[[float], None]) -> None:
        self.when = when
        self.seq = seq
        self.fn = fn
        self.cancelled = False

    def __lt__(self, other: _Timer) -> bool:
        return (self.when, self.seq) < (other.when, other.seq)

    def cancel(self) -> None:
        self.cancelled = True


class _Timers:
    """A heap of one-shot timers with lazy cancellation."""

    def __init__(self) -> None:
        self._heap: list[_Timer] = []
        self._seq = itertools.count()

    def call_at(self, when: float, fn: Callable[[float], None]) -> _Timer:
        timer = _Timer(when, next(self._seq), fn)
        heapq.heappush(self._heap, timer)
        return timer

    def next_deadline(self) -> float | None:
        heap = self._heap
        while heap and heap[0].cancelled:
            heapq.heappop(heap)
        return heap[0].when if heap else None

    def fire_due(self, now: float) -> None:
        heap = self._heap
        while heap and heap[0].when <= now:
            timer = heapq.heappop(heap)
            if not timer.cancelled:
                timer.cancelled = True
                timer.fn(now)


class _Backoff:
    """timer.js: a retry timer whose delay grows with the number of tries."""

    __slots__ = ("after", "callback", "timer", "timers", "tries")

    def __init__(self, timers: _Timers, after: Callable[[int], float], callback: Callable[[float], None]) -> None:
        self.timers = timers
        self.after = after
        self.callback = callback
        self.tries = 0
        self.timer: _Timer | None = None

    def reset(self) -> None:
        self.tries = 0
        self.cancel()

    def cancel(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def schedule(self, now: float) -> float:
        """Arm the timer for the next try; the delay in seconds."""
        self.cancel()
        self.tries += 1
        delay = float(self.after(self.tries))
        self.timer = self.timers.call_at(now + delay, self._fire)
        return delay

    def _fire(self, now: float) -> None:
        self.timer = None
        self.callback(now)


# --- pushes and channels -----------------------------------------------------------------


class Push:
    """One message to a channel and its reply (phoenix.js's ``Push``).

    ``status`` is None until the push completes, then ``"ok"``, ``"error"`` (or whatever
    status the server replied) or ``"timeout"``; ``response`` is the reply's response.
    """

    __slots__ = ("_hook", "_timer", "channel", "event", "payload", "ref", "response", "sent", "status", "timeout")

    def __init__(self, channel: ChannelCore, event: str, payload: Any, timeout: float) -> None:
        self.channel = channel
        self.event = event
        self.payload = payload
        self.timeout = timeout
        self.ref: str | None = None
        self.sent = False
        self.status: str | None = None
        self.response: Any = None
        self._timer: _Timer | None = None
        self._hook: Callable[[Push, float], None] | None = None

    def __repr__(self) -> str:
        return f"<Push {self.channel.topic} {self.event} ref={self.ref} status={self.status}>"

    @property
    def done(self) -> bool:
        return self.status is not None

    def _send(self, now: float) -> None:
        if self.status == "timeout":
            return
        self._start_timeout(now)
        self.sent = True
        channel = self.channel
        channel.socket._send_message(Message(channel.topic, self.event, self._payload(), self.ref, channel.join_ref), self)

    def _payload(self) -> Any:
        payload = self.payload() if callable(self.payload) else self.payload
        if isinstance(payload, (bytes, bytearray, memoryview)):
            return Binary(bytes(payload))
        return payload

    def _start_timeout(self, now: float) -> None:
        self._cancel_timeout()
        socket = self.channel.socket
        self.ref = socket.make_ref()
        self.channel._replies[self.ref] = self
        self._timer = socket._timers.call_at(now + self.timeout, self._on_timeout)

    def _cancel_timeout(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.ref is not None:
            self.channel._replies.pop(self.ref, None)

    def _reset(self) -> None:
        self._cancel_timeout()
        self.ref = None
        self.status = None
        self.response = None
        self.sent = False

    def _on_timeout(self, now: float) -> None:
        self._timer = None
        self._complete("timeout", None, now)

    def _complete(self, status: str, response: Any, now: float) -> None:
        self._cancel_timeout()
        self.status = status
        self.response = response
        self.channel.socket._events.append(PushDone(self, status, response))
        if self._hook is not None:
            self._hook(self, now)
        if status == "timeout":
            buffer = self.channel._buffer
            if self in buffer:
                buffer.remove(self)


class ChannelCore:
    """phoenix.js's ``Channel``: one topic's join, pushes, replies and rejoins."""

    def __init__(self, socket: SocketCore, topic: str, params: Any) -> None:
        self.socket = socket
        self.topic = topic
        self.params = params if params is not None else {}
        self.state: ChannelState = "closed"
        self.joined_once = False
        self.join_count = 0  # successful joins, for Joined.rejoin
        self._replies: dict[str, Push] = {}
        self._buffer: deque[Push] = deque()
        self.join_push = Push(self, "phx_join", self._join_payload, socket.timeout)
        self.join_push._hook = self._on_join_reply
        self._rejoin = _Backoff(socket._timers, socket.rejoin_after, self._on_rejoin_timer)

    def __repr__(self) -> str:
        return f"<Channel {self.topic} {self.state} join_ref={self.join_ref}>"

    def _join_payload(self) -> Any:
        return self.params() if callable(self.params) else self.params

    @property
    def join_ref(self) -> str | None:
        """The ref of the current join: the server tags this join's messages with it."""
        return self.join_push.ref

    def can_push(self) -> bool:
        return self.socket.state == "open" and self.state == "joined"

    @property
    def buffered(self) -> int:
        """How many pushes wait for the join."""
        return len(self._buffer)

    # --- the user's side ----------------------------------------------------------------

    def join(self, now: float, timeout: float | None = None) -> Push:
        """Join the topic (once per channel object): the join push, completed by the reply."""
        if self.joined_once:
            raise ChannelStateError(f"tried to join {self.topic!r} multiple times; join once per channel object")
        self.joined_once = True
        if timeout is not None:
            self.join_push.timeout = timeout
        self._rejoin_now(now)
        return self.join_push

    def push(self, event: str, payload: Any, now: float, timeout: float | None = None) -> Push:
        """Push ``event``: sent now when joined, else buffered until the join (or its timeout)."""
        if not self.joined_once:
            raise ChannelStateError(f"tried to push {event!r} to {self.topic!r} before joining it")
        if self.state in ("closed", "leaving"):
            raise ChannelStateError(f"tried to push {event!r} to {self.topic!r}, which is {self.state}")
        if isinstance(payload, (bytes, bytearray, memoryview)) and self.socket.serializer is V1:
            raise ValueError("binary payloads need the V2 serializer (vsn 2.0.0)")
        push = Push(self, event, payload, self.socket.timeout if timeout is None else timeout)
        if self.can_push():
            push._send(now)
        else:
            if len(self._buffer) >= self.socket.max_buffered_pushes:
                raise BufferFull(
                    f"{self.topic!r} already holds {len(self._buffer)} pushes waiting for its join "
                    f"(max_buffered_pushes={self.socket.max_buffered_pushes})"
                )
            push._start_timeout(now)
            self._buffer.append(push)
        return push

    def leave(self, now: float, timeout: float | None = None) -> Push:
        """Leave the topic: completes on the server's reply or the timeout; then closed."""
        was_on_server = self.state in ("joined", "joining") and self.join_push.sent
        self._rejoin.reset()
        self.join_push._cancel_timeout()
        self.state = "leaving"
        push = Push(self, "phx_leave", {}, self.socket.timeout if timeout is None else timeout)
        push._hook = self._on_leave_reply
        if self.socket.state == "open" and was_on_server:
            push._send(now)
        else:
            push._complete("ok", {}, now)
        return push

    def abandon(self, now: float) -> None:
        """Forget the channel without telling the server (a refused join's channel)."""
        self._rejoin.reset()
        self.join_push._reset()
        self.state = "closed"
        self.socket._remove(self)

    # --- internal --------------------------------------------------------------------

    def _rejoin_now(self, now: float) -> None:
        if self.state == "leaving":
            return
        self.socket._leave_open_topic(self.topic, self, now)
        self.state = "joining"
        self.join_push._reset()
        if self.socket.state == "open":
            self.join_push._send(now)
        else:
            # Sent when the socket opens; the timeout runs from now, as phoenix.js's.
            self.join_push._start_timeout(now)

    def _on_rejoin_timer(self, now: float) -> None:
        if self.socket.state == "open":
            self._rejoin_now(now)

    def _on_join_reply(self, push: Push, now: float) -> None:
        status = push.status
        if self.state in ("leaving", "closed"):
            return
        if status == "ok":
            self.state = "joined"
            self._rejoin.reset()
            self.join_count += 1
            self.socket._events.append(Joined(self, push.response, self.join_count > 1))
            buffered, self._buffer = self._buffer, deque()
            for pending in buffered:
                try:
                    pending._send(now)
                except TypeError as exc:
                    pending._complete("error", {"reason": str(exc)}, now)
        elif status == "timeout":
            if self.socket.state == "open":
                # Tell the server to drop the join it may still be running, as phoenix.js.
                leave = Push(self, "phx_leave", {}, self.socket.timeout)
                leave._send(now)
            self.state = "errored"
            self.join_push._reset()
            self.socket._events.append(ChannelErrored(self, "join timeout"))
            if self.socket.state == "open":
                self._rejoin.schedule(now)
        else:
            self.state = "errored"
            self.socket._events.append(ChannelErrored(self, push.response))
            if self.socket.state == "open":
                self._rejoin.schedule(now)

    def _on_leave_reply(self, push: Push, now: float) -> None:
        self._close("leave")

    def _close(self, reason: str) -> None:
        self._rejoin.reset()
        self.state = "closed"
        self.socket._remove(self)
        self.socket._events.append(ChannelClosed(self, reason))

    def _error(self, reason: Any, now: float) -> None:
        if self.state == "joining":
            self.join_push._reset()
        self.state = "errored"
        self.socket._events.append(ChannelErrored(self, reason))
        if self.socket.state == "open":
            self._rejoin.schedule(now)

    def _is_member(self, topic: str, join_ref: str | None) -> bool:
        if topic != self.topic:
            return False
        if join_ref and join_ref != self.join_ref:
            log.debug("dropping a message of %s for an old join (%s, now %s)", topic, join_ref, self.join_ref)
            return False
        return True

    def _on_reply(self, ref: str | None, status: str, response: Any, now: float) -> None:
        push = self._replies.get(ref) if ref is not None else None
        if push is not None:
            push._complete(status, response, now)

    def _trigger(self, msg: Message, now: float) -> None:
        event = msg.event
        if event == "phx_close":
            self._close("server")
        elif event == "phx_error":
            if self.state not in ("errored", "leaving", "closed"):
                self._error(msg.payload if msg.payload else "crashed", now)
        else:
            self.socket._events.append(ChannelEvent(self, msg))


class SocketCore:
    """phoenix.js's ``Socket``: connections, heartbeats, refs, reconnects and channels.

    Options (seconds, with phoenix.js's defaults): ``timeout`` 10 (pushes, joins, leaves),
    ``heartbeat_interval`` 30, ``heartbeat_timeout`` (default: the interval),
    ``reconnect_after(tries)`` and ``rejoin_after(tries)`` (the schedules above),
    ``max_buffered_pushes`` 1000 per channel, ``serializer`` V2.
    """

    def __init__(
        self,
        *,
        serializer: ClientSerializer = V2,
        timeout: float = 10.0,
        heartbeat_interval: float = 30.0,
        heartbeat_timeout: float | None = None,
        reconnect_after: Callable[[int], float] = default_reconnect_after,
        rejoin_after: Callable[[int], float] = default_rejoin_after,
        max_buffered_pushes: int = 1000,
    ) -> None:
        if not hasattr(serializer, "client_encode"):
            raise TypeError(f"{serializer!r} has no client_encode/client_decode")
        if max_buffered_pushes < 0:
            raise ValueError("max_buffered_pushes must be >= 0")
        self.serializer = serializer
        self.timeout = float(timeout)
        self.heartbeat_interval = float(heartbeat_interval)
        self.heartbeat_timeout = float(heartbeat_timeout if heartbeat_timeout is not None else heartbeat_interval)
        self.reconnect_after = reconnect_after
        self.rejoin_after = rejoin_after
        self.max_buffered_pushes = max_buffered_pushes
        self.state: SocketState = "closed"
        self.conn = 0
        self.channels: list[ChannelCore] = []
        self.pending_heartbeat_ref: str | None = None
        self.established = 0
        self._conn_ids = itertools.count(1)
        self._ref = 0
        self._timers = _Timers()
        self._commands: list[Open | Send | Close] = []
        self._events: list[Any] = []
        self._clean = True  # phoenix.js's closeWasClean: no reconnect
        self._reconnect_anyway = False  # a heartbeat timeout closes with 1000 but reconnects
        self._heartbeats = True
        self._hb_timer: _Timer | None = None
        self._hb_timeout_timer: _Timer | None = None
        self._reconnect = _Backoff(self._timers, reconnect_after, self._on_reconnect_timer)
        self._was_open = False

    def __repr__(self) -> str:
        return f"<SocketCore {self.state} conn={self.conn} channels={len(self.channels)}>"

    # --- the user's side ----------------------------------------------------------------

    def make_ref(self) -> str:
        self._ref += 1
        return str(self._ref)

    def connect(self, now: float) -> None:
        """Open a connection, unless one is open or opening."""
        if self.state in ("connecting", "open"):
            return
        self._clean = False
        self._open(now)

    def disconnect(self, now: float, code: int = 1000, reason: str = "") -> None:
        """Close for good: no reconnect until :meth:`connect` is called again."""
        self._clean = True
        self._reconnect.reset()
        self._clear_heartbeats()
        if self.state in ("connecting", "open"):
            self.state = "closing"
            self._commands.append(Close(self.conn, code, reason))

    def channel(self, topic: str, params: Any = None) -> ChannelCore:
        """A new channel for ``topic``; ``params`` (a dict, or a callable giving one) is the join payload."""
        if not isinstance(topic, str):
            raise TypeError(f"topic must be a str, got {type(topic).__name__}")
        channel = ChannelCore(self, topic, params)
        self.channels.append(channel)
        return channel

    # --- the transport's side ---------------------------------------------------------

    def transport_opened(self, conn: int, now: float, *, heartbeat: bool = True) -> None:
        """Connection ``conn`` is open; ``heartbeat=False`` for transports that skip them."""
        if conn != self.conn or self.state != "connecting":
            return
        self.state = "open"
        self._was_open = True
        self.established += 1
        self._heartbeats = heartbeat
        self._reconnect.reset()
        self._reset_heartbeat(now)
        self._events.append(Opened(conn))
        for channel in list(self.channels):
            channel._rejoin.reset()
            if channel.state == "errored":
                channel._rejoin_now(now)
            elif channel.state == "joining" and not channel.join_push.sent:
                channel.join_push._send(now)

    def receive_frame(self, conn: int, opcode: str, data: str | bytes, now: float) -> None:
        """A frame arrived on connection ``conn``."""
        if conn != self.conn or self.state not in ("open", "closing"):
            return
        try:
            msg = self.serializer.client_decode(data, opcode)
        except (InvalidMessageError, ValueError) as exc:
            self._events.append(ProtocolError(str(exc)))
            return
        self.receive_message(msg, now)

    def receive_message(self, msg: Message | Reply | Broadcast, now: float) -> None:
        """A decoded message (what :meth:`receive_frame` does after decoding)."""
        if isinstance(msg, Broadcast):
            msg = Message(msg.topic, msg.event, msg.payload, None, None)
        payload = msg.payload
        if isinstance(payload, Binary):
            payload = bytes(payload.data)
        ref = msg.ref
        if ref is not None and ref == self.pending_heartbeat_ref:
            self._clear_heartbeats()
            self.pending_heartbeat_ref = None
            if self._heartbeats:
                self._hb_timer = self._timers.call_at(now + self.heartbeat_interval, self._send_heartbeat)
        if isinstance(msg, Reply):
            for channel in list(self.channels):
                if channel._is_member(msg.topic, msg.join_ref):
                    channel._on_reply(ref, msg.status, payload, now)
            return
        if payload is not msg.payload:
            msg = Message(msg.topic, msg.event, payload, msg.ref, msg.join_ref)
        for channel in list(self.channels):
            if channel._is_member(msg.topic, msg.join_ref):
                channel._trigger(msg, now)

    def transport_closed(self, conn: int, now: float, code: int | None = None, reason: str = "", error: Any = None) -> None:
        """Connection ``conn`` closed, or failed to open (``error`` says why)."""
        if conn != self.conn or self.state == "closed":
            return
        was_open = self._was_open
        self.state = "closed"
        self.conn = 0
        self._was_open = False
        self._clear_heartbeats()
        self.pending_heartbeat_ref = None
        if error is not None:
            self._events.append(TransportError(conn, error))
        self._trigger_chan_error("connection closed" if was_open else "connection failed", now)
        reconnect_in = None
        if not self._clean and (code != 1000 or self._reconnect_anyway):
            reconnect_in = self._reconnect.schedule(now)
        self._reconnect_anyway = False
        self._events.append(Closed(conn, code, reason, reconnect_in, was_open))

    def advance(self, now: float) -> None:
        """Fire every timer due at ``now``."""
        self._timers.fire_due(now)

    def next_deadline(self) -> float | None:
        """When :meth:`advance` must be called next (None: no timer)."""
        return self._timers.next_deadline()

    def commands(self) -> list[Open | Send | Close]:
        """What the driver must do, in order (drained)."""
        out, self._commands = self._commands, []
        return out

    def events_received(self) -> list[Any]:
        """What happened, in order (drained)."""
        out, self._events = self._events, []
        return out

    # --- internal --------------------------------------------------------------------

    def _open(self, now: float) -> None:
        self._reconnect.cancel()
        self.conn = next(self._conn_ids)
        self.state = "connecting"
        self._commands.append(Open(self.conn))

    def _on_reconnect_timer(self, now: float) -> None:
        if not self._clean and self.state == "closed":
            self._open(now)

    def _send_message(self, msg: Message, push: Push | None = None) -> None:
        if self.state != "open":
            raise RuntimeError(f"sending {msg.event} on a {self.state} socket")
        try:
            frame = self.serializer.client_encode(msg)
        except (TypeError, ValueError) as exc:
            if push is None:
                raise
            push._reset()
            raise TypeError(f"cannot encode the payload of {msg.topic} {msg.event}: {exc}") from exc
        self._commands.append(Send(self.conn, frame))

    def _reset_heartbeat(self, now: float) -> None:
        self.pending_heartbeat_ref = None
        self._clear_heartbeats()
        if self._heartbeats:
            self._hb_timer = self._timers.call_at(now + self.heartbeat_interval, self._send_heartbeat)

    def _clear_heartbeats(self) -> None:
        for timer in (self._hb_timer, self._hb_timeout_timer):
            if timer is not None:
                timer.cancel()
        self._hb_timer = self._hb_timeout_timer = None

    def _send_heartbeat(self, now: float) -> None:
        self._hb_timer = None
        if self.state != "open":
            return
        self.pending_heartbeat_ref = self.make_ref()
        self._send_message(Message("phoenix", "heartbeat", {}, self.pending_heartbeat_ref, None))
        self._hb_timeout_timer = self._timers.call_at(now + self.heartbeat_timeout, self._heartbeat_timeout)

    def _heartbeat_timeout(self, now: float) -> None:
        self._hb_timeout_timer = None
        if self.pending_heartbeat_ref is None or self.state != "open":
            return
        self.pending_heartbeat_ref = None
        log.info("heartbeat timeout: closing the connection and reconnecting")
        self.state = "closing"
        self._trigger_chan_error("heartbeat timeout", now)
        self._reconnect_anyway = True
        self._commands.append(Close(self.conn, 1000, "heartbeat timeout"))

    def _trigger_chan_error(self, reason: str, now: float) -> None:
        for channel in list(self.channels):
            if channel.state not in ("errored", "leaving", "closed"):
                channel._error(reason, now)

    def _leave_open_topic(self, topic: str, joining: ChannelCore, now: float) -> None:
        for channel in list(self.channels):
            if channel is not joining and channel.topic == topic and channel.state in ("joined", "joining"):
                log.debug("leaving duplicate topic %r", topic)
                channel.leave(now)

    def _remove(self, channel: ChannelCore) -> None:
        try:
            self.channels.remove(channel)
        except ValueError:
            pass
