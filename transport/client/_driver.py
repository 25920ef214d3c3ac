"""What the asyncio and blocking drivers share: options, callbacks, event dispatch."""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from typing import Any

from .._message import Message
from ._core import (
    ChannelClosed,
    ChannelCore,
    ChannelErrored,
    ChannelEvent,
    Closed,
    Joined,
    Opened,
    ProtocolError,
    PushDone,
    SocketCore,
    TransportError,
    default_reconnect_after,
    default_rejoin_after,
    endpoint_url,
    serializer_for,
)
from ._errors import ConnectError, JoinError, JoinTimeout, PushError, PushTimeout

log = logging.getLogger("transport.client")

AUTH_TOKEN_PREFIX = "base64url.bearer.phx."


def refused(exc: Any) -> ConnectError:
    """The error for websockets' ``InvalidStatus``: the server answered the upgrade with an
    HTTP status (a refused ``connect``: 403, or what an error handler chose)."""
    status = exc.response.status_code
    return ConnectError(f"the server refused the connection (HTTP {status})", status, bytes(exc.response.body or b""))


TRANSPORTS = ("websocket", "longpoll")


class Options:
    """Every option of a client socket, with its default (see docs/client.md)."""

    def __init__(
        self,
        url: str,
        *,
        params: dict[str, Any] | Callable[[], dict[str, Any]] | None = None,
        vsn: str = "2.0.0",
        transport: str = "websocket",
        longpoll_fallback: float | None = None,
        timeout: float = 10.0,
        heartbeat_interval: float = 30.0,
        heartbeat_timeout: float | None = None,
        reconnect_after: Callable[[int], float] | None = None,
        rejoin_after: Callable[[int], float] | None = None,
        max_buffered_pushes: int = 1000,
        auth_token: str | Callable[[], str] | None = None,
        headers: dict[str, str] | None = None,
        origin: str | None = None,
        open_timeout: float = 10.0,
        close_timeout: float = 2.0,
        max_frame_size: int | None = 16 * 1024 * 1024,
        longpoll_timeout: float = 20.0,
        max_queue: int = 1000,
        ssl: Any = None,
    ) -> None:
        if transport not in TRANSPORTS:
            raise ValueError(f"transport must be 'websocket' or 'longpoll', got {transport!r}")
        self.serializer = serializer_for(vsn)
        endpoint_url(url, transport, {}, vsn)  # checks the URL now, not at the first connect
        self.url = url
        self.params = params if params is not None else {}
        self.vsn = vsn
        self.transport = transport
        self.longpoll_fallback = longpoll_fallback
        self.open_timeout = open_timeout
        self.close_timeout = close_timeout
        self.max_frame_size = max_frame_size
        self.longpoll_timeout = longpoll_timeout
        self.auth_token = auth_token
        self.headers = dict(headers or {})
        self.origin = origin
        self.max_queue = max_queue
        #: An ``ssl.SSLContext`` for wss:// and https:// (None: the system's defaults), e.g.
        #: one that trusts a private CA or presents a client certificate.
        self.ssl = ssl
        self.core_opts: dict[str, Any] = dict(
            serializer=self.serializer,
            timeout=timeout,
            heartbeat_interval=heartbeat_interval,
            heartbeat_timeout=heartbeat_timeout,
            reconnect_after=reconnect_after or default_reconnect_after,
            rejoin_after=rejoin_after or default_rejoin_after,
            max_buffered_pushes=max_buffered_pushes,
        )

    def url_for(self, transport: str) -> str:
        params = self.params() if callable(self.params) else self.params
        return endpoint_url(self.url, transport, params, self.vsn)

    def subprotocols(self) -> list[str] | None:
        """phoenix.js's ``authToken``: the token in ``Sec-WebSocket-Protocol``."""
        if self.auth_token is None:
            return None
        token = self.auth_token() if callable(self.auth_token) else self.auth_token
        encoded = base64.urlsafe_b64encode(token.encode()).decode().rstrip("=")
        return ["phoenix", AUTH_TOKEN_PREFIX + encoded]

    def websocket_connect_kwargs(self, established: bool) -> dict[str, Any]:
        """What both drivers give websockets' ``connect`` (asyncio's and sync's take the same):
        no library pings (Phoenix's heartbeat is the liveness check), no compression, no
        proxy, our frame limit; the open timeout shortened by ``longpoll_fallback`` until a
        connection has worked."""
        open_timeout = self.open_timeout
        if self.longpoll_fallback is not None and not established:
            open_timeout = min(open_timeout, self.longpoll_fallback)
        kwargs: dict[str, Any] = dict(
            origin=self.origin,
            additional_headers=dict(self.headers) or None,
            subprotocols=self.subprotocols(),
            open_timeout=open_timeout,
            close_timeout=self.close_timeout,
            ping_interval=None,
            max_size=self.max_frame_size,
            compression=None,
            proxy=None,
        )
        if self.ssl is not None:
            kwargs["ssl"] = self.ssl
        return kwargs

    def http_headers(self) -> dict[str, str]:
        headers = dict(self.headers)
        if self.origin is not None:
            headers["Origin"] = self.origin
        if self.auth_token is not None:
            token = self.auth_token() if callable(self.auth_token) else self.auth_token
            headers["X-Phoenix-AuthToken"] = token
        return headers


