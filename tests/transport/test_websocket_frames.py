"""WebSocket frames: the pure FrameReader, then a real server asserted on raw bytes.

The socket tests run a pywsgi server with ``WebSocketHandler`` in this process's hub and talk
to it over 127.0.0.1 with a raw gevent socket (raw_ws.py): every client frame is built by hand
(masked, independently of the code under test) and every server frame is checked byte for
byte. Each of gevent-websocket 0.10.1's defects has a regression test; the defect number
is in the test's docstring.
"""

from __future__ import annotations

import os
import socket as stdsocket
import struct
import time
from urllib.parse import parse_qs

import gevent
import gevent.queue
import gevent.socket as gsocket
import geventwebsocket.websocket
import pytest
from gevent.pywsgi import WSGIServer
from hypothesis import given, settings
from hypothesis import strategies as st
from raw_ws import MASK, capture_hub_errors, client_frame, clients, servers, xor

from transport.websocket import (
    TIMEOUT,
    ConnectionClosed,
    FrameReader,
    MessageTooBig,
    ProtocolError,
    WebSocket,
    WebSocketError,
    WebSocketHandler,
    WriteTimeout,
    _frames,
    decode_close,
    encode_close,
    encode_frame,
    unmask,
)

# -- frames built by hand (client_frame and xor are in raw_ws.py) --------------------------


def close_payload(code: int, reason: bytes = b"") -> bytes:
    return struct.pack("!H", code) + reason


# -- the pure layer -----------------------------------------------------------------------


@pytest.mark.parametrize("code", [1000, 1011, 1012, 4000])
def test_encode_close_packs_the_code_big_endian(code):
    """Defect 1: the code is a big-endian uint16 followed by the UTF-8 reason."""
    assert encode_close(code) == struct.pack("!H", code)
    assert encode_close(code, "é") == struct.pack("!H", code) + "é".encode()
    assert decode_close(encode_close(code, "bye")) == (code, "bye")


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000])
def test_encode_close_refuses_codes_that_must_not_be_sent(code):
    with pytest.raises(ValueError):
        encode_close(code)


def test_encode_close_refuses_a_reason_over_123_bytes():
    encode_close(1000, "x" * 123)
    with pytest.raises(ValueError):
        encode_close(1000, "x" * 124)


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"\x03", 1002),
        (close_payload(1005), 1002),
        (close_payload(999), 1002),
        (close_payload(2500), 1002),
        (close_payload(1000, b"\xff"), 1007),
    ],
)
def test_decode_close_rejects(payload, code):
    with pytest.raises(ProtocolError) as info:
        decode_close(payload)
    assert info.value.code == code


def test_decode_close_without_code_is_1005():
    assert decode_close(b"") == (1005, "")


@pytest.mark.parametrize("n", [0, 1, 2, 3, 4, 5, 7, 8, 125, 126, 1000, 65537])
def test_unmask_matches_the_per_byte_definition(n):
    data = os.urandom(n)
    assert unmask(data, MASK) == xor(data)
    assert unmask(bytearray(data), MASK) == xor(data)


def test_encode_frame_masks_and_sizes():
    assert encode_frame(1, b"hi") == b"\x81\x02hi"
    assert encode_frame(2, b"x" * 126) == b"\x82\x7e\x00\x7e" + b"x" * 126
    assert encode_frame(2, b"x" * 65536)[:10] == b"\x82\x7f" + (65536).to_bytes(8, "big")
    assert encode_frame(1, b"hello", mask=MASK) == client_frame(1, b"hello")
    assert encode_frame(0, b"", fin=False) == b"\x00\x00"


def events(reader: FrameReader, data: bytes, step: int | None = None) -> list:
    out = []
    chunks = [data] if step is None else [data[i : i + step] for i in range(0, len(data), step)]
    for chunk in chunks:
        reader.feed(chunk)
        while (event := reader.next_event()) is not None:
            out.append(event)
    return out


