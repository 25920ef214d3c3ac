"""Erlang's External Term Format: ``term_to_binary`` and ``binary_to_term`` for Python values.

The one codec of the project: Phoenix.Token payloads, Plug's cookie session and the
Redis adapter's messages (phoenix_pubsub_redis's wire format) all go through it, so a
term written here is read by a BEAM node and the other way round.

How Python values and Erlang terms map onto each other:

=======================================  ======================================
Python                                   Erlang term
=======================================  ======================================
``None`` / ``True`` / ``False``          the atoms ``nil`` / ``true`` / ``false``
:class:`Atom` (``Atom("ok")``)           an atom (``:ok``)
``int`` (any size)                       an integer (small, 32-bit or bignum)
``float`` (finite)                       a float (``NEW_FLOAT_EXT``)
``str``                                  a binary holding its UTF-8 bytes
``bytes`` / ``bytearray`` / memoryview   a binary
``list``                                 a proper list (``[]`` is nil)
``tuple``                                a tuple
``dict``                                 a map
:class:`ImproperList`                    an improper list (``[a | b]``)
:class:`OpaqueTerm`                      a pid, port or reference, byte for byte
=======================================  ======================================

Decoding is the inverse, with these choices: a binary becomes ``str`` when it is valid
UTF-8 and ``bytes`` otherwise (``binaries="bytes"`` keeps every binary as ``bytes``);
``nil``/``true``/``false`` become ``None``/``True``/``False`` (Elixir's reading of
``nil``, so ``Atom("nil")`` comes back as ``None``; Erlang's ``undefined`` stays an
:class:`Atom`); a charlist (``STRING_EXT``)
becomes a list of ints, as it is a list in Erlang; pids, ports and references become
:class:`OpaqueTerm` values that encode back to the same bytes. Decoding never builds
arbitrary objects and never runs anything: funs (``FUN_EXT``, ``NEW_FUN_EXT``,
``EXPORT_EXT``) are refused, as Plug.Crypto's ``non_executable_binary_to_term`` refuses
them. Atoms cost nothing here (Python has no atom table to exhaust), so there is no
``[:safe]`` mode to ask for. Hostile input is bounded: nesting deeper than ``max_depth``,
a compressed term inflating past ``max_size``, or lengths that the remaining bytes cannot
hold are refused with :class:`TermDecodeError` before anything large is allocated.

The encoder writes what ``term_to_binary/1`` writes on OTP 26 and later (and OTP 25 with
``[{minor_version, 2}]``): UTF-8 atoms, ``NEW_FLOAT_EXT``, lists of bytes as
``STRING_EXT``, maps of up to 32 keys in Erlang's term order. Maps with more keys are
written in insertion order (the BEAM orders them by hash, which no other runtime can
reproduce); every decoder reads them the same.

Exceptions: :class:`TermError` (a ``ValueError``) is the base; :class:`TermDecodeError`
for bytes that are not a term this codec reads; :class:`TermEncodeError` (also a
``TypeError``) for a value with no term form (a set, a NaN, an object).
"""

from __future__ import annotations

import math
import struct
import zlib
from collections.abc import Iterable
from typing import Any, Literal

__all__ = [
    "Atom",
    "ImproperList",
    "OpaqueTerm",
    "TermDecodeError",
    "TermEncodeError",
    "TermError",
    "binary_to_term",
    "term_to_binary",
]

VERSION = 131

# Tags (erts/doc/src/erl_ext_dist.xml).
_NEW_FLOAT = 70
_BIT_BINARY = 77
_COMPRESSED = 80
_ATOM_CACHE_REF = 82
_NEW_PID = 88
_NEW_PORT = 89
_NEWER_REFERENCE = 90
_SMALL_INTEGER = 97
_INTEGER = 98
_FLOAT = 99
_ATOM = 100
_REFERENCE = 101
_PORT = 102
_PID = 103
_SMALL_TUPLE = 104
_LARGE_TUPLE = 105
_NIL = 106
_STRING = 107
_LIST = 108
_BINARY = 109
_SMALL_BIG = 110
_LARGE_BIG = 111
_NEW_FUN = 112
_EXPORT = 113
_NEW_REFERENCE = 114
_SMALL_ATOM = 115
_MAP = 116
_FUN = 117
_ATOM_UTF8 = 118
_SMALL_ATOM_UTF8 = 119
_V4_PORT = 120
_LOCAL = 121

DEFAULT_MAX_DEPTH = 256
DEFAULT_MAX_SIZE = 64 * 1024 * 1024

