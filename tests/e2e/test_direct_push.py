"""Pushes written by the pushing process: ``transport._transport.push`` over a real server.

An endpoint with ``HttpServer`` runs in this process's hub on 127.0.0.1 (port 0), as in
``test_stream_transport.py``, so a test can push to a connection's transport process from
its own process (or from processes it spawns) while a raw client reads the wire. A push to
an idle, untraced WebSocket transport is written by the pusher with
``WebSocket.send_frame_nowait``; anything queued, a tracer, a full socket or a partly
written frame sends it through the transport's mailbox instead. What is checked here is
what can be seen from outside: the frames on the wire (byte for byte, in order per
sender), the transport's state (``process_info``, ``get_state`` counters, its mailbox) and
who wrote (a spy on ``send_frame_nowait`` and on the transport's message handler).

Every wait is bounded (a receive with a timeout, a socket read under ``gevent.Timeout``, or
a bounded poll of a condition); nothing sleeps and hopes.
"""

from __future__ import annotations

import json
import select
import socket as stdsocket
import struct
import sys
import time
from typing import Any, NamedTuple

import gevent
import pytest
from gevent import getcurrent
from inproc_server import RawV2Client, down, joined, mask_frame, serve_in_hub, tag

import actors
from transport import Channel, SocketHandler, _transport, broadcast_from, push
from transport.serializers import V2
from transport.websocket import WebSocket

IDLE_MS = 500
IDLE = IDLE_MS / 1000

# connect() records the pid it ran in (the transport process), by the client's "tag".
CONNECT_PIDS: dict[str, actors.Pid] = {}


class PushChannel(Channel):
    """``shout`` pushes its payload back; ``count {n}`` pushes seq 1..n from handle_info, one
    message to itself per push; anything else is echoed as the reply."""

    def join(self, topic, payload, socket):
        return ("ok", socket)

    def handle_in(self, event, payload, socket):
        if event == "whoami":
            return ("reply", ("ok", {"pid": str(actors.self()), "transport": str(socket.transport_pid)}), socket)
        if event == "shout":
            push(socket, "shouted", payload)
            return ("noreply", socket)
        if event == "count":
            actors.send(actors.self(), ("count", 1, payload["n"], payload.get("pad", 0)))
            return ("noreply", socket)
        if event == "bcast":
            broadcast_from(socket, "bcast", payload)
            return ("reply", ("ok", {}), socket)
        return ("reply", ("ok", payload), socket)

    def handle_info(self, msg, socket):
        if isinstance(msg, tuple) and msg[0] == "count":
            _, i, n, pad = msg
            push(socket, "seq", {"from": "channel", "seq": i, "pad": "c" * (i * pad % 3000)})
            if i < n:
                actors.send(actors.self(), ("count", i + 1, n, pad))
        return ("noreply", socket)


class DirectSocket(SocketHandler):
    channels = [("room:*", PushChannel)]  # noqa: RUF012 - SocketHandler's own API

    def connect(self, params, socket, connect_info):
        if "tag" in params:
            CONNECT_PIDS[params["tag"]] = actors.self()
        return ("ok", socket)


@pytest.fixture
def server(monkeypatch):
    """An endpoint served in this hub (``serve_in_hub``): ``/idle`` closes after IDLE_MS of
    silence. Yields the port; checks that no process outlived the test's connections."""
    with serve_in_hub(monkeypatch, DirectSocket, "Direct", IDLE_MS) as (port, _baseline):
        yield port
    assert _transport._idle_transports == {}


def poll(condition, timeout: float = 5.0, what: str = "condition") -> Any:
    """Bounded poll of ``condition()`` (a truthy value ends it); yields to the hub between tries."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout}s")
        gevent.sleep(0.002)


def wait_idle(pid: actors.Pid, timeout: float = 5.0) -> Any:
    """Bounded poll until the transport waits idle (registered, mailbox empty); its io."""

    def idle():
        proc = pid._proc
        if proc is None:
            raise AssertionError(f"transport {pid} died")
        io = _transport._idle_transports.get(proc)
        return io if io is not None and not proc.mailbox else None

    return poll(idle, timeout, f"transport {pid} idle")


def server_frame(opcode: int, payload: bytes) -> bytes:
    """A server frame as RFC 6455 puts it on the wire (unmasked, FIN), built independently."""
    n = len(payload)
    if n < 126:
        return struct.pack("!BB", 0x80 | opcode, n) + payload
    if n < 65536:
        return struct.pack("!BBH", 0x80 | opcode, 126, n) + payload
    return struct.pack("!BBQ", 0x80 | opcode, 127, n) + payload


def read_frame(frame: bytes) -> tuple[str, Any]:
    """A server frame's (opcode name, payload: str for text), read back independently."""
    n = frame[1] & 0x7F
    start = 2 if n < 126 else 4 if n == 126 else 10
    payload = bytes(frame[start:])
    return ("text", payload.decode()) if frame[0] & 0x0F == 1 else ("binary", payload)


