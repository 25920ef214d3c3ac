"""The HTTP side of an endpoint: a WSGI app on gevent.pywsgi serving mounted sockets.

Put it in your tree (``Endpoint.child_specs(server=...)`` does this for you)::

    endpoint = Endpoint("MyApp.Endpoint", pubsub_server="MyApp.PubSub",
                        sockets=[("/socket", UserSocket, {"websocket": {"timeout": 45_000}})])
    app = Application([PubSub.child_spec(name="MyApp.PubSub"),
                       *endpoint.child_specs(server={"host": "127.0.0.1", "port": 4000})])

A socket mounted at ``/socket`` answers WebSocket upgrades at ``/socket/websocket``.

WebSocket options (the ``websocket`` entry of a mount; ``True`` means all defaults,
``False`` turns the transport off):

``check_origin=True``
    ``True``: an ``Origin`` header must name the endpoint's host (``Endpoint(url=
    {"host": ...})``, else the request's ``Host``); a list such as ``["//example.com",
    "https://*.example.org"]`` (scheme, host and port are checked where given, ``*.``
    matches subdomains); a callable ``origin -> bool``; or ``False``. A request without an
    ``Origin`` header passes. Refused: HTTP 403.
``connect_info=[]``
    What ``connect`` gets in ``connect_info``: ``"peer_data"`` (address, port, ssl_cert),
    ``"x_headers"``, ``"uri"``, ``"user_agent"``, ``"trace_context_headers"``, and
    ``(key, value)`` pairs passed through.
``timeout=60_000``
    Milliseconds without a frame from the client before the socket closes (1000).
``max_frame_size=None``
    Largest message in bytes (None: no limit, as Phoenix); larger closes with 1009.
``serializer=DEFAULT_SERIALIZERS``
    ``[(serializer, requirement)]``, picked by the client's ``vsn``; no match: HTTP 403.
``error_handler=None``
    ``fn(environ, reason) -> (status_line, headers, body)`` for ``connect`` returning
    ``('error', reason)`` (e.g. ``'429 Too Many Requests'``); without one, 403.
``write_timeout=10_000``
    Milliseconds a frame write may take before the connection is dropped (a client that
    stops reading cannot block its socket's process for longer).
``path="/websocket"``
    The suffix under the mount path.

Requests that are not socket upgrades go to ``Endpoint(http_app=...)`` (any WSGI app), or
get 404.
"""

from __future__ import annotations

import logging
import signal
from typing import Any, Callable
from urllib.parse import parse_qsl, urlsplit

import gevent
import gevent.event
from gevent.pywsgi import WSGIHandler, WSGIServer

import actors
from actors import GenServer
from supervision import ChildSpec

from ._socket import connect
from ._transport import ConnectionLost, serve_stream
from .serializers import DEFAULT_SERIALIZERS, validate_serializers
from .websocket import WebSocketError, WebSocketHandler

log = logging.getLogger("transport.http")

__all__ = ["EndpointApp", "HttpServer", "main", "websocket_options"]

WEBSOCKET_DEFAULTS: dict[str, Any] = {
    "check_origin": True,
    "connect_info": [],
    "timeout": 60_000,
    "max_frame_size": None,
    "serializer": None,
    "error_handler": None,
    "write_timeout": 10_000,
    "path": "/websocket",
}

_CONNECT_INFO_KEYS = ("peer_data", "x_headers", "uri", "user_agent", "trace_context_headers")


def websocket_options(value: Any) -> dict[str, Any] | None:
    """Validate a mount's ``websocket`` option: the full options dict, or None when off."""
    if value is False or value is None:
        return None
    opts = dict(WEBSOCKET_DEFAULTS)
    if value is not True:
        if not isinstance(value, dict):
            raise TypeError(f"websocket option must be True, False or a dict; got {value!r}")
        unknown = set(value) - set(WEBSOCKET_DEFAULTS)
        if unknown:
            raise TypeError(f"unknown websocket option(s) {sorted(unknown)}; known: {sorted(WEBSOCKET_DEFAULTS)}")
        opts.update(value)
    opts["serializer"] = validate_serializers(opts["serializer"] or DEFAULT_SERIALIZERS)
    for item in opts["connect_info"]:
        if not (item in _CONNECT_INFO_KEYS or (isinstance(item, tuple) and len(item) == 2)):
            raise ValueError(f"connect_info entries are {_CONNECT_INFO_KEYS} or (key, value); got {item!r}")
    check = opts["check_origin"]
    if isinstance(check, list):
        opts["check_origin"] = [_parse_allowed_origin(o) for o in check]
    elif not (check is True or check is False or callable(check)):
        raise TypeError(f"check_origin must be True, False, a list of origins or a callable; got {check!r}")
    if opts["error_handler"] is not None and not callable(opts["error_handler"]):
        raise TypeError("error_handler must be callable (environ, reason) -> (status, headers, body)")
    for key in ("timeout", "write_timeout"):
        if isinstance(opts[key], bool) or not isinstance(opts[key], (int, float)) or opts[key] <= 0:
            raise ValueError(f"{key} must be a positive number of milliseconds; got {opts[key]!r}")
    if opts["max_frame_size"] is not None and (not isinstance(opts["max_frame_size"], int) or opts["max_frame_size"] <= 0):
        raise ValueError(f"max_frame_size must be a positive int or None; got {opts['max_frame_size']!r}")
    return opts


