"""WebSocket.read_nowait and the write path, over a real pywsgi server on 127.0.0.1.

The application here reads only with ``read_nowait``: when it answers ``WOULD_BLOCK`` it
waits on ``read_event`` (as the transport process does), calls ``input_ready()`` and reads
again. Every value ``read_nowait`` returned goes to a queue in order, so a test can assert
what the reader saw, not only what came back on the wire. Client frames are built by hand
(masked, raw_ws.py) and server frames checked byte for byte; every wait is bounded.
"""

from __future__ import annotations

import socket as stdsocket
import struct
import time
from urllib.parse import parse_qs

import gevent
import gevent.queue
import pytest
from gevent.pywsgi import WSGIServer
from raw_ws import (
    MASK,
    capture_hub_errors,
    client_frame,
    clients,
    server_frame,
    servers,
)

from transport.websocket import (
    WOULD_BLOCK,
    ConnectionClosed,
    WebSocket,
    WebSocketHandler,
    WriteTimeout,
)


def pattern(n: int) -> bytes:
    """n bytes that are not all alike, so a lost or repeated chunk shows."""
    block = bytes(range(251))  # a prime length: chunk boundaries never line up with it
    return (block * (n // len(block) + 1))[:n]


# -- the server -----------------------------------------------------------------------------


class NowaitServer:
    """A pywsgi server whose application reads with read_nowait only and echoes.

    ``results``: every value read_nowait returned, in order (WOULD_BLOCK, messages, None).
    ``finished``: ``(ws, error)`` when an application returns. Text ``!commands``:
    ``!big N`` sends one binary frame of N bytes, ``!flood N`` sends N-byte frames until a
    send fails, ``!stats`` answers ``bytes_in bytes_out frames_in frames_out``.
    """

    def __init__(self, handler_attrs: dict) -> None:
        self.results: gevent.queue.Queue = gevent.queue.Queue()
        self.finished: gevent.queue.Queue = gevent.queue.Queue()
        self.notes: list = []
        self.conns: list[WebSocket] = []
        handler = type("NowaitHandler", (WebSocketHandler,), handler_attrs)
        self.server = WSGIServer(("127.0.0.1", 0), self.app, handler_class=handler, log=None, error_log=None)
        self.server.start()
        self.port = self.server.server_port

    def app(self, environ, start_response):
        ws = environ["wsgi.websocket"]
        self.conns.append(ws)
        query = parse_qs(environ.get("QUERY_STRING", ""))
        if "sndbuf" in query:
            ws._socket.setsockopt(stdsocket.SOL_SOCKET, stdsocket.SO_SNDBUF, int(query["sndbuf"][0]))
        hub = gevent.get_hub()
        error = None
        try:
            while True:
                msg = ws.read_nowait()
                self.results.put(msg)
                if msg is None:
                    self.results.put(("again", ws.read_nowait()))  # stays None
                    break
                if msg is WOULD_BLOCK:
                    hub.wait(ws.read_event)
                    ws.input_ready()
                    continue
                if msg[0] == "text" and msg[1].startswith("!"):
                    self.command(ws, msg[1][1:].split(" "))
                    continue
                ws.send_frame(*msg)
        except Exception as e:  # noqa: BLE001 - the test asserts on it
            error = e
        self.finished.put((ws, error))
        return []

    def command(self, ws: WebSocket, args: list[str]) -> None:
        if args[0] == "big":
            started = time.monotonic()
            ws.send_frame("binary", pattern(int(args[1])))
            self.notes.append(("big sent", time.monotonic() - started))
        elif args[0] == "flood":
            chunk = b"\x00" * int(args[1])
            self.notes.append(("flood started", time.monotonic()))
            while True:
                ws.send_frame("binary", chunk)
        elif args[0] == "stats":
            ws.send_frame("text", f"{ws.bytes_in} {ws.bytes_out} {ws.frames_in} {ws.frames_out}")

    def messages(self, n: int, timeout: float = 5) -> list:
        """The next n messages read_nowait returned, skipping WOULD_BLOCK."""
        out = []
        with gevent.Timeout(timeout):
            while len(out) < n:
                msg = self.results.get()
                if msg is not WOULD_BLOCK:
                    out.append(msg)
        return out

    def drain_results(self) -> list:
        out = []
        while not self.results.empty():
            out.append(self.results.get())
        return out

    def stop(self) -> None:
        self.server.stop(timeout=1)


@pytest.fixture
def serve(monkeypatch):
    hub_errors = capture_hub_errors(monkeypatch)
    with servers(NowaitServer) as start:
        yield start
    assert hub_errors == []


@pytest.fixture
def connect():
    with clients() as open_client:
        yield open_client


@pytest.fixture
def write_blocking_calls(monkeypatch):
    """(bytes left, whole frame) each time a frame did not fit the first non-blocking send."""
    calls: list[tuple[int, int]] = []
    original = WebSocket._write_blocking
    frame_sizes: list[int] = []
    original_write = WebSocket._write

    def spy_write(self, frame, closing=False):
        frame_sizes.append(len(frame))
        try:
            return original_write(self, frame, closing)
        finally:
            frame_sizes.pop()

    def spy(self, rest):
        calls.append((len(rest), frame_sizes[-1] if frame_sizes else -1))
        return original(self, rest)

    monkeypatch.setattr(WebSocket, "_write", spy_write)
    monkeypatch.setattr(WebSocket, "_write_blocking", spy)
    return calls


# -- reading --------------------------------------------------------------------------------


def test_would_block_is_exported_and_unique():
    assert WebSocket.would_block is WOULD_BLOCK
    assert repr(WOULD_BLOCK) == "WOULD_BLOCK"
    import pickle

    assert pickle.loads(pickle.dumps(WOULD_BLOCK)) is WOULD_BLOCK


def test_would_block_without_input_then_messages_once_the_read_event_fires(serve, connect):
    server = serve()
    c = connect(server.port)
    # Nothing sent yet: read_nowait answers at once instead of waiting for the network.
    assert server.results.get(timeout=5) is WOULD_BLOCK
    ws = server.conns[0]
    assert ws.bytes_in == 0 and not ws._reading
    c.send_frame(1, "héllo".encode())
    assert server.messages(1) == [("text", "héllo")]
    assert c.recv_exact(8) == server_frame(1, "héllo".encode())
    c.send_frame(2, b"\x00\x01\x02")
    assert server.messages(1) == [("binary", b"\x00\x01\x02")]
    assert c.recv_exact(5) == b"\x82\x03\x00\x01\x02"
    # A message split over two writes is one message: the first half alone is WOULD_BLOCK.
    assert server.results.get(timeout=5) is WOULD_BLOCK  # read after the echo above
    frame = client_frame(1, b"split in two")
    c.send(frame[:5])
    assert server.results.get(timeout=5) is WOULD_BLOCK
    assert ws.bytes_in == 12 + 9 + 5
    c.send(frame[5:])
    assert server.messages(1) == [("text", "split in two")]
    assert c.recv_frame() == (0x81, b"split in two")
    c.send_frame(1, b"!stats")
    _, payload = c.recv_frame()
    assert int(payload.split()[0]) == 12 + 9 + 18 + 12


def test_bytes_pipelined_with_the_handshake_are_handed_over_from_the_http_buffer(serve, connect):
    """The frames share the TCP write of the request head: pywsgi's rfile read them."""
    server = serve()
    early = client_frame(1, b"early") + client_frame(9, b"!") + client_frame(2, b"\x07" * 200)
    c = connect(server.port, first=early)
    # Read before any wait: the buffered bytes are there at once, not lost in the rfile.
    assert server.results.get(timeout=5) == ("text", "early")
    assert server.messages(1) == [("binary", b"\x07" * 200)]
    assert c.recv_exact(7 + 3 + 4 + 200) == b"\x81\x05early" + b"\x8a\x01!" + server_frame(2, b"\x07" * 200)
    c.send_frame(1, b"after")  # and later input comes from the socket itself
    assert server.messages(1) == [("text", "after")]
    assert c.recv_exact(7) == b"\x81\x05after"
    assert server.conns[0].bytes_in == len(early) + 11


def test_pipelined_bytes_beyond_the_http_buffer_arrive_whole_and_in_order(serve, connect):
    """More than pywsgi's 8 KiB read buffer: part from the rfile, the rest from the socket."""
    server = serve()
    bodies = [pattern(997)[i:] + bytes([i]) for i in range(60)]  # ~58 KiB, all different
    c = connect(server.port, first=b"".join(client_frame(2, b) for b in bodies))
    assert server.messages(len(bodies)) == [("binary", b) for b in bodies]
    for body in bodies:
        assert c.recv_frame() == (0x82, body)


def test_a_partial_frame_in_the_http_buffer_is_completed_from_the_socket(serve, connect):
    server = serve()
    frame = client_frame(1, b"half here, half later")
    c = connect(server.port, first=frame[:9])
    assert server.results.get(timeout=5) is WOULD_BLOCK
    c.send(frame[9:])
    assert server.messages(1) == [("text", "half here, half later")]
    assert c.recv_frame() == (0x81, b"half here, half later")


def test_a_message_larger_than_one_socket_read_is_reassembled(serve, connect):
    """Several full 64 KiB reads in a row, then a short one, for one message."""
    server = serve()
    c = connect(server.port)
    body = pattern(300_000)
    c.send_frame(2, body)
    assert server.messages(1) == [("binary", body)]
    assert c.recv_frame(timeout=10) == (0x82, body)
    assert server.conns[0].bytes_in == 14 + len(body)


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (client_frame(2, b"")[:1] + bytes([0x7F]) + (100 * 1024 * 1024).to_bytes(8, "big") + MASK, 1009),
        (b"\x81\x03abc", 1002),  # unmasked
        (client_frame(1, b"\xff"), 1007),
    ],
    ids=["too big", "unmasked", "invalid utf-8"],
)
def test_a_protocol_error_fails_the_connection_and_read_nowait_is_none(serve, connect, data, code):
    server = serve(ws_max_message_size=1024)
    c = connect(server.port)
    c.send(data)
    b0, payload = c.recv_frame()
    assert b0 == 0x88 and struct.unpack("!H", payload[:2])[0] == code
    c.send_frame(8, struct.pack("!H", code))  # the client answers
    c.expect_eof()  # the server half-closed after its close frame
    c.close()  # as a client does then: the server stops lingering
    ws, error = server.finished.get(timeout=5)
    assert error is None and ws.close_code == code
    assert server.drain_results()[-2:] == [None, ("again", None)]


