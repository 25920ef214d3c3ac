"""The three structs that travel between clients, transports, channels and PubSub.

As Phoenix's ``Phoenix.Socket.Message``, ``Reply`` and ``Broadcast``. A payload is a JSON
object (a dict) or ``Binary(data)`` for V2 binary frames.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Binary", "Broadcast", "InvalidMessageError", "Message", "Reply"]


class InvalidMessageError(ValueError):
    """A frame from a client could not be decoded into a Message."""


@dataclass(frozen=True, slots=True)
class Binary:
    """A binary payload (Phoenix's ``{:binary, data}``), sent as a V2 binary frame."""

    data: bytes


@dataclass(slots=True)
class Message:
    """A message from a client, or a push to one.

    ``join_ref`` identifies the channel join it belongs to; ``ref`` identifies the message
    (a client's reply waits on it); both are strings or None.
    """

    topic: str
    event: str
    payload: Any
    ref: str | None = None
    join_ref: str | None = None


@dataclass(slots=True)
class Reply:
    """A reply to a client's message: sent as event ``phx_reply``."""

    topic: str
    status: str
    payload: Any
    ref: str | None = None
    join_ref: str | None = None


@dataclass(slots=True)
class Broadcast:
    """A message to every subscriber of a topic."""

    topic: str
    event: str
    payload: Any