def test_reader_byte_by_byte():
    stream = (
        client_frame(1, "héllo".encode())
        + client_frame(1, "€".encode()[:1], fin=False)
        + client_frame(9, b"ping")
        + client_frame(0, "€".encode()[1:] + b"!")
        + client_frame(2, b"\x00" * 300)
        + client_frame(10, b"")
        + client_frame(2, b"a", fin=False)
        + client_frame(0, b"b", fin=False)
        + client_frame(0, b"c")
        + client_frame(8, close_payload(1001, b"away"))
        + client_frame(1, b"after close is ignored")
    )
    expected = [
        ("text", "héllo"),
        ("ping", b"ping"),
        ("text", "€!"),
        ("binary", b"\x00" * 300),
        ("pong", b""),
        ("binary", b"abc"),
        ("close", 1001, "away"),
    ]
    assert events(FrameReader(), stream) == expected
    reader = FrameReader()
    assert events(reader, stream, step=1) == expected
    assert reader.frames == 10 and reader.messages == 4 and reader.closed


def test_reader_refuses_an_oversized_message_on_its_header_alone():
    """Defect 6: 1009 from the 10 header bytes; the payload is never needed."""
    reader = FrameReader(max_message_size=1024)
    reader.feed(client_frame(2, length=100 * 1024 * 1024)[:10])
    with pytest.raises(MessageTooBig) as info:
        reader.next_event()
    assert info.value.code == 1009
    with pytest.raises(MessageTooBig):  # and stays failed
        reader.next_event()


def test_reader_counts_fragments_against_the_limit():
    reader = FrameReader(max_message_size=1000)
    assert events(reader, client_frame(2, b"x" * 1000)) == [("binary", b"x" * 1000)]
    reader.feed(client_frame(1, b"x" * 600, fin=False) + client_frame(0, b"x" * 401)[:4])
    with pytest.raises(MessageTooBig):
        reader.next_event()


PROTOCOL_ERRORS = {
    "rsv1": client_frame(1, b"x", rsv=4),
    "rsv2": client_frame(1, b"x", rsv=2),
    "rsv3": client_frame(2, b"x", rsv=1),
    "opcode 3": client_frame(3, b"x"),
    "opcode 11": client_frame(11, b"x"),
    "unmasked": client_frame(1, b"x", mask=None),
    "control over 125 bytes": client_frame(9, b"x" * 126),
    "fragmented control": client_frame(9, b"x", fin=False),
    "continuation without start": client_frame(0, b"x"),
    "new message inside a fragmented one": client_frame(1, b"x", fin=False) + client_frame(1, b"y"),
    "close frame of one byte": client_frame(8, b"\x03"),
    "close code 1005": client_frame(8, close_payload(1005)),
    "close code 999": client_frame(8, close_payload(999)),
}


@pytest.mark.parametrize("name", PROTOCOL_ERRORS)
def test_reader_protocol_errors_are_1002(name):
    with pytest.raises(ProtocolError) as info:
        events(FrameReader(), PROTOCOL_ERRORS[name])
    assert info.value.code == 1002


@pytest.mark.parametrize(
    "stream",
    [
        client_frame(1, b"\xff"),
        client_frame(1, b"\xe2\x82", fin=False) + client_frame(0, b"\x28"),  # bad continuation byte
        client_frame(1, b"a\xe2\x82"),  # truncated at the end of the message
        client_frame(1, b"a", fin=False) + client_frame(0, b"\xe2\x82"),
        client_frame(1, b"\xed\xa0\x80"),  # a UTF-16 surrogate
        client_frame(8, close_payload(1000, b"\xc0\xaf")),
    ],
)
def test_reader_invalid_utf8_is_1007(stream):
    with pytest.raises(ProtocolError) as info:
        events(FrameReader(), stream)
    assert info.value.code == 1007


def test_reader_fails_fast_on_invalid_utf8_in_a_first_fragment():
    reader = FrameReader()
    reader.feed(client_frame(1, b"\xc0\xaf", fin=False))  # the final fragment never came
    with pytest.raises(ProtocolError) as info:
        reader.next_event()
    assert info.value.code == 1007


