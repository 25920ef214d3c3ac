"""The LongPoll HTTP handler: one WSGI call per request, Phoenix's ``Phoenix.Transports.LongPoll``.

Each request runs as a process (the WSGI greenlet, adopted for the request and released
after it), so it can wait for its session's answer with a selective receive:

* ``OPTIONS``: the CORS preflight; ``GET``/``POST``: below; any other method: HTTP 400.
* The origin is checked first (``check_origin``); refused: ``{"status": 403}``.
* ``GET`` with a token of a live session: the buffered messages (200), or, after waiting
  up to ``window_ms`` for one, 204. Without a valid token: ``connect``, then a new session
  and ``{"status": 410, "token": ...}``; a refused connect or vsn: 403.
* ``POST`` with a token of a live session: its frames go to the session, 200 once the
  socket layer took them, 408 when it did not within ``window_ms``; 400 for a body that
  is not a message, 413 over ``max_body_size``. Without a live session: 410.

Every answer is HTTP 200 with the status in its JSON body and
``access-control-allow-origin: *`` (the origin was checked on the request).

Finding the session: a token names ``(endpoint_id, pid, priv_topic)``. When the
endpoint_id is this endpoint instance's own, the session is this OS process's: messages go
to its pid (and a dead pid means the session ended). Otherwise the request subscribes to
the private topic and asks over PubSub, waiting up to ``pubsub_timeout_ms`` for the
session to say it is alive: any instance sharing the PubSub and the secret can serve any
session's requests, without sticky load balancing.
"""

from __future__ import annotations

import logging
import os
import weakref
from collections.abc import Callable
from time import monotonic
from typing import Any
from urllib.parse import parse_qsl

import actors
from actors import TIMEOUT, Pid
from actors import _runtime as _rt
from supervision import SupervisorError, spawn_child

from .. import pubsub
from .. import token as _token
from .._socket import connect
from . import _session as S
from ._core import (
    BadRequest,
    cors_preflight_headers,
    json_headers,
    new_priv_topic,
    parse_body,
    session_token_data,
    status_body,
    token_session,
)

log = logging.getLogger("transport.longpoll")

__all__ = ["LongPollHandler", "endpoint_id", "supervisor_name"]

_ids: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()


def endpoint_id(endpoint: Any) -> str:
    """This endpoint instance's id in session tokens (random per instance, as Phoenix's)."""
    eid = _ids.get(endpoint)
    if eid is None:
        eid = _ids[endpoint] = os.urandom(12).hex()
    return eid


def supervisor_name(endpoint: Any) -> str:
    """The registered name of the endpoint's LongPoll session supervisor."""
    return f"{endpoint.name}.LongPoll.Supervisor"


def _new_ref() -> str:
    return os.urandom(9).hex()


class _Target:
    """How a request reaches its session: by pid (this instance) or by its topic."""

    __slots__ = ("pid", "topic", "server", "me", "monitor")

    def __init__(self, pid: Pid | None, topic: str, server: str, me: Pid) -> None:
        self.pid = pid
        self.topic = topic
        self.server = server
        self.me = me
        self.monitor = actors.monitor(pid) if pid is not None else None

    @property
    def reply_to(self) -> Any:
        return self.me if self.pid is not None else self.topic

    def send(self, msg: tuple) -> None:
        if self.pid is not None:
            actors.send(self.pid, msg)
        else:
            pubsub.broadcast_from(self.server, self.me, self.topic, msg)

    def down(self, msg: Any) -> bool:
        return (
            self.monitor is not None and msg.__class__ is tuple and len(msg) == 5 and msg[0] == "DOWN" and msg[1] is self.monitor
        )


