"""A phx-serve target for LongPoll across nodes: ``phx-serve longpoll_node_app:children --pubsub ...``.

tests/e2e/redis_node_app.py's socket and channels (``t:*`` topics, ``ctl:*`` control), mounted
with LongPoll as well as WebSocket, with a short window so that polls come and go often. A
``t:`` channel also answers a binary push ``bytes`` with the bytes it got (``{"hex"}``), so a
test sees them arrive intact whichever node the POST reached.
"""

from __future__ import annotations

from redis_node_app import PUBSUB, NodeChannel, NodeSocket

from transport import Endpoint
from transport._message import Binary
from transport.pubsub import PubSub

WINDOW_MS = 3_000


class BytesChannel(NodeChannel):
    def handle_in(self, event, payload, socket):
        if event == "bytes":
            if not isinstance(payload, Binary):
                return ("reply", ("error", {"reason": f"not a binary payload: {type(payload).__name__}"}), socket)
            return ("reply", ("ok", {"hex": bytes(payload.data).hex()}), socket)
        return super().handle_in(event, payload, socket)


class LongPollNodeSocket(NodeSocket):
    channels = [("t:*", BytesChannel), ("ctl:*", NodeChannel)]


endpoint = Endpoint(
    "LongPollNodes.Endpoint",
    pubsub_server=PUBSUB,
    sockets=[("/socket", LongPollNodeSocket, {"websocket": {"timeout": 120_000}, "longpoll": {"window_ms": WINDOW_MS}})],
)


def children(server: dict) -> list:
    return [PubSub.child_spec(name=PUBSUB), *endpoint.child_specs(server=server)]