def test_exception_tree():
    """One tree, not OSError (gevent-websocket's errors are OSErrors: wrong close codes)."""
    for cls in (ConnectionClosed, WriteTimeout, ProtocolError, MessageTooBig):
        assert issubclass(cls, WebSocketError)
    assert issubclass(MessageTooBig, ProtocolError)
    assert not issubclass(WebSocketError, OSError)
    assert MessageTooBig().code == 1009 and ProtocolError(1002, "x").code == 1002
    import pickle

    assert pickle.loads(pickle.dumps(MessageTooBig("big"))).reason == "big"
    assert pickle.loads(pickle.dumps(TIMEOUT)) is TIMEOUT


messages = st.lists(
    st.one_of(st.tuples(st.just("text"), st.text(max_size=40)), st.tuples(st.just("binary"), st.binary(max_size=40))),
    max_size=8,
)


@settings(max_examples=60, deadline=None)
@given(messages, st.data())
def test_reader_reassembles_any_fragmentation_and_chunking(msgs, data):
    stream = b""
    for kind, value in msgs:
        raw = value.encode() if kind == "text" else value
        cuts = sorted(data.draw(st.lists(st.integers(0, len(raw)), max_size=3)))
        pieces = [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)], strict=True)]
        for i, piece in enumerate(pieces):
            opcode = (1 if kind == "text" else 2) if i == 0 else 0
            stream += client_frame(opcode, piece, fin=i == len(pieces) - 1)
            if data.draw(st.booleans()):
                stream += client_frame(9, b"p")
    step = data.draw(st.integers(1, max(1, len(stream))))
    got = [e for e in events(FrameReader(), stream, step) if e[0] != "ping"]
    assert got == msgs


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 3), st.integers(1, 1 << 20), st.data())
def test_large_frames_unmasked_in_pieces_arrive_intact(before, size, data):
    # Frames past the in-place unmasking threshold, split at arbitrary points: the bytes that
    # come out are the bytes that went in, whatever the chunking and mask alignment.
    unit = data.draw(st.binary(min_size=1, max_size=64))
    payload = unit * ((_frames._UNMASK_PIECE + size) // len(unit) + 1)
    stream = client_frame(2, b"x" * before) + client_frame(2, payload) + client_frame(1, b"after")
    step = data.draw(st.sampled_from([1000, 4096, 65536, 300_001, len(stream)]))
    got = list(events(FrameReader(), stream, step))
    assert got == [("binary", b"x" * before), ("binary", payload), ("text", "after")]


_DOCUMENTED_CLOSE_CODES = {1002, 1007, 1009}


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.integers(1, 64), st.sampled_from([None, 100]))
def test_arbitrary_bytes_give_events_or_a_documented_close_code(stream, step, limit):
    reader = FrameReader(limit)
    try:
        for i in range(0, len(stream), step):
            reader.feed(stream[i : i + step])
            while True:
                event = reader.next_event()
                if event is None:
                    break
                assert event[0] in ("text", "binary", "ping", "pong", "close")
    except ProtocolError as e:
        assert e.code in _DOCUMENTED_CLOSE_CODES
        with pytest.raises(ProtocolError):
            reader.next_event()  # a failed reader stays failed


# -- a real server ------------------------------------------------------------------------