def test_a_ping_is_answered_by_read_nowait_and_is_no_message(serve, connect):
    server = serve()
    c = connect(server.port)
    assert server.results.get(timeout=5) is WOULD_BLOCK
    c.send_frame(9, b"hello")
    assert c.recv_exact(7) == b"\x8a\x05hello"
    c.send_frame(10, b"unsolicited pong")  # dropped
    c.send(client_frame(9, b"") + client_frame(1, b"x"))  # one write: pong first, then echo
    assert c.recv_exact(2 + 3) == b"\x8a\x00" + b"\x81\x01x"
    seen = server.drain_results()
    # Neither the pings nor the pong surfaced: WOULD_BLOCKs and the one message only.
    assert [s for s in seen if s is not WOULD_BLOCK] == [("text", "x")], seen
    assert seen.count(WOULD_BLOCK) >= 1


def test_read_nowait_is_none_once_the_peer_vanished(serve, connect):
    server = serve()
    c = connect(server.port)
    c.send_frame(1, b"last words")
    assert c.recv_exact(12) == b"\x81\x0alast words"
    c.close()  # TCP gone, no close frame
    ws, error = server.finished.get(timeout=5)
    assert error is None
    seen = server.drain_results()
    assert seen[-2:] == [None, ("again", None)]
    assert ws.close_code == 1006
    assert ws.read_nowait() is None


