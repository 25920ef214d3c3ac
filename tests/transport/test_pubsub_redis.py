"""The shared PubSub suite on the Redis adapter, against a real redis-server."""

from __future__ import annotations

import itertools
import logging
import time
from typing import Any

import pytest
import redis
from pubsub_shared import *
from pubsub_shared import Subscriber, custom_dispatch, got, nothing_received, received

import actors
from actors import StartError
from transport import _channel, pubsub
from transport._message import Broadcast
from transport.pubsub import BroadcastError, PubSub, RedisAdapter


@pytest.fixture
def pubsub_adapter(redis_server: Any) -> tuple[Any, dict[str, Any]]:
    # custom_dispatch crosses Redis (direct_broadcast to this node): list it, as an app must.
    return RedisAdapter, {"url": redis_server.url, "dispatchers": [custom_dispatch]}


# ----------------------------------------------------------------------------------------
# What only the Redis adapter does: several nodes in this OS process on one channel
# ----------------------------------------------------------------------------------------

_ids = itertools.count(1)
FAST = {"heartbeat_interval": 0.1, "node_timeout": 0.6, "reconnect_backoff_initial": 0.02, "reconnect_backoff_max": 0.2}


class Nodes:
    """PubSubs named ``test.R<n>.<node>`` sharing one channel: a cluster in one process."""

    def __init__(self, url: str, **opts: Any) -> None:
        n = next(_ids)
        self.url = url
        self.channel = f"phx:test.cluster{n}"
        self.prefix = f"test.R{n}"
        self.opts = {**FAST, **opts}
        self.sups: dict[str, Any] = {}

    def start(self, node: str, **opts: Any) -> str:
        name = f"{self.prefix}.{node}"
        self.sups[name] = PubSub.start_link(
            name=name, adapter=RedisAdapter, url=self.url, node_name=node, channel=self.channel, **{**self.opts, **opts}
        )
        return name

    def stop(self, name: str) -> None:
        sup = self.sups.pop(name)
        if actors.is_alive(sup):
            actors.unlink(sup)
            actors.stop(sup)

    def stop_all(self) -> None:
        for name in list(self.sups):
            self.stop(name)


def stats(name: str) -> dict:
    return pubsub.statistics(name)["adapter_statistics"]


def wait_for(condition: Any, timeout: float = 5.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout}s")
        actors.receive(lambda m: False, 0.01, default=None)


def node_up(a: str, b_node: str) -> Any:
    return lambda: stats(a)["nodes"].get(b_node, {}).get("status") == "up"


@pytest.fixture
def cluster(redis_server: Any) -> Any:
    nodes = Nodes(redis_server.url)
    yield nodes
    nodes.stop_all()


def settle_on(name: str) -> None:
    """Everything broadcast to ``name`` before now from any node has been delivered there."""
    topic = f"$settle:{name}"
    marker = ("$settled", actors.make_ref())
    pubsub.subscribe(name, topic)
    try:
        assert pubsub.direct_broadcast(pubsub.node_name(name), name, topic, marker) == "ok"
        received(marker)
    finally:
        pubsub.unsubscribe(name, topic)


def test_a_broadcast_reaches_every_other_node_once_and_in_order(cluster: Nodes) -> None:
    a, b, c = cluster.start("a"), cluster.start("b"), cluster.start("c")
    wait_for(lambda: stats(a)["expected_receivers"] == 3, what="a sees b and c up")
    subs = {name: Subscriber() for name in (a, b, c)}
    for name, sub in subs.items():
        sub.run(lambda name=name: pubsub.subscribe(name, "room"))
    for i in range(300):
        assert pubsub.broadcast(a, "room", ("n", i)) == "ok"
    for name, sub in subs.items():
        got_order = [received(lambda m, p=sub.pid: m[:2] == ("got", p))[2][1] for _ in range(300)]
        assert got_order == list(range(300)), name
    for name in (a, b, c):
        settle_on(name)
    assert nothing_received(lambda m: m[0] == "got")  # exactly once: no echo, no duplicate
    assert stats(a)["published"] >= 300 and stats(b)["received"] >= 300 and stats(a)["ignored"] >= 300


