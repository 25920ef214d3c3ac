"""The demo as a proxy that blocks WebSockets leaves it: ``phx-serve demo_ws_blocked:children``.

The same page, channels, presence and numbers as ``transport.demo``, but ``/socket`` is
mounted with ``websocket=False``: a WebSocket handshake to ``/socket/websocket`` gets 404,
as from a proxy that refuses upgrades, and only ``/socket/longpoll`` answers. The page
must fall back to LongPoll by itself.
"""

from __future__ import annotations

from transport import Endpoint, demo
from transport.pubsub import PubSub

endpoint = Endpoint(
    "Demo.Endpoint",
    pubsub_server=demo.PUBSUB,
    http_app=demo.StaticApp(),
    sockets=[("/socket", demo.DemoSocket, {"websocket": False, "longpoll": True})],
)


def children(server: dict) -> list:
    return [
        PubSub.child_spec(name=demo.PUBSUB),
        demo.presence.child_spec(),
        *endpoint.child_specs(server=server),
        demo.NumbersPublisher.child_spec((endpoint, demo.NUMBERS_INTERVAL_MS)),
    ]
