"""The static Supervisor: OTP's rules, one test each."""

from __future__ import annotations

import logging

import pytest
from sup_helpers import assert_no_more_starts, down, expect_started, start_worker, started_order, worker_spec

import actors
import supervision
from actors import GenServer
from supervision import ChildSpec, ChildSpecError, Supervisor, SupervisorError


@pytest.fixture
def me():
    actors.trap_exit(True)
    return actors.self()


def specs(me, *tags, **fields):
    return [worker_spec(t, me, **fields) for t in tags]


def test_children_start_in_order(me):
    sup = supervision.start_link(specs(me, "a", "b", "c"))
    assert started_order(3) == ["a", "b", "c"]
    # OTP lists a static supervisor's children newest first (supervisor.erl keeps them
    # as [Id | Ids]); OTP 25 prints [c,b,a], and [d,c,b,a] after start_child(d).
    # Regression: they used to be listed in start order.
    assert [c.id for c in supervision.which_children(sup)] == ["c", "b", "a"]
    supervision.start_child(sup, specs(me, "d")[0])
    assert [c.id for c in supervision.which_children(sup)] == ["d", "c", "b", "a"]


def test_children_stop_in_reverse_order(me):
    sup = supervision.start_link(specs(me, "a", "b", "c", trap=True))
    pids = {c.id: c.pid for c in supervision.which_children(sup)}
    actors.stop(sup, "shutdown")
    order = [actors.receive(lambda m: m[0] == "terminating", 2)[1] for _ in range(3)]
    assert order == ["c", "b", "a"]
    assert not any(actors.is_alive(p) for p in pids.values())


def test_one_for_one_restarts_only_the_failed_child(me):
    sup = supervision.start_link(specs(me, "a", "b", "c"))
    started_order(3)
    b = next(c.pid for c in supervision.which_children(sup) if c.id == "b")
    actors.send(b, ("crash",))
    new_b = expect_started("b")
    assert new_b != b
    assert_no_more_starts()
    rows = {c.id: c.pid for c in supervision.which_children(sup)}
    assert rows["b"] == new_b and all(actors.is_alive(p) for p in rows.values())


def test_one_for_all_restarts_everyone_in_order(me):
    sup = supervision.start_link(specs(me, "a", "b", "c"), strategy="one_for_all")
    started_order(3)
    old = {c.id: c.pid for c in supervision.which_children(sup)}
    actors.exit(old["b"], "boom")
    assert started_order(3) == ["a", "b", "c"]
    new = {c.id: c.pid for c in supervision.which_children(sup)}
    assert all(new[k] != old[k] for k in old)
    assert not any(actors.is_alive(p) for p in old.values())


def test_rest_for_one_restarts_the_failed_child_and_those_after_it(me):
    sup = supervision.start_link(specs(me, "a", "b", "c"), strategy="rest_for_one")
    started_order(3)
    old = {c.id: c.pid for c in supervision.which_children(sup)}
    actors.exit(old["b"], "boom")
    assert started_order(2) == ["b", "c"]
    assert_no_more_starts()
    new = {c.id: c.pid for c in supervision.which_children(sup)}
    assert new["a"] == old["a"] and new["b"] != old["b"] and new["c"] != old["c"]


@pytest.mark.parametrize(
    ("restart", "reason", "restarted"),
    [
        ("permanent", "normal", True),
        ("permanent", "boom", True),
        ("transient", "normal", False),
        ("transient", "shutdown", False),
        ("transient", ("shutdown", "bye"), False),
        ("transient", "boom", True),
        ("temporary", "boom", False),
        ("temporary", "normal", False),
    ],
)
def test_restart_types(me, restart, reason, restarted):
    sup = supervision.start_link([worker_spec("w", me, restart=restart)])
    pid = expect_started("w")
    if reason == "normal":
        actors.send(pid, "stop")
    else:
        actors.send(pid, ("exit", reason))
    if restarted:
        assert expect_started("w") != pid
    else:
        assert_no_more_starts(0.1)
        rows = supervision.which_children(sup)
        if restart == "temporary":
            assert rows == []  # a temporary child's spec is dropped
        else:
            assert rows == [supervision.ChildInfo("w", None, "worker", None)]


