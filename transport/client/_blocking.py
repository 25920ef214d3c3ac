"""The blocking driver: :class:`Socket` and :class:`Channel` for threads (and gevent).

The same API as the asyncio driver with plain calls: ``socket.connect()``,
``channel.join()``, ``channel.push(event, payload, timeout=10)``. WebSocket through the
``websockets`` library's sync client, LongPoll through urllib3.

Threads: one reads each connection, one fires the core's timers, one runs the user's
callbacks (so a callback may itself push and wait for the reply), and a short-lived one
opens or closes each connection. The core is guarded by one lock; frames are written while
it is held, so they leave in the order the core produced them. Under gevent's
``monkey.patch_all()`` these threads are greenlets and nothing else changes.
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TYPE_CHECKING, Any

from .._message import Message
from ._core import Close, Open, Send
from ._driver import ChannelBase, SocketBase, call_safely, refused
from ._errors import ConnectError, JoinError, PushTimeout
from ._longpoll import LongPollSession, describe_close

if TYPE_CHECKING:
    pass

__all__ = ["Channel", "Socket", "Subscription"]

log = logging.getLogger("transport.client")

_END = object()


def _legacy_kwargs() -> dict:
    # websockets 17 wants ``legacy=True`` for a plain (non-reconnecting) connection.
    import inspect

    from websockets.sync.client import connect

    return {"legacy": True} if "legacy" in inspect.signature(connect).parameters else {}


_LEGACY = _legacy_kwargs()


def _wait(future: Future, timeout: float | None = None) -> Any:
    try:
        return future.result(timeout)
    except FutureTimeout:
        # PushTimeout is a TimeoutError too: only a future still pending timed out here.
        if future.done():
            raise
        raise TimeoutError("no answer in time") from None


class Subscription:
    """A bounded queue of a channel's messages; iterate it, or :meth:`get` one.

    When full, the oldest message is dropped (``dropped`` counts them). Iteration ends when
    the channel closes.
    """

    def __init__(self, channel: Channel, maxsize: int, events: set[str] | None) -> None:
        self._channel = channel
        self._queue: collections.deque = collections.deque()
        self._cond = threading.Condition(threading.Lock())
        self._maxsize = maxsize
        self._events = events
        self.dropped = 0

    def _put(self, msg: Any) -> None:
        if msg is not _END and self._events is not None and msg.event not in self._events:
            return
        with self._cond:
            if msg is not _END and len(self._queue) >= self._maxsize:
                self._queue.popleft()
                self.dropped += 1
            self._queue.append(msg)
            self._cond.notify_all()

    def _end(self) -> None:
        self._put(_END)

    def get(self, timeout: float | None = None) -> Message:
        """The next message; TimeoutError after ``timeout``; EOFError once the channel closed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._queue:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(f"no message on {self._channel.topic} within {timeout} s")
                self._cond.wait(remaining)
            if self._queue[0] is _END:
                raise EOFError(f"{self._channel.topic} is closed")
            return self._queue.popleft()

    def close(self) -> None:
        try:
            self._channel._subscriptions.remove(self)
        except ValueError:
            pass

    def __iter__(self) -> Iterator[Message]:
        while True:
            try:
                yield self.get()
            except EOFError:
                return


