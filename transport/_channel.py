"""Phoenix.Channel and Phoenix.Channel.Server: one process per joined topic.

Write a channel by subclassing :class:`Channel`::

    class RoomChannel(Channel):
        intercept = ["user_joined"]              # events that go through handle_out

        def join(self, topic, payload, socket):
            return ("ok", socket)                # | ("ok", reply, socket) | ("error", reply)

        def handle_in(self, event, payload, socket):
            broadcast(socket, "new_msg", payload)
            return ("reply", ("ok", {}), socket) # | ("noreply", socket) | ("stop", reason, socket)

        def handle_out(self, event, payload, socket):
            push(socket, event, payload)
            return ("noreply", socket)

Each joined channel is a process under the socket's partitioned pool supervisor. It
monitors the transport process and exits when it does, rewriting a ``normal`` transport
exit to ``('shutdown', 'closed')``. Stopping with ``normal``, ``shutdown`` or
``('shutdown', term)`` tells the transport to send ``phx_close``; any other exit makes it
send ``phx_error``.

A custom channel is any class with a ``child_spec(arg)`` classmethod returning a child spec
whose process, once started, receives ``('Phoenix.Channel', payload, from_, socket)`` and
must answer with ``actors.reply(from_, ('ok' | 'error', reply_payload))``.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

import actors
import supervision
from actors import GenServer, Pid
from actors import _runtime as rt

from . import _logger, _telemetry, _transport, pubsub
from ._message import Broadcast, Message, Reply
from ._socket import Socket as _Socket
from .websocket import data_frame

#: No serializer seen yet in a dispatch (None is a value a meta could hold).
_NO_SERIALIZER = object()


class Fastlane(tuple):
    """A channel's PubSub subscription metadata: Phoenix's ``{:fastlane, transport_pid,
    serializer, intercepts}``, a plain 4-tuple to every reader, which :func:`dispatch`
    recognises by its class alone (one check per subscriber instead of three)."""

    __slots__ = ()


def is_fastlane(meta: Any) -> bool:
    """True for fastlane subscription metadata: ours, or a 4-tuple shaped as Phoenix's."""
    return meta.__class__ is Fastlane or (meta.__class__ is tuple and len(meta) == 4 and meta[0] == "fastlane")


log = logging.getLogger("transport.channel")

__all__ = [
    "Channel",
    "broadcast",
    "broadcast_from",
    "broadcast_from_or_raise",
    "broadcast_or_raise",
    "dispatch",
    "join",
    "push",
    "reply",
    "socket_ref",
]

JOIN_MESSAGE = "Phoenix.Channel"

_HANDLE_IN_RESULTS = (
    "('noreply', socket) | ('noreply', socket, timeout) | ('reply', (status, response), socket) | "
    "('reply', status, socket) | ('stop', reason, socket) | ('stop', reason, (status, response), socket) | "
    "('stop', reason, status, socket)"
)
_NOREPLY_RESULTS = "('noreply', socket) | ('noreply', socket, timeout) | ('stop', reason, socket)"


class Channel:
    """Base class of a channel; override the callbacks you need."""

    #: Events that are not fastlaned to transports but go through ``handle_out``.
    intercept: list[str] = []
    #: Log levels of the JOINED and HANDLED lines ('debug', 'info', ... or False).
    log_join: Any = "info"
    log_handle_in: Any = "debug"
    #: Milliseconds without a message after which the channel process hibernates (drops
    #: its greenlet until the next message), as Phoenix's ``hibernate_after``; None: never.
    hibernate_after: int | None = 15_000
    #: Hibernate as soon as the join is answered when no message is waiting (most channels
    #: then sit idle): the process gives its greenlet back at once instead of holding it
    #: for ``hibernate_after`` ms, and its first message wakes it (a couple of µs). False:
    #: stay awake until ``hibernate_after``. Ignored when ``hibernate_after`` is None.
    hibernate_after_join: bool = True

    def join(self, topic: str, payload: Any, socket: Any) -> Any:
        """Authorize a join: ('ok', socket), ('ok', reply, socket) or ('error', reply)."""
        raise NotImplementedError(f"{type(self).__qualname__} must define join(topic, payload, socket)")

    def handle_in(self, event: str, payload: Any, socket: Any) -> Any:
        """A message from the client."""
        raise NotImplementedError(f"{type(self).__qualname__} received {event!r} but defines no handle_in")

    def handle_out(self, event: str, payload: Any, socket: Any) -> Any:
        """An intercepted broadcast; the default pushes it on unchanged."""
        push(socket, event, payload)
        return ("noreply", socket)

    def handle_info(self, msg: Any, socket: Any) -> Any:
        """Any other message; the default logs it and carries on."""
        log.warning("%s %s received unexpected message in handle_info: %r", type(self).__qualname__, actors.self(), msg)
        return ("noreply", socket)

    def handle_call(self, request: Any, from_: Any, socket: Any) -> Any:
        """A ``call`` to the channel process."""
        raise RuntimeError(f"{type(self).__qualname__} received call {request!r} but defines no handle_call")

    def handle_cast(self, request: Any, socket: Any) -> Any:
        """A ``cast`` to the channel process."""
        raise RuntimeError(f"{type(self).__qualname__} received cast {request!r} but defines no handle_cast")

    def terminate(self, reason: Any, socket: Any) -> None:
        """Called when the channel stops (leave, close, crash)."""


