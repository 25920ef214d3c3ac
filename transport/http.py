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
``max_frame_size=8_388_608``
    Largest message in bytes (8 MiB); larger closes with 1009 before its payload is read.
    None removes the limit, as Phoenix has none (its processes are preempted; a greenlet is
    not, so a limit is the safe default). A large message is read and unmasked in pieces,
    letting other sockets run meanwhile.
``serializer=DEFAULT_SERIALIZERS``
    ``[(serializer, requirement)]``, picked by the client's ``vsn``; no match: HTTP 403.
``error_handler=None``
    ``fn(environ, reason) -> (status_line, headers, body)`` for ``connect`` returning
    ``('error', reason)`` (e.g. ``'429 Too Many Requests'``); without one, 403.
``max_outbound_bytes=8_388_608``
    Bytes of frames that may wait for one socket (a client that stops reading); None for
    no bound, as Phoenix. Past it, ``outbound_policy`` applies.
``outbound_policy="close"``
    ``"close"``: the socket closes with 1013 (Try Again Later; phoenix.js reconnects) and
    its transport exits ``('shutdown', 'slow_consumer')``, logged once; ``"drop_oldest"``:
    the oldest waiting frames are dropped to make room, counted in the socket's
    ``outbound`` statistics (``state(pid)`` in the debug shell).
