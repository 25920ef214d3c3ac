"""A request's header block, read and parsed in one pass.

pywsgi parses the header block through ``http.client.parse_headers``, which runs the
stdlib's e-mail parser over it and answers each ``get`` by scanning every header with
``lower()``: about a quarter of the Python work of a WebSocket connect (handshake, join,
leave, close) on this server. :func:`read_headers` reads the same lines from the same
buffered stream and keeps them in a dict, with the same limits (100 headers, 64 KiB a
line) and the object pywsgi expects of ``MessageClass`` (``get``, ``getheader``,
``typeheader``, ``status``, ``del``). What the e-mail parser tolerated silently, it
refuses as RFC 9112 asks of a server: a line that is no ``name: value`` field, and
whitespace between a name and its colon, are a 400; an obsolete folded line is joined to
the previous value with a space.
"""

from __future__ import annotations

import http.client
from collections.abc import Iterator
from typing import Any

__all__ = ["MAX_HEADERS", "MAX_LINE", "Headers", "TooManyHeaders", "read_headers"]

#: As http.client: more is a 431 (the message names "headers", which the handler maps).
MAX_HEADERS = 100
#: As http.client: a longer line is refused (pywsgi answers 400 for it).
MAX_LINE = 65536

# RFC 9110's token characters: what a field name may be made of.
_TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")


class TooManyHeaders(http.client.HTTPException):
    """More than :data:`MAX_HEADERS` header lines (answered 431)."""


class Headers:
    """A request's header fields: lookups are case-insensitive and give the first value of a
    repeated field (as ``email.message.Message.get``); :meth:`fields` gives every field in
    order, for the WSGI environ."""

    __slots__ = ("_first", "_fields", "status")

    def __init__(self, fields: list[tuple[str, str]], status: str = "") -> None:
        first: dict[str, str] = {}
        for name, value in fields:
            key = name.lower()
            if key not in first:
                first[key] = value
        self._first = first
        self._fields = fields
        # pywsgi refuses the request when this is not empty (http.client's line limit).
        self.status = status

    def get(self, name: str, default: Any = None) -> Any:
        """The first value of field ``name`` (any case), or ``default``."""
        return self._first.get(name.lower(), default)

    getheader = get

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._first

    def __delitem__(self, name: str) -> None:
        # As Message.__delitem__: every field of that name goes, and a missing one is no error.
        key = name.lower()
        self._first.pop(key, None)
        self._fields = [field for field in self._fields if field[0].lower() != key]

    def __len__(self) -> int:
        return len(self._fields)

    def fields(self) -> list[tuple[str, str]]:
        """Every (name, value) in the order received, repeats included."""
        return self._fields

    @property
    def typeheader(self) -> str | None:
        """The Content-Type value (pywsgi's name for it)."""
        return self._first.get("content-type")

    @property
    def headers(self) -> Iterator[str]:
        """The fields as ``"Name: value\\r\\n"`` lines (the old ``mimetools`` API)."""
        return (f"{name}: {value}\r\n" for name, value in self._fields)

    def __repr__(self) -> str:
        return f"Headers({self._fields!r})"


def read_headers(rfile: Any) -> Headers:
    """Read header lines from ``rfile`` up to the blank line that ends them.

    Raises ``ValueError`` for a malformed field line, :class:`TooManyHeaders` past
    :data:`MAX_HEADERS`; a line over :data:`MAX_LINE` gives a ``Headers`` whose ``status``
    says so (pywsgi answers it with 400), as ``http.client.parse_headers`` does for pywsgi.
    """
    fields: list[tuple[str, str]] = []
    readline = rfile.readline
    lines = 0  # folded lines count too, as http.client counts them: the block stays bounded
    while True:
        raw = readline(MAX_LINE + 1)
        if len(raw) > MAX_LINE:
            return Headers([], "Line too long")
        if raw in (b"\r\n", b"\n", b""):
            return Headers(fields)
        lines += 1
        if lines > MAX_HEADERS:
            raise TooManyHeaders(f"got more than {MAX_HEADERS} headers")
        line = raw.decode("latin-1").rstrip("\r\n")
        if not line:  # a bare CR, say: not the blank line that ends the block
            raise ValueError(f"invalid header line {raw[:80]!r}")
        if line[0] in " \t":
            if not fields:
                raise ValueError(f"invalid header line {line[:80]!r}: a continuation with no field before it")
            name, value = fields[-1]
            more = line.strip(" \t")
            fields[-1] = (name, f"{value} {more}" if value else more)
            continue
        name, colon, value = line.partition(":")
        if not colon or not name or not _TOKEN.issuperset(name):
            raise ValueError(f"invalid header line {line[:80]!r}")
        fields.append((name, value.strip(" \t")))