class Server:
    """A pywsgi server in this hub whose app echoes, with a few ``!commands``."""

    def __init__(self, handler_attrs: dict):
        self.finished: gevent.queue.Queue = gevent.queue.Queue()  # (ws, error) when an app ends
        self.notes: list = []
        self.conns: list = []  # every upgraded WebSocket, in order
        handler = type("TestHandler", (WebSocketHandler,), handler_attrs)
        self.server = WSGIServer(("127.0.0.1", 0), self.app, handler_class=handler, log=None, error_log=None)
        self.server.start()
        self.port = self.server.server_port

    def app(self, environ, start_response):
        ws = environ.get("wsgi.websocket")
        if ws is None:
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"plain"]
        self.conns.append(ws)
        query = parse_qs(environ.get("QUERY_STRING", ""))
        if "sndbuf" in query:
            ws._socket.setsockopt(stdsocket.SOL_SOCKET, stdsocket.SO_SNDBUF, int(query["sndbuf"][0]))
        idle = float(query["idle"][0]) if "idle" in query else None
        error = None
        try:
            while True:
                message = ws.read_message(timeout=idle)
                if message is None:
                    break
                if message is TIMEOUT:
                    ws.send_frame("text", "TIMEOUT")
                    continue
                if message[0] == "text" and message[1].startswith("!"):
                    if self.command(ws, message[1][1:].split(" ", 2)) == "return":
                        break
                    continue
                ws.send_frame(*message)
        except WebSocketError as e:
            error = e
        self.finished.put((ws, error))
        return []

    def command(self, ws, args):
        name = args[0]
        if name == "close":
            started = time.monotonic()
            ws.close(int(args[1]), args[2] if len(args) > 2 else "")
            self.notes.append(("close took", time.monotonic() - started))
        elif name == "close-twice":
            ws.close(1000)
            ws.close(1001)
            try:
                ws.send_frame("text", "too late")
            except ConnectionClosed as e:
                self.notes.append(e)
        elif name == "close-later":  # from another greenlet, while this one reads
            gevent.spawn_later(float(args[1]), ws.close, int(args[2]))
        elif name == "close-and-sleep":  # and read nothing for a while
            ws.close(1000)
            gevent.sleep(float(args[1]))
            self.notes.append((ws.close_code, ws.try_send_frame("text", "x")))
            return "return"
        elif name == "close-wait":  # a full closing handshake from the application
            ws.close(1000)
            self.notes.append(("closed", ws.wait_closed(5), ws.close_code))
            return "return"
        elif name == "flood":
            chunk = b"\x00" * 65536
            while True:
                ws.send_frame("binary", chunk)
        elif name == "concurrent":
            count, size = int(args[1]), int(args[2])

            def sender(fill):
                for _ in range(count):
                    ws.send_frame("binary", fill * size)

            gevent.joinall([gevent.spawn(sender, b"A"), gevent.spawn(sender, b"B")], raise_error=True)
            ws.send_frame("text", "done")
        elif name == "stats":
            ws.send_frame("text", f"{ws.bytes_in} {ws.bytes_out} {ws.frames_in} {ws.frames_out}")
        elif name == "raise":
            raise RuntimeError("application crashed")
        elif name == "return":
            return "return"
        return None

    def stop(self):
        self.server.stop(timeout=1)


@pytest.fixture
def hub_errors(monkeypatch):
    return capture_hub_errors(monkeypatch)


@pytest.fixture
def serve(hub_errors):
    with servers(Server) as start:
        yield start
    assert hub_errors == []


@pytest.fixture
def connect():
    """Raw clients whose every server frame is also checked to have no RSV bits."""
    with clients(no_rsv=True) as open_client:
        yield open_client


def test_echo_text_and_binary_exact_frames(serve, connect):
    server = serve()
    c = connect(server.port)
    c.send_frame(1, "héllo".encode())
    assert c.recv_exact(8) == b"\x81\x06" + "héllo".encode()
    c.send_frame(2, b"\x00\x01\x02")
    assert c.recv_exact(5) == b"\x82\x03\x00\x01\x02"
    c.send_frame(2, b"z" * 70000)
    assert c.recv_exact(10 + 70000) == b"\x82\x7f" + (70000).to_bytes(8, "big") + b"z" * 70000
    c.send_frame(1, b"")
    assert c.recv_exact(2) == b"\x81\x00"


def test_it_is_still_a_gevent_websocket_with_the_handler_options(serve, connect):
    server = serve(ws_max_message_size=12345, ws_write_timeout=3.5, ws_close_timeout=0.5)
    c = connect(server.port)
    c.send_frame(1, b"!return")
    ws, error = server.finished.get(timeout=5)
    assert isinstance(ws, WebSocket) and isinstance(ws, geventwebsocket.websocket.WebSocket)
    assert (ws.max_message_size, ws.write_timeout, ws.close_timeout) == (12345, 3.5, 0.5)
    assert error is None


