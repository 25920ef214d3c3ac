"""Phoenix's WebSocket channel integration scenarios, over real sockets, for V1 and V2.

The server is ``examples/integration_app.py`` in a subprocess (``conftest.py``). A test
about what a channel does (joins, replies, broadcasts, closes) uses the project's client,
``transport.client.Socket``; a test about the frames themselves (their order, refs and
join_refs, close codes) uses ``ws_client.PhxClient`` (the ``websockets`` library's sync
client, frame by frame), and plain ``http.client`` reads the status of refused upgrades.
Log assertions read the server's stderr (it runs with ``--log-level debug``). Every wait
is a bounded receive.
"""

from __future__ import annotations

import http.client
import itertools
import re
import signal
import threading
import time
import uuid

import pytest
from websockets.exceptions import ConnectionClosed
from ws_client import Closed, Msg, PhxClient, error, handshake, ok

from transport.client import JoinError, Socket

VSNS = ["1.0.0", "2.0.0"]
_unique = itertools.count()


def unique(prefix: str) -> str:
    return f"{prefix}{next(_unique)}-{uuid.uuid4().hex[:8]}"


def lobby() -> str:
    return unique("room:lobby")


@pytest.fixture(params=VSNS)
def vsn(request):
    return request.param


@pytest.fixture
def server(integration_app):
    return integration_app


@pytest.fixture
def clients():
    """Clients a test opened; closed at its end whatever happened."""
    opened: list[PhxClient] = []
    yield opened
    for c in opened:
        try:
            c.close()
        except Exception:  # noqa: BLE001 - already closed by the server, or broken on purpose
            pass


@pytest.fixture
def connect(server, vsn, clients):
    """``connect(mount="/ws", **params)``: a client of this test's protocol version."""

    def open_client(mount: str = "/ws", *, version: str | None = None, headers=None, user_agent="greenphx-e2e", **params):
        c = PhxClient(f"{server.ws}{mount}/websocket", version or vsn, params=params, headers=headers, user_agent=user_agent)
        clients.append(c)
        return c

    return open_client


@pytest.fixture
def phx(server, vsn):
    """``phx(mount="/ws", **params)``: a connected ``transport.client.Socket`` of this test's
    protocol version, disconnected at the test's end. Its heartbeats (every 50 ms) keep it
    inside the mounts' 200 ms idle timeout."""
    opened: list[Socket] = []

    def open_socket(mount: str = "/ws", **params) -> Socket:
        socket = Socket(f"{server.ws}{mount}", vsn=vsn, params=params, heartbeat_interval=0.05, heartbeat_timeout=5)
        opened.append(socket)
        socket.connect()
        return socket

    yield open_socket
    for socket in opened:
        socket.disconnect()


def serializer_name(vsn: str) -> str:
    return "V2JSONSerializer" if vsn.startswith("2") else "V1JSONSerializer"


# -- mounts, join, leave, events -------------------------------------------------------------


def test_endpoint_handles_multiple_mount_segments(phx):
    assert phx("/ws/admin").channel("room:admin-lobby1").join() == {}


def test_join_leave_and_event_messages(connect):
    c = connect()
    topic = lobby()
    jr = c.join(topic)
    assert jr == "1"
    assert c.reply_to(jr) == Msg(c.jr(jr), "1", topic, "phx_reply", ok())
    assert c.event("joined") == Msg(c.jr(jr), None, topic, "joined", {"status": "connected", "user_id": None})
    assert c.event("user_entered") == Msg(None, None, topic, "user_entered", {"user": None})

    ref = c.send(topic, "new_msg", {"body": "hi!"})
    assert c.reply_to(ref) == Msg(c.jr(jr), ref, topic, "phx_reply", ok())
    # "new_msg" is intercepted: handle_out adds the transport the channel runs under.
    assert c.event("new_msg") == Msg(c.jr(jr), None, topic, "new_msg", {"body": "hi!", "transport": "websocket"})
    assert c.mailbox == []

    # A leave answers ok, then phx_close, then what terminate pushed: in that order.
    ref = c.leave(topic)
    assert c.next() == Msg(c.jr(jr), ref, topic, "phx_reply", ok())
    assert c.next() == Msg(c.jr(jr), jr, topic, "phx_close", {})
    assert c.next() == Msg(c.jr(jr), None, topic, "you_left", {"message": "bye!"})

    # The channel is gone: its topic is unmatched now, and nothing is broadcast.
    for _ in range(2):
        ref = c.send(topic, "new_msg", {"body": "Should ignore"})
        assert c.next() == Msg(None, ref, topic, "phx_reply", error({"reason": "unmatched topic"}))
    c.refute(lambda m: m.event == "new_msg" and m.payload.get("body") == "Should ignore")