def test_channel_broadcasts_cross_as_broadcast_structs_with_the_fastlane(cluster: Nodes) -> None:
    a, b = cluster.start("a"), cluster.start("b")
    pubsub.subscribe(b, "room:1")
    message = Broadcast("room:1", "new_msg", {"body": "hi", "n": [1, 2]})
    assert pubsub.broadcast(a, "room:1", message, _channel.dispatch) == "ok"
    assert received(lambda m: isinstance(m, Broadcast)) == message


def test_broadcast_from_skips_the_sender_on_its_own_node_only(cluster: Nodes) -> None:
    a, b = cluster.start("a"), cluster.start("b")
    pubsub.subscribe(a, "t")
    pubsub.subscribe(b, "t")
    assert pubsub.broadcast_from(a, actors.self(), "t", "from-a") == "ok"
    received("from-a")  # from b: a's pid means nothing there
    settle_on(a)
    settle_on(b)
    assert nothing_received("from-a")


def test_direct_broadcast_reaches_the_named_node_only(cluster: Nodes) -> None:
    a, b, c = cluster.start("a"), cluster.start("b"), cluster.start("c")
    wait_for(node_up(a, "b"), what="a sees b")
    for name in (a, b, c):
        pubsub.subscribe(name, "t")
    assert pubsub.direct_broadcast("b", a, "t", ("for", "b")) == "ok"
    received(("for", "b"))
    for name in (a, b, c):
        settle_on(name)
    assert nothing_received(("for", "b"))
    assert pubsub.direct_broadcast("nobody", a, "t", "x") == ("error", ("nodedown", "nobody"))
    with pytest.raises(BroadcastError, match="nodedown"):
        pubsub.direct_broadcast_or_raise("nobody", a, "t", "x")
    cluster.stop(c)  # a clean stop says goodbye: known at once
    wait_for(lambda: stats(a)["nodes"]["c"]["status"] == "left", what="c left")
    assert pubsub.direct_broadcast("c", a, "t", "x") == ("error", ("nodedown", "c"))


def test_statistics_show_the_nodes_and_counters(cluster: Nodes) -> None:
    a, _ = cluster.start("a"), cluster.start("b")
    wait_for(node_up(a, "b"), what="a sees b")
    st = pubsub.statistics(a)
    assert st["node_name"] == "a" and st["adapter"] == "RedisAdapter"
    rs = st["adapter_statistics"]
    assert rs["subscriber"] == "subscribed" and rs["publisher"] == "up" and rs["name_claim"] == "claimed"
    assert rs["channel"] == cluster.channel and rs["nodes"]["b"]["heartbeats"] is True
    assert 0 <= rs["nodes"]["b"]["seconds_since_last_message"] < 1.0
    for key in ("published", "publish_errors", "received", "decode_errors", "reconnects", "undelivered"):
        assert isinstance(rs[key], int)


def test_a_duplicate_node_name_is_refused_with_a_clear_reason(cluster: Nodes) -> None:
    cluster.start("a")
    actors.trap_exit(True)
    with pytest.raises(StartError) as info:
        PubSub.start_link(
            name=f"{cluster.prefix}.dup", adapter=RedisAdapter, url=cluster.url, node_name="a", channel=cluster.channel
        )
    assert "node_name_in_use" in repr(info.value.reason) and "'a' is already in use" in repr(info.value.reason)
    assert actors.whereis(f"{cluster.prefix}.dup") is None


