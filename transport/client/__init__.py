"""A Python client for Phoenix channels: phoenix.js's Socket, Channel, Push and Presence.

    from transport.client import AsyncSocket

    socket = AsyncSocket("ws://127.0.0.1:4000/socket", params={"token": token})
    await socket.connect()
    channel = socket.channel("room:lobby", {"name": "ada"})
    await channel.join()
    reply = await channel.push("new_msg", {"body": "hi"})
    async for message in channel:
        ...

:class:`Socket` is the same API for threads (and gevent greenlets), blocking. Both drive
one sans-I/O core (:mod:`transport.client._core`) that speaks Phoenix's protocol through
the server's own serializers. See docs/client.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._core import (
    ChannelCore,
    Push,
    SocketCore,
    default_reconnect_after,
    default_rejoin_after,
    endpoint_url,
)
from ._errors import (
    BufferFull,
    ChannelStateError,
    ClientError,
    ConnectError,
    JoinError,
    JoinTimeout,
    PushError,
    PushTimeout,
)
from ._presence import Presence, PresenceSync, list_presences, sync_diff, sync_state

if TYPE_CHECKING:  # imported lazily at run time by __getattr__ below; typed precisely here
    from ._asyncio import AsyncChannel, AsyncSocket, AsyncSubscription
    from ._blocking import Channel, Socket, Subscription

__all__ = [
    "AsyncChannel",
    "AsyncSocket",
    "AsyncSubscription",
    "BufferFull",
    "Channel",
    "ChannelCore",
    "ChannelStateError",
    "ClientError",
    "ConnectError",
    "JoinError",
    "JoinTimeout",
    "Presence",
    "PresenceSync",
    "Push",
    "PushError",
    "PushTimeout",
    "Socket",
    "SocketCore",
    "Subscription",
    "default_reconnect_after",
    "default_rejoin_after",
    "endpoint_url",
    "list_presences",
    "sync_diff",
    "sync_state",
]


def __getattr__(name: str) -> Any:
    # The drivers import websockets (the ``greenphx[client]`` extra): only when used.
    if name in ("AsyncSocket", "AsyncChannel", "AsyncSubscription"):
        from . import _asyncio

        return getattr(_asyncio, name)
    if name in ("Socket", "Channel", "Subscription"):
        from . import _blocking

        return getattr(_blocking, name)
    raise AttributeError(f"module 'transport.client' has no attribute {name!r}")
