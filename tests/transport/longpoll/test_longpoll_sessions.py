"""LongPoll sessions in this process's hub, over real HTTP on 127.0.0.1: no sticky sessions
(two listeners of two endpoint instances sharing the PubSub and the secret), the session as
a process of the tree (inactivity, drain, nothing left behind), the bounded buffer, binary
frames, and what the debug shell shows."""

from __future__ import annotations

import itertools
import json
import logging

import gevent
import pytest
from lp_http import request

import actors
from supervision import Application
from transport import Binary, Channel, Endpoint, SocketHandler, broadcast, debug_shell, push
from transport.longpoll import endpoint_id, supervisor_name
from transport.pubsub import PubSub

SECRET = "s3cr3t!-" * 8
_ids = itertools.count()


class EchoChannel(Channel):
    def join(self, topic, payload, socket):
        return ("ok", socket)

    def handle_in(self, event, payload, socket):
        if event == "shout":
            broadcast(socket, "shout", payload)
            return ("reply", ("ok", {}), socket)
        if event == "binary":
            push(socket, "bin", Binary(b"\x00\x01"))
            return ("reply", ("ok", {"after": "binary"}), socket)
        return ("reply", ("ok", {"echo": payload}), socket)

    def terminate(self, reason, socket):
        if socket.assigns.get("watcher") is not None:
            actors.send(socket.assigns["watcher"], ("channel_down", socket.topic, reason))


class EchoSocket(SocketHandler):
    log = False
    channels = [("room:*", EchoChannel)]
    watcher = None

    def connect(self, params, socket, connect_info):
        return ("ok", socket.assign(watcher=EchoSocket.watcher))


def _endpoint(name: str, pubsub: str, **lp) -> Endpoint:
    return Endpoint(
        name,
        pubsub_server=pubsub,
        secret_key_base=SECRET,
        sockets=[("/socket", EchoSocket, {"websocket": False, "longpoll": {"window_ms": 300, **lp}})],
    )


@pytest.fixture
def two_listeners():
    """Two endpoint instances (two listeners) sharing one PubSub and one secret."""
    n = next(_ids)
    pubsub = f"LP.PubSub.{n}"
    a, b = _endpoint(f"LP.A.{n}", pubsub), _endpoint(f"LP.B.{n}", pubsub)
    app = Application(
        [
            PubSub.child_spec(name=pubsub),
            *a.child_specs(server={"host": "127.0.0.1", "port": 0}),
            *b.child_specs(server={"host": "127.0.0.1", "port": 0}),
        ]
    )
    app.start()
    EchoSocket.watcher = actors.self()
    try:
        yield a, b
    finally:
        EchoSocket.watcher = None
        app.stop()


def lp(endpoint, method="GET", token=None, body=b"", ctype="application/x-ndjson"):
    params = {"vsn": "2.0.0", **({"token": token} if token else {})}
    answer = request(endpoint.bound[1], method, "/socket/longpoll", params, body, {"Content-Type": ctype} if body else None)
    assert answer.status == 200
    return answer.body


def frames(*msgs) -> bytes:
    return "\n".join(json.dumps(m) for m in msgs).encode()


def poll_until(endpoint, tok, pred, timeout=5.0):
    seen = []
    deadline = gevent.get_hub().loop.now() + timeout
    while not pred(seen):
        assert gevent.get_hub().loop.now() < deadline, seen
        body = lp(endpoint, token=tok)
        assert body["status"] in (200, 204), body
        seen += [json.loads(m) for m in body["messages"]]
    return seen


def session_pid(tok: str):
    """The session pid a token names (tokens are salted with the PubSub's name)."""
    from transport import token

    for salt in _pubsubs:
        status, data = token.verify(SECRET, salt, tok)
        if status == "ok":
            return actors.Pid.parse(data[2])
    raise AssertionError("not a session token of these tests")


_pubsubs: set = set()


def new_session(endpoint):
    body = lp(endpoint)
    assert body["status"] == 410
    _pubsubs.add(endpoint.pubsub_server)
    return body["token"]


def test_a_session_made_on_one_listener_is_served_by_the_other(two_listeners):
    a, b = two_listeners
    assert endpoint_id(a) != endpoint_id(b) and a.bound[1] != b.bound[1]
    tok = new_session(a)
    # join through b: b does not hold the session, it reaches it over the PubSub
    assert lp(b, "POST", tok, frames(["1", "1", "room:x", "phx_join", {}]))["status"] == 200
    seen = poll_until(b, tok, lambda s: any(m[3] == "phx_reply" for m in s))
    assert seen[0] == ["1", "1", "room:x", "phx_reply", {"status": "ok", "response": {}}]
    assert lp(a, "POST", tok, frames(["1", "2", "room:x", "ping", {"n": 1}]))["status"] == 200
    assert lp(b, "POST", tok, frames(["1", "3", "room:x", "ping", {"n": 2}]))["status"] == 200
    seen = poll_until(a, tok, lambda s: len(s) >= 2)
    assert seen == [["1", "2", "room:x", "phx_reply", {"status": "ok", "response": {"echo": {"n": 1}}}],
                    ["1", "3", "room:x", "phx_reply", {"status": "ok", "response": {"echo": {"n": 2}}}]]  # fmt: skip
    # one session, on a's supervisor
    assert actors.is_alive(session_pid(tok))
    assert actors.process_info(session_pid(tok))["links"] == [actors.whereis(supervisor_name(a))]