def test_bad_messages_and_unknown_dispatchers_are_counted_and_logged_once(cluster: Nodes, caplog: Any) -> None:
    from transport.pubsub._redis_codec import EXCEPT, WireCodec

    a = cluster.start("a")
    pubsub.subscribe(a, "t")
    raw = redis.Redis.from_url(cluster.url)
    try:
        with caplog.at_level(logging.WARNING, logger="transport.pubsub.redis"):
            for _ in range(3):
                raw.publish(cluster.channel, b"garbage")
                raw.publish(cluster.channel, WireCodec("x").encode(EXCEPT, "x", "t", "m", "Elixir.Nobody.Knows"))
            assert pubsub.broadcast(a, "t", "still fine") == "ok"
            settle_on(a)
    finally:
        raw.close()
    received("still fine")
    st = stats(a)
    assert st["decode_errors"] == 3 and st["unknown_dispatchers"] == 3
    lines = [r.getMessage() for r in caplog.records]
    assert sum("could not be read" in line for line in lines) == 1
    assert sum("unknown dispatcher Elixir.Nobody.Knows" in line for line in lines) == 1


def raising_dispatch(entries: Any, from_pid: Any, message: Any) -> None:
    raise RuntimeError("dispatcher bug")


def test_a_dispatcher_that_raises_on_the_receiving_node_does_not_stop_it(cluster: Nodes) -> None:
    a, b = cluster.start("a", dispatchers=[raising_dispatch]), cluster.start("b", dispatchers=[raising_dispatch])
    pubsub.subscribe(b, "t")
    assert pubsub.broadcast(a, "t", "boom", raising_dispatch) == "ok"  # a has no subscriber: only b runs it
    assert pubsub.broadcast(a, "t", "after") == "ok"
    received("after")
    assert stats(b)["dispatch_errors"] == 1 and stats(b)["subscriber"] == "subscribed"


def test_an_unencodable_message_is_an_error_and_still_delivered_here(cluster: Nodes) -> None:
    a = cluster.start("a")
    pubsub.subscribe(a, "t")
    result = pubsub.broadcast(a, "t", {"a set": {1, 2}})
    assert result[0] == "error" and result[1][0] == "unencodable"
    assert received({"a set": {1, 2}}) == {"a set": {1, 2}}


def test_a_reconnecting_node_makes_broadcasts_errors_not_silent_losses(cluster: Nodes) -> None:
    a = cluster.start("a")
    b = cluster.start("b", reconnect_backoff_initial=1.0, reconnect_backoff_max=1.0)
    wait_for(node_up(a, "b"), what="a sees b")
    pubsub.subscribe(b, "t")
    raw = redis.Redis.from_url(cluster.url)
    try:
        killed = raw.execute_command("CLIENT", "KILL", "TYPE", "pubsub", "SKIPME", "yes")
        assert killed >= 2  # a's and b's subscribers (and any other test's)
    finally:
        raw.close()
    # b waits >= 0.5 s before resubscribing; a's broadcasts meanwhile are errors.
    results = [pubsub.broadcast(a, "t", ("n", i)) for i in range(20)]
    errors = [r for r in results if r != "ok"]
    assert errors and all(r[1][0] in ("undelivered", "redis") for r in errors)
    # Every broadcast reported ok reached b.
    oks = [i for i, r in enumerate(results) if r == "ok"]
    wait_for(lambda: stats(b)["subscriber"] == "subscribed", what="b resubscribed")
    wait_for(lambda: pubsub.broadcast(a, "t", "back") == "ok", what="broadcasts ok again")
    got = []
    while True:
        m = received(lambda m: m == "back" or (m.__class__ is tuple and m[0] == "n"))
        if m == "back":
            break
        got.append(m[1])
    assert set(oks) <= set(got)
    assert stats(b)["reconnects"] >= 1 and stats(a)["undelivered"] >= 1


