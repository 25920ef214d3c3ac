"""Monitors: one-way DOWN notifications, noproc, stacking, demonitor and flush."""

from __future__ import annotations

import gevent
import pytest

import actors
from actors import TIMEOUT, Ref


def _block():
    actors.receive()


def _is_down(ref):
    return lambda m: isinstance(m, tuple) and len(m) == 5 and m[0] == "DOWN" and m[1] == ref


def _wait_down(ref, timeout=2.0):
    return actors.receive(_is_down(ref), timeout)[4]


def test_down_message_has_erlangs_shape():
    pid = actors.spawn(_block)
    ref = actors.monitor(pid)
    assert isinstance(ref, Ref)
    actors.exit(pid, "bye")
    msg = actors.receive(timeout=2)
    assert msg == ("DOWN", ref, "process", pid, "bye")
    assert type(msg) is tuple and len(msg) == 5
    assert msg[1] is ref


def test_down_reason_normal_when_process_returns():
    pid = actors.spawn(_block)
    ref = actors.monitor(pid)
    actors.send(pid, "go")
    assert _wait_down(ref) == "normal"


def test_down_reason_is_the_crash_exception():
    err = OSError("io")

    def crash():
        raise err

    pid = actors.spawn(crash)
    ref = actors.monitor(pid)
    assert _wait_down(ref) is err


def test_down_reason_killed_after_exit_kill():
    pid = actors.spawn(_block)
    ref = actors.monitor(pid)
    actors.exit(pid, "kill")
    # Delivered synchronously with the death, no hub turn needed.
    assert actors.receive(timeout=0) == ("DOWN", ref, "process", pid, "killed")


def test_monitoring_a_dead_pid_delivers_down_noproc_at_once():
    pid, ref0 = actors.spawn_monitor(lambda: None)
    _wait_down(ref0)
    ref = actors.monitor(pid)
    assert actors.receive(timeout=0) == ("DOWN", ref, "process", pid, "noproc")


def test_monitoring_an_unregistered_name_delivers_down_noproc_at_once():
    ref = actors.monitor("no_such_name_mon")
    assert actors.receive(timeout=0) == ("DOWN", ref, "process", "no_such_name_mon", "noproc")


def test_monitoring_a_registered_name_watches_its_process():
    pid = actors.spawn(_block)
    actors.register("mon_by_name", pid)
    ref = actors.monitor("mon_by_name")
    actors.exit(pid, "x")
    # As Erlang's monitor(process, Name): the DOWN names the name it was made with.
    assert actors.receive(timeout=2) == ("DOWN", ref, "process", "mon_by_name", "x")


def test_monitors_are_one_way_watcher_death_does_not_touch_target():
    target = actors.spawn(_block)

    def watcher():
        actors.monitor(target)
        actors.exit("watcher_gone")

    _w, wref = actors.spawn_monitor(watcher)
    assert _wait_down(wref) == "watcher_gone"
    assert actors.is_alive(target)
    assert actors.process_info(target)["monitored_by"] == []


def test_target_death_does_not_kill_the_watcher():
    pid = actors.spawn(_block)
    actors.monitor(pid)
    actors.exit(pid, "boom")
    assert actors.is_alive(actors.self())
    assert actors.receive(timeout=0)[4] == "boom"


def test_multiple_monitors_give_multiple_downs():
    pid = actors.spawn(_block)
    refs = [actors.monitor(pid) for _ in range(3)]
    assert len(set(refs)) == 3
    actors.exit(pid, "x")
    downs = actors.flush()
    assert sorted(d[1]._n for d in downs) == sorted(r._n for r in refs)
    assert all(d == ("DOWN", d[1], "process", pid, "x") for d in downs)


def test_multiple_watchers_each_get_down():
    me = actors.self()
    target = actors.spawn(_block)

    def watcher(i):
        ref = actors.monitor(target)
        actors.send(me, ("watching", i))
        msg = actors.receive()
        actors.send(me, ("down", i, msg[1] == ref, msg[4]))

    for i in range(5):
        actors.spawn(watcher, i)
    for _ in range(5):
        actors.receive(lambda m: m[0] == "watching", timeout=2)
    actors.exit(target, "t")
    got = sorted(actors.receive(lambda m: m[0] == "down", timeout=2) for _ in range(5))
    assert got == [("down", i, True, "t") for i in range(5)]


def test_demonitor_stops_delivery():
    pid = actors.spawn(_block)
    ref = actors.monitor(pid)
    other = actors.monitor(pid)
    assert actors.demonitor(ref) is True
    actors.exit(pid, "x")
    assert _wait_down(other) == "x"  # the death happened...
    assert actors.receive(_is_down(ref), timeout=0, default=TIMEOUT) is TIMEOUT  # ...unreported


def test_demonitor_unknown_or_spent_ref_returns_false():
    assert actors.demonitor(actors.make_ref()) is False
    pid = actors.spawn(_block)
    ref = actors.monitor(pid)
    actors.exit(pid, "x")
    assert actors.demonitor(ref) is False  # already fired