def pattern(n: int) -> bytes:
    """n bytes that are not all alike, so a lost, repeated or foreign chunk shows."""
    block = bytes(range(251))  # a prime length: chunk boundaries never line up with it
    return (block * (n // len(block) + 1))[:n]


def v2(topic: str, event: str, payload: Any) -> str:
    return json.dumps([None, None, topic, event, payload], separators=(",", ":"))


class Frame(NamedTuple):
    opcode: int
    payload: bytes
    wire: int  # bytes it took on the wire


class Client(RawV2Client):
    """A V2 JSON client on a raw gevent socket (``inproc_server.RawV2Client``); ``rcvbuf`` sets
    SO_RCVBUF before connecting (a small receive window). Reads go through its own buffer,
    ``chunk`` bytes at a time."""

    def _read_response(self) -> bytes:
        self.buf = bytearray()
        self.chunk = 65536
        self.ended = False
        deadline = time.monotonic() + 5
        while b"\r\n\r\n" not in self.buf:
            assert self._fill(deadline), f"EOF in the handshake: {bytes(self.buf)!r}"
        head, _, rest = bytes(self.buf).partition(b"\r\n\r\n")
        self.buf = bytearray(rest)
        return head.split(b"\r\n", 1)[0]

    def _fill(self, deadline: float) -> bool:
        """Read once from the socket into the buffer; False at EOF or reset."""
        if self.ended:
            return False
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError("no data before the deadline")
        with gevent.Timeout(remaining, AssertionError("no data before the deadline")):
            try:
                data = self.sock.recv(self.chunk)
            except ConnectionResetError:
                data = b""
        if not data:
            self.ended = True
            return False
        self.buf += data
        return True

    def _exact(self, n: int, deadline: float) -> bytes:
        while len(self.buf) < n:
            assert self._fill(deadline), f"connection ended after {len(self.buf)} of {n} bytes"
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    def recv_frame(self, timeout: float = 5) -> Frame:
        """The next server frame (strict framing checks: FIN, no mask, no reserved bits)."""
        deadline = time.monotonic() + timeout
        b0, b1 = self._exact(2, deadline)
        assert b0 & 0xF0 == 0x80 and b1 & 0x80 == 0, (hex(b0), hex(b1))
        n = b1 & 0x7F
        wire = 2
        if n == 126:
            n = struct.unpack("!H", self._exact(2, deadline))[0]
            wire += 2
        elif n == 127:
            n = struct.unpack("!Q", self._exact(8, deadline))[0]
            wire += 8
        return Frame(b0 & 0x0F, self._exact(n, deadline), wire + n)

    def read_to_end(self, timeout: float = 5) -> bytes:
        """Everything the server sends until the connection ends (EOF or reset)."""
        deadline = time.monotonic() + timeout
        while self._fill(deadline):
            pass
        data = bytes(self.buf)
        self.buf.clear()
        return data

    def expect_close(self, timeout: float = 5) -> tuple[int, str]:
        deadline = time.monotonic() + timeout
        while True:
            frame = self.recv_frame(max(0.01, deadline - time.monotonic()))
            if frame.opcode == 8:
                return struct.unpack("!H", frame.payload[:2])[0], frame.payload[2:].decode()

    def finish_close(self, code: int) -> None:
        """Answer the server's close frame and wait (bounded) for it to close TCP."""
        self.sock.sendall(mask_frame(8, struct.pack("!H", code)))
        assert self.read_to_end() == b""

    def close(self) -> None:
        if not self.sock.closed:
            self.sock.close()


@pytest.fixture
def connect():
    clients: list[Client] = []

    def open_client(port: int, mount: str = "/socket", **params) -> tuple[Client, actors.Pid]:
        t = tag("d")
        c = Client(port, mount, tag=t, **params)
        clients.append(c)
        assert c.status == b"HTTP/1.1 101 Switching Protocols", c.status
        return c, CONNECT_PIDS.pop(t)

    yield open_client
    for c in clients:
        c.close()


def set_server_sndbuf(io: Any, size: int) -> None:
    """SO_SNDBUF of the server's end of the connection (from this process: same hub)."""
    io.ws._socket.setsockopt(stdsocket.SOL_SOCKET, stdsocket.SO_SNDBUF, size)


class Spies:
    """Who wrote what: every ``send_frame_nowait`` call (greenlet, opcode, data, result kind)
    and every message the transport loop handled from its mailbox."""

    def __init__(self) -> None:
        self.nowait: list[tuple[Any, str, Any, str]] = []
        self.handled: list[tuple[Any, Any]] = []  # (transport greenlet, message)

    def reset(self) -> None:
        self.nowait.clear()
        self.handled.clear()

    def direct(self) -> list:
        return [c for c in self.nowait if c[3] == "whole"]

    def partial(self) -> list:
        return [c for c in self.nowait if c[3] == "partial"]

    def pushes_handled(self) -> list:
        return [m for _g, m in self.handled if isinstance(m, tuple) and m and m[0] == "socket_push"]


@pytest.fixture
def spies(monkeypatch):
    s = Spies()
    real_nowait = WebSocket.send_frame_nowait
    real_on_message = _transport._on_message

    real_built = WebSocket.send_built_nowait

    def send_frame_nowait(self, opcode, data):
        result = real_nowait(self, opcode, data)
        kind = "whole" if result is True else "none" if result is False else "partial"
        s.nowait.append((getcurrent(), opcode, data, kind))
        return result

    def send_built_nowait(self, frame):
        # send_frame_nowait delegates here: record only the frames built elsewhere (a
        # broadcast's, built once), as (opcode, payload) read back from the frame.
        result = real_built(self, frame)
        if sys._getframe(1).f_code.co_name != "send_frame_nowait":
            kind = "whole" if result is True else "none" if result is False else "partial"
            opcode, payload = read_frame(frame)
            s.nowait.append((getcurrent(), opcode, payload, kind))
        return result

    def on_message(conn, io, msg):
        s.handled.append((getcurrent(), msg))
        return real_on_message(conn, io, msg)

    monkeypatch.setattr(WebSocket, "send_frame_nowait", send_frame_nowait)
    monkeypatch.setattr(WebSocket, "send_built_nowait", send_built_nowait)
    monkeypatch.setattr(_transport, "_on_message", on_message)
    return s


# -- 1. a push to an idle transport: written by the pusher, the transport sleeps on ---------


def test_a_push_to_an_idle_transport_is_written_by_the_pusher(server, connect, spies):
    c, pid = connect(server)
    wait_idle(pid)
    before = actors.get_state(pid, timeout=2)
    wait_idle(pid)
    spies.reset()
    me = getcurrent()
    texts = [v2("direct", "n", {"i": i}) for i in range(5)]
    for text in texts:
        _transport.push(pid, ("socket_push", "text", text))
        # Not woken: no push queued for it, still registered idle in its stream loop.
        info = actors.process_info(pid, messages=True)
        assert not any(isinstance(m, tuple) and m[:1] == ("socket_push",) for m in info["messages"]), info
        assert pid._proc in _transport._idle_transports
    # Written here, by this greenlet, each frame whole.
    assert [(g is me, op, data, kind) for g, op, data, kind in spies.nowait] == [(True, "text", t, "whole") for t in texts]
    for text in texts:
        assert c.recv_frame() == Frame(1, text.encode(), 2 + len(text))
    # The transport never handled them: no socket_push went through its loop.
    assert spies.handled == []
    after = actors.get_state(pid, timeout=2)
    assert after["frames_out"] - before["frames_out"] == 5
    assert after["bytes_out"] - before["bytes_out"] == sum(2 + len(t) for t in texts)
    c.send_raw(mask_frame(8, struct.pack("!H", 1000)))
    assert c.expect_close() == (1000, "")
    assert c.read_to_end() == b""


def test_channel_pushes_and_replies_are_written_by_the_channel(server, connect, spies):
    c, pid = connect(server)
    channel, transport = joined(c, "room:direct")
    assert transport == pid
    wait_idle(pid)
    spies.reset()
    channel_glet = channel._proc.glet
    ref = c.send("room:direct", "shout", {"x": 1}, join_ref="1")
    msg = json.loads(c.recv_frame().payload)
    assert msg == ["1", None, "room:direct", "shouted", {"x": 1}]
    ref = c.send("room:direct", "echo", {"y": 2}, join_ref="1")
    assert c.reply_to(ref)[4] == {"status": "ok", "response": {"y": 2}}
    # Both written by the channel's own greenlet, without a hop through the transport.
    assert [(g is channel_glet, kind) for g, _op, _data, kind in spies.nowait] == [(True, "whole"), (True, "whole")]
    assert spies.pushes_handled() == []
    assert [g for g, _m in spies.handled if g is not pid._proc.glet] == []


# -- 2. order: per sender, whichever way each push went ----------------------------------------


@pytest.mark.parametrize("buffers", ["default", "small"])
def test_pushes_from_many_processes_keep_each_senders_order(server, connect, spies, buffers):
    """A channel pushing 1..N from handle_info, three processes pushing with ``push`` and
    one alternating plain ``actors.send`` and ``push`` (so pushes queue now and then, and a
    push follows a message of the same sender still queued), while the client sends
    requests whose replies the channel writes: every sender's frames arrive complete and in
    the order they were pushed; with small socket buffers frames are also cut short."""
    small = buffers == "small"
    c, pid = connect(server, rcvbuf=4096 if small else None)
    joined(c, "room:order")
    if small:
        set_server_sndbuf(wait_idle(pid), 4096)
    wait_idle(pid)
    spies.reset()
    n = 300

    def idle_and_writable() -> bool:
        proc = pid._proc
        io = _transport._idle_transports.get(proc) if proc is not None else None
        if proc is None or io is None or proc.mailbox:
            return proc is None  # (a dead transport ends the wait; the test fails later)
        return bool(select.select([], [io.ws._socket.fileno()], [], 0)[1])

    def pusher(name: str, via_mailbox: bool, every: int) -> None:
        for i in range(1, n + 1):
            size = i * 53 % 2500
            if not via_mailbox and i % 20 == 0:
                # Now and then wait (bounded) for the transport to catch up and sit idle
                # with room in its socket: this push is written here, a big one only in
                # part (its rest queued for the transport), and the others keep pushing.
                poll(idle_and_writable, 10, "an idle transport")
                size = 70_000
            msg = ("socket_push", "text", v2("seq", "push", {"from": name, "seq": i, "pad": "p" * size}))
            if via_mailbox and i % 2:
                actors.send(pid, msg)  # then its next one with push: it must not overtake
            else:
                _transport.push(pid, msg)
            if i % every == 0:
                gevent.sleep(0)

    c.send("room:order", "count", {"n": n, "pad": 41}, join_ref="1")
    pushers = [
        actors.spawn(pusher, "a", False, 1),
        actors.spawn(pusher, "b", False, 3),
        actors.spawn(pusher, "c", False, 7),
        actors.spawn(pusher, "m", True, 2),
    ]
    mons = [actors.monitor(p) for p in pushers]
    seqs: dict[str, list[int]] = {k: [] for k in ("channel", "a", "b", "c", "m")}
    echo_refs: list[str] = []  # sent, in order
    replies: list[tuple[str, Any]] = []
    deadline = time.monotonic() + 20
    received = 0
    while sum(map(len, seqs.values())) < 5 * n or len(replies) < len(echo_refs):
        frame = c.recv_frame(timeout=max(0.01, deadline - time.monotonic()))
        assert frame.opcode == 1, frame
        msg = json.loads(frame.payload)
        if msg[3] == "phx_reply":
            replies.append((msg[1], msg[4]))
        else:
            assert msg[3] in ("push", "seq"), msg
            seqs[msg[4]["from"]].append(msg[4]["seq"])
        received += 1
        if received % 25 == 0 and len(echo_refs) < 40:
            echo_refs.append(c.send("room:order", "echo", {"k": len(echo_refs)}, join_ref="1"))
    assert {k: v == list(range(1, n + 1)) for k, v in seqs.items()} == dict.fromkeys(seqs, True), {
        k: v[:20] for k, v in seqs.items() if v != list(range(1, n + 1))
    }
    assert replies == [(ref, {"status": "ok", "response": {"k": k}}) for k, ref in enumerate(echo_refs)]
    assert len(echo_refs) == 40
    for mon in mons:
        assert down(mon) == "normal"
    # Both ways were taken: frames written by their pushers, and pushes the transport wrote.
    assert len(spies.direct()) > 0
    assert len(spies.pushes_handled()) > 0
    if small:
        assert len(spies.partial()) > 0, "no frame was cut short: the test did not exercise write_rest"
        assert len([m for _g, m in spies.handled if m[0] == "$write_rest"]) == len(spies.partial())


# -- 3. a partly written frame: its rest goes out first, counters exact -----------------------


def test_a_frame_cut_short_is_finished_before_anything_else(server, connect, spies):
    c, pid = connect(server, rcvbuf=4096)
    set_server_sndbuf(wait_idle(pid), 4096)
    before = actors.get_state(pid, timeout=2)
    wait_idle(pid)
    spies.reset()
    big = pattern(1 << 20)
    big_frame = server_frame(2, big)
    _transport.push(pid, ("socket_push", "binary", big))
    assert [(g is getcurrent(), op, kind) for g, op, _d, kind in spies.nowait] == [(True, "binary", "partial")]
    queued = actors.process_info(pid, messages=True)["messages"]
    assert len(queued) == 1 and queued[0][0] == "$write_rest", queued
    rest = bytes(queued[0][1])
    assert 0 < len(rest) < len(big_frame) and big_frame.endswith(rest)
    smalls = [v2("small", "s", {"i": i}) for i in range(5)]
    for s in smalls:
        _transport.push(pid, ("socket_push", "text", s))
    assert len(spies.nowait) == 1  # not even tried: the mailbox holds the rest of a frame
    assert actors.process_info(pid)["message_queue_len"] == 6
    # The client also talks while the rest is pending: a ping (answered with a pong by the
    # transport's reader) and a heartbeat (answered by the transport). Neither may go out
    # in the middle of the big frame.
    c.send_raw(mask_frame(9, b"pp"))
    hb = c.send("phoenix", "heartbeat")
    # A slow reader: 1 KiB per read.
    c.chunk = 1024
    frames = [c.recv_frame(timeout=10)]
    assert frames[0] == Frame(2, big, len(big_frame))  # byte-exact, and first
    c.chunk = 65536
    while len(frames) < 8:
        frames.append(c.recv_frame())
    texts = [f.payload.decode() for f in frames if f.opcode == 1]
    assert [t for t in texts if '"small"' in t] == smalls
    assert [json.loads(t)[4] for t in texts if '"phx_reply"' in t] == [{"status": "ok", "response": {}}]
    assert json.loads(next(t for t in texts if '"phx_reply"' in t))[1] == hb
    assert [f for f in frames if f.opcode not in (1, 2)] == [Frame(10, b"pp", 4)]
    assert len(frames) == 8
    after = actors.get_state(pid, timeout=2)
    assert after["frames_out"] - before["frames_out"] == len(frames) == 8
    assert after["bytes_out"] - before["bytes_out"] == sum(f.wire for f in frames)
    reply_wire = next(f.wire for f in frames if f.opcode == 1 and b"phx_reply" in f.payload)
    assert sum(f.wire for f in frames) == len(big_frame) + sum(2 + len(s) for s in smalls) + 4 + reply_wire
    handled = [m[0] for _g, m in spies.handled]
    assert handled[:6] == ["$write_rest"] + ["socket_push"] * 5, handled
    # The connection is still good.
    ref = c.send("phoenix", "heartbeat")
    assert c.reply_to(ref)[4] == {"status": "ok", "response": {}}
    c.send_raw(mask_frame(8, struct.pack("!H", 1000)))
    assert c.expect_close() == (1000, "")


# -- 4. a traced transport gets its pushes as messages -------------------------------------------


def test_a_traced_transport_gets_pushes_through_its_mailbox(server, connect, spies):
    c, pid = connect(server)
    joined(c, "room:traced")
    wait_idle(pid)
    me = actors.self()
    assert actors.trace(pid, True, tracer=me)
    spies.reset()

    def traced_receive(timeout: float = 2):
        return actors.receive(lambda m: isinstance(m, tuple) and m[:3] == ("trace", pid, "receive"), timeout)

    texts = [v2("traced", "t", {"i": i}) for i in range(5)]
    try:
        for text in texts:
            wait_idle(pid)  # idle, and still not written directly: it is traced
            _transport.push(pid, ("socket_push", "text", text))
            assert traced_receive(0)[3] == ("socket_push", "text", text)  # seen at once
        c.send("room:traced", "shout", {"z": 3}, join_ref="1")
        shout = traced_receive()
        assert shout[3][:2] == ("socket_push", "text")
        assert json.loads(shout[3][2]) == ["1", None, "room:traced", "shouted", {"z": 3}]
        for text in texts:
            assert c.recv_frame() == Frame(1, text.encode(), 2 + len(text))
        assert json.loads(c.recv_frame().payload)[3] == "shouted"
        assert spies.nowait == []  # never written directly while traced
        assert [m for m in spies.pushes_handled()] == [("socket_push", "text", t) for t in texts] + [shout[3]]
    finally:
        actors.trace(pid, False)
        # Drop what tracing left here (the transport's 'send' events to its channel too).
        while actors.receive(lambda m: isinstance(m, tuple) and m[:1] == ("trace",), 0, default=None) is not None:
            pass
    # Untraced again: written directly, and no trace event.
    wait_idle(pid)
    spies.reset()
    text = v2("untraced", "u", {})
    _transport.push(pid, ("socket_push", "text", text))
    assert [kind for *_x, kind in spies.nowait] == ["whole"]
    assert actors.receive(lambda m: isinstance(m, tuple) and m[:1] == ("trace",), 0, default=None) is None
    assert c.recv_frame() == Frame(1, text.encode(), 2 + len(text))


# -- 5. the idle timeout counts from the last input; a busy mailbox still reads -------------------


@pytest.mark.parametrize(
    "schedule",
    [[0.2], [0.25, 0.5, 0.75, 1.25]],
    ids=["one frame", "frames across timer periods"],
)
def test_idle_close_comes_the_timeout_after_the_last_byte(server, connect, schedule):
    """Input at these fractions of the timeout after connecting, then silence (while a
    process keeps pushing): the close comes IDLE after the last byte, not a timer period
    later (a check that only noticed input since the last check closed at up to 2x)."""
    c, pid = connect(server, "/idle")
    opened = time.monotonic()
    stop = []

    def ticker():
        i = 0
        while not stop and actors.is_alive(pid):
            _transport.push(pid, ("socket_push", "text", v2("tick", "t", {"i": i})))
            i += 1
            actors.receive(timeout=0.05, default=None)

    ticking = actors.spawn(ticker)
    mon = actors.monitor(ticking)
    try:
        for at in schedule:
            poll(lambda: time.monotonic() - opened >= at * IDLE, 5, "the next send time")  # noqa: B023
            assert actors.is_alive(pid), f"closed before the input at {at}"
            c.send("phoenix", "heartbeat")
        silent_since = c.last_sent
        code_reason = c.expect_close(timeout=5)
        closed_after = time.monotonic() - silent_since
    finally:
        stop.append(True)
    assert code_reason == (1000, "timeout")
    assert IDLE - 0.01 <= closed_after < IDLE + 0.3, f"closed {closed_after:.3f}s after the last input; timeout {IDLE}s"
    c.finish_close(1000)
    assert down(mon) == "normal"


def test_a_flooded_mailbox_still_answers_the_clients_heartbeat(server, connect, spies):
    """Processes keep the transport's mailbox full (plain ``actors.send``): it still reads
    its socket every few messages, so a heartbeat is answered long before the queue ahead
    of it is written, and all flood frames still arrive in order per sender."""
    c, pid = connect(server, rcvbuf=8192)
    set_server_sndbuf(wait_idle(pid), 8192)
    stop: list[bool] = []
    counts: dict[int, int] = {}
    cap = 20_000

    def flooder(k: int) -> None:
        i = 0
        while not stop and i < cap:
            for _ in range(500):
                i += 1
                actors.send(pid, ("socket_push", "text", v2("flood", "f", {"k": k, "i": i})))
            gevent.sleep(0)
        counts[k] = i

    frames: list[tuple[float, bytes, int]] = []  # (when, payload, transport's queue then)

    def reader() -> None:
        while True:
            try:
                frame = c.recv_frame(timeout=20)
            except (AssertionError, OSError):  # the end (or the socket closed by teardown)
                return
            proc = pid._proc
            frames.append((time.monotonic(), frame.payload, len(proc.mailbox) if proc is not None else -1))

    reading = gevent.spawn(reader)
    try:
        floods = [actors.spawn(flooder, k) for k in range(4)]
        mons = [actors.monitor(p) for p in floods]
        try:
            # A long queue ahead: a loop that read only once its mailbox ran dry would
            # write all of it (and what the flooders add meanwhile) before the heartbeat.
            queued = poll(lambda: len(pid._proc.mailbox) >= 3000 and len(pid._proc.mailbox), 10, "a queue of 3000")
            seen_before = len(frames)
            hb = c.send("phoenix", "heartbeat")
            sent_at = c.last_sent

            def replied():
                for i in range(seen_before, len(frames)):
                    msg = json.loads(frames[i][1])
                    if msg[3] == "phx_reply" and msg[1] == hb:
                        return i
                return None

            at = poll(replied, 5, "the heartbeat's reply")
        finally:
            stop.append(True)
        when, payload, still_queued = frames[at]
        assert json.loads(payload)[4] == {"status": "ok", "response": {}}
        assert when - sent_at < 2.0, when - sent_at
        flood_between = at - seen_before
        assert flood_between < queued, (flood_between, queued)
        assert still_queued > 0  # answered while the mailbox was still busy
        for mon in mons:
            assert down(mon) == "normal"
        total = sum(counts.values())
        poll(lambda: len(frames) >= total + 1, 20, f"all {total} flood frames")
        seqs: dict[int, list[int]] = {k: [] for k in counts}
        for _t, payload, _q in frames:
            msg = json.loads(payload)
            if msg[2] == "flood":
                seqs[msg[4]["k"]].append(msg[4]["i"])
        assert {k: v == list(range(1, counts[k] + 1)) for k, v in seqs.items()} == dict.fromkeys(counts, True)
        c.send_raw(mask_frame(8, struct.pack("!H", 1000)))
        reading.join(timeout=10)
        assert not reading
        assert frames[-1][1] == struct.pack("!H", 1000)
    finally:
        reading.kill()


# -- 6. an exit after a partial write: the frame is whole or the connection ends ------------------


@pytest.mark.parametrize("reason", ["kill", ("shutdown", "bye")], ids=["kill", "exit signal"])
def test_an_exit_right_after_a_partial_write_never_corrupts_a_frame(server, connect, spies, reason):
    c, pid = connect(server, rcvbuf=4096)
    channel, _ = joined(c, "room:cut")
    set_server_sndbuf(wait_idle(pid), 4096)
    mon = actors.monitor(pid)
    mon_channel = actors.monitor(channel)
    spies.reset()
    big = pattern(1 << 20)
    big_frame = server_frame(2, big)
    _transport.push(pid, ("socket_push", "binary", big))
    assert [kind for *_x, kind in spies.nowait] == ["partial"]
    actors.exit(pid, reason)  # before the transport could write the rest
    expected = "killed" if reason == "kill" else reason
    assert down(mon) == expected
    assert down(mon_channel) == expected
    # What the client gets: a prefix of the big frame then the end of the connection, or
    # (if the rest were written first) the whole frame, then at most a well-formed close.
    c.chunk = 1024
    data = c.read_to_end(timeout=10)
    head = data[: len(big_frame)]
    assert head == big_frame[: len(head)], "bytes that are not the frame's were on the wire"
    tail = data[len(big_frame) :]
    if len(data) < len(big_frame):
        assert c.ended  # cut short: the connection is gone, nothing else was written
    else:
        assert tail in (b"", server_frame(8, struct.pack("!H", 1011)), server_frame(8, struct.pack("!H", 1000))), tail[:20]


# -- pushes that must behave exactly as actors.send --------------------------------------------


def test_a_traced_channel_still_shows_its_pushes_as_sends(server, connect):
    c, pid = connect(server)
    channel, _ = joined(c, "room:tracedsender")
    wait_idle(pid)
    assert actors.trace(channel, True, tracer=actors.self())
    try:
        c.send("room:tracedsender", "shout", {"w": 1}, join_ref="1")
        frame = c.recv_frame()
        assert json.loads(frame.payload)[3] == "shouted"
        # The event, if any, was queued here when the channel pushed: before the frame left.
        sends = []
        while (
            m := actors.receive(lambda m: isinstance(m, tuple) and m[:3] == ("trace", channel, "send"), 0, default=None)
        ) is not None:
            sends.append(m)
    finally:
        actors.trace(channel, False)
        while actors.receive(lambda m: isinstance(m, tuple) and m[:1] == ("trace",), 0, default=None) is not None:
            pass
    assert [(m[3], m[4]) for m in sends if m[3][:1] == ("socket_push",)] == [
        (("socket_push", "text", frame.payload.decode()), pid)
    ]


def test_an_unframeable_push_behaves_as_actors_send_does(server, connect):
    c, pid = connect(server)
    wait_idle(pid)
    mon = actors.monitor(pid)
    _transport.push(pid, ("socket_push", "no such opcode", "x"))  # as actors.send: no raise here
    assert type(down(mon)) is ValueError
    assert c.expect_close() == (1011, "")
    c.finish_close(1011)


# -- broadcasts: the fastlane writes each subscriber's frame from the broadcasting process ----


def test_a_broadcast_is_written_to_idle_subscribers_by_the_broadcaster_and_skips_the_sender(server, connect, spies):
    sender, sender_pid = connect(server)
    joined(sender, "room:bc")
    subscribers = [connect(server) for _ in range(3)]
    for c, _pid in subscribers:
        joined(c, "room:bc")
    for _c, pid in [*subscribers, (sender, sender_pid)]:
        wait_idle(pid)
    spies.reset()
    ref = sender.send("room:bc", "bcast", {"n": 1})
    assert sender.reply_to(ref)[4] == {"status": "ok", "response": {}}
    expected = v2("room:bc", "bcast", {"n": 1})
    for c, _pid in subscribers:
        assert c.recv_frame() == Frame(1, expected.encode(), 2 + len(expected))
    # Written whole by one greenlet (the sender's channel), none by a subscriber's transport.
    writers = {g for g, _op, data, kind in spies.nowait if kind == "whole" and data == expected}
    assert len(writers) == 1 and len(spies.direct()) >= len(subscribers)
    assert spies.pushes_handled() == []
    # The sender's own connection got its reply and nothing else.
    ref = sender.send("phoenix", "heartbeat")
    assert sender.reply_to(ref)[4] == {"status": "ok", "response": {}}


def test_a_broadcast_cut_short_is_finished_before_the_next_one(server, connect, spies):
    sender, _ = connect(server)
    joined(sender, "room:big")
    slow, slow_pid = connect(server, rcvbuf=4096)
    joined(slow, "room:big")
    set_server_sndbuf(wait_idle(slow_pid), 4096)
    spies.reset()
    big = "x" * (1 << 20)
    sender.reply_to(sender.send("room:big", "bcast", {"big": big}))
    # The broadcaster wrote what the socket took; the transport writes the rest.
    assert [kind for _g, _op, data, kind in spies.nowait if '"big"' in data] == ["partial"]
    assert any(m[0] == "$write_rest" for _g, m in spies.handled)
    sender.reply_to(sender.send("room:big", "bcast", {"small": 1}))
    slow.chunk = 1024
    first = slow.recv_frame(timeout=10)
    assert json.loads(first.payload) == [None, None, "room:big", "bcast", {"big": big}]
    slow.chunk = 65536
    assert json.loads(slow.recv_frame().payload) == [None, None, "room:big", "bcast", {"small": 1}]


def test_an_unframeable_broadcast_frame_fails_the_subscriber_transport_not_the_broadcaster(server, connect, monkeypatch):
    sender, sender_pid = connect(server)
    joined(sender, "room:bad")
    victim, victim_pid = connect(server)
    joined(victim, "room:bad")
    wait_idle(victim_pid)
    mon = actors.monitor(victim_pid)
    # A serializer bug: the fastlane hands out something that is no frame.
    monkeypatch.setattr(type(V2), "fastlane", lambda self, msg: ("no such opcode", "x"))
    ref = sender.send("room:bad", "bcast", {"n": 1})
    assert sender.reply_to(ref)[4] == {"status": "ok", "response": {}}  # the broadcaster lives on
    assert type(down(mon)) is ValueError
    assert victim.expect_close() == (1011, "")
    victim.finish_close(1011)
    assert actors.is_alive(sender_pid)


def test_a_stream_io_without_prebuilt_frames_still_gets_broadcasts_directly(server, connect):
    """serve_stream's io protocol needs only send_nowait; a broadcast then frames per io."""
    sender, _ = connect(server)
    joined(sender, "room:plainio")
    c, pid = connect(server)
    joined(c, "room:plainio")
    real = wait_idle(pid)
    calls = []

    class PlainIO:  # what another stream transport might register: send_nowait only
        def send_nowait(self, opcode, data):
            calls.append((opcode, data))
            return real.send_nowait(opcode, data)

    _transport._idle_transports[pid._proc] = PlainIO()
    ref = sender.send("room:plainio", "bcast", {"n": 2})
    assert sender.reply_to(ref)[4] == {"status": "ok", "response": {}}
    expected = v2("room:plainio", "bcast", {"n": 2})
    assert calls == [("text", expected)]
    assert c.recv_frame() == Frame(1, expected.encode(), 2 + len(expected))


def test_one_broadcast_reaches_websocket_and_plain_stream_ios_side_by_side(server, connect):
    """dispatch remembers which io class takes the prebuilt frame: an io of another class
    between two WebSockets is still asked for its own framing, and each gets one frame."""
    sender, _ = connect(server)
    joined(sender, "room:mixed")
    clients = []
    for _ in range(3):
        c, pid = connect(server)
        joined(c, "room:mixed")
        clients.append((c, pid, wait_idle(pid)))
    calls = []

    class PlainIO:
        def __init__(self, real):
            self.real = real

        def send_nowait(self, opcode, data):
            calls.append((opcode, data))
            return self.real.send_nowait(opcode, data)

    # Every other subscriber gets a plain io, so the classes alternate in the walk.
    for _c, pid, real in clients[1::2]:
        _transport._idle_transports[pid._proc] = PlainIO(real)
    ref = sender.send("room:mixed", "bcast", {"n": 3})
    assert sender.reply_to(ref)[4] == {"status": "ok", "response": {}}
    expected = v2("room:mixed", "bcast", {"n": 3})
    assert calls == [("text", expected)] * len(clients[1::2])
    for c, _pid, _real in clients:
        assert c.recv_frame() == Frame(1, expected.encode(), 2 + len(expected))


def test_a_channel_subscribes_with_phoenix_fastlane_metadata(server, connect):
    """The subscription meta is Phoenix's {:fastlane, transport_pid, serializer, intercepts}
    to any reader (a tuple equal to it), and a hand-made tuple of that shape counts too."""
    from transport import pubsub
    from transport._channel import Fastlane, is_fastlane

    c, pid = connect(server)
    joined(c, "room:meta")
    # The fixture's PubSub: the newest one registered under the fixture's name.
    name = max((n for n in actors.registered() if n.startswith("Direct.PubSub.")), key=lambda n: int(n.rsplit(".", 1)[1]))
    ((sub_pid, meta),) = pubsub.subscribers(name, "room:meta")
    assert meta == ("fastlane", pid, V2, meta[3]) and isinstance(meta, tuple)
    assert type(meta) is Fastlane and is_fastlane(meta)
    assert is_fastlane(("fastlane", pid, V2, frozenset()))
    assert not is_fastlane(("fastlane", pid, V2)) and not is_fastlane(["fastlane", pid, V2, ()])
    assert not is_fastlane(("other", pid, V2, ()))
    assert sub_pid != pid  # the channel subscribes; the meta names its transport
