"""Timers as Erlang has them: send_after / start_timer / read_timer / cancel_timer
(erts doc, erlang module) and timer:send_interval (stdlib doc, timer module).

Each behaviour that differs between implementations is checked against the real BEAM
(``tests/erlang.py``) in the same test, so the assertion is Erlang's, not ours.
"""

from __future__ import annotations

import gevent
import pytest
from erlang import erl_eval

import actors
from actors import TIMEOUT
from actors import _runtime as rt


def _wait_down(ref, timeout=2.0):
    msg = actors.receive(lambda m: isinstance(m, tuple) and len(m) == 5 and m[0] == "DOWN" and m[1] == ref, timeout)
    return msg[4]


def _active_watchers():
    return gevent.get_hub().loop.activecnt


# erts doc, erlang:send_after/3: "If Dest is a pid(), the timer is automatically canceled
# if the process referred to by the pid() is not alive, or if the process exits."
# erlang:cancel_timer/1 and read_timer/1 then return false.
_ERL_DEST_DIES = (
    "begin P = spawn(fun() -> receive stop -> ok end end), T = erlang:send_after(1000, P, hi),"
    " P ! stop, timer:sleep(20), {erlang:cancel_timer(T), erlang:read_timer(T)} end"
)
_ERL_DEST_DEAD = (
    "begin D = spawn(fun() -> ok end), timer:sleep(20), T = erlang:send_after(1000, D, x),"
    " {erlang:read_timer(T), erlang:cancel_timer(T)} end"
)
_ERL_CANCEL_INT = (
    "begin T = erlang:send_after(1000, self(), x), L = erlang:cancel_timer(T), {is_integer(L), L > 900, L =< 1000} end"
)
_ERL_START_TIMER = "begin T = erlang:start_timer(10, self(), m), receive {timeout, T, m} -> matched after 1000 -> none end end"


@pytest.fixture(scope="module")
def erlang():
    return dict(
        zip(
            ["dest_dies", "dest_dead", "cancel_int", "start_timer", "interval_setter_dies", "interval_dest_dies"],
            erl_eval(
                [_ERL_DEST_DIES, _ERL_DEST_DEAD, _ERL_CANCEL_INT, _ERL_START_TIMER, _ERL_SETTER_DIES, _ERL_DEST_DIES_INTERVAL]
            ),
        )
    )


def test_send_after_to_a_pid_is_cancelled_when_that_pid_dies(erlang):
    # Regression: the timer used to stay armed (holding the dead pid's message) until it
    # fired, and cancel_timer returned the time left.
    assert erlang["dest_dies"] == "{false,false}"
    pid, ref = actors.spawn_monitor(actors.receive)
    tref = actors.send_after(pid, "hi", 1000)
    assert actors.read_timer(tref) is not False
    actors.send(pid, "stop")
    assert _wait_down(ref) == "normal"
    assert (actors.cancel_timer(tref), actors.read_timer(tref)) == (False, False)


def test_send_after_to_a_dead_pid_is_cancelled_from_the_start(erlang):
    assert erlang["dest_dead"] == "{false,false}"
    pid, ref = actors.spawn_monitor(lambda: None)
    _wait_down(ref)
    before = _active_watchers()
    tref = actors.send_after(pid, "x", 1000)
    assert _active_watchers() == before  # nothing armed for a dead destination
    assert (actors.read_timer(tref), actors.cancel_timer(tref)) == (False, False)


def test_dead_pids_timers_do_not_leak_under_churn():
    # A channel that sets a 30 s timer and leaves must not keep it (nor its message).
    before = _active_watchers()
    refs = []
    for _ in range(200):
        pid, ref = actors.spawn_monitor(lambda: (actors.send_after(actors.self(), ("big", "x" * 1000), 30_000), actors.receive()))
        refs.append((pid, ref))
    gevent.sleep(0)
    assert _active_watchers() >= before + 200
    for pid, _ref in refs:
        actors.exit(pid, "kill")
    for _pid, ref in refs:
        _wait_down(ref)
    gevent.sleep(0)  # let the hub run the unwinding callbacks queued by the kills
    assert _active_watchers() <= before


def test_cancel_timer_returns_whole_milliseconds(erlang):
    # Regression: it returned a float.
    assert erlang["cancel_int"] == "{true,true,true}"
    tref = actors.send_after(actors.self(), "x", 1000)
    left = actors.cancel_timer(tref)
    assert left.__class__ is int and 900 < left <= 1000