def test_read_nowait_is_none_after_the_peer_closed_and_the_close_is_echoed(serve, connect):
    server = serve()
    c = connect(server.port)
    c.send(client_frame(1, b"bye") + client_frame(8, struct.pack("!H", 4001) + b"going"))
    assert c.recv_exact(5) == b"\x81\x03bye"
    assert c.recv_exact(4) == b"\x88\x02\x0f\xa1"  # the peer's code echoed
    c.expect_eof()
    ws, error = server.finished.get(timeout=5)
    assert error is None
    assert server.drain_results()[-2:] == [None, ("again", None)]
    assert (ws.close_code, ws.close_reason) == (4001, "going")


def test_read_nowait_refuses_a_second_reader(serve, connect):
    server = serve()
    c = connect(server.port)
    assert server.results.get(timeout=5) is WOULD_BLOCK
    ws = server.conns[0]
    ws._reading = True  # as while another greenlet is inside read_message
    try:
        with pytest.raises(RuntimeError, match="already running"):
            ws.read_nowait()
    finally:
        ws._reading = False
    c.send_frame(1, b"still fine")
    assert c.recv_frame() == (0x81, b"still fine")


# -- writing --------------------------------------------------------------------------------


def test_small_frames_go_out_without_the_blocking_write(serve, connect, write_blocking_calls):
    """The common case: each frame fits the send buffer; no write timeout is ever armed."""
    server = serve()
    c = connect(server.port)
    for i in range(50):
        c.send_frame(1, f"m{i}".encode())
        assert c.recv_frame() == (0x81, f"m{i}".encode())
    assert write_blocking_calls == []


