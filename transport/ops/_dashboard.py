"""The live dashboard: a page that is a client of the server it shows, over a channel.

Start it next to your tree (``phx-serve --dashboard`` does this)::

    from transport import ops

    dashboard = ops.Dashboard(root=app.pid).start("127.0.0.1:4001")
    ...                                   # http://127.0.0.1:4001/
    dashboard.stop()

It runs an endpoint of its own (own PubSub, own listener) in the same OS process: the
page at ``/`` joins ``dashboard:live`` on ``/live/websocket`` and receives a
``snapshot`` every ``interval_ms`` (1 s; longer when building one took long, so a big
server is never inspected more than ~10% of the time), built by the inspection layer
(:mod:`transport.ops._inspect`): the supervision tree with restart counts, processes by
mailbox length, sockets (largest outbound queue first), topics, PubSub nodes, Presence
and the figures the charts plot. ``process`` drills into one pid (``process_info`` and
its state as its ``format_status`` shows it).

Safety: it shows socket params, assigns and process state. It listens on loopback only
unless given a ``token`` (then any address, and the page and the socket need
``?token=...``); it has no ``kill`` unless ``allow_kill=True`` and never an ``eval``.
Options: ``root=None`` (pid or registered name of the application root),
``token=None``, ``allow_kill=False``, ``interval_ms=1000``, ``processes=30``,
``sockets=50``, ``topics=30`` (rows per table), ``tree_limit=20`` (children shown per
supervisor), ``state_timeout=0.5``.
"""

from __future__ import annotations

import hmac
import itertools
import logging
import pprint
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import actors
from actors import Pid

from .._channel import Channel, push
from .._endpoint import Endpoint
from .._socket import Socket, SocketHandler
from .._types import ConnectResult, HandleInfoResult, HandleInResult, JoinResult
from . import _inspect, _looplag
from ._metrics import is_loopback, parse_listen_address

log = logging.getLogger("transport.ops.dashboard")

__all__ = ["DEFAULT_DASHBOARD_ADDRESS", "Dashboard", "DashboardChannel", "DashboardSocket"]

DEFAULT_DASHBOARD_ADDRESS = "127.0.0.1:4001"
TOPIC = "dashboard:live"
_STATIC = Path(__file__).resolve().parent / "static"
# The demo's Phoenix client, served by reference: one JavaScript client in the project.
_PHX_JS = Path(__file__).resolve().parents[1] / "demo" / "static" / "phx.js"
_MAX_STATE_CHARS = 20_000
_BUSY_SHARE = 10  # a snapshot that took t seconds is followed by one after >= 10 t
_instances = itertools.count(1)


class DashboardEndpoint(Endpoint):
    """The dashboard's own endpoint; carries its :class:`Dashboard` for the socket and channel."""

    dashboard: Dashboard


class DashboardChannel(Channel):
    """``dashboard:live``: snapshots pushed on a timer; ``process`` and (if allowed) ``kill``."""

    log_join = False

    def join(self, topic: str, payload: Any, socket: Socket) -> JoinResult:
        if topic != TOPIC:
            return ("error", {"reason": "unknown topic"})
        dashboard = socket.endpoint.dashboard
        _looplag.acquire()  # released in terminate
        socket = socket.assign(lag_since=time.monotonic(), lag=True)
        actors.send(actors.self(), "snapshot")
        return ("ok", {"allow_kill": dashboard.allow_kill, "interval_ms": dashboard.interval_ms}, socket)

    def handle_info(self, msg: Any, socket: Socket) -> HandleInfoResult:
        if msg == "snapshot":
            dashboard = socket.endpoint.dashboard
            started = time.perf_counter()
            try:
                snap = dashboard.snapshot(socket.assigns["lag_since"])
            except Exception:  # noqa: BLE001 - one bad tick is logged, the page keeps its last view
                log.exception("dashboard: building a snapshot failed")
                snap = None
            socket = socket.assign(lag_since=time.monotonic())
            took = time.perf_counter() - started
            if snap is not None:
                snap["took_ms"] = round(took * 1000, 1)
                push(socket, "snapshot", snap)
            actors.send_after(actors.self(), "snapshot", max(dashboard.interval_ms, int(took * 1000 * _BUSY_SHARE)))
            return ("noreply", socket)
        return super().handle_info(msg, socket)

    def handle_in(self, event: str, payload: Any, socket: Socket) -> HandleInResult:
        dashboard = socket.endpoint.dashboard
        pid = _pid_of(payload)
        if event == "process":
            if pid is None:
                return ("reply", ("error", {"reason": 'expected {"pid": "<0.12.0>"}'}), socket)
            detail = dashboard.process(pid)
            if detail is None:
                return ("reply", ("error", {"reason": f"{pid} is not alive"}), socket)
            return ("reply", ("ok", detail), socket)
        if event == "kill":
            if not dashboard.allow_kill:
                return ("reply", ("error", {"reason": "kill is not enabled (start the dashboard with allow_kill)"}), socket)
            if pid is None or not actors.is_alive(pid):
                return ("reply", ("error", {"reason": "no such process"}), socket)
            log.warning("dashboard: killing %s at the page's request", pid)
            actors.exit(pid, "kill")
            return ("reply", ("ok", {"killed": str(pid)}), socket)
        return ("reply", ("error", {"reason": f"unknown event {event!r}"}), socket)

    def terminate(self, reason: Any, socket: Socket) -> None:
        if socket.assigns.get("lag"):
            _looplag.release()


