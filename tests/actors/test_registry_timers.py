"""Registered names and timers (send_after / cancel_timer)."""

from __future__ import annotations

import time

import gevent
import pytest

import actors
from actors import TIMEOUT, RegistrationError, TimerRef


def _block():
    actors.receive()


def _wait_down(ref, timeout=2.0):
    return actors.receive(lambda m: isinstance(m, tuple) and len(m) == 5 and m[0] == "DOWN" and m[1] == ref, timeout)[4]


# --------------------------------------------------------------------------------------
# Names
# --------------------------------------------------------------------------------------


def test_register_whereis_registered_unregister():
    pid = actors.spawn(_block)
    actors.register("reg_basic", pid)
    assert actors.whereis("reg_basic") == pid
    assert "reg_basic" in actors.registered()
    assert actors.process_info(pid)["registered_name"] == "reg_basic"
    actors.unregister("reg_basic")
    assert actors.whereis("reg_basic") is None
    assert "reg_basic" not in actors.registered()
    assert actors.process_info(pid)["registered_name"] is None
    assert actors.is_alive(pid)


def test_register_defaults_to_the_caller():
    me = actors.self()

    def named():
        actors.register("reg_self")
        actors.send(me, actors.whereis("reg_self") == actors.self())
        actors.receive()

    actors.spawn(named)
    assert actors.receive(timeout=2) is True


def test_whereis_unknown_name_is_none():
    assert actors.whereis("reg_nobody") is None


def test_name_is_freed_when_the_process_dies():
    pid, _ref = actors.spawn_monitor(_block)
    actors.register("reg_freed", pid)
    actors.exit(pid, "kill")
    assert actors.whereis("reg_freed") is None  # at once
    assert "reg_freed" not in actors.registered()
    other = actors.spawn(_block)
    actors.register("reg_freed", other)  # reusable
    assert actors.whereis("reg_freed") == other


def test_name_is_freed_when_the_process_returns_normally():
    def named():
        actors.register("reg_returns")

    _pid, ref = actors.spawn_monitor(named)
    assert _wait_down(ref) == "normal"
    assert actors.whereis("reg_returns") is None


def test_name_is_freed_when_the_process_crashes():
    def named():
        actors.register("reg_crash")
        raise ValueError("x")

    _pid, ref = actors.spawn_monitor(named)
    _wait_down(ref)
    assert actors.whereis("reg_crash") is None


def test_registering_a_taken_name_raises():
    a = actors.spawn(_block)
    b = actors.spawn(_block)
    actors.register("reg_taken", a)
    with pytest.raises(RegistrationError, match="reg_taken"):
        actors.register("reg_taken", b)
    assert actors.whereis("reg_taken") == a
    assert actors.process_info(b)["registered_name"] is None


def test_a_process_can_hold_only_one_name():
    pid = actors.spawn(_block)
    actors.register("reg_first", pid)
    with pytest.raises(RegistrationError):
        actors.register("reg_second", pid)
    assert actors.whereis("reg_second") is None
    assert actors.process_info(pid)["registered_name"] == "reg_first"


def test_reregister_after_unregister():
    pid = actors.spawn(_block)
    actors.register("reg_a", pid)
    actors.unregister("reg_a")
    actors.register("reg_b", pid)
    assert actors.whereis("reg_b") == pid


def test_registering_a_dead_pid_raises():
    pid, ref = actors.spawn_monitor(lambda: None)
    _wait_down(ref)
    with pytest.raises(RegistrationError):
        actors.register("reg_dead", pid)
    assert actors.whereis("reg_dead") is None


def test_registering_a_killed_pid_raises_immediately():
    pid = actors.spawn(_block)
    actors.exit(pid, "kill")
    with pytest.raises(RegistrationError):
        actors.register("reg_killed", pid)


def test_unregister_unknown_name_raises():
    with pytest.raises(RegistrationError):
        actors.unregister("reg_never")


