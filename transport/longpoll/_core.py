"""The LongPoll wire, without sockets: answers, request bodies, the session buffer, tokens.

Everything here is pure (bytes and values in, bytes and values out), so the HTTP handler
and the session process only move data through it.

Answers: every answer is HTTP 200 with a JSON body ``{"status": N, ...}`` (Phoenix's
``status_json``); a GET's answer also carries the session ``token`` and the list of
``messages`` (each an encoded text frame, as the serializer wrote it).

Request bodies: a POST whose ``Content-Type`` is ``application/x-ndjson`` holds one frame
per line (``\\n`` or ``\\r\\n``): a line starting with ``[`` is a text frame (V2 JSON), any
other line is the standard base64 of a binary frame, which is how phoenix.js sends an
``ArrayBuffer`` payload. Empty lines are skipped. Any other content type: the whole body is
one text frame (an empty one is refused). At most :data:`MAX_BATCH_LINES` lines: phoenix.js never sends more in one
POST, and a body with more is refused whole (400), as is a line that is not base64.

The buffer: what a session holds for its client between polls, bounded in messages and
in bytes (Phoenix's is unbounded). :meth:`MessageBuffer.append` answers False when a
message would pass either bound; the session then closes (see ``_session.py``).
"""

from __future__ import annotations

import base64
import binascii
import os
import time
from collections import deque
from collections.abc import Iterable
from typing import Any

import ujson

__all__ = [
    "DEFAULTS",
    "MAX_BATCH_LINES",
    "BadRequest",
    "MessageBuffer",
    "cors_preflight_headers",
    "new_priv_topic",
    "parse_body",
    "session_token_data",
    "status_body",
    "token_session",
]

#: The most frames one ndjson POST may carry (phoenix.js's MAX_LONGPOLL_BATCH_SIZE).
MAX_BATCH_LINES = 100

#: The options of a ``longpoll`` mount, with their defaults (see docs/longpoll.md).
DEFAULTS: dict[str, Any] = {
    "window_ms": 10_000,
    "pubsub_timeout_ms": 2_000,
    "crypto": {"max_age": 1_209_600},
    "check_origin": True,
    "connect_info": [],
    "serializer": None,
    "path": "/longpoll",
    "max_buffer_messages": 10_000,
    "max_buffer_bytes": 8_000_000,
    "max_body_size": 8_000_000,
}

_JSON_HEADERS = [("Content-Type", "application/json; charset=utf-8"), ("access-control-allow-origin", "*")]


class BadRequest(ValueError):
    """A POST body the transport refuses: ``status`` is what the JSON answer says."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def status_body(status: int, token: str | None = None, messages: Iterable[str] | None = None) -> bytes:
    """The JSON of an answer: ``{"status": N}``, plus ``token`` and ``messages`` for a poll."""
    if messages is None and token is None:
        return b'{"status":%d}' % status
    doc = {"status": status, "token": token, "messages": list(messages or ())}
    return ujson.dumps(doc, ensure_ascii=False, escape_forward_slashes=False).encode("utf-8")


def json_headers(length: int) -> list[tuple[str, str]]:
    """The headers of every JSON answer (CORS: any origin may read it; origins are checked
    on the request instead, as Phoenix does)."""
    return [*_JSON_HEADERS, ("Content-Length", str(length))]


def cors_preflight_headers(requested: str | None) -> list[tuple[str, str]]:
    """An OPTIONS answer's headers: the requested headers are allowed, as Phoenix does."""
    return [
        ("access-control-allow-origin", "*"),
        ("access-control-allow-headers", requested or ""),
        ("access-control-allow-methods", "get, post, options"),
        ("access-control-max-age", "3600"),
        ("Content-Length", "0"),
    ]


def parse_body(body: bytes, content_type: str | None, max_lines: int = MAX_BATCH_LINES) -> list[tuple[str, Any]]:
    """A POST body as frames ``[(opcode, data)]``: ``('text', str)`` or ``('binary', bytes)``.

    Raises :class:`BadRequest` (400) for text that is not UTF-8, an empty body that is not
    ndjson, a base64 line that does not decode, or more than ``max_lines`` lines.
    """
    mime = (content_type or "").split(";", 1)[0].strip().lower()
    if mime != "application/x-ndjson":
        if not body:
            raise BadRequest(400, "an empty body is not a message")
        return [("text", _utf8(body))]
    lines = body.split(b"\n")
    if len(lines) > max_lines and sum(1 for line in lines if line.strip(b"\r")) > max_lines:
        raise BadRequest(400, f"more than {max_lines} lines in one ndjson batch")
    frames: list[tuple[str, Any]] = []
    for line in lines:
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line:
            continue
        if line[:1] == b"[":
            frames.append(("text", _utf8(line)))
        else:
            try:
                frames.append(("binary", base64.b64decode(line, validate=True)))
            except (binascii.Error, ValueError):
                raise BadRequest(400, "an ndjson line is neither a JSON array nor base64") from None
    return frames


