"""TLS (wss://) and trusted proxies, end to end.

Certificates are made by the test with Debian's ``openssl`` (a CA, a server certificate for
127.0.0.1, a client certificate). ``phx-serve --certfile/--keyfile`` serves wss:// to the
``websockets`` client and to the official phoenix client under Node; a server in this hub
with ``cacertfile`` hands the client certificate to ``connect`` as
``peer_data.ssl_cert``; with ``trusted_proxies`` the address, scheme and host of the
client come from the proxy's headers, and only then.
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import sys
import time
from pathlib import Path

import gevent
import gevent.socket
import gevent.ssl
import pytest
from serverproc import ServerProcess
from websockets.sync.client import connect

from supervision import Application
from transport import Channel, Endpoint, SocketHandler
from transport.http import apply_forwarded, trusted_networks
from transport.pubsub import PubSub

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
PHX_SERVE = [sys.executable, str(REPO / "bin" / "phx-serve")]
JS_DIR = HERE / "js"


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> dict[str, Path]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    d = tmp_path_factory.mktemp("certs")

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], cwd=d, check=True, capture_output=True, timeout=60)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=greenphx test CA")
    for name, ext in (("server", "subjectAltName=IP:127.0.0.1"), ("client", "extendedKeyUsage=clientAuth")):
        (d / f"{name}.ext").write_text(ext + "\n")
        run("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}")
        run(
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            f"{name}.pem",
            "-days",
            "2",
            "-extfile",
            f"{name}.ext",
        )
    return {name: d / name for name in ("ca.pem", "server.pem", "server.key", "client.pem", "client.key")}


def _tls_phx_serve(certs) -> ServerProcess:
    """phx-serve serving tests/e2e/serve_target.py over TLS with the test's certificate."""
    return ServerProcess(
        [*PHX_SERVE, "serve_target:endpoint", "--port", "0", "--certfile", str(certs["server.pem"]),
         "--keyfile", str(certs["server.key"])],
        cwd=HERE,
        name="phx-serve (TLS)",
    )  # fmt: skip


def _client_context(certs, with_cert: bool = False) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(certs["ca.pem"]))
    if with_cert:
        context.load_cert_chain(str(certs["client.pem"]), str(certs["client.key"]))
    return context


def test_phx_serve_serves_wss_to_a_python_client(certs):
    server = _tls_phx_serve(certs)
    try:
        assert server.ws.startswith("wss://")
        with connect(f"{server.ws}/socket/websocket?vsn=2.0.0", ssl=_client_context(certs)) as ws:
            ws.send(json.dumps(["1", "1", "lobby:tls", "phx_join", {}]))
            assert json.loads(ws.recv(timeout=5))[4] == {"response": {}, "status": "ok"}
        # Plain HTTP on the TLS port gets no WebSocket.
        with pytest.raises(Exception):  # noqa: B017 - how the client fails on a TLS port varies
            connect(f"ws://{server.host}:{server.port}/socket/websocket?vsn=2.0.0", open_timeout=5)
    finally:
        assert server.stop() == 0
    assert "Traceback" not in server.stderr


def test_the_projects_client_connects_over_wss(certs):
    from transport.client import Socket

    server = _tls_phx_serve(certs)
    try:
        socket = Socket(f"{server.ws}/socket", ssl=_client_context(certs))
        socket.connect(timeout=10)
        try:
            channel = socket.channel("lobby:client", {})
            channel.join(timeout=10)
            assert channel.push("echo", {"over": "wss"}, timeout=10) == {"over": "wss"}
        finally:
            socket.disconnect()
    finally:
        server.stop()


