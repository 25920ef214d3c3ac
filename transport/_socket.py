"""Phoenix.Socket: the socket struct, the handler a user writes, and the transport's state.

A user describes a socket by subclassing :class:`SocketHandler`::

    class UserSocket(SocketHandler):
        channels = [
            ("room:*", RoomChannel),                        # trailing splat
            ("numbers:positive", NumbersChannel, {"assigns": {"sign": 1}}),
        ]

        def connect(self, params, socket, connect_info):
            return ("ok", socket.assign(user_id=params.get("user_id")))

        def id(self, socket):
            return f"users_socket:{socket.assigns['user_id']}"

``connect`` may return ``('ok', socket)``, ``'error'`` or ``('error', reason)`` (an
endpoint's error handler maps the reason to a response); a two-argument
``connect(self, params, socket)`` is accepted too. ``id`` names the socket: a
``disconnect`` broadcast to that topic closes every socket with the id.

Options (class attributes) and defaults: ``log = 'info'`` (or False), ``partitions =
None`` (CPU cores), ``max_channels_per_transport = 100``.

:class:`SocketConnection` is the transport process's state (Phoenix keeps it in the
transport process): it decodes frames, routes them to channel processes, and answers
heartbeats, joins, leaves, duplicate joins and channel exits exactly as Phoenix 1.7.24.
"""

from __future__ import annotations

import functools
import inspect
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import actors
from actors import TIMEOUT, Pid

from . import _logger, _telemetry, _transport, pubsub
from ._message import Broadcast, InvalidMessageError, Message, Reply
from .serializers import negotiate

log = logging.getLogger("transport.socket")

__all__ = ["Socket", "SocketConnection", "SocketHandler", "connect"]

Frame = tuple  # (opcode, data): ('text', str) | ('binary', bytes)


@dataclass(slots=True)
class Socket:
    """What a socket knows; each channel gets its own copy at join (as in Phoenix)."""

    assigns: dict[str, Any] = field(default_factory=dict)
    channel: Any = None
    channel_pid: Pid | None = None
    endpoint: Any = None
    handler: Any = None
    id: str | None = None
    joined: bool = False
    join_ref: str | None = None
    private: dict[str, Any] = field(default_factory=dict)
    pubsub_server: str | None = None
    ref: str | None = None
    serializer: Any = None
    topic: str | None = None
    transport: str | None = None
    transport_pid: Pid | None = None

    def assign(self, *pairs: Any, **assigns: Any) -> Socket:
        """A copy with assigns merged: ``assign(key, value)``, ``assign(mapping)`` or ``assign(k=v)``."""
        merged = dict(self.assigns)
        if len(pairs) == 2 and isinstance(pairs[0], str):
            merged[pairs[0]] = pairs[1]
        elif len(pairs) == 1 and isinstance(pairs[0], dict):
            merged.update(pairs[0])
        elif pairs:
            raise TypeError("assign takes (key, value), a dict, or keyword arguments")
        merged.update(assigns)
        return replace(self, assigns=merged)


def _topic_matcher(pattern: str) -> tuple[str, bool]:
    if not isinstance(pattern, str):
        raise TypeError(f"channel topic pattern must be a str, got {pattern!r}")
    head, star, tail = pattern.partition("*")
    if star and (tail or "*" in tail):
        raise ValueError(f"channels using splat patterns must end with *: {pattern!r}")
    return (head, bool(star))


class SocketHandler:
    """Base class of a user socket (Phoenix's ``use Phoenix.Socket`` module)."""

    channels: list[tuple] = []
    log: Any = "info"
    partitions: int | None = None
    max_channels_per_transport: int = 100

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        routes = []
        for route in cls.channels:
            if not isinstance(route, tuple) or len(route) not in (2, 3):
                raise TypeError(f"{cls.__name__}.channels entries are (pattern, channel[, opts]); got {route!r}")
            head, splat = _topic_matcher(route[0])
            opts = route[2] if len(route) == 3 else {}
            if not isinstance(opts, dict):
                raise TypeError(f"{cls.__name__}.channels options must be a dict; got {opts!r}")
            routes.append((head, splat, route[1], opts))
        # Declaration order, as Phoenix's generated function clauses: first match wins.
        cls._routes = tuple(routes)

    _routes: tuple = ()

    @classmethod
    def channel_for(cls, topic: Any) -> tuple[Any, dict] | None:
        """The (channel, opts) routed for ``topic``, first declared wins; None if unmatched."""
        if topic.__class__ is not str:
            return None
        for head, splat, channel, opts in cls._routes:
            if topic.startswith(head) if splat else topic == head:
                return channel, opts
        return None

    def connect(self, params: dict, socket: Socket, connect_info: dict) -> Any:
        """Authenticate; return ('ok', socket), 'error' or ('error', reason). Default: accept."""
        return ("ok", socket)

    def id(self, socket: Socket) -> str | None:
        """The socket's id topic, or None for an anonymous socket."""
        return None