def test_counters(serve, connect):
    server = serve()
    c = connect(server.port)
    c.send_frame(1, b"abc")
    c.recv_exact(5)
    c.send_frame(9, b"")
    c.recv_exact(2)
    c.send_frame(1, b"!stats")
    _, payload = c.recv_frame()
    # in: 9 + 6 + 12 bytes, 3 frames; out: 5 + 2 bytes, 2 frames
    assert payload == b"27 7 3 2"


def test_ping_is_answered_and_pong_ignored(serve, connect):
    server = serve()
    c = connect(server.port)
    c.send_frame(9, b"hello")
    assert c.recv_exact(7) == b"\x8a\x05hello"
    c.send_frame(10, b"unsolicited")
    c.send_frame(9, b"")
    c.send_frame(1, b"x")
    assert c.recv_exact(2 + 3) == b"\x8a\x00" + b"\x81\x01x"


def test_fragments_are_reassembled_around_a_ping(serve, connect):
    server = serve()
    c = connect(server.port)
    c.send_frame(1, b"Hel", fin=False)
    c.send_frame(9, b"p")
    c.send_frame(0, b"l", fin=False)
    c.send_frame(0, b"o")
    assert c.recv_exact(3 + 7) == b"\x8a\x01p" + b"\x81\x05Hello"
    c.send_frame(2, b"\x01", fin=False)
    c.send_frame(0, b"", fin=False)
    c.send_frame(0, b"\x02")
    assert c.recv_exact(4) == b"\x82\x02\x01\x02"


def test_utf8_split_across_fragments_is_valid(serve, connect):
    """Defect 6: UTF-8 is decoded incrementally; a code point may straddle fragments."""
    server = serve()
    c = connect(server.port)
    euro = "€".encode()  # e2 82 ac
    c.send_frame(1, b"a" + euro[:1], fin=False)
    c.send_frame(0, euro[1:2], fin=False)
    c.send_frame(0, euro[2:] + b"b")
    assert c.recv_exact(7) == b"\x81\x05a\xe2\x82\xacb"


@pytest.mark.parametrize(
    "frames",
    [
        [client_frame(1, b"\xff")],
        [client_frame(1, b"\xe2\x82", fin=False), client_frame(0, b"\x28")],
        [client_frame(1, b"ok\xe2\x82")],
    ],
    ids=["invalid byte", "invalid split code point", "truncated"],
)
def test_invalid_utf8_closes_1007(serve, connect, frames):
    """Defect 4: the close frame carries 1007."""
    server = serve()
    c = connect(server.port)
    c.send(b"".join(frames))
    c.expect_close(1007)
    c.expect_eof()
    c.close()  # as a client does once the server closed TCP
    ws, error = server.finished.get(timeout=5)
    assert ws.close_code == 1007 and error is None


def test_invalid_utf8_fails_before_the_message_ends(serve, connect):
    server = serve()
    c = connect(server.port)
    c.send_frame(1, b"\xc0\xaf", fin=False)
    c.expect_close(1007)  # no final fragment was sent
    c.expect_eof()
    c.close()


@pytest.mark.parametrize("name", PROTOCOL_ERRORS)
def test_protocol_errors_close_1002(serve, connect, name):
    """Defects 4 and 10: RFC violations (unmasked frames included) close with 1002."""
    server = serve()
    c = connect(server.port)
    c.send(PROTOCOL_ERRORS[name])
    reason = c.expect_close(1002)
    assert reason
    c.expect_eof()
    c.close()
    ws, _ = server.finished.get(timeout=5)
    assert (ws.close_code, ws.close_reason) == (1002, reason)


def test_oversized_message_is_refused_before_its_payload(serve, connect):
    """Defect 6: only a header claiming 100 MiB is sent; 1009 comes back anyway."""
    server = serve(ws_max_message_size=1024)
    c = connect(server.port)
    c.send_frame(1, b"x" * 1024)  # at the limit: fine
    assert c.recv_exact(4 + 1024) == b"\x81\x7e\x04\x00" + b"x" * 1024
    c.send(client_frame(2, length=100 * 1024 * 1024)[:14])  # header and mask, no payload
    assert c.expect_close(1009) == "message too big"
    c.expect_eof()
    c.close()
    ws, _ = server.finished.get(timeout=5)
    assert ws.close_code == 1009
    assert ws.bytes_in < 2048