def test_intensity_exceeded_shuts_the_supervisor_down(me, caplog):
    sup = supervision.start_link(specs(me, "a", "b"), max_restarts=2, max_seconds=5)
    ref = actors.monitor(sup)
    started_order(2)
    for _ in range(2):
        a = next(c.pid for c in supervision.which_children(sup) if c.id == "a")
        actors.exit(a, "boom")
        expect_started("a")
    a = next(c.pid for c in supervision.which_children(sup) if c.id == "a")
    b = next(c.pid for c in supervision.which_children(sup) if c.id == "b")
    with caplog.at_level(logging.ERROR, logger="supervision"):
        actors.exit(a, "boom")
        assert down(ref) == "shutdown"
    assert not actors.is_alive(b)
    events = [r.event for r in caplog.records if r.name == "supervision"]
    assert "reached_max_restart_intensity" in events
    assert actors.receive(lambda m: m[:2] == ("EXIT", sup), 1)[2] == "shutdown"


def test_restarts_outside_the_window_do_not_add_up(me, monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr("supervision._supervisor.time.monotonic", lambda: clock[0])
    sup = supervision.start_link(specs(me, "a"), max_restarts=1, max_seconds=5)
    expect_started("a")
    for _ in range(3):
        a = supervision.which_children(sup)[0].pid
        actors.exit(a, "boom")
        expect_started("a")
        clock[0] += 6  # each restart falls outside the previous one's window
    assert actors.is_alive(sup)


def test_zero_max_restarts_gives_up_at_the_first_failure(me):
    sup = supervision.start_link(specs(me, "a"), max_restarts=0)
    ref = actors.monitor(sup)
    actors.exit(expect_started("a"), "boom")
    assert down(ref) == "shutdown"


def test_escalation_to_the_parent_supervisor(me):
    inner = ChildSpec(
        id="inner",
        start=(supervision.start_link, (specs(me, "x"),)),
        type="supervisor",
    )
    outer = supervision.start_link([inner], max_restarts=5)
    expect_started("x")
    inner_pid = supervision.which_children(outer)[0].pid
    # Four failures of x in a row exceed the inner supervisor's intensity (3 in 5 s)...
    for _ in range(3):
        actors.exit(supervision.which_children(inner_pid)[0].pid, "boom")
        expect_started("x")
    actors.exit(supervision.which_children(inner_pid)[0].pid, "boom")
    # ...so it shuts down, and the outer one restarts it (a fresh x starts).
    expect_started("x")
    new_inner = supervision.which_children(outer)[0].pid
    assert new_inner != inner_pid and not actors.is_alive(inner_pid)


def test_failed_start_stops_startup_and_shuts_down_started_children_in_reverse(me):
    def fail():
        return ("error", "nope")

    children = [
        worker_spec("a", me, trap=True),
        worker_spec("b", me, trap=True),
        {"id": "bad", "start": fail},
        worker_spec("c", me),
    ]
    with pytest.raises(actors.StartError) as info:
        supervision.start_link(children)
    assert info.value.reason == ("shutdown", ("failed_to_start_child", "bad", "nope"))
    assert started_order(2) == ["a", "b"]
    order = [actors.receive(lambda m: m[0] == "terminating", 2)[1] for _ in range(2)]
    assert order == ["b", "a"]
    assert_no_more_starts()
    # start_link is synchronous on failure: no EXIT is left behind for a trapping caller
    assert actors.receive(lambda m: m[0] == "EXIT", 0, default=None) is None


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ({"start": start_worker}, "id"),
        ({"id": "a"}, "start"),
        ({"id": "a", "start": 42}, "start"),
        ({"id": "a", "start": start_worker, "restart": "forever"}, "restart"),
        ({"id": "a", "start": start_worker, "shutdown": -1}, "shutdown"),
        ({"id": "a", "start": start_worker, "shutdown": "soon"}, "shutdown"),
        ({"id": "a", "start": start_worker, "type": "manager"}, "type"),
        ({"id": "a", "start": start_worker, "colour": "red"}, "colour"),
        ({"id": ["unhashable"], "start": start_worker}, "id"),
    ],
)
def test_invalid_child_spec_names_the_field_before_anything_starts(me, bad, field):
    before = set(actors.processes())
    with pytest.raises(ChildSpecError) as info:
        supervision.start_link([worker_spec("first", me), bad])
    assert info.value.field == field
    assert field in str(info.value)
    assert set(actors.processes()) == before
    assert_no_more_starts()