def test_start_timer_sends_timeout_ref_msg(erlang):
    assert erlang["start_timer"] == "matched"
    tref = actors.start_timer(actors.self(), "m", 10)
    msg = actors.receive(timeout=2)
    assert msg == ("timeout", tref, "m") and msg[1] is tref
    assert actors.cancel_timer(tref) is False


def test_start_timer_to_a_registered_name():
    actors.register("start_timer_target")
    try:
        tref = actors.start_timer("start_timer_target", "n", 5)
        assert actors.receive(timeout=2) == ("timeout", tref, "n")
    finally:
        actors.unregister("start_timer_target")


def test_read_timer_counts_down_and_is_false_once_fired():
    tref = actors.send_after(actors.self(), "r", 200)
    first = actors.read_timer(tref)
    assert first.__class__ is int and 150 < first <= 200
    gevent.sleep(0.05)
    assert actors.read_timer(tref) < first
    assert actors.receive(timeout=2) == "r"
    assert actors.read_timer(tref) is False


@pytest.mark.parametrize("fn", [actors.start_timer, actors.send_interval])
def test_timer_argument_errors(fn):
    with pytest.raises(TypeError, match="ms must be"):
        fn(actors.self(), "x", -1)
    with pytest.raises(TypeError, match="dest must be"):
        fn(42, "x", 10)
    with pytest.raises(TypeError, match="expected a TimerRef"):
        actors.read_timer("nope")


# --------------------------------------------------------------------------------------
# send_interval (timer:send_interval/3)
# --------------------------------------------------------------------------------------

# stdlib doc, timer module: "An interval timer ... is linked to the process to which the
# timer performs its task": the destination. The setter's death does not stop it; the
# destination's does (OTP 25's timer server monitors the target pid).
_ERL_SETTER_DIES = """begin
    Self = self(),
    Count = fun C(N) -> receive tick -> C(N + 1); {count, F} -> F ! {n, N}, C(N) end end,
    Dest = spawn(fun() -> Count(0) end),
    {Setter, Ref} = spawn_monitor(fun() -> {ok, _} = timer:send_interval(10, Dest, tick) end),
    receive {'DOWN', Ref, process, Setter, _} -> ok end,
    timer:sleep(80),
    Dest ! {count, Self},
    receive {n, N} -> N >= 3 end
end"""
_ERL_DEST_DIES_INTERVAL = """begin
    Dest = spawn(fun() -> receive stop -> ok end end),
    {ok, TRef} = timer:send_interval(10, Dest, tick),
    Dest ! stop, timer:sleep(30),
    {is_process_alive(Dest), timer:cancel(TRef)}
end"""


def test_send_interval_repeats_until_cancelled():
    tref = actors.send_interval(actors.self(), "tick", 10)
    assert [actors.receive(timeout=2) for _ in range(3)] == ["tick"] * 3
    left = actors.cancel_timer(tref)
    assert left.__class__ is int and 0 <= left <= 10
    actors.flush()
    assert actors.receive(timeout=0.05, default=TIMEOUT) is TIMEOUT
    assert actors.cancel_timer(tref) is False


def test_send_interval_survives_its_setter(erlang):
    assert erlang["interval_setter_dies"] == "true"
    me = actors.self()
    setter, ref = actors.spawn_monitor(lambda: actors.send(me, actors.send_interval(me, "tick", 10)))
    tref = actors.receive(lambda m: isinstance(m, rt.TimerRef), timeout=2)
    assert _wait_down(ref) == "normal"
    assert [actors.receive(lambda m: m == "tick", timeout=2) for _ in range(3)] == ["tick"] * 3
    assert actors.cancel_timer(tref) is not False
    assert not actors.is_alive(setter)


def test_send_interval_stops_when_its_destination_dies(erlang):
    assert erlang["interval_dest_dies"] == "{false,{ok,cancel}}"
    before = _active_watchers()
    pid, ref = actors.spawn_monitor(lambda: [actors.receive() for _ in range(2)])
    tref = actors.send_interval(pid, "tick", 5)
    assert _wait_down(ref) == "normal"  # two ticks, then it returns
    gevent.sleep(0)
    assert _active_watchers() <= before
    assert actors.cancel_timer(tref) is False


def test_send_interval_to_a_name_follows_the_process_holding_it_then():
    # OTP 25 monitors the process registered under the name when the interval is set: a
    # name nobody holds gives an interval that never fires.
    pid = actors.spawn(actors.receive)
    actors.register("interval_name", pid)
    tref = actors.send_interval("interval_name", "tick", 5)
    assert actors.read_timer(tref) is not False
    actors.exit(pid, "kill")
    assert actors.read_timer(tref) is False
    tref2 = actors.send_interval("interval_nobody", "tick", 5)
    assert actors.read_timer(tref2) is False