def _parse_allowed_origin(origin: str) -> tuple[str | None, str, int | None]:
    if not isinstance(origin, str):
        raise TypeError(f"check_origin entries must be str like '//example.com'; got {origin!r}")
    parts = urlsplit(origin if "//" in origin else "//" + origin)
    if not parts.hostname:
        raise ValueError(f"check_origin entry {origin!r} has no host")
    return (parts.scheme or None, parts.hostname.lower(), parts.port)


def _origin_allowed(origin: str, check: Any, host: str | None) -> bool:
    if check is False:
        return True
    try:
        parts = urlsplit(origin)
        origin_host = (parts.hostname or "").lower()
        origin_port = parts.port
    except ValueError:
        return False
    if callable(check):
        return bool(check(origin))
    if check is True:
        return host is not None and origin_host == host.lower()
    for scheme, allowed_host, port in check:
        if scheme is not None and scheme != parts.scheme:
            continue
        if port is not None and port != origin_port:
            continue
        if allowed_host.startswith("*."):
            if origin_host.endswith(allowed_host[1:]) or origin_host == allowed_host[2:]:
                return True
        elif origin_host == allowed_host:
            return True
    return False


class _Mount:
    __slots__ = ("path", "handler", "options")

    def __init__(self, path: str, handler: Any, options: dict) -> None:
        self.path = path
        self.handler = handler
        self.options = options


class EndpointApp:
    """The endpoint's WSGI application; socket upgrades are decided by :meth:`websocket_decision`."""

    def __init__(self, endpoint: Any, http_app: Callable | None = None) -> None:
        self.endpoint = endpoint
        self.http_app = http_app if http_app is not None else getattr(endpoint, "http_app", None)
        self.websocket_routes: dict[str, _Mount] = {}
        for path, handler, opts in endpoint.sockets:
            unknown = set(opts) - {"websocket", "longpoll", "drainer", "partitions"}
            if unknown:
                raise TypeError(f"unknown socket mount option(s) {sorted(unknown)} for {path!r}")
            if opts.get("longpoll"):
                raise NotImplementedError("the LongPoll transport is not available yet; mount with longpoll=False")
            ws = websocket_options(opts.get("websocket", True))
            if ws is not None:
                self.websocket_routes[path.rstrip("/") + ws["path"]] = _Mount(path, handler, ws)

    def __call__(self, environ: dict, start_response: Callable) -> Any:
        refusal = environ.pop("greenphx.refusal", None)
        if refusal is not None:
            status, headers, body = refusal
            start_response(status, headers)
            return [body]
        if environ.get("PATH_INFO", "") in self.websocket_routes:
            start_response("400 Bad Request", [("Content-Type", "text/plain")])
            return [b"WebSocket upgrade required"]
        if self.http_app is not None:
            return self.http_app(environ, start_response)
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"Not Found"]

    def websocket_decision(self, environ: dict) -> Any:
        """For a WebSocket upgrade request: None (not ours), ('refuse', status, headers, body)
        or ('accept', mount, connection)."""
        mount = self.websocket_routes.get(environ.get("PATH_INFO", ""))
        if mount is None:
            return None
        opts = mount.options
        origin = environ.get("HTTP_ORIGIN")
        if origin is not None and not _origin_allowed(origin, opts["check_origin"], self._host(environ)):
            log.error(
                "Could not check origin for Phoenix.Socket transport.\n\nOrigin of the request: %s\n\n"
                "This happens when you are attempting a socket connection to a different host than the one "
                "configured in your endpoint, or the origin is not listed in check_origin.",
                origin,
            )
            return ("refuse", "403 Forbidden", [("Content-Type", "text/plain")], b"Forbidden")
        params = dict(parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True))
        result = connect(
            mount.handler,
            endpoint=self.endpoint,
            transport="websocket",
            params=params,
            connect_info=_connect_info(environ, opts["connect_info"]),
            serializers=opts["serializer"],
        )
        if isinstance(result, tuple) and result[0] == "ok":
            return ("accept", mount, result[1])
        if isinstance(result, tuple) and result[0] == "error" and opts["error_handler"] is not None:
            status, headers, body = opts["error_handler"](environ, result[1])
            return ("refuse", status, list(headers), body if isinstance(body, bytes) else str(body).encode())
        return ("refuse", "403 Forbidden", [("Content-Type", "text/plain")], b"Forbidden")

    def _host(self, environ: dict) -> str | None:
        url = getattr(self.endpoint, "url", None) or {}
        if url.get("host"):
            return str(url["host"])
        host = environ.get("HTTP_HOST") or environ.get("SERVER_NAME")
        if not host:
            return None
        return urlsplit("//" + host).hostname