``write_timeout=10_000``
    Milliseconds a frame write may take before the connection is dropped (a client that
    stops reading cannot block its socket's process for longer).
``path="/websocket"``
    The suffix under the mount path.

LongPoll options (the ``longpoll`` entry of a mount; ``False`` by default, ``True`` means
all defaults; needs ``Endpoint(secret_key_base=...)``; see docs/longpoll.md):

``window_ms=10_000``
    How long a poll waits for a message before answering 204; a POST waits as long for the
    socket layer (then 408). A session ends after 1.5 x window_ms without a poll.
``pubsub_timeout_ms=2_000``
    How long a request waits for a session held by another endpoint instance (reached over
    the PubSub) to answer; no answer: the session is treated as gone.
``crypto={"max_age": 1_209_600}``
    Seconds a session token stays valid (Phoenix.Token, salted with the PubSub's name).
``check_origin=True``, ``connect_info=[]``, ``serializer=DEFAULT_SERIALIZERS``
    As for the WebSocket; refused: ``{"status": 403}``.
``max_buffer_messages=10_000``, ``max_buffer_bytes=8_000_000``
    Bounds of a session's undelivered messages; past either, the next poll answers 500 and
    the session closes (phoenix.js reconnects and rejoins).
``max_body_size=8_000_000``
    Largest POST body in bytes; larger: ``{"status": 413}``, the connection closes unread.
``path="/longpoll"``
    The suffix under the mount path.

Requests that are not socket upgrades go to ``Endpoint(http_app=...)`` (any WSGI app), or
get 404. Server options (``Endpoint.child_specs(server={...})``): ``host``, ``port``,
``backlog=1024``, ``request_timeout=10_000`` (ms for a whole request head; a silent
connection is dropped, a started one gets 408), ``certfile``/``keyfile``/``cacertfile``/
``verify_peer`` (TLS), ``trusted_proxies`` (addresses or CIDRs whose forwarding headers are
believed), ``reuse_port=False`` (SO_REUSEPORT, for several processes on one port).
"""

from __future__ import annotations

import http.client as http_client
import logging
import signal
from collections.abc import Callable
from time import monotonic
from typing import Any, cast
from urllib.parse import parse_qsl, urlsplit

import gevent
import gevent.event
from gevent import get_hub, getcurrent
from gevent.pywsgi import WSGIHandler, WSGIServer
from gevent.socket import socket as _PLAIN_SOCKET

import actors
from actors import GenServer
from actors import _runtime as rt
from supervision import ChildSpec

from ._memory import start_memory_reclaimer
from ._socket import connect
from ._transport import OUTBOUND_POLICIES, ConnectionLost, serve_stream, spawn_stream
from .serializers import DEFAULT_SERIALIZERS, validate_serializers
from .session import load_session, session_option
from .websocket import WebSocketError, WebSocketHandler
from .websocket._handshake import Refusal, check_request

log = logging.getLogger("transport.http")

__all__ = ["EndpointApp", "HttpServer", "longpoll_options", "main", "websocket_options"]

WEBSOCKET_DEFAULTS: dict[str, Any] = {
    "check_origin": True,
    "connect_info": [],
    "timeout": 60_000,
    "max_frame_size": 8 * 1024 * 1024,
    "max_outbound_bytes": 8 * 1024 * 1024,
    "outbound_policy": "close",
    "serializer": None,
    "error_handler": None,
    "write_timeout": 10_000,
    "path": "/websocket",
    "hibernate_after": 15_000,
}

#: Milliseconds a client has to send a whole request head (and a keep-alive connection to
#: start its next request); the server option ``request_timeout``.
DEFAULT_REQUEST_TIMEOUT_MS = 10_000

_CONNECT_INFO_KEYS = ("peer_data", "x_headers", "uri", "user_agent", "trace_context_headers", "sec_websocket_headers")


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
    opts["connect_info"] = connect_info_option(opts["connect_info"])
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
    for key in ("max_frame_size", "max_outbound_bytes"):
        if opts[key] is not None and (isinstance(opts[key], bool) or not isinstance(opts[key], int) or opts[key] <= 0):
            raise ValueError(f"{key} must be a positive int or None; got {opts[key]!r}")
    if opts["outbound_policy"] not in OUTBOUND_POLICIES:
        raise ValueError(f"outbound_policy must be one of {OUTBOUND_POLICIES}; got {opts['outbound_policy']!r}")
    hib = opts["hibernate_after"]
    if hib is not None and (isinstance(hib, bool) or not isinstance(hib, (int, float)) or hib < 0):
        raise ValueError(f"hibernate_after must be a non-negative number of milliseconds or None; got {hib!r}")
    return opts


def longpoll_options(value: Any) -> dict[str, Any] | None:
    """Validate a mount's ``longpoll`` option: the full options dict, or None when off."""
    from .longpoll import longpoll_options as validate

    def common(opts: dict) -> None:
        opts["serializer"] = validate_serializers(opts["serializer"] or DEFAULT_SERIALIZERS)
        opts["connect_info"] = connect_info_option(opts["connect_info"])
        check = opts["check_origin"]
        if isinstance(check, list):
            opts["check_origin"] = [_parse_allowed_origin(o) for o in check]
        elif not (check is True or check is False or callable(check)):
            raise TypeError(f"check_origin must be True, False, a list of origins or a callable; got {check!r}")

    return validate(value, common)


def connect_info_option(entries: Any) -> list:
    """Validate a mount's ``connect_info`` list (shared by the WebSocket and LongPoll
    transports); a ``("session", ...)`` entry is normalised by :func:`session_option`."""
    if not isinstance(entries, (list, tuple)):
        raise TypeError(f"connect_info must be a list, got {entries!r}")
    checked: list = []
    for item in entries:
        if isinstance(item, tuple) and len(item) == 2 and item[0] == "session":
            checked.append(("session", session_option(item[1])))
        elif item in _CONNECT_INFO_KEYS or (isinstance(item, tuple) and len(item) == 2):
            checked.append(item)
        else:
            raise ValueError(f"connect_info entries are {_CONNECT_INFO_KEYS}, ('session', ...) or (key, value); got {item!r}")
    return checked


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
        self.longpoll_routes: dict[str, Any] = {}
        for path, handler, opts in endpoint.sockets:
            unknown = set(opts) - {"websocket", "longpoll", "drainer", "partitions"}
            if unknown:
                raise TypeError(f"unknown socket mount option(s) {sorted(unknown)} for {path!r}")
            lp = longpoll_options(opts.get("longpoll", False))
            if lp is not None:
                from .longpoll import LongPollHandler

                self.longpoll_routes[path.rstrip("/") + lp["path"]] = LongPollHandler(
                    endpoint, handler, lp, self._origin_refused, lambda environ, keys: _connect_info(environ, keys, self.endpoint)
                )
            ws = websocket_options(opts.get("websocket", True))
            if ws is not None:
                self.websocket_routes[path.rstrip("/") + ws["path"]] = _Mount(path, handler, ws)

    def __call__(self, environ: dict, start_response: Callable) -> Any:
        refusal = environ.pop("greenphx.refusal", None)
        if refusal is not None:
            status, headers, body = refusal
            start_response(status, headers)
            return [body]
        longpoll = self.longpoll_routes.get(environ.get("PATH_INFO", ""))
        if longpoll is not None:
            return longpoll(environ, start_response)
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
        if self._origin_refused(environ, opts):
            return ("refuse", "403 Forbidden", [("Content-Type", "text/plain")], b"Forbidden")
        params = _query_params(environ.get("QUERY_STRING", ""))
        result = connect(
            mount.handler,
            endpoint=self.endpoint,
            transport="websocket",
            params=params,
            connect_info=_connect_info(environ, opts["connect_info"], self.endpoint),
            serializers=opts["serializer"],
        )
        if isinstance(result, tuple) and result[0] == "ok":
            return ("accept", mount, result[1])
        if isinstance(result, tuple) and result[0] == "error" and opts["error_handler"] is not None:
            status, headers, body = opts["error_handler"](environ, result[1])
            return ("refuse", status, list(headers), body if isinstance(body, bytes) else str(body).encode())
        return ("refuse", "403 Forbidden", [("Content-Type", "text/plain")], b"Forbidden")

    def _origin_refused(self, environ: dict, opts: dict) -> bool:
        """True (and logged, as Phoenix logs it) when the request's Origin is not allowed."""
        origin = environ.get("HTTP_ORIGIN")
        if origin is None or _origin_allowed(origin, opts["check_origin"], self._host(environ)):
            return False
        log.error(
            "Could not check origin for Phoenix.Socket transport.\n\nOrigin of the request: %s\n\n"
            "This happens when you are attempting a socket connection to a different host than the one "
            "configured in your endpoint, or the origin is not listed in check_origin.",
            origin,
        )
        return True

    def _host(self, environ: dict) -> str | None:
        url = getattr(self.endpoint, "url", None) or {}
        if url.get("host"):
            return str(url["host"])
        host = environ.get("HTTP_HOST") or environ.get("SERVER_NAME")
        if not host:
            return None
        return urlsplit("//" + host).hostname


# Query strings that hold only the protocol version ("vsn=2.0.0", what phoenix.js sends
# when the app adds no params) -> their params, parsed once. A string with anything else
# (a token, say) is parsed every time and never kept: secrets do not linger in a cache.
_QUERY_CACHE: dict[str, dict[str, str]] = {}
_QUERY_CACHE_MAX = 64
_CACHEABLE_KEYS = frozenset({"vsn"})


def _query_params(query: str) -> dict[str, str]:
    """``query``'s params as a fresh dict (connect may change it), the last value of a
    repeated key winning, as Plug's ``fetch_query_params``."""
    cached = _QUERY_CACHE.get(query)
    if cached is None:
        cached = dict(parse_qsl(query, keep_blank_values=True))
        if len(_QUERY_CACHE) < _QUERY_CACHE_MAX and cached.keys() <= _CACHEABLE_KEYS:
            _QUERY_CACHE[query] = cached
    return dict(cached)


def _connect_info(environ: dict, keys: list, endpoint: Any) -> dict[str, Any]:
    """What ``connect`` gets as ``connect_info`` for this request (Phoenix's
    ``Phoenix.Socket.Transport.connect_info/3``); ``keys`` went through
    :func:`connect_info_option`."""
    info: dict[str, Any] = {}
    for key in keys:
        if isinstance(key, tuple):
            info[key[0]] = load_session(key[1], environ, endpoint) if key[0] == "session" else key[1]
        elif key == "peer_data":
            info["peer_data"] = {
                "address": environ.get("REMOTE_ADDR"),
                "port": int(environ.get("REMOTE_PORT") or 0),
                "ssl_cert": environ.get("greenphx.peer_cert"),
            }
        elif key == "x_headers":
            info["x_headers"] = _headers_with_prefix(environ, "HTTP_X_")
        elif key == "sec_websocket_headers":
            info["sec_websocket_headers"] = _headers_with_prefix(environ, "HTTP_SEC_WEBSOCKET_")
        elif key == "uri":
            info["uri"] = _uri(environ)
        elif key == "user_agent":
            info["user_agent"] = environ.get("HTTP_USER_AGENT")
        elif key == "trace_context_headers":
            info["trace_context_headers"] = [
                (name, environ[f"HTTP_{name.upper()}"])
                for name in ("traceparent", "tracestate")
                if f"HTTP_{name.upper()}" in environ
            ]
    return info


def _headers_with_prefix(environ: dict, prefix: str) -> list[tuple[str, str]]:
    return [(k[5:].lower().replace("_", "-"), v) for k, v in environ.items() if k.startswith(prefix)]


def _uri(environ: dict) -> dict[str, Any]:
    # The fields of Elixir's %URI{} as Phoenix fills them from the conn: authority is the
    # host alone, fragment and userinfo never reach a server.
    host_header = environ.get("HTTP_HOST") or environ.get("SERVER_NAME", "")
    host = urlsplit("//" + host_header)
    scheme = environ.get("wsgi.url_scheme", "http")
    try:
        port = host.port
    except ValueError:
        port = None
    if port is None:  # as Cowboy: the Host header's port, else the scheme's default
        port = 443 if scheme == "https" else 80
    return {
        "scheme": scheme,
        "host": host.hostname,
        "port": port,
        "path": environ.get("PATH_INFO", ""),
        "query": environ.get("QUERY_STRING", ""),
        "fragment": None,
        "userinfo": None,
        "authority": host.hostname,
    }


class _WebSocketIO:
    """serve_stream()'s io over a WebSocket: the transport process writes, and pushers
    write through send_nowait while it waits idle (see transport._transport.push)."""

    __slots__ = ("ws", "peer", "path", "send_nowait", "send_built_nowait")

    def __init__(self, ws: Any, peer: str | None, path: str | None) -> None:
        self.ws = ws
        # The WebSocket's own methods, not wrappers: a broadcast calls one per subscriber
        # (send_built_nowait with the frame it built once for all of them).
        self.send_nowait = ws.send_frame_nowait
        self.send_built_nowait = ws.send_built_nowait
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

    def abort(self, reason: str) -> None:
        """Drop the connection now (a write blocked on it fails at once)."""
        self.ws.abort(reason)


def run_websocket(ws: Any, mount: _Mount, connection: Any, peer: str | None = None, path: str | None = None) -> bool:
    """Run one upgraded connection. Over plain TCP the connection's process is handed on
    to its transport (:func:`spawn_stream`: it can hibernate) and this returns True at once:
    the HTTP handler returns without closing the socket. Over TLS this greenlet becomes
    the transport process, reading frames and writing pushes itself, then completes the
    closing handshake, and False is returned."""
    opts = mount.options
    if ws.release_handler():
        spawn_stream(
            connection,
            _WebSocketIO(ws, peer, path),
            ws,
            opts["timeout"] / 1000.0,
            opts["max_outbound_bytes"],
            opts["outbound_policy"],
            None if opts["hibernate_after"] is None else opts["hibernate_after"] / 1000.0,
        )
        return True
    serve_stream(
        connection,
        _WebSocketIO(ws, peer, path),
        ws,
        opts["timeout"] / 1000.0,
        opts["max_outbound_bytes"],
        opts["outbound_policy"],
    )
    ws.wait_closed()  # the closing handshake, before pywsgi drops the TCP socket
    return False


class _HeadTimeout(BaseException):
    """The request head took too long (a BaseException: pywsgi's ``except Exception``
    must let it through to ``handle_one_request``)."""


class PhoenixHandler(WebSocketHandler):
    """pywsgi handler: decides socket upgrades (origin, connect) before the handshake."""

    def run_application(self) -> Any:
        app = self.application
        apply_forwarded(self.environ, getattr(self.server, "trusted_proxies", ()))
        sock = self.socket  # type: ignore[has-type]
        # A plain socket has no certificate; asking it is an AttributeError raised through
        # gevent's __getattr__ (about 1 µs, on every connection).
        if sock.__class__ is not _PLAIN_SOCKET:
            getpeercert = getattr(sock, "getpeercert", None)
            if getpeercert is not None:
                self.environ["greenphx.peer_cert"] = getpeercert(binary_form=True)
        # The handshake is judged before any user code runs: a request that is no upgrade
        # (a POST, a stripped Connection header) reaches the app, which answers 400 on a
        # socket path, and a broken one (bad version or key) gets its 4xx from
        # upgrade_websocket; only a valid handshake gets the origin check and connect.
        verdict = check_request(self.environ, self.request_version, self.SUPPORTED_VERSIONS)
        wants_upgrade = verdict is not None and verdict.__class__ is not Refusal
        decision = app.websocket_decision(self.environ) if wants_upgrade and isinstance(app, EndpointApp) else None
        if decision is None:
            if wants_upgrade and isinstance(app, EndpointApp):
                # A handshake for a path with no WebSocket mount: plain HTTP (404, or the
                # endpoint's http_app), never a 101 that nothing will serve.
                return WSGIHandler.run_application(self)
            return super().run_application()
        if decision[0] == "refuse":
            # Plain HTTP, past every WebSocket handler in the MRO: no upgrade may happen.
            self.environ["greenphx.refusal"] = decision[1:]
            return WSGIHandler.run_application(self)
        _accept, _mount, connection = decision
        self.ws_verdict = verdict  # judged above: upgrade_websocket need not judge it again
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
            if run_websocket(ws, _mount, connection, peer, path):
                # The transport process owns the socket now: pywsgi must neither read
                # from it nor close it when this greenlet ends.
                self.server.hand_off(self.socket)  # type: ignore[has-type]
                self.socket = None
                self.close_connection = True
        finally:
            self.websocket = None
        return None

    # -- the request head: bounded in time, malformed ones answered in one line ---------

    def handle_one_request(self) -> Any:
        # One deadline for the whole request head (Cowboy's request_timeout, Bandit's
        # read_timeout): a client that sends nothing, or trickles its head a byte at a time,
        # is dropped instead of holding a file descriptor and a greenlet forever. It also
        # bounds how long a keep-alive connection may wait for its next request.
        seconds = getattr(self.server, "request_timeout", DEFAULT_REQUEST_TIMEOUT_MS) / 1000.0
        # A bare loop timer that throws into this greenlet (what gevent.Timeout does, without
        # its Python-level object and three method calls per request).
        expired = _HeadTimeout()
        timer = self._head_timer = get_hub().loop.timer(seconds)
        self._head_state = "line"
        timer.start(getcurrent().throw, expired)
        try:
            return super().handle_one_request()
        except _HeadTimeout as e:
            if e is not expired:
                raise
            self.close_connection = True
            if self._head_state == "headers":
                _client_errors.log(
                    "request_timeout", "request head from %s not complete within %.0f s: 408", self.client_address, seconds
                )
                return ("408", _REQUEST_TIMEOUT_RESPONSE)
            return None  # nothing (or only a partial request line) came: just close, as Cowboy
        finally:
            timer.close()

    def read_request(self, raw_requestline: str) -> Any:
        self._head_state = "headers"
        try:
            return super().read_request(raw_requestline)
        finally:
            self._head_timer.close()  # the head is in: the application's time is its own

    def _handle_client_error(self, ex: BaseException) -> Any:
        # pywsgi prints a traceback to stderr for anything but a ValueError, whatever the log
        # level: one rate-limited line instead.
        self._head_timer.close()
        if isinstance(ex, http_client.HTTPException) and "headers" in str(ex):
            _client_errors.log("too_many_headers", "request from %s: %s: 431", self.client_address, ex)
            return ("431", _TOO_MANY_HEADERS_RESPONSE)
        _client_errors.log("bad_request", "invalid request from %s: %s: 400", self.client_address, str(ex) or type(ex).__name__)
        return ("400", _BAD_REQUEST_RESPONSE)

    def log_request(self) -> None:
        """Access lines at DEBUG on transport.http (gevent-websocket logs them at INFO)."""
        if log.isEnabledFor(logging.DEBUG):
            log.debug(self.format_request())


def _canned(status: str, body: bytes) -> bytes:
    return (
        f"HTTP/1.1 {status}\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body
    )


_BAD_REQUEST_RESPONSE = _canned("400 Bad Request", b"Bad Request")
_REQUEST_TIMEOUT_RESPONSE = _canned("408 Request Timeout", b"Request Timeout")
_TOO_MANY_HEADERS_RESPONSE = _canned("431 Request Header Fields Too Large", b"Request Header Fields Too Large")


SERVER_OPTIONS = frozenset(
    {
        "host",
        "port",
        "backlog",
        "request_timeout",
        "certfile",
        "keyfile",
        "cacertfile",
        "verify_peer",
        "trusted_proxies",
        "reuse_port",
    }
)


def _reuse_port_listener(host: str, port: int, backlog: int) -> Any:
    """A listening socket that other processes may bind too (SO_REUSEPORT): the kernel
    spreads new connections over every process listening on the port (phx-serve --workers)."""
    import socket as stdsocket

    from gevent import socket as gsocket

    family = stdsocket.AF_INET6 if ":" in host else stdsocket.AF_INET
    sock = gsocket.socket(family, stdsocket.SOCK_STREAM)
    try:
        sock.setsockopt(stdsocket.SOL_SOCKET, stdsocket.SO_REUSEADDR, 1)
        sock.setsockopt(stdsocket.SOL_SOCKET, stdsocket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    return sock


def tls_context(opts: dict) -> dict[str, Any]:
    """The WSGIServer keyword for TLS from server options, or {} for plain HTTP.

    ``certfile`` and ``keyfile`` (PEM) turn TLS on, as Phoenix's ``https:`` config;
    ``cacertfile`` asks clients for a certificate signed by those CAs (it reaches
    ``connect_info["peer_data"]["ssl_cert"]`` as DER bytes) and ``verify_peer=True`` refuses
    clients without one.
    """
    certfile = opts.get("certfile")
    if certfile is None:
        if opts.get("keyfile") or opts.get("cacertfile"):
            raise ValueError("keyfile and cacertfile need a certfile")
        return {}
    import ssl

    from gevent import ssl as gevent_ssl  # cooperative sockets whether or not ssl is patched

    context = gevent_ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certfile, opts.get("keyfile"))
    if opts.get("cacertfile"):
        context.load_verify_locations(opts["cacertfile"])
        context.verify_mode = ssl.CERT_REQUIRED if opts.get("verify_peer") else ssl.CERT_OPTIONAL
    elif opts.get("verify_peer"):
        raise ValueError("verify_peer needs a cacertfile")
    return {"ssl_context": context}


def trusted_networks(entries: Any) -> tuple:
    """Parse ``trusted_proxies`` (addresses or CIDR blocks) into networks."""
    import ipaddress

    if isinstance(entries, str):
        entries = [entries]
    try:
        return tuple(ipaddress.ip_network(e, strict=False) for e in entries)
    except ValueError as e:
        raise ValueError(f"trusted_proxies: {e}") from None


def _trusted(address: str | None, networks: tuple) -> bool:
    if not networks or not address:
        return False
    import ipaddress

    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in networks)


def apply_forwarded(environ: dict, networks: tuple) -> None:
    """Behind trusted proxies: the client's address, scheme and host from ``Forwarded`` (RFC
    7239) or ``X-Forwarded-For``/``-Proto``/``-Host``, as Plug.RewriteOn does; every later
    reader (connect_info, logs, the shell, check_origin) sees the client, not the proxy.

    The chain is read from the right, skipping trusted hops, so a client cannot forge its
    address by sending the header itself. Untrusted peers' headers are ignored.
    """
    if not _trusted(environ.get("REMOTE_ADDR"), networks):
        return
    hops: list[dict[str, str]] = []
    forwarded = environ.get("HTTP_FORWARDED")
    if forwarded:
        for element in forwarded.split(","):
            pairs = {}
            for pair in element.split(";"):
                key, _, value = pair.strip().partition("=")
                pairs[key.lower()] = value.strip().strip('"')
            hops.append(pairs)
    elif environ.get("HTTP_X_FORWARDED_FOR"):
        hops = [{"for": part.strip()} for part in environ["HTTP_X_FORWARDED_FOR"].split(",")]
        last = hops[-1]
        if environ.get("HTTP_X_FORWARDED_PROTO"):
            last["proto"] = environ["HTTP_X_FORWARDED_PROTO"].split(",")[-1].strip()
        if environ.get("HTTP_X_FORWARDED_HOST"):
            last["host"] = environ["HTTP_X_FORWARDED_HOST"].split(",")[-1].strip()
    client = None
    for hop in reversed(hops):
        address = hop.get("for", "")
        if address.startswith("["):  # [v6]:port
            address = address[1 : address.find("]")]
        elif address.count(":") == 1:  # v4:port
            address = address.split(":")[0]
        client = (address, hop)
        if not _trusted(address, networks):
            break
    if client is None:
        return
    address, hop = client
    environ["REMOTE_ADDR"] = address
    environ["REMOTE_PORT"] = "0"  # the client's port is the proxy's secret
    if hop.get("proto") in ("http", "https"):
        environ["wsgi.url_scheme"] = hop["proto"]
    if hop.get("host"):
        environ["HTTP_HOST"] = hop["host"]


class RateLimitedLog:
    """At most one line per kind every ``interval`` seconds; the next line says how many
    were left out. For what clients can cause at will (malformed requests)."""

    def __init__(self, logger: logging.Logger, interval: float = 10.0) -> None:
        self.logger = logger
        self.interval = interval
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def log(self, kind: str, message: str, *args: Any) -> bool:
        """Log ``message`` (a warning) unless this kind was logged within the interval."""
        now = monotonic()
        last = self._last.get(kind)
        if last is not None and now - last < self.interval:
            self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
            return False
        self._last[kind] = now
        left_out = self._suppressed.pop(kind, 0)
        if left_out:
            message += f" ({left_out} more like it in the last {self.interval:.0f} s not logged)"
        self.logger.warning(message, *args)
        return True


_client_errors = RateLimitedLog(log)


class _QuietLog:
    """pywsgi's access log, at DEBUG on the transport.http logger instead of stderr."""

    def write(self, line: str) -> None:
        log.debug(line.rstrip())

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        """Nothing buffered here (gevent's log stream protocol)."""


def _spawn_connection(handle: Callable[..., Any], *args: Any) -> None:
    """The server's spawn: each accepted connection's handler runs in a greenlet from the
    runtime's pool, adopted as a process if it uses the runtime (a socket's ``connect``, a
    LongPoll request). A WebSocket upgrade hands that process on to its transport
    (``spawn_stream``), which then runs in the same greenlet once pywsgi's handler has
    returned: one greenlet per connection where a gevent greenlet per connection and a
    second one for the transport cost about 7 µs each to create (most of it the kernel
    mapping a new frame stack)."""
    rt._spawn_plain(handle, args, "transport.http.connection")


class _Server(WSGIServer):
    """pywsgi's server, with failed TLS handshakes (a plain HTTP client on the TLS port, a
    scanner, a client refusing our certificate) closed quietly: one rate-limited line
    instead of a traceback from the greenlet."""

    _handed_off: set | None = None

    request_timeout: float = DEFAULT_REQUEST_TIMEOUT_MS
    trusted_proxies: tuple = ()

    def hand_off(self, sock: Any) -> None:
        """``sock`` outlives its handler (an upgraded connection's transport owns it): the
        handler's end does not close it."""
        if self._handed_off is None:
            self._handed_off = set()
        self._handed_off.add(id(sock))

    def do_close(self, sock: Any, *args: Any) -> None:
        handed_off = self._handed_off
        if handed_off and id(sock) in handed_off:
            handed_off.discard(id(sock))
            return
        super().do_close(sock, *args)

    def wrap_socket_and_handle(self, client_socket: Any, address: Any) -> Any:
        try:
            ssl_socket = self.wrap_socket(client_socket, **self.ssl_args)  # type: ignore[misc, arg-type]
        except (OSError, ValueError) as e:  # ssl.SSLError is an OSError
            _client_errors.log("tls_handshake", "TLS handshake with %s failed: %s", address, e)
            client_socket.close()
            return None
        try:
            return self.handle(ssl_socket, address)
        finally:
            ssl_socket.close()


class HttpServer(GenServer):
    """The endpoint's HTTP listener as a process of the tree (between pools and drainers)."""

    @classmethod
    def child_spec(cls, arg: Any = None) -> ChildSpec:
        """``arg``: ``(endpoint, {"host": ..., "port": ...})``."""
        return ChildSpec(id=("http", arg[0].name), start=(cls.start_link, (arg,)), shutdown=10_000)

    def init(self, arg: Any) -> Any:
        endpoint, opts = arg
        actors.trap_exit(True)
        unknown = set(opts) - SERVER_OPTIONS
        if unknown:
            return ("stop", ("bad_option", f"unknown server option(s) {sorted(unknown)}; known: {sorted(SERVER_OPTIONS)}"))
        app = EndpointApp(endpoint)
        host = opts.get("host", "127.0.0.1")
        port = opts.get("port", 4000)
        try:
            ssl_args = tls_context(opts)
            proxies = trusted_networks(opts.get("trusted_proxies") or ())
        except (OSError, ValueError) as e:
            return ("stop", ("bad_option", str(e)))
        try:
            # Ranch's (Cowboy's acceptor) default backlog: 128 dropped SYNs in connect bursts,
            # each costing the client a 1 s retransmit.
            server = _Server(
                _reuse_port_listener(host, port, opts.get("backlog", 1024)) if opts.get("reuse_port") else (host, port),
                app,
                spawn=cast(Any, _spawn_connection),  # gevent ignores what spawn returns
                handler_class=PhoenixHandler,
                log=_QuietLog(),
                error_log=_QuietLog(),
                backlog=None if opts.get("reuse_port") else opts.get("backlog", 1024),  # a listening socket has one
                **ssl_args,
            )
            server.request_timeout = opts.get("request_timeout", DEFAULT_REQUEST_TIMEOUT_MS)
            server.trusted_proxies = proxies
            server.start()
        except OSError as e:
            return ("stop", ("listen_failed", host, port, str(e)))
        endpoint.bound = server.address
        endpoint.scheme = "https" if ssl_args else "http"
        log.info("Running %s at %s://%s:%s", endpoint.name, endpoint.scheme, server.address[0], server.address[1])
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


def main(endpoint: Any, children: list, argv: list[str] | None = None, *, announce: tuple = ()) -> int:
    """Serve ``endpoint`` with ``children`` until SIGTERM/SIGINT; prints ``listening on URL``.

    ``announce``: other endpoints whose listeners ``children`` already hold; each gets a
    ``listening on URL (name)`` line after the first one.
    """
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
    start_memory_reclaimer()
    stop = gevent.event.Event()
    gevent.signal_handler(signal.SIGTERM, stop.set)
    gevent.signal_handler(signal.SIGINT, stop.set)
    host, port = endpoint.bound[:2]  # announced once a signal would drain the tree
    print(f"listening on {endpoint.scheme}://{host}:{port}", flush=True)
    for other in announce:
        print(f"listening on {other.scheme}://{other.bound[0]}:{other.bound[1]} ({other.name})", flush=True)
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