# The BEAM keeps maps of up to this many keys sorted ("flatmaps"); bigger ones are HAMTs.
_FLATMAP_LIMIT = 32


class TermError(ValueError):
    """Base class of the codec's errors."""


class TermDecodeError(TermError):
    """The bytes are not an external term this codec reads (malformed, hostile or unsupported)."""


class TermEncodeError(TermError, TypeError):
    """The value has no Erlang term form."""


class Atom(str):
    """An Erlang atom. A ``str`` (so it formats and JSON-encodes as its name) that is never
    equal to a plain ``str``: ``Atom("ok") != "ok"``, as ``:ok != "ok"`` in Elixir."""

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Atom) and str.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    def __hash__(self) -> int:
        return hash(("atom", str(self)))

    def __repr__(self) -> str:
        return f"Atom({str.__repr__(self)})"


class ImproperList:
    """A list whose tail is not ``[]`` (Erlang's ``[a, b | tail]``)."""

    __slots__ = ("items", "tail")

    def __init__(self, items: Iterable[Any], tail: Any) -> None:
        self.items = list(items)
        if not self.items:
            raise ValueError("an improper list has at least one element")
        if isinstance(tail, list):
            raise ValueError("the tail of an improper list is not a list")
        self.tail = tail

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ImproperList) and self.items == other.items and self.tail == other.tail

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"ImproperList({self.items!r}, {self.tail!r})"


class OpaqueTerm:
    """A pid, port or reference read from a BEAM's bytes, kept verbatim.

    ``kind`` is ``"pid"``, ``"port"`` or ``"reference"``; ``node`` the node it belongs to.
    It compares and hashes by its bytes and encodes back to exactly them.
    """

    __slots__ = ("kind", "node", "raw")

    def __init__(self, kind: str, node: str, raw: bytes) -> None:
        self.kind = kind
        self.node = node
        self.raw = bytes(raw)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, OpaqueTerm) and self.raw == other.raw

    def __hash__(self) -> int:
        return hash(self.raw)

    def __repr__(self) -> str:
        return f"OpaqueTerm({self.kind!r}, {self.node!r}, {self.raw.hex()})"


# ---------------------------------------------------------------------------------------
# Encoding

_pack_be_u16 = struct.Struct(">H").pack
_pack_be_u32 = struct.Struct(">I").pack
_pack_be_i32 = struct.Struct(">i").pack
_pack_be_f64 = struct.Struct(">d").pack


def term_to_binary(term: Any, *, compressed: int | bool = False) -> bytes:
    """The external term format of ``term`` (with the version byte), as Erlang's
    ``term_to_binary/2``; ``compressed`` is ``True`` (level 6) or a zlib level 0-9."""
    out = bytearray()
    try:
        _encode(term, out)
    except RecursionError:
        raise TermEncodeError("the value is nested too deeply to encode") from None
    if not compressed:
        return bytes((VERSION,)) + bytes(out)
    level = 6 if compressed is True else compressed
    if not isinstance(level, int) or not 0 <= level <= 9:
        raise ValueError(f"compressed must be a bool or a zlib level 0-9, got {compressed!r}")
    packed = zlib.compress(bytes(out), level)
    # Erlang keeps the plain form when compression does not make the term smaller.
    if len(packed) + 5 >= len(out):
        return bytes((VERSION,)) + bytes(out)
    return bytes((VERSION, _COMPRESSED)) + _pack_be_u32(len(out)) + packed


def _encode(term: Any, out: bytearray) -> None:
    cls = term.__class__
    if cls is str:
        data = term.encode("utf-8")
        out.append(_BINARY)
        out += _pack_be_u32(len(data))
        out += data
    elif cls is int:
        _encode_int(term, out)
    elif cls is dict:
        _encode_map(term, out)
    elif cls is list:
        _encode_list(term, out)
    elif cls is tuple:
        n = len(term)
        if n < 256:
            out.append(_SMALL_TUPLE)
            out.append(n)
        else:
            out.append(_LARGE_TUPLE)
            out += _pack_be_u32(n)
        for item in term:
            _encode(item, out)
    elif term is None:
        out += b"\x77\x03nil"
    elif term is True:
        out += b"\x77\x04true"
    elif term is False:
        out += b"\x77\x05false"
    elif isinstance(term, Atom):
        _encode_atom(term, out)
    elif isinstance(term, str):
        _encode(str(term), out)
    elif isinstance(term, (bytes, bytearray, memoryview)):
        data = bytes(term)
        out.append(_BINARY)
        out += _pack_be_u32(len(data))
        out += data
    elif isinstance(term, int):
        _encode_int(int(term), out)
    elif isinstance(term, float):
        if not math.isfinite(term):
            raise TermEncodeError(f"{term!r} has no Erlang term form (floats are finite)")
        out.append(_NEW_FLOAT)
        out += _pack_be_f64(term)
    elif isinstance(term, dict):
        _encode_map(term, out)
    elif isinstance(term, list):
        _encode_list(term, out)
    elif isinstance(term, tuple):
        _encode(tuple(term), out)
    elif isinstance(term, ImproperList):
        out.append(_LIST)
        out += _pack_be_u32(len(term.items))
        for item in term.items:
            _encode(item, out)
        _encode(term.tail, out)
    elif isinstance(term, OpaqueTerm):
        out += term.raw
    else:
        raise TermEncodeError(f"a {cls.__name__} has no Erlang term form: {term!r:.80}")


