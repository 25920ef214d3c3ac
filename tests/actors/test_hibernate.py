"""Hibernation: erlang:hibernate/3, GenServer's 'hibernate' result and hibernate_after."""

from __future__ import annotations

import gc

import pytest
from greenlet import greenlet

import actors
from actors import GenServer, NotAProcessError


def _wait_until_hibernating(pid, timeout=2.0):
    """Poll process_info with receive timeouts (the caller's mailbox stays untouched)."""
    waited = 0.0
    while waited < timeout:
        info = actors.process_info(pid)
        if info is not None and info["hibernating"]:
            return info
        actors.receive(lambda m: False, timeout=0.01, default=None)
        waited += 0.01
    raise AssertionError(f"{pid} did not hibernate within {timeout} s: {actors.process_info(pid)}")


def _down(ref, timeout=2.0):
    return actors.receive(lambda m: isinstance(m, tuple) and len(m) == 5 and m[0] == "DOWN" and m[1] == ref, timeout)[4]


def _resumed(parent, tag, *extra):
    """Continuation: report the first message after waking, and what we were given."""
    msg = actors.receive()
    actors.send(parent, (tag, actors.self(), msg, extra))
    actors.receive()


def _live_process_greenlets():
    return sum(1 for o in gc.get_objects() if isinstance(o, greenlet) and getattr(o, "proc", None) is not None and not o.dead)


def test_hibernate_drops_the_greenlet_and_wakes_on_the_next_message():
    me = actors.self()

    def body():
        actors.hibernate(_resumed, me, "woke", 1, 2)

    before = _live_process_greenlets()
    pid = actors.spawn(body)
    info = _wait_until_hibernating(pid)
    assert info["status"] == "waiting"
    assert info["current_stacktrace"] == []
    assert _live_process_greenlets() == before  # no greenlet is held for it
    assert actors.is_alive(pid)
    actors.send(pid, "hello")
    assert actors.receive(timeout=2) == ("woke", pid, "hello", (1, 2))  # same pid, continuation ran
    assert actors.process_info(pid)["hibernating"] is False
    actors.exit(pid, "kill")


def test_a_queued_message_wakes_a_hibernating_process_at_once():
    me = actors.self()

    def body():
        actors.send(actors.self(), "already here")
        actors.hibernate(_resumed, me, "woke")

    actors.spawn(body)
    tag, _pid, msg, _ = actors.receive(timeout=2)
    assert (tag, msg) == ("woke", "already here")


def test_links_monitors_names_and_trap_exit_survive_hibernation():
    me = actors.self()

    def body():
        actors.trap_exit(True)
        actors.register("hibernating.sleeper")
        actors.link(me)
        actors.send(me, "ready")
        actors.hibernate(_resumed, me, "woke")

    pid = actors.spawn(body)
    assert actors.receive(timeout=2) == "ready"
    ref = actors.monitor(pid)
    _wait_until_hibernating(pid)
    info = actors.process_info(pid)
    assert info["registered_name"] == "hibernating.sleeper"
    assert info["trap_exit"] is True
    assert me in info["links"]
    # An exit signal to a trapping, hibernating process is a message: it wakes with it.
    actors.exit(pid, "custom")
    tag, woke_pid, msg, _ = actors.receive(timeout=2)
    assert (tag, woke_pid, msg) == ("woke", pid, ("EXIT", me, "custom"))
    actors.unlink(pid)
    actors.exit(pid, "kill")
    assert _down(ref) == "killed"
    assert actors.whereis("hibernating.sleeper") is None


def test_killing_a_hibernating_process_fires_links_and_monitors():
    trapper_got = []

    def sleeper():
        actors.hibernate(_resumed, None, "never")

    pid = actors.spawn(sleeper)
    ref = actors.monitor(pid)
    _wait_until_hibernating(pid)
    actors.trap_exit(True)
    try:
        actors.link(pid)
        actors.exit(pid, "kill")
        assert not actors.is_alive(pid)
        assert _down(ref) == "killed"
        trapper_got.append(actors.receive(lambda m: isinstance(m, tuple) and m[0] == "EXIT", timeout=2))
    finally:
        actors.trap_exit(False)
    assert trapper_got == [("EXIT", pid, "killed")]
    actors.send(pid, "after death")  # dropped: no greenlet is started for a dead process
    assert actors.process_info(pid) is None


