"""Phoenix-style log lines, and draining sockets when the tree stops."""

from __future__ import annotations

import itertools
import logging

import pytest
from channel_app import RoomChannel, UserSocket

import actors
from supervision import Application
from transport import Endpoint, SocketHandler, telemetry
from transport.pubsub import PubSub
from transport.testing import ConnectRefused, SocketClient

_ids = itertools.count()


def make_app(sockets):
    n = next(_ids)
    ep = Endpoint(f"Drain.Endpoint.{n}", pubsub_server=f"Drain.PubSub.{n}", sockets=sockets)
    app = Application([PubSub.child_spec(name=ep.pubsub_server), *ep.child_specs()])
    app.start()
    return ep, app


@pytest.fixture
def endpoint():
    ep, app = make_app([("/socket", UserSocket)])
    yield ep
    app.stop()


def test_connect_and_join_are_logged_with_timings_and_filtered_params(endpoint, caplog):
    with caplog.at_level(logging.DEBUG, logger="transport"):
        c = SocketClient(endpoint, UserSocket, params={"vsn": "2.0.0", "password": "hunter2", "user_id": "1"})
        c.send_json(["1", "1", "room:lobby", "phx_join", {"token_password": "x", "k": 1}])
        c.receive_frame()
        c.send_json(["1", "2", "room:lobby", "ping", {"password": "p"}])
        c.receive_frame()
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "CONNECTED TO UserSocket in " in text
    assert "Transport: memory" in text and "Serializer: V2JSONSerializer" in text
    assert "hunter2" not in text and "'password': '[FILTERED]'" in text
    assert "JOINED room:lobby in " in text and "'token_password': '[FILTERED]'" in text
    assert "HANDLED ping INCOMING ON room:lobby (RoomChannel) in " in text
    assert all(r.levelno == logging.INFO for r in caplog.records if "CONNECTED" in r.getMessage() or "JOINED" in r.getMessage())


def test_refusals_are_logged_as_refused(endpoint, caplog):
    with caplog.at_level(logging.INFO, logger="transport"):
        with pytest.raises(ConnectRefused):
            SocketClient(endpoint, UserSocket, params={"reject": "1"})
        c = SocketClient(endpoint, UserSocket, params={"vsn": "2.0.0"})
        c.send_json(["1", "1", "room:private", "phx_join", {}])
        c.receive_frame()
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "REFUSED CONNECTION TO UserSocket" in text
    assert "REFUSED JOIN room:private" in text


def test_logging_can_be_disabled_per_socket_and_per_channel(caplog):
    class QuietChannel(RoomChannel):
        log_join = False

    class QuietSocket(SocketHandler):
        log = False
        channels = [("room:*", QuietChannel)]

    ep, app = make_app([("/quiet", QuietSocket)])
    try:
        with caplog.at_level(logging.DEBUG, logger="transport"):
            c = SocketClient(ep, QuietSocket, params={"vsn": "2.0.0"})
            c.send_json(["1", "1", "room:lobby", "phx_join", {}])
            c.receive_frame()
        text = "\n".join(r.getMessage() for r in caplog.records)
        assert "CONNECTED" not in text and "JOINED" not in text
    finally:
        app.stop()


def test_stopping_the_tree_drains_sockets_with_1012_in_batches():
    events = []
    telemetry.attach("drain-test", ("phoenix", "socket_drain"), lambda e, m, md, c: events.append(m))
    try:
        ep, app = make_app([("/socket", UserSocket, {"drainer": {"batch_size": 2, "batch_interval": 10}})])
        clients = []
        for i in range(3):
            c = SocketClient(ep, UserSocket, params={"vsn": "2.0.0"})
            c.send_json(["1", "1", f"room:{i}", "phx_join", {}])
            c.receive_frame()
            clients.append(c)
        idle = SocketClient(ep, UserSocket, params={"vsn": "2.0.0"})  # no channel: not drained
        app.stop()
        assert [c.receive_close() for c in clients] == [(1012, "")] * 3
        assert actors.is_alive(idle.pid)
    finally:
        telemetry.detach("drain-test")
    assert events[0] == {"count": 3, "total": 3, "index": 0, "rounds": 2}
    assert events[1] == {"count": 2, "total": 3, "index": 1, "rounds": 2}
    idle.close()


def test_drainer_can_be_turned_off_and_bad_options_are_rejected():
    class S(SocketHandler):
        channels = []

    ep = Endpoint("Drain.Off", pubsub_server="x", sockets=[("/s", S, {"drainer": False})])
    assert len(ep.child_specs()) == 1
    with pytest.raises(TypeError, match="unknown option"):
        Endpoint("Drain.Bad", pubsub_server="x", sockets=[("/s", S, {"drainer": {"batch": 1}})]).child_specs()
    with pytest.raises(ValueError, match="batch_size"):
        Endpoint("Drain.Bad2", pubsub_server="x", sockets=[("/s", S, {"drainer": {"batch_size": 0}})]).child_specs()


def test_a_client_repeating_a_mistake_is_logged_once_then_counted(endpoint, caplog):
    with caplog.at_level(logging.WARNING, logger="transport"):
        c = SocketClient(endpoint, UserSocket, params={"vsn": "2.0.0"})
        for i in range(50):
            c.send_json([str(i), str(i), f"nowhere:{i}", "phx_join", {}])
            assert c.receive_json()[4] == {"status": "error", "response": {"reason": "unmatched topic"}}
        pid = c.pid
        ref = actors.monitor(pid)
        c.close()
        actors.receive(lambda m: isinstance(m, tuple) and m[:2] == ("DOWN", ref), timeout=2)
    lines = [r.getMessage() for r in caplog.records]
    assert sum("Ignoring unmatched topic" in line for line in lines) == 1
    assert [line for line in lines if "repeating client mistakes" in line] == [
        f"socket {pid} (UserSocket) closed after repeating client mistakes: unmatched topic x50"
    ]
