"""The WebSocket layer's exceptions (the tree is listed in the package docstring)."""

from __future__ import annotations

__all__ = ["ConnectionClosed", "MessageTooBig", "ProtocolError", "WebSocketError", "WriteTimeout"]


class WebSocketError(Exception):
    """Base of every error this package raises.

    Deliberately not an ``OSError`` (gevent-websocket's ``WebSocketError`` is one, so code
    catching socket errors swallows its protocol errors and maps them to the wrong close code).
    """


class ConnectionClosed(WebSocketError):
    """A frame was sent on a connection that is closing or closed (nothing was written)."""


class WriteTimeout(WebSocketError):
    """A send did not finish within ``write_timeout`` seconds; the connection was aborted."""


class ProtocolError(WebSocketError):
    """The peer broke RFC 6455; ``code`` is the close code the connection is failed with.

    1002 for a framing error, 1007 for invalid UTF-8, 1009 for a message over the size limit
    (:class:`MessageTooBig`). ``reason`` is the short text sent in the close frame.
    """

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(code, reason)
        self.code = code
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.code} {self.reason}".rstrip()


class MessageTooBig(ProtocolError):
    """A frame header declared a message larger than ``max_message_size`` (close code 1009)."""

    def __init__(self, reason: str = "message too big") -> None:
        super().__init__(1009, reason)

    def __reduce__(self) -> tuple[type[MessageTooBig], tuple[str]]:
        return (type(self), (self.reason,))
