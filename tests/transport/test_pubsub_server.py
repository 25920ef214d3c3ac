"""The PubSub server on the local adapter: its tree, its shards, its options."""

from __future__ import annotations

import itertools
from typing import Any

import gevent
import pytest
from pubsub_shared import Subscriber, received, stop_subscribers  # noqa: F401 - fixture

import actors
import supervision
from actors import _runtime as rt
from transport import pubsub
from transport.pubsub import PubSub, UnknownPubSubError
from transport.pubsub._api import _instances

_names = itertools.count(1)


@pytest.fixture
def start():
    """Start PubSubs for a test; all are stopped at its end."""
    started: list[Any] = []

    def _start(**opts: Any) -> str:
        name = opts.pop("name", None) or f"test.ServerPubSub{next(_names)}"
        sup = PubSub.start_link(name=name, **opts)
        started.append(sup)
        return name

    yield _start
    for sup in started:
        if actors.is_alive(sup):
            actors.unlink(sup)
            actors.stop(sup)


def partition_of(name: str, pid: actors.Pid) -> int:
    rows = [i for i, table in enumerate(_instances[name].tables) if table.holds(pid)]
    assert len(rows) == 1
    return rows[0]


def sync(name: str) -> None:
    for shard in pubsub.shards(name):
        assert actors.call(shard, "sync") == "ok"


# -- partitions ------------------------------------------------------------------------


def test_subscribers_are_partitioned_by_pid(start) -> None:
    name = start(pool_size=4)
    subs = [Subscriber() for _ in range(20)]
    for sub in subs:
        sub.subscribe(_Ps(name), "t")
        sub.subscribe(_Ps(name), "u")
    for sub in subs:
        assert partition_of(name, sub.pid) == hash(sub.pid) % 4
    rows = pubsub.statistics(name)["partitions"]
    assert [r["subscribers"] for r in rows] == [sum(1 for s in subs if hash(s.pid) % 4 == i) for i in range(4)]
    assert all(r["subscribers"] for r in rows)  # 20 consecutive pids cover 4 partitions
    # a subscriber's death removes it from its partition at once, with no shard round trip
    for sub in subs[:10]:
        sub.kill()
    assert {p for p, _ in pubsub.subscribers(name, "t")} == {s.pid for s in subs[10:]}
    assert {p for p, _ in pubsub.subscribers(name, "u")} == {s.pid for s in subs[10:]}
    for i, table in enumerate(_instances[name].tables):
        assert set(table.all_subscribers()) == {s.pid for s in subs[10:] if hash(s.pid) % 4 == i}


def test_default_pool_size_is_one_as_phoenix_pubsub(start) -> None:
    name = start()
    assert pubsub.statistics(name)["pool_size"] == 1
    assert len(pubsub.shards(name)) == 1


def _hooked_tables() -> list:
    """The tables the calling process has exit hooks on (the runtime's record of it)."""
    return list(rt._current().exit_hooks or {})


def test_unsubscribing_everything_drops_the_exit_hook(start) -> None:
    name = start(pool_size=1)
    table = _instances[name].tables[0]
    pubsub.subscribe(name, "a")
    pubsub.subscribe(name, "b")
    assert _hooked_tables() == [table]
    pubsub.unsubscribe(name, "a")
    assert _hooked_tables() == [table]
    pubsub.unsubscribe(name, "b")
    assert _hooked_tables() == []
    # nobody watches a subscriber: no monitor, no link
    assert actors.process_info(actors.self())["monitored_by"] == []


def test_exit_hooks_converge_under_churn(start) -> None:
    name = start(pool_size=2)
    for _ in range(5):
        pubsub.subscribe(name, "x")
        pubsub.unsubscribe(name, "x")
        pubsub.subscribe(name, "x")
        pubsub.subscribe(name, "y")
        pubsub.unsubscribe(name, "y")
    me = actors.self()
    mine = _instances[name].tables[hash(me) % 2]
    assert _hooked_tables() == [mine]
    pubsub.unsubscribe(name, "x")
    assert _hooked_tables() == []


def test_a_killed_subscriber_is_gone_before_anyone_runs(start) -> None:
    name = start(pool_size=2)
    subs = [Subscriber() for _ in range(4)]
    for sub in subs:
        sub.subscribe(_Ps(name), "room")
    subs[1].kill()
    # Erlang applies a kill at once; the rows go with it, before the victim is unwound
    assert {p for p, _ in pubsub.subscribers(name, "room")} == {subs[0].pid, subs[2].pid, subs[3].pid}
    assert pubsub.broadcast(name, "room", "hello") == "ok"
    for sub in (subs[0], subs[2], subs[3]):
        received(lambda m, p=sub.pid: m == ("got", p, "hello"))


# -- supervision -----------------------------------------------------------------------


