"""transport.ops.Metrics in-process: off costs nothing, on counts telemetry, folds labels."""

from __future__ import annotations

import gevent
import pytest

import actors
from supervision import Application
from transport import _logger, _telemetry, ops
from transport.ops import _looplag
from transport.pubsub import PubSub

EVENTS = [
    ("phoenix", "socket_connected"),
    ("phoenix", "channel_joined"),
    ("phoenix", "channel_handled_in"),
    ("phoenix", "socket_drain"),
]
LOGGER_IDS = {"transport.logger.connected", "transport.logger.joined", "transport.logger.handled_in"}


def test_off_by_default_nothing_is_attached_or_running():
    import transport  # noqa: F401 - importing the package must not turn anything on

    for event in EVENTS:
        assert set(_telemetry.list_handlers(event)) <= LOGGER_IDS
    assert actors.statistics()["exits"] is None  # no exit counting
    assert _looplag._shared is None or not _looplag._shared.running  # no sampler
    assert _logger.handled_in_unobserved(object())  # handle_in is not even timed


@pytest.fixture
def tree():
    app = Application([PubSub.child_spec(name="Metrics.PubSub")], name="Metrics.Root")
    app.start()
    yield app
    app.stop()


def test_start_attaches_and_stop_detaches(tree):
    m = ops.Metrics(root="Metrics.Root", prefix="t1")
    assert not m.running
    m.start()
    try:
        assert all(any(h.startswith("transport.ops.metrics.") for h in _telemetry.list_handlers(e)) for e in EVENTS)
        assert actors.statistics()["exits"] is not None
        assert _looplag._shared.running
    finally:
        m.stop()
    assert not m.running
    for event in EVENTS:
        assert set(_telemetry.list_handlers(event)) <= LOGGER_IDS
    assert actors.statistics()["exits"] is None
    assert not _looplag._shared.running


class _Sock:
    def __init__(self, channel, transport="websocket"):
        self.channel = channel
        self.transport = transport


class ChatChannel:
    pass


class DeclaredChannel:
    metric_events = ("a",)


def test_counters_follow_the_events_and_labels_stay_bounded(tree):
    m = ops.Metrics(root="Metrics.Root", prefix="t2", max_events_per_channel=2).start()
    try:
        _telemetry.execute(("phoenix", "socket_connected"), {"duration": 2_000_000}, {"result": "ok", "transport": "websocket"})
        _telemetry.execute(("phoenix", "socket_connected"), {"duration": 1_000}, {"result": "error", "transport": "longpoll"})
        for result in ("ok", "ok", "error"):
            _telemetry.execute(("phoenix", "channel_joined"), {"duration": 1}, {"result": result, "socket": _Sock(ChatChannel)})
        for event in ("x", "y", "z", "x", "w"):
            _telemetry.execute(
                ("phoenix", "channel_handled_in"), {"duration": 1_000}, {"event": event, "socket": _Sock(ChatChannel())}
            )
        for event in ("a", "b"):
            _telemetry.execute(
                ("phoenix", "channel_handled_in"), {"duration": 1_000}, {"event": event, "socket": _Sock(DeclaredChannel)}
            )
        _telemetry.execute(("phoenix", "socket_drain"), {"count": 7, "total": 7, "index": 0, "rounds": 1}, {})
        _telemetry.execute(("phoenix", "socket_drain"), {"count": 7, "total": 7, "index": 1, "rounds": 1}, {})
        r = m.registry
        assert (
            r.get_sample_value(
                "t2_phoenix_socket_connected_duration_milliseconds_count", {"result": "ok", "transport": "websocket"}
            )
            == 1
        )
        assert (
            r.get_sample_value(
                "t2_phoenix_socket_connected_duration_milliseconds_sum", {"result": "ok", "transport": "websocket"}
            )
            == 2.0
        )
        assert (
            r.get_sample_value(
                "t2_phoenix_socket_connected_duration_milliseconds_count", {"result": "error", "transport": "longpoll"}
            )
            == 1
        )
        assert r.get_sample_value("t2_phoenix_channel_joined_total", {"result": "ok", "transport": "websocket"}) == 2
        assert r.get_sample_value("t2_phoenix_channel_joined_total", {"result": "error", "transport": "websocket"}) == 1
        chat = f"{__name__}.ChatChannel"
        count = "t2_phoenix_channel_handled_in_duration_milliseconds_count"
        assert r.get_sample_value(count, {"channel": chat, "event": "x"}) == 2
        assert r.get_sample_value(count, {"channel": chat, "event": "y"}) == 1
        assert r.get_sample_value(count, {"channel": chat, "event": "other"}) == 2  # z and w: past the first two
        declared = f"{__name__}.DeclaredChannel"
        assert r.get_sample_value(count, {"channel": declared, "event": "a"}) == 1
        assert r.get_sample_value(count, {"channel": declared, "event": "other"}) == 1
        assert r.get_sample_value("t2_phoenix_socket_drains_total") == 1
        assert r.get_sample_value("t2_phoenix_socket_drain_channels_total") == 7
    finally:
        m.stop()