# ------------------------------------------------------------------------------------------
# The channel API (called from inside a channel)
# ------------------------------------------------------------------------------------------


def _assert_joined(socket: Any, fn: str) -> None:
    if not socket.joined:
        raise RuntimeError(f"{fn}/3 can only be called after the socket has finished joining (from join, use a message to self)")


def push(socket: Any, event: str, payload: Any) -> None:
    """Send ``event`` with ``payload`` to this channel's client."""
    _assert_joined(socket, "push")
    if event.__class__ is not str:
        raise TypeError(f"push: event must be a str, got {type(event).__name__}")
    frame = socket.serializer.encode(
        Message(topic=socket.topic, event=event, payload=payload, ref=None, join_ref=socket.join_ref)
    )
    _transport.push(socket.transport_pid, ("socket_push", frame[0], frame[1]))


def broadcast(socket: Any, event: str, payload: Any) -> Any:
    """Broadcast ``event`` to every subscriber of the socket's topic (this client too).

    Returns ``'ok'`` or ``('error', reason)``; :func:`broadcast_or_raise` raises instead.
    """
    _assert_joined(socket, "broadcast")
    return broadcast_message(socket.pubsub_server, None, socket.topic, event, payload, raising=False)


def broadcast_or_raise(socket: Any, event: str, payload: Any) -> None:
    """As :func:`broadcast` (Phoenix's ``broadcast!``), raising ``BroadcastError`` on failure."""
    _assert_joined(socket, "broadcast")
    broadcast_message(socket.pubsub_server, None, socket.topic, event, payload, raising=True)


def broadcast_from(socket: Any, event: str, payload: Any) -> Any:
    """Broadcast to every subscriber of the topic except this channel's client."""
    _assert_joined(socket, "broadcast_from")
    return broadcast_message(socket.pubsub_server, socket.channel_pid, socket.topic, event, payload, raising=False)


def broadcast_from_or_raise(socket: Any, event: str, payload: Any) -> None:
    """As :func:`broadcast_from` (Phoenix's ``broadcast_from!``), raising on failure."""
    _assert_joined(socket, "broadcast_from")
    broadcast_message(socket.pubsub_server, socket.channel_pid, socket.topic, event, payload, raising=True)


def broadcast_message(pubsub_server: str, from_pid: Pid | None, topic: str, event: str, payload: Any, *, raising: bool) -> Any:
    """Broadcast a channel event on ``topic`` through ``pubsub_server``; shared by channels and the endpoint."""
    message = Broadcast(topic=topic, event=event, payload=payload)
    if from_pid is None:
        to_all = pubsub.broadcast_or_raise if raising else pubsub.broadcast
        return to_all(pubsub_server, topic, message, dispatch)
    to_others = pubsub.broadcast_from_or_raise if raising else pubsub.broadcast_from
    return to_others(pubsub_server, from_pid, topic, message, dispatch)


def socket_ref(socket: Any) -> tuple:
    """A reference to the current message, for replying later with :func:`reply`."""
    _assert_joined(socket, "socket_ref")
    if socket.ref is None:
        raise RuntimeError("socket_ref can only be called from handle_in, while a message ref is set")
    return (socket.transport_pid, socket.serializer, socket.topic, socket.ref, socket.join_ref)