class LongPollHandler:
    """Serves one mount's LongPoll path (``<mount>/longpoll``) as a WSGI application."""

    def __init__(
        self,
        endpoint: Any,
        handler: Any,
        opts: dict,
        origin_refused: Callable[[dict, dict], bool],
        connect_info: Callable[[dict, list], dict],
    ) -> None:
        if getattr(endpoint, "secret_key_base", None) is None:
            raise ValueError(
                f"{endpoint.name}: the LongPoll transport signs session tokens, so the endpoint needs "
                "secret_key_base (64 bytes or more)"
            )
        if getattr(endpoint, "pubsub_server", None) is None:
            raise ValueError(f"{endpoint.name}: the LongPoll transport needs the endpoint's pubsub_server")
        self.endpoint = endpoint
        self.handler = handler
        self.opts = opts
        self.origin_refused = origin_refused
        self.connect_info = connect_info
        self.salt = str(endpoint.pubsub_server)
        self.window_s = opts["window_ms"] / 1000.0
        self.pubsub_timeout_s = opts["pubsub_timeout_ms"] / 1000.0

    # -- WSGI -------------------------------------------------------------------------

    def __call__(self, environ: dict, start_response: Callable) -> list[bytes]:
        if self.origin_refused(environ, self.opts):
            return self._json(start_response, 403)
        method = environ.get("REQUEST_METHOD", "GET")
        if method == "OPTIONS":
            start_response("200 OK", cors_preflight_headers(environ.get("HTTP_ACCESS_CONTROL_REQUEST_HEADERS")))
            return [b""]
        if method not in ("GET", "POST"):
            start_response("400 Bad Request", [("access-control-allow-origin", "*"), ("Content-Length", "0")])
            return [b""]
        params = dict(parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True))
        try:
            _rt._adopt_current("transport.longpoll.request")
            if method == "GET":
                return self._get(environ, start_response, params)
            return self._post(environ, start_response, params)
        finally:
            # Each request is its own process: nothing it subscribed to or was sent outlives it.
            _rt._release_current()

    def _json(
        self,
        start_response: Callable,
        status: int,
        token: str | None = None,
        messages: list | None = None,
        extra: list | None = None,
    ) -> list[bytes]:
        body = status_body(status, token, messages)
        start_response("200 OK", json_headers(len(body)) + (extra or []))
        return [body]

    # -- GET ----------------------------------------------------------------------------

    def _get(self, environ: dict, start_response: Callable, params: dict) -> list[bytes]:
        target = self._resume(params)
        if target is None:
            return self._new_session(environ, start_response, params)
        token = params["token"]
        ref = _new_ref()
        target.send((S.FLUSH, target.reply_to, ref))
        answers = (S.MESSAGES, S.NOW_AVAILABLE, S.SUPERSEDED, S.FAILED)

        def match(m: Any) -> bool:
            return (m.__class__ is tuple and len(m) >= 2 and m[-1] == ref and m[0] in answers) or target.down(m)

        deadline = monotonic() + self.window_s
        while True:
            msg = actors.receive(match, max(0.0, deadline - monotonic()), default=TIMEOUT)
            if msg is TIMEOUT or target.down(msg) or msg[0] == S.SUPERSEDED:
                return self._json(start_response, 204, token, [])
            if msg[0] == S.MESSAGES:
                return self._json(start_response, 200, token, msg[1])
            if msg[0] == S.FAILED:
                return self._json(start_response, 500, token, [])
            # NOW_AVAILABLE: ask again, and wait a whole window again, as Phoenix does.
            target.send((S.FLUSH, target.reply_to, ref))
            deadline = monotonic() + self.window_s

    def _new_session(self, environ: dict, start_response: Callable, params: dict) -> list[bytes]:
        opts = self.opts
        result = connect(
            self.handler,
            endpoint=self.endpoint,
            transport="longpoll",
            params=params,
            connect_info=self.connect_info(environ, opts["connect_info"]),
            serializers=opts["serializer"],
        )
        if not (isinstance(result, tuple) and result[0] == "ok"):
            return self._json(start_response, 403)
        conn = result[1]
        priv_topic = new_priv_topic()
        peer = f"{environ.get('REMOTE_ADDR')}:{environ.get('REMOTE_PORT')}"
        try:
            pid = spawn_child(
                supervisor_name(self.endpoint), S.run_session, conn, priv_topic, opts, peer, environ.get("PATH_INFO")
            )
        except SupervisorError as e:
            log.error(
                "%s: cannot start a LongPoll session (%s): is the endpoint's LongPoll supervisor in the tree "
                "(Endpoint.child_specs)?",
                self.endpoint.name, e,
            )  # fmt: skip
            return self._json(start_response, 500)
        data = session_token_data(endpoint_id(self.endpoint), pid, priv_topic)
        token = _token.sign(self.endpoint, self.salt, data, max_age=opts["crypto"]["max_age"])
        return self._json(start_response, 410, token, [])

    # -- POST -------------------------------------------------------------------------

    def _post(self, environ: dict, start_response: Callable, params: dict) -> list[bytes]:
        limit = self.opts["max_body_size"]
        try:
            declared = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            declared = 0
        if declared > limit:
            return self._too_large(environ, start_response)
        target = self._resume(params)
        if target is None:
            return self._json(start_response, 410)
        body = _read_body(environ, limit)
        if body is None:
            return self._too_large(environ, start_response)
        try:
            frames = parse_body(body, environ.get("CONTENT_TYPE"))
        except BadRequest as e:
            log.warning("LongPoll POST refused (%d): %s", e.status, e.reason)
            return self._json(start_response, e.status)
        if not frames:
            return self._json(start_response, 200)
        ref = _new_ref()
        target.send((S.DISPATCH, target.reply_to, frames, ref))

        def match(m: Any) -> bool:
            return (m.__class__ is tuple and len(m) == 3 and m[0] == S.DISPATCHED and m[2] == ref) or target.down(m)

        msg = actors.receive(match, self.window_s, default=TIMEOUT)
        if msg is TIMEOUT or target.down(msg):
            return self._json(start_response, 408)
        return self._json(start_response, msg[1])

    def _too_large(self, environ: dict, start_response: Callable) -> list[bytes]:
        log.warning("LongPoll POST refused (413): body over max_body_size (%d bytes)", self.opts["max_body_size"])
        _skip_unread_body(environ)
        return self._json(start_response, 413, extra=[("Connection", "close")])

    # -- sessions -----------------------------------------------------------------------

    def _resume(self, params: dict) -> _Target | None:
        """The live session a request's token names, or None (no token, a bad one, or the
        session is gone)."""
        signed = params.get("token")
        if signed is None:
            return None
        status, data = _token.verify(self.endpoint, self.salt, signed, max_age=self.opts["crypto"]["max_age"])
        parts = token_session(data) if status == "ok" else None
        if parts is None:
            return None
        eid, pid_text, topic = parts
        server = self.endpoint.pubsub_server
        me = actors.self()
        if eid == endpoint_id(self.endpoint):
            try:
                pid = Pid.parse(pid_text)
            except (TypeError, ValueError):
                return None
            # Sessions never move: this instance's session is alive here or gone for good.
            return _Target(pid, topic, server, me) if actors.is_alive(pid) else None
        pubsub.subscribe(server, topic)
        ref = _new_ref()
        pubsub.broadcast_from(server, me, topic, (S.SUBSCRIBE, topic, ref))
        got = actors.receive(
            lambda m: m.__class__ is tuple and len(m) == 2 and m[0] == S.SUBSCRIBED and m[1] == ref,
            self.pubsub_timeout_s,
            default=TIMEOUT,
        )
        if got is TIMEOUT:
            return None
        return _Target(None, topic, server, me)


def _read_body(environ: dict, limit: int) -> bytes | None:
    """The request body, or None past ``limit`` bytes (never more than limit + 64 KiB read)."""
    stream = environ.get("wsgi.input")
    if stream is None:
        return b""
    length = environ.get("CONTENT_LENGTH")
    if length:
        try:
            return stream.read(int(length))
        except ValueError:
            return b""
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = stream.read(65536)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)


def _skip_unread_body(environ: dict) -> None:
    """Let the server close the connection instead of reading a refused body to its end.

    gevent.pywsgi discards an unread body after the answer (reading all of it); its input
    skips that when it is flagged as unusable, which is what a refused body is.
    """
    stream = environ.get("wsgi.input")
    if stream is not None and hasattr(stream, "_chunked_input_error"):
        try:
            stream._chunked_input_error = True
        except AttributeError:
            pass
