"""The WebSocket connection: drives the pure :class:`FrameReader` from a gevent socket.

One greenlet reads (``read_message``); any number may send (``send_frame``, ``close``), one
at a time under a lock. The closing handshake, timeouts and the TCP close live here; framing
rules live in ``_frames``.
"""

from __future__ import annotations

import socket as _stdsocket
import ssl as _ssl
import struct
from time import monotonic
from typing import Any

import gevent
from gevent import Timeout
from gevent.event import Event
from gevent.lock import Semaphore
from gevent.socket import socket as _PLAIN_SOCKET
from geventwebsocket import websocket as _gws

from ._exceptions import ConnectionClosed, ProtocolError, WebSocketError, WriteTimeout
from ._frames import (
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    FrameReader,
    encode_close,
    frame_header,
)

__all__ = ["TIMEOUT", "WOULD_BLOCK", "WebSocket", "data_frame"]


class _Marker:
    """A named module constant that pickles back to itself (by its module-level name)."""

    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name

    def __reduce__(self) -> str:
        return self._name


#: What :meth:`WebSocket.read_message` returns when its ``timeout`` passed without a message.
TIMEOUT = _Marker("TIMEOUT")
#: What :meth:`WebSocket.read_nowait` returns when no complete message is buffered.
WOULD_BLOCK = _Marker("WOULD_BLOCK")

ABNORMAL_CLOSURE = 1006
NO_STATUS = 1005

#: Bytes asked of the socket per read. Reads happen only once the socket is readable, so
#: an idle connection holds no buffer of this size.
READ_SIZE = 65536
#: How long ``read_message`` sleeps every ``yield_every`` messages: any positive value
#: makes the hub run a full loop iteration.
YIELD_SECONDS = 1e-6
#: Bytes read back to back (no recv blocked) before the reader gives the loop a turn.
YIELD_BYTES = 1 << 20
#: While failing a connection, input is drained (so the close frame is not lost to a TCP
#: reset) for at most ``close_timeout`` seconds and this many bytes.
LINGER_BYTES = 4 * 1024 * 1024

_LINGER_ABORT = struct.pack("ii", 1, 0)


def data_frame(opcode: str, data: Any) -> bytes:
    """A complete, unmasked, unfragmented text or binary frame: ``("text", str or UTF-8
    bytes)`` or ``("binary", bytes)`` as :meth:`WebSocket.send_frame` takes them."""
    if opcode == "text":
        payload = data.encode("utf-8") if data.__class__ is str else data
        op = OP_TEXT
    elif opcode == "binary":
        if isinstance(data, str):
            raise TypeError("binary frames carry bytes, not str")
        payload = data
        op = OP_BINARY
    else:
        raise ValueError(f"opcode must be 'text' or 'binary', not {opcode!r}")
    n = len(payload)
    if n < 126:
        return bytes((0x80 | op, n)) + payload
    return frame_header(op, n) + payload


