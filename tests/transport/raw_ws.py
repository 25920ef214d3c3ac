"""A raw WebSocket client and hand-built frames, for the tests that talk to a real server.

Shared by test_websocket_frames.py, test_websocket_nowait.py and test_websocket_handshake.py.
Client frames are built here by hand (masked, independently of transport.websocket) and
server frames are read back byte by byte over a gevent socket on 127.0.0.1; every read is
bounded by a ``gevent.Timeout``.
"""

from __future__ import annotations

import socket as stdsocket
import struct
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import gevent
import gevent.socket as gsocket

MASK = b"\x37\xfa\x21\x3d"

S = TypeVar("S")


def capture_hub_errors(monkeypatch) -> list:
    """Exceptions the hub would print (pywsgi's handle_error, dead greenlets), collected in the
    returned list instead (for a test to assert it stays empty)."""
    errors: list = []
    monkeypatch.setattr(gevent.get_hub(), "print_exception", lambda context, t, v, tb: errors.append((context, t, v)))
    return errors


@contextmanager
def servers(make: Callable[[dict], S]) -> Iterator[Callable[..., S]]:
    """For a ``serve`` fixture: ``start(**handler_attrs)`` makes a started server with
    ``make(handler_attrs)``; every one it made is stopped (``stop()``) at the end."""
    started: list[S] = []

    def start(**handler_attrs) -> S:
        server = make(handler_attrs)
        started.append(server)
        return server

    try:
        yield start
    finally:
        for server in started:
            server.stop()  # type: ignore[attr-defined]


def xor(data: bytes, mask: bytes = MASK) -> bytes:
    return bytes(b ^ mask[i % 4] for i, b in enumerate(data))


def client_frame(
    opcode: int, payload: bytes = b"", fin: bool = True, rsv: int = 0, mask: bytes | None = MASK, length: int | None = None
) -> bytes:
    """A client frame, built independently of transport.websocket."""
    n = len(payload) if length is None else length
    b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
    m = 0x80 if mask is not None else 0
    if n < 126:
        head = struct.pack("!BB", b0, m | n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, m | 126, n)
    else:
        head = struct.pack("!BBQ", b0, m | 127, n)
    if mask is None:
        return head + payload
    return head + mask + xor(payload, mask)


def server_frame(opcode: int, payload: bytes = b"") -> bytes:
    """What the server must send: FIN set, unmasked."""
    n = len(payload)
    if n < 126:
        return struct.pack("!BB", 0x80 | opcode, n) + payload
    if n < 65536:
        return struct.pack("!BBH", 0x80 | opcode, 126, n) + payload
    return struct.pack("!BBQ", 0x80 | opcode, 127, n) + payload


class Client:
    """A raw WebSocket client over a gevent socket; ``first`` goes out with the handshake (one
    write). ``no_rsv``: ``recv_header`` also asserts that a server frame has no RSV bits."""

    def __init__(self, port: int, path: str = "/", rcvbuf: int | None = None, first: bytes = b"", no_rsv: bool = False) -> None:
        sock = gsocket.socket(stdsocket.AF_INET, stdsocket.SOCK_STREAM)
        sock.setsockopt(stdsocket.IPPROTO_TCP, stdsocket.TCP_NODELAY, 1)
        if rcvbuf:
            sock.setsockopt(stdsocket.SOL_SOCKET, stdsocket.SO_RCVBUF, rcvbuf)
        sock.connect(("127.0.0.1", port))
        self.sock = sock
        self.rfile = sock.makefile("rb")
        self.no_rsv = no_rsv
        sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
            + first
        )
        with gevent.Timeout(5):
            status = self.rfile.readline()
            assert status == b"HTTP/1.1 101 Switching Protocols\r\n", status
            while self.rfile.readline() != b"\r\n":
                pass

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_frame(self, opcode: int, payload: bytes = b"", **kw) -> None:
        self.sock.sendall(client_frame(opcode, payload, **kw))

    def recv_exact(self, n: int, timeout: float = 5) -> bytes:
        with gevent.Timeout(timeout):
            data = self.rfile.read(n)
        assert len(data) == n, f"EOF after {len(data)} of {n} bytes: {data[:40]!r}"
        return data

    def recv_header(self, timeout: float = 5) -> tuple[int, int]:
        """(first byte, payload length) of the next server frame, checked to be unmasked."""
        b0, b1 = self.recv_exact(2, timeout)
        assert b1 & 0x80 == 0, "server frames must not be masked"
        if self.no_rsv:
            assert b0 & 0x70 == 0
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self.recv_exact(2, timeout))[0]
        elif n == 127:
            n = struct.unpack("!Q", self.recv_exact(8, timeout))[0]
        return b0, n

    def recv_frame(self, timeout: float = 5) -> tuple[int, bytes]:
        """(first byte, payload) of the next server frame, all of it within ``timeout``."""
        with gevent.Timeout(timeout):
            b0, n = self.recv_header(timeout)
            return b0, self.recv_exact(n, timeout)

    def expect_close(self, code: int) -> str:
        """The next frame is a close frame with ``code``; its reason."""
        b0, payload = self.recv_frame()
        assert b0 == 0x88, (hex(b0), payload)
        assert len(payload) >= 2 and struct.unpack("!H", payload[:2])[0] == code, payload
        return payload[2:].decode("utf-8")

    def expect_eof(self, timeout: float = 5) -> None:
        with gevent.Timeout(timeout):
            try:
                assert self.rfile.read() == b""
            except ConnectionResetError:
                pass

    def close(self) -> None:
        if not self.sock.closed:
            self.rfile.close()
            self.sock.close()


@contextmanager
def clients(**defaults) -> Iterator[Callable[..., Client]]:
    """For a ``connect`` fixture: a function that opens a ``Client`` (``defaults`` under the
    test's own keywords); every client it opened is closed at the end."""
    opened: list[Client] = []

    def open_client(port: int, path: str = "/", **kw) -> Client:
        client = Client(port, path, **{**defaults, **kw})
        opened.append(client)
        return client

    try:
        yield open_client
    finally:
        for client in opened:
            client.close()