class Channel(ChannelBase):
    """A channel of a blocking :class:`Socket` (phoenix.js's ``Channel``)."""

    def join(self, timeout: float | None = None) -> Any:
        """Join; the server's response. JoinError / JoinTimeout (the channel is then closed)."""
        socket = self._socket
        future: Future = Future()
        with socket._lock:
            push = self._core.join(time.monotonic(), timeout)
            socket._pending[push] = (future, push.timeout)
            deferred = socket._pump()
        socket._after(deferred)
        try:
            return _wait(future)
        except (JoinError, PushTimeout):
            with socket._lock:
                self._core.abandon(time.monotonic())
                socket._channels.pop(self._core, None)
                deferred = socket._pump()
            socket._after(deferred)
            raise

    def push_nowait(self, event: str, payload: Any = None, timeout: float | None = None) -> Future:
        """Push; a ``concurrent.futures.Future`` of the reply's response."""
        socket = self._socket
        future: Future = Future()
        with socket._lock:
            push = self._core.push(event, {} if payload is None else payload, time.monotonic(), timeout)
            socket._pending[push] = (future, push.timeout)
            deferred = socket._pump()
        socket._after(deferred)
        return future

    def push(self, event: str, payload: Any = None, timeout: float | None = None) -> Any:
        """Push and wait for the reply: its response on ``ok``; PushError / PushTimeout otherwise."""
        return _wait(self.push_nowait(event, payload, timeout))

    def leave(self, timeout: float | None = None) -> None:
        """Leave; returns once the server answered (or the timeout passed)."""
        socket = self._socket
        future: Future = Future()
        with socket._lock:
            push = self._core.leave(time.monotonic(), timeout)
            if push.done:
                future.set_result(None)
            else:
                socket._pending[push] = (future, push.timeout)
            deferred = socket._pump()
        socket._after(deferred)
        try:
            _wait(future)
        except Exception:
            pass

    def messages(self, maxsize: int | None = None, events: set[str] | None = None) -> Subscription:
        """A subscription to this channel's messages (all, or only ``events``), from now on."""
        sub = Subscription(self, maxsize or self._socket.options.max_queue, events)
        self._subscriptions.append(sub)
        return sub

    def __iter__(self) -> Iterator[Message]:
        return iter(self.messages())