def reply(ref: tuple, result: Any) -> None:
    """Reply asynchronously to a client message: ``reply(socket_ref(socket), ('ok', {...}))``."""
    transport_pid, serializer, topic, msg_ref, join_ref = ref
    status, payload = _reply_parts(result, "reply")
    frame = serializer.encode(Reply(topic=topic, status=status, payload=payload, ref=msg_ref, join_ref=join_ref))
    _transport.push(transport_pid, ("socket_push", frame[0], frame[1]))


def _reply_parts(result: Any, where: Any) -> tuple[str, Any]:
    """``where``: what returned it, or a function naming it (only called for the error)."""
    if result.__class__ is str:
        return result, {}
    if result.__class__ is tuple and len(result) == 2 and result[0].__class__ is str:
        return result[0], result[1]
    raise actors.BadReturnError(where() if callable(where) else where, result, "status or (status, response)")


# ------------------------------------------------------------------------------------------
# The fastlane: Phoenix.Channel.Server.dispatch/3
# ------------------------------------------------------------------------------------------


def dispatch(entries: Any, from_pid: Pid | None, message: Any) -> None:
    """Deliver a broadcast: encoded once per serializer, straight to each transport.

    Subscribers with fastlane metadata ``('fastlane', transport_pid, serializer,
    intercepts)`` get the encoded frame at their transport, unless the event is
    intercepted (then the channel process gets the Broadcast); others get the message.
    """
    send = actors.send
    push = _transport.push
    # The sender is recognised by pid number: Pid's __eq__ is a Python call, once per
    # subscriber per broadcast otherwise. No local Pid (None, a remote node's pid) skips none.
    skip = from_pid._n if from_pid.__class__ is Pid else -1  # pid numbers are positive
    if message.__class__ is not Broadcast:
        for pid, _meta in entries:
            if pid._n != skip:
                send(pid, message)
        return
    event = message.event
    # Subscribers of one topic nearly always share one serializer: its frames are looked
    # up again only when the serializer changes from one subscriber to the next.
    cache: dict[Any, tuple] = {}
    serializer_now: Any = _NO_SERIALIZER
    push_msg: Any = None
    built: Any = None
    builder: Any = None  # the io class known to write ``built`` (send_built_nowait)
    # _transport.push's direct write, inlined: this loop runs once per subscriber.
    idle_io = None if rt._tracing else _transport._idle_transports.get
    for pid, meta in entries:
        if pid._n == skip:
            continue
        # is_fastlane(meta), inlined: a call per subscriber otherwise.
        if meta.__class__ is not Fastlane and not (meta.__class__ is tuple and len(meta) == 4 and meta[0] == "fastlane"):
            send(pid, message)
            continue
        if event in meta[3]:
            send(pid, message)
            continue
        serializer = meta[2]
        if serializer is not serializer_now:
            cached = cache.get(serializer)
            if cached is None:
                cached = cache[serializer] = _fastlane_frames(serializer, message)
            serializer_now = serializer
            push_msg, built = cached
            builder = None
        transport_pid = meta[1]
        if idle_io is not None:
            proc = transport_pid._proc
            io = idle_io(proc)
            if io is not None and not proc.mailbox:
                # A WebSocket's io writes the frame built once for every subscriber;
                # another stream io (serve_stream's callers) frames it itself.
                # (The io class last seen taking the built frame is remembered: asking each
                # io whether it has send_built_nowait was a getattr per delivery.)
                try:
                    if io.__class__ is builder:
                        done = io.send_built_nowait(built)
                    elif built is not None and getattr(io, "send_built_nowait", None) is not None:
                        builder = io.__class__
                        done = io.send_built_nowait(built)
                    else:
                        done = io.send_nowait(push_msg[1], push_msg[2])
                except (TypeError, ValueError, AttributeError):
                    # Not a frame (a serializer's bug), or an io of that class without
                    # send_built_nowait: through the mailbox, where the transport fails or
                    # frames it itself.
                    done = False
                if done is True:
                    continue
                if done is False:
                    _transport.queue_push(transport_pid, proc, push_msg)
                else:
                    _transport.pushed_partly(transport_pid, proc, done)
                continue
        push(transport_pid, push_msg)