def test_duplicate_ids_are_rejected(me):
    with pytest.raises(ChildSpecError, match="duplicate child id 'a'") as info:
        supervision.start_link(specs(me, "a", "a"))
    assert info.value.field == "id"


def test_bad_flags_are_rejected():
    with pytest.raises(ChildSpecError) as info:
        supervision.start_link([], strategy="all_for_one")
    assert info.value.field == "strategy"
    with pytest.raises(ChildSpecError) as info:
        supervision.start_link([], max_restarts=-1)
    assert info.value.field == "max_restarts"


def test_subclass_with_invalid_children_raises_child_spec_error(me):
    class Bad(Supervisor):
        def children(self, arg):
            return [{"id": "x"}]

    with pytest.raises(ChildSpecError) as info:
        Bad.start_link()
    assert info.value.field == "start"


def test_start_function_returning_garbage_fails_that_start_with_a_clear_reason(me, caplog):
    sup = supervision.start_link([])
    with caplog.at_level(logging.ERROR, logger="supervision"):
        with pytest.raises(SupervisorError) as info:
            supervision.start_child(sup, {"id": "g", "start": lambda: 42})
    assert info.value.reason == ("bad_return_value", 42)
    assert any(r.event == "start_error" and r.reason == ("bad_return_value", 42) for r in caplog.records)
    assert actors.is_alive(sup)


def test_start_function_raising_is_a_start_error_not_a_supervisor_crash(me):
    sup = supervision.start_link([])

    def boom():
        raise ValueError("no")

    with pytest.raises(SupervisorError) as info:
        supervision.start_child(sup, {"id": "x", "start": boom})
    assert isinstance(info.value.reason, ValueError)
    assert actors.is_alive(sup)


def test_ignore_keeps_the_spec_without_a_pid(me):
    sup = supervision.start_link([{"id": "i", "start": lambda: "ignore"}])
    assert supervision.which_children(sup) == [supervision.ChildInfo("i", None, "worker", None)]
    assert supervision.count_children(sup) == {"specs": 1, "active": 0, "supervisors": 0, "workers": 1}


def test_shutdown_timeout_then_kill(me, caplog):
    def stubborn(observer):
        def loop():
            actors.trap_exit(True)
            actors.send(observer, ("started", "s", actors.self()))
            while True:
                actors.receive()  # ignores the shutdown EXIT

        return actors.spawn_link(loop)

    sup = supervision.start_link([{"id": "s", "start": (stubborn, (me,)), "shutdown": 50}])
    pid = expect_started("s")
    ref = actors.monitor(pid)
    with caplog.at_level(logging.ERROR, logger="supervision"):
        supervision.terminate_child(sup, "s")
    assert down(ref, 0) == "killed"
    assert any(r.event == "shutdown_error" and r.reason == "killed" for r in caplog.records)


def test_brutal_kill(me):
    sup = supervision.start_link([worker_spec("b", me, trap=True, shutdown="brutal_kill")])
    pid = expect_started("b")
    ref = actors.monitor(pid)
    supervision.terminate_child(sup, "b")
    assert down(ref, 0) == "killed"
    assert actors.receive(lambda m: m[0] == "terminating", 0.05, default=None) is None


def test_trapping_child_gets_its_terminate_on_shutdown(me):
    class Server(GenServer):
        def init(self, observer):
            actors.trap_exit(True)
            return ("ok", observer)

        def terminate(self, reason, observer):
            actors.send(observer, ("terminate", reason))

    sup = supervision.start_link([(Server, me)])
    supervision.terminate_child(sup, Server)
    assert actors.receive(lambda m: m[0] == "terminate", 1) == ("terminate", "shutdown")


