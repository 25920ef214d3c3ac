"""Phoenix's V2 JSON serializer (``vsn=2.x``): JSON arrays, plus binary frames.

Text frames are ``[join_ref, ref, topic, event, payload]``; a reply is
``[join_ref, ref, topic, "phx_reply", {"response": ..., "status": ...}]`` and a fastlane
broadcast ``[null, null, topic, event, payload]``. As in Phoenix, the payload of a push or a
broadcast must be a dict (or a ``Binary``); a reply's may be any JSON value.

A ``Binary`` payload goes out as a binary frame. Every header field is its UTF-8 bytes
behind a one-byte length, so each is at most 255 bytes (longer is an EncodeError); a
``None`` join_ref, ref or status is written as empty, as Phoenix writes ``nil``:

=========================  ====  ===================================================
frame                      kind  layout after the kind byte
=========================  ====  ===================================================
push, server to client     0     join_ref, topic, event sizes; the three; data
reply                      1     join_ref, ref, topic, status sizes; the four; data
broadcast                  2     topic, event sizes; the two; data
push, client to server     0     join_ref, ref, topic, event sizes; the four; data
=========================  ====  ===================================================

Decoding (client to server), a text frame must be a JSON array of at least five elements
(extra elements are ignored, as Phoenix's ``[.. | _]`` match ignores them); topic and event
must be strings and join_ref and ref strings or null (Phoenix's JS client sends strings or
null; Phoenix itself would pass any JSON through). The payload may be any JSON value:
Phoenix hands it to the channel untouched. A binary frame must be a client push (kind 0);
its fields must be UTF-8, an absent join_ref or ref arrives as ``""`` (as in Phoenix), and
kinds 1 and 2 (server to client only), unknown kinds and truncated frames are
InvalidMessageError.
"""

from __future__ import annotations

from typing import Any

from .._message import Binary, Broadcast, InvalidMessageError, Message, Reply
from ._common import as_text, check_fields, describe, parse
from ._json import EncodeError, encode_envelope, encode_json
from ._protocol import Frame, SingletonSerializer

__all__ = ["V2", "V2JSONSerializer"]

PUSH, REPLY, BROADCAST = 0, 1, 2
_KIND_NAMES = {PUSH: "push", REPLY: "reply", BROADCAST: "broadcast"}


def _header_field(value: Any, name: str, optional: bool) -> bytes:
    """``value``'s UTF-8 bytes for a binary header; None is empty when ``optional``."""
    if value is None and optional:
        return b""
    if not isinstance(value, str):
        raise EncodeError(f"{name} must be a str in a binary frame, got {describe(value)}")
    try:
        raw = value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise EncodeError(f"{name} is not valid Unicode: {exc}") from None
    if len(raw) > 255:
        raise EncodeError(f"{name} is {len(raw)} bytes in UTF-8; a binary frame header field holds at most 255")
    return raw


def _binary_data(payload: Binary) -> bytes | bytearray | memoryview:
    data = payload.data
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise EncodeError(f"Binary.data must be bytes, got {describe(data)}")
    return data


def _not_a_map(what: str, payload: Any) -> EncodeError:
    return EncodeError(f"a V2 {what} payload must be a dict or a Binary, got {describe(payload)}")


class _Reader:
    """Reads the length-prefixed fields of a binary frame, raising InvalidMessageError."""

    __slots__ = ("data", "kind", "offset", "sizes")

    def __init__(self, data: bytes, kind: str, count: int) -> None:
        header = 1 + count
        if len(data) < header:
            raise InvalidMessageError(f"binary {kind} frame is {len(data)} bytes, shorter than its {header}-byte header")
        self.data = data
        self.kind = kind
        self.sizes = data[1:header]
        need = header + sum(self.sizes)
        if len(data) < need:
            raise InvalidMessageError(
                f"binary {kind} frame is truncated: its header announces {need} bytes "
                f"before the payload, the frame has {len(data)}"
            )
        self.offset = header

    def fields(self, *names: str) -> list[str]:
        out = []
        data, offset = self.data, self.offset
        for name, size in zip(names, self.sizes):
            try:
                out.append(data[offset : offset + size].decode("utf-8"))
            except UnicodeDecodeError:
                raise InvalidMessageError(f"binary {self.kind} frame: {name} is not valid UTF-8") from None
            offset += size
        self.offset = offset
        return out

    def rest(self) -> Binary:
        return Binary(self.data[self.offset :])


def _as_bytes(data: Any) -> bytes:
    if data.__class__ is bytes:
        return data
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    raise InvalidMessageError(f"binary frame data must be bytes, got {type(data).__name__}")