class Socket(SocketBase):
    """A blocking Phoenix socket (phoenix.js's ``Socket``); options in docs/client.md.

    with Socket("ws://127.0.0.1:4000/socket") as socket:
        channel = socket.channel("room:lobby")
        channel.join()
        channel.push("new_msg", {"body": "hi"})
    """

    def __init__(self, url: str, **opts: Any) -> None:
        super().__init__(url, **opts)
        self._lock = threading.RLock()
        self._timer_cond = threading.Condition(self._lock)
        self._conns: dict[int, Any] = {}
        self._calls: queue.SimpleQueue = queue.SimpleQueue()
        self._threads_started = False
        self._waiters: list[Future] = []
        self._stopped = False

    # --- public ------------------------------------------------------------------------

    def connect(self, wait: bool = True, timeout: float | None = None) -> None:
        """Connect. With ``wait``, return once open, or raise ConnectError if the first
        attempt fails (and stop); ``wait=False`` keeps retrying on the reconnect schedule."""
        future: Future = Future()
        with self._lock:
            self._stopped = False
            self._start_threads()
            if wait:
                self._waiters.append(future)
            self._core.connect(time.monotonic())
            deferred = self._pump()
        self._after(deferred)
        if wait:
            try:
                _wait(future, timeout if timeout is not None else self.options.open_timeout * 3 + 5)
            except (ConnectError, TimeoutError):
                self.disconnect()
                raise

    def disconnect(self, code: int = 1000, reason: str = "") -> None:
        """Close for good (no reconnect); returns once the connection is closed."""
        closed = threading.Event()
        ref = self.on_close(lambda *_: closed.set())
        with self._lock:
            was = self._core.state
            self._core.disconnect(time.monotonic(), code, reason)
            deferred = self._pump()
        self._after(deferred)
        if was in ("connecting", "open", "closing"):
            closed.wait(self.options.close_timeout + 1)
        self.off(ref)
        with self._lock:
            self._stopped = True
            self._timer_cond.notify_all()

    def channel(self, topic: str, params: dict | Callable[[], dict] | None = None) -> Channel:
        """A channel for ``topic``; ``params`` is the join payload."""
        with self._lock:
            core = self._core.channel(topic, params)
            channel = Channel(self, core)
            self._channels[core] = channel
        return channel

    def __enter__(self) -> Socket:
        self.connect()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.disconnect()

    # --- the driver -------------------------------------------------------------------

    def _start_threads(self) -> None:
        if self._threads_started:
            return
        self._threads_started = True
        threading.Thread(target=self._timer_loop, name="phx-client-timers", daemon=True).start()
        threading.Thread(target=self._callback_loop, name="phx-client-callbacks", daemon=True).start()

    def _resolve(self, future: Future, value: Any, exc: BaseException | None) -> None:
        if future.done():
            return
        if exc is None:
            future.set_result(value)
        else:
            future.set_exception(exc)

    def _run(self, fn: Callable[..., Any], *args: Any) -> None:
        self._calls.put((fn, args))

    def _connect_result(self, exc: BaseException | None) -> None:
        waiters, self._waiters = self._waiters, []
        for future in waiters:
            self._resolve(future, None, exc)

    def _pump(self) -> list:
        """Carry out the core's commands (lock held); the events, for :meth:`_after`."""
        core = self._core
        events: list = []
        while True:
            commands = core.commands()
            new = core.events_received()
            if not commands and not new:
                break
            events.extend(new)
            for cmd in commands:
                if isinstance(cmd, Send):
                    conn = self._conns.get(cmd.conn)
                    if conn is not None:
                        conn.send(cmd.frame)
                elif isinstance(cmd, Open):
                    threading.Thread(target=self._open, args=(cmd.conn,), name="phx-client-conn", daemon=True).start()
                elif isinstance(cmd, Close):
                    conn = self._conns.get(cmd.conn)
                    if conn is not None:
                        threading.Thread(target=conn.close, args=(cmd.code, cmd.reason), daemon=True).start()
        self._timer_cond.notify_all()
        return events

    def _after(self, events: list) -> None:
        """Dispatch events outside the lock: futures resolve here, callbacks on their thread."""
        if not events:
            return
        with self._lock:
            # Dispatch reads driver tables; callbacks themselves run on the callback thread.
            for ev in events:
                self._dispatch(ev)

    def _feed(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        with self._lock:
            fn(*args, **kwargs)
            deferred = self._pump()
        self._after(deferred)

    def _timer_loop(self) -> None:
        with self._lock:
            while True:
                if self._stopped and self._core.state == "closed":
                    self._threads_started = False
                    self._calls.put(None)
                    return
                deadline = self._core.next_deadline()
                now = time.monotonic()
                if deadline is not None and deadline <= now:
                    self._core.advance(now)
                    deferred = self._pump()
                    self._lock.release()
                    try:
                        self._after(deferred)
                    finally:
                        self._lock.acquire()
                    continue
                self._timer_cond.wait(None if deadline is None else max(0.0, deadline - now) + 0.0005)

    def _callback_loop(self) -> None:
        while True:
            item = self._calls.get()
            if item is None:
                return
            fn, args = item
            call_safely(fn, *args)

    def _closed(self, conn: int, code: int | None, reason: str, error: Any = None) -> None:
        self._feed(self._core.transport_closed, conn, time.monotonic(), code, reason, error)

    def _open(self, conn: int) -> None:
        try:
            if self._transport == "longpoll":
                self._open_longpoll(conn)
            else:
                self._open_websocket(conn)
        except Exception as exc:  # a bug here must not leave the socket "connecting" for ever
            log.exception("the connection thread failed")
            self._closed(conn, None, "failed", ConnectError(f"connection failed: {exc!r}"))

    def _open_websocket(self, conn: int) -> None:
        from websockets.exceptions import ConnectionClosed, InvalidStatus
        from websockets.sync.client import connect

        opts = self.options
        try:
            ws = connect(opts.url_for("websocket"), **opts.websocket_connect_kwargs(bool(self._core.established)), **_LEGACY)
        except InvalidStatus as exc:
            self._closed(conn, None, "refused", refused(exc))
            return
        except Exception as exc:
            self._closed(conn, None, "failed", ConnectError(f"cannot connect to {opts.url}: {exc}"))
            return
        connection = _SyncWs(ws)
        with self._lock:
            self._conns[conn] = connection
        self._feed(self._core.transport_opened, conn, time.monotonic())
        try:
            for data in ws:
                self._feed(self._core.receive_frame, conn, "text" if data.__class__ is str else "binary", data, time.monotonic())
        except ConnectionClosed:
            pass
        except Exception as exc:  # e.g. a socket error under gevent
            log.debug("WebSocket reader stopped: %r", exc)
        finally:
            with self._lock:
                self._conns.pop(conn, None)
            self._closed(conn, ws.close_code, ws.close_reason or "")

    def _open_longpoll(self, conn: int) -> None:
        opts = self.options
        session = LongPollSession(
            opts.url_for("longpoll"), headers=opts.http_headers(), timeout=opts.longpoll_timeout, ssl_context=opts.ssl
        )
        try:
            session.open()
        except ConnectError as exc:
            self._closed(conn, None, "refused", exc)
            return
        connection = _SyncLongPoll(session, self, conn)
        with self._lock:
            self._conns[conn] = connection
        self._feed(self._core.transport_opened, conn, time.monotonic(), heartbeat=False)
        connection.start()


class _SyncWs:
    def __init__(self, ws: Any) -> None:
        self.ws = ws

    def send(self, frame: tuple[str, Any]) -> None:
        try:
            self.ws.send(frame[1])
        except Exception as exc:  # the reader sees the close and reports it
            log.debug("WebSocket send failed: %r", exc)

    def close(self, code: int, reason: str) -> None:
        try:
            self.ws.close(code, reason)
        except Exception as exc:
            log.debug("WebSocket close failed: %r", exc)


class _SyncLongPoll:
    """One LongPoll session: a poll thread and a sender thread."""

    def __init__(self, session: LongPollSession, owner: Socket, conn: int) -> None:
        self.session = session
        self.owner = owner
        self.conn = conn
        self.queue: list = []
        self.cond = threading.Condition()
        self.closed = False

    def start(self) -> None:
        threading.Thread(target=self._poller, name="phx-client-poll", daemon=True).start()
        threading.Thread(target=self._sender, name="phx-client-post", daemon=True).start()

    def send(self, frame: tuple[str, Any]) -> None:
        with self.cond:
            self.queue.append(frame)
            self.cond.notify()

    def close(self, code: int, reason: str) -> None:
        self._finish(code, reason)

    def _finish(self, code: int | None, reason: str, error: Any = None) -> None:
        with self.cond:
            if self.closed:
                return
            self.closed = True
            self.cond.notify_all()
        with self.owner._lock:
            self.owner._conns.pop(self.conn, None)
        self.owner._closed(self.conn, code, reason, error)

    def _poller(self) -> None:
        owner = self.owner
        while not self.closed:
            try:
                status, frames = self.session.poll()
            except Exception as exc:
                self._finish(1011, "poll failed", ConnectError(str(exc)))
                return
            if self.closed:
                return
            if status == 200:
                with owner._lock:
                    for opcode, data in frames:
                        owner._core.receive_frame(self.conn, opcode, data, time.monotonic())
                    deferred = owner._pump()
                owner._after(deferred)
            elif status != 204:
                self._finish(*describe_close(status))
                return
        self.session.close()

    def _sender(self) -> None:
        while True:
            with self.cond:
                while not self.queue and not self.closed:
                    self.cond.wait()
                if self.closed:
                    return
                batch, self.queue = self.queue, []
            try:
                status = self.session.send(batch)
            except Exception as exc:
                self._finish(1011, "send failed", ConnectError(str(exc)))
                return
            if status != 200:
                self._finish(*describe_close(status))
                return