def test_runtime_api(me):
    sup = supervision.start_link(specs(me, "a"))
    expect_started("a")
    pid_b = supervision.start_child(sup, worker_spec("b", me))
    assert expect_started("b") == pid_b
    with pytest.raises(SupervisorError) as info:
        supervision.start_child(sup, worker_spec("b", me))
    assert info.value.reason == ("already_started", pid_b)
    assert supervision.count_children(sup) == {"specs": 2, "active": 2, "supervisors": 0, "workers": 2}

    with pytest.raises(SupervisorError) as info:
        supervision.delete_child(sup, "b")
    assert info.value.reason == "running"
    supervision.terminate_child(sup, "b")
    assert not actors.is_alive(pid_b)
    assert supervision.which_children(sup)[0] == supervision.ChildInfo("b", None, "worker", None)
    with pytest.raises(SupervisorError) as info:
        supervision.start_child(sup, worker_spec("b", me))
    assert info.value.reason == "already_present"

    new_b = supervision.restart_child(sup, "b")
    assert expect_started("b") == new_b
    with pytest.raises(SupervisorError) as info:
        supervision.restart_child(sup, "b")
    assert info.value.reason == "running"
    supervision.terminate_child(sup, "b")
    supervision.delete_child(sup, "b")
    assert [c.id for c in supervision.which_children(sup)] == ["a"]
    for fn in (supervision.terminate_child, supervision.restart_child, supervision.delete_child):
        with pytest.raises(SupervisorError) as info:
            fn(sup, "nope")
        assert info.value.reason == "not_found"


def test_a_child_exit_is_reported_in_one_structured_line(me, caplog):
    sup = supervision.start_link(specs(me, "a"))
    pid = expect_started("a")
    with caplog.at_level(logging.INFO, logger="supervision"):
        actors.exit(pid, "boom")
        expect_started("a")
        supervision.which_children(sup)
    terminated = [r for r in caplog.records if getattr(r, "event", None) == "child_terminated"]
    assert len(terminated) == 1
    rec = terminated[0]
    assert rec.child_id == "a" and rec.reason == "boom" and rec.action == "restarting"
    assert rec.supervisor == str(sup) and "\n" not in rec.getMessage()


def test_repeated_failing_restart_escalates_instead_of_spinning(me):
    attempts = []

    def flaky(observer):
        attempts.append(1)
        if len(attempts) == 1:
            return start_worker("f", observer)
        return ("error", "down")

    sup = supervision.start_link([{"id": "f", "start": (flaky, (me,))}])
    ref = actors.monitor(sup)
    actors.exit(expect_started("f"), "boom")
    assert down(ref) == "shutdown"
    # The initial start, then three restart attempts; a fourth restart would exceed
    # 3 in 5 s, so (as in OTP) it is refused before it is tried.
    assert len(attempts) == 1 + 3


def test_supervisor_survives_unexpected_messages_and_calls(me):
    sup = supervision.start_link(specs(me, "a"))
    actors.send(sup, "garbage")
    stranger = actors.spawn(lambda: None)
    actors.send(sup, ("EXIT", stranger, "not a child"))
    assert actors.call(sup, "not a tuple") == ("error", ("unknown_call", "not a tuple"))
    assert [c.id for c in supervision.which_children(sup)] == ["a"]


def test_exit_from_the_parent_stops_the_supervisor_and_its_children(me):
    sup = supervision.start_link(specs(me, "a", trap=True))
    child = expect_started("a")
    ref = actors.monitor(sup)
    actors.exit(sup, "shutdown")  # what a parent supervisor's shutdown sends
    assert down(ref) == "shutdown"
    assert actors.receive(lambda m: m[0] == "terminating", 1) == ("terminating", "a", "shutdown")
    assert not actors.is_alive(child)


def test_supervisor_get_state_works_through_sys(me):
    sup = supervision.start_link(specs(me, "a"))
    state = actors.get_state(sup)
    assert isinstance(state, Supervisor)
    assert "one_for_one" in repr(state)