def _fastlane_frames(serializer: Any, message: Broadcast) -> tuple:
    """A broadcast's push for ``serializer``'s subscribers, and the WebSocket frame that
    carries it, built once (None if the serializer's frame is not one a WebSocket sends:
    each transport then fails on it as on any push)."""
    opcode, data = serializer.fastlane(message)
    try:
        built = data_frame(opcode, data)
    except (TypeError, ValueError, AttributeError):
        built = None
    return ("socket_push", opcode, data), built


# ------------------------------------------------------------------------------------------
# Joining: runs in the transport process
# ------------------------------------------------------------------------------------------


def join(socket: Any, channel: Any, message: Message, opts: dict) -> tuple:
    """Start a channel process and join it: ('ok', reply, pid, monitor_ref) or ('error', reply).

    The caller keeps the monitor the join was made under (Phoenix's transport demonitors
    and monitors again; one monitor throughout is the same to everyone else).
    """
    extra = opts.get("assigns")
    chan_socket = _channel_socket(socket, message, channel, {**socket.assigns, **extra} if extra else dict(socket.assigns))
    me = actors.self()
    tag = actors.make_ref()
    from_ = (me, tag)
    pool = socket.endpoint.pool_name(socket.handler)
    try:
        if isinstance(channel, type) and issubclass(channel, Channel):
            pid = supervision.spawn_child_in_partition(pool, me, _channel_main, channel, from_)
        else:
            pid = supervision.start_child_in_partition(pool, me, channel.child_spec((socket.endpoint, from_)))
    except Exception as e:  # noqa: BLE001 - a failed start is a crashed join, as in Phoenix
        log.error("could not start channel %r for %s: %r", channel, message.topic, e)
        return ("error", {"reason": "join crashed"})
    actors.send(pid, (JOIN_MESSAGE, message.payload, from_, chan_socket))
    mref = actors.monitor(pid)
    answer = actors.receive(lambda m: m.__class__ is tuple and len(m) >= 2 and (m[0] is tag or (m[1] is mref and m[0] == "DOWN")))
    if answer[0] is tag:
        result = answer[1]
        if result.__class__ is tuple and len(result) == 2 and result[0] == "ok":
            return ("ok", result[1], pid, mref)
        actors.demonitor(mref, flush=True)
        if result.__class__ is tuple and len(result) == 2 and result[0] == "error":
            return ("error", result[1])
        log.error("channel %r answered its join with %r; expected ('ok', reply) or ('error', reply)", channel, result)
        actors.exit(pid, "kill")
        return ("error", {"reason": "join crashed"})
    log.error("channel %r crashed while joining %s: %r", channel, message.topic, answer[4])
    return ("error", {"reason": "join crashed"})


def _channel_socket(socket: Any, message: Message, channel: Any, assigns: dict) -> Any:
    """The channel's own copy of the transport's socket, made through the constructor:
    ``dataclasses.replace`` costs several times as much per join."""
    cls = socket.__class__
    if cls is not _Socket:  # a subclass may add fields: the general form
        return dataclasses.replace(
            socket,
            topic=message.topic,
            channel=channel,
            join_ref=message.join_ref if message.join_ref is not None else message.ref,
            assigns=assigns,
            private=dict(socket.private),
        )
    return _Socket(
        assigns,
        channel,
        socket.channel_pid,
        socket.endpoint,
        socket.handler,
        socket.id,
        socket.joined,
        message.join_ref if message.join_ref is not None else message.ref,
        dict(socket.private),
        socket.pubsub_server,
        socket.ref,
        socket.serializer,
        message.topic,
        socket.transport,
        socket.transport_pid,
    )


def _channel_main(channel_cls: type[Channel], from_: tuple) -> None:
    """The body of a channel process started under the pool (Channel.Server's init)."""
    me = rt._current()
    links = me.links  # the partition supervisor's link, made at spawn
    if links.__class__ is rt._OneLink and links.proc is not None:
        parent = links.proc.pid
    else:
        parent = next(iter(links)).pid if links else me.pid
    server = ChannelServer(channel_cls())
    mailbox = me.mailbox
    # The transport sends the join right after spawning, before this runs, so it is
    # normally here already; only without it is the transport watched while waiting.
    first = mailbox[0] if mailbox else None
    joining = first.__class__ is tuple and len(first) == 4 and first[0] == JOIN_MESSAGE
    waiting = None if joining else actors.monitor(from_[0])
    actors.enter_loop(server, _Waiting(waiting), parent=parent, hibernate_after=channel_cls.hibernate_after)


