"""A small HTTP/1.1 client for LongPoll tests, on gevent sockets (so it cooperates with a
server in the test's own hub, and works as a plain blocking client against a subprocess).

``request(port, method, path, params=None, body=b"", headers=None)`` -> :class:`Answer`
(HTTP status, headers, raw body, and the JSON body when there is one). One connection
per request (``Connection: close``); every read is bounded by ``timeout``.
"""

from __future__ import annotations

import json
import socket as stdsocket
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import gevent.socket as gsocket


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    raw: bytes
    body: Any = field(default=None)

    @property
    def lp_status(self) -> int | None:
        """The status in the JSON body (LongPoll answers are all HTTP 200)."""
        return self.body.get("status") if isinstance(self.body, dict) else None


def connect(port: int, timeout: float = 10.0) -> Any:
    sock = gsocket.socket(stdsocket.AF_INET, stdsocket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.connect(("127.0.0.1", port))
    return sock


def request_bytes(method: str, path: str, params: dict | None, body: bytes, headers: dict | None, port: int) -> bytes:
    target = path + ("?" + urlencode(params) if params else "")
    head = {"Host": f"127.0.0.1:{port}", "Connection": "close", **(headers or {})}
    if body or method in ("POST", "PUT"):
        head.setdefault("Content-Length", str(len(body)))
    lines = [f"{method} {target} HTTP/1.1"] + [f"{k}: {v}" for k, v in head.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def read_answer(sock: Any) -> Answer:
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"connection closed before the answer's head: {buf!r}")
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    if "content-length" in headers:
        n = int(headers["content-length"])
        while len(rest) < n:
            chunk = sock.recv(65536)
            if not chunk:
                break
            rest += chunk
        raw = rest[:n]
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        while not rest.endswith(b"0\r\n\r\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            rest += chunk
        raw, data = b"", rest
        while data:
            size_line, _, data = data.partition(b"\r\n")
            size = int(size_line, 16)
            if size == 0:
                break
            raw += data[:size]
            data = data[size + 2 :]
    else:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            rest += chunk
        raw = rest
    body = None
    if raw and headers.get("content-type", "").startswith("application/json"):
        body = json.loads(raw)
    return Answer(status, headers, raw, body)


def request(
    port: int,
    method: str,
    path: str,
    params: dict | None = None,
    body: bytes = b"",
    headers: dict | None = None,
    timeout: float = 10.0,
) -> Answer:
    sock = connect(port, timeout)
    try:
        sock.sendall(request_bytes(method, path, params, body, headers, port))
        return read_answer(sock)
    finally:
        sock.close()
