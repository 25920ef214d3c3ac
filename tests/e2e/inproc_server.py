"""An endpoint served in the test's own hub, and the raw V2 JSON client parts that talk to it.

Shared by test_direct_push.py and test_stream_transport.py: ``serve_in_hub`` runs an
``Endpoint`` with ``HttpServer`` on 127.0.0.1 (port 0) in this process, so a test can look
at the processes behind a connection while a raw client (``RawV2Client`` below, each test
file reads frames its own way) talks to it over TCP with frames built by hand (masked).
Every wait is bounded.
"""

from __future__ import annotations

import itertools
import json
import os
import socket as stdsocket
import struct
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlencode

import gevent
import gevent.socket as gsocket

import actors
from supervision import Application
from transport import Endpoint
from transport.pubsub import PubSub

_ids = itertools.count()
_tags = itertools.count()


def tag(prefix: str) -> str:
    """A unique value for a client's ``tag`` parameter (its socket handler's connect records
    the pid it ran in under it)."""
    return f"{prefix}{next(_tags)}-{os.getpid()}"


@contextmanager
def serve_in_hub(monkeypatch, handler: type, name: str, idle_ms: int) -> Iterator[tuple[int, set]]:
    """An endpoint served in this hub with ``handler`` at ``/idle`` (closes after ``idle_ms``
    of silence) and at ``/socket`` (after 10 s); yields ``(port, baseline)``, the processes
    alive before any connection. Afterwards: no process outlived the test's connections, and
    the hub printed no exception (pywsgi's handle_error, dead greenlets)."""
    errors: list = []
    monkeypatch.setattr(gevent.get_hub(), "print_exception", lambda context, t, v, tb: errors.append((context, t, v)))
    n = next(_ids)
    endpoint = Endpoint(
        f"{name}.Endpoint.{n}",
        pubsub_server=f"{name}.PubSub.{n}",
        sockets=[
            ("/idle", handler, {"websocket": {"timeout": idle_ms}, "drainer": False}),
            ("/socket", handler, {"websocket": {"timeout": 10_000}, "drainer": False}),
        ],
    )
    app = Application(
        [PubSub.child_spec(name=endpoint.pubsub_server), *endpoint.child_specs(server={"host": "127.0.0.1", "port": 0})]
    )
    app.start()
    actors.self()  # the test process itself, before the snapshot
    baseline = set(actors.processes())
    try:
        yield endpoint.bound[1], baseline
        wait_for_processes(baseline)
    finally:
        app.stop()
    assert errors == []


def wait_for_processes(baseline: set, timeout: float = 3.0) -> None:
    """Bounded poll: the live processes are the baseline again (connections fully gone)."""
    deadline = time.monotonic() + timeout
    while True:
        extra = set(actors.processes()) - baseline
        if not extra:
            return
        if time.monotonic() > deadline:
            info = {str(p): (actors.process_info(p) or {}).get("initial_call") for p in extra}
            raise AssertionError(f"processes left behind by the connections: {info}")
        gevent.sleep(0.01)


def mask_frame(opcode: int, payload: bytes = b"") -> bytes:
    """A masked client frame (FIN), built independently of transport.websocket."""
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


class RawV2Client:
    """A V2 JSON Phoenix client on a raw gevent socket (cooperates with the server's hub):
    connecting, the upgrade request and the frames it sends. ``rcvbuf`` sets SO_RCVBUF before
    connecting. A subclass reads the response (``_read_response``) and the server's frames
    (``recv_frame``, returning ``(opcode, payload, ...)``)."""

    keep_pushes = False  # True: ``pushes`` lists the data messages reply_to read past

    def __init__(self, port: int, mount: str = "/socket", rcvbuf: int | None = None, **params) -> None:
        sock = gsocket.socket(stdsocket.AF_INET, stdsocket.SOCK_STREAM)
        if rcvbuf is not None:
            sock.setsockopt(stdsocket.SOL_SOCKET, stdsocket.SO_RCVBUF, rcvbuf)
        sock.settimeout(5)
        sock.connect(("127.0.0.1", port))
        sock.setsockopt(stdsocket.IPPROTO_TCP, stdsocket.TCP_NODELAY, 1)
        self.sock = sock
        query = urlencode({"vsn": "2.0.0", **params})
        sock.sendall(
            f"GET {mount}/websocket?{query} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        self.status = self._read_response()
        self.last_sent = time.monotonic()
        self._refs = itertools.count(1)
        self.pushes: list | None = [] if self.keep_pushes else None

    def _read_response(self) -> bytes:
        """Read the server's HTTP response to the upgrade request; its status line."""
        raise NotImplementedError

    def recv_frame(self, timeout: float = 5) -> Any:
        raise NotImplementedError

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)
        self.last_sent = time.monotonic()

    def send_frame(self, opcode: int, payload: bytes = b"") -> None:
        self.send_raw(mask_frame(opcode, payload))

    def send(self, topic: str, event: str, payload=None, join_ref: str | None = None) -> str:
        ref = str(next(self._refs))
        self.send_frame(1, json.dumps([join_ref, ref, topic, event, payload or {}]).encode())
        return ref

    def join(self, topic: str, payload=None) -> str:
        ref = str(next(self._refs))
        self.send_frame(1, json.dumps([ref, ref, topic, "phx_join", payload or {}]).encode())
        return ref

    def reply_to(self, ref: str, timeout: float = 5) -> list:
        """The reply to ``ref``; the data messages before it go to ``pushes`` (if kept)."""
        deadline = time.monotonic() + timeout
        while True:
            frame = self.recv_frame(max(0.01, deadline - time.monotonic()))
            assert frame[0] == 1, frame
            msg = json.loads(frame[1])
            if msg[3] == "phx_reply" and msg[1] == ref:
                return msg
            if self.pushes is not None:
                self.pushes.append(msg)


def joined(c: RawV2Client, topic: str, payload=None) -> tuple[actors.Pid, actors.Pid]:
    """Join ``topic``; (channel pid, transport pid as the channel's socket knows it)."""
    ref = c.join(topic, payload)
    assert c.reply_to(ref)[4] == {"status": "ok", "response": {}}
    ref = c.send(topic, "whoami", join_ref=ref)
    me = c.reply_to(ref)[4]["response"]
    return actors.Pid.parse(me["pid"]), actors.Pid.parse(me["transport"])


def down(ref, timeout: float = 5):
    """The DOWN message of monitor ``ref``: its reason."""
    msg = actors.receive(lambda m: isinstance(m, tuple) and len(m) == 5 and m[0] == "DOWN" and m[1] is ref, timeout)
    return msg[4]