def test_the_official_phoenix_client_connects_over_wss(certs):
    node = shutil.which("node")
    if node is None or not (JS_DIR / "node_modules" / "phoenix").is_dir():
        pytest.skip("Node and `npm ci --prefix tests/e2e/js` are needed")
    server = _tls_phx_serve(certs)
    script = """
import { Socket } from "phoenix";
import WebSocket from "ws";
const socket = new Socket(process.argv[2], { transport: WebSocket, params: {} });
const done = (r) => { console.log(JSON.stringify(r)); socket.disconnect(() => process.exit(0)); };
setTimeout(() => done({ error: "timeout" }), 10000);
socket.onError((e) => done({ error: String(e && e.message || e) }));
socket.connect();
const channel = socket.channel("lobby:node", {});
channel.join().receive("ok", () => {
  channel.push("echo", { over: "wss" }).receive("ok", (reply) => done({ joined: true, reply }));
}).receive("error", (e) => done({ error: e }));
"""
    try:
        path = JS_DIR / "wss_client.mjs"
        path.write_text(script)
        try:
            done = subprocess.run(
                [node, str(path), f"{server.ws}/socket"],
                cwd=JS_DIR,
                capture_output=True,
                text=True,
                timeout=30,
                env={**os.environ, "NODE_EXTRA_CA_CERTS": str(certs["ca.pem"])},
            )
        finally:
            path.unlink()
        result = json.loads(done.stdout.strip().splitlines()[-1])
        assert result == {"joined": True, "reply": {"over": "wss"}}, done.stderr
    finally:
        server.stop()


# -- a server in this hub: the client certificate and trusted proxies ---------------------------

SEEN: list[dict] = []


class InfoChannel(Channel):
    def join(self, topic, payload, socket):
        return ("ok", socket)


class InfoSocket(SocketHandler):
    channels = [("room:*", InfoChannel)]  # noqa: RUF012 - SocketHandler's own API

    def connect(self, params, socket, connect_info):
        SEEN.append(connect_info)
        return ("ok", socket)


def _serve(**server):
    name = f"TLS.Endpoint.{time.monotonic_ns()}"
    endpoint = Endpoint(
        name,
        pubsub_server=f"{name}.PubSub",
        sockets=[
            ("/socket", InfoSocket, {"drainer": False, "websocket": {"connect_info": ["peer_data", "uri"], "check_origin": True}})
        ],
    )
    app = Application(
        [PubSub.child_spec(name=endpoint.pubsub_server), *endpoint.child_specs(server={"host": "127.0.0.1", "port": 0, **server})]
    )
    app.start()
    return app, endpoint.bound[1]


def _gevent_client_context(certs) -> ssl.SSLContext:
    # gevent's own class: its sockets yield to the hub (this server runs in the same one).
    context = gevent.ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(str(certs["ca.pem"]))
    return context


