"""The WebSocket transport process over a real server: the connection's own greenlet.

An endpoint with ``HttpServer`` runs in this process's hub on 127.0.0.1 (port 0), so the
test can look at the processes behind a connection (``actors.processes()``, monitors,
``sys`` requests, exit signals) while a raw client talks V2 JSON to it over TCP. Frames
from the client are built by hand (masked); every wait is bounded (a receive with a
timeout, a read under ``gevent.Timeout``, or a bounded poll of a condition).

Phoenix's rules checked here: ``connect`` runs in the transport process (Cowboy's
connection process), so ``self()`` there is ``socket.transport_pid``; a killed transport
closes with 1011 and takes its channels down; the idle timeout counts input only (a
server that keeps pushing does not keep a silent client alive, a client's pings do), and
closes with 1000; a crash is logged once and closes with 1011; nothing outlives a
connection.
"""

from __future__ import annotations

import json
import logging
import struct
import time

import gevent
import pytest
from inproc_server import (
    RawV2Client,
    down,
    joined,
    mask_frame,
    serve_in_hub,
    tag,
    wait_for_processes,
)

import actors
from transport import Channel, SocketHandler, push

IDLE_MS = 300
IDLE = IDLE_MS / 1000

# connect() records the pid it ran in, by the client's "tag" parameter.
CONNECT_PIDS: dict[str, actors.Pid] = {}


class TickChannel(Channel):
    def join(self, topic, payload, socket):
        if payload.get("tick_ms"):
            actors.send_after(actors.self(), ("tick", 0, payload["tick_ms"]), payload["tick_ms"])
        return ("ok", socket)

    def handle_in(self, event, payload, socket):
        if event == "whoami":
            return ("reply", ("ok", {"pid": str(actors.self()), "transport": str(socket.transport_pid)}), socket)
        return ("reply", ("ok", payload), socket)

    def handle_info(self, msg, socket):
        if isinstance(msg, tuple) and msg[0] == "tick":
            _, n, ms = msg
            push(socket, "tick", {"n": n})
            actors.send_after(actors.self(), ("tick", n + 1, ms), ms)
        return ("noreply", socket)


class StreamSocket(SocketHandler):
    channels = [("room:*", TickChannel)]

    def connect(self, params, socket, connect_info):
        if "tag" in params:
            CONNECT_PIDS[params["tag"]] = actors.self()
        if params.get("reject"):
            return "error"
        return ("ok", socket)

    @classmethod
    def channel_for(cls, topic):
        if topic == "crash:in":
            raise RuntimeError("routing crashed on purpose")
        return super().channel_for(topic)


@pytest.fixture
def server(monkeypatch):
    """An endpoint served in this hub (``serve_in_hub``): ``/idle`` closes after 300 ms of
    silence, ``/socket`` after 10 s. Yields ``(port, baseline)``; checks that no process
    outlived the test's connections."""
    with serve_in_hub(monkeypatch, StreamSocket, "Stream", IDLE_MS) as (port, baseline):
        yield port, baseline


