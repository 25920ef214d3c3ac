"""The client's exceptions, one tree (as websockets' ``exceptions.py``)::

ClientError
├── ConnectError        the socket could not connect (refused, unreachable)
├── JoinError           the server answered a join with an error
├── PushError           the server answered a push with an error
├── PushTimeout         no reply within the push's timeout (also a TimeoutError)
│   └── JoinTimeout     ...for a join
├── BufferFull          too many pushes waiting for a join
└── ChannelStateError   join twice, push before join, push on a closed channel
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "BufferFull",
    "ChannelStateError",
    "ClientError",
    "ConnectError",
    "JoinError",
    "JoinTimeout",
    "PushError",
    "PushTimeout",
]


class ClientError(Exception):
    """Base class of every error the Phoenix client raises."""


class ConnectError(ClientError):
    """The socket could not connect; ``status`` is the HTTP status when the server refused."""

    def __init__(self, message: str, status: int | None = None, body: bytes = b"") -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class PushError(ClientError):
    """The server answered a push with a status other than ``ok``."""

    def __init__(self, topic: str, event: str, status: str, response: Any) -> None:
        super().__init__(f"{topic} {event}: {status} {response!r}")
        self.topic = topic
        self.event = event
        self.status = status
        self.response = response


class JoinError(PushError):
    """The server refused a join (``response`` is its reason, e.g. ``{"reason": ...}``)."""


class PushTimeout(ClientError, TimeoutError):
    """No reply to a push within its timeout."""

    def __init__(self, topic: str, event: str, timeout: float) -> None:
        super().__init__(f"{topic} {event}: no reply within {timeout:g} s")
        self.topic = topic
        self.event = event
        self.timeout = timeout


class JoinTimeout(PushTimeout):
    """No reply to a join within its timeout."""


class BufferFull(ClientError):
    """A channel holds ``max_buffered_pushes`` pushes waiting for its join already."""


class ChannelStateError(ClientError):
    """A call the channel's state does not allow (join twice, push before join...)."""
