"""The asyncio driver: :class:`AsyncSocket` and :class:`AsyncChannel` over the sans-I/O core.

WebSocket through the ``websockets`` library's asyncio client; LongPoll through
:class:`~transport.client._longpoll.LongPollSession` (urllib3) run in worker threads:
at most one poll and one POST per socket are in flight, so two threads carry it, and a
second HTTP stack (aiohttp, httpx) would buy nothing a LongPoll client needs.

The core is only touched from the event loop's thread; the clock is ``loop.time()``.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from .._message import Message
from ._core import Close, Open, Send
from ._driver import ChannelBase, SocketBase, call_safely, refused
from ._errors import ConnectError, JoinError, PushTimeout
from ._longpoll import LongPollSession, describe_close

if TYPE_CHECKING:
    pass

__all__ = ["AsyncChannel", "AsyncSocket", "AsyncSubscription"]

log = logging.getLogger("transport.client")

_END = object()


class AsyncSubscription:
    """A bounded queue of a channel's messages; iterate it, or :meth:`get` one.

    When full, the oldest message is dropped (``dropped`` counts them). Iteration ends when
    the channel closes.
    """

    def __init__(self, channel: AsyncChannel, maxsize: int, events: set[str] | None) -> None:
        self._channel = channel
        self._queue: collections.deque = collections.deque()
        self._maxsize = maxsize
        self._events = events
        self._waiter: asyncio.Future | None = None
        self.dropped = 0

    def _put(self, msg: Any) -> None:
        if msg is not _END and self._events is not None and msg.event not in self._events:
            return
        if msg is not _END and len(self._queue) >= self._maxsize:
            self._queue.popleft()
            self.dropped += 1
        self._queue.append(msg)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _end(self) -> None:
        self._put(_END)

    async def get(self, timeout: float | None = None) -> Message:
        """The next message; TimeoutError after ``timeout``; EOFError once the channel closed."""
        while not self._queue:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await asyncio.wait_for(self._waiter, timeout)
            finally:
                self._waiter = None
        msg = self._queue[0]
        if msg is _END:
            raise EOFError(f"{self._channel.topic} is closed")
        return self._queue.popleft()

    def close(self) -> None:
        """Stop receiving."""
        try:
            self._channel._subscriptions.remove(self)
        except ValueError:
            pass

    def __aiter__(self) -> AsyncSubscription:
        return self

    async def __anext__(self) -> Message:
        try:
            return await self.get()
        except EOFError:
            raise StopAsyncIteration from None


class AsyncChannel(ChannelBase):
    """A channel of an :class:`AsyncSocket` (phoenix.js's ``Channel``)."""

    async def join(self, timeout: float | None = None) -> Any:
        """Join; the server's response. JoinError / JoinTimeout (the channel is then closed)."""
        socket = self._socket
        now = socket._now()
        future = socket._loop_future()
        push = self._core.join(now, timeout)
        socket._pending[push] = (future, push.timeout)
        socket._pump()
        try:
            return await future
        except (JoinError, PushTimeout):
            self._core.abandon(socket._now())
            socket._channels.pop(self._core, None)
            socket._pump()
            raise

    def push_nowait(self, event: str, payload: Any = None, timeout: float | None = None) -> asyncio.Future:
        """Push; a future of the reply's response (PushError / PushTimeout)."""
        socket = self._socket
        future = socket._loop_future()
        push = self._core.push(event, {} if payload is None else payload, socket._now(), timeout)
        socket._pending[push] = (future, push.timeout)
        future.add_done_callback(_retrieve)
        socket._pump()
        return future

    async def push(self, event: str, payload: Any = None, timeout: float | None = None) -> Any:
        """Push and wait for the reply: its response on ``ok``; PushError / PushTimeout otherwise."""
        return await self.push_nowait(event, payload, timeout)

    async def leave(self, timeout: float | None = None) -> None:
        """Leave; returns once the server answered (or the timeout passed)."""
        socket = self._socket
        future = socket._loop_future()
        push = self._core.leave(socket._now(), timeout)
        if push.done:
            future.set_result(None)
        else:
            socket._pending[push] = (future, push.timeout)
        socket._pump()
        try:
            await future
        except Exception:
            pass

    def messages(self, maxsize: int | None = None, events: set[str] | None = None) -> AsyncSubscription:
        """A subscription to this channel's messages (all, or only ``events``), from now on."""
        sub = AsyncSubscription(self, maxsize or self._socket.options.max_queue, events)
        self._subscriptions.append(sub)
        return sub

    def __aiter__(self) -> AsyncIterator[Message]:
        return self.messages()


def _retrieve(future: asyncio.Future) -> None:
    if not future.cancelled():
        future.exception()


class _WsConnection:
    """One WebSocket: a writer task sends frames in order, then closes when asked."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.queue: collections.deque = collections.deque()
        self.wakeup = asyncio.Event()
        self.closing: tuple[int, str] | None = None
        self.task = asyncio.get_running_loop().create_task(self._writer())

    def send(self, frame: tuple[str, Any]) -> None:
        self.queue.append(frame[1])
        self.wakeup.set()

    def close(self, code: int, reason: str) -> None:
        self.closing = (code, reason)
        self.wakeup.set()

    async def _writer(self) -> None:
        ws = self.ws
        try:
            while True:
                await self.wakeup.wait()
                self.wakeup.clear()
                while self.queue:
                    await ws.send(self.queue.popleft())
                if self.closing is not None:
                    await ws.close(*self.closing)
                    return
        except Exception as exc:  # the reader sees the close and reports it
            log.debug("WebSocket writer stopped: %r", exc)


class _LongPollConnection:
    """One LongPoll session: the poll loop and the POSTs run in worker threads."""

    def __init__(self, session: LongPollSession, owner: AsyncSocket, conn: int) -> None:
        self.session = session
        self.owner = owner
        self.conn = conn
        self.queue: list = []
        self.wakeup = asyncio.Event()
        self.closed = False
        loop = asyncio.get_running_loop()
        self.tasks = [loop.create_task(self._poller()), loop.create_task(self._sender())]

    def send(self, frame: tuple[str, Any]) -> None:
        self.queue.append(frame)
        self.wakeup.set()

    def close(self, code: int, reason: str) -> None:
        self._finish(code, reason)

    def _finish(self, code: int | None, reason: str, error: Any = None) -> None:
        if self.closed:
            return
        self.closed = True
        for task in self.tasks:
            if task is not asyncio.current_task():
                task.cancel()
        self.owner._conns.pop(self.conn, None)
        loop = asyncio.get_running_loop()
        loop.run_in_executor(None, self.session.close)
        self.owner._closed(self.conn, code, reason, error)

    async def _poller(self) -> None:
        while not self.closed:
            try:
                status, frames = await asyncio.to_thread(self.session.poll)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._finish(1011, "poll failed", ConnectError(str(exc)))
                return
            if self.closed:
                return
            if status == 200:
                owner = self.owner
                for opcode, data in frames:
                    owner._core.receive_frame(self.conn, opcode, data, owner._now())
                owner._pump()
            elif status != 204:
                code, reason = describe_close(status)
                self._finish(code, reason)
                return

    async def _sender(self) -> None:
        while not self.closed:
            await self.wakeup.wait()
            self.wakeup.clear()
            if not self.queue:
                continue
            batch, self.queue = self.queue, []
            try:
                status = await asyncio.to_thread(self.session.send, batch)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._finish(1011, "send failed", ConnectError(str(exc)))
                return
            if status != 200:
                code, reason = describe_close(status)
                self._finish(code, reason)
                return


class AsyncSocket(SocketBase):
    """A Phoenix socket for asyncio (phoenix.js's ``Socket``); options in docs/client.md.

    async with AsyncSocket("ws://127.0.0.1:4000/socket") as socket:
        channel = socket.channel("room:lobby")
        await channel.join()
    """

    def __init__(self, url: str, **opts: Any) -> None:
        super().__init__(url, **opts)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._conns: dict[int, Any] = {}
        self._opening: dict[int, asyncio.Task] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._pumping = False
        self._waiters: list[asyncio.Future] = []

    # --- public ------------------------------------------------------------------------

    async def connect(self, wait: bool = True) -> None:
        """Connect. With ``wait``, return once open, or raise ConnectError if the first
        attempt fails (and stop); ``wait=False`` keeps retrying on the reconnect schedule."""
        self._loop = asyncio.get_running_loop()
        future = None
        if wait:
            future = self._loop.create_future()
            self._waiters.append(future)
        self._core.connect(self._now())
        self._pump()
        if future is not None:
            try:
                await future
            except ConnectError:
                self._core.disconnect(self._now())
                self._pump()
                raise

    async def disconnect(self, code: int = 1000, reason: str = "") -> None:
        """Close for good (no reconnect); returns once the connection is closed."""
        if self._loop is None:
            return
        closed = self._loop.create_future()

        def on_close(*_: Any) -> None:
            if not closed.done():
                closed.set_result(None)

        ref = self.on_close(on_close)
        was = self._core.state
        self._core.disconnect(self._now(), code, reason)
        self._pump()
        try:
            if was in ("connecting", "open", "closing"):
                await asyncio.wait_for(closed, self.options.close_timeout + 1)
        except TimeoutError:
            pass
        finally:
            self.off(ref)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = self._timer_at = None

    def channel(self, topic: str, params: dict | Callable[[], dict] | None = None) -> AsyncChannel:
        """A channel for ``topic``; ``params`` is the join payload."""
        core = self._core.channel(topic, params)
        channel = AsyncChannel(self, core)
        self._channels[core] = channel
        return channel

    async def __aenter__(self) -> AsyncSocket:
        await self.connect()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.disconnect()

    # --- the driver -------------------------------------------------------------------

    def _now(self) -> float:
        loop = self._loop or asyncio.get_running_loop()
        return loop.time()

    def _loop_future(self) -> asyncio.Future:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop.create_future()

    def _resolve(self, future: asyncio.Future, value: Any, exc: BaseException | None) -> None:
        if future.done():
            return
        if exc is None:
            future.set_result(value)
        else:
            future.set_exception(exc)

    def _run(self, fn: Callable[..., Any], *args: Any) -> None:
        call_safely(fn, *args)

    def _connect_result(self, exc: BaseException | None) -> None:
        waiters, self._waiters = self._waiters, []
        for future in waiters:
            self._resolve(future, None, exc)

    def _pump(self) -> None:
        if self._pumping:
            return
        self._pumping = True
        try:
            core = self._core
            while True:
                commands = core.commands()
                events = core.events_received()
                if not commands and not events:
                    break
                for cmd in commands:
                    if isinstance(cmd, Send):
                        conn = self._conns.get(cmd.conn)
                        if conn is not None:
                            conn.send(cmd.frame)
                    elif isinstance(cmd, Open):
                        assert self._loop is not None  # the core opens only after connect() set it
                        self._opening[cmd.conn] = self._loop.create_task(self._open(cmd.conn))
                    elif isinstance(cmd, Close):
                        conn = self._conns.get(cmd.conn)
                        if conn is not None:
                            conn.close(cmd.code, cmd.reason)
                        elif cmd.conn in self._opening:
                            self._opening[cmd.conn].cancel()
                for ev in events:
                    self._dispatch(ev)
        finally:
            self._pumping = False
        self._arm_timer()

    def _arm_timer(self) -> None:
        deadline = self._core.next_deadline()
        if deadline == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = deadline
        if deadline is not None:
            assert self._loop is not None  # a deadline exists only after connect() set it
            self._timer = self._loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = self._timer_at = None
        self._core.advance(self._now())
        self._pump()

    def _closed(self, conn: int, code: int | None, reason: str, error: Any = None) -> None:
        self._core.transport_closed(conn, self._now(), code, reason, error)
        self._pump()

    async def _open(self, conn: int) -> None:
        try:
            if self._transport == "longpoll":
                await self._open_longpoll(conn)
            else:
                await self._open_websocket(conn)
        except asyncio.CancelledError:
            self._closed(conn, None, "cancelled", ConnectError("connection attempt cancelled"))
        finally:
            self._opening.pop(conn, None)

    async def _open_websocket(self, conn: int) -> None:
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed, InvalidStatus

        opts = self.options
        try:
            kwargs = opts.websocket_connect_kwargs(bool(self._core.established))
            ws = await connect(opts.url_for("websocket"), max_queue=None, **kwargs)
        except InvalidStatus as exc:
            self._closed(conn, None, "refused", refused(exc))
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._closed(conn, None, "failed", ConnectError(f"cannot connect to {opts.url}: {exc}"))
            return
        connection = _WsConnection(ws)
        self._conns[conn] = connection
        self._core.transport_opened(conn, self._now())
        self._pump()
        try:
            async for data in ws:
                self._core.receive_frame(conn, "text" if data.__class__ is str else "binary", data, self._now())
                self._pump()
        except ConnectionClosed:
            pass
        except asyncio.CancelledError:
            pass
        finally:
            self._conns.pop(conn, None)
            connection.task.cancel()
            code = ws.close_code
            self._closed(conn, code, ws.close_reason or "")

    async def _open_longpoll(self, conn: int) -> None:
        opts = self.options
        session = LongPollSession(
            opts.url_for("longpoll"), headers=opts.http_headers(), timeout=opts.longpoll_timeout, ssl_context=opts.ssl
        )
        try:
            await asyncio.to_thread(session.open)
        except ConnectError as exc:
            self._closed(conn, None, "refused", exc)
            return
        self._conns[conn] = _LongPollConnection(session, self, conn)
        self._core.transport_opened(conn, self._now(), heartbeat=False)
        self._pump()