def test_the_pubsub_is_a_supervisor_of_shards_and_the_adapter(start) -> None:
    name = start(pool_size=3)
    sup = actors.whereis(name)
    kids = supervision.which_children(sup)[::-1]  # OTP lists newest first
    assert [k.id for k in kids] == [("shard", 0), ("shard", 1), ("shard", 2), f"{name}.Adapter"]
    assert [k.pid for k in kids[:3]] == pubsub.shards(name)
    assert kids[3].pid is None  # the local adapter runs no process (it "ignores")
    info = actors.process_info(pubsub.shards(name)[0])
    assert info["label"] == ("pubsub_shard", name, 0)


def test_a_killed_shard_is_restarted_and_keeps_its_subscriptions(start) -> None:
    name = start(pool_size=2)
    subs = [Subscriber() for _ in range(6)]
    for sub in subs:
        sub.subscribe(_Ps(name), "room")
    index = partition_of(name, subs[0].pid)
    old = pubsub.shards(name)[index]
    mref = actors.monitor(old)
    actors.exit(old, "kill")
    received(lambda m: isinstance(m, tuple) and m[:2] == ("DOWN", mref))
    new = _wait_for_shard(name, index, old)
    assert new != old
    # nothing was lost: everyone still subscribed and still reached
    assert {p for p, _ in pubsub.subscribers(name, "room")} == {s.pid for s in subs}
    pubsub.broadcast(name, "room", "after restart")
    for sub in subs:
        received(lambda m, p=sub.pid: m == ("got", p, "after restart"))
    # and a subscriber that dies now is removed, as before
    victim = subs[0]
    victim.kill()
    assert victim.pid not in {p for p, _ in pubsub.subscribers(name, "room")}


def test_a_subscriber_that_dies_while_its_shard_is_down_is_cleaned_up(start) -> None:
    name = start(pool_size=1)
    sub = Subscriber()
    sub.subscribe(_Ps(name), "room")
    sup = actors.whereis(name)
    shard = pubsub.shards(name)[0]
    # Stop the shard through its supervisor (no restart), then kill the subscriber.
    supervision.terminate_child(sup, ("shard", 0))
    assert not actors.is_alive(shard)
    assert pubsub.shards(name) == [None]
    sub.kill()
    assert pubsub.subscribers(name, "room") == []  # the cleanup never depended on the shard
    pubsub.subscribe(name, "room")
    supervision.restart_child(sup, ("shard", 0))
    sync(name)
    assert pubsub.subscribers(name, "room") == [(actors.self(), None)]


def test_shards_crashing_past_the_restart_intensity_take_the_pubsub_down(start) -> None:
    name = start(pool_size=1)
    sup = actors.whereis(name)
    actors.unlink(sup)
    mref = actors.monitor(sup)
    for _ in range(4):  # max_restarts is 3 in 5 s
        shard = _wait_for_shard(name, 0, None)
        actors.exit(shard, "kill")
    down = received(lambda m: isinstance(m, tuple) and m[:2] == ("DOWN", mref))
    assert down[4] == "shutdown"
    with pytest.raises(UnknownPubSubError):
        pubsub.subscribe(name, "t")
    assert name not in _instances


def test_put_in_a_tree_with_child_spec() -> None:
    spec = PubSub.child_spec(name="test.TreePubSub", pool_size=2)
    assert spec.id == "test.TreePubSub" and spec.type == "supervisor"
    sup = supervision.start_link([spec, (PubSub, {"name": "test.TreePubSub2", "pool_size": 1})])
    try:
        pubsub.subscribe("test.TreePubSub", "t")
        pubsub.subscribe("test.TreePubSub2", "t")
        pubsub.broadcast("test.TreePubSub", "t", 1)
        pubsub.broadcast("test.TreePubSub2", "t", 2)
        assert received(1) == 1 and received(2) == 2
    finally:
        actors.unlink(sup)
        actors.stop(sup)
    with pytest.raises(UnknownPubSubError):
        pubsub.broadcast("test.TreePubSub", "t", 1)
    assert "test.TreePubSub" not in _instances and "test.TreePubSub2" not in _instances


def test_a_restarted_pubsub_starts_with_an_empty_table() -> None:
    sup = supervision.start_link([PubSub.child_spec(name="test.RestartedPubSub", pool_size=1)])
    try:
        pubsub.subscribe("test.RestartedPubSub", "t")
        old = actors.whereis("test.RestartedPubSub")
        actors.exit(old, "kill")
        (child,) = supervision.which_children(sup)  # a call: the restart is done
        assert child.pid == actors.whereis("test.RestartedPubSub") and child.pid != old
        assert pubsub.subscribers("test.RestartedPubSub", "t") == []
    finally:
        actors.unlink(sup)
        actors.stop(sup)


