"""The opening handshake, pure: a WSGI environ in, a verdict out (RFC 6455 section 4.2).

:func:`check_request` reads the request's headers and returns None when the request is not
a WebSocket upgrade at all (the application should see it), a :class:`Refusal` (status,
headers, body bytes, one-line log message) when it is a broken one, or an :class:`Upgrade`
carrying the ``Sec-WebSocket-Accept`` value and the offered subprotocols.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from typing import NamedTuple

__all__ = ["GUID", "SUPPORTED_VERSIONS", "Refusal", "Upgrade", "accept_key", "check_request", "parse_list"]

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

#: Only RFC 6455's version; the hybi drafts 7 and 8 that gevent-websocket also advertised
#: are long gone from clients.
SUPPORTED_VERSIONS = ("13",)


class Refusal(NamedTuple):
    status: str
    headers: list
    body: bytes
    log_message: str


class Upgrade(NamedTuple):
    accept: str
    version: str
    subprotocols: list


def accept_key(key: str) -> str:
    """``Sec-WebSocket-Accept`` for a ``Sec-WebSocket-Key``: base64(SHA-1(key + GUID))."""
    return base64.b64encode(hashlib.sha1((key + GUID).encode("latin-1")).digest()).decode("ascii")


def parse_list(value: str | None) -> list[str]:
    """The tokens of a comma-separated header (RFC 7230 ``#token``): stripped, empties dropped."""
    if not value:
        return []
    return [item for item in (part.strip(" \t") for part in value.split(",")) if item]


def _has_token(value: str | None, token: str) -> bool:
    """Whether a comma-separated header holds ``token`` (lower case), in any case. (A
    generator stopped early by ``in`` is closed with a GeneratorExit: a raised exception
    per header on every handshake.)"""
    for item in parse_list(value):
        if item.lower() == token:
            return True
    return False


def _refuse(status: str, message: str, headers: list | None = None) -> Refusal:
    headers = [("Content-Type", "text/plain"), ("Connection", "close"), *(headers or [])]
    return Refusal(status, headers, message.encode("ascii", "replace"), message)


def check_request(
    environ: dict, request_version: str, versions: tuple[str, ...] = SUPPORTED_VERSIONS
) -> Refusal | Upgrade | None:
    """Judge a WSGI request as a WebSocket opening handshake (see the module docstring)."""
    if environ.get("REQUEST_METHOD", "") != "GET":
        return None
    if not _has_token(environ.get("HTTP_UPGRADE"), "websocket"):
        return None
    if not _has_token(environ.get("HTTP_CONNECTION"), "upgrade"):
        return None
    if request_version != "HTTP/1.1":
        return _refuse("400 Bad Request", f"WebSocket upgrade over {request_version or 'HTTP/0.9'}, needs HTTP/1.1")
    version_header = [("Sec-WebSocket-Version", ", ".join(versions))]
    version = (environ.get("HTTP_SEC_WEBSOCKET_VERSION") or "").strip()
    if not version:
        return _refuse("426 Upgrade Required", "Sec-WebSocket-Version missing", version_header)
    if version not in versions:
        # RFC 6455 4.2.2: an unknown version is answered with the versions we speak; 426 as
        # Cowboy answers it.
        return _refuse("426 Upgrade Required", f"unsupported Sec-WebSocket-Version {version[:20]!r}", version_header)
    key = (environ.get("HTTP_SEC_WEBSOCKET_KEY") or "").strip()
    if not key:
        return _refuse("400 Bad Request", "Sec-WebSocket-Key missing")
    try:
        raw = base64.b64decode(key.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        return _refuse("400 Bad Request", f"Sec-WebSocket-Key {key[:40]!r} is not base64")
    if len(raw) != 16:
        return _refuse("400 Bad Request", f"Sec-WebSocket-Key decodes to {len(raw)} bytes, not 16")
    return Upgrade(accept_key(key), version, parse_list(environ.get("HTTP_SEC_WEBSOCKET_PROTOCOL")))
