"""A phx-serve target for the multi-node tests: ``phx-serve redis_node_app:children --pubsub ...``.

Socket ``/socket`` (``user_id=N`` names it ``user_socket:N``), one channel for ``t:*`` and
``ctl:*`` topics. Subscribers join a ``t:`` topic and get everything broadcast to it as
event ``m``. A ``ctl:`` client drives this node:

``burst`` ``{"topic", "n", "start", "from_self"?}``
    ``n`` broadcasts of ``{"p": NODE, "s": start + i}`` to ``topic`` (``broadcast``, or
    ``broadcast_from`` the channel itself); replies ``{"errors": [[s, reason], ...]}``.
    ``{"local": true}`` uses ``local_broadcast`` instead (it cannot fail).
``say`` ``{"body"}`` (on a ``t:`` topic)
    ``broadcast_from`` the sender's channel: everyone on the topic but the sender.
``direct`` ``{"node", "topic", "payload"}``
    ``direct_broadcast`` to one node; replies ``{"result": "ok" | reason}``.
``stats``
    Replies this PubSub's ``adapter_statistics``.
``disconnect`` ``{"user_id"}``
    Broadcasts ``disconnect`` to ``user_socket:N``: closes that user's sockets on every node.
"""

from __future__ import annotations

from typing import Any

from transport import Channel, Endpoint, SocketHandler, broadcast_from, pubsub
from transport._channel import dispatch
from transport._message import Broadcast
from transport.pubsub import PubSub

PUBSUB = "RedisNodes.PubSub"


def _reason(result: Any) -> Any:
    return "ok" if result == "ok" else repr(result[1])


class NodeChannel(Channel):
    def join(self, topic, payload, socket):
        return ("ok", {"node": pubsub.node_name(PUBSUB)}, socket)

    def handle_in(self, event, payload, socket):
        me = pubsub.node_name(PUBSUB)
        if event == "burst":
            topic, n, start = payload["topic"], payload["n"], payload["start"]
            errors = []
            for s in range(start, start + n):
                message = Broadcast(topic=topic, event="m", payload={"p": me, "s": s})
                if payload.get("local"):
                    result = pubsub.local_broadcast(PUBSUB, topic, message, dispatch)
                else:
                    result = pubsub.broadcast(PUBSUB, topic, message, dispatch)
                if result != "ok":
                    errors.append([s, _reason(result)])
            return ("reply", ("ok", {"errors": errors}), socket)
        if event == "say":
            result = broadcast_from(socket, "said", {"body": payload["body"], "p": me})
            return ("reply", ("ok", {"result": _reason(result)}), socket)
        if event == "direct":
            topic = payload["topic"]
            message = Broadcast(topic=topic, event="m", payload=payload["payload"])
            result = pubsub.direct_broadcast(payload["node"], PUBSUB, topic, message, dispatch)
            return ("reply", ("ok", {"result": _reason(result)}), socket)
        if event == "stats":
            return ("reply", ("ok", pubsub.statistics(PUBSUB)["adapter_statistics"] or {}), socket)
        if event == "disconnect":
            endpoint.broadcast(f"user_socket:{payload['user_id']}", "disconnect", {})
            return ("reply", "ok", socket)
        return ("reply", ("error", {"reason": f"unknown event {event}"}), socket)


class NodeSocket(SocketHandler):
    channels = [("t:*", NodeChannel), ("ctl:*", NodeChannel)]

    def connect(self, params, socket, connect_info):
        return ("ok", socket.assign(user_id=params.get("user_id")))

    def id(self, socket):
        user = socket.assigns.get("user_id")
        return f"user_socket:{user}" if user else None


endpoint = Endpoint(
    "RedisNodes.Endpoint",
    pubsub_server=PUBSUB,
    sockets=[("/socket", NodeSocket, {"websocket": {"timeout": 120_000}})],
)


def children(server: dict) -> list:
    return [PubSub.child_spec(name=PUBSUB), *endpoint.child_specs(server=server)]