def test_oversized_fragmented_message_is_refused(serve, connect):
    server = serve(ws_max_message_size=1000)
    c = connect(server.port)
    c.send_frame(2, b"x" * 600, fin=False)
    c.send(client_frame(0, length=401)[:6])
    c.expect_close(1009)
    c.expect_eof()
    c.close()


@pytest.mark.parametrize(("code", "reason"), [(1000, ""), (1011, "internal error"), (1012, "restart")])
def test_server_close_packs_the_code(serve, connect, code, reason):
    """Defect 1: close(code, reason) sends the code as uint16; the reply ends the connection."""
    server = serve()
    c = connect(server.port)
    c.send_frame(1, f"!close {code} {reason}".encode())
    payload = struct.pack("!H", code) + reason.encode()
    assert c.recv_exact(2 + len(payload)) == bytes((0x88, len(payload))) + payload
    c.send_frame(8, struct.pack("!H", code))
    c.expect_eof()
    ws, error = server.finished.get(timeout=5)
    assert ws.close_code == code and error is None
    assert server.notes[0][1] < 0.5  # close() did not wait for the reply


def test_client_close_code_is_recorded_and_echoed(serve, connect):
    """Defects 2 and 3: the echo carries the client's code; the app learns code and reason."""
    server = serve()
    c = connect(server.port)
    c.send_frame(8, close_payload(4001, b"going"))
    assert c.recv_exact(4) == b"\x88\x02\x0f\xa1"
    c.expect_eof()
    ws, _ = server.finished.get(timeout=5)
    assert (ws.close_code, ws.close_reason) == (4001, "going")
    assert ws.closed


def test_client_close_without_code_is_1005(serve, connect):
    server = serve()
    c = connect(server.port)
    c.send_frame(8)
    assert c.recv_exact(2) == b"\x88\x00"
    c.expect_eof()
    ws, _ = server.finished.get(timeout=5)
    assert ws.close_code == 1005


def test_close_is_idempotent_and_sending_after_it_raises(serve, connect):
    server = serve()
    c = connect(server.port)
    c.send_frame(1, b"!close-twice")
    assert c.recv_exact(4) == b"\x88\x02\x03\xe8"
    c.send_frame(1, b"dropped: the server is closing")
    c.send_frame(8, close_payload(1000))
    c.expect_eof()  # nothing between the one close frame and EOF
    ws, _ = server.finished.get(timeout=5)
    assert isinstance(server.notes[0], ConnectionClosed)
    assert ws.close_code == 1000


def test_close_from_another_greenlet_while_reading(serve, connect):
    """The transport's pattern: one greenlet blocked in read_message, another closes."""
    server = serve()
    c = connect(server.port)
    c.send_frame(1, b"!close-later 0.02 1001")
    assert c.recv_exact(4) == b"\x88\x02\x03\xe9"
    c.send_frame(8, close_payload(1001))
    c.expect_eof()
    ws, error = server.finished.get(timeout=5)
    assert ws.close_code == 1001 and error is None


def test_wait_closed_completes_the_closing_handshake(serve, connect):
    server = serve()
    c = connect(server.port)
    c.send_frame(1, b"!close-wait")
    assert c.recv_exact(4) == b"\x88\x02\x03\xe8"
    c.send_frame(1, b"dropped")
    c.send_frame(8, close_payload(1000, b"ok"))
    c.expect_eof()
    server.finished.get(timeout=5)
    assert server.notes == [("closed", True, 1000)]


def test_close_timeout_with_nobody_reading(serve, connect):
    server = serve(ws_close_timeout=0.1)
    c = connect(server.port)
    c.send_frame(1, b"!close-and-sleep 0.4")
    assert c.recv_exact(4) == b"\x88\x02\x03\xe8"
    started = time.monotonic()
    c.expect_eof()  # the close timer closed TCP while the application slept
    assert time.monotonic() - started < 0.35
    server.finished.get(timeout=5)
    assert server.notes == [(1006, False)]