@pytest.mark.parametrize("bad", [1, None, b"bytes", ("t",)])
def test_non_str_name_raises_type_error_naming_name(bad):
    pid = actors.spawn(_block)
    with pytest.raises(TypeError, match=r"\bname\b"):
        actors.register(bad, pid)
    with pytest.raises(TypeError, match=r"\bname\b"):
        actors.unregister(bad)
    with pytest.raises(TypeError, match=r"\bname\b"):
        actors.whereis(bad)


def test_register_with_non_pid_raises_type_error():
    with pytest.raises(TypeError, match=r"\bpid\b"):
        actors.register("reg_bad_pid", "<0.1.0>")


def test_send_to_name_after_unregister_raises():
    pid = actors.spawn(_block)
    actors.register("reg_gone", pid)
    actors.unregister("reg_gone")
    with pytest.raises(RegistrationError):
        actors.send("reg_gone", 1)


def test_send_to_name_of_dead_process_raises():
    pid = actors.spawn(_block)
    actors.register("reg_dead_send", pid)
    actors.exit(pid, "kill")
    with pytest.raises(RegistrationError):
        actors.send("reg_dead_send", 1)


def test_registered_lists_all_names(no_leaks):
    pids = [actors.spawn(_block) for _ in range(3)]
    for i, p in enumerate(pids):
        actors.register(f"reg_list_{i}", p)
    assert {f"reg_list_{i}" for i in range(3)} <= set(actors.registered())
    for p in pids:
        actors.exit(p, "kill")
    assert not {f"reg_list_{i}" for i in range(3)} & set(actors.registered())


# --------------------------------------------------------------------------------------
# Timers
# --------------------------------------------------------------------------------------


def test_send_after_delivers_after_the_delay_not_before():
    me = actors.self()
    start = time.perf_counter()
    tref = actors.send_after(me, "tick", 50)
    assert isinstance(tref, TimerRef)
    assert actors.receive(timeout=0, default=TIMEOUT) is TIMEOUT
    assert actors.receive(timeout=5) == "tick"
    assert time.perf_counter() - start >= 0.04


def test_send_after_zero_arrives_at_the_next_turn():
    tref = actors.send_after(actors.self(), "now", 0)
    assert actors.receive(timeout=0, default=TIMEOUT) is TIMEOUT
    assert actors.receive(timeout=2) == "now"
    assert actors.cancel_timer(tref) is False


def test_send_after_to_another_process():
    me = actors.self()

    def waiter():
        actors.send(me, ("got", actors.receive()))

    pid = actors.spawn(waiter)
    actors.send_after(pid, "ping", 10)
    assert actors.receive(timeout=5) == ("got", "ping")


def test_send_after_timers_fire_in_due_order():
    me = actors.self()
    actors.send_after(me, 3, 30)
    actors.send_after(me, 1, 10)
    actors.send_after(me, 2, 20)
    assert [actors.receive(timeout=5) for _ in range(3)] == [1, 2, 3]


def test_cancel_timer_returns_remaining_ms_and_the_message_never_arrives():
    me = actors.self()
    tref = actors.send_after(me, "cancelled", 80)
    left = actors.cancel_timer(tref)
    assert left is not False
    assert 0 < left <= 80
    # Wait well past the due time: nothing.
    assert actors.receive(timeout=0.2, default=TIMEOUT) is TIMEOUT


def test_cancel_timer_after_it_fired_returns_false():
    me = actors.self()
    tref = actors.send_after(me, "fired", 1)
    assert actors.receive(timeout=5) == "fired"
    assert actors.cancel_timer(tref) is False


def test_cancel_timer_twice_returns_false_the_second_time():
    tref = actors.send_after(actors.self(), "x", 1000)
    assert actors.cancel_timer(tref) > 0
    assert actors.cancel_timer(tref) is False


