"""Type aliases for what sockets' and channels' callbacks return (Phoenix's callback specs).

Annotate a channel with them so that mypy checks the tuples::

    from transport import Channel, HandleInResult, JoinResult, Socket

    class RoomChannel(Channel):
        def join(self, topic: str, payload: Any, socket: Socket) -> JoinResult:
            return ("ok", socket)

        def handle_in(self, event: str, payload: Any, socket: Socket) -> HandleInResult:
            return ("reply", ("ok", {}), socket)

A status is any str (``"ok"`` and ``"error"`` by convention), a reason any term (``"normal"``
and ``"shutdown"`` stop a channel gracefully), a timeout milliseconds, ``"hibernate"`` or
``"infinity"`` as for a GenServer.
"""

from __future__ import annotations

from typing import Any, Literal, TypeAlias

from ._socket import Socket

__all__ = [
    "ConnectResult",
    "HandleInResult",
    "HandleInfoResult",
    "HandleOutResult",
    "JoinResult",
    "ReplyStatus",
]

#: What a channel replies with: ``status`` or ``(status, response)`` (``reply()``, and the
#: ``("reply", ...)`` result of ``handle_in``).
ReplyStatus: TypeAlias = str | tuple[str, Any]

_Timeout: TypeAlias = int | Literal["hibernate", "infinity"]

#: ``SocketHandler.connect``: ``("ok", socket)``, ``"error"`` or ``("error", reason)``.
ConnectResult: TypeAlias = tuple[Literal["ok"], Socket] | Literal["error"] | tuple[Literal["error"], Any]

#: ``Channel.join``: ``("ok", socket)``, ``("ok", reply, socket)`` or ``("error", reply)``.
JoinResult: TypeAlias = tuple[Literal["ok"], Socket] | tuple[Literal["ok"], Any, Socket] | tuple[Literal["error"], Any]

#: ``Channel.handle_info``, ``handle_cast`` and ``handle_out``: carry on, or stop.
HandleInfoResult: TypeAlias = (
    tuple[Literal["noreply"], Socket] | tuple[Literal["noreply"], Socket, _Timeout] | tuple[Literal["stop"], Any, Socket]
)
HandleOutResult: TypeAlias = HandleInfoResult

#: ``Channel.handle_in``: as :data:`HandleInfoResult`, or reply to the message (and maybe stop).
HandleInResult: TypeAlias = (
    HandleInfoResult | tuple[Literal["reply"], ReplyStatus, Socket] | tuple[Literal["stop"], Any, ReplyStatus, Socket]
)
