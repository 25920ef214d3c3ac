#!/usr/bin/env python3
"""The greenphx side of the socket benchmark (``bench/run``): one endpoint, one channel.

    python bench/app.py --port 0        # prints "listening on http://127.0.0.1:PORT"

Served exactly as ``phx-serve`` serves an endpoint (stdlib patched by gevent first, the
tree started by :func:`transport.http.main`, log level ``warning``), with:

``/socket`` (upgrades at ``/socket/websocket?vsn=2.0.0``)
    :class:`BenchSocket`: accepts every connect; the default ``max_channels_per_transport``
    (100) and pool size (CPU cores); WebSocket idle timeout 120 s (the generator holds
    silent connections for a while), ``check_origin=False``.
``bench:*``
    :class:`BenchChannel`: ``ping`` replies ``ok`` with the payload it got; ``broadcast``
    broadcasts ``msg`` with the payload to the topic (``transport.broadcast``: PubSub, then
    the fastlane, encoded once) and replies ``ok`` with ``{}``.

``bench/baseline.py`` answers the same frames without processes, channels or PubSub.
"""

from gevent import monkey

monkey.patch_all()  # first, before anything imports socket, ssl or threading (as bin/phx-serve)

import os  # noqa: E402
import sys  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from transport import Channel, Endpoint, SocketHandler, broadcast  # noqa: E402
from transport.pubsub import PubSub  # noqa: E402

__all__ = ["BenchChannel", "BenchSocket", "children", "endpoint"]

PUBSUB = "Bench.PubSub"


class BenchChannel(Channel):
    def join(self, topic, payload, socket):
        return ("ok", socket)

    def handle_in(self, event, payload, socket):
        if event == "ping":
            return ("reply", ("ok", payload), socket)
        if event == "broadcast":
            broadcast(socket, "msg", payload)
            return ("reply", ("ok", {}), socket)
        raise ValueError(f"BenchChannel does not handle {event!r}")


class BenchSocket(SocketHandler):
    channels = [("bench:*", BenchChannel)]


endpoint = Endpoint(
    "Bench.Endpoint",
    pubsub_server=PUBSUB,
    sockets=[("/socket", BenchSocket, {"websocket": {"timeout": 120_000, "check_origin": False}})],
)

children = [PubSub.child_spec(name=PUBSUB), *endpoint.child_specs()]


if __name__ == "__main__":
    from transport import http

    argv = sys.argv[1:]
    if not any(a == "--log-level" or a.startswith("--log-level=") for a in argv):
        argv += ["--log-level", "warning"]
    raise SystemExit(http.main(endpoint, children, argv))
