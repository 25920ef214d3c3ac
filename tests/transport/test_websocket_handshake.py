"""The opening handshake, over raw HTTP on 127.0.0.1 (defects 7, 8 and 11), plus the pure check."""

from __future__ import annotations

import logging
import socket as stdsocket
from typing import ClassVar

import gevent
import gevent.socket as gsocket
import pytest
from gevent.pywsgi import WSGIServer
from raw_ws import capture_hub_errors

from transport.websocket import (
    WebSocket,
    WebSocketHandler,
    accept_key,
    check_request,
    parse_list,
)

RFC_KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 section 1.3
RFC_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

SUPPORTED = ["v2.json", "v1.json"]


class Negotiating(WebSocketHandler):
    """Accepts the first offered subprotocol it supports; records what it was offered."""

    offers: ClassVar[list] = []

    def select_subprotocol(self, offered):
        self.offers.append(offered)
        return next((p for p in offered if p in SUPPORTED), None)


def app(environ, start_response):
    ws = environ.get("wsgi.websocket")
    if ws is None:
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
        return [b"plain"]
    app.sockets.append(ws)
    while ws.read_message() is not None:
        pass
    return []


app.sockets = []


@pytest.fixture
def hub_errors(monkeypatch):
    return capture_hub_errors(monkeypatch)


@pytest.fixture
def serve(hub_errors, caplog):
    caplog.set_level(logging.DEBUG)
    servers = []
    app.sockets.clear()
    Negotiating.offers = []

    def start(handler=WebSocketHandler):
        server = WSGIServer(("127.0.0.1", 0), app, handler_class=handler, log=None, error_log=None)
        server.start()
        servers.append(server)
        return server.server_port

    yield start
    for server in servers:
        server.stop(timeout=1)
    assert hub_errors == []
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"


