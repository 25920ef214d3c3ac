"""Helpers shared by the V1 and V2 serializers: frame text, field checks, error text."""

from __future__ import annotations

from typing import Any

from .._message import InvalidMessageError
from ._json import decode_json

__all__ = ["as_text", "check_fields", "describe", "parse"]


def describe(value: Any) -> str:
    """A short description of a client's value for an error message."""
    text = repr(value)
    if len(text) > 80:
        text = text[:77] + "..."
    return f"{type(value).__name__} {text}"


def as_text(data: Any) -> str:
    """A text frame's data as str; bytes must be UTF-8."""
    if isinstance(data, str):
        return data
    if isinstance(data, (bytes, bytearray, memoryview)):
        try:
            return bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidMessageError(f"frame is not valid UTF-8: {exc}") from None
    raise InvalidMessageError(f"frame data must be str or bytes, got {type(data).__name__}")


def parse(text: str) -> Any:
    """Strict JSON, with any failure as InvalidMessageError."""
    try:
        return decode_json(text)
    except RecursionError:
        raise InvalidMessageError("frame is not valid JSON: nested too deeply") from None
    except ValueError as exc:  # json.JSONDecodeError is a ValueError
        raise InvalidMessageError(f"frame is not valid JSON: {exc}") from None


def check_fields(topic: Any, event: Any, ref: Any, join_ref: Any) -> None:
    """topic and event must be strings; ref and join_ref strings or null."""
    if topic.__class__ is not str:
        raise InvalidMessageError(f"topic must be a string, got {describe(topic)}")
    if event.__class__ is not str:
        raise InvalidMessageError(f"event must be a string, got {describe(event)}")
    if ref is not None and ref.__class__ is not str:
        raise InvalidMessageError(f"ref must be a string or null, got {describe(ref)}")
    if join_ref is not None and join_ref.__class__ is not str:
        raise InvalidMessageError(f"join_ref must be a string or null, got {describe(join_ref)}")