# -- connect_info -----------------------------------------------------------------------------


def joined_connect_info(c: PhxClient) -> dict:
    topic = lobby()
    jr = c.join(topic)
    assert c.reply_to(jr).payload == ok()
    return c.event("joined", topic).payload["connect_info"]


def test_x_headers_reach_connect_info(connect):
    c = connect("/ws/connect_info", headers={"x-application": "Phoenix"})
    info = joined_connect_info(c)
    assert info["x_headers"] == {"x-application": "Phoenix"}


def test_peer_data_reaches_connect_info(connect):
    c = connect("/ws/connect_info")
    peer = joined_connect_info(c)["peer_data"]
    local_port = c.ws.local_address[1]
    assert peer == {"address": "127.0.0.1", "port": local_port, "ssl_cert": None}


def test_uri_reaches_connect_info(connect, server, vsn):
    c = connect("/ws/connect_info")
    uri = joined_connect_info(c)["uri"]
    # Phoenix's test sees port 80 because its client sends a Host without a port; this
    # client sends "127.0.0.1:PORT", so the URI carries the real port.
    assert uri == {
        "scheme": "http",
        "host": "127.0.0.1",
        "port": server.port,
        "path": "/ws/connect_info/websocket",
        "query": f"vsn={vsn}",
        "fragment": None,
        "userinfo": None,
        "authority": "127.0.0.1",
    }


def test_user_agent_reaches_connect_info(connect):
    c = connect("/ws/connect_info", user_agent="greenphx-e2e/1.0 (test)")
    assert joined_connect_info(c)["user_agent"] == "greenphx-e2e/1.0 (test)"


def test_custom_keywords_reach_connect_info(connect):
    c = connect("/ws/connect_info_custom")
    info = joined_connect_info(c)
    assert info["signing_salt"] == "salt"
    assert set(info) == {"x_headers", "peer_data", "uri", "user_agent", "session", "signing_salt"}


def test_connect_info_has_only_what_the_mount_asks_for(connect):
    c = connect("/ws/connect_info")
    assert set(joined_connect_info(c)) == {"x_headers", "peer_data", "uri", "user_agent", "session"}


def _session_cookie_and_csrf_token(server) -> tuple[str, str]:
    """GET / as a page would: the session cookie it sets and the CSRF token it renders."""
    conn = http.client.HTTPConnection(server.host, server.port, timeout=5)
    try:
        conn.request("GET", "/")
        resp = conn.getresponse()
        token = resp.read().decode()
        cookie = resp.getheader("Set-Cookie")
    finally:
        conn.close()
    assert resp.status == 200 and cookie is not None
    return cookie.split(";", 1)[0], token


def test_transport_session_is_extracted_to_connect_info(connect, server):
    cookie, token = _session_cookie_and_csrf_token(server)
    assert cookie.startswith("_hello_key=SFMyNTY.")

    # With the cookie and the page's CSRF token: the session.
    c = connect("/ws/connect_info", headers={"cookie": cookie}, _csrf_token=token)
    session = joined_connect_info(c)["session"]
    assert session["from_session"] == "123" and len(session["_csrf_token"]) == 24

    # Without the cookie, with a forged token, with a token of another session, with none.
    _, other_token = _session_cookie_and_csrf_token(server)
    for headers, params in (
        (None, {"_csrf_token": token}),
        ({"cookie": cookie}, {"_csrf_token": "bad"}),
        ({"cookie": cookie}, {"_csrf_token": other_token}),
        ({"cookie": cookie}, {}),
        ({"cookie": cookie[:-3] + "abc"}, {"_csrf_token": token}),
    ):
        c = connect("/ws/connect_info", headers=headers, **params)
        assert joined_connect_info(c)["session"] is None, (headers, params)