class V2JSONSerializer(SingletonSerializer):
    """JSON arrays for JSON payloads, binary frames for Binary payloads."""

    vsn = "2.0.0"
    _name = "V2"

    def fastlane(self, msg: Broadcast) -> Frame:
        payload = msg.payload
        if payload.__class__ is dict or isinstance(payload, dict):
            return ("text", encode_envelope([None, None, msg.topic, msg.event, payload], payload))
        if isinstance(payload, Binary):
            topic = _header_field(msg.topic, "topic", False)
            event = _header_field(msg.event, "event", False)
            return (
                "binary",
                b"".join(
                    (
                        bytes((BROADCAST, len(topic), len(event))),
                        topic,
                        event,
                        _binary_data(payload),
                    )
                ),
            )
        raise _not_a_map("broadcast", payload)

    def encode(self, msg: Message | Reply) -> Frame:
        cls = msg.__class__
        if type(msg) is Message or isinstance(msg, Message):
            payload = msg.payload
            if payload.__class__ is dict or isinstance(payload, dict):
                envelope = [msg.join_ref, msg.ref, msg.topic, msg.event, payload]
                return ("text", encode_envelope(envelope, payload))
            if isinstance(payload, Binary):
                join_ref = _header_field(msg.join_ref, "join_ref", True)
                topic = _header_field(msg.topic, "topic", False)
                event = _header_field(msg.event, "event", False)
                head = bytes((PUSH, len(join_ref), len(topic), len(event)))
                return ("binary", b"".join((head, join_ref, topic, event, _binary_data(payload))))
            raise _not_a_map("push", payload)
        if cls is Reply or isinstance(msg, Reply):
            payload = msg.payload
            if isinstance(payload, Binary):
                join_ref = _header_field(msg.join_ref, "join_ref", True)
                ref = _header_field(msg.ref, "ref", True)
                topic = _header_field(msg.topic, "topic", False)
                status = _header_field(msg.status, "status", True)
                head = bytes((REPLY, len(join_ref), len(ref), len(topic), len(status)))
                return (
                    "binary",
                    b"".join((head, join_ref, ref, topic, status, _binary_data(payload))),
                )
            wrapper = {"response": payload, "status": msg.status}
            return (
                "text",
                encode_envelope([msg.join_ref, msg.ref, msg.topic, "phx_reply", wrapper], wrapper),
            )
        raise TypeError(f"V2 encodes a Message or a Reply, not {type(msg).__name__}")

    def decode(self, data: str | bytes, opcode: str) -> Message:
        """Decode a client frame: ``opcode`` ``"text"`` (a JSON array) or ``"binary"``."""
        if opcode == "text":
            value = parse(data if data.__class__ is str else as_text(data))
            if value.__class__ is not list or len(value) < 5:
                raise InvalidMessageError(
                    f"V2 expects a JSON array [join_ref, ref, topic, event, payload], got {describe(value)}"
                )
            join_ref, ref, topic, event, payload = value[:5]
            check_fields(topic, event, ref, join_ref)
            return Message(topic, event, payload, ref, join_ref)
        if opcode == "binary":
            raw = _as_bytes(data)
            if not raw:
                raise InvalidMessageError("binary frame is empty")
            kind = raw[0]
            if kind != PUSH:
                if kind in _KIND_NAMES:
                    raise InvalidMessageError(f"binary frame kind {kind} ({_KIND_NAMES[kind]}) is sent by servers, not clients")
                raise InvalidMessageError(f"unknown binary frame kind {kind}")
            reader = _Reader(raw, "push", 4)
            join_ref, ref, topic, event = reader.fields("join_ref", "ref", "topic", "event")
            return Message(topic, event, reader.rest(), ref, join_ref)
        raise InvalidMessageError(f"unknown opcode {opcode!r} (expected 'text' or 'binary')")

    # --- the client's side, for tests and Python clients ---------------------------------

    def client_encode(self, msg: Message) -> Frame:
        """Encode a message as Phoenix's JS client sends it (binary push: kind 0 with ref)."""
        payload = msg.payload
        if isinstance(payload, Binary):
            join_ref = _header_field(msg.join_ref, "join_ref", True)
            ref = _header_field(msg.ref, "ref", True)
            topic = _header_field(msg.topic, "topic", False)
            event = _header_field(msg.event, "event", False)
            head = bytes((PUSH, len(join_ref), len(ref), len(topic), len(event)))
            return ("binary", b"".join((head, join_ref, ref, topic, event, _binary_data(payload))))
        return ("text", encode_json([msg.join_ref, msg.ref, msg.topic, msg.event, payload]))

    def client_decode(self, data: str | bytes, opcode: str) -> Message | Reply | Broadcast:
        """Decode a server frame as Phoenix's JS client does.

        Text: a ``phx_reply`` becomes a Reply, anything else a Message (a fastlane
        broadcast is a Message with null refs). Binary: kind 0 is a Message (ref None),
        1 a Reply, 2 a Broadcast, each with a Binary payload.
        """
        if opcode == "text":
            value = parse(as_text(data))
            if value.__class__ is not list or len(value) < 5:
                raise InvalidMessageError(f"V2 expects a JSON array, got {describe(value)}")
            join_ref, ref, topic, event, payload = value[:5]
            check_fields(topic, event, ref, join_ref)
            if event == "phx_reply":
                if payload.__class__ is not dict or "status" not in payload:
                    raise InvalidMessageError(f"phx_reply payload must hold a status, got {describe(payload)}")
                return Reply(topic, payload["status"], payload.get("response"), ref, join_ref)
            return Message(topic, event, payload, ref, join_ref)
        if opcode != "binary":
            raise InvalidMessageError(f"unknown opcode {opcode!r} (expected 'text' or 'binary')")
        raw = _as_bytes(data)
        if not raw:
            raise InvalidMessageError("binary frame is empty")
        kind = raw[0]
        if kind == PUSH:
            reader = _Reader(raw, "push", 3)
            join_ref, topic, event = reader.fields("join_ref", "topic", "event")
            return Message(topic, event, reader.rest(), None, join_ref)
        if kind == REPLY:
            reader = _Reader(raw, "reply", 4)
            join_ref, ref, topic, status = reader.fields("join_ref", "ref", "topic", "status")
            return Reply(topic, status, reader.rest(), ref, join_ref)
        if kind == BROADCAST:
            reader = _Reader(raw, "broadcast", 2)
            topic, event = reader.fields("topic", "event")
            return Broadcast(topic, event, reader.rest())
        raise InvalidMessageError(f"unknown binary frame kind {kind}")


V2 = V2JSONSerializer()
