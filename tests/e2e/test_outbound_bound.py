"""A client that stops reading: the frames waiting for it are bounded in bytes.

The server runs in this hub (``inproc_server``) with ``max_outbound_bytes`` lowered to
256 KiB; the test pushes to a connection whose client never reads (a 4 KiB receive
buffer), so the kernel's buffers fill and frames queue in the transport. With the default
``close`` policy the connection is dropped and its transport exits
``('shutdown', 'slow_consumer')``; with ``drop_oldest`` it stays open and the oldest
waiting frames make room for the newest. Every wait is bounded.
"""

from __future__ import annotations

import json
import logging
import struct
import time

import gevent
import pytest
from inproc_server import RawV2Client, down, joined, serve_in_hub

import actors
from transport import Channel, SocketHandler, _transport, debug_shell, http

LIMIT = 256 * 1024
PAD = "p" * 16_000


class WhoChannel(Channel):
    def join(self, topic, payload, socket):
        return ("ok", socket)

    def handle_in(self, event, payload, socket):
        if event == "whoami":
            return ("reply", ("ok", {"pid": str(actors.self()), "transport": str(socket.transport_pid)}), socket)
        return ("reply", ("ok", payload), socket)


class BoundSocket(SocketHandler):
    channels = [("room:*", WhoChannel)]  # noqa: RUF012 - SocketHandler's own API


class Client(RawV2Client):
    def _read_response(self) -> bytes:
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            assert chunk, head
            head += chunk
        self._rest = head.split(b"\r\n\r\n", 1)[1]
        return head.split(b"\r\n", 1)[0]

    def _exact(self, n: int, deadline: float) -> bytes:
        while len(self._rest) < n:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = self.sock.recv(65536)
            assert chunk, "connection closed"
            self._rest += chunk
        data, self._rest = self._rest[:n], self._rest[n:]
        return data

    def recv_frame(self, timeout: float = 5):
        deadline = time.monotonic() + timeout
        b0, b1 = self._exact(2, deadline)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self._exact(2, deadline))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._exact(8, deadline))[0]
        return b0 & 0x0F, self._exact(n, deadline)


def _frame(seq: int) -> tuple:
    text = json.dumps([None, None, "room:a", "seq", {"seq": seq, "pad": PAD}])
    return ("socket_push", "text", text)


@pytest.fixture
def bounded(monkeypatch):
    def serve(policy: str):
        monkeypatch.setitem(http.WEBSOCKET_DEFAULTS, "max_outbound_bytes", LIMIT)
        monkeypatch.setitem(http.WEBSOCKET_DEFAULTS, "outbound_policy", policy)
        return serve_in_hub(monkeypatch, BoundSocket, "Bound", 10_000)

    return serve


def _flood(transport: actors.Pid, count: int) -> int:
    """Push ``count`` frames as fast as possible; the most bytes ever queued meanwhile."""
    most = 0
    for seq in range(1, count + 1):
        _transport.push(transport, _frame(seq))
        proc = transport._proc
        queue = _transport._outbound.get(proc) if proc is not None else None
        if queue is not None:
            most = max(most, queue.bytes)
        if seq % 50 == 0:
            gevent.sleep(0)  # let the transport run, as other pushers would
    return most


def test_a_client_that_stops_reading_is_closed_and_others_carry_on(bounded, caplog):
    caplog.set_level(logging.WARNING, logger="transport")
    with bounded("close") as (port, _):
        slow = Client(port, rcvbuf=4096)
        _, transport = joined(slow, "room:a")
        ref = actors.monitor(transport)
        most = _flood(transport, 1000)  # 16 MB for a client that reads nothing
        assert down(ref) == ("shutdown", "slow_consumer")
        assert most <= LIMIT
        warnings = [r for r in caplog.records if "not reading" in r.getMessage()]
        assert len(warnings) == 1 and f"max_outbound_bytes={LIMIT}" in warnings[0].getMessage()
        # Another client on the same server is served as before.
        other = Client(port)
        joined(other, "room:b")
        ref = other.send("phoenix", "heartbeat")
        assert other.reply_to(ref)[4] == {"status": "ok", "response": {}}
        other.sock.close()
        slow.sock.close()


def test_drop_oldest_keeps_the_newest_frames_and_the_connection(bounded):
    with bounded("drop_oldest") as (port, _):
        slow = Client(port, rcvbuf=4096)
        _, transport = joined(slow, "room:a")
        sent = 600
        most = _flood(transport, sent)
        assert most <= LIMIT
        # The transport is blocked writing to the full socket, so the queue is read directly.
        stats = _transport._outbound[transport._proc].statistics()
        assert stats["dropped"] > 0 and stats["bytes"] <= LIMIT and stats["high_water"] <= LIMIT
        # The operator's view: the debug shell lists the slow socket first, with its queue,
        # although its transport cannot answer get_state.
        other = Client(port)
        joined(other, "room:b")
        rows = debug_shell.Shell(state_timeout=0.05).sockets()
        assert rows[0]["pid"] == transport and rows[0]["outbound"]["bytes"] > 0
        assert {r["pid"] for r in rows[1:]} >= {p for p in _transport.stream_transports(BoundSocket) if p != transport}
        other.sock.close()
        # The client starts reading: what arrives is in order, ends with the newest frame,
        # and with what was dropped accounts for every frame sent.
        seqs = []
        while not seqs or seqs[-1] != sent:
            opcode, payload = slow.recv_frame(timeout=10)
            msg = json.loads(payload)
            seqs.append(msg[4]["seq"])
        assert seqs == sorted(seqs)
        dropped = actors.get_state(transport)["outbound"]["dropped"]
        assert len(seqs) + dropped == sent
        ref = slow.send("phoenix", "heartbeat")
        assert slow.reply_to(ref)[4] == {"status": "ok", "response": {}}
        slow.sock.close()


def test_outbound_options_are_checked():
    for bad in ({"max_outbound_bytes": 0}, {"max_outbound_bytes": "big"}, {"outbound_policy": "drop_newest"}):
        with pytest.raises(ValueError):
            http.websocket_options(bad)
    assert http.websocket_options({"max_outbound_bytes": None})["max_outbound_bytes"] is None
    assert http.websocket_options(True)["max_outbound_bytes"] == 8 * 1024 * 1024