def test_send_after_to_a_registered_name():
    me = actors.self()

    def named():
        actors.register("timer_target")
        actors.send(me, "registered")
        actors.send(me, ("got", actors.receive()))

    actors.spawn(named)
    actors.receive(lambda m: m == "registered", timeout=2)
    actors.send_after("timer_target", "by name", 10)
    assert actors.receive(timeout=5) == ("got", "by name")


def test_send_after_to_a_name_is_resolved_when_it_fires():
    actors.send_after("timer_late_name", "resolved late", 20)  # not registered yet
    actors.register("timer_late_name")
    assert actors.receive(timeout=5) == "resolved late"


def test_send_after_to_a_name_gone_by_then_is_dropped_without_error(monkeypatch):
    hub_errors = []
    hub = gevent.get_hub()
    monkeypatch.setattr(hub, "handle_error", lambda *args: hub_errors.append(args))
    pid = actors.spawn(_block)
    actors.register("timer_gone_name", pid)
    actors.send_after("timer_gone_name", "dropped", 10)
    actors.exit(pid, "kill")  # the name is gone before the timer fires
    # A marker due later shows the first timer has fired by then.
    actors.send_after(actors.self(), "marker", 30)
    assert actors.receive(timeout=5) == "marker"
    assert hub_errors == []
    # The name is free again and nothing is queued under it.
    assert actors.whereis("timer_gone_name") is None


def test_send_after_to_a_dead_pid_is_dropped():
    pid = actors.spawn(_block)
    actors.send_after(pid, "lost", 5)
    actors.exit(pid, "kill")
    actors.send_after(actors.self(), "marker", 20)
    assert actors.receive(timeout=5) == "marker"


def test_send_after_survives_the_death_of_the_process_that_set_it():
    me = actors.self()
    _setter, ref = actors.spawn_monitor(lambda: actors.send_after(me, "orphan", 20))
    assert _wait_down(ref) == "normal"
    assert actors.receive(timeout=5) == "orphan"


@pytest.mark.parametrize("bad", [-1, -0.5, "10", None])
def test_send_after_bad_ms_raises_type_error_naming_ms(bad):
    with pytest.raises(TypeError, match=r"\bms\b"):
        actors.send_after(actors.self(), "x", bad)


@pytest.mark.parametrize("bad", [1, None, b"n"])
def test_send_after_bad_dest_raises_type_error_naming_dest(bad):
    with pytest.raises(TypeError, match=r"\bdest\b"):
        actors.send_after(bad, "x", 10)


@pytest.mark.parametrize("bad", [None, 1, "tref", actors.make_ref()])
def test_cancel_timer_of_non_timer_ref_raises_type_error(bad):
    with pytest.raises(TypeError, match="TimerRef"):
        actors.cancel_timer(bad)


def test_many_cancelled_timers_deliver_nothing():
    me = actors.self()
    trefs = [actors.send_after(me, i, 30) for i in range(500)]
    kept = trefs[::5]
    for t in trefs:
        if t not in kept:
            assert actors.cancel_timer(t) > 0
    got = sorted(actors.receive(timeout=5) for _ in range(len(kept)))
    assert got == list(range(0, 500, 5))
    assert actors.receive(timeout=0.1, default=TIMEOUT) is TIMEOUT


def _busy(seconds):
    """Compute without yielding, so the event loop's cached clock falls behind."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def test_send_after_delay_counts_from_the_call_even_after_busy_work():
    gevent.sleep(0.005)  # the loop blocks, then caches its clock
    _busy(0.15)
    start = time.perf_counter()
    actors.send_after(actors.self(), "late enough", 100)
    assert actors.receive(timeout=5) == "late enough"
    assert time.perf_counter() - start >= 0.09


def test_cancel_timer_remaining_counts_from_the_call_even_after_busy_work():
    gevent.sleep(0.005)  # the loop blocks, then caches its clock
    tref = actors.send_after(actors.self(), "x", 1000)
    _busy(0.15)
    left = actors.cancel_timer(tref)
    assert 0 < left < 900
