"""An idle WebSocket transport hibernates (``websocket: {"hibernate_after": ms}``).

Over plain TCP the transport is a process of its own once the upgrade is done (pywsgi's
greenlet hands it its process and ends); after ``hibernate_after`` without input and with
nothing queued it drops its greenlet. What is checked, over a real socket on 127.0.0.1: it
does hibernate, direct pushes are still written while it sleeps (without waking it), input
and messages wake it and are served in order, the idle timeout still closes it, and a
hibernating transport that is killed still closes its socket (1011) and takes its channel
down. Every wait is bounded (a receive with a timeout or a polled condition with a deadline).
"""

from __future__ import annotations

import json
import struct
import time
from typing import Any

import gevent
import pytest
from inproc_server import RawV2Client, down, joined, mask_frame, tag, wait_for_processes

import actors
from supervision import Application
from transport import Channel, Endpoint, SocketHandler, _transport
from transport.http import websocket_options
from transport.pubsub import PubSub

HIBERNATE_MS = 50
CONNECT_PIDS: dict[str, actors.Pid] = {}


class EchoChannel(Channel):
    def join(self, topic, payload, socket):
        return ("ok", socket)

    def handle_in(self, event, payload, socket):
        if event == "whoami":
            return ("reply", ("ok", {"pid": str(actors.self()), "transport": str(socket.transport_pid)}), socket)
        return ("reply", ("ok", payload), socket)


class SleepySocket(SocketHandler):
    channels = [("room:*", EchoChannel)]  # noqa: RUF012 - SocketHandler's own API

    def connect(self, params, socket, connect_info):
        CONNECT_PIDS[params["tag"]] = actors.self()
        return ("ok", socket)


class Client(RawV2Client):
    """Reads the server's frames from its own buffer (opcode, payload)."""

    def _read_response(self) -> bytes:
        self.buf = bytearray()
        deadline = time.monotonic() + 5
        while b"\r\n\r\n" not in self.buf:
            assert self._fill(deadline), "EOF in the handshake"
        head, _, rest = bytes(self.buf).partition(b"\r\n\r\n")
        self.buf = bytearray(rest)
        return head.split(b"\r\n", 1)[0]

    def _fill(self, deadline: float) -> bool:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError("no data before the deadline")
        with gevent.Timeout(remaining, AssertionError("no data before the deadline")):
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:
                data = b""
        self.buf += data
        return bool(data)

    def _exact(self, n: int, deadline: float) -> bytes:
        while len(self.buf) < n:
            assert self._fill(deadline), f"connection ended after {len(self.buf)} of {n} bytes"
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    def recv_frame(self, timeout: float = 5) -> tuple[int, bytes]:
        deadline = time.monotonic() + timeout
        b0, b1 = self._exact(2, deadline)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self._exact(2, deadline))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._exact(8, deadline))[0]
        return b0 & 0x0F, self._exact(n, deadline)

    def expect_close(self, timeout: float = 5) -> tuple[int, str]:
        deadline = time.monotonic() + timeout
        while True:
            opcode, payload = self.recv_frame(max(0.01, deadline - time.monotonic()))
            if opcode == 8:
                return struct.unpack("!H", payload[:2])[0], payload[2:].decode()

    def expect_eof(self, timeout: float = 5) -> None:
        deadline = time.monotonic() + timeout
        while self._fill(deadline):
            pass


@pytest.fixture
def server(monkeypatch):
    """``/socket`` hibernates after HIBERNATE_MS; ``/awake`` never; ``/idle`` also closes
    after 300 ms of silence. Yields the port; no process may outlive the connections."""
    errors: list = []
    monkeypatch.setattr(gevent.get_hub(), "print_exception", lambda context, t, v, tb: errors.append((context, t, v)))
    endpoint = Endpoint(
        f"Sleepy.Endpoint.{tag('e')}",
        pubsub_server=f"Sleepy.PubSub.{tag('p')}",
        sockets=[
            ("/socket", SleepySocket, {"websocket": {"hibernate_after": HIBERNATE_MS}, "drainer": False}),
            ("/awake", SleepySocket, {"websocket": {"hibernate_after": None}, "drainer": False}),
            ("/idle", SleepySocket, {"websocket": {"hibernate_after": HIBERNATE_MS, "timeout": 300}, "drainer": False}),
        ],
    )
    server_opts = {"host": "127.0.0.1", "port": 0}
    app = Application([PubSub.child_spec(name=endpoint.pubsub_server), *endpoint.child_specs(server=server_opts)])
    app.start()
    actors.self()
    baseline = set(actors.processes())
    clients: list[Client] = []

    def connect(mount: str = "/socket") -> tuple[Client, actors.Pid]:
        t = tag("h")
        c = Client(endpoint.bound[1], mount, tag=t)
        clients.append(c)
        assert c.status == b"HTTP/1.1 101 Switching Protocols", c.status
        return c, CONNECT_PIDS.pop(t)

    try:
        yield connect
        for c in clients:
            c.sock.close()
        wait_for_processes(baseline)
        assert _transport._idle_transports == {} and _transport._outbound == {}
    finally:
        app.stop()
    assert errors == []


