"""Process greenlets are reused: what one process leaves on its greenlet never reaches the next.

A greenlet whose process ended waits in the runtime's pool for the next spawn, hibernation
wake-up or hand-off (a fresh greenlet costs a kernel map and unmap of its frame stack).
These tests pin what a process must still see: a fresh contextvars context, no greenlet
attributes or gevent locals (threading.local once patched) of its predecessor, no signal aimed at a process that
already ended, and a pool that stays bounded.
"""

from __future__ import annotations

import contextvars

import gevent
import gevent.local
import pytest
from greenlet import getcurrent

import actors
from actors import _runtime as rt

_VAR: contextvars.ContextVar[str] = contextvars.ContextVar("greenphx_test_var")
_GEVENT_LOCAL = gevent.local.local()


def _down(ref, timeout=2.0):
    msg = actors.receive(lambda m: m.__class__ is tuple and len(m) == 5 and m[0] == "DOWN" and m[1] == ref, timeout)
    return msg[4]


@pytest.fixture(autouse=True)
def settled():
    """Each test leaves no killed process still unwinding (the next test counts greenlets)."""
    yield
    for _ in range(100):
        if not rt._unwinding:
            break
        gevent.sleep(0)
    assert not rt._unwinding


def _run_to_end(fn, *args):
    pid, ref = actors.spawn_monitor(fn, *args)
    assert _down(ref) == "normal"
    return pid


def _set_context_var(parent):
    _VAR.set("left behind")
    actors.send(parent, ("greenlet", id(getcurrent())))


def _set_locals(parent):
    g = getcurrent()
    _VAR.set("left behind")
    _GEVENT_LOCAL.value = "left behind"
    g.left_behind = "attribute"
    actors.send(parent, ("greenlet", id(g)))


def _report_what_is_seen(parent):
    g = getcurrent()
    actors.send(
        parent,
        (
            "seen",
            id(g),
            _VAR.get(None),
            getattr(_GEVENT_LOCAL, "value", None),
            getattr(g, "left_behind", None),
        ),
    )


def test_a_reused_greenlet_gives_the_next_process_a_fresh_context():
    me = actors.self()
    _run_to_end(_set_context_var, me)
    _tag, first = actors.receive(lambda m: m[0] == "greenlet", 2)
    _run_to_end(_report_what_is_seen, me)
    _tag, second, var, glocal, attr = actors.receive(lambda m: m[0] == "seen", 2)
    assert second == first  # the greenlet was reused (the pool works)
    assert (var, glocal, attr) == (None, None, None)


def test_locals_and_attributes_of_an_ended_process_reach_no_other_process():
    me = actors.self()
    _run_to_end(_set_locals, me)
    actors.receive(lambda m: m[0] == "greenlet", 2)
    for _ in range(3):
        _run_to_end(_report_what_is_seen, me)
        _tag, _g, var, glocal, attr = actors.receive(lambda m: m[0] == "seen", 2)
        assert (var, glocal, attr) == (None, None, None)


def test_the_local_values_of_an_ended_process_are_freed_with_it():
    class Big:
        pass

    import weakref

    me = actors.self()
    refs = []

    def hold():
        big = Big()
        refs.append(weakref.ref(big))
        _GEVENT_LOCAL.value = big
        actors.send(me, "held")

    _run_to_end(hold)
    actors.receive(lambda m: m == "held", 2)
    assert refs[0]() is None


def _wait_forever():
    actors.receive()


def _burst(n):
    """Start ``n`` processes, let them reach their receive, kill them and see them down:
    their greenlets go to the pool (up to its bound)."""
    started = [actors.spawn_monitor(_wait_forever) for _ in range(n)]
    gevent.sleep(0)
    for pid, _ref in started:
        actors.exit(pid, "kill")
    for _pid, ref in started:
        _down(ref)
    gevent.sleep(0)


