"""The server the Python client's end-to-end tests talk to (tests/e2e/test_client_*.py).

    python tests/e2e/client_app.py --port 0     # prints "listening on http://HOST:PORT"

``/socket`` (WebSocket and LongPoll, any origin): ``reject=true`` refuses the connect;
``token`` must then be a Phoenix.Token (salt ``"user socket"``) of the user id, else the
connect is refused; without it the socket is anonymous. ``/wsblocked``: the WebSocket allows only
origin ``//example.com`` (403 for any other), LongPoll any origin, so a client sending
another origin falls back. Channel ``room:*`` (:class:`EchoChannel`):
``echo`` replies with the payload, ``shout`` broadcasts it as ``shouted``, ``boom``
crashes the channel, ``error`` replies error, ``bin`` (a binary payload) replies with it,
``presence`` pushes ``presence_diff`` with the payload; a join with ``{"refuse": true}``
is refused, and every join pushes ``presence_state`` ``{"<user>": ...}`` and ``whoami``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import actors  # noqa: E402
from transport import Binary, Channel, Endpoint, SocketHandler, broadcast, push, token  # noqa: E402
from transport.pubsub import PubSub  # noqa: E402

PUBSUB = "ClientTest.PubSub"
SECRET_KEY_BASE = "s3cr3t-key-base-" * 4


class EchoChannel(Channel):
    def join(self, topic, payload, socket):
        if payload.get("refuse"):
            return ("error", {"reason": "refused"})
        actors.send(actors.self(), "after_join")
        return ("ok", {"topic": topic}, socket)

    def handle_info(self, msg, socket):
        if msg == "after_join":
            user = socket.assigns.get("user_id") or "anon"
            push(socket, "presence_state", {user: {"metas": [{"phx_ref": "r-" + user}]}})
            push(socket, "whoami", {"user_id": socket.assigns.get("user_id"), "transport": socket.transport})
            return ("noreply", socket)
        return super().handle_info(msg, socket)

    def handle_in(self, event, payload, socket):
        if event == "echo":
            return ("reply", ("ok", payload), socket)
        if event == "error":
            return ("reply", ("error", payload), socket)
        if event == "shout":
            broadcast(socket, "shouted", payload)
            return ("reply", "ok", socket)
        if event == "bin":
            return ("reply", ("ok", Binary(payload.data[::-1])), socket)
        if event == "push_bin":
            push(socket, "binpush", Binary(b"\x00\x01\x02"))
            return ("noreply", socket)
        if event == "presence":
            push(socket, "presence_diff", payload)
            return ("noreply", socket)
        if event == "boom":
            raise RuntimeError("boom, as asked")
        return ("noreply", socket)


class ClientTestSocket(SocketHandler):
    log = False
    channels = [("room:*", EchoChannel)]

    def connect(self, params, socket, connect_info):
        if params.get("reject") == "true":
            return "error"
        if "token" in params:
            status, user_id = token.verify(socket.endpoint, "user socket", params["token"], max_age=3600)
            if status != "ok":
                return "error"
            return ("ok", socket.assign(user_id=user_id))
        return ("ok", socket)


_LONGPOLL = {"window_ms": 1000, "check_origin": False}
endpoint = Endpoint(
    "ClientTest.Endpoint",
    pubsub_server=PUBSUB,
    secret_key_base=SECRET_KEY_BASE,
    sockets=[
        ("/socket", ClientTestSocket, {"websocket": {"check_origin": False}, "longpoll": _LONGPOLL}),
        ("/wsblocked", ClientTestSocket, {"websocket": {"check_origin": ["//example.com"]}, "longpoll": _LONGPOLL}),
    ],
)

children = [PubSub.child_spec(name=PUBSUB), *endpoint.child_specs()]


if __name__ == "__main__":
    from gevent import monkey

    monkey.patch_all()
    from transport import http

    raise SystemExit(http.main(endpoint, children))
