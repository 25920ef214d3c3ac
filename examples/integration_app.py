"""The application of Phoenix's WebSocket integration tests, served over real sockets.

Run it from the repository root::

    python examples/integration_app.py --port 0      # prints "listening on http://HOST:PORT"

and connect a Phoenix client to ``ws://HOST:PORT/ws/websocket?vsn=2.0.0``.
``tests/e2e/test_websocket_channels.py`` starts it as a subprocess and drives it with
V1 and V2 clients.

What is mounted (every mount: origins ``//example.com`` only, 200 ms idle timeout):

``/ws``, ``/ws/admin``
    :class:`UserSocket`: ``reject=true`` refuses the connect (403), ``ratelimit=true``
    refuses with ``('error', 'rate_limit')``, which :func:`handle_error` turns into a 429;
    ``user_id=N`` names the socket ``user_sockets:N``. Channels ``room:*``
    (:class:`RoomChannel`) and ``custom:*`` (:class:`CustomChannel`).
``/ws/limited``
    :class:`LimitedUserSocket`: at most :attr:`LimitedUserSocket.max_channels_per_transport`
    channels per connection.
``/ws/connect_info``, ``/ws/connect_info_custom``
    :class:`UserSocketConnectInfo` (connects are not logged): its channels push the
    connection's ``connect_info`` back in the ``joined`` push, which includes the cookie
    session (``_hello_key``) when the ``_csrf_token`` query parameter is valid for it.
``GET /``
    :func:`session_page`: a session cookie holding ``from_session`` and, as the body, a
    CSRF token for it.

:data:`longpoll_endpoint` (Phoenix's long_poll_channels_test.exs endpoint) listens on a
second port, printed as a second ``listening on http://HOST:PORT (Integration.LongPollEndpoint)``
line: LongPoll only at ``/ws``, ``/ws/admin``, ``/ws/connect_info`` (window and PubSub
timeout 200 ms, origins ``//example.com``), ``/ws/slow`` (:class:`SlowSocket`: a join
slower than the window), and ``/js``, ``/js_wsblocked`` for the official client (any
origin; on the latter the WebSocket refuses browsers, so phoenix.js falls back).

Test support, not part of Phoenix's app: ``RoomChannel`` answers ``broadcast_disconnect``
(``{"user_id": N}``) by broadcasting ``disconnect`` to ``user_sockets:N`` (what
``Endpoint.broadcast`` from a test does in Phoenix's suite), and a join with
``{"report_terminate": true}`` makes the channel broadcast ``channel_terminated``
(``{"reason": ...}``) to its topic when it stops, so another client of the topic can
watch it go (Phoenix's test monitors the channel process instead).
"""

from __future__ import annotations

from typing import Any

import actors
from transport import (
    Binary,
    Channel,
    Endpoint,
    Message,
    SocketHandler,
    broadcast,
    broadcast_or_raise,
    push,
)
from transport.pubsub import PubSub
from transport.session import csrf_token, session_option

__all__ = [
    "CustomChannel",
    "LimitedUserSocket",
    "RoomChannel",
    "UserSocket",
    "UserSocketConnectInfo",
    "children",
    "endpoint",
    "longpoll_endpoint",
    "handle_error",
    "session_page",
]

PUBSUB = "Integration.PubSub"


def _jsonable(term: Any) -> Any:
    """An exit reason as JSON: tuples become lists, strings stay, anything else its repr."""
    if isinstance(term, (tuple, list)):
        return [_jsonable(t) for t in term]
    if term is None or isinstance(term, (str, int, float, bool)):
        return term
    return repr(term)