def test_a_scrape_reads_the_runtime_restarts_and_pubsub(tree):
    m = ops.Metrics(root="Metrics.Root", prefix="t3").start()
    try:
        before = m.registry.get_sample_value("t3_runtime_spawns_total")
        crashed = actors.spawn(lambda: 1 / 0)
        quiet = actors.spawn(lambda: actors.receive(lambda msg: msg == "never"))
        for _ in range(3):
            actors.send(quiet, "queued")  # never taken by its selective receive
        shard = ops.pubsub_statistics()[0]["partitions"][0]["shard"]
        actors.exit(shard, "kill")  # the PubSub's supervisor restarts it
        gevent.sleep(0.05)
        r = m.registry
        text = m.exposition().decode()
        assert "t3_phoenix_sockets" in text
        assert r.get_sample_value("t3_runtime_spawns_total") - before >= 3  # the two above and the new shard
        assert r.get_sample_value("t3_runtime_exits_total", {"reason": "error"}) >= 1
        assert r.get_sample_value("t3_runtime_exits_total", {"reason": "killed"}) >= 1
        assert r.get_sample_value("t3_runtime_message_queue_longest") >= 3
        assert r.get_sample_value("t3_runtime_supervisor_restarts_total", {"supervisor": "Metrics.PubSub"}) == 1
        assert r.get_sample_value("t3_runtime_supervisor_restarts_total", {"supervisor": "Metrics.Root"}) == 0
        assert r.get_sample_value("t3_pubsub_topics", {"pubsub": "Metrics.PubSub"}) == 0
        assert r.get_sample_value("t3_runtime_event_loop_lag_p99_milliseconds") is not None
        assert not actors.is_alive(crashed)
        actors.exit(quiet, "kill")
    finally:
        m.stop()


def test_the_metrics_listener_serves_get_only(tree):
    import urllib.error
    import urllib.request

    m = ops.Metrics(prefix="t4").start()
    server = m.serve("127.0.0.1:0")
    try:
        result = {}

        def fetch():
            with urllib.request.urlopen(server.url, timeout=5) as response:
                result["body"] = response.read().decode()
            try:
                urllib.request.urlopen(urllib.request.Request(server.url, data=b"x", method="POST"), timeout=5)
            except urllib.error.HTTPError as e:
                result["post"] = e.code

        gevent.get_hub().threadpool.spawn(fetch).get(timeout=10)
        assert "t4_runtime_processes" in result["body"]
        assert result["post"] == 405
    finally:
        server.stop()
        m.stop()


@pytest.mark.parametrize("bad", ["", "nohost", "example.com:80", "127.0.0.1:99999", "1.2.3.4"])
def test_listen_addresses_are_checked(bad):
    if bad == "1.2.3.4":
        assert ops.parse_listen_address("9568") == ("127.0.0.1", 9568)
        return
    with pytest.raises(ValueError):
        ops.parse_listen_address(bad)


def test_the_dashboard_refuses_a_public_address_without_a_token():
    with pytest.raises(ValueError, match="loopback"):
        ops.Dashboard().start("0.0.0.0:0")
    with pytest.raises(ValueError, match="16"):
        ops.Dashboard(token="short")
    dash = ops.Dashboard(token="x" * 20)
    assert dash.token_ok("x" * 20) and not dash.token_ok("y" * 20) and not dash.token_ok(None)
    assert ops.Dashboard().token_ok(None)