def _connect_info(environ: dict, keys: list) -> dict[str, Any]:
    info: dict[str, Any] = {}
    for key in keys:
        if isinstance(key, tuple):
            info[key[0]] = key[1]
        elif key == "peer_data":
            info["peer_data"] = {
                "address": environ.get("REMOTE_ADDR"),
                "port": int(environ.get("REMOTE_PORT") or 0),
                "ssl_cert": None,
            }
        elif key == "x_headers":
            info["x_headers"] = [
                (k[5:].lower().replace("_", "-"), v) for k, v in environ.items() if k.startswith("HTTP_X_")
            ]
        elif key == "uri":
            host_header = environ.get("HTTP_HOST") or environ.get("SERVER_NAME", "")
            host = urlsplit("//" + host_header)
            scheme = environ.get("wsgi.url_scheme", "http")
            info["uri"] = {
                "scheme": scheme,
                "host": host.hostname,
                "port": host.port or (443 if scheme == "https" else 80),
                "path": environ.get("PATH_INFO", ""),
                "query": environ.get("QUERY_STRING", ""),
            }
        elif key == "user_agent":
            info["user_agent"] = environ.get("HTTP_USER_AGENT")
        elif key == "trace_context_headers":
            info["trace_context_headers"] = [
                (name, environ[f"HTTP_{name.upper()}"]) for name in ("traceparent", "tracestate") if f"HTTP_{name.upper()}" in environ
            ]
    return info


class _WebSocketIO:
    """serve_stream()'s io over a WebSocket: the transport process writes, and pushers
    write through send_nowait while it waits idle (see transport._transport.push)."""

    __slots__ = ("ws", "peer", "path")

    def __init__(self, ws: Any, peer: str | None, path: str | None) -> None:
        self.ws = ws
        self.peer = peer
        self.path = path

    def info(self) -> dict[str, Any]:
        ws = self.ws
        return {
            "transport": "websocket",
            "peer": self.peer,
            "path": self.path,
            "bytes_in": ws.bytes_in,
            "bytes_out": ws.bytes_out,
            "frames_in": ws.frames_in,
            "frames_out": ws.frames_out,
        }

    def send(self, opcode: str, data: Any) -> None:
        try:
            self.ws.send_frame(opcode, data)
        except WebSocketError as e:
            raise ConnectionLost(str(e)) from None

    def send_nowait(self, opcode: str, data: Any) -> Any:
        return self.ws.send_frame_nowait(opcode, data)

    def write_rest(self, rest: Any) -> None:
        try:
            self.ws.write_rest(rest)
        except WebSocketError as e:
            raise ConnectionLost(str(e)) from None

    def close(self, code: int, reason: str = "") -> None:
        try:
            self.ws.close(code, reason)
        except WebSocketError:
            pass


def run_websocket(ws: Any, mount: _Mount, connection: Any, peer: str | None = None, path: str | None = None) -> None:
    """Run one upgraded connection: this greenlet becomes its transport process, reading
    frames and writing pushes itself, then completes the closing handshake."""
    serve_stream(connection, _WebSocketIO(ws, peer, path), ws, mount.options["timeout"] / 1000.0)
    ws.wait_closed()  # the closing handshake, before pywsgi drops the TCP socket