def test_a_frame_larger_than_the_socket_buffers_is_written_whole_to_a_slow_reader(serve, connect, write_blocking_calls):
    """The first non-blocking send takes part of the frame; the rest waits for the reader."""
    server = serve(ws_write_timeout=5.0)
    size = 2 * 1024 * 1024
    c = connect(server.port, "/?sndbuf=4096", rcvbuf=4096)
    c.send_frame(1, f"!big {size}".encode())
    b0, n = c.recv_header()
    assert (b0, n) == (0x82, size)
    got = bytearray()
    with gevent.Timeout(20):
        while len(got) < size:
            got += c.recv_exact(min(32768, size - len(got)))
            gevent.sleep(0.001)  # a slow reader: the server's send buffer fills again and again
    assert bytes(got) == pattern(size)
    c.send_frame(1, b"!stats")
    _, stats = c.recv_frame()
    _bytes_in, bytes_out, _frames_in, frames_out = map(int, stats.split())
    assert bytes_out == 10 + size and frames_out == 1  # the stats frame is counted after
    frame_len = 10 + size
    big = [call for call in write_blocking_calls if call[1] == frame_len]
    assert len(big) == 1, write_blocking_calls
    rest = big[0][0]
    assert 0 < rest < frame_len  # part went out at once, the rest through the blocking path
    ws = server.conns[0]
    assert not ws.closed and ws.close_code is None
    c.send_frame(1, b"after")
    assert c.recv_frame() == (0x81, b"after")


@pytest.mark.parametrize(("command", "frame_len"), [("!big 8388608", 8388608 + 10), ("!flood 1000", 1000 + 4)])
def test_the_write_timeout_still_fires_when_the_peer_never_reads(serve, connect, write_blocking_calls, command, frame_len):
    """One huge frame (partial first send) or a flood of small ones (the first send would block)."""
    server = serve(ws_write_timeout=0.3)
    c = connect(server.port, "/?sndbuf=4096", rcvbuf=4096)
    started = time.monotonic()
    c.send_frame(1, command.encode())
    ws, error = server.finished.get(timeout=5)
    elapsed = time.monotonic() - started
    assert isinstance(error, WriteTimeout), error
    assert 0.29 <= elapsed < 2.5, elapsed
    assert write_blocking_calls and write_blocking_calls[-1][1] == frame_len
    assert ws.close_code == 1006 and ws.closed
    with pytest.raises(ConnectionClosed):
        ws.send_frame("text", "x")
    assert ws.read_nowait() is None
    # The connection was aborted (reset): draining the client ends.
    with gevent.Timeout(5):
        try:
            while c.sock.recv(1 << 20):
                pass
        except ConnectionResetError:
            pass