# -- logs (the server's stderr) ----------------------------------------------------------------


def test_logs_user_socket_connect(connect, server, vsn):
    marker = unique("log-connect-")
    mark = server.log_mark()
    c = connect(logging=marker)
    c.heartbeat()
    c.next()
    server.wait_log(
        rf"CONNECTED TO UserSocket in \S+\n\s+Transport: websocket\n\s+Serializer: {serializer_name(vsn)}\n"
        rf"\s+Parameters: .*'logging': '{marker}'",
        mark,
    )


def test_does_not_log_connect_when_the_socket_disables_it(connect, server):
    quiet, loud = unique("log-quiet-"), unique("log-loud-")
    mark = server.log_mark()
    connect("/ws/connect_info", logging=quiet)
    # A later connect that does log: once its line is there, the quiet one would be too.
    connect("/ws", logging=loud)
    text = server.wait_log(rf"Parameters: .*'logging': '{loud}'", mark)
    assert "CONNECTED TO UserSocketConnectInfo" not in text
    assert not re.search(rf"Parameters: .*{quiet}", text)


def test_logs_and_filters_params_on_join_and_handle_in(connect, server):
    topic = unique("room:admin-lobby2-")
    secret = unique("s3cret-")
    c = connect()
    mark = server.log_mark()
    jr = c.join(topic, {"join": "yes", "password": secret})
    assert c.reply_to(jr) == Msg(c.jr("1"), "1", topic, "phx_reply", ok())
    server.wait_log(rf"JOINED {re.escape(topic)} in \S+\n\s+Parameters: \{{'join': 'yes', 'password': '\[FILTERED\]'\}}", mark)
    ref = c.send(topic, "new_msg", {"in": "yes", "password": secret})
    assert c.reply_to(ref).ref == "2"
    server.wait_log(
        rf"HANDLED new_msg INCOMING ON {re.escape(topic)} \(RoomChannel\) in \S+\n"
        rf"\s+Parameters: \{{'in': 'yes', 'password': '\[FILTERED\]'\}}",
        mark,
    )
    assert not re.search(rf"Parameters: .*{secret}", server.stderr)


def test_warns_for_unmatched_topic(connect, server):
    c = connect()
    mark = server.log_mark()
    jr = c.join("unmatched-topic")
    assert c.next() == Msg(None, jr, "unmatched-topic", "phx_reply", error({"reason": "unmatched topic"}))
    server.wait_log(r'WARNING .*Ignoring unmatched topic "unmatched-topic" in UserSocket', mark)


# -- crashes and closes -----------------------------------------------------------------------


def test_sends_phx_error_if_a_channel_crashes(connect, server):
    c = connect()
    topic = lobby()
    jr = c.join(topic)
    assert c.reply_to(jr).payload == ok()
    c.event("joined")
    c.event("user_entered")
    assert c.mailbox == []
    mark = server.log_mark()
    c.send(topic, "boom")
    # terminate runs on a crash: its push comes first, then phx_error.
    assert c.next() == Msg(c.jr(jr), None, topic, "you_left", {"message": "bye!"})
    assert c.next() == Msg(c.jr(jr), jr, topic, "phx_error", {})
    server.wait_log(r"RuntimeError: boom", mark)
    # the socket lives on, and the topic can be joined again
    again = c.join(topic)
    assert c.reply_to(again) == Msg(c.jr(again), again, topic, "phx_reply", ok())


def test_channels_are_terminated_when_the_transport_exits(phx):
    topic = lobby()
    watcher = phx().channel(topic)
    terminated = watcher.messages(events={"channel_terminated"})
    watcher.join()

    leaving = phx()
    leaving.channel(topic, {"report_terminate": True}).join()
    leaving.disconnect()

    assert terminated.get(5).payload["reason"] in ("shutdown", ["shutdown", "closed"])
    # The watcher's own channel is untouched.
    assert watcher.push("new_msg", {"body": "still here"}) == {}