def test_frames_sent_with_the_handshake_are_read(serve):
    server = serve()
    sock = gsocket.create_connection(("127.0.0.1", server.port))
    sock.sendall(
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        + client_frame(1, b"early")
        + client_frame(9, b"!")
    )
    rfile = sock.makefile("rb")
    with gevent.Timeout(5):
        while rfile.readline() != b"\r\n":
            pass
        assert rfile.read(7 + 3) == b"\x81\x05early" + b"\x8a\x01!"
    rfile.close()
    sock.close()


def test_a_content_length_on_the_upgrade_request_is_not_read_as_a_body(serve):
    server = serve()
    sock = gsocket.create_connection(("127.0.0.1", server.port))
    sock.sendall(
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nContent-Length: 3\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n" + client_frame(1, b"hey")
    )
    rfile = sock.makefile("rb")
    with gevent.Timeout(5):
        while rfile.readline() != b"\r\n":
            pass
        assert rfile.read(5) == b"\x81\x03hey"
        sock.sendall(client_frame(8, close_payload(1000)))
        assert rfile.read(4) == b"\x88\x02\x03\xe8"
        assert rfile.read() == b""
    rfile.close()
    sock.close()
    ws, error = server.finished.get(timeout=5)
    assert ws.close_code == 1000 and error is None


def test_close_timeout_closes_tcp_without_a_reply(serve, connect):
    server = serve(ws_close_timeout=0.2)
    c = connect(server.port)
    started = time.monotonic()
    c.send_frame(1, b"!close 1001")
    c.expect_close(1001)
    c.expect_eof()
    assert time.monotonic() - started < 1.5
    ws, _ = server.finished.get(timeout=5)
    assert ws.close_code == 1006


def test_returning_app_closes_1000_and_awaits_the_reply(serve, connect):
    server = serve()
    c = connect(server.port)
    c.send_frame(1, b"!return")
    assert c.recv_exact(4) == b"\x88\x02\x03\xe8"
    server.finished.get(timeout=5)
    gevent.sleep(0.05)
    c.send_frame(8, close_payload(1000))  # TCP still open until this reply
    c.expect_eof()


def test_crashing_app_closes_1011(serve, connect, hub_errors):
    server = serve()
    c = connect(server.port)
    c.send_frame(1, b"!raise")
    assert c.recv_exact(4) == b"\x88\x02\x03\xf3"
    c.send_frame(8, close_payload(1011))
    c.expect_eof()
    gevent.sleep(0.05)
    assert len(hub_errors) == 1 and hub_errors[0][1] is RuntimeError  # pywsgi reports the crash
    hub_errors.clear()


def test_client_vanishing_mid_frame_is_1006(serve, connect):
    server = serve()
    c = connect(server.port)
    c.send(client_frame(1, b"x" * 100)[:16])
    c.close()
    ws, error = server.finished.get(timeout=5)
    assert ws.close_code == 1006 and error is None
    assert ws.read_message() is None


def test_idle_timeout_returns_TIMEOUT_and_keeps_the_connection(serve, connect):
    server = serve()
    c = connect(server.port, "/?idle=0.1")
    started = time.monotonic()
    c.send_frame(1, b"partial", fin=False)  # an incomplete message is not a message
    assert c.recv_exact(9) == b"\x81\x07TIMEOUT"
    assert 0.09 < time.monotonic() - started < 1
    c.send_frame(0, b"!")
    assert c.recv_exact(10) == b"\x81\x08partial!"


def test_concurrent_senders_never_interleave_frames(serve, connect):
    """Defect 5: two greenlets sending 1 MiB frames through a small send buffer."""
    server = serve()
    c = connect(server.port, "/?sndbuf=65536")
    count, size = 6, 1024 * 1024
    c.send_frame(1, f"!concurrent {count} {size}".encode())
    seen = {b"A": 0, b"B": 0}
    for _ in range(2 * count):
        b0, payload = c.recv_frame(timeout=10)
        assert b0 == 0x82 and len(payload) == size
        fill = payload[:1]
        assert payload == fill * size, "frames interleaved"
        seen[fill] += 1
    assert seen == {b"A": count, b"B": count}
    assert c.recv_exact(6) == b"\x81\x04done"