class RoomChannel(Channel):
    intercept = ["new_msg"]

    def join(self, topic, payload, socket):
        # push/broadcast need a joined socket: do them once the join has answered.
        actors.send(actors.self(), ("after_join", payload))
        if payload.get("report_terminate"):
            socket.private["report_terminate"] = True  # test support, see the module doc
        return ("ok", socket)

    def handle_info(self, msg, socket):
        if isinstance(msg, tuple) and len(msg) == 2 and msg[0] == "after_join":
            broadcast(socket, "user_entered", {"user": msg[1].get("user")})
            push(socket, "joined", {"status": "connected", **socket.assigns})
            return ("noreply", socket)
        return super().handle_info(msg, socket)

    def handle_in(self, event, payload, socket):
        if event == "new_msg":
            broadcast_or_raise(socket, "new_msg", payload)
            return ("reply", "ok", socket)
        if event == "boom":
            raise RuntimeError("boom")
        if event == "broadcast_disconnect":  # test support, see the module doc
            socket.endpoint.broadcast(f"user_sockets:{payload['user_id']}", "disconnect", {})
            return ("reply", "ok", socket)
        if event == "binary_size":  # test support: a binary push, answered in JSON
            data = payload.data if isinstance(payload, Binary) else b""
            return ("reply", ("ok", {"size": len(data), "sum": sum(data)}), socket)
        raise ValueError(f"RoomChannel does not handle {event!r}")

    def handle_out(self, event, payload, socket):
        # Only "new_msg" is intercepted: tell the client which transport carried it.
        push(socket, event, {**payload, "transport": socket.transport})
        return ("noreply", socket)

    def terminate(self, reason, socket):
        push(socket, "you_left", {"message": "bye!"})
        if socket.private.get("report_terminate"):  # test support, see the module doc
            socket.endpoint.broadcast(socket.topic, "channel_terminated", {"reason": _jsonable(reason)})


class CustomChannel:
    """A channel that is not a :class:`Channel`: a bare process speaking the join protocol.

    The join payload's ``action`` decides: ``"ok"`` joins (then a ``close`` event stops it
    gracefully, which the client sees as ``phx_close``), ``"ignore"`` refuses the join
    with ``{"action": "ignore"}``, anything else crashes before answering
    (``join crashed``).
    """

    @classmethod
    def child_spec(cls, arg):
        return {"id": cls, "start": (cls._start_link, ()), "restart": "temporary"}

    @classmethod
    def _start_link(cls):
        return actors.spawn_link(cls._run)

    @staticmethod
    def _run():
        _tag, payload, from_, socket = actors.receive(
            lambda m: isinstance(m, tuple) and len(m) == 4 and m[0] == "Phoenix.Channel"
        )
        action = payload.get("action") if isinstance(payload, dict) else None
        if action == "ignore":
            actors.reply(from_, ("error", {"action": "ignore"}))
            return
        if action != "ok":
            raise RuntimeError(f"oops: custom channel asked to {action!r}")
        actors.reply(from_, ("ok", {"action": "ok"}))
        transport_ref = actors.monitor(socket.transport_pid)
        while True:
            msg = actors.receive()
            if isinstance(msg, Message) and msg.event == "close":
                actors.send(socket.transport_pid, ("socket_close", actors.self(), "shutdown"))
                actors.exit("shutdown")
            if isinstance(msg, tuple) and len(msg) == 5 and msg[0] == "DOWN" and msg[1] == transport_ref:
                actors.exit(("shutdown", "closed"))


class UserSocket(SocketHandler):
    channels = [
        ("room:*", RoomChannel),
        ("custom:*", CustomChannel),
    ]

    def connect(self, params, socket, connect_info):
        if params.get("reject") == "true":
            return "error"
        if params.get("ratelimit") == "true":
            return ("error", "rate_limit")
        if params.get("custom_error") == "true":
            return ("error", "custom")
        return ("ok", socket.assign(user_id=params.get("user_id")))

    def id(self, socket):
        user_id = socket.assigns.get("user_id")
        return f"user_sockets:{user_id}" if user_id else None


class UserSocketConnectInfo(SocketHandler):
    log = False
    channels = [("room:*", RoomChannel)]

    def connect(self, params, socket, connect_info):
        info = dict(connect_info)
        if "x_headers" in info:
            info["x_headers"] = dict(info["x_headers"])  # JSON-friendly, as Phoenix's test does
        if "trace_context_headers" in info:
            info["trace_context_headers"] = dict(info["trace_context_headers"])
        return ("ok", socket.assign(user_id=params.get("user_id"), connect_info=info))

    def id(self, socket):
        user_id = socket.assigns.get("user_id")
        return f"user_sockets:{user_id}" if user_id else None


class LimitedUserSocket(UserSocket):
    max_channels_per_transport = 3


class SlowChannel(Channel):
    """Its join takes a second: longer than the long-poll endpoint's window, so the POST
    carrying the join is answered 408 (the part of Phoenix's ``/ws/slow`` we can test)."""

    def join(self, topic, payload, socket):
        actors.receive(lambda m: False, 1.0, default=None)
        return ("ok", socket)


