"""A fake clock and a fake server for the client's sans-I/O core: frames in, frames out."""

from __future__ import annotations

from typing import Any

from transport._message import Message, Reply
from transport.client._core import Close, Open, Send, SocketCore
from transport.serializers import V2


class Harness:
    """Drives a SocketCore: ``sent`` holds the messages the server got, decoded."""

    def __init__(self, serializer=V2, **opts: Any) -> None:
        self.serializer = serializer
        self.core = SocketCore(serializer=serializer, **opts)
        self.now = 100.0
        self.sent: list[Message] = []
        self.opens: list[int] = []
        self.closes: list[Close] = []
        self.events: list[Any] = []

    def drain(self) -> None:
        for cmd in self.core.commands():
            if isinstance(cmd, Send):
                opcode, data = cmd.frame
                self.sent.append(self.serializer.decode(data, opcode))
            elif isinstance(cmd, Open):
                self.opens.append(cmd.conn)
            elif isinstance(cmd, Close):
                self.closes.append(cmd)
        self.events.extend(self.core.events_received())

    def take_sent(self) -> list[Message]:
        self.drain()
        out, self.sent = self.sent, []
        return out

    def take_events(self, kind: type | None = None) -> list[Any]:
        self.drain()
        out, self.events = self.events, []
        return [e for e in out if kind is None or isinstance(e, kind)]

    def connect(self) -> int:
        """connect() and open the connection the core asks for."""
        self.core.connect(self.now)
        self.drain()
        conn = self.opens[-1]
        self.core.transport_opened(conn, self.now)
        self.drain()
        return conn

    def open_pending(self) -> int:
        self.drain()
        conn = self.opens[-1]
        self.core.transport_opened(conn, self.now)
        self.drain()
        return conn

    def close(self, code: int | None = 1006, reason: str = "", error: Any = None) -> None:
        self.core.transport_closed(self.core.conn, self.now, code, reason, error)
        self.drain()

    def tick(self, seconds: float) -> None:
        self.now += seconds
        self.core.advance(self.now)
        self.drain()

    def server(self, msg: Message | Reply) -> None:
        """The server sends ``msg`` (encoded as the server's serializer would)."""
        opcode, data = self.serializer.encode(msg)
        self.core.receive_frame(self.core.conn, opcode, data, self.now)
        self.drain()

    def reply(self, to: Message, status: str = "ok", response: Any = None) -> None:
        self.server(Reply(to.topic, status, {} if response is None else response, to.ref, to.join_ref))
