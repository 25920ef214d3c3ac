"""The embedded demo that ``phx-serve`` serves by default: live numbers and a chat.

Run it::

    phx-serve                       # http://127.0.0.1:4000
    phx-serve --port 0              # a free port; prints "listening on http://HOST:PORT"

or embed it in a tree of your own::

    from supervision import Application
    from transport import demo

    SECRET = os.environ["SECRET_KEY_BASE"]  # 64 bytes or more
    Application(demo.children({"host": "127.0.0.1", "port": 4000}, secret_key_base=SECRET)).start()

What it serves (everything from this package's ``static/`` folder, nothing from a CDN):

``/`` (``index.html``), ``/app.js``, ``/phx.js``
    The page: the live positive and negative numbers and a chat. ``phx.js`` is the
    project's own small Phoenix client (V2 frames, heartbeat, replies by ref, channel
    rejoin, socket reconnect with back-off); ``app.js`` is the page's code. Anything
    else is 404; methods other than GET and HEAD are 405.
``/socket/websocket?vsn=2.0.0``, ``/socket/longpoll?vsn=2.0.0``
    :class:`DemoSocket`, over WebSocket or Phoenix's long polling. The page uses WebSocket
    and falls back to LongPoll by itself when WebSockets are blocked (``phx.js``'s
    ``longPollFallbackMs``, as phoenix.js); ``/?transport=longpoll`` uses LongPoll only.
    LongPoll signs its session tokens with the endpoint's ``secret_key_base``: ``phx-serve``
    sets it (``SECRET_KEY_BASE``); an embedding app passes ``secret_key_base`` to
    :func:`children`. Two channels:

    ``numbers:positive``, ``numbers:negative`` (:class:`NumbersChannel`)
        The Numbers app of "Phoenix WebSockets Under a Microscope": every second an
        ``update`` event ``{"number": N}``, N an integer unique on this server and rising
        (``:erlang.unique_integer([:positive])``), negated on ``numbers:negative``. As in
        that app, a join gets one ``update`` at once; after that a single supervised
        process, :class:`NumbersPublisher`, broadcasts to each topic once a second
        (one timer for all clients rather than one per client), to this node's clients
        only (``local_broadcast``): on many nodes each serves its own. Joining any other
        ``numbers:`` topic is refused with ``{"reason": "unknown topic"}``.
    ``room:*`` (:class:`RoomChannel`)
        A chat. Join with ``{"name": NAME}`` (1-32 characters; otherwise refused with
        ``{"reason": "name required"}`` or ``{"reason": "name too long"}``). ``new_msg``
        ``{"body": TEXT}`` (1-1000 characters) is broadcast to everyone in the room as
        ``new_msg`` ``{"name", "body"}`` and answered ok; a bad body is answered
        ``error`` ``{"reason": "invalid body"}``. Any other event crashes the channel, as a
        Phoenix channel without a matching ``handle_in`` clause does: the client sees
        ``phx_error`` and the page's client rejoins by itself (try
        ``demo.room.push("boom")`` in the browser console). Who is in the room is
        :data:`presence` (``Demo.Presence``): after its join a channel tracks its name
        (meta ``{"online_at": ms}``) and pushes ``presence_state``; everyone gets
        ``presence_diff`` events, and the page lists the names (a name open in several
        tabs once, with a count).

The tree (:func:`children`): the PubSub, the presence tracker (after the PubSub it
replicates over; it stops after the endpoint, and then tells the other nodes to drop this
one's presences at once), the endpoint's channel pool, LongPoll session supervisor, HTTP
listener and drainer (in that order, from ``Endpoint.child_specs(server=...)``), then the numbers
publisher. The publisher comes last because it only needs the PubSub to be up, so it
starts ticking once the listener is there, and, stopping in reverse order, it is the first
to go: no update is broadcast while the drainer is closing sockets (1012) and the listener
and pool stop. A crash of the publisher restarts only it (the application is
``one_for_one``); a broadcast that fails while the PubSub is restarting skips that tick.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable
from importlib import resources
from typing import Any

import actors
from actors import GenServer
from supervision import ChildSpec
from transport import (
    Channel,
    ConnectResult,
    Endpoint,
    HandleInfoResult,
    HandleInResult,
    JoinResult,
    Socket,
    SocketHandler,
    broadcast,
    push,
)
from transport._endpoint import check_secret_key_base
from transport.presence import Presence
from transport.pubsub import PubSub, PubSubError

__all__ = [
    "NUMBERS_INTERVAL_MS",
    "NUMBERS_TOPICS",
    "DemoSocket",
    "NumbersChannel",
    "NumbersPublisher",
    "RoomChannel",
    "StaticApp",
    "children",
    "endpoint",
    "presence",
    "unique_integer",
]

log = logging.getLogger("transport.demo")

PUBSUB = "Demo.PubSub"
PUBLISHER = "Demo.NumbersPublisher"
NUMBERS_INTERVAL_MS = 1000
#: topic -> sign of its numbers
NUMBERS_TOPICS = {"numbers:positive": 1, "numbers:negative": -1}
MAX_NAME = 32
MAX_BODY = 1000

_unique = itertools.count(1)


def unique_integer() -> int:
    """A positive integer unique on this server and rising, as ``:erlang.unique_integer([:positive])``."""
    return next(_unique)


# ------------------------------------------------------------------------------------------
# Numbers
# ------------------------------------------------------------------------------------------


class NumbersChannel(Channel):
    """``numbers:positive`` and ``numbers:negative``: a number now, then the publisher's."""

    def join(self, topic: str, payload: Any, socket: Socket) -> JoinResult:
        if topic not in NUMBERS_TOPICS:
            return ("error", {"reason": "unknown topic"})
        # push needs a joined socket: the first number goes out once the join has answered.
        actors.send(actors.self(), "first_update")
        return ("ok", socket)

    def handle_info(self, msg: Any, socket: Socket) -> HandleInfoResult:
        if msg == "first_update":
            assert socket.topic is not None  # a joined channel's socket
            push(socket, "update", {"number": NUMBERS_TOPICS[socket.topic] * unique_integer()})
            return ("noreply", socket)
        return super().handle_info(msg, socket)

    def handle_in(self, event: str, payload: Any, socket: Socket) -> HandleInResult:
        return ("reply", ("error", {"reason": "numbers topics are read-only"}), socket)