def test_refuses_events_for_topics_not_joined(connect):
    c = connect()
    for body in ("hi!", "Should ignore"):
        topic = lobby()
        ref = c.send(topic, "new_msg", {"body": body})
        assert c.next() == Msg(None, ref, topic, "phx_reply", error({"reason": "unmatched topic"}))
    c.refute(lambda m: m.event == "new_msg")


def test_shuts_down_on_a_disconnect_broadcast_to_the_socket_id(connect):
    user_id = unique("")
    t1, t2 = unique("room:wsdisconnect1-"), unique("room:wsdisconnect2-")
    c = connect(user_id=user_id)
    for n, topic in enumerate((t1, t2), start=1):
        jr = c.join(topic, {"report_terminate": True})
        assert c.reply_to(jr) == Msg(c.jr(str(n)), str(n), topic, "phx_reply", ok())

    bystander = connect()  # no id: the broadcast is not for it
    for topic in (t1, t2):
        assert bystander.reply_to(bystander.join(topic)).payload == ok()
    ref = bystander.send(t1, "broadcast_disconnect", {"user_id": user_id})
    assert bystander.reply_to(ref).payload == ok()

    assert c.wait_closed() == 1000
    for topic in (t1, t2):
        reason = bystander.event("channel_terminated", topic).payload["reason"]
        assert reason in ("shutdown", ["shutdown", "closed"])
    ref = bystander.heartbeat()
    assert bystander.reply_to(ref).payload == ok()


def test_duplicate_join_closes_the_existing_channel(connect):
    topic = unique("room:joiner-")
    c = connect(user_id=unique(""))
    first = c.join(topic)
    assert c.reply_to(first) == Msg(c.jr("1"), "1", topic, "phx_reply", ok())
    second = c.join(topic)
    reply = c.reply_to(second)
    assert reply == Msg(c.jr("2"), "2", topic, "phx_reply", ok())
    close = c.event("phx_close", topic)
    assert close == Msg(c.jr("1"), "1", topic, "phx_close", {})
    assert c.history.index(reply) < c.history.index(close), "the new join is answered before the old one closes"
    # the new channel serves the topic; the old one was stopped, not left (no terminate push)
    ref = c.send(topic, "new_msg", {"body": "again"})
    assert c.reply_to(ref) == Msg(c.jr("2"), ref, topic, "phx_reply", ok())
    c.refute(lambda m: m.event == "you_left")


def test_shuts_down_if_the_client_goes_quiet(connect):
    c = connect()
    ref = c.heartbeat()
    sent = time.monotonic()
    assert c.next() == Msg(None, ref, "phoenix", "phx_reply", ok())
    code = c.wait_closed(timeout=1.0)  # the mount's idle timeout is 200 ms
    assert time.monotonic() - sent >= 0.15
    assert code == 1000


def test_heartbeat(connect):
    c = connect()
    ref = c.heartbeat()
    assert ref == "1"
    assert c.next() == Msg(None, "1", "phoenix", "phx_reply", ok())


def test_heartbeats_keep_a_socket_open_past_the_idle_timeout(connect):
    c = connect()
    start = time.monotonic()
    while time.monotonic() - start < 0.6:  # three idle timeouts
        ref = c.heartbeat()
        assert c.next() == Msg(None, ref, "phoenix", "phx_reply", ok())
        time.sleep(0.05)  # pacing well inside the 200 ms timeout, not waiting for a result


def test_channel_limit_per_transport(connect):
    c = connect("/ws/limited")
    topics = [unique("room:limited-") for _ in range(4)]
    for topic in topics[:3]:
        assert c.reply_to(c.join(topic)).payload == ok()
    jr = c.join(topics[3])
    assert c.reply_to(jr) == Msg(c.jr(jr), jr, topics[3], "phx_reply", error({"reason": "too many channels joined"}))
    # a leave frees a slot
    c.leave(topics[0])
    c.event("phx_close", topics[0])
    jr = c.join(topics[3])
    assert c.reply_to(jr).payload == ok()


# -- refused connections ---------------------------------------------------------------------


