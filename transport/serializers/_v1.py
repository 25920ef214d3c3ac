"""Phoenix's V1 JSON serializer (``vsn=1.x``): every frame is a JSON object.

Server to client, a push is ``{"event","payload","ref","topic"}`` (keys in that order, and
never ``join_ref``: V1 clients do not know it), a reply is the same with event
``"phx_reply"`` and payload ``{"response": ..., "status": ...}``, and a fastlane broadcast
has ``"ref": null``. V1 has no binary payloads: a ``Binary`` is an EncodeError. A push's
payload may be any JSON value (Phoenix's V1 does not insist on a map).

Client to server, the object must hold ``topic``, ``event``, ``payload`` and ``ref``
(``join_ref`` is optional). As in Phoenix, the opcode is ignored: a binary frame holding the
same JSON decodes the same way. Beyond Phoenix, which passes whatever JSON it finds,
``topic`` and ``event`` must be strings and ``ref``/``join_ref`` strings or null; the
payload may be any JSON value.
"""

from __future__ import annotations

from typing import Any

from .._message import Broadcast, InvalidMessageError, Message, Reply
from ._common import as_text, check_fields, describe, parse
from ._json import encode_envelope, encode_json
from ._protocol import Frame, SingletonSerializer

__all__ = ["V1", "V1JSONSerializer"]

_REQUIRED = ("topic", "event", "payload", "ref")


class V1JSONSerializer(SingletonSerializer):
    """JSON objects, no join_ref on the way out, no binary frames."""

    vsn = "1.0.0"
    _name = "V1"

    def fastlane(self, msg: Broadcast) -> Frame:
        data = {"event": msg.event, "payload": msg.payload, "ref": None, "topic": msg.topic}
        return ("text", encode_envelope(data, data))

    def encode(self, msg: Message | Reply) -> Frame:
        cls = msg.__class__
        if type(msg) is Message or isinstance(msg, Message):
            data = {
                "event": msg.event,
                "payload": msg.payload,
                "ref": msg.ref,
                "topic": msg.topic,
            }
        elif cls is Reply or isinstance(msg, Reply):
            data = {
                "event": "phx_reply",
                "payload": {"response": msg.payload, "status": msg.status},
                "ref": msg.ref,
                "topic": msg.topic,
            }
        else:
            raise TypeError(f"V1 encodes a Message or a Reply, not {type(msg).__name__}")
        return ("text", encode_envelope(data, data))

    def decode(self, data: str | bytes, opcode: str) -> Message:
        """Decode a client's JSON object; ``opcode`` is ignored, as Phoenix ignores it."""
        value = parse(as_text(data))
        if value.__class__ is not dict:
            raise InvalidMessageError(f"V1 expects a JSON object with topic, event, payload and ref, got {describe(value)}")
        for key in _REQUIRED:
            if key not in value:
                raise InvalidMessageError(f"V1 message is missing the key {key!r}")
        topic, event, ref = value["topic"], value["event"], value["ref"]
        join_ref = value.get("join_ref")
        check_fields(topic, event, ref, join_ref)
        return Message(topic, event, value["payload"], ref, join_ref)

    # --- the client's side, for tests and Python clients ---------------------------------

    def client_encode(self, msg: Message) -> Frame:
        """Encode a client's message as a V1 client sends it (join_ref only when set)."""
        data: dict[str, Any] = {"event": msg.event}
        if msg.join_ref is not None:
            data["join_ref"] = msg.join_ref
        data.update(payload=msg.payload, ref=msg.ref, topic=msg.topic)
        return ("text", encode_json(data))

    def client_decode(self, data: str | bytes, opcode: str = "text") -> Message | Reply:
        """Decode a server frame: a ``phx_reply`` becomes a Reply, anything else a Message."""
        value = parse(as_text(data))
        if value.__class__ is not dict:
            raise InvalidMessageError(f"V1 expects a JSON object, got {describe(value)}")
        for key in _REQUIRED:
            if key not in value:
                raise InvalidMessageError(f"V1 message is missing the key {key!r}")
        topic, event, ref, payload = value["topic"], value["event"], value["ref"], value["payload"]
        check_fields(topic, event, ref, None)
        if event == "phx_reply":
            if payload.__class__ is not dict or "status" not in payload:
                raise InvalidMessageError(f"phx_reply payload must hold a status, got {describe(payload)}")
            return Reply(topic, payload["status"], payload.get("response"), ref, None)
        return Message(topic, event, payload, ref, None)


V1 = V1JSONSerializer()