def test_a_second_pubsub_with_the_same_name_fails_to_start(start) -> None:
    name = start(pool_size=1)
    with pytest.raises(actors.StartError) as info:
        PubSub.start_link(name=name, pool_size=1)
    assert info.value.reason == ("already_started", actors.whereis(name))
    pubsub.subscribe(name, "still:works")
    assert pubsub.broadcast(name, "still:works", "yes") == "ok"
    assert received("yes")


@pytest.mark.parametrize(
    "opts, error, argument",
    [
        ({}, TypeError, "name"),
        ({"name": 42}, TypeError, "name"),
        ({"name": ""}, TypeError, "name"),
        ({"name": "x", "pool_size": 0}, ValueError, "pool_size"),
        ({"name": "x", "pool_size": True}, TypeError, "pool_size"),
        ({"name": "x", "pool_size": "4"}, TypeError, "pool_size"),
        ({"name": "x", "adapter": object()}, TypeError, "adapter"),
    ],
)
def test_bad_options_raise_naming_the_option(opts: dict, error: type, argument: str) -> None:
    with pytest.raises(error, match=argument):
        PubSub.child_spec(**opts)
    with pytest.raises(error, match=argument):
        PubSub.start_link(opts)


def test_options_as_a_dict_or_keywords_but_not_both() -> None:
    assert PubSub.child_spec({"name": "a"}).id == "a"
    with pytest.raises(TypeError, match="name"):
        PubSub.child_spec({"name": "a"}, name="b")


def test_stopping_the_pubsub_leaves_nothing_behind(no_leaks) -> None:
    sup = PubSub.start_link(name="test.LeakPubSub", pool_size=3)
    pubsub.subscribe("test.LeakPubSub", "t")
    actors.unlink(sup)
    actors.stop(sup)
    assert "test.LeakPubSub" not in _instances


# -- dispatch --------------------------------------------------------------------------


def test_a_dispatcher_that_raises_fails_the_broadcaster(start) -> None:
    name = start(pool_size=1)
    pubsub.subscribe(name, "t")

    def bad(entries, from_pid, message):
        raise RuntimeError("dispatcher broke")

    with pytest.raises(RuntimeError, match="dispatcher broke"):
        pubsub.broadcast(name, "t", 1, bad)
    assert pubsub.broadcast(name, "t", "fine") == "ok" and received("fine")


def test_a_dispatcher_may_block_while_the_table_changes(start) -> None:
    # The dispatcher yields at every entry; meanwhile other processes subscribe and
    # unsubscribe, and a subscriber dies (its rows go with it). With a live view of the
    # table this raises "dictionary changed size during iteration".
    name = start(pool_size=1)
    subs = [Subscriber() for _ in range(10)]
    for sub in subs:
        sub.subscribe(_Ps(name), "t")
    seen: list = []

    def slow(entries, from_pid, message):
        for i, (pid, _) in enumerate(entries):
            if i == 1:
                subs[0].kill()  # its rows go at once, under the sleeping dispatcher
            gevent.sleep(0)
            seen.append(pid)

    me = actors.self()
    for _ in range(5):
        actors.spawn(_subscribe_and_leave, name, me)
    pubsub.broadcast(name, "t", "m", slow)
    assert seen == [s.pid for s in subs]  # the snapshot taken when the broadcast began
    for _ in range(5):
        received("left")
    sync(name)
    assert [p for p, _ in pubsub.subscribers(name, "t")] == [s.pid for s in subs[1:]]


def test_the_snapshot_is_a_list_the_dispatcher_owns(start) -> None:
    name = start(pool_size=2)
    pubsub.subscribe(name, "t", "m1")
    kept: list = []
    pubsub.local_broadcast(name, "t", "x", lambda entries, f, m: kept.append(entries))
    pubsub.unsubscribe(name, "t")
    assert kept == [[(actors.self(), "m1")]] and isinstance(kept[0], list)


# -- helpers ---------------------------------------------------------------------------


class _Ps:
    def __init__(self, name: str) -> None:
        self.name = name


def _subscribe_and_leave(name: str, owner: actors.Pid) -> None:
    pubsub.subscribe(name, "t")
    gevent.sleep(0)
    pubsub.unsubscribe(name, "t")
    actors.send(owner, "left")


def _wait_for_shard(name: str, index: int, old: Any) -> actors.Pid:
    """The shard of partition ``index`` after its supervisor has handled its death.

    A killed child's EXIT reaches the supervisor before this call does, and the
    supervisor restarts the child before it answers.
    """
    kids = {k.id: k.pid for k in supervision.which_children(actors.whereis(name))}
    pid = kids[("shard", index)]
    assert isinstance(pid, actors.Pid) and pid != old, kids
    return pid