def poll(condition: Any, timeout: float = 5.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what} not reached within {timeout}s"
        gevent.sleep(0.005)


def hibernating(pid: actors.Pid) -> bool:
    info = actors.process_info(pid, stack=False)
    assert info is not None, f"{pid} died"
    return info["hibernating"]


def v2(topic: str, event: str, payload: Any) -> str:
    return json.dumps([None, None, topic, event, payload], separators=(",", ":"))


def test_an_idle_transport_hibernates_and_serves_pushes_input_and_messages(server):
    c, pid = server()
    channel, transport = joined(c, "room:a")
    assert transport == pid  # connect ran in the transport process, which survived the handoff
    poll(lambda: hibernating(pid), what="transport hibernating")
    info = actors.process_info(pid, stack=False)
    assert info["initial_call"] == "transport.serve" and info["message_queue_len"] == 0
    assert info["monitored_by"] == [channel]

    # A direct push is written by the pusher while the transport sleeps on.
    _transport.push(pid, ("socket_push", "text", v2("room:a", "direct", {"i": 1})))
    assert json.loads(c.recv_frame()[1])[3:] == ["direct", {"i": 1}]
    assert hibernating(pid)

    # A message wakes it (a push through its mailbox), and it is written.
    actors.send(pid, ("socket_push", "text", v2("room:a", "queued", {"i": 2})))
    assert json.loads(c.recv_frame()[1])[3:] == ["queued", {"i": 2}]
    poll(lambda: hibernating(pid), what="transport hibernating again")

    # Input wakes it: a heartbeat and a channel round trip are answered, in order.
    hb = c.send("phoenix", "heartbeat")
    ref = c.send("room:a", "echo", {"n": 3}, join_ref="1")
    assert c.reply_to(hb)[4] == {"status": "ok", "response": {}}
    assert c.reply_to(ref)[4] == {"status": "ok", "response": {"n": 3}}
    poll(lambda: hibernating(pid), what="transport hibernating after input")

    # A clean close from the client ends both processes as before.
    mon, chan_mon = actors.monitor(pid), actors.monitor(channel)
    c.send_frame(8, struct.pack("!H", 1000))
    assert c.expect_close() == (1000, "")
    c.expect_eof()
    assert down(mon) == "normal"
    assert down(chan_mon) == ("shutdown", "closed")


def test_a_transport_killed_while_hibernating_closes_its_socket(server):
    c, pid = server()
    channel, _ = joined(c, "room:k")
    poll(lambda: hibernating(pid), what="transport hibernating")
    mon, chan_mon = actors.monitor(pid), actors.monitor(channel)
    actors.exit(pid, "kill")
    assert down(mon) == "killed"
    assert down(chan_mon) == "killed"
    assert c.expect_close() == (1011, "")
    c.sock.sendall(mask_frame(8, struct.pack("!H", 1011)))
    c.expect_eof()


def test_the_idle_timeout_closes_a_hibernating_transport(server):
    c, pid = server("/idle")
    poll(lambda: hibernating(pid), what="transport hibernating")
    mon = actors.monitor(pid)
    assert c.expect_close(timeout=3) == (1000, "timeout")
    c.sock.sendall(mask_frame(8, struct.pack("!H", 1000)))
    c.expect_eof()
    assert down(mon) == "normal"


def test_hibernate_after_none_keeps_the_transport_awake(server):
    awake, awake_pid = server("/awake")
    sleepy, sleepy_pid = server("/socket")
    poll(lambda: hibernating(sleepy_pid), what="transport hibernating")
    assert not hibernating(awake_pid)  # it had as long to fall asleep
    hb = awake.send("phoenix", "heartbeat")
    assert awake.reply_to(hb)[4]["status"] == "ok"


def test_the_hibernate_after_option_is_checked():
    assert websocket_options(True)["hibernate_after"] == 15_000
    assert websocket_options({"hibernate_after": None})["hibernate_after"] is None
    for bad in (-1, "10", True):
        with pytest.raises(ValueError, match="hibernate_after"):
            websocket_options({"hibernate_after": bad})
