"""Drive a socket without a network: frames in, frames out, in-process.

    client = SocketClient(endpoint, UserSocket, params={"vsn": "2.0.0"})
    client.send_json([ "1", "1", "room:lobby", "phx_join", {}])
    assert client.receive_json() == ["1", "1", "room:lobby", "phx_reply", {"response": {}, "status": "ok"}]
    client.close()

The socket runs in its own transport process, exactly as behind a WebSocket; the client
is the calling process, which receives every frame the socket writes.
"""

from __future__ import annotations

from typing import Any

import ujson

import actors
from actors import Pid

from ._socket import connect
from ._transport import FRAME, REMOTE_CLOSED, serve

__all__ = ["ConnectRefused", "SocketClient"]

_OUT = "$memory_frame"
_CLOSED = "$memory_closed"


class ConnectRefused(Exception):
    """The socket handler's connect refused the connection; ``result`` is what it returned."""

    def __init__(self, result: Any) -> None:
        super().__init__(result)
        self.result = result


class _MemoryIO:
    """Frames go to the client process, tagged so several clients can share one process."""

    __slots__ = ("client", "tag")

    def __init__(self, client: Pid, tag: Any) -> None:
        self.client = client
        self.tag = tag

    def send(self, opcode: str, data: Any) -> None:
        actors.send(self.client, (_OUT, self.tag, opcode, data))

    def close(self, code: int, reason: str = "") -> None:
        actors.send(self.client, (_CLOSED, self.tag, code, reason))

    def info(self) -> dict[str, Any]:
        return {"transport": "memory", "peer": None, "path": None}


class SocketClient:
    """An in-memory connection to a socket handler mounted on ``endpoint``."""

    def __init__(
        self,
        endpoint: Any,
        handler: Any,
        params: dict | None = None,
        connect_info: dict | None = None,
        serializers: list | None = None,
    ) -> None:
        from .serializers import DEFAULT_SERIALIZERS

        result = connect(
            handler,
            endpoint=endpoint,
            transport="memory",
            params=dict(params or {}),
            connect_info=dict(connect_info or {}),
            serializers=serializers or DEFAULT_SERIALIZERS,
        )
        if not (isinstance(result, tuple) and result[0] == "ok"):
            raise ConnectRefused(result)
        self.connection = result[1]
        self.serializer = self.connection.socket.serializer
        self._tag = actors.make_ref()
        self.pid = actors.spawn(serve, self.connection, _MemoryIO(actors.self(), self._tag))
        self.closed: tuple | None = None

    def _mine(self, m: Any) -> bool:
        return m.__class__ is tuple and len(m) == 4 and m[1] is self._tag and (m[0] is _OUT or m[0] is _CLOSED)

    # -- sending -------------------------------------------------------------------------

    def send_frame(self, opcode: str, data: Any) -> None:
        """Deliver a raw frame to the socket, as a transport would."""
        actors.send(self.pid, (FRAME, opcode, data))

    def send_text(self, text: str) -> None:
        """A text frame."""
        self.send_frame("text", text)

    def send_json(self, value: Any) -> None:
        """A text frame holding ``value`` as JSON."""
        self.send_frame("text", ujson.dumps(value))

    def close(self) -> None:
        """The client goes away (a remote close)."""
        actors.send(self.pid, (REMOTE_CLOSED, 1000))

    # -- receiving -----------------------------------------------------------------------

    def receive_frame(self, timeout: float = 1.0) -> tuple[str, Any]:
        """The next frame the socket wrote: ``(opcode, data)``; raises if it closed instead."""
        msg = actors.receive(self._mine, timeout)
        if msg[0] is _CLOSED:
            self.closed = (msg[2], msg[3])
            raise ConnectionError(f"socket closed with code {msg[2]}")
        return (msg[2], msg[3])

    def receive_json(self, timeout: float = 1.0) -> Any:
        """The next text frame, decoded."""
        opcode, data = self.receive_frame(timeout)
        if opcode != "text":
            raise AssertionError(f"expected a text frame, got {opcode}: {data!r}")
        return ujson.loads(data)

    def refute_frame(self, timeout: float = 0.05) -> None:
        """Assert that no frame arrives within ``timeout`` seconds."""
        msg = actors.receive(self._mine, timeout, default=None)
        if msg is not None:
            raise AssertionError(f"unexpected frame: {msg[2:]!r}")

    def receive_close(self, timeout: float = 1.0) -> tuple[int, str]:
        """Wait until the socket closes the connection: ``(code, reason)``; frames before it are skipped."""
        msg = actors.receive(lambda m: self._mine(m) and m[0] is _CLOSED, timeout)
        self.closed = (msg[2], msg[3])
        return self.closed