def test_a_session_nobody_polls_ends_with_its_channels_and_leaves_nothing(two_listeners):
    a, _b = two_listeners
    gevent.sleep(0.05)
    baseline = set(actors.processes())
    tok = new_session(a)
    assert lp(a, "POST", tok, frames(["1", "1", "room:a", "phx_join", {}], ["2", "2", "room:b", "phx_join", {}]))["status"] == 200
    pid = session_pid(tok)
    ref = actors.monitor(pid)
    down = actors.receive(lambda m: isinstance(m, tuple) and m[0] == "DOWN" and m[1] is ref, 3.0)
    assert down[4] == ("shutdown", "inactive")
    gone = {actors.receive(lambda m: isinstance(m, tuple) and m[0] == "channel_down", 3.0)[1:] for _ in range(2)}
    assert gone == {("room:a", ("shutdown", "inactive")), ("room:b", ("shutdown", "inactive"))}
    assert lp(a, "POST", tok, frames(["1", "3", "room:a", "x", {}])) == {"status": 410}
    deadline = gevent.get_hub().loop.now() + 3
    while set(actors.processes()) - baseline:
        assert gevent.get_hub().loop.now() < deadline, set(actors.processes()) - baseline
        gevent.sleep(0.02)


def test_a_full_buffer_answers_500_and_closes_the_session(two_listeners, caplog):
    n = next(_ids)
    pubsub = f"LP.PubSub.small.{n}"
    ep = _endpoint(f"LP.Small.{n}", pubsub, max_buffer_messages=5, window_ms=2_000)
    app = Application([PubSub.child_spec(name=pubsub), *ep.child_specs(server={"host": "127.0.0.1", "port": 0})])
    app.start()
    try:
        tok = new_session(ep)
        assert lp(ep, "POST", tok, frames(["1", "1", "room:a", "phx_join", {}]))["status"] == 200
        assert len(poll_until(ep, tok, lambda s: len(s) >= 1)) == 1
        pid = session_pid(tok)
        ref = actors.monitor(pid)
        with caplog.at_level(logging.WARNING, "transport.longpoll"):
            for i in range(8):  # nobody polls meanwhile: the 6th overflows
                ep.broadcast("room:a", "news", {"i": i})
            body = lp(ep, token=tok)
        assert body["status"] == 500
        assert actors.receive(lambda m: isinstance(m, tuple) and m[0] == "DOWN" and m[1] is ref, 3.0)[4] == (
            "shutdown",
            "buffer_full",
        )
        assert actors.receive(lambda m: isinstance(m, tuple) and m[0] == "channel_down", 3.0)[1:] == (
            "room:a",
            ("shutdown", "buffer_full"),
        )
        assert sum("buffer full" in r.getMessage() for r in caplog.records) == 1
        assert lp(ep, token=tok)["status"] == 410  # a new session
    finally:
        app.stop()


def test_binary_frames_are_dropped_with_one_warning(two_listeners, caplog):
    a, _b = two_listeners
    tok = new_session(a)
    with caplog.at_level(logging.WARNING, "transport.longpoll"):
        assert (
            lp(
                a,
                "POST",
                tok,
                frames(
                    ["1", "1", "room:a", "phx_join", {}], ["1", "2", "room:a", "binary", {}], ["1", "3", "room:a", "binary", {}]
                ),
            )["status"]
            == 200
        )
        seen = poll_until(a, tok, lambda s: sum(m[3] == "phx_reply" for m in s) >= 3)
    assert [m[3] for m in seen] == ["phx_reply", "phx_reply", "phx_reply"]
    assert sum("binary frame" in r.getMessage() for r in caplog.records) == 1


def test_the_debug_shell_lists_longpoll_sessions(two_listeners):
    a, _b = two_listeners
    tok = new_session(a)
    assert lp(a, "POST", tok, frames(["1", "1", "room:shell", "phx_join", {}]))["status"] == 200
    poll_until(a, tok, lambda s: len(s) >= 1)
    rows = [r for r in debug_shell.Shell(state_timeout=1.0).sockets() if r["pid"] == session_pid(tok)]
    assert len(rows) == 1
    row = rows[0]
    assert row["transport"] == "longpoll" and row["handler"] == "EchoSocket"
    assert row["peer"].startswith("127.0.0.1:") and row["path"] == "/socket/longpoll"
    assert list(row["channels"]) == ["room:shell"]
    assert row["frames_in"] == 1 and row["bytes_out"] > 0


def test_drain_closes_sessions_with_channels():
    n = next(_ids)
    pubsub = f"LP.PubSub.drain.{n}"
    ep = _endpoint(f"LP.Drain.{n}", pubsub, window_ms=5_000)
    app = Application([PubSub.child_spec(name=pubsub), *ep.child_specs(server={"host": "127.0.0.1", "port": 0})])
    app.start()
    EchoSocket.watcher = actors.self()
    try:
        tok = new_session(ep)
        assert lp(ep, "POST", tok, frames(["1", "1", "room:d", "phx_join", {}]))["status"] == 200
        ref = actors.monitor(session_pid(tok))
    finally:
        app.stop()
        EchoSocket.watcher = None
    assert actors.receive(lambda m: isinstance(m, tuple) and m[0] == "DOWN" and m[1] is ref, 3.0)[4] == ("shutdown", "restart")
    assert actors.receive(lambda m: isinstance(m, tuple) and m[0] == "channel_down", 3.0)[1:] == (
        "room:d",
        ("shutdown", "draining"),
    )
