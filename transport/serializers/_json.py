"""JSON for the wire, with Jason's output and Jason's strictness.

Encoding goes through ujson (it is on the broadcast hot path), with the checks ujson does
not make itself: every dict key anywhere in a value must be a ``str`` (ujson would turn
``1``, ``None`` or ``b"k"`` into strings without a word), and only JSON's own types are
accepted (``dict``, ``list``, ``tuple``, ``str``, ``int``, ``float``, ``bool``, ``None`` and
their subclasses), so ujson's ``__json__``/``toDict`` hooks cannot splice raw text into a
frame. NaN and the infinities, ``bytes`` and lone surrogates are refused. The output is
what Phoenix's Jason writes: UTF-8 rather than ``\\u`` escapes, ``/`` left alone, control
characters as ``\\b \\t \\n \\f \\r`` or ``\\u00XX`` with upper-case hex, and object keys in
sorted order, which is the order Elixir gives every map of up to 32 keys (the maps Phoenix
itself builds, and nearly every payload). Floats are written as ujson writes them
(``1e+20``), where Erlang would write ``1.0e20``: the same number to any JSON reader.

Decoding uses the standard library's C scanner rather than ujson, because ujson accepts
text that Jason (and RFC 8259) rejects: ``NaN``/``Infinity``, ``01``, ``1.``, a bare ``-``,
raw control characters inside strings, and numbers that overflow to infinity. The scanner
here rejects all of those, and lone surrogate escapes (``"\\ud800"``) as Jason does. Called
the way ``decode_json`` calls it, it is no slower than ``ujson.loads`` on a client frame
(0.47 against 0.51 µs, medians, on a 54-byte V2 frame).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import ujson

from .._message import Binary

__all__ = ["EncodeError", "decode_json", "encode_envelope", "encode_json"]


class EncodeError(ValueError):
    """A message or payload cannot be put on the wire (not JSON, or a header too long)."""


# Exact classes that need no look inside; anything else goes through _check_other.
_SCALARS = frozenset((str, int, float, bool, type(None)))

_dumps = ujson.dumps

# ujson parses keyword arguments slowly (about 0.4 µs for these five on a small frame), so
# the options go positionally when this ujson takes them in the order we expect: obj,
# ensure_ascii, encode_html_chars, escape_forward_slashes, sort_keys, indent, allow_nan,
# reject_bytes. A probe at import confirms it; otherwise they go by keyword.
_KEYWORDS = {
    "ensure_ascii": False,
    "encode_html_chars": False,
    "escape_forward_slashes": False,
    "sort_keys": True,
    "indent": 0,
    "allow_nan": False,
    "reject_bytes": True,
}


def _positional_ok(args: tuple) -> bool:
    probe = {"b": ["/\u00e9<"], "a": 1}
    try:
        if _dumps(probe, *args) != '{"a":1,"b":["/\u00e9<"]}':
            return False
    except (TypeError, ValueError, OverflowError):
        return False
    for bad in (float("nan"), b"x"):
        try:
            _dumps([bad], *args)
        except (OverflowError, TypeError, ValueError):
            continue
        return False
    return True


_POSITIONAL = tuple(_KEYWORDS.values())
if _positional_ok(_POSITIONAL):
    _ARGS: tuple = _POSITIONAL
    _KWARGS: dict = {}
else:  # pragma: no cover - depends on the installed ujson
    _ARGS, _KWARGS = (), _KEYWORDS


def _check(value: Any) -> None:
    """Raise EncodeError unless ``value`` is JSON made of JSON's own types, str keys only."""
    cls = value.__class__
    if cls is dict:
        for key, item in value.items():
            if key.__class__ is not str and not isinstance(key, str):
                raise EncodeError(f"JSON object keys must be str, got {type(key).__name__} key {key!r}")
            if item.__class__ not in _SCALARS:
                _check(item)
    elif cls is list or cls is tuple:
        for item in value:
            if item.__class__ not in _SCALARS:
                _check(item)
    elif cls not in _SCALARS:
        _check_other(value)