def test_redis_down_local_delivery_goes_on_and_every_remote_publish_is_an_error() -> None:
    from redis_server import RedisServer

    server = RedisServer.start()
    nodes = Nodes(server.url)
    try:
        a, b = nodes.start("a"), nodes.start("b")
        wait_for(node_up(a, "b"), what="a sees b")
        pubsub.subscribe(a, "t")
        on_b = Subscriber()
        on_b.run(lambda: pubsub.subscribe(b, "t"))
        assert pubsub.broadcast(a, "t", "before") == "ok"
        received("before")
        received(got(on_b.pid, "before"))
        server.kill()
        started = time.monotonic()
        outcomes = [pubsub.broadcast(a, "t", ("down", i)) for i in range(50)]
        assert time.monotonic() - started < 2.0  # no waiting on a dead Redis
        assert all(r[0] == "error" and r[1][0] in ("redis", "redis_down", "undelivered") for r in outcomes), outcomes[:3]
        with pytest.raises(BroadcastError):
            pubsub.broadcast_or_raise(a, "t", ("down", "raise"))
        for i in range(50):
            received(("down", i), timeout=1.0)  # a's own subscriber got every one
        received(("down", "raise"), timeout=1.0)
        wait_for(lambda: stats(a)["subscriber"] == "reconnecting", what="a notices")
        server.restart()
        back = time.monotonic()
        wait_for(lambda: pubsub.broadcast(a, "t", "after") == "ok", timeout=5.0, what="ok again")
        # Within the backoff bound (0.2 s here) plus a loaded machine's slack.
        assert time.monotonic() - back < 3.0
        received(got(on_b.pid, "after"))
        # 'ok' needs only b's subscription back (a's own may still be backing off).
        wait_for(lambda: stats(a)["reconnects"] >= 1 and stats(b)["reconnects"] >= 1, what="both resubscribed")
        assert stats(a)["publish_errors"] >= 51
        settle_on(b)
        # b got none of them: Redis was down, and each was an error at a.
        assert nothing_received(lambda m: m.__class__ is tuple and m[0] == "got" and m[2].__class__ is tuple)
    finally:
        nodes.stop_all()
        server.stop()


@pytest.mark.parametrize(
    "opts, match",
    [
        ({"colour": "red"}, "colour"),
        ({"url": "rediss://h:1/0"}, "redis://"),
        ({"url": "redis://h:1/0?node_timeout=x"}, "node_timeout"),
        ({"url": "redis://h:1/0?bogus=1"}, "bogus"),
        ({"url": "redis://h:1/0?node_name=a", "node_name": "b"}, "twice"),
        ({"node_timeout": 1, "heartbeat_interval": 2}, "node_timeout"),
        ({"compression_level": 11}, "compression_level"),
        ({"node_name": ""}, "node_name"),
        ({"dispatchers": "x"}, "dispatchers"),
    ],
)
def test_bad_options_are_refused_before_anything_starts(opts: dict, match: str) -> None:
    with pytest.raises((TypeError, ValueError), match=match):
        PubSub.child_spec(name="test.RedisBad", adapter=RedisAdapter, **opts)


def test_url_query_options_are_read() -> None:
    spec = PubSub.child_spec(
        name="test.RedisQuery", adapter=RedisAdapter, url="redis://127.0.0.1:1/2?node_name=q&heartbeat_interval=0.5&channel=phx:x"
    )
    config = spec.start[1][0]
    opts = config.adapter_spec.start[1][2]
    assert opts["node_name"] == "q" and opts["heartbeat_interval"] == 0.5 and opts["channel"] == "phx:x"
    assert opts["url"] == "redis://127.0.0.1:1/2"


def test_the_debug_shell_shows_the_nodes_and_counters(cluster: Nodes, capsys: Any) -> None:
    from transport import debug_shell

    a, _ = cluster.start("a"), cluster.start("b")
    wait_for(node_up(a, "b"), what="a sees b")
    assert pubsub.broadcast(a, "t", "x") == "ok"
    shell = debug_shell.Shell()
    rows = shell.nodes(pubsub=a)
    out = capsys.readouterr().out
    assert rows["nodes"]["b"]["status"] == "up"
    assert f"PubSub {a}, node a on {cluster.url} {cluster.channel}: subscriber subscribed, publisher up, name claimed" in out
    table = [line.split() for line in out.splitlines()]
    assert ["b", "up", "True"] in [row[:3] for row in table]
    assert "published=1" in out and "reconnects=0" in out