def test_finally_blocks_run_when_the_stack_is_dropped():
    me = actors.self()

    def body():
        try:
            actors.hibernate(_resumed, me, "woke")
        finally:
            actors.send(me, "unwound")

    pid = actors.spawn(body)
    assert actors.receive(timeout=2) == "unwound"
    _wait_until_hibernating(pid)
    actors.exit(pid, "kill")


def test_a_crash_after_waking_is_an_ordinary_crash(caplog):
    def boom(_):
        actors.receive()
        raise ValueError("after waking")

    pid = actors.spawn(lambda: actors.hibernate(boom, None))
    ref = actors.monitor(pid)
    _wait_until_hibernating(pid)
    actors.send(pid, "go")
    reason = _down(ref)
    assert isinstance(reason, ValueError) and str(reason) == "after waking"
    assert sum("crashed" in r.getMessage() for r in caplog.records) == 1


def test_an_adopted_greenlet_cannot_hibernate():
    with pytest.raises(NotAProcessError):
        actors.hibernate(_resumed, None, "x")


def test_hibernate_needs_a_callable(caplog):
    pid, ref = actors.spawn_monitor(lambda: actors.hibernate("not callable"))
    reason = _down(ref)
    assert isinstance(reason, TypeError) and "callable" in str(reason)


class Sleepy(GenServer):
    def init(self, arg):
        return ("ok", {"n": 0})

    def handle_call(self, request, from_, state):
        if request == "incr_and_hibernate":
            state["n"] += 1
            return ("reply", state["n"], state, "hibernate")
        if request == "get":
            return ("reply", state["n"], state)
        raise ValueError(request)

    def handle_cast(self, request, state):
        state["n"] += request
        return ("noreply", state, "hibernate")


class InfoSleepy(Sleepy):
    def handle_info(self, msg, state):
        state["n"] += msg
        return ("noreply", state, "hibernate")


def test_genserver_handle_info_hibernate_result_keeps_state_across_the_sleep():
    pid = InfoSleepy.start_link()
    actors.send(pid, 3)
    _wait_until_hibernating(pid)
    actors.send(pid, 4)  # woken by a plain message, back to sleep after it
    _wait_until_hibernating(pid)
    assert actors.get_state(pid) == {"n": 7}
    actors.stop(pid)


def test_genserver_hibernate_result_keeps_state_across_the_sleep():
    pid = Sleepy.start_link()
    assert actors.call(pid, "incr_and_hibernate") == 1
    _wait_until_hibernating(pid)
    assert actors.call(pid, "incr_and_hibernate") == 2  # woken by the call, state kept
    actors.cast(pid, 10)
    _wait_until_hibernating(pid)
    assert actors.call(pid, "get") == 12
    assert actors.get_state(pid) == {"n": 12}
    actors.stop(pid)


def test_genserver_hibernate_after_idles_into_hibernation_and_back():
    pid = Sleepy.start(hibernate_after=30)
    assert actors.call(pid, "get") == 0
    _wait_until_hibernating(pid)
    actors.cast(pid, 5)
    assert actors.call(pid, "get") == 5
    # Busy servers do not hibernate: calls keep arriving within the window.
    assert actors.process_info(pid)["hibernating"] is False
    _wait_until_hibernating(pid)  # and idle again, it does
    ref = actors.monitor(pid)
    actors.stop(pid, "shutdown")
    assert _down(ref) == "shutdown"


def test_a_hibernating_genserver_still_stops_when_its_trapping_parent_exits():
    class Trapping(GenServer):
        def init(self, to):
            actors.trap_exit(True)
            self.to = to
            return ("ok", None)

        def terminate(self, reason, state):
            actors.send(self.to, ("terminated", reason))

    me = actors.self()
    parent_pid = actors.spawn(lambda: (Trapping.start_link(me, hibernate_after=0), actors.send(me, "started"), actors.receive()))
    assert actors.receive(timeout=2) == "started"
    child = [p for p in actors.process_info(parent_pid)["links"]][0]
    _wait_until_hibernating(child)
    actors.exit(parent_pid, "shutdown")
    assert actors.receive(timeout=2) == ("terminated", "shutdown")


@pytest.mark.parametrize("bad", [-1, "15s", True])
def test_hibernate_after_is_validated(bad):
    with pytest.raises(TypeError, match="hibernate_after"):
        Sleepy.start_link(hibernate_after=bad)