def request(
    port: int, headers: dict[str, str] | None = None, method: str = "GET", version: str = "HTTP/1.1"
) -> tuple[str, dict, bytes]:
    """Send one request; return (status line, headers with lower-cased names, body)."""
    base = {
        "Host": f"127.0.0.1:{port}",
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": RFC_KEY,
        "Sec-WebSocket-Version": "13",
    }
    for name, value in (headers or {}).items():
        if value is None:
            base.pop(name, None)
        else:
            base[name] = value
    raw = f"{method} /socket HTTP/{version.split('/')[1]}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in base.items()) + "\r\n"
    sock = gsocket.create_connection(("127.0.0.1", port))
    try:
        sock.sendall(raw.encode("latin-1"))
        rfile = sock.makefile("rb")
        with gevent.Timeout(5):
            status = rfile.readline().decode("latin-1").rstrip("\r\n")
            head: dict[str, str] = {}
            while (line := rfile.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                assert name.lower() not in head, f"duplicate header {name}"
                head[name.lower()] = value.strip()
            if status.split()[1] == "101":
                body = b""
            elif "content-length" in head:
                body = rfile.read(int(head["content-length"]))
            else:
                body = rfile.read()
        rfile.close()
    finally:
        sock.close()
    return status, head, body


def test_accept_key_of_the_rfc_example():
    assert accept_key(RFC_KEY) == RFC_ACCEPT


def test_good_handshake(serve):
    port = serve()
    status, head, _ = request(port)
    assert status == "HTTP/1.1 101 Switching Protocols"
    assert head == {"upgrade": "websocket", "connection": "Upgrade", "sec-websocket-accept": RFC_ACCEPT}
    gevent.sleep(0.05)
    assert isinstance(app.sockets[0], WebSocket)


def test_header_tokens_are_parsed_case_insensitively(serve):
    port = serve()
    status, head, _ = request(port, {"Upgrade": "WebSocket", "Connection": "keep-alive, Upgrade"})
    assert status.split()[1] == "101"
    assert head["sec-websocket-accept"] == RFC_ACCEPT


def test_permessage_deflate_offer_is_ignored(serve):
    """Defect 11 decided: no compression, so no extension header in the 101."""
    port = serve()
    status, head, _ = request(port, {"Sec-WebSocket-Extensions": "permessage-deflate; client_max_window_bits"})
    assert status.split()[1] == "101"
    assert "sec-websocket-extensions" not in head


@pytest.mark.parametrize(
    ("headers", "status", "version_header"),
    [
        ({"Sec-WebSocket-Key": "not base64!!"}, 400, None),
        ({"Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ"}, 400, None),  # bad padding
        ({"Sec-WebSocket-Key": "c2hvcnQ="}, 400, None),  # base64 of 5 bytes
        ({"Sec-WebSocket-Key": "AAAAAAAAAAAAAAAAAAAAAAAA"}, 400, None),  # 18 bytes
        ({"Sec-WebSocket-Key": None}, 400, None),
        ({"Sec-WebSocket-Version": "12"}, 426, "13"),
        ({"Sec-WebSocket-Version": "8"}, 426, "13"),
        ({"Sec-WebSocket-Version": None}, 426, "13"),
    ],
    ids=["key not base64", "key badly padded", "key 5 bytes", "key 18 bytes", "no key", "version 12", "version 8", "no version"],
)
def test_bad_handshakes_are_refused_with_one_warning(serve, caplog, headers, status, version_header):
    """Defect 8: a 4xx with a bytes body, no crash, no traceback, one warning line."""
    port = serve()
    line, head, body = request(port, headers)
    assert int(line.split()[1]) == status
    assert head.get("sec-websocket-version") == version_header
    assert body and "sec-websocket-accept" not in head
    warnings = [r for r in caplog.records if r.name == "transport.websocket"]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
    assert app.sockets == []


def test_http_1_0_gets_a_400_with_a_bytes_body(serve, caplog):
    """Defect 8: gevent-websocket answered '402' and crashed on its str body."""
    port = serve()
    line, _, body = request(port, version="HTTP/1.0")
    assert line.split()[1] == "400"
    assert body == b"WebSocket upgrade over HTTP/1.0, needs HTTP/1.1"
    assert len([r for r in caplog.records if r.name == "transport.websocket"]) == 1


@pytest.mark.parametrize(
    ("method", "headers"),
    [("POST", {}), ("GET", {"Upgrade": None}), ("GET", {"Upgrade": "h2c"}), ("GET", {"Connection": "keep-alive"})],
    ids=["POST", "no Upgrade", "other Upgrade", "Connection without upgrade"],
)
def test_requests_that_are_not_upgrades_reach_the_application(serve, method, headers):
    port = serve()
    line, _, body = request(port, headers, method=method)
    assert line == "HTTP/1.1 200 OK"
    assert body == b"plain"


@pytest.mark.parametrize(
    ("offered", "parsed", "chosen"),
    [
        ("chat, v2.json", ["chat", "v2.json"], "v2.json"),
        (" ,v1.json ,, v2.json ", ["v1.json", "v2.json"], "v1.json"),
        ("v2.json.old, xv1.json", ["v2.json.old", "xv1.json"], None),  # no substring matching
        ("chat", ["chat"], None),
    ],
)
def test_subprotocols_are_parsed_as_a_list(serve, offered, parsed, chosen):
    """Defect 7: the offered list is parsed; select_subprotocol picks; None means no header."""
    port = serve(Negotiating)
    status, head, _ = request(port, {"Sec-WebSocket-Protocol": offered})
    assert status.split()[1] == "101"
    assert Negotiating.offers == [parsed]
    assert head.get("sec-websocket-protocol") == chosen


def test_default_handler_accepts_no_subprotocol(serve):
    port = serve()
    status, head, _ = request(port, {"Sec-WebSocket-Protocol": "v2.json"})
    assert status.split()[1] == "101"
    assert "sec-websocket-protocol" not in head


def test_no_offer_means_select_subprotocol_is_not_called(serve):
    port = serve(Negotiating)
    status, _, _ = request(port)
    assert status.split()[1] == "101" and Negotiating.offers == []


def test_parse_list():
    assert parse_list(None) == [] and parse_list("") == [] and parse_list(" , ,") == []
    assert parse_list("a,b") == ["a", "b"]
    assert parse_list("\ta ,  b\t") == ["a", "b"]


def environ(**headers):
    env = {
        "REQUEST_METHOD": "GET",
        "HTTP_UPGRADE": "websocket",
        "HTTP_CONNECTION": "Upgrade",
        "HTTP_SEC_WEBSOCKET_KEY": RFC_KEY,
        "HTTP_SEC_WEBSOCKET_VERSION": "13",
    }
    env.update(headers)
    return {k: v for k, v in env.items() if v is not None}


def test_check_request_pure():
    upgrade = check_request(environ(HTTP_SEC_WEBSOCKET_PROTOCOL="a, b"), "HTTP/1.1")
    assert upgrade == (RFC_ACCEPT, "13", ["a", "b"])
    assert check_request(environ(REQUEST_METHOD="HEAD"), "HTTP/1.1") is None
    refusal = check_request(environ(HTTP_SEC_WEBSOCKET_KEY="é" * 24), "HTTP/1.1")
    assert refusal.status.startswith("400") and isinstance(refusal.body, bytes)
    refusal = check_request(environ(), "HTTP/1.0")
    assert refusal.status == "400 Bad Request"
    refusal = check_request(environ(HTTP_SEC_WEBSOCKET_VERSION=None), "HTTP/1.1")
    assert refusal.status == "426 Upgrade Required" and ("Sec-WebSocket-Version", "13") in refusal.headers


def test_a_refused_handshake_closes_the_connection(serve):
    port = serve()
    sock = gsocket.create_connection(("127.0.0.1", port))
    sock.setsockopt(stdsocket.IPPROTO_TCP, stdsocket.TCP_NODELAY, 1)
    sock.sendall(
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: !!\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    with gevent.Timeout(5):
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
    sock.close()
    assert data.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"Connection: close" in data


def test_query_params_are_a_fresh_dict_each_time_and_the_last_repeat_wins():
    from transport.http import _QUERY_CACHE, _QUERY_CACHE_MAX, _query_params

    first = _query_params("vsn=2.0.0&token=a&token=b&empty=")
    assert first == {"vsn": "2.0.0", "token": "b", "empty": ""}
    assert "vsn=2.0.0&token=a&token=b&empty=" not in _QUERY_CACHE  # a token is never kept
    plain = _query_params("vsn=2.0.0")
    plain["vsn"] = "changed by a connect"
    assert _query_params("vsn=2.0.0") == {"vsn": "2.0.0"}
    for n in range(_QUERY_CACHE_MAX + 10):  # past the bound: still parsed, just not kept
        assert _query_params(f"vsn=2.0.{n}") == {"vsn": f"2.0.{n}"}
    assert len(_QUERY_CACHE) <= _QUERY_CACHE_MAX
