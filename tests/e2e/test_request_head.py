"""The request head before any handshake: bounded in time, malformed ones answered quietly.

A server in this hub with ``request_timeout`` lowered to 300 ms; raw clients over gevent
sockets. A silent connection and a head trickled a byte at a time are dropped (the latter
with 408); a request with more than 100 headers gets 431 and one log line however often it
comes, and no traceback on stderr. Every read has a timeout.
"""

from __future__ import annotations

import json
import logging
import os
import struct
import time

import gevent
import gevent.socket
import pytest

import actors
from supervision import Application
from transport import Channel, Endpoint, SocketHandler
from transport.pubsub import PubSub

TIMEOUT_MS = 300


class EchoChannel(Channel):
    def join(self, topic, payload, socket):
        return ("ok", socket)


class HeadSocket(SocketHandler):
    channels = [("room:*", EchoChannel)]  # noqa: RUF012 - SocketHandler's own API


@pytest.fixture
def port():
    endpoint = Endpoint(
        f"Head.Endpoint.{os.getpid()}.{time.monotonic_ns()}",
        pubsub_server="Head.PubSub",
        sockets=[("/socket", HeadSocket, {"drainer": False})],
    )
    app = Application(
        [
            PubSub.child_spec(name="Head.PubSub"),
            *endpoint.child_specs(server={"host": "127.0.0.1", "port": 0, "request_timeout": TIMEOUT_MS}),
        ]
    )
    app.start()
    try:
        yield endpoint.bound[1]
    finally:
        app.stop()


def _connect(port: int):
    return gevent.socket.create_connection(("127.0.0.1", port), timeout=5)


def _read_all(sock, limit: float = 5.0) -> tuple[bytes, float]:
    """Everything until the server closes; and how long that took."""
    start = time.monotonic()
    sock.settimeout(limit)
    data = b""
    try:
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    except OSError:
        pass
    return data, time.monotonic() - start


def test_a_silent_connection_is_closed_after_the_request_timeout(port):
    sock = _connect(port)
    data, took = _read_all(sock)
    assert data == b""
    assert TIMEOUT_MS / 1000 * 0.8 <= took < 3.0


def test_a_trickled_request_head_gets_408(port):
    sock = _connect(port)
    sock.sendall(b"GET /socket/websocket?vsn=2.0.0 HTTP/1.1\r\nHost: 127.0.0.1\r\n")

    def trickle():
        try:
            for b in b"X-Slow: " + b"a" * 100:
                sock.sendall(bytes([b]))
                gevent.sleep(0.05)
        except OSError:
            pass  # the server gave up on us: that is the point

    trickler = gevent.spawn(trickle)
    data, took = _read_all(sock)
    trickler.kill()
    assert data.startswith(b"HTTP/1.1 408 ")
    assert took < 3.0


def test_a_head_in_time_is_served_and_the_connection_outlives_the_timeout(port):
    sock = _connect(port)
    sock.sendall(
        b"GET /socket/websocket?vsn=2.0.0 HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(4096)
    assert head.startswith(b"HTTP/1.1 101 ")
    actors.receive(lambda m: False, timeout=2 * TIMEOUT_MS / 1000, default=None)  # outlive the head timeout
    payload = json.dumps([None, "1", "phoenix", "heartbeat", {}]).encode()
    mask = os.urandom(4)
    sock.sendall(struct.pack("!BB", 0x81, 0x80 | len(payload)) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
    frame = sock.recv(4096)
    assert json.loads(frame[2:]) == [None, "1", "phoenix", "phx_reply", {"response": {}, "status": "ok"}]
    sock.close()


def test_too_many_headers_get_431_and_one_log_line_without_traceback(port, caplog, capfd):
    caplog.set_level(logging.WARNING, logger="transport.http")
    head = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(150)) + b"\r\n"
    for _ in range(20):
        sock = _connect(port)
        sock.sendall(head)
        data, _ = _read_all(sock)
        assert data.startswith(b"HTTP/1.1 431 ")
    lines = [r.getMessage() for r in caplog.records if "headers" in r.getMessage()]
    assert len(lines) == 1 and "431" in lines[0]
    assert "Traceback" not in capfd.readouterr().err


def test_a_malformed_header_line_gets_400_and_one_log_line_without_traceback(port, caplog, capfd):
    caplog.set_level(logging.WARNING, logger="transport.http")
    for _ in range(5):
        sock = _connect(port)
        sock.sendall(b"GET /socket/websocket HTTP/1.1\r\nHost : 127.0.0.1\r\n\r\n")
        data, _ = _read_all(sock)
        assert data.startswith(b"HTTP/1.1 400 ")
    lines = [r.getMessage() for r in caplog.records if "invalid header line" in r.getMessage()]
    assert len(lines) == 1 and "400" in lines[0]
    assert "Traceback" not in capfd.readouterr().err


@pytest.fixture
def environ_port():
    """A server whose HTTP app answers with the WSGI environ's HTTP_* and CONTENT_* keys."""

    def app(environ, start_response):
        shown = {k: v for k, v in environ.items() if k.startswith(("HTTP_", "CONTENT_"))}
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps(shown, sort_keys=True).encode()]

    endpoint = Endpoint(
        f"Head.Environ.{os.getpid()}.{time.monotonic_ns()}",
        pubsub_server="Head.Environ.PubSub",
        sockets=[("/socket", HeadSocket, {"drainer": False})],
        http_app=app,
    )
    tree = Application(
        [PubSub.child_spec(name="Head.Environ.PubSub"), *endpoint.child_specs(server={"host": "127.0.0.1", "port": 0})]
    )
    tree.start()
    try:
        yield endpoint.bound[1]
    finally:
        tree.stop()


def test_the_environ_gets_every_header_as_wsgi_asks(environ_port):
    sock = _connect(environ_port)
    sock.sendall(
        b"POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Tag: one\r\nx-tag: two\r\nCookie: a=1\r\nCookie: b=2\r\n"
        b"X_Smuggled: yes\r\nX-Folded: first\r\n  second\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n"
        b"Connection: close\r\n\r\nhi"
    )
    data, _ = _read_all(sock)
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    shown = json.loads(body)
    assert shown == {
        "CONTENT_LENGTH": "2",
        "CONTENT_TYPE": "text/plain",
        "HTTP_CONNECTION": "close",
        "HTTP_COOKIE": "a=1; b=2",
        "HTTP_HOST": "127.0.0.1",
        "HTTP_X_FOLDED": "first second",
        "HTTP_X_TAG": "one,two",
    }


def test_plain_http_connections_leave_no_process_behind(environ_port):
    """Handlers run in the runtime's pooled greenlets, as no process unless they use the
    runtime: serving plain HTTP leaves nothing in the process table."""
    before = set(actors.processes())
    for _ in range(5):
        sock = _connect(environ_port)
        sock.sendall(b"GET /a HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        data, _ = _read_all(sock)
        assert data.startswith(b"HTTP/1.1 200 ")
        sock.close()
    assert set(actors.processes()) <= before