# ------------------------------------------------------------------------------------------
# connect (runs before the transport process exists, e.g. in the HTTP handler)
# ------------------------------------------------------------------------------------------


def connect(
    handler_cls: type[SocketHandler],
    *,
    endpoint: Any,
    transport: str,
    params: dict,
    connect_info: dict,
    serializers: list,
) -> Any:
    """Phoenix's ``__connect__``: ('ok', SocketConnection) | 'error' | ('error', reason)."""
    # Elixir's `params["vsn"] || "1.0.0"`: only a missing vsn defaults; "" is refused.
    vsn = params.get("vsn")
    observed = not _logger.connected_unobserved(handler_cls)  # usually not: no clock, no event
    start = time.monotonic_ns() if observed else 0
    serializer = negotiate(serializers, vsn)  # logs Phoenix's warning when it refuses
    if serializer is None:
        return "error"
    result = _user_connect(handler_cls, endpoint, transport, serializer, params, connect_info)
    if not observed:
        return result
    if vsn is None:
        vsn = "1.0.0"
    _telemetry.execute(
        ("phoenix", "socket_connected"),
        {"duration": time.monotonic_ns() - start},
        {
            "endpoint": endpoint,
            "transport": transport,
            "params": params,
            "connect_info": connect_info,
            "vsn": vsn,
            "user_socket": handler_cls,
            "log": handler_cls.log,
            "result": "ok" if isinstance(result, tuple) and result[0] == "ok" else "error",
            "serializer": serializer,
        },
    )
    return result


def _user_connect(
    handler_cls: type[SocketHandler], endpoint: Any, transport: str, serializer: Any, params: dict, connect_info: dict
) -> Any:
    handler = handler_cls()
    socket = Socket(
        handler=handler_cls,
        endpoint=endpoint,
        pubsub_server=getattr(endpoint, "pubsub_server", None),
        serializer=serializer,
        transport=transport,
    )
    if _connect_arity(handler_cls) >= 3:  # type: ignore[arg-type]  # a class is hashable
        result = handler.connect(params, socket, connect_info)
    else:
        result = handler.connect(params, socket)  # type: ignore[call-arg]  # Phoenix's connect/2
    if isinstance(result, tuple) and len(result) == 2 and result[0] == "ok" and isinstance(result[1], Socket):
        socket = result[1]
        sid = handler.id(socket)
        if sid is not None and not isinstance(sid, str):
            log.warning("%s.id returned invalid identifier %r. Expected None or a string.", handler_cls.__name__, sid)
            return "error"
        socket.id = sid
        return ("ok", SocketConnection(handler_cls, socket))
    if isinstance(result, str) and result == "error":
        return "error"
    if isinstance(result, tuple) and len(result) == 2 and result[0] == "error":
        return result
    log.error(
        "%s.connect returned invalid value %r. Expected ('ok', socket), ('error', reason) or 'error'",
        handler_cls.__name__,
        result,
    )
    return "error"


@functools.cache
def _connect_arity(handler_cls: type) -> int:
    """How many arguments the handler's ``connect`` takes (once per class, not per connect)."""
    return _arity(handler_cls().connect)


