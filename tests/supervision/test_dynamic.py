"""DynamicSupervisor, the partitioned pool, and the Application root."""

from __future__ import annotations

import os

import pytest
from sup_helpers import assert_no_more_starts, down, expect_started, start_worker, worker_spec

import actors
import supervision
from supervision import Application, ChildSpecError, DynamicSupervisor, PartitionSupervisor, SupervisorError


@pytest.fixture
def me():
    actors.trap_exit(True)
    return actors.self()


def test_start_child_with_extra_arguments(me):
    seen = []

    def start(prefix, tag, observer):
        seen.append(prefix)
        return start_worker(tag, observer)

    sup = DynamicSupervisor.start_link({"extra_arguments": ("pre",)})
    pid = supervision.start_child(sup, {"id": "w", "start": (start, ("w", me))})
    assert expect_started("w") == pid
    assert seen == ["pre"]


def test_which_and_count_children(me):
    sup = DynamicSupervisor.start_link()
    pids = [supervision.start_child(sup, worker_spec(i, me)) for i in range(3)]
    rows = supervision.which_children(sup)
    assert sorted(r.pid for r in rows) == sorted(pids)
    assert all(r.id == "undefined" and r.type == "worker" for r in rows)
    assert supervision.count_children(sup) == {"specs": 3, "active": 3, "supervisors": 0, "workers": 3}


def test_max_children(me):
    sup = DynamicSupervisor.start_link({"max_children": 2})
    supervision.start_child(sup, worker_spec(1, me))
    supervision.start_child(sup, worker_spec(2, me))
    with pytest.raises(SupervisorError) as info:
        supervision.start_child(sup, worker_spec(3, me))
    assert info.value.reason == "max_children"


def test_terminate_child_by_pid(me):
    sup = DynamicSupervisor.start_link()
    pid = supervision.start_child(sup, worker_spec("w", me))
    supervision.terminate_child(sup, pid)
    assert not actors.is_alive(pid)
    assert supervision.count_children(sup)["active"] == 0
    with pytest.raises(SupervisorError) as info:
        supervision.terminate_child(sup, pid)
    assert info.value.reason == "not_found"


@pytest.mark.parametrize(("restart", "restarted"), [("permanent", True), ("transient", True), ("temporary", False)])
def test_crashed_children_restart_per_their_type(me, restart, restarted):
    sup = DynamicSupervisor.start_link()
    pid = supervision.start_child(sup, worker_spec("w", me, restart=restart))
    expect_started("w")
    actors.exit(pid, "boom")
    if restarted:
        new = expect_started("w")
        assert [r.pid for r in supervision.which_children(sup)] == [new]
    else:
        assert_no_more_starts(0.1)
        assert supervision.which_children(sup) == []


def test_dynamic_intensity_exceeded(me):
    sup = DynamicSupervisor.start_link({"max_restarts": 1})
    ref = actors.monitor(sup)
    pid = supervision.start_child(sup, worker_spec("w", me))
    expect_started("w")
    actors.exit(pid, "boom")
    pid = expect_started("w")
    actors.exit(pid, "boom")
    assert down(ref) == "shutdown"


def test_dynamic_shutdown_stops_every_child(me):
    sup = DynamicSupervisor.start_link()
    pids = [supervision.start_child(sup, worker_spec(i, me, trap=True)) for i in range(20)]
    actors.stop(sup, "shutdown")
    assert not any(actors.is_alive(p) for p in pids)
    reasons = {actors.receive(lambda m: m[0] == "terminating", 1)[2] for _ in pids}
    assert reasons == {"shutdown"}


def test_dynamic_shutdown_kills_children_that_overstay(me):
    def stubborn():
        def loop():
            actors.trap_exit(True)
            while True:
                actors.receive()

        return actors.spawn_link(loop)

    sup = DynamicSupervisor.start_link()
    slow = supervision.start_child(sup, {"id": "s", "start": stubborn, "shutdown": 30})
    ref = actors.monitor(slow)
    actors.stop(sup, "shutdown", timeout=5)
    assert down(ref, 0) == "killed"


def test_bad_options_name_the_option():
    with pytest.raises(ChildSpecError) as info:
        DynamicSupervisor.start_link({"max_children": -1})
    assert info.value.field == "max_children"
    with pytest.raises(ChildSpecError) as info:
        DynamicSupervisor.start_link({"strategy": "one_for_all"})
    assert info.value.field == "strategy"


def test_bad_spec_in_start_child_is_an_error_not_a_crash(me):
    sup = DynamicSupervisor.start_link()
    with pytest.raises(ChildSpecError) as info:
        supervision.start_child(sup, {"id": "x", "start": start_worker, "restart": "sometimes"})
    assert info.value.field == "restart"
    assert actors.is_alive(sup)


# -- partitioned pool -----------------------------------------------------------------


def test_partitions_default_to_the_number_of_cores(me):
    pool = PartitionSupervisor.start_link("pool.default")
    assert len(supervision.which_children(pool)) == (os.cpu_count() or 1)
    assert all(r.type == "supervisor" for r in supervision.which_children(pool))


def test_child_is_placed_by_hash_of_key(me):
    PartitionSupervisor.start_link("pool.hash", 4)
    for key in range(12):
        pid = supervision.start_child_in_partition("pool.hash", key, worker_spec(key, me))
        expected = actors.whereis(f"pool.hash.partition.{hash(key) % 4}")
        assert pid in [r.pid for r in supervision.which_children(expected)]
    assert supervision.partition_for("pool.hash", 5) == actors.whereis(f"pool.hash.partition.{hash(5) % 4}")


