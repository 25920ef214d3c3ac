"""Presence and its tracker on one node and on several nodes in one OS process.

The nodes are PubSubs joined by presence_cluster.RelayAdapter (every tracker message
crosses the term codec); periods are short (broadcast 60-100 ms) so that a test waits
for events with deadlines, never for fixed sleeps.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from presence_cluster import Cluster, idle_process, keys_on, wait_until

import actors
from transport import Broadcast, pubsub
from transport.presence import Presence, TrackerConfig, TrackerError

BP = 100  # ms, broadcast_period
FAST = {"broadcast_period": BP, "down_period": 600, "permdown_period": 3000}


@pytest.fixture
def cluster(request):
    """Make clusters of n nodes: on the in-process relay, or (for the tests parametrised
    with ``adapter``) on a real redis-server."""
    made: list[Cluster] = []
    adapter = getattr(request, "param", "relay")
    redis_url = request.getfixturevalue("redis_server").url if adapter == "redis" else None

    def make(n: int, presence_cls: type[Presence] = Presence, **options: Any) -> Cluster:
        c = Cluster(presence_cls, redis_url=redis_url, **{**FAST, **options})
        made.append(c)
        c.add(n)
        return c

    actors.trap_exit(True)
    yield make
    for c in made:
        c.stop()


@pytest.fixture
def procs():
    started: list[actors.Pid] = []

    def spawn() -> actors.Pid:
        pid = idle_process()
        started.append(pid)
        return pid

    yield spawn
    for pid in started:
        actors.exit(pid, "kill")


def diffs(timeout: float = 2.0) -> Any:
    msg = actors.receive(lambda m: isinstance(m, Broadcast) and m.event == "presence_diff", timeout=timeout)
    return msg.payload


# -- options ---------------------------------------------------------------------------


def test_options_default_as_phoenix_and_are_checked():
    c = TrackerConfig(name="t", pubsub_server="p")
    assert (c.pool_size, c.broadcast_period, c.max_silent_periods, c.down_period, c.permdown_period) == (
        1,
        1500,
        10,
        30_000,
        1_200_000,
    )
    assert (c.clock_sample_periods, c.max_delta_sizes, c.log_level) == (2, (100, 1000, 10_000), False)
    with pytest.raises(ValueError, match="twice as large"):
        TrackerConfig(name="t", pubsub_server="p", broadcast_period=100, down_period=150)
    with pytest.raises(ValueError, match="larger than the down_period"):
        TrackerConfig(name="t", pubsub_server="p", down_period=5000, permdown_period=5000)
    with pytest.raises(ValueError, match="pool_size"):
        TrackerConfig(name="t", pubsub_server="p", pool_size=0)
    with pytest.raises(TypeError, match="handle_diff is Presence's own"):
        Presence("x", pubsub_server="p", handle_diff=print)
    with pytest.raises(TypeError):
        Presence("x", pubsub_server="p", no_such_option=1)


def test_calls_without_a_running_tracker_raise():
    with pytest.raises(TrackerError, match="no tracker"):
        Presence("not.started", pubsub_server="p").list("room:1")


# -- one node --------------------------------------------------------------------------


def test_track_update_untrack_and_the_diffs(cluster, procs):
    (node,) = cluster(1).nodes
    p = node.presence
    pubsub.subscribe(node.pubsub, "room:1")
    alice = procs()
    ok, ref = p.track(alice, "room:1", "alice", {"status": "away"})
    assert ok == "ok" and isinstance(ref, str) and len(ref) == 16
    assert diffs() == {"joins": {"alice": {"metas": [{"status": "away", "phx_ref": ref}]}}, "leaves": {}}
    assert p.track(alice, "room:1", "alice", {}) == ("error", ("already_tracked", alice, "room:1", "alice"))
    assert p.list("room:1") == {"alice": {"metas": [{"status": "away", "phx_ref": ref}]}}
    assert p.get_by_key("room:1", "alice") == {"metas": [{"status": "away", "phx_ref": ref}]}
    assert p.get_by_key("room:1", "bob") == []

    ok, ref2 = p.update(alice, "room:1", "alice", lambda meta: {**meta, "status": "online"})
    assert ok == "ok" and ref2 != ref
    new_meta = {"status": "online", "phx_ref": ref2, "phx_ref_prev": ref}
    assert diffs() == {
        "joins": {"alice": {"metas": [new_meta]}},
        "leaves": {"alice": {"metas": [{"status": "away", "phx_ref": ref}]}},
    }
    assert p.list("room:1") == {"alice": {"metas": [new_meta]}}
    assert p.update(alice, "room:1", "nobody", {}) == ("error", "nopresence")

    # a second process of the same key: two metas under one key
    alice2 = procs()
    _, ref3 = p.track(alice2, "room:1", "alice", {"status": "mobile"})
    diffs()
    assert [m["phx_ref"] for m in p.list("room:1")["alice"]["metas"]] == [ref2, ref3]

    assert p.untrack(alice, "room:1", "alice") == "ok"
    assert diffs() == {"joins": {}, "leaves": {"alice": {"metas": [new_meta]}}}
    assert [m["phx_ref"] for m in p.list("room:1")["alice"]["metas"]] == [ref3]


def test_a_dead_process_leaves(cluster, procs):
    (node,) = cluster(1).nodes
    pubsub.subscribe(node.pubsub, "room:1")
    pid = procs()
    node.presence.track(pid, "room:1", 42, {})
    node.presence.track(pid, "room:2", 42, {})
    assert diffs()["joins"] == {"42": {"metas": [{"phx_ref": node.presence.list("room:1")["42"]["metas"][0]["phx_ref"]}]}}
    actors.exit(pid, "kill")
    assert list(diffs()["leaves"]) == ["42"]
    wait_until(lambda: node.presence.list("room:2") == {}, 2)
    stats = node.tracker.statistics()[0]
    assert stats["tracked_processes"] == 0 and stats["presences"] == 0


def test_fetch_enriches_lists_and_diffs(cluster, procs):
    class Users(Presence):
        def fetch(self, topic, presences):
            return {key: {**entry, "user": {"name": key.upper()}} for key, entry in presences.items()}

    (node,) = cluster(1, Users).nodes
    pubsub.subscribe(node.pubsub, "room:1")
    node.presence.track(procs(), "room:1", "ann", {})
    assert diffs()["joins"]["ann"]["user"] == {"name": "ANN"}
    assert node.presence.list("room:1")["ann"]["user"] == {"name": "ANN"}
    assert node.presence.get_by_key("room:1", "ann")["user"] == {"name": "ANN"}


def test_a_bad_tracker_message_is_dropped_and_the_shard_lives_on(cluster, procs, caplog):
    (node,) = cluster(1).nodes
    shard = actors.whereis(node.tracker.shards()[0])
    from transport.terms import Atom

    for _ in range(3):
        actors.send(shard, (Atom("pub"), Atom("heartbeat"), ("evil", 1), {"values": "nope"}, None))
    actors.send(shard, (Atom("pub"), Atom("what"), ("evil", 1)))
    node.presence.track(procs(), "room:1", "k", {})
    assert actors.whereis(node.tracker.shards()[0]) == shard
    assert list(node.presence.list("room:1")) == ["k"]
    bad = [r for r in caplog.records if "bad tracker message" in r.getMessage()]
    assert len(bad) == 2  # once per sender and kind, not once per message


def test_pool_of_shards_by_topic(cluster, procs):
    c = cluster(2, pool_size=4)
    a, b = c.nodes
    topics = [f"room:{i}" for i in range(12)]
    assert len({a.tracker.shard_index(t) for t in topics}) > 1
    for t in topics:
        a.presence.track(procs(), t, "u", {})
    wait_until(lambda: all(keys_on(b, t) == {"u": 1} for t in topics), 5)
    assert sum(s["presences"] for s in b.tracker.statistics()) == 12


# -- several nodes ---------------------------------------------------------------------

# The replication tests that need no relay tricks run on both adapters.
both_adapters = pytest.mark.parametrize("cluster", ["relay", "redis"], indirect=True)


@both_adapters
def test_three_nodes_converge_within_two_broadcast_periods(cluster, procs):
    c = cluster(3)
    # let them meet (first heartbeats), then measure one round of changes
    wait_until(lambda: all(len(n.tracker.replicas()) == 2 for n in c.nodes), 30 * BP / 1000)
    start = time.monotonic()
    for i, node in enumerate(c.nodes):
        for j in range(5):
            node.presence.track(procs(), "room:lobby", f"user{i}-{j}", {"node": i})
    expected = {f"user{i}-{j}": 1 for i in range(3) for j in range(5)}
    for node in c.nodes:
        wait_until(lambda: keys_on(node, "room:lobby") == expected, 5)
    took = time.monotonic() - start
    # Two periods plus scheduling room for a loaded 2-core machine.
    assert took < 2 * BP / 1000 + 0.6, f"converged in {took:.3f} s"


@both_adapters
def test_diffs_from_other_nodes_reach_local_subscribers(cluster, procs):
    a, b = cluster(2).nodes
    pubsub.subscribe(b.pubsub, "room:1")
    _, ref = a.presence.track(procs(), "room:1", "remote", {"x": 1})
    assert diffs() == {"joins": {"remote": {"metas": [{"x": 1, "phx_ref": ref}]}}, "leaves": {}}
    assert b.presence.get_by_key("room:1", "remote") == {"metas": [{"x": 1, "phx_ref": ref}]}
    pid, meta = b.tracker.get_by_key("room:1", "remote")[0]
    assert isinstance(pid, str)  # another node's process, by its name there


@both_adapters
def test_a_dead_process_leaves_every_node(cluster, procs):
    c = cluster(3)
    a = c.nodes[0]
    pid = procs()
    a.presence.track(pid, "room:1", "gone", {})
    a.presence.track(procs(), "room:1", "stays", {})
    for n in c.nodes:
        wait_until(lambda: keys_on(n, "room:1") == {"gone": 1, "stays": 1}, 5)
    actors.exit(pid, "kill")
    for n in c.nodes:
        wait_until(lambda: keys_on(n, "room:1") == {"stays": 1}, 5)


@both_adapters
def test_a_killed_node_leaves_after_down_period(cluster, procs):
    c = cluster(3, down_period=1200, permdown_period=2500)
    a, b, victim = c.nodes
    victim.presence.track(procs(), "room:1", "v", {})
    a.presence.track(procs(), "room:1", "a", {})
    for n in c.nodes:
        wait_until(lambda: keys_on(n, "room:1") == {"a": 1, "v": 1}, 5)
    pubsub.subscribe(b.pubsub, "room:1")
    killed = time.monotonic()
    victim.kill_tracker()
    # still listed for a while: a silent node might only be slow
    actors.receive(lambda m: False, timeout=0.3, default=None)
    assert keys_on(a, "room:1") == {"a": 1, "v": 1}
    for n in (a, b):
        wait_until(lambda: keys_on(n, "room:1") == {"a": 1}, 5)
    took = time.monotonic() - killed
    # Silence counts from the victim's last heartbeat, which may precede the kill by up to
    # one broadcast period (Phoenix.Tracker's rule too).
    assert 1.2 - BP / 1000 <= took < 1.2 + 2 * BP / 1000 + 1.0, took
    leaves = diffs()["leaves"]
    assert list(leaves) == ["v"] and list(leaves["v"]["metas"][0]) == ["phx_ref"]
    assert a.tracker.replicas()[victim.node_name] == "down"
    # and forgotten after permdown_period
    wait_until(lambda: victim.node_name not in a.tracker.replicas(), 6)


@both_adapters
def test_a_node_stopped_gracefully_leaves_at_once(cluster, procs):
    c = cluster(3, down_period=20_000, permdown_period=60_000)
    a, b, leaving = c.nodes
    leaving.presence.track(procs(), "room:1", "bye", {})
    for n in c.nodes:
        wait_until(lambda: keys_on(n, "room:1") == {"bye": 1}, 5)
    stopped = time.monotonic()
    leaving.stop()
    for n in (a, b):
        wait_until(lambda: keys_on(n, "room:1") == {}, 2)
    assert time.monotonic() - stopped < 1.0
    assert leaving.node_name not in a.tracker.replicas()


def test_missed_heartbeats_are_caught_up_by_transfer(cluster, procs):
    c = cluster(2)
    a, b = c.nodes
    wait_until(lambda: len(b.tracker.replicas()) == 1, 3)
    # b misses a's deltas for a while (not the empty heartbeats: none are sent meanwhile)
    c.drop(lambda src, dst, topic, msg: src == a.node_name and str(msg[1]) == "heartbeat")
    pids = [procs() for _ in range(3)]
    for i, pid in enumerate(pids):
        a.presence.track(pid, "room:1", f"k{i}", {})
    actors.receive(lambda m: False, timeout=3 * BP / 1000, default=None)
    assert keys_on(b, "room:1") == {}
    c.drop(None)
    actors.exit(pids[0], "kill")  # a later delta: b sees the gap and asks for the rest
    wait_until(lambda: keys_on(b, "room:1") == {"k1": 1, "k2": 1}, 5)


@both_adapters
def test_a_new_node_gets_the_whole_state(cluster, procs):
    # Quiet nodes send an empty heartbeat only every 20 periods (2 s); they beat at once
    # for a replica they have not heard from, so the new node catches up in a few periods.
    c = cluster(2, max_silent_periods=20)
    a, b = c.nodes
    for i in range(50):
        (a if i % 2 else b).presence.track(procs(), "room:1", f"u{i}", {"i": i})
    wait_until(lambda: len(keys_on(a, "room:1")) == 50 and len(keys_on(b, "room:1")) == 50, 5)
    (late,) = c.add(1)
    took = wait_until(lambda: len(keys_on(late, "room:1")) == 50, 5)
    assert took < 1.5, took
    assert late.presence.list("room:1") == a.presence.list("room:1")


def test_a_partitioned_node_comes_back(cluster, procs):
    c = cluster(2, down_period=400, permdown_period=10_000)
    a, b = c.nodes
    b.presence.track(procs(), "room:1", "b", {})
    wait_until(lambda: keys_on(a, "room:1") == {"b": 1}, 3)
    c.cut(b)
    wait_until(lambda: keys_on(a, "room:1") == {}, 3)
    b.presence.track(procs(), "room:1", "b2", {})
    c.heal(b)
    wait_until(lambda: keys_on(a, "room:1") == {"b": 1, "b2": 1}, 5)