class SlowSocket(SocketHandler):
    log = False
    channels = [("slow:*", SlowChannel)]


def handle_error(environ, reason):
    """The mounts' ``error_handler``: a refused connect's reason to an HTTP response."""
    if reason == "rate_limit":
        return ("429 Too Many Requests", [("Content-Type", "text/plain")], b"Too many requests")
    return ("403 Forbidden", [("Content-Type", "text/plain")], b"Forbidden")


SECRET_KEY_BASE = "abcdefgh" * 8  # Phoenix's test endpoint uses the same
SESSION_CONFIG = {"store": "cookie", "key": "_hello_key", "signing_salt": "change_me"}
_SESSION = session_option(SESSION_CONFIG)


def session_page(environ, start_response):
    """``GET /``: puts ``from_session`` in a new cookie session and answers with a CSRF
    token for it (the plug in front of Phoenix's test endpoint does the same)."""
    if environ.get("PATH_INFO") != "/":
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"Not Found"]
    session = {"from_session": "123"}
    token = csrf_token(session)
    start_response("200 OK", [("Content-Type", "text/plain"), _SESSION.set_cookie(session, SECRET_KEY_BASE)])
    return [token.encode()]


_WEBSOCKET = {"check_origin": ["//example.com"], "timeout": 200, "error_handler": handle_error}
_CONNECT_INFO = ["x_headers", "peer_data", "uri", "user_agent", ("session", SESSION_CONFIG)]

endpoint = Endpoint(
    "Integration.Endpoint",
    pubsub_server=PUBSUB,
    secret_key_base=SECRET_KEY_BASE,
    http_app=session_page,
    sockets=[
        ("/ws", UserSocket, {"websocket": _WEBSOCKET, "longpoll": False}),
        ("/ws/admin", UserSocket, {"websocket": _WEBSOCKET, "longpoll": False}),
        ("/ws/limited", LimitedUserSocket, {"websocket": _WEBSOCKET, "longpoll": False}),
        ("/ws/connect_info", UserSocketConnectInfo, {"websocket": {**_WEBSOCKET, "connect_info": _CONNECT_INFO}}),
        (
            "/ws/connect_info_custom",
            UserSocketConnectInfo,
            {"websocket": {**_WEBSOCKET, "connect_info": [*_CONNECT_INFO, ("signing_salt", "salt")]}},
        ),
    ],
)

# Phoenix's long_poll_channels_test.exs endpoint: a second endpoint, on its own listener,
# sharing the PubSub and the secret. ``/js`` and ``/js_wsblocked`` serve the official
# client (Node, Chromium): any origin, and on ``/js_wsblocked`` the WebSocket refuses every
# browser origin, so phoenix.js falls back to LongPoll (``longPollFallbackMs``).
_LONGPOLL = {"window_ms": 200, "pubsub_timeout_ms": 200, "check_origin": ["//example.com"]}
_LONGPOLL_JS = {"window_ms": 1_000, "check_origin": False}

longpoll_endpoint = Endpoint(
    "Integration.LongPollEndpoint",
    pubsub_server=PUBSUB,
    secret_key_base=SECRET_KEY_BASE,
    sockets=[
        ("/ws", UserSocket, {"websocket": False, "longpoll": _LONGPOLL}),
        ("/ws/admin", UserSocket, {"websocket": False, "longpoll": _LONGPOLL}),
        (
            "/ws/connect_info",
            UserSocketConnectInfo,
            {
                "websocket": False,
                "longpoll": {**_LONGPOLL, "connect_info": ["trace_context_headers", "x_headers", "peer_data", "uri"]},
            },
        ),
        ("/ws/slow", SlowSocket, {"websocket": False, "longpoll": _LONGPOLL}),
        ("/js", UserSocket, {"websocket": False, "longpoll": _LONGPOLL_JS}),
        ("/js_wsblocked", UserSocket, {"websocket": {"check_origin": ["//example.com"]}, "longpoll": _LONGPOLL_JS}),
    ],
)

children = [
    PubSub.child_spec(name=PUBSUB),
    *endpoint.child_specs(),
    *longpoll_endpoint.child_specs(server={"host": "127.0.0.1", "port": 0}),
]


if __name__ == "__main__":
    from transport import http

    raise SystemExit(http.main(endpoint, children, announce=(longpoll_endpoint,)))