class DashboardSocket(SocketHandler):
    """The page's socket: refused without the dashboard's token when it has one."""

    channels = [("dashboard:*", DashboardChannel)]
    log = False  # the page reconnects after every restart: no line each time

    def connect(self, params: dict, socket: Socket, connect_info: dict) -> ConnectResult:
        dashboard = socket.endpoint.dashboard
        if not dashboard.token_ok(params.get("token")):
            return "error"
        return ("ok", socket)

    def id(self, socket: Socket) -> None:
        return None


def _pid_of(payload: Any) -> Pid | None:
    text = payload.get("pid") if isinstance(payload, dict) else None
    if not isinstance(text, str):
        return None
    try:
        return Pid.parse(text.strip())
    except (ValueError, TypeError):
        return None


def _json(value: Any, depth: int = 0) -> Any:
    """A JSON-safe copy: pids and other objects as their repr, containers bounded."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if depth > 8:
        return repr(value)
    if isinstance(value, dict):
        return {str(k) if isinstance(k, (str, int, Pid)) else repr(k): _json(v, depth + 1) for k, v in list(value.items())[:500]}
    if isinstance(value, (list, tuple)):
        return [_json(v, depth + 1) for v in value[:500]]
    return str(value) if isinstance(value, Pid) else repr(value)


class Dashboard:
    """The dashboard's configuration and its endpoint: see the module docs."""

    def __init__(
        self,
        *,
        root: Any = None,
        token: str | None = None,
        allow_kill: bool = False,
        interval_ms: int = 1000,
        processes: int = 30,
        sockets: int = 50,
        topics: int = 30,
        tree_limit: int = 20,
        state_timeout: float = _inspect.STATE_TIMEOUT,
    ) -> None:
        if token is not None and (not isinstance(token, str) or len(token) < 16):
            raise ValueError("the dashboard's token must be a str of at least 16 characters")
        if isinstance(interval_ms, bool) or not isinstance(interval_ms, int) or interval_ms < 100:
            raise ValueError(f"interval_ms must be an int >= 100, got {interval_ms!r}")
        self.root = root
        self.token = token
        self.allow_kill = bool(allow_kill)
        self.interval_ms = interval_ms
        self.limits = {"processes": processes, "sockets": sockets, "topics": topics, "tree": tree_limit}
        self.state_timeout = state_timeout
        self._app: Any = None
        self.endpoint: DashboardEndpoint | None = None

    # -- access -----------------------------------------------------------------------------

    def token_ok(self, given: Any) -> bool:
        """Whether a request may see the dashboard (always, without a token)."""
        if self.token is None:
            return True
        return isinstance(given, str) and hmac.compare_digest(given.encode(), self.token.encode())

    # -- data -------------------------------------------------------------------------------

    def _root_pid(self) -> Pid | None:
        root = self.root
        pid = actors.whereis(root) if isinstance(root, str) else root
        return pid if isinstance(pid, Pid) and actors.is_alive(pid) else None

    def snapshot(self, lag_since: float | None = None) -> dict[str, Any]:
        """Everything the page shows, JSON-safe."""
        timeout = self.state_timeout
        root = self._root_pid()
        overview = _inspect.overview(root, timeout=timeout)
        infos = _inspect.all_infos()
        by_queue = sorted(infos, key=lambda i: -i["message_queue_len"])[: self.limits["processes"]]
        processes = [
            {
                "pid": str(i["pid"]),
                "name": _inspect.name_or_label(i),
                "status": i["status"],
                "queue": i["message_queue_len"],
                "links": len(i["links"]),
                "monitors": len(i["monitors"]),
                "initial_call": str(i["initial_call"]),
            }
            for i in by_queue
        ]
        socket_rows = []
        for row in _inspect.sockets(timeout=timeout, infos=infos, limit=self.limits["sockets"]):
            snap = row["snapshot"]
            socket_rows.append(
                {
                    "pid": str(row["pid"]),
                    "handler": row["handler"],
                    "id": _json(row["id"]),
                    "transport": row["transport"],
                    "peer": row["peer"],
                    "path": row["path"],
                    "channels": {topic: str(pid) for topic, pid in row["channels"].items()},
                    "outbound_bytes": (row["outbound"] or {}).get("bytes"),
                    "bytes_in": snap.get("bytes_in"),
                    "bytes_out": snap.get("bytes_out"),
                }
            )
        topics = []
        for ps in overview["pubsub"]:
            counts, distinct = _inspect.topic_counts(ps["name"])
            for topic in sorted(counts, key=lambda t: (-counts[t], t))[: self.limits["topics"]]:
                topics.append(
                    {"pubsub": ps["name"], "topic": topic, "subscriptions": counts[topic], "processes": distinct[topic]}
                )
        lag = _looplag.acquire()
        try:
            window = lag.window(lag_since)
        finally:
            _looplag.release()
        tree = _inspect.tree(root, limit=self.limits["tree"], timeout=timeout) if root is not None else None
        rt = overview["runtime"]
        return {
            "time": time.time(),
            "node": {"pubsub": [_pubsub_row(ps) for ps in overview["pubsub"]], "presence": _json(overview["presence"])},
            "figures": {
                "sockets": overview["sockets"],
                "channels": overview["channels"],
                "processes": rt["process_count"],
                "longest_queue": rt["longest_message_queue"],
                "queued_messages": rt["message_queue_total"],
                "outbound_bytes": overview["outbound"]["bytes"],
                "outbound_bytes_max": overview["outbound"]["largest"],
                "loop_lag_p99_ms": round(window["p99"] * 1000, 2),
                "loop_lag_max_ms": round(window["max"] * 1000, 2),
                "subscriptions": sum(ps["subscriptions"] for ps in overview["pubsub"]),
                "presences": sum(p["presences"] for p in overview["presence"]),
                "exits": rt["exits"],
                "spawned": rt["spawned"],
            },
            "restarts": [
                {"supervisor": str(r["supervisor"]), "pid": str(r["pid"]), "total": r["total"], "recent": r["recent"]}
                for r in overview["restarts"]
            ],
            "tree": _tree_json(tree),
            "processes": processes,
            "sockets": socket_rows,
            "topics": topics,
        }

    def process(self, pid: Pid) -> dict[str, Any] | None:
        """The drill-down of one process: its process_info and its (formatted) state."""
        detail = _inspect.process_detail(pid, timeout=self.state_timeout)
        if detail is None:
            return None
        info = detail["info"]
        state = detail["status"]
        text = pprint.pformat(state, width=100, sort_dicts=False) if state is not None else None
        if text is not None and len(text) > _MAX_STATE_CHARS:
            text = text[:_MAX_STATE_CHARS] + f"\n... ({len(text) - _MAX_STATE_CHARS} more characters)"
        return {
            "info": _json({k: v for k, v in info.items() if k != "current_stacktrace"}),
            "stack": [str(f) for f in (info.get("current_stacktrace") or [])[-8:]],
            "state": text,
        }

    # -- serving ----------------------------------------------------------------------------

    def http_app(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        """The page and its files (the socket is the endpoint's)."""
        path = environ.get("PATH_INFO") or "/"
        method = environ.get("REQUEST_METHOD", "GET")
        if method not in ("GET", "HEAD"):
            return _plain(start_response, "405 Method Not Allowed", b"Method Not Allowed")
        if path in ("/", "/index.html"):
            token = (parse_qs(environ.get("QUERY_STRING", "")).get("token") or [None])[0]
            if not self.token_ok(token):
                return _plain(start_response, "403 Forbidden", b"Forbidden: this dashboard needs ?token=...")
        files = {
            "/": _STATIC / "dashboard.html",
            "/index.html": _STATIC / "dashboard.html",
            "/dashboard.js": _STATIC / "dashboard.js",
            "/dashboard.css": _STATIC / "dashboard.css",
            "/uPlot.iife.min.js": _STATIC / "uPlot.iife.min.js",
            "/uPlot.min.css": _STATIC / "uPlot.min.css",
            "/phx.js": _PHX_JS,
        }
        file = files.get(path)
        if file is None:
            return _plain(start_response, "404 Not Found", b"Not Found")
        body = file.read_bytes()
        ctype = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}[
            file.suffix
        ]
        headers = [
            ("Content-Type", ctype),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
            ("X-Content-Type-Options", "nosniff"),
            ("Referrer-Policy", "no-referrer"),
        ]
        if file.suffix == ".html":
            headers.append(
                (
                    "Content-Security-Policy",
                    "default-src 'self'; connect-src 'self'; style-src 'self' 'unsafe-inline'; "
                    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
                )
            )
        start_response("200 OK", headers)
        return [b""] if method == "HEAD" else [body]

    def start(self, addr: str = DEFAULT_DASHBOARD_ADDRESS) -> Dashboard:
        """Start the dashboard's endpoint on ``HOST:PORT`` (loopback unless it has a token).

        Raises ValueError for a non-loopback address without a token, and
        :class:`actors.StartError` if it cannot listen.
        """
        from supervision import Application

        from ..pubsub import PubSub

        host, port = parse_listen_address(addr)
        if not is_loopback(host) and self.token is None:
            raise ValueError(
                f"the dashboard shows socket params, assigns and process state: it listens on a loopback address "
                f"only, unless it is given a token (got {host})"
            )
        n = next(_instances)
        name = "greenphx.Dashboard" if n == 1 else f"greenphx.Dashboard.{n}"
        endpoint = DashboardEndpoint(
            name,
            pubsub_server=f"{name}.PubSub",
            http_app=self.http_app,
            sockets=[("/live", DashboardSocket, {"websocket": {"check_origin": False}, "drainer": False})],
        )
        endpoint.dashboard = self
        self.endpoint = endpoint
        self._app = Application(
            [PubSub.child_spec(name=f"{name}.PubSub", pool_size=1), *endpoint.child_specs(server={"host": host, "port": port})],
            name=name,
        )
        self._app.start()
        log.info("dashboard at %s", self.url)
        return self

    @property
    def address(self) -> tuple[str, int] | None:
        """(host, port) bound, once started."""
        return tuple(self.endpoint.bound[:2]) if self.endpoint is not None and self.endpoint.bound else None

    @property
    def url(self) -> str | None:
        """The page's URL (with the token, if any), once started."""
        if self.address is None:
            return None
        host, port = self.address
        url = f"http://{'[' + host + ']' if ':' in host else host}:{port}/"
        return url + (f"?token={self.token}" if self.token else "")

    def stop(self) -> None:
        """Stop its endpoint (closing the pages' sockets)."""
        if self._app is not None:
            self._app.stop()
            self._app = None