def _encode_int(value: int, out: bytearray) -> None:
    if 0 <= value <= 255:
        out.append(_SMALL_INTEGER)
        out.append(value)
    elif -0x80000000 <= value <= 0x7FFFFFFF:
        out.append(_INTEGER)
        out += _pack_be_i32(value)
    else:
        magnitude = -value if value < 0 else value
        digits = magnitude.to_bytes((magnitude.bit_length() + 7) // 8, "little")
        if len(digits) < 256:
            out.append(_SMALL_BIG)
            out.append(len(digits))
        else:
            out.append(_LARGE_BIG)
            out += _pack_be_u32(len(digits))
        out.append(1 if value < 0 else 0)
        out += digits


def _encode_atom(name: str, out: bytearray) -> None:
    data = str.encode(name, "utf-8")
    if len(name) > 255:
        raise TermEncodeError(f"an atom has at most 255 characters: {name[:40]!r}...")
    if len(data) < 256:
        out.append(_SMALL_ATOM_UTF8)
        out.append(len(data))
    else:
        out.append(_ATOM_UTF8)
        out += _pack_be_u16(len(data))
    out += data


def _encode_list(items: list, out: bytearray) -> None:
    n = len(items)
    if n == 0:
        out.append(_NIL)
        return
    if n <= 0xFFFF and all(i.__class__ is int and 0 <= i <= 255 for i in items):
        out.append(_STRING)
        out += _pack_be_u16(n)
        out += bytes(items)
        return
    out.append(_LIST)
    out += _pack_be_u32(n)
    for item in items:
        _encode(item, out)
    out.append(_NIL)


def _encode_map(mapping: dict, out: bytearray) -> None:
    out.append(_MAP)
    out += _pack_be_u32(len(mapping))
    items: Iterable[tuple[Any, Any]] = mapping.items()
    if 1 < len(mapping) <= _FLATMAP_LIMIT:
        try:
            items = sorted(items, key=lambda kv: _order_key(kv[0]))
        except TypeError:
            pass  # keys this codec cannot order (opaque terms): insertion order still decodes
    for key, value in items:
        _encode(key, out)
        _encode(value, out)


# Erlang's term order: number < atom < reference < fun < port < pid < tuple < map < nil
# < list < bitstring. Map keys compare integers before floats ("exact" order).
def _order_key(term: Any) -> tuple:
    if term is None or term is True or term is False:
        return (1, "nil" if term is None else ("true" if term else "false"))
    if isinstance(term, Atom):
        return (1, str(term))
    if isinstance(term, int):
        return (0, 0, int(term))
    if isinstance(term, float):
        return (0, 1, term)
    if isinstance(term, str):
        return (10, term.encode("utf-8"))
    if isinstance(term, (bytes, bytearray, memoryview)):
        return (10, bytes(term))
    if isinstance(term, tuple):
        return (6, len(term), tuple(_order_key(t) for t in term))
    if isinstance(term, OpaqueTerm):
        return ({"reference": 2, "port": 4, "pid": 5}[term.kind], term.raw)
    raise TypeError("unordered key")


# ---------------------------------------------------------------------------------------
# Decoding

_unpack_u16 = struct.Struct(">H").unpack_from
_unpack_u32 = struct.Struct(">I").unpack_from
_unpack_i32 = struct.Struct(">i").unpack_from
_unpack_f64 = struct.Struct(">d").unpack_from


def binary_to_term(
    data: bytes | bytearray | memoryview,
    *,
    binaries: Literal["str", "bytes"] = "str",
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_size: int = DEFAULT_MAX_SIZE,
) -> Any:
    """The Python value of one external term (see the module docs for the mapping).

    ``binaries="str"`` decodes a binary holding valid UTF-8 to ``str``; ``"bytes"`` keeps
    every binary as ``bytes``. ``max_depth`` bounds nesting; ``max_size`` bounds what a
    compressed term may inflate to. Raises :class:`TermDecodeError` for anything else,
    including trailing bytes after the term.
    """
    if binaries not in ("str", "bytes"):
        raise ValueError(f"binaries must be 'str' or 'bytes', got {binaries!r}")
    buf = bytes(data)
    if len(buf) < 2 or buf[0] != VERSION:
        raise TermDecodeError("not an external term (no version byte 131)")
    if buf[1] == _COMPRESSED:
        buf = _inflate(buf, max_size)
        start = 0
    else:
        start = 1
    decoder = _Decoder(buf, binaries == "str", max_depth)
    try:
        term, end = decoder.term(start, 0)
    except (IndexError, struct.error):
        raise TermDecodeError("the term is truncated") from None
    if end != len(buf):
        raise TermDecodeError(f"{len(buf) - end} byte(s) after the term")
    return term


def _inflate(buf: bytes, max_size: int) -> bytes:
    if len(buf) < 6:
        raise TermDecodeError("the compressed term is truncated")
    (size,) = _unpack_u32(buf, 2)
    if size > max_size:
        raise TermDecodeError(f"the compressed term inflates to {size} bytes (max_size={max_size})")
    inflater = zlib.decompressobj()
    try:
        plain = inflater.decompress(buf[6:], size + 1)
    except zlib.error as exc:
        raise TermDecodeError(f"the compressed term is corrupt: {exc}") from None
    if len(plain) != size or not inflater.eof or inflater.unused_data:
        raise TermDecodeError("the compressed term does not inflate to its stated size")
    return plain


class _Decoder:
    __slots__ = ("buf", "as_str", "max_depth")

    def __init__(self, buf: bytes, as_str: bool, max_depth: int) -> None:
        self.buf = buf
        self.as_str = as_str
        self.max_depth = max_depth

    def _need(self, pos: int, count: int) -> None:
        if count < 0 or pos + count > len(self.buf):
            raise TermDecodeError("the term is truncated (a length runs past the end)")

    def term(self, pos: int, depth: int) -> tuple[Any, int]:
        buf = self.buf
        tag = buf[pos]
        pos += 1
        if tag == _SMALL_INTEGER:
            return buf[pos], pos + 1
        if tag == _BINARY:
            (n,) = _unpack_u32(buf, pos)
            pos += 4
            self._need(pos, n)
            return self._binary(buf[pos : pos + n]), pos + n
        if tag == _SMALL_ATOM_UTF8 or tag == _SMALL_ATOM:
            n = buf[pos]
            pos += 1
            self._need(pos, n)
            return _atom(buf[pos : pos + n], tag == _SMALL_ATOM_UTF8), pos + n
        if tag == _ATOM_UTF8 or tag == _ATOM:
            (n,) = _unpack_u16(buf, pos)
            pos += 2
            self._need(pos, n)
            return _atom(buf[pos : pos + n], tag == _ATOM_UTF8), pos + n
        if tag == _INTEGER:
            return _unpack_i32(buf, pos)[0], pos + 4
        if tag == _MAP:
            return self._map(pos, depth)
        if tag == _SMALL_TUPLE or tag == _LARGE_TUPLE:
            if tag == _SMALL_TUPLE:
                n = buf[pos]
                pos += 1
            else:
                (n,) = _unpack_u32(buf, pos)
                pos += 4
            self._need(pos, n)  # every element takes at least one byte
            depth = self._deeper(depth)
            items = []
            for _ in range(n):
                item, pos = self.term(pos, depth)
                items.append(item)
            return tuple(items), pos
        if tag == _NIL:
            return [], pos
        if tag == _LIST:
            return self._list(pos, depth)
        if tag == _STRING:
            (n,) = _unpack_u16(buf, pos)
            pos += 2
            self._need(pos, n)
            return list(buf[pos : pos + n]), pos + n
        if tag == _NEW_FLOAT:
            return _unpack_f64(buf, pos)[0], pos + 8
        if tag == _SMALL_BIG or tag == _LARGE_BIG:
            if tag == _SMALL_BIG:
                n = buf[pos]
                pos += 1
            else:
                (n,) = _unpack_u32(buf, pos)
                pos += 4
            sign = buf[pos]
            pos += 1
            self._need(pos, n)
            value = int.from_bytes(buf[pos : pos + n], "little")
            return (-value if sign else value), pos + n
        if tag == _FLOAT:
            self._need(pos, 31)
            text = buf[pos : pos + 31].split(b"\x00", 1)[0]
            try:
                return float(text.decode("ascii")), pos + 31
            except (UnicodeDecodeError, ValueError):
                raise TermDecodeError(f"bad FLOAT_EXT text {text!r}") from None
        if tag in _OPAQUE_KINDS:
            return self._opaque(tag, pos - 1)
        if tag == _BIT_BINARY:
            raise TermDecodeError("bitstrings (a binary whose size is not whole bytes) are not supported")
        if tag in (_NEW_FUN, _FUN, _EXPORT):
            raise TermDecodeError("executable terms (funs) are refused")
        if tag == _COMPRESSED:
            raise TermDecodeError("a compressed term may only stand at the top level")
        if tag == _ATOM_CACHE_REF or tag == _LOCAL:
            raise TermDecodeError(f"tag {tag} only appears on a distribution connection")
        raise TermDecodeError(f"unknown tag {tag}")

    def _deeper(self, depth: int) -> int:
        if depth >= self.max_depth:
            raise TermDecodeError(f"the term is nested deeper than max_depth={self.max_depth}")
        return depth + 1

    def _binary(self, data: bytes) -> Any:
        if self.as_str:
            try:
                return data.decode("utf-8")
            except UnicodeDecodeError:
                return data
        return data

    def _list(self, pos: int, depth: int) -> tuple[Any, int]:
        (n,) = _unpack_u32(self.buf, pos)
        pos += 4
        self._need(pos, n + 1)  # the elements and the tail
        depth = self._deeper(depth)
        items = []
        for _ in range(n):
            item, pos = self.term(pos, depth)
            items.append(item)
        tail, pos = self.term(pos, depth)
        if tail == [] and tail.__class__ is list:
            return items, pos
        if isinstance(tail, list):  # [a | [b, c]] written unnormalised: still a proper list
            return items + tail, pos
        if isinstance(tail, ImproperList):
            return ImproperList(items + tail.items, tail.tail), pos
        return ImproperList(items, tail), pos

    def _map(self, pos: int, depth: int) -> tuple[Any, int]:
        (n,) = _unpack_u32(self.buf, pos)
        pos += 4
        self._need(pos, 2 * n)
        depth = self._deeper(depth)
        result: dict[Any, Any] = {}
        for _ in range(n):
            key, pos = self.term(pos, depth)
            value, pos = self.term(pos, depth)
            try:
                result[key] = value
            except TypeError:
                raise TermDecodeError(f"a map key that Python cannot hash: {key!r:.60}") from None
        if len(result) != n:
            raise TermDecodeError("a map whose keys collide in Python")
        return result, pos

    def _opaque(self, tag: int, start: int) -> tuple[Any, int]:
        buf = self.buf
        pos = start + 1
        if tag in (_NEWER_REFERENCE, _NEW_REFERENCE):
            (words,) = _unpack_u16(buf, pos)
            pos += 2
            node, pos = self._node(pos)
            pos += (4 if tag == _NEWER_REFERENCE else 1) + 4 * words
        else:
            node, pos = self._node(pos)
            pos += _OPAQUE_TAIL[tag]
        self._need(pos, 0)
        return OpaqueTerm(_OPAQUE_KINDS[tag], node, buf[start:pos]), pos

    def _node(self, pos: int) -> tuple[str, int]:
        node, pos = self.term(pos, self.max_depth)
        if not isinstance(node, (Atom, bool)) and node is not None:
            raise TermDecodeError("a pid, port or reference whose node is not an atom")
        return str(node), pos


_OPAQUE_KINDS = {
    _NEW_PID: "pid",
    _PID: "pid",
    _NEW_PORT: "port",
    _V4_PORT: "port",
    _PORT: "port",
    _REFERENCE: "reference",
    _NEW_REFERENCE: "reference",
    _NEWER_REFERENCE: "reference",
}
# Bytes after the node atom, for the fixed-size kinds.
_OPAQUE_TAIL = {_NEW_PID: 12, _PID: 9, _NEW_PORT: 8, _V4_PORT: 12, _PORT: 5, _REFERENCE: 5}

_SPECIAL_ATOMS = {b"nil": None, b"true": True, b"false": False}


def _atom(data: bytes, utf8: bool) -> Any:
    special = _SPECIAL_ATOMS.get(data, _atom)
    if special is not _atom:
        return special
    try:
        return Atom(data.decode("utf-8" if utf8 else "latin-1"))
    except UnicodeDecodeError:
        raise TermDecodeError("an atom that is not valid UTF-8") from None