def test_demonitor_updates_introspection_on_both_sides():
    pid = actors.spawn(_block)
    me = actors.self()
    ref = actors.monitor(pid)
    assert actors.process_info(me)["monitors"] == [("process", pid)]
    assert actors.process_info(pid)["monitored_by"] == [me]
    actors.demonitor(ref)
    assert actors.process_info(me)["monitors"] == []
    assert actors.process_info(pid)["monitored_by"] == []


def test_demonitor_by_another_process_does_not_remove_my_monitor():
    pid = actors.spawn(_block)
    ref = actors.monitor(pid)
    me = actors.self()
    actors.spawn(lambda: actors.send(me, ("result", actors.demonitor(ref))))
    assert actors.receive(lambda m: m[0] == "result", timeout=2) == ("result", False)
    actors.exit(pid, "still_watched")
    assert _wait_down(ref) == "still_watched"


def test_demonitor_without_flush_leaves_a_queued_down():
    pid = actors.spawn(_block)
    ref = actors.monitor(pid)
    actors.exit(pid, "x")
    assert actors.demonitor(ref) is False
    assert actors.receive(timeout=0) == ("DOWN", ref, "process", pid, "x")


def test_demonitor_flush_removes_a_queued_down_and_leaves_other_messages():
    me = actors.self()
    a = actors.spawn(_block)
    b = actors.spawn(_block)
    ref_a = actors.monitor(a)
    ref_b = actors.monitor(b)
    actors.send(me, "before")
    actors.exit(a, "xa")
    actors.send(me, "middle")
    actors.exit(b, "xb")
    actors.send(me, "after")
    actors.demonitor(ref_a, flush=True)
    assert actors.flush() == ["before", "middle", ("DOWN", ref_b, "process", b, "xb"), "after"]


def test_demonitor_flush_of_an_active_monitor_returns_true_and_nothing_arrives():
    pid = actors.spawn(_block)
    ref = actors.monitor(pid)
    actors.send(actors.self(), "keep")
    assert actors.demonitor(ref, flush=True) is True
    actors.exit(pid, "x")
    assert actors.flush() == ["keep"]


def test_demonitor_flush_of_noproc_down():
    pid, ref0 = actors.spawn_monitor(lambda: None)
    _wait_down(ref0)
    ref = actors.monitor(pid)
    actors.demonitor(ref, flush=True)
    assert actors.flush() == []


def test_monitor_survives_trap_exit_and_links():
    actors.trap_exit(True)
    pid = actors.spawn_link(_block)
    ref = actors.monitor(pid)
    actors.exit(pid, "both")
    msgs = actors.flush()
    assert ("DOWN", ref, "process", pid, "both") in msgs
    assert ("EXIT", pid, "both") in msgs


def test_spawn_monitor_killed_gives_down_killed():
    pid, ref = actors.spawn_monitor(_block)
    gevent.sleep(0)
    actors.exit(pid, "kill")
    assert actors.receive(timeout=0) == ("DOWN", ref, "process", pid, "killed")


@pytest.mark.parametrize("bad", [42, None, 3.0, b"name", ("a", "b")])
def test_monitor_of_non_pid_raises_type_error_naming_pid(bad):
    with pytest.raises(TypeError, match=r"\bpid\b"):
        actors.monitor(bad)


@pytest.mark.parametrize("bad", [42, "ref", None, object()])
def test_demonitor_of_non_ref_raises_type_error_naming_ref(bad):
    with pytest.raises(TypeError, match=r"\bref\b"):
        actors.demonitor(bad)


def test_demonitor_of_a_timer_ref_is_a_type_error():
    tref = actors.send_after(actors.self(), "t", 10_000)
    try:
        with pytest.raises(TypeError, match=r"\bref\b"):
            actors.demonitor(tref)
    finally:
        actors.cancel_timer(tref)


def test_refs_are_unique_hashable_and_printable():
    refs = [actors.make_ref() for _ in range(100)]
    assert len(set(refs)) == 100
    assert all(repr(r).startswith("#Ref<") for r in refs)
    assert refs[0] == refs[0] and refs[0] != refs[1]


def test_monitor_with_hostile_reason():
    class Evil:
        __hash__ = object.__hash__

        def __eq__(self, other):
            raise RuntimeError("no ==")

        def __bool__(self):
            raise RuntimeError("no bool")

    reason = Evil()
    pid = actors.spawn(_block)
    ref = actors.monitor(pid)
    other_ref = actors.monitor(actors.spawn(_block))
    actors.exit(pid, reason)
    msg = actors.receive(lambda m: m[1] is ref, timeout=0)
    assert msg[4] is reason
    actors.send(actors.self(), ("DOWN", other_ref, "process", pid, reason))
    # demonitor(flush=True) must skip a look-alike DOWN of another ref with a hostile reason.
    actors.demonitor(ref, flush=True)
    assert len(actors.flush()) == 1


def test_many_monitors_on_one_process_are_all_cleaned_up():
    pid = actors.spawn(_block)
    refs = [actors.monitor(pid) for _ in range(1000)]
    for r in refs[::2]:
        actors.demonitor(r)
    actors.exit(pid, "x")
    downs = actors.flush()
    assert {d[1]._n for d in downs} == {r._n for r in refs[1::2]}
    assert actors.process_info(actors.self())["monitors"] == []