class WebSocket(_gws.WebSocket):
    """A server-side WebSocket connection (a gevent-websocket ``WebSocket``, fixed).

    Options (constructor keywords, also plain attributes):

    * ``max_message_size=None``: largest message accepted, in bytes (None: no limit); a
      frame whose header declares more is refused with close 1009 before its payload is read.
    * ``write_timeout=10.0``: seconds one send may take; then the connection is aborted and
      the send raises :class:`WriteTimeout`. None: no limit.
    * ``close_timeout=2.0``: seconds to wait for the peer's close frame (or EOF) after ours
      before the TCP connection is closed anyway.
    * ``yield_every=64``: ``read_message`` lets the hub run a loop iteration (IO, timers)
      after this many messages returned back to back, so a pipelining client cannot hold
      the loop.

    Calls: ``read_message(timeout)`` (one reader greenlet), ``send_frame(opcode, data)`` and
    its non-raising form ``try_send_frame``, ``ping``, ``close(code, reason)`` (returns at
    once), ``wait_closed(timeout)`` (until TCP is closed); gevent-websocket's ``receive`` and
    ``send`` still work on top of them.

    State: ``close_code`` / ``close_reason`` (None / '' while open), ``closed`` (True once our
    close frame was sent or the connection ended). Counters: ``bytes_in``, ``bytes_out``,
    ``frames_in``, ``frames_out``. The socket gets ``TCP_NODELAY`` (one send per frame).
    """

    #: What :meth:`read_nowait` returns when no complete message is buffered.
    would_block = WOULD_BLOCK

    def __init__(
        self,
        environ: dict,
        stream: Any,
        handler: Any,
        *,
        max_message_size: int | None = None,
        write_timeout: float | None = 10.0,
        close_timeout: float = 2.0,
        yield_every: int = 64,
    ) -> None:
        super().__init__(environ, stream, handler)
        # gevent-websocket's reader pieces: this class reads through FrameReader instead.
        self.stream = self.raw_read = self.raw_write = self.utf8validator = None
        self._socket = handler.socket
        # Over TLS the raw socket carries records, not frames: reads and writes go through
        # the SSL object (no writes from pushers, as a partial record cannot be resumed by
        # another writer).
        sock = self._socket
        # gevent's plain socket answers a missing attribute with a raised AttributeError
        # (about 1 µs): it is never TLS, so it is not asked.
        self._tls = sock.__class__ is not _PLAIN_SOCKET and getattr(sock, "_sslobj", None) is not None
        self._rfile = handler.rfile
        try:
            # One sendall per frame already: Nagle would only hold small frames back.
            self._socket.setsockopt(_stdsocket.IPPROTO_TCP, _stdsocket.TCP_NODELAY, 1)
        except (OSError, AttributeError):
            pass
        self._reader = FrameReader(max_message_size)
        self.write_timeout = write_timeout
        self.close_timeout = close_timeout
        self.yield_every = yield_every
        self.close_code: int | None = None
        self.close_reason = ""
        self.bytes_in = 0
        #: ``time.monotonic()`` when bytes last arrived (the idle timeout counts from it).
        self.input_at = monotonic()
        self.bytes_out = 0
        self.frames_out = 0
        self._send_lock = Semaphore()
        self._close_started = False  # close() (or an echo, or a failure) claimed the close frame
        self._close_sent = False  # nothing more may be written
        self._ended = False  # the TCP connection is closed
        self._ended_event = Event()
        self._reading = False
        self._close_timer: Any = None
        self._unyielded = 0
        self._fed_unyielded = 0
        # Bytes the HTTP parser read past the request head belong to the WebSocket; after
        # they are taken, reads go to the socket itself.
        self._rfile_unread = True
        # read_nowait: whether the socket may hold input. A short read empties it, so the
        # next read_nowait answers WOULD_BLOCK without a failing recv (and its exception)
        # until input_ready() says the read watcher fired.
        self._input_pending = True
        # send_frame_nowait wrote part of a frame; write_rest must write the rest next.
        self._partial = False

    def __del__(self) -> None:
        # gevent-websocket's __del__ sends a close frame, possibly from the hub; the socket's
        # own finalizer is enough.
        pass

    def __repr__(self) -> str:
        state = "open" if not self.closed else ("closing" if not self._ended else f"closed {self.close_code}")
        return f"<WebSocket {state} in={self.frames_in} out={self.frames_out}>"

    # -- client API -------------------------------------------------------------------

    @property
    def max_message_size(self) -> int | None:
        return self._reader.max_message_size

    @max_message_size.setter
    def max_message_size(self, value: int | None) -> None:
        self._reader.max_message_size = value

    @property
    def frames_in(self) -> int:
        return self._reader.frames

    def read_message(self, timeout: float | None = None) -> Any:
        """The next message: ``('text', str)`` or ``('binary', bytes)``.

        Returns None once the connection has ended (see ``close_code``), and :data:`TIMEOUT`
        if ``timeout`` seconds pass without a complete message (the connection stays open).
        Pings are answered and pongs dropped here; messages arriving after our close frame
        are dropped. Only one greenlet may read at a time.
        """
        return self._read_alone(timeout, False)

    def read_nowait(self) -> Any:
        """:meth:`read_message` without waiting for the network: the next message if the
        bytes already received hold one, None once the connection has ended, else
        :data:`WOULD_BLOCK` (wait for :attr:`read_event` and call again).

        Pings are answered and pongs dropped as in :meth:`read_message`. Failing the
        connection for a protocol error still waits (at most ``close_timeout``) for the
        peer to close.
        """
        return self._read_alone(None, True)

    def _read_alone(self, timeout: float | None, nowait: bool) -> Any:
        if self._ended:
            return None
        if self._reading:
            raise RuntimeError("read_message or read_nowait is already running in another greenlet")
        self._reading = True
        try:
            return self._read(timeout, nowait)
        finally:
            self._reading = False

    @property
    def read_event(self) -> Any:
        """The socket's gevent read watcher: readable input, EOF, or the socket closed."""
        return self._socket._read_event

    def input_ready(self) -> None:
        """Tell :meth:`read_nowait` that :attr:`read_event` fired: the socket has input."""
        self._input_pending = True

    def receive(self) -> Any:
        """gevent-websocket's API: the next message's data, or None once closed."""
        message = self.read_message()
        return None if message is None else message[1]

    def send_frame(self, opcode: str, data: Any) -> None:
        """Send one message as one frame: ``('text', str)`` or ``('binary', bytes)``.

        Text may also be given as bytes already encoded in UTF-8 (sent unchecked).

        Raises :class:`ConnectionClosed` once our close frame was sent or the connection
        ended, :class:`WriteTimeout` (after aborting the connection) if the write took longer
        than ``write_timeout``. Safe to call from several greenlets: frames never interleave.
        """
        self._write(data_frame(opcode, data))

    def send_frame_nowait(self, opcode: str, data: Any) -> Any:
        """Write one message frame only if the socket takes it without waiting.

        Returns True when the whole frame went out; False when nothing was written (the
        connection is closing, another send is in progress, the socket's buffer is full or
        the socket failed: send it the ordinary way, which waits or reports the error);
        otherwise the bytes still to write, which must go out through :meth:`write_rest`
        before any other frame (every other write aborts the connection until then).
        """
        return self.send_built_nowait(data_frame(opcode, data))

    def send_built_nowait(self, frame: bytes) -> Any:
        """:meth:`send_frame_nowait` for a frame already built by :func:`data_frame` (a
        broadcast builds it once for all its subscribers); same results."""
        if self._close_sent or self._partial or self._tls or self._send_lock.locked():
            return False
        try:
            sent = self._socket._sock.send(frame)
        except OSError:
            return False
        if sent == 0:
            return False
        self.bytes_out += len(frame)
        self.frames_out += 1
        if sent == len(frame):
            return True
        self._partial = True
        return memoryview(frame)[sent:]

    def write_rest(self, rest: Any) -> None:
        """Write what :meth:`send_frame_nowait` left of a frame (waiting, with the write timeout)."""
        with self._send_lock:
            self._partial = False
            if self._close_sent:
                raise ConnectionClosed("the WebSocket is closed" if self._ended else "the WebSocket is closing")
            self._write_blocking(rest)

    def try_send_frame(self, opcode: str, data: Any) -> bool:
        """:meth:`send_frame` that returns False instead of raising a :class:`WebSocketError`."""
        try:
            self.send_frame(opcode, data)
        except WebSocketError:
            return False
        return True

    def send(self, message: Any, binary: bool | None = None) -> None:
        """gevent-websocket's API: a str goes as text, anything else as binary."""
        if binary is None:
            binary = not isinstance(message, str)
        self.send_frame("binary" if binary else "text", message)

    def ping(self, data: bytes = b"") -> None:
        """Send a ping (at most 125 bytes); the pong is dropped by ``read_message``."""
        if len(data) > 125:
            raise ValueError("ping payload longer than 125 bytes")
        self._write(bytes((0x80 | OP_PING, len(data))) + bytes(data))

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake: send one close frame (``code``, ``reason``) and stop sending.

        Idempotent, and does not wait for the peer: the greenlet in ``read_message`` sees
        its close frame and closes the TCP connection; without a reply within
        ``close_timeout`` the connection is closed anyway. Raises ``ValueError`` for a code
        that may not be sent (1005, 1006, 1015, < 1000 ...) or a reason over 123 bytes.
        """
        if self._close_started or self._ended:
            return
        if isinstance(reason, (bytes, bytearray)):
            reason = bytes(reason).decode("utf-8")
        payload = encode_close(code, reason or "")
        self._close_started = True
        try:
            self._write(bytes((0x80 | OP_CLOSE, len(payload))) + payload, closing=True)
        except WebSocketError:
            return  # already aborted or gone
        self._start_close_timer()

    def release_handler(self) -> bool:
        """Stop needing the HTTP handler that upgraded this connection, so that its greenlet
        may end while the connection lives on: the bytes its reader buffered past the request
        head are taken now, and the handler, its reader and its environ let go. False (and
        nothing changed) over TLS, whose socket stays the handler's."""
        if self._tls:
            return False
        if self._rfile_unread:
            data = self._take_rfile_buffer()
            if data:
                self._reader.feed(data)
        self._rfile = None
        self.handler = None
        self.environ = None
        return True

    # -- reading ----------------------------------------------------------------------

    def _read(self, timeout: float | None, nowait: bool = False) -> Any:
        reader = self._reader
        deadline = None if timeout is None else monotonic() + timeout
        while True:
            try:
                event = reader.next_event()
            except ProtocolError as e:
                self._fail(e.code, e.reason)
                return None
            if event is None:
                data = self._recv_nowait() if nowait else self._recv(deadline)
                if data is TIMEOUT or data is WOULD_BLOCK:
                    return data
                if not data:
                    self._lost("connection lost")
                    return None
                reader.feed(data)
                self._fed_unyielded += len(data)
                if self._fed_unyielded >= YIELD_BYTES:
                    # A large message arriving fast never blocks a recv: let the loop run
                    # between pieces so other sockets are served while it comes in.
                    self._fed_unyielded = 0
                    gevent.sleep(YIELD_SECONDS)
                continue
            kind = event[0]
            if kind == "text" or kind == "binary":
                if self._close_sent:
                    continue  # closing: data after our close frame is dropped
                self._unyielded += 1
                if self._unyielded >= self.yield_every:
                    # A buffered stream of messages never blocks, so never yields: give the
                    # loop a turn now and then. Not sleep(0): that only runs callbacks already
                    # queued, and gevent polls IO and timers only every 50 callbacks, so a
                    # pipelining client still held the loop 50-80 ms; a due timer forces a
                    # loop turn (max loop gap measured 1-2.5 ms).
                    self._unyielded = 0
                    gevent.sleep(YIELD_SECONDS)
                return event
            if kind == "ping":
                if not self._close_started:
                    payload = event[1]
                    try:
                        self._write(bytes((0x80 | OP_PONG, len(payload))) + payload)
                    except WebSocketError:
                        pass  # aborted: the next read sees the end
                continue
            if kind == "pong":
                continue
            self._peer_closed(event[1], event[2])
            return None

    def _take_rfile_buffer(self) -> bytes:
        """What the HTTP parser's buffered reader holds beyond the request head (once; counted
        as received)."""
        self._rfile_unread = False
        sock = self._socket
        rfile = self._rfile
        try:
            saved = sock.gettimeout()
            sock.settimeout(0.0)  # hand over what is buffered; never wait here
            try:
                data = rfile.read1(READ_SIZE) or b""
                if data:
                    self.bytes_in += len(data)
                    self.input_at = monotonic()
                return data
            finally:
                sock.settimeout(saved)
                # Reads go to the socket from now on: closing the reader frees its 8 KiB
                # buffer, which a connection would otherwise hold for its whole life (the
                # socket stays open: the reader only drops its reference).
                rfile.close()
        except (OSError, ValueError):
            return b""

    def _recv_nowait(self) -> Any:
        """Bytes the socket has now (b'' at EOF or on a socket error), or WOULD_BLOCK."""
        if self._rfile_unread:
            data = self._take_rfile_buffer()
            if data:
                return data
        if not self._input_pending:
            return WOULD_BLOCK
        if self._tls:
            return self._recv_tls_nowait()
        try:
            # The socket object under gevent's is always non-blocking; after a close it is
            # a stub whose calls raise EBADF.
            data = self._socket._sock.recv(READ_SIZE)
        except (BlockingIOError, InterruptedError):
            self._input_pending = False
            return WOULD_BLOCK
        except (OSError, ValueError, AttributeError):
            return b""
        n = len(data)
        if n < READ_SIZE:
            self._input_pending = False
        self.bytes_in += n
        self.input_at = monotonic()
        return data

    def _recv_tls_nowait(self) -> Any:
        sock = self._socket
        try:
            data = sock._sslobj.read(READ_SIZE)
        except (_ssl.SSLWantReadError, _ssl.SSLWantWriteError):
            self._input_pending = False
            return WOULD_BLOCK
        except (OSError, ValueError, AttributeError):
            return b""  # EOF in violation of the protocol, a reset, or the socket closed
        if not data:
            return b""
        if len(data) < READ_SIZE and not sock._sslobj.pending():
            self._input_pending = False
        self.bytes_in += len(data)
        self.input_at = monotonic()
        return data

    def _recv(self, deadline: float | None) -> Any:
        """Bytes from the socket (b'' at EOF or on a socket error), or TIMEOUT."""
        if self._rfile_unread:
            data = self._take_rfile_buffer()
            if data:
                return data
        recv = self._socket.recv
        if deadline is None:
            try:
                data = recv(READ_SIZE)
            except (OSError, ValueError):
                return b""
        else:
            remaining = deadline - monotonic()
            if remaining <= 0:
                return TIMEOUT
            timer = Timeout(remaining)
            timer.start()
            try:
                data = recv(READ_SIZE)
            except Timeout as e:
                if e is not timer:
                    raise
                return TIMEOUT
            except (OSError, ValueError):
                return b""
            finally:
                timer.close()
        if data:
            self.bytes_in += len(data)
            self.input_at = monotonic()
            return data
        return b""

    def _peer_closed(self, code: int, reason: str) -> None:
        if self.close_code is None:
            self.close_code = code
            self.close_reason = reason
        if not self._close_started:
            # Echo the peer's code (RFC 6455 5.5.1), then close TCP first, as a server should.
            self._close_started = True
            payload = b"" if code == NO_STATUS else code.to_bytes(2, "big")
            try:
                self._write(bytes((0x80 | OP_CLOSE, len(payload))) + payload, closing=True)
            except WebSocketError:
                pass
        self._finish_tcp()

    def _fail(self, code: int, reason: str) -> None:
        """Fail the connection for a protocol error: close frame, FIN, drain, close."""
        if self.close_code is None:
            self.close_code = code
            self.close_reason = reason
        if not self._close_started:
            self._close_started = True
            try:
                self._write(bytes((0x80 | OP_CLOSE, 2 + len(reason))) + code.to_bytes(2, "big") + reason.encode(), closing=True)
            except WebSocketError:
                pass
        self._close_sent = True
        self.closed = True
        # Lingering close: half-close, then read and drop what the peer still sends until it
        # closes, so our close frame is not destroyed by a reset for unread input.
        try:
            self._socket.shutdown(_stdsocket.SHUT_WR)
        except OSError:
            pass
        deadline = monotonic() + self.close_timeout
        budget = LINGER_BYTES
        while budget > 0:
            data = self._recv(deadline)
            if data is TIMEOUT or not data:
                break
            budget -= len(data)
        self._finish_tcp()

    def _lost(self, reason: str) -> None:
        if self.close_code is None:
            self.close_code = ABNORMAL_CLOSURE
            self.close_reason = reason
        self._finish_tcp()

    def _finish_tcp(self) -> None:
        """Close the TCP connection (from the reading greenlet, or with no reader)."""
        if self._ended:
            return
        self._ended = True
        self._close_sent = True
        self.closed = True
        self._cancel_close_timer()
        sock = self._socket
        try:
            sock.shutdown(_stdsocket.SHUT_RDWR)
        except OSError:
            pass
        try:
            if self._rfile is not None:
                self._rfile.close()
        except (OSError, ValueError, RuntimeError):  # RuntimeError: a read still inside it
            pass
        try:
            sock.close()
        except OSError:
            pass
        self._ended_event.set()

    # -- writing ----------------------------------------------------------------------

    def _write(self, frame: Any, closing: bool = False) -> None:
        with self._send_lock:
            if self._close_sent:
                raise ConnectionClosed("the WebSocket is closed" if self._ended else "the WebSocket is closing")
            if self._partial:
                # Only write_rest may follow a partly written frame; anything else would
                # corrupt the stream, so the connection is dropped instead.
                self._abort("a frame was cut short")
                raise ConnectionClosed("a frame was left partly written; connection aborted")
            if closing:
                self._close_sent = True
                self.closed = True
            try:
                # Most frames fit the kernel's send buffer: write without waiting first, and
                # arm the write timeout only for what is left.
                sent = 0 if self._tls else self._socket._sock.send(frame)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError as e:
                self._abort("connection lost")
                raise ConnectionClosed(f"the connection is gone: {e}") from None
            if sent != len(frame):
                self._write_blocking(memoryview(frame)[sent:])
            self.bytes_out += len(frame)
            self.frames_out += 1

    def _write_blocking(self, rest: Any) -> None:
        """Write the rest of a frame, waiting at most ``write_timeout`` (lock held)."""
        seconds = self.write_timeout
        timer = None
        if seconds is not None:
            timer = Timeout(seconds)
            timer.start()
        try:
            self._socket.sendall(rest)
        except Timeout as e:
            self._abort("write timeout")
            if e is not timer:
                raise  # someone else's timeout cut the frame: the stream is unusable
            raise WriteTimeout(f"send took longer than {seconds} s; connection aborted") from None
        except OSError as e:
            self._abort("connection lost")
            raise ConnectionClosed(f"the connection is gone: {e}") from None
        except BaseException:
            self._abort("send interrupted")  # part of a frame may be out: unrecoverable
            raise
        finally:
            if timer is not None:
                timer.close()

    def abort(self, reason: str = "aborted") -> None:
        """Drop the connection at once (TCP reset): a write blocked on it fails with
        :class:`ConnectionClosed`, the reader sees the end. Idempotent."""
        if self._ended:
            return
        self._abort(reason)

    def _abort(self, reason: str) -> None:
        """Abort after a failed write: reset, not FIN, once the socket is closed."""
        self._close_started = True
        self._close_sent = True
        self.closed = True
        if self.close_code is None:
            self.close_code = ABNORMAL_CLOSURE
            self.close_reason = reason
        self._cancel_close_timer()
        sock = self._socket
        try:
            sock.setsockopt(_stdsocket.SOL_SOCKET, _stdsocket.SO_LINGER, _LINGER_ABORT)
        except OSError:
            pass
        try:
            sock.shutdown(_stdsocket.SHUT_RDWR)  # wakes the reader with EOF
        except OSError:
            pass
        if not self._reading:
            self._finish_tcp()

    # -- the close timer --------------------------------------------------------------

    def _start_close_timer(self) -> None:
        if self._ended or self._close_timer is not None:
            return
        timer = gevent.get_hub().loop.timer(self.close_timeout)
        self._close_timer = timer
        timer.start(self._close_timer_fired)

    def _cancel_close_timer(self) -> None:
        timer = self._close_timer
        if timer is not None:
            self._close_timer = None
            timer.stop()
            timer.close()

    def _close_timer_fired(self) -> None:
        # Runs in the hub: no blocking calls.
        self._cancel_close_timer()
        if self._ended:
            return
        try:
            self._socket.shutdown(_stdsocket.SHUT_RDWR)  # the reader, if any, sees EOF
        except OSError:
            pass
        if not self._reading:
            if self.close_code is None:
                self.close_code = ABNORMAL_CLOSURE
                self.close_reason = "no close frame from the peer"
            self._finish_tcp()

    def wait_closed(self, timeout: float | None = None) -> bool:
        """Block until the TCP connection is closed; True if it is, False on ``timeout``.

        When no other greenlet is in ``read_message`` this one reads, dropping messages, so
        the peer's close frame is seen. After :meth:`close` it returns within about
        ``close_timeout`` seconds: ``ws.close(1000); ws.wait_closed()`` is a full closing
        handshake.
        """
        if self._ended:
            return True
        if self._reading:
            return self._ended_event.wait(timeout)
        deadline = None if timeout is None else monotonic() + timeout
        while not self._ended:
            remaining = None
            if deadline is not None:
                remaining = deadline - monotonic()
                if remaining <= 0:
                    return False
            self.read_message(timeout=remaining)
        return True

    # -- for the handler --------------------------------------------------------------

    def _finish(self, code: int = 1000) -> None:
        """End the connection once the application returned: close, await the reply, close TCP."""
        if self._ended:
            return
        self.close(code)
        if not self.wait_closed(self.close_timeout + 1.0) and not self._reading:
            self._lost("no close frame from the peer")