class PhoenixHandler(WebSocketHandler):
    """pywsgi handler: decides socket upgrades (origin, connect) before the handshake."""

    def run_application(self) -> Any:
        app = self.application
        wants_upgrade = self.environ.get("HTTP_UPGRADE", "").lower() == "websocket"
        decision = app.websocket_decision(self.environ) if wants_upgrade and isinstance(app, EndpointApp) else None
        if decision is None:
            return super().run_application()
        if decision[0] == "refuse":
            # Plain HTTP, past every WebSocket handler in the MRO: no upgrade may happen.
            self.environ["greenphx.refusal"] = decision[1:]
            return WSGIHandler.run_application(self)
        _accept, _mount, connection = decision
        self.ws_max_message_size = _mount.options["max_frame_size"]
        self.ws_write_timeout = _mount.options["write_timeout"] / 1000.0
        self.result = self.upgrade_websocket()
        ws = getattr(self, "websocket", None)
        if ws is None:  # the handshake itself was bad: answer it as the base class does
            if not self.result:
                self.result = []
            self.process_result()
            return None
        if self.status and not self.headers_sent:
            self.write(b"")
        # The connection lives on for hours; nothing of the handshake has to.
        peer = f"{self.environ.get('REMOTE_ADDR')}:{self.environ.get('REMOTE_PORT')}"
        path = self.environ.get("PATH_INFO")
        self.environ.clear()
        self.headers = None  # the parsed request headers (an email.message.Message)
        try:
            run_websocket(ws, _mount, connection, peer, path)
        finally:
            self.websocket = None
        return None

    def log_request(self) -> None:
        """Access lines at DEBUG on transport.http (gevent-websocket logs them at INFO)."""
        if log.isEnabledFor(logging.DEBUG):
            log.debug(self.format_request())


class _QuietLog:
    """pywsgi's access log, at DEBUG on the transport.http logger instead of stderr."""

    def write(self, line: str) -> None:
        log.debug(line.rstrip())


class HttpServer(GenServer):
    """The endpoint's HTTP listener as a process of the tree (between pools and drainers)."""

    @classmethod
    def child_spec(cls, arg: Any = None) -> ChildSpec:
        """``arg``: ``(endpoint, {"host": ..., "port": ...})``."""
        return ChildSpec(id=("http", arg[0].name), start=(cls.start_link, (arg,)), shutdown=10_000)

    def init(self, arg: Any) -> Any:
        endpoint, opts = arg
        actors.trap_exit(True)
        app = EndpointApp(endpoint)
        host = opts.get("host", "127.0.0.1")
        port = opts.get("port", 4000)
        try:
            # Ranch's (Cowboy's acceptor) default backlog: 128 dropped SYNs in connect bursts,
            # each costing the client a 1 s retransmit.
            server = WSGIServer(
                (host, port),
                app,
                handler_class=PhoenixHandler,
                log=_QuietLog(),
                error_log=_QuietLog(),
                backlog=opts.get("backlog", 1024),
            )
            server.start()
        except OSError as e:
            return ("stop", ("listen_failed", host, port, str(e)))
        endpoint.bound = server.address
        log.info("Running %s at http://%s:%s", endpoint.name, server.address[0], server.address[1])
        return ("ok", server)

    def terminate(self, reason: Any, server: Any) -> None:
        server.stop(timeout=5)


#: ``gc.set_threshold`` for servers: a joined connection leaves ~90 GC-tracked objects, so
#: at 10k connections each full collection walks ~900k of them; with CPython's default
#: (700, 10, 10) that paused the server up to 250-430 ms. Measured with bench/run's rig:
#: connect+join 2.6k -> 3.5k/s, 10k-subscriber broadcast p99 633 -> 214 ms.
SERVER_GC_THRESHOLD = (50_000, 50, 100)


def tune_gc() -> None:
    """Collect less often, and move what start-up built out of the collector's way."""
    import gc

    gc.collect()
    gc.freeze()  # the tree, modules and code objects never become garbage
    gc.set_threshold(*SERVER_GC_THRESHOLD)


def main(endpoint: Any, children: list, argv: list[str] | None = None) -> int:
    """Serve ``endpoint`` with ``children`` until SIGTERM/SIGINT; prints ``listening on URL``."""
    import argparse

    from supervision import Application

    parser = argparse.ArgumentParser(description=f"serve {endpoint.name}")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4000)
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = Application(with_server(children, endpoint, {"host": args.host, "port": args.port}))
    app.start()
    tune_gc()
    host, port = endpoint.bound[:2]
    print(f"listening on http://{host}:{port}", flush=True)
    stop = gevent.event.Event()
    gevent.signal_handler(signal.SIGTERM, stop.set)
    gevent.signal_handler(signal.SIGINT, stop.set)
    stop.wait()
    app.stop()
    return 0


def with_server(children: list, endpoint: Any, server_opts: dict) -> list:
    """``children`` with the HTTP server inserted after the pools, before the drainers.

    Stopping in reverse order, the drainers close sockets while the listener still runs,
    then the listener stops, then the channel pools: Phoenix's endpoint order.
    """
    from ._drainer import Drainer

    spec = HttpServer.child_spec((endpoint, server_opts))
    out = list(children)
    for i, child in enumerate(out):
        if isinstance(child, ChildSpec) and child.start[0] == Drainer.start_link:
            out.insert(i, spec)
            return out
    out.append(spec)
    return out

