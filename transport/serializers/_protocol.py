"""The serializer contract shared by V1, V2 and any custom serializer."""

from __future__ import annotations

from typing import Any, Literal, Protocol, Self, runtime_checkable

from .._message import Broadcast, Message, Reply

__all__ = ["Frame", "Serializer", "SingletonSerializer"]

#: What a transport sends or receives: ``("text", str)`` or ``("binary", bytes)``.
Frame = tuple[Literal["text", "binary"], str | bytes]


@runtime_checkable
class Serializer(Protocol):
    """Turns messages into frames and client frames into messages (Phoenix's behaviour).

    Instances are used as dict keys (the PubSub fastlane encodes a broadcast once per
    serializer), so a serializer must hash by identity and should be a singleton.
    """

    vsn: str

    def fastlane(self, msg: Broadcast) -> Frame:
        """Encode a broadcast for every subscriber using this serializer."""
        ...

    def encode(self, msg: Message | Reply) -> Frame:
        """Encode a push or a reply for one client."""
        ...

    def decode(self, data: str | bytes, opcode: str) -> Message:
        """Decode a client frame; raise InvalidMessageError if it is not a message."""
        ...


class SingletonSerializer:
    """Base for serializers with one instance: constructing, copying or unpickling gives it."""

    _instance: SingletonSerializer | None = None
    _name: str = ""  # module-level name of the instance, for pickling

    def __new__(cls) -> Self:
        instance = cls.__dict__.get("_instance")
        if instance is None:
            instance = super().__new__(cls)
            cls._instance = instance
        return instance

    def __copy__(self) -> Self:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Self:
        return self

    def __reduce__(self) -> str:
        return self._name

    def __repr__(self) -> str:
        return f"<{type(self).__name__} vsn={self.vsn}>"  # type: ignore[attr-defined]