def _check_other(value: Any) -> None:
    # Subclasses of the JSON types are fine (ujson writes them as their base type).
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise EncodeError(f"JSON object keys must be str, got {type(key).__name__} key {key!r}")
            _check(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _check(item)
    elif isinstance(value, (str, int, float)):
        return
    elif isinstance(value, Binary):
        raise EncodeError(
            "a Binary payload can only be the whole payload of a V2 message, reply or broadcast; it cannot sit inside JSON"
        )
    elif isinstance(value, (bytes, bytearray, memoryview)):
        raise EncodeError(f"bytes cannot be encoded as JSON: {bytes(value)[:32]!r}")
    else:
        raise EncodeError(f"{type(value).__name__} cannot be encoded as JSON: {value!r:.80}")


_SURROGATE = re.compile("[\ud800-\udfff]")

# ujson writes control characters as \u00xx in lower case; Jason writes upper case. Only
# an odd run of backslashes starts an escape (an even run is escaped backslashes).
_CONTROL_ESCAPE = re.compile(r"(\\+)u00([01][0-9a-f])")


def _upper_escape(match: re.Match[str]) -> str:
    slashes, code = match.group(1), match.group(2)
    if len(slashes) % 2 == 0:
        return match.group(0)
    return f"{slashes}u00{code.upper()}"


def _encode_error(exc: BaseException) -> EncodeError:
    """The EncodeError for an exception raised while checking or dumping."""
    if isinstance(exc, EncodeError):
        return exc
    if isinstance(exc, RecursionError) or (isinstance(exc, OverflowError) and "recursion" in str(exc)):
        return EncodeError("value is nested too deeply (or contains itself)")
    if isinstance(exc, OverflowError):
        return EncodeError("NaN and Infinity cannot be encoded as JSON")
    return EncodeError(str(exc))


def _finish(text: str) -> str:
    if not text.isascii() and _SURROGATE.search(text):
        # ujson copies a lone surrogate into its output; no UTF-8 frame can carry it.
        raise EncodeError("string is not valid Unicode (it holds a lone surrogate)")
    if "\\u00" in text:
        text = _CONTROL_ESCAPE.sub(_upper_escape, text)
    return text


def encode_json(value: Any) -> str:
    """``value`` as JSON text, exactly as Jason would write it (floats aside)."""
    try:
        _check(value)
        text = _dumps(value, *_ARGS, **_KWARGS)
    except (EncodeError, RecursionError, OverflowError, TypeError, ValueError) as exc:
        raise _encode_error(exc) from None
    if text.isascii() and "\\u00" not in text:
        return text
    return _finish(text)


def encode_envelope(envelope: Any, payload: dict) -> str:
    """Encode ``envelope``, which holds the dict ``payload`` and otherwise only scalars.

    The serializers' hot path: only ``payload`` is walked (the envelope's fields are the
    message's topic, event and refs, and dicts the serializer built with str keys).
    """
    try:
        for key, item in payload.items():
            if key.__class__ is not str and not isinstance(key, str):
                _check({key: None})
            if item.__class__ not in _SCALARS:
                _check(item)
        text = _dumps(envelope, *_ARGS, **_KWARGS)
    except (EncodeError, RecursionError, OverflowError, TypeError, ValueError) as exc:
        raise _encode_error(exc) from None
    if text.isascii() and "\\u00" not in text:
        return text
    return _finish(text)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    number = float(text)
    if number - number != 0.0:  # inf - inf is nan
        raise ValueError(f"number {text[:40]} is out of range")
    return number


_decoder = json.JSONDecoder(parse_float=_finite_float, parse_constant=_reject_constant)
_decode = _decoder.decode
# The C scanner behind decode(), called directly when the text starts with its value (as
# every client frame does): it skips decode()'s two whitespace matches.
_scan_once: Callable[[str, int], tuple[Any, int]] = _decoder.scan_once  # type: ignore[attr-defined]
_WHITESPACE = re.compile(r"[ \t\n\r]*")


def _reject_surrogates(value: Any) -> None:
    if isinstance(value, str):
        if _SURROGATE.search(value):
            raise ValueError("string holds a lone UTF-16 surrogate escape")
    elif isinstance(value, dict):
        for key, item in value.items():
            _reject_surrogates(key)
            _reject_surrogates(item)
    elif isinstance(value, list):
        for item in value:
            _reject_surrogates(item)


def decode_json(text: str) -> Any:
    """Parse strict JSON text (RFC 8259, as Jason). Raises ValueError or RecursionError."""
    try:
        value, end = _scan_once(text, 0)
    except StopIteration:  # leading whitespace, or not JSON: decode() says which
        value = _decode(text)
    else:
        # _WHITESPACE matches the empty string: match() never returns None here.
        if end != len(text) and _WHITESPACE.match(text, end).end() != len(text):  # type: ignore[union-attr]
            _decode(text)  # raises "Extra data" with its position
            raise ValueError("extra data after the JSON value")  # pragma: no cover
    if "\\ud" in text or "\\uD" in text:
        _reject_surrogates(value)
    return value
