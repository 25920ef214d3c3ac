"""The client side of Phoenix's LongPoll transport, as phoenix.js's ``longpoll.js`` speaks it.

A session starts with a GET without a token: the server answers ``{"status": 410, "token": T}``
(the client is now "open") or ``{"status": 403}`` (refused). Then the client keeps one GET
``?token=T`` outstanding: 200 with ``messages`` (each a frame's text), 204 (nothing within
the window; poll again), 410 (the session is gone: close, and the socket reconnects and
rejoins), anything else an error. Frames go up in POSTs of ``application/x-ndjson``: one
frame a line, text as is, binary as base64; at most 100 a POST (phoenix.js's batch size).
No heartbeats on this transport (phoenix.js skips them too: every poll is one).

The parsing and batching here are pure; :class:`LongPollSession` does the HTTP with
``urllib3`` (blocking; the asyncio driver runs it in worker threads, see docs/client.md).
"""

from __future__ import annotations

import base64
import json
from typing import Any, cast
from urllib.parse import urlencode, urlsplit, urlunsplit

from ._errors import ConnectError

__all__ = ["LongPollSession", "MAX_BATCH", "ndjson_batches", "parse_poll", "with_token"]

#: phoenix.js's MAX_LONGPOLL_BATCH_SIZE: frames per POST.
MAX_BATCH = 100


def parse_poll(body: bytes) -> tuple[int, str | None, list[tuple[str, str]]]:
    """A poll answer's ``(status, token, frames)``; frames are ``("text", data)``."""
    try:
        value = json.loads(body)
    except ValueError as exc:
        raise ValueError(f"LongPoll answer is not JSON: {exc}") from None
    if not isinstance(value, dict) or not isinstance(value.get("status"), int):
        raise ValueError(f"LongPoll answer has no status: {body[:80]!r}")
    messages = value.get("messages") or []
    if not isinstance(messages, list) or not all(isinstance(m, str) for m in messages):
        raise ValueError("LongPoll messages must be a list of strings")
    return value["status"], value.get("token"), [("text", m) for m in messages]


def ndjson_batches(frames: list[tuple[str, str | bytes]]) -> list[bytes]:
    """POST bodies for ``frames``: ndjson, binary frames as base64, MAX_BATCH lines each."""
    lines = []
    for opcode, data in frames:
        if opcode == "binary":
            lines.append(base64.b64encode(bytes(cast(bytes, data))).decode("ascii"))
        else:
            text = data if isinstance(data, str) else bytes(data).decode("utf-8")
            if "\n" in text:
                # JSON text never needs a raw newline; one here would split the frame.
                text = text.replace("\n", "\\n")
            lines.append(text)
    return ["\n".join(lines[i : i + MAX_BATCH]).encode("utf-8") for i in range(0, len(lines), MAX_BATCH)]


def with_token(url: str, token: str | None) -> str:
    """``url`` with the session token added to its query."""
    if token is None:
        return url
    parts = urlsplit(url)
    query = "&".join(q for q in (parts.query, urlencode({"token": token})) if q)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))


class LongPollSession:
    """One LongPoll session over urllib3 (blocking): :meth:`open`, :meth:`poll`, :meth:`send`.

    ``timeout`` bounds each request (phoenix.js's ``longpollerTimeout``, 20 s); it must
    exceed the server's window.
    """

    def __init__(
        self, url: str, *, headers: dict[str, str] | None = None, timeout: float = 20.0, ssl_context: Any = None
    ) -> None:
        import urllib3

        self.url = url
        self.token: str | None = None
        self.timeout = timeout
        self._headers = {"Accept": "application/json", **(headers or {})}
        # Two connections: one poll outstanding while a POST goes up.
        tls = {"ssl_context": ssl_context} if ssl_context is not None else {}
        self._pool = urllib3.PoolManager(num_pools=1, maxsize=2, block=False, retries=False, **tls)

    def _request(self, method: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        import urllib3

        try:
            resp = self._pool.request(
                method,
                with_token(self.url, self.token),
                body=body,
                headers={**self._headers, **(headers or {})},
                timeout=urllib3.Timeout(connect=self.timeout, read=self.timeout),
                redirect=False,
            )
        except urllib3.exceptions.HTTPError as exc:
            raise OSError(f"LongPoll {method} failed: {exc}") from exc
        return resp.status, resp.data

    def open(self) -> None:
        """Start the session; ConnectError when refused or unreachable."""
        try:
            http_status, body = self._request("GET")
        except OSError as exc:
            raise ConnectError(str(exc)) from exc
        if http_status != 200:
            raise ConnectError(f"the server refused the LongPoll connection (HTTP {http_status})", http_status, body)
        try:
            status, token, _ = parse_poll(body)
        except ValueError as exc:
            raise ConnectError(str(exc)) from None
        if status == 410 and token:
            self.token = token
            return
        if status == 403:
            raise ConnectError("the server refused the connection (403)", 403, body)
        raise ConnectError(f"unexpected LongPoll status {status}", status, body)

    def poll(self) -> tuple[int, list[tuple[str, str]]]:
        """One long poll: ``(status, frames)``; raises OSError/ValueError on transport trouble."""
        http_status, body = self._request("GET")
        if http_status != 200:
            return http_status, []
        status, token, frames = parse_poll(body)
        if token and status != 410:
            self.token = token
        return status, frames

    def send(self, frames: list[tuple[str, str | bytes]]) -> int:
        """POST ``frames`` in batches: 200, or the first other status.

        V1 frames (JSON objects) go one a POST as ``application/json``: an ndjson line
        that does not start with ``[`` is read as base64 by Phoenix's server.
        """
        if frames and frames[0][0] == "text" and not str(frames[0][1]).startswith("["):
            bodies = [(f[1].encode("utf-8") if isinstance(f[1], str) else bytes(f[1]), "application/json") for f in frames]
        else:
            bodies = [(body, "application/x-ndjson") for body in ndjson_batches(frames)]
        for body, content_type in bodies:
            http_status, answer = self._request("POST", body, {"Content-Type": content_type})
            if http_status != 200:
                return http_status
            status, _, _ = parse_poll(answer)
            if status != 200:
                return status
        return 200

    def close(self) -> None:
        self._pool.clear()


def describe_close(status: int) -> tuple[int, str]:
    """The WebSocket-like close code and reason longpoll.js gives a poll status."""
    if status == 410:
        return 3410, "session_gone"
    if status == 403:
        return 1008, "forbidden"
    return 1011, f"internal server error ({status})"


def frame_from_data(data: Any) -> tuple[str, str]:
    return ("text", data)