class Callbacks:
    """A named list of callbacks; one that raises is logged and the others still run."""

    def __init__(self) -> None:
        self._items: list[tuple[int, str, Callable[..., Any]]] = []
        self._next = 0

    def add(self, key: str, fn: Callable[..., Any]) -> int:
        self._next += 1
        self._items.append((self._next, key, fn))
        return self._next

    def remove(self, ref: int) -> None:
        self._items = [item for item in self._items if item[0] != ref]

    def matching(self, key: str) -> list[Callable[..., Any]]:
        return [fn for _, k, fn in self._items if k == key or k == "*" and not key.startswith("$")]


def call_safely(fn: Callable[..., Any], *args: Any) -> None:
    try:
        fn(*args)
    except Exception:
        log.exception("a client callback raised (%r)", fn)


def push_outcome(topic: str, event: str, status: str, response: Any, timeout: float) -> tuple[Any, BaseException | None]:
    """A completed push as (value, exception)."""
    if status == "ok":
        return response, None
    if status == "timeout":
        timeout_cls = JoinTimeout if event == "phx_join" else PushTimeout
        return None, timeout_cls(topic, event, timeout)
    error_cls = JoinError if event == "phx_join" else PushError
    return None, error_cls(topic, event, status, response)


class ChannelBase:
    """The parts of a driver channel that do not wait: state, callbacks, subscriptions."""

    def __init__(self, socket: Any, core: ChannelCore) -> None:
        self._socket = socket
        self._core = core
        self._callbacks = Callbacks()
        self._subscriptions: list[Any] = []

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.topic} {self.state}>"

    @property
    def topic(self) -> str:
        return self._core.topic

    @property
    def state(self) -> str:
        """closed, errored, joined, joining or leaving."""
        return self._core.state

    @property
    def join_ref(self) -> str | None:
        return self._core.join_ref

    def on(self, event: str, callback: Callable[[Message], Any]) -> int:
        """Call ``callback(message)`` for each ``event`` (``"*"``: every event); a ref for :meth:`off`."""
        return self._callbacks.add(event, callback)

    def off(self, ref: int) -> None:
        self._callbacks.remove(ref)

    def on_join(self, callback: Callable[[Any, bool], Any]) -> int:
        """``callback(response, rejoin)`` after every successful join."""
        return self._callbacks.add("$join", callback)

    def on_error(self, callback: Callable[[Any], Any]) -> int:
        """``callback(reason)`` when the channel errors (it will rejoin)."""
        return self._callbacks.add("$error", callback)

    def on_close(self, callback: Callable[[str], Any]) -> int:
        """``callback(reason)`` when the channel closes for good (``"leave"`` or ``"server"``)."""
        return self._callbacks.add("$close", callback)