def _arity(fn: Callable) -> int:
    try:
        return len(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return 3


# ------------------------------------------------------------------------------------------
# The transport process's state
# ------------------------------------------------------------------------------------------


class SocketConnection:
    """Per-connection state owned by the transport process (frames in, frames out).

    ``handle_in`` / ``handle_info`` return None (nothing to send), ``('push', frame)``,
    ``('reply', status, frame)`` or ``('stop', reason)`` — the WebSock lifecycle's results.
    """

    __slots__ = ("handler", "socket", "channels", "channels_inverse", "max_channels", "mistakes")

    def __init__(self, handler: type[SocketHandler], socket: Socket) -> None:
        self.handler = handler
        self.socket = socket
        # topic -> [pid, monitor_ref, status]; pid -> (topic, join_ref)
        self.channels: dict[str, list] = {}
        self.channels_inverse: dict[Pid, tuple[str, Any]] = {}
        self.max_channels = handler.max_channels_per_transport
        # Client mistakes by kind, counted after the first was logged (None: none yet).
        self.mistakes: dict[str, int] | None = None

    # -- lifecycle ---------------------------------------------------------------------

    def init(self) -> None:
        """Run in the transport process once it exists (Phoenix's ``__init__``)."""
        socket = self.socket
        socket.transport_pid = actors.self()
        if socket.id is not None and socket.pubsub_server is not None:
            pubsub.subscribe(socket.pubsub_server, socket.id)

    def handle_in(self, data: Any, opcode: str) -> Any:
        """A frame from the client. Raises InvalidMessageError for an undecodable one."""
        message = self.socket.serializer.decode(data, opcode)
        return self._route(message)

    def handle_info(self, msg: Any) -> Any:
        """A message to the transport process (Phoenix's ``__info__``)."""
        cls = msg.__class__
        if cls is tuple and msg:
            tag = msg[0]
            if tag.__class__ is not str:
                return None
            if tag == "socket_push" and len(msg) == 3:
                return ("push", (msg[1], msg[2]))
            if tag == "DOWN" and len(msg) == 5:
                return self._channel_down(msg[1], msg[3], msg[4])
            if tag == "socket_close" and len(msg) == 3:
                return self._socket_close(msg[1])
        elif cls is Broadcast:
            if msg.event == "disconnect":
                return ("stop", ("shutdown", "disconnected"))
            return None
        elif cls is str and msg == "socket_drain":
            return ("stop", ("shutdown", "restart"))
        elif cls is str and msg == "garbage_collect":
            import gc

            gc.collect(0)
        return None

    def terminate(self, reason: Any) -> None:
        """The transport is going away; channels notice through their monitors."""
        mistakes = self.mistakes
        if mistakes and any(count > 1 for count in mistakes.values()):
            log.warning(
                "socket %s (%s) closed after repeating client mistakes: %s",
                actors.self(),
                self.handler.__name__,
                ", ".join(f"{kind} x{count}" for kind, count in sorted(mistakes.items())),
            )

    def _mistake(self, kind: str, message: str, *args: Any) -> None:
        """Log a client's mistake the first time this socket makes it; count the repeats."""
        mistakes = self.mistakes
        if mistakes is None:
            mistakes = self.mistakes = {}
        count = mistakes.get(kind, 0)
        mistakes[kind] = count + 1
        if not count:
            log.warning(message, *args)

    # -- routing -----------------------------------------------------------------------

    def _route(self, message: Message) -> Any:
        topic = message.topic
        entry = self.channels.get(topic) if topic.__class__ is str else None
        event = message.event
        if entry is None:
            if topic == "phoenix" and event == "heartbeat":
                return self._reply(Reply(topic="phoenix", status="ok", payload={}, ref=message.ref, join_ref=None))
            if event == "phx_join":
                return self._join(message)
            if event == "phx_leave":
                return self._reply(Reply(topic=topic, status="ok", payload={}, ref=message.ref, join_ref=message.join_ref))
            return self._ignore(message)
        pid = entry[0]
        if event == "phx_join":
            return self._duplicate_join(entry, message)
        if event == "phx_leave":
            stored = self.channels_inverse.get(pid)
            # The V1 protocol has no join_ref: None matches too.
            if stored is not None and stored[0] == topic and (stored[1] == message.join_ref or message.join_ref is None):
                actors.send(pid, message)
                entry[2] = "leaving"
            # else: the client raced a server-side close; phx_close is already on its way
            return None
        actors.send(pid, message)
        return None

    def _join(self, message: Message) -> Any:
        topic = message.topic
        route = self.handler.channel_for(topic)
        if route is None:
            self._mistake("unmatched topic", 'Ignoring unmatched topic "%s" in %s', topic, self.handler.__name__)
            return self._ignore(message)
        if len(self.channels) >= self.max_channels:
            self._mistake(
                "too many channels",
                'Rejecting join for topic "%s" in %s: max_channels_per_transport (%s) reached',
                topic,
                self.handler.__name__,
                self.max_channels,
            )
            return self._reply(
                Reply(
                    topic=topic,
                    status="error",
                    payload={"reason": "too many channels joined"},
                    ref=message.ref,
                    join_ref=message.join_ref,
                ),
                status="error",
            )
        channel, opts = route
        result = _channel.join(self.socket, channel, message, opts)
        if result[0] == "ok":
            _status, reply, pid, ref = result
            self.channels[topic] = [pid, ref, "joined"]
            self.channels_inverse[pid] = (topic, message.join_ref)
            return self._reply(Reply(topic=topic, status="ok", payload=reply, ref=message.ref, join_ref=message.join_ref))
        return self._reply(
            Reply(topic=topic, status="error", payload=result[1], ref=message.ref, join_ref=message.join_ref), status="error"
        )

    def _duplicate_join(self, entry: list, message: Message) -> Any:
        pid, _ref, status = entry
        # A close the old channel already queued is superseded by this join.
        if (
            actors.receive(
                lambda m: m.__class__ is tuple and len(m) == 3 and m[0] == "socket_close" and m[1] == pid, 0, default=None
            )
            is None
        ):
            if status != "leaving":
                log.debug(
                    'Duplicate channel join for topic "%s" in %s. Closing existing channel for new join.',
                    message.topic,
                    self.handler.__name__,
                )
        _shutdown_duplicate_channel(pid)
        closed = self._socket_close(pid)
        if closed is not None:
            _push, (opcode, data) = closed
            # Queued behind this join's reply, so the client sees the new reply first.
            _transport.push(actors.self(), ("socket_push", opcode, data))
        return self._join(message)

    def _channel_down(self, ref: Any, pid: Pid, reason: Any) -> Any:
        stored = self.channels_inverse.get(pid)
        if stored is None:
            return None
        topic, join_ref = stored
        self._delete_channel(pid, topic, ref)
        return self._push(Message(topic=topic, event="phx_error", payload={}, ref=join_ref, join_ref=join_ref))

    def _socket_close(self, pid: Pid) -> Any:
        stored = self.channels_inverse.get(pid)
        if stored is None:
            return None
        topic, join_ref = stored
        self._delete_channel(pid, topic, self.channels[topic][1])
        return self._push(Message(topic=topic, event="phx_close", payload={}, ref=join_ref, join_ref=join_ref))

    def _delete_channel(self, pid: Pid, topic: str, ref: Any) -> None:
        actors.demonitor(ref, flush=True)
        self.channels.pop(topic, None)
        self.channels_inverse.pop(pid, None)

    # -- frames --------------------------------------------------------------------------

    def _reply(self, reply: Reply, status: str = "ok") -> Any:
        return ("reply", status, self.socket.serializer.encode(reply))

    def _push(self, message: Message) -> Any:
        return ("push", self.socket.serializer.encode(message))

    def _ignore(self, message: Message) -> Any:
        return self._reply(
            Reply(topic=message.topic, status="error", payload={"reason": "unmatched topic"}, ref=message.ref, join_ref=None),
            status="error",
        )


def _shutdown_duplicate_channel(pid: Pid) -> None:
    ref = actors.monitor(pid)
    actors.exit(pid, ("shutdown", "duplicate_join"))
    down = lambda m: m.__class__ is tuple and len(m) == 5 and m[1] is ref and m[0] == "DOWN"  # noqa: E731
    if actors.receive(down, 5.0, default=TIMEOUT) is TIMEOUT:
        actors.exit(pid, "kill")
        actors.receive(down)


__all__ += ["InvalidMessageError"]


# Last: _channel imports this module's Socket, and _join needs _channel's join.
from . import _channel  # noqa: E402