def _upgrade(sock, port: int, headers: str = "") -> bytes:
    sock.sendall(
        (
            f"GET /socket/websocket?vsn=2.0.0 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{headers}\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            break
        head += chunk
    return head.split(b"\r\n", 1)[0]


def test_the_client_certificate_reaches_connect_info(certs):
    SEEN.clear()
    app, port = _serve(certfile=str(certs["server.pem"]), keyfile=str(certs["server.key"]), cacertfile=str(certs["ca.pem"]))
    try:
        for with_cert in (True, False):
            raw = gevent.socket.create_connection(("127.0.0.1", port), timeout=5)
            context = _gevent_client_context(certs)
            if with_cert:
                context.load_cert_chain(str(certs["client.pem"]), str(certs["client.key"]))
            sock = context.wrap_socket(raw, server_hostname="127.0.0.1")
            assert _upgrade(sock, port).startswith(b"HTTP/1.1 101")
            sock.close()
        expected = ssl.PEM_cert_to_DER_cert(certs["client.pem"].read_text())
        assert [info["peer_data"]["ssl_cert"] for info in SEEN] == [expected, None]
        assert SEEN[0]["uri"]["scheme"] == "https"
    finally:
        app.stop()


def test_verify_peer_refuses_clients_without_a_certificate(certs):
    app, port = _serve(
        certfile=str(certs["server.pem"]), keyfile=str(certs["server.key"]), cacertfile=str(certs["ca.pem"]), verify_peer=True
    )
    try:
        raw = gevent.socket.create_connection(("127.0.0.1", port), timeout=5)
        context = _gevent_client_context(certs)
        with pytest.raises((ssl.SSLError, OSError)):
            sock = context.wrap_socket(raw, server_hostname="127.0.0.1")
            _upgrade(sock, port)
            sock.recv(1)  # TLS 1.3 reports the refusal on the first read
    finally:
        app.stop()


def test_a_trusted_proxy_sets_the_client_address_scheme_and_host():
    SEEN.clear()
    app, port = _serve(trusted_proxies=["127.0.0.0/8"])
    try:
        sock = gevent.socket.create_connection(("127.0.0.1", port), timeout=5)
        forwarded = "Forwarded: for=198.51.100.9;proto=https;host=chat.example.com\r\nOrigin: https://chat.example.com\r\n"
        assert _upgrade(sock, port, forwarded).startswith(b"HTTP/1.1 101")  # the origin matches the forwarded host
        sock.close()
        sock = gevent.socket.create_connection(("127.0.0.1", port), timeout=5)
        assert _upgrade(sock, port, "X-Forwarded-For: 203.0.113.7, 127.0.0.5\r\n").startswith(b"HTTP/1.1 101")
        sock.close()
    finally:
        app.stop()
    assert SEEN[0]["peer_data"]["address"] == "198.51.100.9"
    assert (SEEN[0]["uri"]["scheme"], SEEN[0]["uri"]["host"]) == ("https", "chat.example.com")
    assert SEEN[1]["peer_data"]["address"] == "203.0.113.7"


def test_without_trusted_proxies_forwarded_headers_are_ignored():
    SEEN.clear()
    app, port = _serve()
    try:
        sock = gevent.socket.create_connection(("127.0.0.1", port), timeout=5)
        assert _upgrade(sock, port, "X-Forwarded-For: 203.0.113.7\r\nOrigin: https://evil.example\r\n").startswith(
            b"HTTP/1.1 403"
        )
        sock.close()
        sock = gevent.socket.create_connection(("127.0.0.1", port), timeout=5)
        assert _upgrade(sock, port, "X-Forwarded-For: 203.0.113.7\r\n").startswith(b"HTTP/1.1 101")
        sock.close()
    finally:
        app.stop()
    assert SEEN[-1]["peer_data"]["address"] == "127.0.0.1"


@pytest.mark.parametrize(
    ("peer", "headers", "expected"),
    [
        ("10.0.0.2", {"HTTP_X_FORWARDED_FOR": "1.2.3.4"}, "1.2.3.4"),
        ("10.0.0.2", {"HTTP_X_FORWARDED_FOR": "6.6.6.6, 1.2.3.4, 10.0.0.9"}, "1.2.3.4"),  # rightmost untrusted hop
        ("10.0.0.2", {"HTTP_X_FORWARDED_FOR": "10.0.0.7"}, "10.0.0.7"),  # all trusted: the leftmost
        ("10.0.0.2", {"HTTP_FORWARDED": 'for="[2001:db8::1]:4711";proto=https'}, "2001:db8::1"),
        ("10.0.0.2", {"HTTP_FORWARDED": "for=192.0.2.60:5000, for=10.0.0.3"}, "192.0.2.60"),
        ("192.0.2.1", {"HTTP_X_FORWARDED_FOR": "1.2.3.4"}, "192.0.2.1"),  # an untrusted peer's header
        ("10.0.0.2", {}, "10.0.0.2"),
    ],
)
def test_forwarded_headers_are_read_from_the_right(peer, headers, expected):
    environ = {"REMOTE_ADDR": peer, "REMOTE_PORT": "5555", "wsgi.url_scheme": "http", "HTTP_HOST": "inner", **headers}
    apply_forwarded(environ, trusted_networks(["10.0.0.0/8"]))
    assert environ["REMOTE_ADDR"] == expected


def test_bad_server_options_are_clear():
    with pytest.raises(ValueError, match="trusted_proxies"):
        trusted_networks(["not-an-address"])
