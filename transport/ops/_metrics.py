"""Prometheus metrics for a greenphx server, read from telemetry and the inspection layer.

Put it next to your tree (``phx-serve --metrics 127.0.0.1:9568`` does this)::

    from transport import ops

    metrics = ops.Metrics(root=app.pid)       # or root="phx-serve": the root's name
    metrics.start()                           # attaches the telemetry handlers
    server = metrics.serve("127.0.0.1:9568")  # its own listener: GET /metrics
    ...
    server.stop(); metrics.stop()

or mount it on the endpoint instead of a listener of its own (before the tree starts)::

    endpoint.http_app = ops.mount_wsgi(endpoint.http_app, "/metrics", metrics.wsgi_app)

Options: ``root=None`` (the application root, a pid or a registered name: restarts per
supervisor are read from the tree under it), ``prefix="greenphx"`` (every name starts
with it), ``max_events_per_channel=20`` (``handle_in`` events kept as label values per
channel class; later ones, and any a channel's ``metric_events`` does not list, are
folded into ``"other"``), ``state_timeout=0.5`` (seconds a supervisor gets to answer).

Off by default, and off means nothing: no telemetry handler attached, no listener, no
sampler. Counters and histograms are fed by the telemetry events; gauges are read when
Prometheus scrapes, through the same paced listings the debug shell uses, so a scrape
of a server with 15,000 sockets never holds the event loop for long. docs/observability.md
lists every metric.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import time
from collections.abc import Callable, Iterable
from typing import Any

from .. import _telemetry
from . import _inspect, _looplag

log = logging.getLogger("transport.ops.metrics")

__all__ = ["DEFAULT_METRICS_ADDRESS", "Metrics", "MetricsServer", "mount_wsgi", "parse_listen_address"]

DEFAULT_METRICS_ADDRESS = "127.0.0.1:9568"  # PromEx's default port

#: Milliseconds, as PromEx's Phoenix plugin (which starts at 1 ms): a channel's handle_in
#: typically takes tens of microseconds here, so the buckets start below a millisecond.
DURATION_BUCKETS_MS = (0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)

_EVENTS = [
    ("phoenix", "socket_connected"),
    ("phoenix", "channel_joined"),
    ("phoenix", "channel_handled_in"),
    ("phoenix", "socket_drain"),
]
OTHER_EVENT = "other"


def parse_listen_address(addr: str, default_host: str = "127.0.0.1") -> tuple[str, int]:
    """``(host, port)`` from ``HOST:PORT``, ``[V6]:PORT``, ``:PORT`` or ``PORT``; ValueError
    naming the problem otherwise (the host must be an IP address or ``localhost``)."""
    if not isinstance(addr, str) or not addr.strip():
        raise ValueError(f"expected HOST:PORT, got {addr!r}")
    text = addr.strip()
    m = re.fullmatch(r"\[([^\]]+)\]:(\d+)|([^:\[\]]*):(\d+)|(\d+)", text)
    if m is None:
        raise ValueError(f"{addr!r} is not HOST:PORT (as 127.0.0.1:9568)")
    if m.group(5) is not None:
        host, port = default_host, int(m.group(5))
    else:
        host = m.group(1) or m.group(3) or default_host
        port = int(m.group(2) or m.group(4))
    if host == "localhost":
        host = "127.0.0.1"
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{addr!r}: the host must be an IP address (or localhost)") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"{addr!r}: port must be 0..65535")
    return host, port


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an IP address) is a loopback address."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Metrics:
    """One server's Prometheus metrics: see the module docs."""

    def __init__(
        self,
        *,
        root: Any = None,
        prefix: str = "greenphx",
        max_events_per_channel: int = 20,
        state_timeout: float = _inspect.STATE_TIMEOUT,
    ) -> None:
        if not isinstance(prefix, str) or not re.fullmatch(r"[a-zA-Z_:][a-zA-Z0-9_:]*", prefix):
            raise ValueError(f"prefix must be a Prometheus metric name prefix like 'greenphx', got {prefix!r}")
        if isinstance(max_events_per_channel, bool) or not isinstance(max_events_per_channel, int) or max_events_per_channel < 0:
            raise ValueError(f"max_events_per_channel must be an int >= 0, got {max_events_per_channel!r}")
        self.root = root
        self.prefix = prefix
        self.max_events_per_channel = max_events_per_channel
        self.state_timeout = state_timeout
        self.registry: Any = None
        self._handler_id = f"transport.ops.metrics.{id(self)}"
        self._events: dict[str, set[str]] = {}
        self._counting_exits = False
        self._lag: _looplag.LoopLag | None = None
        self._last_scrape: float | None = None
        self._build()

    # -- lifecycle ----------------------------------------------------------------------

    def _build(self) -> None:
        try:
            import prometheus_client as prom
        except ImportError:  # pragma: no cover - the 'metrics' extra
            raise ImportError("metrics need prometheus_client: pip install 'greenphx[metrics]'") from None
        p = self.prefix
        self.registry = prom.CollectorRegistry(auto_describe=False)
        self.socket_connected = prom.Histogram(
            f"{p}_phoenix_socket_connected_duration_milliseconds",
            "Time a socket's connect took, by result (ok, error) and transport; _count is the connects.",
            ["result", "transport"],
            buckets=DURATION_BUCKETS_MS,
            registry=self.registry,
        )
        self.channel_joined = prom.Counter(
            f"{p}_phoenix_channel_joined",
            "Channel joins, by result (ok, error) and transport.",
            ["result", "transport"],
            registry=self.registry,
        )
        self.handled_in = prom.Histogram(
            f"{p}_phoenix_channel_handled_in_duration_milliseconds",
            "Time a channel's handle_in took, by channel class and event (undeclared events: 'other').",
            ["channel", "event"],
            buckets=DURATION_BUCKETS_MS,
            registry=self.registry,
        )
        self.drains = prom.Counter(
            f"{p}_phoenix_socket_drains", "Socket drains started (one per socket handler at shutdown).", registry=self.registry
        )
        self.drain_channels = prom.Counter(
            f"{p}_phoenix_socket_drain_channels", "Channels asked to drain by the drains started.", registry=self.registry
        )
        self.registry.register(_ScrapeCollector(self))

    @property
    def running(self) -> bool:
        """Whether the telemetry handlers are attached."""
        return self._handler_id in _telemetry._ids

    def start(self) -> Metrics:
        """Attach the telemetry handlers, count spawns and exits, sample the loop's lag."""
        if self.running:
            return self
        _telemetry.attach_many(self._handler_id, _EVENTS, self._on_event)
        import actors

        if actors.statistics()["exits"] is None:
            actors.count_exits(True)
            self._counting_exits = True
        self._lag = _looplag.acquire()
        self._last_scrape = time.monotonic()
        return self

    def stop(self) -> None:
        """Detach everything :meth:`start` attached (the values are kept)."""
        if not self.running:
            return
        _telemetry.detach(self._handler_id)
        if self._counting_exits:
            import actors

            actors.count_exits(False)
            self._counting_exits = False
        if self._lag is not None:
            _looplag.release()
            self._lag = None

    # -- telemetry ------------------------------------------------------------------------

    def _on_event(self, event: tuple, measurements: dict, meta: dict, _config: Any) -> None:
        name = event[1]
        if name == "channel_handled_in":
            socket = meta["socket"]
            channel = _channel_name(socket.channel)
            self.handled_in.labels(channel, self._event_label(socket.channel, channel, meta.get("event"))).observe(
                measurements["duration"] / 1e6
            )
        elif name == "socket_connected":
            self.socket_connected.labels(str(meta.get("result")), str(meta.get("transport"))).observe(
                measurements["duration"] / 1e6
            )
        elif name == "channel_joined":
            socket = meta["socket"]
            self.channel_joined.labels(str(meta.get("result")), str(getattr(socket, "transport", None))).inc()
        elif name == "socket_drain" and measurements.get("index") == 0:
            self.drains.inc()
            self.drain_channels.inc(measurements.get("total", 0))

    def _event_label(self, channel: Any, channel_name: str, event: Any) -> str:
        """The event as a label value: declared (``metric_events``) or among the first
        ``max_events_per_channel`` seen for the channel class, else ``'other'``."""
        if not isinstance(event, str):
            return OTHER_EVENT
        declared = getattr(channel, "metric_events", None)
        if declared is not None:
            return event if event in declared else OTHER_EVENT
        seen = self._events.get(channel_name)
        if seen is None:
            seen = self._events[channel_name] = set()
        if event in seen:
            return event
        if len(seen) < self.max_events_per_channel:
            seen.add(event)
            return event
        return OTHER_EVENT

    # -- exposition -----------------------------------------------------------------------

    def exposition(self) -> bytes:
        """The metrics in Prometheus' text format (gauges read now, paced)."""
        import prometheus_client as prom

        return prom.generate_latest(self.registry)

    def wsgi_app(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        """A WSGI app answering GET (and HEAD) with :meth:`exposition`."""
        method = environ.get("REQUEST_METHOD", "GET")
        if method not in ("GET", "HEAD"):
            start_response("405 Method Not Allowed", [("Allow", "GET, HEAD"), ("Content-Type", "text/plain")])
            return [b"Method Not Allowed"]
        import prometheus_client as prom

        try:
            body = self.exposition()
        except Exception:  # noqa: BLE001 - a scrape never takes the server down
            log.exception("metrics: the scrape failed")
            start_response("500 Internal Server Error", [("Content-Type", "text/plain")])
            return [b"scrape failed; see the server's log"]
        start_response("200 OK", [("Content-Type", prom.CONTENT_TYPE_LATEST), ("Content-Length", str(len(body)))])
        return [b""] if method == "HEAD" else [body]

    def serve(self, addr: str = DEFAULT_METRICS_ADDRESS, path: str = "/metrics") -> MetricsServer:
        """Serve ``GET path`` on a listener of its own (``HOST:PORT``; port 0 picks one)."""
        host, port = parse_listen_address(addr)
        return MetricsServer(self, host, port, path).start()

    def _lag_window(self) -> dict[str, float]:
        if self._lag is None:
            return {"p99": 0.0, "max": 0.0, "samples": 0}
        since, self._last_scrape = self._last_scrape, time.monotonic()
        return self._lag.window(since)


def _channel_name(channel: Any) -> str:
    cls = channel if isinstance(channel, type) else type(channel)
    return f"{cls.__module__}.{cls.__qualname__}"


def mount_wsgi(app: Callable | None, path: str, inner: Callable) -> Callable:
    """A WSGI app serving ``inner`` at ``path`` (and below it) and ``app`` (or 404) elsewhere."""
    prefix = path.rstrip("/")

    def mounted(environ: dict, start_response: Callable) -> Iterable[bytes]:
        here = environ.get("PATH_INFO", "")
        if here == prefix or here.startswith(prefix + "/"):
            return inner(environ, start_response)
        if app is not None:
            return app(environ, start_response)
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"Not Found"]

    return mounted


