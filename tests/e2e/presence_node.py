"""One node of the multi-process presence test: ``phx-serve presence_node:children``.

Configured by the environment: ``PRESENCE_REDIS_URL`` (the Redis every node shares),
``PRESENCE_NODE_NAME``, ``PRESENCE_CHANNEL`` (the Redis channel, one per test) and the
tracker periods ``PRESENCE_BROADCAST_MS`` / ``PRESENCE_DOWN_MS``. The tree is the one
docs/presence.md recommends: PubSub (Redis adapter), Presence, endpoint. A channel on
``room:*`` tracks ``{"user": ...}`` after its join, pushes ``presence_state``, and answers
``list`` with the Presence's list as this node sees it.
"""

from __future__ import annotations

import os

import actors
from transport import Channel, Endpoint, SocketHandler, push
from transport.presence import Presence
from transport.pubsub import PubSub, RedisAdapter

PUBSUB = "PresenceNode.PubSub"

presence = Presence(
    "PresenceNode.Presence",
    pubsub_server=PUBSUB,
    broadcast_period=int(os.environ.get("PRESENCE_BROADCAST_MS", "1500")),
    down_period=int(os.environ.get("PRESENCE_DOWN_MS", "30000")),
    log_level="info",
)


class RoomChannel(Channel):
    def join(self, topic, payload, socket):
        actors.send(actors.self(), "after_join")
        return ("ok", socket.assign(user=payload["user"]))

    def handle_info(self, msg, socket):
        if msg == "after_join":
            presence.track(socket, socket.assigns["user"], {"node": os.environ.get("PRESENCE_NODE_NAME")})
            push(socket, "presence_state", presence.list(socket))
            return ("noreply", socket)
        return super().handle_info(msg, socket)

    def handle_in(self, event, payload, socket):
        if event == "list":
            return ("reply", ("ok", presence.list(socket)), socket)
        return ("reply", ("error", {"reason": "unknown event"}), socket)


class NodeSocket(SocketHandler):
    channels = [("room:*", RoomChannel)]

    def connect(self, params, socket, connect_info):
        return ("ok", socket)

    def id(self, socket):
        return None


endpoint = Endpoint("PresenceNode.Endpoint", pubsub_server=PUBSUB, sockets=[("/socket", NodeSocket)])


def children(server: dict) -> list:
    """PubSub on Redis, then Presence, then the endpoint with its listener."""
    return [
        PubSub.child_spec(
            name=PUBSUB,
            adapter=RedisAdapter,
            url=os.environ["PRESENCE_REDIS_URL"],
            node_name=os.environ["PRESENCE_NODE_NAME"],
            channel=os.environ.get("PRESENCE_CHANNEL") or None,
            heartbeat_interval=0.2,
            node_timeout=1.0,
        ),
        presence.child_spec(),
        *endpoint.child_specs(server=server),
    ]
