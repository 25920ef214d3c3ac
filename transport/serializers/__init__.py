"""Phoenix's socket serializers: V1 (JSON objects) and V2 (JSON arrays and binary frames).

A frame is ``(opcode, data)``: ``("text", str)`` or ``("binary", bytes)``. ``V1`` and
``V2`` are the only instances of their classes (constructing, copying or unpickling one
gives the same object), so they can key the PubSub fastlane's per-serializer cache.
``negotiate`` picks one from a socket's ``[(serializer, requirement)]`` option by the
client's ``vsn`` parameter, with Elixir's ``Version`` rules.
"""

from __future__ import annotations

from ._json import EncodeError, decode_json, encode_json
from ._protocol import Frame, Serializer
from ._v1 import V1, V1JSONSerializer
from ._v2 import V2, V2JSONSerializer
from ._version import (
    Requirement,
    Version,
    negotiate,
    parse_requirement,
    parse_version,
    validate_serializers,
    version_match,
)

__all__ = [
    "DEFAULT_SERIALIZERS",
    "V1",
    "V2",
    "EncodeError",
    "Frame",
    "Requirement",
    "Serializer",
    "V1JSONSerializer",
    "V2JSONSerializer",
    "Version",
    "decode_json",
    "encode_json",
    "negotiate",
    "parse_requirement",
    "parse_version",
    "validate_serializers",
    "version_match",
]

#: Phoenix's default ``serializer`` option for a socket.
DEFAULT_SERIALIZERS = validate_serializers([(V1, "~> 1.0.0"), (V2, "~> 2.0.0")])