def test_refuses_unallowed_origins(connect, server, vsn):
    allowed = connect(headers={"origin": "https://example.com"})
    assert allowed.reply_to(allowed.heartbeat()).payload == ok()
    mark = server.log_mark()
    status, _body = handshake(f"{server.ws}/ws/websocket?vsn={vsn}", {"Origin": "http://notallowed.com"})
    assert status == 403
    server.wait_log(r"Origin of the request: http://notallowed\.com", mark)


def test_refuses_connects_that_error_with_403(server, vsn):
    status, _body = handshake(f"{server.ws}/ws/websocket?vsn={vsn}&reject=true")
    assert status == 403


def test_error_handler_answers_a_refused_connect(server, vsn):
    status, body = handshake(f"{server.ws}/ws/websocket?vsn={vsn}&ratelimit=true")
    assert (status, body) == (429, b"Too many requests")


def test_returns_403_when_versions_do_not_match(server):
    mark = server.log_mark()
    status, _body = handshake(f"{server.ws}/ws/websocket?vsn=123.1.1")
    assert status == 403
    server.wait_log(r"requested transport version '123\.1\.1' does not match", mark)


def test_an_accepted_upgrade_answers_101(server, vsn):
    status, _body = handshake(f"{server.ws}/ws/websocket?vsn={vsn}")
    assert status == 101


# -- custom channels (not transport specific: V2 only, as Phoenix's test) ------------------------


@pytest.mark.parametrize("vsn", ["2.0.0"])
def test_custom_channels_join_ignore_error_and_event_messages(phx, server):
    socket = phx()
    mark = server.log_mark()
    for action, reason in (("ignore", {"action": "ignore"}), ("error", {"reason": "join crashed"})):
        with pytest.raises(JoinError) as refused:
            socket.channel(f"custom:{action}", {"action": action}).join()
        assert refused.value.response == reason
    server.wait_log(r"oops", mark)
    channel = socket.channel("custom:ok", {"action": "ok"})
    closed = threading.Event()
    channel.on_close(lambda reason: reason == "server" and closed.set())
    assert channel.join() == {"action": "ok"}
    channel.push_nowait("close", {"body": "bye!"})  # answered by phx_close, not a reply
    assert closed.wait(5) and channel.state == "closed"
    assert socket.is_connected


# -- shutdown ------------------------------------------------------------------------------------


def test_sigterm_drains_sockets_and_exits_0(fresh_integration_app):
    app = fresh_integration_app
    c = PhxClient(f"{app.ws}/ws/websocket", "2.0.0")
    try:
        topic = lobby()
        assert c.reply_to(c.join(topic)).payload == ok()
        mark = app.log_mark()
        app.proc.send_signal(signal.SIGTERM)
        assert _heartbeat_until_closed(c) == 1012  # drained: "service restart"
        assert app.stop() == 0
        app.wait_log(r"Shutting down 1 sockets \(1 channels\)", mark)
    finally:
        c.close()


def _heartbeat_until_closed(c: PhxClient, timeout: float = 5.0) -> int | None:
    """Keep ``c`` inside the mounts' 200 ms idle timeout until the server closes it; the code."""
    deadline = time.monotonic() + timeout
    while True:
        assert time.monotonic() < deadline, "the socket was not closed"
        try:
            c.reply_to(c.heartbeat(), timeout=0.05)
        except (Closed, ConnectionClosed):
            return c.wait_closed()
        except AssertionError:
            continue


def test_sigterm_closes_sockets_without_channels_with_1012_too(fresh_integration_app):
    app = fresh_integration_app
    idle = [PhxClient(f"{app.ws}/ws/websocket", "2.0.0") for _ in range(3)]
    joined = PhxClient(f"{app.ws}/ws/websocket", "2.0.0")
    try:
        assert joined.reply_to(joined.join(lobby())).payload == ok()
        for c in idle:  # a round trip: the connection is up before the signal
            assert c.reply_to(c.heartbeat()).payload == ok()
        mark = app.log_mark()
        app.proc.send_signal(signal.SIGTERM)
        assert [_heartbeat_until_closed(c) for c in (*idle, joined)] == [1012] * 4
        assert app.stop() == 0
        app.wait_log(r"Shutting down 4 sockets \(1 channels\)", mark)
    finally:
        for c in (*idle, joined):
            c.close()