class SocketBase:
    """Event dispatch shared by the drivers; subclasses resolve futures and run callbacks."""

    _channel_class: type

    def __init__(self, url: str, **opts: Any) -> None:
        self.options = Options(url, **opts)
        self._core = SocketCore(**self.options.core_opts)
        self._channels: dict[ChannelCore, ChannelBase] = {}
        self._callbacks = Callbacks()
        self._pending: dict[Any, tuple[Any, float]] = {}  # Push -> (future, timeout)
        self._transport = self.options.transport
        self._fell_back = False
        self.last_error: BaseException | None = None

    @property
    def state(self) -> str:
        """closed, connecting, open or closing."""
        return self._core.state

    @property
    def is_connected(self) -> bool:
        return self._core.state == "open"

    @property
    def transport(self) -> str:
        """The transport in use: ``websocket`` or ``longpoll`` (after a fallback)."""
        return self._transport

    def on_open(self, callback: Callable[[], Any]) -> int:
        return self._callbacks.add("$open", callback)

    def on_close(self, callback: Callable[[int | None, str], Any]) -> int:
        """``callback(code, reason)`` whenever a connection closes."""
        return self._callbacks.add("$close", callback)

    def on_error(self, callback: Callable[[BaseException], Any]) -> int:
        """``callback(error)`` whenever a connection fails."""
        return self._callbacks.add("$error", callback)

    def on_message(self, callback: Callable[[Message], Any]) -> int:
        """``callback(message)`` for every message to any channel of this socket."""
        return self._callbacks.add("$message", callback)

    def off(self, ref: int) -> None:
        self._callbacks.remove(ref)

    # --- for subclasses --------------------------------------------------------------

    def _resolve(self, future: Any, value: Any, exc: BaseException | None) -> None:
        raise NotImplementedError

    def _run(self, fn: Callable[..., Any], *args: Any) -> None:
        raise NotImplementedError

    def _connect_result(self, exc: BaseException | None) -> None:
        raise NotImplementedError

    def _maybe_fall_back(self, error: BaseException) -> bool:
        """Switch to LongPoll after a WebSocket that never opened, when asked to."""
        opts = self.options
        if opts.longpoll_fallback is None or self._transport != "websocket" or self._core.established:
            return False
        log.info("WebSocket failed (%s): falling back to LongPoll", error)
        self._transport = "longpoll"
        self._fell_back = True
        return True

    def _dispatch(self, ev: Any) -> None:
        cls = ev.__class__
        if cls is ChannelEvent:
            channel = self._channels.get(ev.channel)
            msg = ev.message
            for fn in self._callbacks.matching("$message"):
                self._run(fn, msg)
            if channel is not None:
                for fn in channel._callbacks.matching(msg.event):
                    self._run(fn, msg)
                for sub in channel._subscriptions:
                    sub._put(msg)
        elif cls is PushDone:
            entry = self._pending.pop(ev.push, None)
            if entry is not None:
                future, timeout = entry
                push = ev.push
                value, exc = push_outcome(push.channel.topic, push.event, ev.status, ev.response, timeout)
                self._resolve(future, value, exc)
        elif cls is Joined:
            channel = self._channels.get(ev.channel)
            if channel is not None:
                for fn in channel._callbacks.matching("$join"):
                    self._run(fn, ev.response, ev.rejoin)
        elif cls is ChannelErrored:
            channel = self._channels.get(ev.channel)
            if channel is not None:
                for fn in channel._callbacks.matching("$error"):
                    self._run(fn, ev.reason)
        elif cls is ChannelClosed:
            channel = self._channels.pop(ev.channel, None)
            if channel is not None:
                for fn in channel._callbacks.matching("$close"):
                    self._run(fn, ev.reason)
                for sub in channel._subscriptions:
                    sub._end()
        elif cls is Opened:
            self._connect_result(None)
            for fn in self._callbacks.matching("$open"):
                self._run(fn)
        elif cls is TransportError:
            error = ev.error if isinstance(ev.error, BaseException) else ConnectError(str(ev.error))
            self.last_error = error
            log.debug("connection %d failed: %s", ev.conn, error)
            if not self._maybe_fall_back(error):
                self._connect_result(error)
            for fn in self._callbacks.matching("$error"):
                self._run(fn, error)
        elif cls is Closed:
            log.debug("connection %d closed (%s %r); reconnect in %s", ev.conn, ev.code, ev.reason, ev.reconnect_in)
            for fn in self._callbacks.matching("$close"):
                self._run(fn, ev.code, ev.reason)
        elif cls is ProtocolError:
            log.warning("dropped a frame the client cannot decode: %s", ev.error)