def test_write_timeout_aborts_a_client_that_stops_reading(serve, connect):
    """Defect 9: a client that never reads cannot block a sender for ever."""
    server = serve(ws_write_timeout=0.3)
    c = connect(server.port, "/?sndbuf=4096", rcvbuf=4096)
    started = time.monotonic()
    c.send_frame(1, b"!flood")
    ws, error = server.finished.get(timeout=5)
    assert isinstance(error, WriteTimeout)
    assert time.monotonic() - started < 2
    assert ws.close_code == 1006 and ws.closed
    with pytest.raises(ConnectionClosed):
        ws.send_frame("text", "x")
    # The connection was reset: draining the client ends quickly.
    with gevent.Timeout(5):
        try:
            while c.sock.recv(1 << 20):
                pass
        except ConnectionResetError:
            pass


def test_pipelined_messages_let_the_loop_run(serve, connect):
    """Defect 12: a reader with 4000 buffered messages lets timers and IO run as it goes.

    gevent.sleep(0) is not enough: it runs queued callbacks but polls the loop only every
    50 of them, so a timer would fire only every 3200 messages.
    """
    server = serve()
    c = connect(server.port)
    c.send_frame(1, b"!stats")
    c.recv_frame()
    ws = server.conns[0]
    seen = []

    def ticker():
        while True:
            seen.append(ws.frames_in)
            gevent.sleep(0.0002)

    tick = gevent.spawn(ticker)
    c.send(client_frame(1, b"m") * 4000)
    with gevent.Timeout(10):
        c.recv_exact(3 * 4000)
    tick.kill()
    midway = {n for n in seen if 1 < n < 4001}
    assert len(midway) >= 20, len(midway)  # one per yield: ~4000 / 64


def test_interop_with_the_websockets_client(serve):
    """The `websockets` library's sync client (a real thread) against the server."""
    sync_client = pytest.importorskip("websockets.sync.client")
    exceptions = pytest.importorskip("websockets.exceptions")

    def select_subprotocol(self, offered):
        return "v2.json" if "v2.json" in offered else None

    server = serve(select_subprotocol=select_subprotocol, ws_max_message_size=1 << 20)
    url = f"ws://127.0.0.1:{server.port}/"

    def session():
        out = {}
        with sync_client.connect(url, subprotocols=["v1.json", "v2.json"], open_timeout=5, close_timeout=5) as ws:
            out["subprotocol"] = ws.subprotocol
            out["extensions"] = ws.protocol.extensions
            ws.send("héllo")
            out["text"] = ws.recv(timeout=5)
            ws.send(b"\x00\xff" * 40000)
            out["binary"] = ws.recv(timeout=5)
            ws.send(["frag", "mented"])
            out["fragmented"] = ws.recv(timeout=5)
            ws.ping(b"p").wait(5)
            ws.send("!close 1012 restart")
            try:
                ws.recv(timeout=5)
            except exceptions.ConnectionClosed as e:
                out["closed"] = (e.rcvd.code, e.rcvd.reason)
        with sync_client.connect(url, open_timeout=5, close_timeout=5) as ws:
            ws.send(b"x" * ((1 << 20) + 1))
            try:
                ws.recv(timeout=5)
            except exceptions.ConnectionClosed as e:
                out["too big"] = e.rcvd.code
        with sync_client.connect(url, open_timeout=5, close_timeout=5) as ws:
            ws.close(4000, "bye")
        return out

    out = gevent.get_hub().threadpool.spawn(session).get(timeout=20)
    assert out == {
        "subprotocol": "v2.json",
        "extensions": [],
        "text": "héllo",
        "binary": b"\x00\xff" * 40000,
        "fragmented": "fragmented",
        "closed": (1012, "restart"),
        "too big": 1009,
    }
    codes = [server.finished.get(timeout=5)[0].close_code for _ in range(3)]
    assert codes == [1012, 1009, 4000]
