"""Broken upgrade requests are answered, and before the socket handler's connect runs.

A POST with upgrade headers and a GET whose ``Connection: Upgrade`` a proxy stripped used
to get no answer at all (the connection hung) after ``connect`` had already run. Each
request here is raw bytes over a plain socket to a server in this hub; every read has a
timeout.
"""

from __future__ import annotations

import gevent
import gevent.socket
import pytest
from inproc_server import serve_in_hub

from transport import Channel, SocketHandler

CONNECTS: list[dict] = []
KEY = "dGhlIHNhbXBsZSBub25jZQ=="


class NoopChannel(Channel):
    def join(self, topic, payload, socket):
        return ("ok", socket)


class CountingSocket(SocketHandler):
    channels = [("room:*", NoopChannel)]  # noqa: RUF012 - SocketHandler's own API

    def connect(self, params, socket, connect_info):
        CONNECTS.append(params)
        return ("ok", socket)


def _request(port: int, head: str) -> bytes:
    """Send a request head; the status line of the answer (read with a 5 s timeout)."""
    sock = gevent.socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        sock.sendall(head.encode())
        data = b""
        while b"\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
        return data.split(b"\r\n", 1)[0]
    finally:
        sock.close()


def _head(method="GET", upgrade="websocket", connection="Upgrade", version="13", key=KEY, extra=""):
    lines = [f"{method} /socket/websocket?vsn=2.0.0 HTTP/1.1", "Host: 127.0.0.1"]
    if upgrade:
        lines.append(f"Upgrade: {upgrade}")
    if connection:
        lines.append(f"Connection: {connection}")
    if version:
        lines.append(f"Sec-WebSocket-Version: {version}")
    if key:
        lines.append(f"Sec-WebSocket-Key: {key}")
    if method == "POST":
        lines.append("Content-Length: 0")
    return "\r\n".join(lines) + "\r\n" + extra + "\r\n"


@pytest.mark.parametrize(
    ("head", "status"),
    [
        (_head(method="POST"), 400),
        (_head(connection=None), 400),  # a proxy stripped Connection: Upgrade
        (_head(connection="keep-alive"), 400),
        (_head(version="8"), 426),
        (_head(version=None), 426),
        (_head(key="not base64!!"), 400),
        (_head(key=None), 400),
    ],
    ids=["POST", "no Connection", "Connection keep-alive", "version 8", "no version", "bad key", "no key"],
)
def test_broken_upgrades_are_answered_before_connect(monkeypatch, head, status):
    CONNECTS.clear()
    with serve_in_hub(monkeypatch, CountingSocket, "BadUpgrade", 10_000) as (port, _):
        line = _request(port, head)
        assert line.startswith(b"HTTP/1.1 %d " % status), line
        assert CONNECTS == []
        # A good handshake still connects, once.
        ok = _request(port, _head())
        assert ok.startswith(b"HTTP/1.1 101 "), ok
        assert len(CONNECTS) == 1


def test_connect_is_not_run_for_a_plain_get_of_the_socket_path(monkeypatch):
    CONNECTS.clear()
    with serve_in_hub(monkeypatch, CountingSocket, "BadUpgrade", 10_000) as (port, _):
        line = _request(port, "GET /socket/websocket?vsn=2.0.0 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert line.startswith(b"HTTP/1.1 400 ")
        assert CONNECTS == []


def test_a_handshake_for_a_path_without_a_websocket_mount_gets_404(monkeypatch):
    CONNECTS.clear()
    with serve_in_hub(monkeypatch, CountingSocket, "BadUpgrade", 10_000) as (port, _):
        line = _request(port, _head().replace("/socket/websocket", "/nowhere/websocket", 1))
        assert line.startswith(b"HTTP/1.1 404 "), line
        assert CONNECTS == []