def test_transport_pid_key_keeps_a_connection_in_one_partition(me):
    PartitionSupervisor.start_link("pool.pid", 3)
    transport = actors.spawn(actors.receive)
    partitions = {supervision.partition_for("pool.pid", transport) for _ in range(5)}
    assert len(partitions) == 1


def test_a_crashed_partition_is_restarted_and_found_again(me):
    pool = PartitionSupervisor.start_link("pool.restart", 2)
    old = supervision.partition_for("pool.restart", 0)
    actors.exit(old, "kill")
    # The pool handles the partition's EXIT before this call, so it has restarted it.
    supervision.which_children(pool)
    new = supervision.partition_for("pool.restart", 0)
    assert new != old and actors.is_alive(new)


def test_unknown_pool_is_a_clear_error():
    with pytest.raises(SupervisorError) as info:
        supervision.partition_for("no.such.pool", 1)
    assert info.value.reason == ("no_pool", "no.such.pool")


def test_pool_shutdown_stops_all_partitions_and_children(me):
    pool = PartitionSupervisor.start_link("pool.stop", 2)
    kids = [supervision.start_child_in_partition("pool.stop", i, worker_spec(i, me)) for i in range(10)]
    parts = [r.pid for r in supervision.which_children(pool)]
    actors.stop(pool, "shutdown")
    assert not any(actors.is_alive(p) for p in kids + parts)
    assert actors.whereis("pool.stop") is None


# -- application root -------------------------------------------------------------------


def test_application_starts_and_stops_the_tree_in_order(me):
    app = Application([worker_spec("a", me, trap=True), worker_spec("b", me, trap=True)], name="app.order")
    root = app.start()
    assert actors.whereis("app.order") == root
    assert [expect_started("a"), expect_started("b")]
    app.stop()
    order = [actors.receive(lambda m: m[0] == "terminating", 1)[1] for _ in range(2)]
    assert order == ["b", "a"]
    assert not app.running and app.exit_reason == "shutdown"
    app.stop()  # twice is harmless


def test_application_as_context_manager(me):
    with Application([worker_spec("a", me)]) as app:
        pid = expect_started("a")
        assert app.running
    assert not actors.is_alive(pid) and not app.running


def test_application_does_not_take_the_host_down_when_the_tree_gives_up():
    actors.trap_exit(False)
    observer = actors.self()
    app = Application([worker_spec("a", observer)], max_restarts=0)
    app.start()
    actors.exit(expect_started("a"), "boom")
    assert app.wait(5) == "shutdown"
    assert actors.is_alive(actors.self())  # the host process was not linked


def test_application_rejects_bad_children_before_starting():
    before = set(actors.processes())
    with pytest.raises(ChildSpecError):
        Application([{"id": "x"}])
    assert set(actors.processes()) == before


def test_application_start_failure_raises_start_error(me):
    app = Application([{"id": "bad", "start": lambda: ("error", "nope")}])
    with pytest.raises(actors.StartError) as info:
        app.start()
    assert info.value.reason == ("shutdown", ("failed_to_start_child", "bad", "nope"))


# -- spawn_child: a child without the start_child round trip ---------------------------


def _idle_announcing(observer, tag):
    actors.send(observer, ("started", tag, actors.self()))
    while True:
        msg = actors.receive()
        if isinstance(msg, tuple) and msg[0] == "exit":
            actors.exit(msg[1])


def test_spawn_child_is_a_linked_supervised_child(me):
    sup = DynamicSupervisor.start_link()
    pid = supervision.spawn_child(sup, _idle_announcing, me, "s")
    assert expect_started("s") == pid
    assert sup in actors.process_info(pid)["links"]
    assert [r.pid for r in supervision.which_children(sup)] == [pid]
    ref = actors.monitor(pid)
    actors.stop(sup, "shutdown")
    assert down(ref) == "shutdown"


def test_spawn_child_exit_is_seen_by_the_supervisor(me):
    sup = DynamicSupervisor.start_link()
    temp = supervision.spawn_child(sup, _idle_announcing, me, "t")
    perm = supervision.spawn_child(sup, _idle_announcing, me, "p", restart="permanent")
    expect_started("t"), expect_started("p")
    actors.send(temp, ("exit", "boom"))
    actors.send(perm, ("exit", "boom"))
    new_perm = expect_started("p")
    assert new_perm != perm
    assert [r.pid for r in supervision.which_children(sup)] == [new_perm]


def test_spawn_child_refusals(me):
    sup = DynamicSupervisor.start_link({"max_children": 1})
    supervision.spawn_child(sup, _idle_announcing, me, "a")
    with pytest.raises(SupervisorError) as info:
        supervision.spawn_child(sup, _idle_announcing, me, "b")
    assert info.value.reason == "max_children"
    static = supervision.start_link([])
    with pytest.raises(SupervisorError) as info:
        supervision.spawn_child(static, _idle_announcing, me, "c")
    assert info.value.reason == "noproc"
    with pytest.raises(ChildSpecError) as err:
        supervision.spawn_child(sup, _idle_announcing, me, "d", restart="often")
    assert err.value.field == "restart"
    with pytest.raises(TypeError, match="must be a Pid, a registered name"):
        supervision.spawn_child(42, _idle_announcing)


def test_spawn_child_in_partition_lands_in_the_keyed_partition(me):
    PartitionSupervisor.start_link("pool.spawn", 3)
    pid = supervision.spawn_child_in_partition("pool.spawn", "key", _idle_announcing, me, "k")
    part = supervision.partition_for("pool.spawn", "key")
    assert pid in [r.pid for r in supervision.which_children(part)]