def _utf8(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest(400, "the body is not UTF-8 text") from None


def new_priv_topic() -> str:
    """A session's private PubSub topic: unguessable, and named only inside its token."""
    return "phx:lp:" + base64.b64encode(os.urandom(16)).decode("ascii") + str(int(time.time() * 1000))


def session_token_data(endpoint_id: str, pid: Any, priv_topic: str) -> tuple:
    """What a session token signs: Phoenix's ``{:v1, endpoint_id, pid, priv_topic}``, with
    the pid as its text (a greenphx pid only means something in the OS process that made
    it; ``endpoint_id`` says which one)."""
    from ..terms import Atom

    return (Atom("v1"), endpoint_id, str(pid), priv_topic)


def token_session(data: Any) -> tuple[str, str, str] | None:
    """``(endpoint_id, pid_text, priv_topic)`` from verified token data, or None."""
    from ..terms import Atom

    if (
        data.__class__ is tuple
        and len(data) == 4
        and data[0] == Atom("v1")
        and all(isinstance(part, str) for part in data[1:])
        and data[3].startswith("phx:lp:")
    ):
        return (data[1], data[2], data[3])
    return None


class MessageBuffer:
    """The undelivered messages of one session, bounded in count and in bytes.

    ``append`` returns False (and keeps nothing of the message) when it would pass either
    bound; ``take`` empties the buffer. A message's size is its length in characters,
    which is what it costs in the poll's answer, give or take JSON escapes.
    """

    __slots__ = ("_items", "_bytes", "max_messages", "max_bytes", "total_in", "total_out", "high_water")

    def __init__(self, max_messages: int, max_bytes: int) -> None:
        self._items: deque[str] = deque()
        self._bytes = 0
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.total_in = 0
        self.total_out = 0
        self.high_water = 0  # the most characters ever held

    def __len__(self) -> int:
        return len(self._items)

    def __bool__(self) -> bool:
        return bool(self._items)

    @property
    def size(self) -> int:
        """Characters held."""
        return self._bytes

    def append(self, message: str) -> bool:
        """Keep ``message`` for the next poll; False when the buffer is full."""
        n = len(message)
        if len(self._items) >= self.max_messages or self._bytes + n > self.max_bytes:
            return False
        self._items.append(message)
        self._bytes += n
        if self._bytes > self.high_water:
            self.high_water = self._bytes
        self.total_in += 1
        return True

    def take(self) -> list[str]:
        """Everything held, oldest first; the buffer is empty afterwards."""
        items = list(self._items)
        self._items.clear()
        self._bytes = 0
        self.total_out += len(items)
        return items

    def clear(self) -> None:
        """Drop everything held."""
        self._items.clear()
        self._bytes = 0

    def statistics(self) -> dict[str, int]:
        """For tools: held now, bounds, and totals in and out."""
        return {
            "messages": len(self._items),
            "bytes": self._bytes,
            "max_messages": self.max_messages,
            "max_bytes": self.max_bytes,
            "high_water": self.high_water,
            "total_in": self.total_in,
            "total_out": self.total_out,
        }


def options(value: Any, validate_common: Any) -> dict[str, Any] | None:
    """Validate a mount's ``longpoll`` option: the full options dict, or None when off.

    ``validate_common(opts)`` checks the options shared with the WebSocket transport
    (serializer, connect_info, check_origin) and normalises them in place.
    """
    if value is False or value is None:
        return None
    opts = dict(DEFAULTS)
    opts["crypto"] = dict(DEFAULTS["crypto"])
    if value is not True:
        if not isinstance(value, dict):
            raise TypeError(f"longpoll option must be True, False or a dict; got {value!r}")
        unknown = set(value) - set(DEFAULTS)
        if unknown:
            raise TypeError(f"unknown longpoll option(s) {sorted(unknown)}; known: {sorted(DEFAULTS)}")
        opts.update(value)
    crypto = opts["crypto"]
    if not isinstance(crypto, dict) or set(crypto) - {"max_age"}:
        raise TypeError(f"longpoll crypto must be a dict like {{'max_age': 1_209_600}}; got {crypto!r}")
    opts["crypto"] = {"max_age": crypto.get("max_age", DEFAULTS["crypto"]["max_age"])}
    max_age = opts["crypto"]["max_age"]
    if max_age != "infinity" and (isinstance(max_age, bool) or not isinstance(max_age, (int, float)) or max_age <= 0):
        raise ValueError(f"crypto max_age must be positive seconds or 'infinity'; got {max_age!r}")
    for key in ("window_ms", "pubsub_timeout_ms", "max_buffer_messages", "max_buffer_bytes", "max_body_size"):
        v = opts[key]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0:
            raise ValueError(f"longpoll {key} must be a positive number; got {v!r}")
    if not isinstance(opts["path"], str) or not opts["path"].startswith("/"):
        raise ValueError(f"longpoll path must be a str starting with '/'; got {opts['path']!r}")
    validate_common(opts)
    return opts
