"""The pywsgi handler: gevent-websocket's ``WebSocketHandler`` with a correct handshake."""

from __future__ import annotations

import logging
from typing import Any, cast

from geventwebsocket import handler as _gwsh
from geventwebsocket.websocket import Stream

from ._connection import WebSocket
from ._handshake import SUPPORTED_VERSIONS, Refusal, check_request
from ._head import read_headers

__all__ = ["WebSocketHandler"]

log = logging.getLogger("transport.websocket")


class WebSocketHandler(_gwsh.WebSocketHandler):
    """Upgrades WebSocket requests, passes every other request to the WSGI application.

    Per-connection options, read when the upgrade succeeds (set them on a subclass or on
    ``self`` before :meth:`upgrade_websocket` runs): ``ws_max_message_size`` (None),
    ``ws_write_timeout`` (10.0), ``ws_close_timeout`` (2.0); ``websocket_class``
    (:class:`WebSocket`). Override :meth:`select_subprotocol` to accept a subprotocol.

    A bad handshake gets a 4xx answer (bytes body, connection closed) and one warning line
    on the ``transport.websocket`` logger; no traceback. After the application returns, the
    connection is closed with 1000 (1011 if it raised), the peer's close frame awaited for at
    most ``ws_close_timeout`` seconds, and the TCP connection closed.
    """

    SUPPORTED_VERSIONS = SUPPORTED_VERSIONS
    websocket_class = WebSocket
    ws_max_message_size: int | None = None
    ws_write_timeout: float | None = 10.0
    ws_close_timeout: float = 2.0
    websocket: WebSocket | None  # set by upgrade_websocket, cleared when the connection ends

    def MessageClass(self, fp: Any, *_args: Any) -> Any:  # noqa: N802 - pywsgi's name
        """The request's header block (pywsgi's hook): parsed in one pass, not through the
        stdlib's e-mail parser (see ``_head``)."""
        return read_headers(fp)

    def _headers(self) -> Any:
        # pywsgi's environ builder, over the parsed fields instead of re-split text lines:
        # HTTP_<NAME> per field, names holding "_" dropped (they could pass for a dash),
        # Content-Type and Content-Length left to get_environ's own keys.
        fields = getattr(self.headers, "fields", None)
        if fields is None:  # a subclass brought its own MessageClass
            yield from super()._headers()
            return
        for name, value in fields():
            if "_" in name:
                continue
            key = name.replace("-", "_").upper()
            if key != "CONTENT_TYPE" and key != "CONTENT_LENGTH":
                yield "HTTP_" + key, value

    def select_subprotocol(self, offered: list[str]) -> str | None:
        """The subprotocol to accept among those the client offered (in its order), or None.

        Called only when the client offered at least one. The default accepts none, so the
        101 carries no ``Sec-WebSocket-Protocol`` header. Returning a name that was not
        offered is a bug and raises ``ValueError``.
        """
        return None

    def upgrade_websocket(self) -> list[bytes] | None:
        """None if this is not a WebSocket request; a list of bytes after a refusal (status
        set); None after a successful upgrade, with ``self.websocket`` set and the 101 started.
        """
        environ = self.environ
        # A subclass that judged this very request already hands its verdict over (once).
        verdict = self.__dict__.pop("ws_verdict", None) or check_request(environ, self.request_version, self.SUPPORTED_VERSIONS)
        if verdict is None:
            return None
        if isinstance(verdict, Refusal):
            log.warning("refused WebSocket handshake from %s: %s", _peer(self), verdict.log_message)
            self.close_connection = True
            self.start_response(verdict.status, verdict.headers)
            return [verdict.body]
        offered = verdict.subprotocols
        protocol = self.select_subprotocol(list(offered)) if offered else None
        if protocol is not None and protocol not in offered:
            raise ValueError(f"select_subprotocol chose {protocol!r}, which the client did not offer ({offered})")
        self.websocket = self.websocket_class(
            environ,
            Stream(self),
            self,
            max_message_size=self.ws_max_message_size,
            write_timeout=self.ws_write_timeout,
            close_timeout=self.ws_close_timeout,
        )
        # Whatever follows the request head belongs to the WebSocket: pywsgi must not try to
        # discard a request "body" from the stream after the connection (a GET with a
        # Content-Length would otherwise read from the closed stream and log a traceback).
        try:
            self.wsgi_input.content_length = 0
            self.wsgi_input.chunked_input = False
        except AttributeError:
            pass
        environ.update(
            {
                "wsgi.websocket_version": verdict.version,
                "wsgi.websocket": self.websocket,
                "wsgi.websocket_subprotocol": protocol,
            }
        )
        headers = [("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Accept", verdict.accept)]
        if protocol is not None:
            headers.append(("Sec-WebSocket-Protocol", protocol))
        # permessage-deflate (and any other Sec-WebSocket-Extensions offer) is ignored: no
        # extension header, so clients send uncompressed frames.
        self.start_response("101 Switching Protocols", headers)
        return None

    def run_websocket(self) -> None:
        """Run the application on the upgraded connection, then end the connection properly."""
        if getattr(self, "prevent_wsgi_call", False):
            return
        ws = cast(WebSocket, self.websocket)  # called only after a successful upgrade
        clients = getattr(self.server, "clients", None)
        if clients is None:
            clients = self.server.clients = {}
        clients[self.client_address] = _gwsh.Client(self.client_address, ws)
        code = 1011
        try:
            result = self.application(self.environ, lambda status, headers, exc_info=None: None)
            try:
                for _ in result or ():
                    pass
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
            code = 1000
        finally:
            clients.pop(self.client_address, None)
            try:
                ws._finish(code)
            finally:
                self.environ["wsgi.websocket"] = None
                self.websocket = None


def _peer(handler: Any) -> str:
    address = handler.client_address
    if isinstance(address, tuple) and len(address) >= 2:
        return f"{address[0]}:{address[1]}"
    return str(address or "?")