class MetricsServer:
    """The metrics' own HTTP listener (gevent.pywsgi). ``address``: what was bound."""

    def __init__(self, metrics: Metrics, host: str, port: int, path: str = "/metrics") -> None:
        self.metrics = metrics
        self.path = path
        self._server: Any = None
        self._host, self._port = host, port

    def _app(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        if environ.get("PATH_INFO", "") != self.path:
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [f"Not Found: the metrics are at {self.path}".encode()]
        return self.metrics.wsgi_app(environ, start_response)

    def start(self) -> MetricsServer:
        """Bind and serve; OSError if the address is taken."""
        from gevent.pywsgi import WSGIServer

        from ..http import _QuietLog

        self._server = WSGIServer((self._host, self._port), self._app, log=_QuietLog(), error_log=_QuietLog())
        self._server.start()
        log.info("metrics at http://%s:%s%s", self.address[0], self.address[1], self.path)
        return self

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) bound."""
        return tuple(self._server.address[:2]) if self._server is not None else (self._host, self._port)

    @property
    def url(self) -> str:
        """The scrape URL."""
        host, port = self.address
        return f"http://{'[' + host + ']' if ':' in host else host}:{port}{self.path}"

    def stop(self) -> None:
        """Close the listener."""
        if self._server is not None:
            self._server.stop(timeout=1)
            self._server = None


class _ScrapeCollector:
    """The gauges and the counters that live elsewhere, read at each scrape."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def describe(self) -> list:
        return []  # no names to check up front: read at scrape time

    def collect(self) -> Iterable[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        m = self.metrics
        p = m.prefix
        try:
            o = _inspect.overview(m.root, timeout=m.state_timeout)
        except Exception:  # noqa: BLE001 - the event-fed metrics are still worth serving
            log.exception("metrics: reading the server's state failed")
            return

        g = GaugeMetricFamily(f"{p}_phoenix_sockets", "Open sockets, by transport.", labels=["transport"])
        for transport, n in sorted(o["sockets"].items()):
            g.add_metric([transport], n)
        yield g
        yield GaugeMetricFamily(f"{p}_phoenix_channels", "Joined channels (channel processes).", value=o["channels"])
        out = o["outbound"]
        yield GaugeMetricFamily(
            f"{p}_phoenix_outbound_queued_bytes",
            "Bytes of frames waiting for their WebSocket clients, all sockets.",
            value=out["bytes"],
        )
        yield GaugeMetricFamily(
            f"{p}_phoenix_outbound_queued_bytes_max", "Bytes waiting for the socket with the most queued.", value=out["largest"]
        )
        yield GaugeMetricFamily(
            f"{p}_phoenix_outbound_queued_frames", "Frames waiting for their WebSocket clients, all sockets.", value=out["frames"]
        )

        rt = o["runtime"]
        yield GaugeMetricFamily(f"{p}_runtime_processes", "Live processes.", value=rt["process_count"])
        yield GaugeMetricFamily(
            f"{p}_runtime_message_queue_longest", "Messages in the longest mailbox.", value=rt["longest_message_queue"]
        )
        yield GaugeMetricFamily(
            f"{p}_runtime_message_queue_total", "Messages queued in all mailboxes.", value=rt["message_queue_total"]
        )
        if rt["spawned"] is not None:
            yield CounterMetricFamily(f"{p}_runtime_spawns", "Processes started since the metrics started.", value=rt["spawned"])
            c = CounterMetricFamily(
                f"{p}_runtime_exits",
                "Processes ended since the metrics started, by reason class (normal, shutdown, killed, error).",
                labels=["reason"],
            )
            for reason, n in sorted(rt["exits"].items()):
                c.add_metric([reason], n)
            yield c
        c = CounterMetricFamily(
            f"{p}_runtime_supervisor_restarts", "Children restarted by each supervisor since it started.", labels=["supervisor"]
        )
        for row in o["restarts"]:
            c.add_metric([str(row["supervisor"])], row["total"])
        yield c
        lag = m._lag_window()
        yield GaugeMetricFamily(
            f"{p}_runtime_event_loop_lag_p99_milliseconds",
            "99th percentile of the event loop's lag since the previous scrape.",
            value=round(lag["p99"] * 1000, 3),
        )
        yield GaugeMetricFamily(
            f"{p}_runtime_event_loop_lag_max_milliseconds",
            "Longest event loop lag since the previous scrape.",
            value=round(lag["max"] * 1000, 3),
        )

        yield from _pubsub_families(p, o["pubsub"])
        yield from _presence_families(p, o["presence"])


_ADAPTER_COUNTERS = {
    "published": "Messages this node published to the other nodes.",
    "publish_errors": "Publishes to the other nodes that failed.",
    "received": "Messages received from the other nodes.",
    "reconnects": "Reconnections of the adapter's connections.",
}


def _pubsub_families(p: str, rows: list[dict[str, Any]]) -> Iterable[Any]:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    fams = {
        "subscriptions": GaugeMetricFamily(
            f"{p}_pubsub_subscriptions", "Subscriptions on this node (duplicates included).", labels=["pubsub"]
        ),
        "subscribers": GaugeMetricFamily(
            f"{p}_pubsub_subscribers", "Distinct subscribed processes on this node.", labels=["pubsub"]
        ),
        "topics": GaugeMetricFamily(f"{p}_pubsub_topics", "Topics with a subscriber on this node.", labels=["pubsub"]),
    }
    counters = {
        key: CounterMetricFamily(f"{p}_pubsub_{key}", text, labels=["pubsub", "adapter"])
        for key, text in _ADAPTER_COUNTERS.items()
    }
    nodes = GaugeMetricFamily(
        f"{p}_pubsub_node_up", "1 for each other node heard from and up, 0 when down.", labels=["pubsub", "node"]
    )
    any_adapter = False
    for row in rows:
        for key, fam in fams.items():
            fam.add_metric([row["name"]], row[key])
        stats = row.get("adapter_statistics")
        if stats:
            any_adapter = True
            for key, counter in counters.items():
                if key in stats:
                    counter.add_metric([row["name"], str(row["adapter"])], stats[key])
            for node, info in (stats.get("nodes") or {}).items():
                nodes.add_metric([row["name"], node], 1 if info.get("status") == "up" else 0)
    yield from fams.values()
    if any_adapter:
        yield from counters.values()
        yield nodes


def _presence_families(p: str, rows: list[dict[str, Any]]) -> Iterable[Any]:
    from prometheus_client.core import GaugeMetricFamily

    entries = GaugeMetricFamily(f"{p}_presence_entries", "Presences tracked, every node's.", labels=["tracker"])
    local = GaugeMetricFamily(f"{p}_presence_local_entries", "Presences tracked by this node.", labels=["tracker"])
    topics = GaugeMetricFamily(f"{p}_presence_topics", "Topics with presences.", labels=["tracker"])
    for row in rows:
        entries.add_metric([row["name"]], row["presences"])
        local.add_metric([row["name"]], row["local_presences"])
        topics.add_metric([row["name"]], row["topics"])
    yield entries
    yield local
    yield topics