class Client(RawV2Client):
    """A V2 JSON Phoenix client on a raw gevent socket (``inproc_server.RawV2Client``), reading
    through a file; ``pushes``: data messages read while waiting for something else."""

    keep_pushes = True

    def _read_response(self) -> bytes:
        self.rfile = self.sock.makefile("rb")
        with gevent.Timeout(5):
            status = self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b""):
                pass
        return status

    @property
    def upgraded(self) -> bool:
        return self.status == b"HTTP/1.1 101 Switching Protocols\r\n"

    def recv_exact(self, n: int) -> bytes:
        data = self.rfile.read(n)
        assert len(data) == n, f"EOF after {len(data)} of {n} bytes"
        return data

    def recv_frame(self, timeout: float = 5) -> tuple[int, bytes]:
        """(opcode, payload) of the next server frame."""
        with gevent.Timeout(timeout, AssertionError(f"no frame within {timeout}s")):
            b0, b1 = self.recv_exact(2)
            assert b0 & 0x80 and b1 & 0x80 == 0, (hex(b0), hex(b1))
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack("!H", self.recv_exact(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", self.recv_exact(8))[0]
            return b0 & 0x0F, self.recv_exact(n)

    def expect_close(self, timeout: float = 5) -> tuple[int, str]:
        """Read (keeping data messages) until the server's close frame; its (code, reason)."""
        deadline = time.monotonic() + timeout
        while True:
            opcode, payload = self.recv_frame(max(0.01, deadline - time.monotonic()))
            if opcode == 8:
                code = struct.unpack("!H", payload[:2])[0]
                return code, payload[2:].decode()
            assert opcode == 1, (opcode, payload)
            self.pushes.append(json.loads(payload))

    def finish_close(self, code: int) -> None:
        """Answer the server's close frame and wait for it to close TCP."""
        self.sock.sendall(mask_frame(8, struct.pack("!H", code)))
        self.expect_eof()

    def expect_eof(self, timeout: float = 5) -> None:
        with gevent.Timeout(timeout, AssertionError(f"TCP still open after {timeout}s")):
            try:
                assert self.rfile.read() == b""
            except ConnectionResetError:
                pass

    def close(self) -> None:
        if not self.sock.closed:
            self.rfile.close()
            self.sock.close()


@pytest.fixture
def connect():
    clients: list[Client] = []

    def open_client(port: int, mount: str = "/socket", **params) -> Client:
        c = Client(port, mount, **params)
        clients.append(c)
        assert c.upgraded or params.get("reject"), c.status
        return c

    yield open_client
    for c in clients:
        c.close()


# -- the transport process is the connection's process --------------------------------------


def test_connect_runs_in_the_transport_process(server, connect):
    port, baseline = server
    t = tag("t")
    c = connect(port, tag=t)
    pid = CONNECT_PIDS.pop(t)
    channel, transport = joined(c, "room:a")
    assert transport == pid  # Phoenix: connect runs in the transport process
    assert pid not in baseline and actors.is_alive(pid) and actors.is_alive(channel)
    info = actors.process_info(pid)
    assert info["initial_call"] == "transport.serve"
    assert info["label"] == ("socket", "StreamSocket", None)
    assert set(actors.processes()) - baseline == {pid, channel}
    mon = actors.monitor(pid)
    c.send_frame(8, struct.pack("!H", 1000))  # the client closes
    assert c.recv_frame() == (8, struct.pack("!H", 1000))  # echoed
    c.expect_eof()
    assert down(mon) == "normal"


def test_sys_get_state_on_the_transport_pid_answers(server, connect):
    port, _ = server
    t = tag("t")
    c = connect(port, tag=t)
    pid = CONNECT_PIDS.pop(t)
    channel, _ = joined(c, "room:state")
    state = actors.get_state(pid, timeout=2)
    assert state["handler"] == "StreamSocket"
    assert state["serializer"] == "V2JSONSerializer"
    assert state["channels"] == {"room:state": channel}
    assert state["transport"] == "websocket" and state["path"] == "/socket/websocket"
    host, port_text = state["peer"].rsplit(":", 1)
    assert host == "127.0.0.1" and int(port_text) == c.sock.getsockname()[1]
    assert state["frames_in"] == 2 and state["bytes_in"] > 0 and state["frames_out"] == 2
    status = actors.get_status(pid, timeout=2)
    assert status["pid"] == pid and status["module"] == "transport.serve" and status["status"] == "running"
    # Still serving frames after the sys requests, and each request is answered again.
    ref = c.send("room:state", "echo", {"x": 1}, join_ref="1")
    assert c.reply_to(ref)[4] == {"status": "ok", "response": {"x": 1}}
    assert actors.get_state(pid, timeout=2)["frames_in"] == 3
    c.send_frame(8, struct.pack("!H", 1000))
    c.expect_close()
    c.expect_eof()


def test_sys_requests_are_answered_between_pipelined_frames(server, connect):
    """Frames and messages alternate: a client pipelining thousands of frames does not hold
    off the process's mailbox until its input is drained."""
    port, _ = server
    t = tag("t")
    c = connect(port, tag=t)
    pid = CONNECT_PIDS.pop(t)
    n = 3000
    replies = []

    def drain():  # the client reads the replies as they come, so the server never blocks
        while len(replies) < n:
            _opcode, payload = c.recv_frame(timeout=10)
            replies.append(json.loads(payload)[1])

    reader = gevent.spawn(drain)
    frame = mask_frame(1, json.dumps([None, "hb", "phoenix", "heartbeat", {}]).encode())
    c.sock.sendall(frame * n)
    seen = []
    deadline = time.monotonic() + 10
    while not seen or seen[-1] < n:
        assert time.monotonic() < deadline, seen
        seen.append(actors.get_state(pid, timeout=2)["frames_in"])
    reader.get(timeout=10)
    assert replies == ["hb"] * n
    assert seen == sorted(seen)
    midway = {v for v in seen if 0 < v < n}
    assert len(midway) >= 10, seen  # answered all along, not once the input ran dry


def test_a_connection_whose_connect_used_no_process_api(server, connect):
    """serve_stream adopts the handler's greenlet itself when connect did not."""
    port, baseline = server
    c = connect(port)
    channel, pid = joined(c, "room:plain")
    info = actors.process_info(pid)
    assert info["initial_call"] == "transport.serve" and info["status"] == "waiting"
    assert set(actors.processes()) - baseline == {pid, channel}
    mon = actors.monitor(pid)
    c.send_frame(8, struct.pack("!H", 1000))
    c.expect_close()
    c.expect_eof()
    assert down(mon) == "normal"


def test_killing_the_transport_closes_1011_and_takes_the_channel_down(server, connect):
    port, _ = server
    t = tag("t")
    c = connect(port, tag=t)
    pid = CONNECT_PIDS.pop(t)
    channel, _ = joined(c, "room:kill")
    mon_transport = actors.monitor(pid)
    mon_channel = actors.monitor(channel)
    actors.exit(pid, "kill")
    assert down(mon_transport) == "killed"
    assert down(mon_channel) == "killed"  # the channel monitors its transport
    assert c.expect_close() == (1011, "")
    c.finish_close(1011)
    assert not actors.is_alive(pid) and not actors.is_alive(channel)


def test_an_exit_signal_while_the_transport_waits_for_input(server, connect):
    """Not 'kill': an ordinary exit signal to a transport that does not trap exits."""
    port, _ = server
    t = tag("t")
    c = connect(port, tag=t)
    pid = CONNECT_PIDS.pop(t)
    mon = actors.monitor(pid)
    actors.exit(pid, ("shutdown", "bye"))
    assert down(mon) == ("shutdown", "bye")
    assert c.expect_close() == (1000, "")
    c.finish_close(1000)


# -- crashes ---------------------------------------------------------------------------------


def crash_records(caplog, pid) -> list[logging.LogRecord]:
    """Error records reporting ``pid``'s own end (its pid is the subject, before the first
    colon: a channel's report that merely quotes its transport's pid is not one)."""
    return [r for r in caplog.records if r.levelno >= logging.ERROR and str(pid) in r.getMessage().split(":", 1)[0]]


def test_a_crash_in_handle_in_is_logged_once_and_closes_1011(server, connect, caplog):
    port, _ = server
    t = tag("t")
    c = connect(port, tag=t)
    pid = CONNECT_PIDS.pop(t)
    mon = actors.monitor(pid)
    with caplog.at_level(logging.ERROR):
        c.join("crash:in")  # the socket's routing raises while handling the frame
        assert c.expect_close() == (1011, "")
        reason = down(mon)
        c.finish_close(1011)
    assert isinstance(reason, RuntimeError) and str(reason) == "routing crashed on purpose"
    records = crash_records(caplog, pid)
    assert len(records) == 1, [r.getMessage() for r in caplog.records]
    assert "crashed" in records[0].getMessage() and records[0].exc_info[1] is reason
    assert not [r for r in caplog.records if r.exc_info and r.exc_info[1] is reason and r is not records[0]]


@pytest.mark.parametrize(
    ("message", "error"),
    [
        (("socket_push", "no such opcode", "x"), ValueError),  # the push handle_info returns raises
        (("socket_close", [], None), TypeError),  # handle_info itself raises (an unhashable pid)
    ],
    ids=["in the push", "in handle_info"],
)
def test_a_crash_in_handle_info_is_logged_once_and_closes_1011(server, connect, caplog, message, error):
    port, _ = server
    t = tag("t")
    c = connect(port, tag=t)
    pid = CONNECT_PIDS.pop(t)
    channel, _ = joined(c, "room:crash")
    mon = actors.monitor(pid)
    mon_channel = actors.monitor(channel)
    with caplog.at_level(logging.ERROR):
        actors.send(pid, message)
        assert c.expect_close() == (1011, "")
        reason = down(mon)
        c.finish_close(1011)
        assert down(mon_channel) is reason
    assert type(reason) is error
    records = crash_records(caplog, pid)
    assert len(records) == 1, [r.getMessage() for r in caplog.records]
    assert records[0].exc_info[1] is reason


# -- the idle timeout --------------------------------------------------------------------------


def test_idle_timeout_closes_1000_while_the_server_keeps_pushing(server, connect):
    """Pushes written to a silent client do not count as activity (Cowboy's idle_timeout)."""
    port, _ = server
    t = tag("t")
    c = connect(port, "/idle", tag=t)
    pid = CONNECT_PIDS.pop(t)
    mon = actors.monitor(pid)
    ref = c.join("room:ticks", {"tick_ms": 40})
    assert c.reply_to(ref)[4]["status"] == "ok"
    silent_since = c.last_sent
    code, reason = c.expect_close(timeout=5)
    closed_after = time.monotonic() - silent_since
    assert (code, reason) == (1000, "timeout")
    ticks = [m for m in c.pushes if m[3] == "tick"]
    assert len(ticks) >= 4, c.pushes  # the server pushed all along
    assert [m[4]["n"] for m in ticks] == list(range(len(ticks)))
    # At least the timeout after the last input; at most one timer period late.
    assert IDLE <= closed_after < 2 * IDLE + 0.5, closed_after
    # The process has exited before the client answers the close frame (the handler's
    # greenlet finishes the closing handshake as a plain greenlet).
    assert down(mon, timeout=1) == "normal"
    c.finish_close(1000)


def test_client_pings_keep_the_connection_alive_past_the_idle_timeout(server, connect):
    port, _ = server
    t = tag("t")
    c = connect(port, "/idle", tag=t)
    pid = CONNECT_PIDS.pop(t)
    started = time.monotonic()
    n = 0
    while time.monotonic() - started < 4 * IDLE:
        c.send_frame(9, f"p{n}".encode())
        assert c.recv_frame(timeout=2) == (10, f"p{n}".encode())  # a pong, not a close
        n += 1
        gevent.sleep(IDLE / 3)  # pace: well inside the timeout
    assert actors.is_alive(pid)
    ref = c.send("phoenix", "heartbeat")
    assert c.reply_to(ref)[4] == {"status": "ok", "response": {}}
    # Pings stop: the timeout applies again.
    silent_since = c.last_sent
    assert c.expect_close(timeout=5) == (1000, "timeout")
    assert IDLE <= time.monotonic() - silent_since < 2 * IDLE + 0.5
    c.finish_close(1000)


# -- nothing outlives a connection ---------------------------------------------------------------


@pytest.mark.parametrize("ending", ["client close", "client vanishes", "socket stop", "idle"])
def test_no_process_outlives_its_connection(server, connect, ending):
    port, baseline = server
    t = tag("t")
    c = connect(port, "/idle" if ending == "idle" else "/socket", tag=t)
    pid = CONNECT_PIDS.pop(t)
    channels = [joined(c, f"room:{i}")[0] for i in range(3)]
    mons = [actors.monitor(p) for p in [pid, *channels]]
    assert set(actors.processes()) - baseline == {pid, *channels}
    if ending == "client close":
        c.send_frame(8, struct.pack("!H", 1001))
        c.expect_close()
        c.expect_eof()
    elif ending == "client vanishes":
        c.close()
    elif ending == "socket stop":
        actors.send(pid, "socket_drain")  # the socket stops itself: ('shutdown', 'restart')
        assert c.expect_close() == (1012, "")
    else:
        assert c.expect_close() == (1000, "timeout")
    # Processes end without waiting for the client's half of the closing handshake.
    reasons = [down(m, timeout=1) for m in mons]
    if ending in ("socket stop", "idle"):
        c.finish_close(1012 if ending == "socket stop" else 1000)
    assert reasons[0] == "normal"
    assert all(r == ("shutdown", "closed") for r in reasons[1:]), reasons
    wait_for_processes(baseline)


def test_a_refused_connect_leaves_no_process(server, connect):
    port, baseline = server
    t = tag("t")
    c = connect(port, tag=t, reject="1")
    assert c.status.startswith(b"HTTP/1.1 403"), c.status
    pid = CONNECT_PIDS.pop(t)  # connect ran, and made its greenlet a process
    c.close()
    mon = actors.monitor(pid)
    down(mon)
    wait_for_processes(baseline)


def test_idle_close_comes_about_the_timeout_after_the_last_input(server, connect):
    port, _ = server
    c = connect(port, "/idle")
    ref = c.send("phoenix", "heartbeat")  # input early in the first idle period
    assert c.reply_to(ref)[4]["status"] == "ok"
    silent_since = c.last_sent
    assert c.expect_close(timeout=5) == (1000, "timeout")
    closed_after = time.monotonic() - silent_since
    c.finish_close(1000)
    assert IDLE <= closed_after < 1.5 * IDLE + 0.1, f"closed {closed_after:.3f}s after the last input; timeout {IDLE}s"