class NumbersPublisher(GenServer):
    """Broadcasts an ``update`` to each numbers topic every ``interval_ms`` (a ``send_after`` timer)."""

    @classmethod
    def child_spec(cls, arg: Any = None) -> ChildSpec:
        """``arg``: ``(endpoint, interval_ms)``, default the demo's endpoint and 1000 ms."""
        ep, interval_ms = arg if arg is not None else (endpoint, NUMBERS_INTERVAL_MS)
        return ChildSpec(id=PUBLISHER, start=(_start_publisher, (ep, interval_ms)))

    def init(self, arg: Any) -> Any:
        ep, interval_ms = arg
        actors.send_after(actors.self(), "tick", interval_ms)
        return ("ok", {"endpoint": ep, "interval_ms": interval_ms, "ticks": 0})

    def handle_info(self, msg: Any, state: Any) -> Any:
        if msg != "tick":
            return super().handle_info(msg, state)
        actors.send_after(actors.self(), "tick", state["interval_ms"])
        state["ticks"] += 1
        for topic, sign in NUMBERS_TOPICS.items():
            try:
                # This node's clients only: every node runs its own publisher (numbers are
                # per server), so with N nodes a topic still ticks once a second, never N times.
                state["endpoint"].local_broadcast(topic, "update", {"number": sign * unique_integer()})
            except PubSubError as e:  # the PubSub is restarting: skip this tick
                log.debug("numbers: no broadcast to %s this tick: %s", topic, e)
        return ("noreply", state)


def _start_publisher(ep: Endpoint, interval_ms: int) -> Any:
    return NumbersPublisher.start_link((ep, interval_ms), name=PUBLISHER)


# ------------------------------------------------------------------------------------------
# Chat
# ------------------------------------------------------------------------------------------


class RoomChannel(Channel):
    """``room:*``: join with ``{"name": ...}``; ``new_msg`` ``{"body"}`` goes to everyone as ``{"name", "body"}``."""

    def join(self, topic: str, payload: Any, socket: Socket) -> JoinResult:
        name = payload.get("name") if isinstance(payload, dict) else None
        name = name.strip() if isinstance(name, str) else ""
        if not name:
            return ("error", {"reason": "name required"})
        if len(name) > MAX_NAME:
            return ("error", {"reason": "name too long"})
        # Track once joined (push needs a joined socket), as Phoenix's presence guide does.
        actors.send(actors.self(), "after_join")
        return ("ok", socket.assign(name=name))

    def handle_info(self, msg: Any, socket: Socket) -> HandleInfoResult:
        if msg == "after_join":
            presence.track(socket, socket.assigns["name"], {"online_at": int(time.time() * 1000)})
            push(socket, "presence_state", presence.list(socket))
            return ("noreply", socket)
        return super().handle_info(msg, socket)

    def handle_in(self, event: str, payload: Any, socket: Socket) -> HandleInResult:
        if event == "new_msg":
            body = payload.get("body") if isinstance(payload, dict) else None
            if not isinstance(body, str) or not body.strip() or len(body) > MAX_BODY:
                return ("reply", ("error", {"reason": "invalid body"}), socket)
            broadcast(socket, "new_msg", {"name": socket.assigns["name"], "body": body})
            return ("reply", "ok", socket)
        # As a Phoenix channel with no handle_in clause for the event: crash (phx_error).
        raise ValueError(f"RoomChannel does not handle {event!r}")