def _trim_every(monkeypatch, seconds):
    monkeypatch.setattr(rt, "_POOL_TRIM_INTERVAL", seconds)
    if rt._pool_trimmer is not None:  # one armed by an earlier test, at the real interval
        rt._pool_trimmer.close()
        rt._pool_trimmer = None


def test_a_kill_aimed_at_a_process_that_never_ran_does_not_reach_the_greenlets_next_process():
    _run_to_end(lambda: None)  # at least one idle greenlet in the pool
    victim, ref = actors.spawn_monitor(_wait_forever)
    actors.exit(victim, "kill")  # before it ever ran: nothing to unwind
    assert _down(ref) == "killed"
    successor, sref = actors.spawn_monitor(_wait_forever)
    gevent.sleep(0)
    gevent.sleep(0)
    assert actors.is_alive(successor)
    assert actors.process_info(successor)["status"] == "waiting"
    actors.exit(successor, "shutdown")
    assert _down(sref) == "shutdown"


def test_a_process_killed_while_a_message_wakes_it_ends_and_its_successor_lives():
    me = actors.self()

    def echo_once():
        actors.send(me, ("got", actors.receive()))
        actors.receive()

    for _ in range(20):
        pid, ref = actors.spawn_monitor(echo_once)
        gevent.sleep(0)
        actors.send(pid, "wake")  # schedules its wake-up ...
        actors.exit(pid, "kill")  # ... and its unwinding, in that order
        assert _down(ref) == "killed"
        nxt, nref = actors.spawn_monitor(_wait_forever)
        gevent.sleep(0)
        gevent.sleep(0)
        assert actors.is_alive(nxt), "a stale signal reached the greenlet's next process"
        actors.exit(nxt, "kill")
        assert _down(nref) == "killed"
    assert actors.receive(lambda m: m == ("got", "wake"), 0, default=None) is None


def test_a_spawned_process_that_has_not_run_yet_is_runnable_with_no_stack():
    _run_to_end(lambda: None)
    pid = actors.spawn(_wait_forever)
    info = actors.process_info(pid)
    assert info["status"] == "runnable" and info["current_stacktrace"] == []
    gevent.sleep(0)
    assert actors.process_info(pid)["status"] == "waiting"
    actors.exit(pid, "kill")


def test_the_pool_stays_bounded_after_a_burst():
    _burst(rt._POOL_MAX * 3)
    assert 0 < len(rt._pool) <= rt._POOL_MAX
    assert all(g.proc is None and g.running is None for g in rt._pool)


def test_an_idle_pool_shrinks_to_its_keep_level_and_the_dropped_greenlets_end(monkeypatch):
    import weakref

    _trim_every(monkeypatch, 0.01)
    _burst(rt._POOL_KEEP * 3)
    assert len(rt._pool) > rt._POOL_KEEP
    oldest = weakref.ref(rt._pool[0])
    deadline = 500
    while len(rt._pool) > rt._POOL_KEEP and deadline:
        actors.receive(lambda m: False, 0.01, default=None)
        deadline -= 1
    assert len(rt._pool) == rt._POOL_KEEP
    assert oldest() is None  # ended and freed, oldest first
    assert rt._pool_trimmer is None  # nothing left to trim: the timer is gone
    _run_to_end(lambda: None)  # and the pool still serves


def test_a_pool_in_use_keeps_its_working_set(monkeypatch):
    import time

    _trim_every(monkeypatch, 0.02)
    # Fill the pool well past its keep level, then keep emptying and refilling it: no
    # greenlet stays idle for a whole interval, so none may be trimmed while it serves.
    _burst(rt._POOL_KEEP * 4)
    full = len(rt._pool)
    assert full >= rt._POOL_KEEP * 4
    end = time.monotonic() + 10 * rt._POOL_TRIM_INTERVAL
    while time.monotonic() < end:
        _burst(full)
    assert len(rt._pool) >= full - 1