class _Waiting:
    """The state before the join message arrives: the transport's monitor ref."""

    __slots__ = ("ref",)

    def __init__(self, ref: Any) -> None:
        self.ref = ref

    def __repr__(self) -> str:
        return "<channel waiting for its join>"


_HANDLED_IN = ("phoenix", "channel_handled_in")


class ChannelServer(GenServer):
    """Phoenix.Channel.Server: runs a user Channel inside a GenServer loop."""

    def __init__(self, channel: Channel) -> None:
        self.channel = channel

    def format_status(self, status: dict[str, Any]) -> dict[str, Any]:
        # A Channel that defines format_status decides what tools and crash logs show of
        # its socket (e.g. secrets in assigns), as a GenServer's own would.
        return actors.formatted_status(self.channel, status)

    def handle_info(self, msg: Any, socket: Any) -> Any:
        if socket.__class__ is _Waiting:
            return self._before_join(msg, socket)
        cls = msg.__class__
        if cls is Message and msg.topic == socket.topic:
            if msg.event == "phx_leave":
                socket.ref = msg.ref
                return self._handle_in_result(("stop", ("shutdown", "left"), "ok", socket))
            return self._handle_in(msg, socket)
        if cls is Broadcast:
            if msg.event == "phx_drain":
                actors.send(socket.transport_pid, "socket_drain")
                return ("stop", ("shutdown", "draining"), socket)
            if msg.topic == socket.topic:
                return self._result(self.channel.handle_out(msg.event, msg.payload, socket), "handle_out")
        elif cls is tuple and len(msg) == 5 and msg[0] == "DOWN" and msg[3] == socket.transport_pid:
            reason = msg[4]
            if reason.__class__ is str and reason == "normal":
                reason = ("shutdown", "closed")
            return ("stop", reason, socket)
        return self._result(self.channel.handle_info(msg, socket), "handle_info")

    def handle_call(self, request: Any, from_: Any, socket: Any) -> Any:
        result = self.channel.handle_call(request, from_, socket)
        if result.__class__ is tuple and len(result) == 3 and result[0] == "reply":
            return result
        return self._result(result, "handle_call")

    def handle_cast(self, request: Any, socket: Any) -> Any:
        return self._result(self.channel.handle_cast(request, socket), "handle_cast")

    def terminate(self, reason: Any, socket: Any) -> None:
        if socket.__class__ is not _Waiting:
            self.channel.terminate(reason, socket)

    # -- join -----------------------------------------------------------------------------

    def _before_join(self, msg: Any, waiting: _Waiting) -> Any:
        if msg.__class__ is tuple and len(msg) == 4 and msg[0] == JOIN_MESSAGE:
            _tag, payload, from_, socket = msg
            if waiting.ref is not None:
                actors.demonitor(waiting.ref)
            return self._join(payload, from_, socket)
        if msg.__class__ is tuple and len(msg) == 5 and msg[0] == "DOWN" and waiting.ref is not None and msg[1] is waiting.ref:
            return ("stop", msg[4], waiting)
        return ("noreply", waiting)

    def _join(self, payload: Any, from_: tuple, socket: Any) -> Any:
        socket.channel_pid = actors.self()
        actors.set_label(("channel", socket.topic))
        observed = not _logger.joined_unobserved(self.channel)
        start = time.monotonic_ns() if observed else 0
        result = self.channel.join(socket.topic, payload, socket)
        reply_msg: tuple[str, Any]
        if result.__class__ is tuple and len(result) == 2 and result[0] == "ok":
            reply_msg, state = ("ok", {}), self._after_join(result[1])
        elif result.__class__ is tuple and len(result) == 3 and result[0] == "ok":
            reply_msg, state = ("ok", result[1]), self._after_join(result[2])
        elif result.__class__ is tuple and len(result) == 2 and result[0] == "error":
            reply_msg, state = ("error", result[1]), ("stop", "shutdown", socket)
        else:
            raise actors.BadReturnError(
                f"{type(self.channel).__qualname__}.join", result, "('ok', socket) | ('ok', reply, socket) | ('error', reply)"
            )
        if observed:
            _telemetry.execute(
                ("phoenix", "channel_joined"),
                {"duration": time.monotonic_ns() - start},
                {"params": payload, "socket": socket, "result": reply_msg[0]},
            )
        actors.reply(from_, reply_msg)
        if (
            reply_msg[0] == "ok"
            and self.channel.hibernate_after_join
            and self.channel.hibernate_after is not None
            and not rt._current().mailbox
        ):
            # Joined and nothing to do (no message to itself, as an after_join sends):
            # the greenlet goes back to the pool now, not after hibernate_after.
            return ("noreply", state[1], "hibernate")
        return state

    def _after_join(self, socket: Any) -> Any:
        if socket.pubsub_server is None:
            raise RuntimeError("the socket's endpoint has no pubsub_server configured")
        actors.monitor(socket.transport_pid)
        fastlane = Fastlane(("fastlane", socket.transport_pid, socket.serializer, _intercepts(self.channel.intercept)))
        pubsub.subscribe(socket.pubsub_server, socket.topic, fastlane)
        socket.joined = True
        return ("noreply", socket)

    # -- messages -------------------------------------------------------------------------

    def _handle_in(self, msg: Message, socket: Any) -> Any:
        socket.ref = msg.ref
        if _logger.handled_in_unobserved(socket.channel):
            # The usual case: skip the clock and the event's two dicts on every message.
            return self._handle_in_result(self.channel.handle_in(msg.event, msg.payload, socket))
        start = time.monotonic_ns()
        result = self.channel.handle_in(msg.event, msg.payload, socket)
        _telemetry.execute(
            _HANDLED_IN,
            {"duration": time.monotonic_ns() - start},
            {"ref": msg.ref, "event": msg.event, "params": msg.payload, "socket": socket},
        )
        return self._handle_in_result(result)

    def _handle_in_result(self, result: Any) -> Any:
        if result.__class__ is tuple and result and result[0] == "reply" and len(result) == 3:
            socket = result[2]
            self._send_reply(socket, result[1], "handle_in")
            socket.ref = None
            return ("noreply", socket)
        if result.__class__ is tuple and result and result[0] == "stop" and len(result) == 4:
            socket = result[3]
            self._send_reply(socket, result[2], "handle_in")
            return self._result(("stop", result[1], socket), "handle_in")
        return self._result(result, "handle_in")

    def _send_reply(self, socket: Any, result: Any, callback: str) -> None:
        status, payload = _reply_parts(result, lambda: f"{type(self.channel).__qualname__}.{callback} reply")
        frame = socket.serializer.encode(
            Reply(topic=socket.topic, status=status, payload=payload, ref=socket.ref, join_ref=socket.join_ref)
        )
        _transport.push(socket.transport_pid, ("socket_push", frame[0], frame[1]))

    def _result(self, result: Any, callback: str) -> Any:
        if result.__class__ is tuple and result:
            kind = result[0]
            if kind == "noreply" and len(result) in (2, 3):
                result[1].ref = None
                return result
            if kind == "stop" and len(result) == 3:
                reason, socket = result[1], result[2]
                if _is_graceful(reason):
                    actors.send(socket.transport_pid, ("socket_close", actors.self(), reason))
                return result
        expected = _HANDLE_IN_RESULTS if callback == "handle_in" else _NOREPLY_RESULTS
        raise actors.BadReturnError(f"{type(self.channel).__qualname__}.{callback}", result, expected)


# Intercept lists as frozensets, one per distinct list (a channel class's), not one per join.
_INTERCEPTS: dict[tuple, frozenset] = {}


def _intercepts(events: Any) -> frozenset:
    key = tuple(events)
    found = _INTERCEPTS.get(key)
    if found is None:
        found = frozenset(key)
        if len(_INTERCEPTS) < 1_000:  # lists built per join (unusual) are not kept
            _INTERCEPTS[key] = found
    return found


def _is_graceful(reason: Any) -> bool:
    if reason.__class__ is str:
        return reason in ("normal", "shutdown")
    return reason.__class__ is tuple and len(reason) == 2 and reason[0].__class__ is str and reason[0] == "shutdown"


__all__ += ["ChannelServer", "JOIN_MESSAGE"]