def _pubsub_row(ps: dict[str, Any]) -> dict[str, Any]:
    remote = ps.get("adapter_statistics") or {}
    return {
        "name": ps["name"],
        "adapter": ps["adapter"],
        "node_name": ps["node_name"],
        "pool_size": ps["pool_size"],
        "subscriptions": ps["subscriptions"],
        "topics": ps["topics"],
        "connection": {k: remote.get(k) for k in ("subscriber", "publisher", "name_claim")} if remote else None,
        "counters": {k: remote.get(k) for k in ("published", "publish_errors", "received", "reconnects")} if remote else None,
        "nodes": _json(remote.get("nodes")) if remote else {},
    }


def _tree_json(node: dict[str, Any] | None) -> dict[str, Any] | None:
    if node is None:
        return None
    children = node["children"]
    return {
        "pid": str(node["pid"]) if node["pid"] is not None else None,
        "id": node["id"] if isinstance(node["id"], str) else repr(node["id"]),
        "type": node["type"],
        "name": node["name"],
        "label": repr(node["label"]) if node["label"] is not None else None,
        "status": node["status"],
        "queue": node["queue"],
        "supervisor": node["supervisor"],
        "strategy": node["strategy"],
        "counts": node["counts"],
        "restarts": node["restarts"],
        "children": [_tree_json(c) for c in children] if children is not None else None,
    }


def _plain(start_response: Callable, status: str, body: bytes) -> list[bytes]:
    start_response(status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))])
    return [body]