class DemoSocket(SocketHandler):
    channels = [
        ("numbers:*", NumbersChannel),
        ("room:*", RoomChannel),
    ]

    def connect(self, params: dict, socket: Socket, connect_info: dict) -> ConnectResult:
        return ("ok", socket)

    def id(self, socket: Socket) -> str | None:
        return None


# ------------------------------------------------------------------------------------------
# The page
# ------------------------------------------------------------------------------------------


_CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}
_ROUTES = {"/": "index.html", "/index.html": "index.html", "/app.js": "app.js", "/phx.js": "phx.js"}
# Same-origin scripts and sockets only; inline styles for the page's <style> block.
_CSP = (
    "default-src 'self'; connect-src 'self'; img-src 'self' data:; "
    "style-src 'self' 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


class StaticApp:
    """A WSGI app serving the page's files from package data (``transport/demo/static``)."""

    def __init__(self, package: str = __name__, folder: str = "static", routes: dict[str, str] | None = None) -> None:
        self.root = resources.files(package).joinpath(folder)
        self.routes = dict(_ROUTES if routes is None else routes)
        self._cache: dict[str, bytes] = {}

    def _read(self, name: str) -> bytes:
        body = self._cache.get(name)
        if body is None:
            body = self.root.joinpath(name).read_bytes()
            self._cache[name] = body
        return body

    def __call__(self, environ: dict, start_response: Callable) -> Any:
        name = self.routes.get(environ.get("PATH_INFO") or "/")
        if name is None:
            return _plain(start_response, "404 Not Found", b"Not Found")
        method = environ.get("REQUEST_METHOD", "GET")
        if method not in ("GET", "HEAD"):
            return _plain(start_response, "405 Method Not Allowed", b"Method Not Allowed", [("Allow", "GET, HEAD")])
        body = self._read(name)
        suffix = name[name.rfind(".") :]
        headers = [
            ("Content-Type", _CONTENT_TYPES.get(suffix, "application/octet-stream")),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-cache"),
            ("X-Content-Type-Options", "nosniff"),
        ]
        if suffix == ".html":
            headers.append(("Content-Security-Policy", _CSP))
        start_response("200 OK", headers)
        return [b""] if method == "HEAD" else [body]


def _plain(start_response: Callable, status: str, body: bytes, extra: list | None = None) -> list[bytes]:
    start_response(status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body))), *(extra or [])])
    return [body]


#: Who is in the chat rooms, on this node and every node sharing the PubSub.
presence = Presence("Demo.Presence", pubsub_server=PUBSUB)

endpoint = Endpoint(
    "Demo.Endpoint",
    pubsub_server=PUBSUB,
    http_app=StaticApp(),
    sockets=[
        # Phoenix's defaults, but a bounded frame size: the page sends small chat messages.
        # LongPoll for browsers behind proxies that block WebSockets (the page falls back).
        ("/socket", DemoSocket, {"websocket": {"timeout": 60_000, "max_frame_size": 64 * 1024}, "longpoll": True}),
    ],
)


def children(server_opts: dict | None = None, *, secret_key_base: str | bytes | None = None) -> list:
    """The demo application's children: PubSub, the presence tracker, the endpoint (with
    its HTTP listener when ``server_opts`` is ``{"host": ..., "port": ...}``; without one
    for ``None``), then the numbers publisher (last: see the module doc).

    ``secret_key_base`` (64 bytes or more) becomes the endpoint's: its LongPoll session
    tokens are signed with it. Without one the endpoint keeps its own (``phx-serve`` sets
    it before the tree starts); a listener started with none refuses to start.
    """
    if secret_key_base is not None:
        endpoint.secret_key_base = check_secret_key_base(secret_key_base)
    return [
        PubSub.child_spec(name=PUBSUB),
        presence.child_spec(),
        *endpoint.child_specs(server=server_opts),
        NumbersPublisher.child_spec((endpoint, NUMBERS_INTERVAL_MS)),
    ]
