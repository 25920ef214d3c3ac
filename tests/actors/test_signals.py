"""Links, exit signals, trap_exit and kill: Erlang's rules."""

from __future__ import annotations

import time

import gevent
import gevent.socket
import pytest
from gevent.event import AsyncResult
from hostile_terms import Evil

import actors
from actors import TIMEOUT, Exit
from actors import _runtime as rt


def _block():
    actors.receive()


def _wait_down(ref, timeout=2.0):
    msg = actors.receive(lambda m: isinstance(m, tuple) and len(m) == 5 and m[0] == "DOWN" and m[1] == ref, timeout)
    return msg[4]


def _is_exit_from(pid):
    return lambda m: isinstance(m, tuple) and len(m) == 3 and m[0] == "EXIT" and m[1] == pid


def _linked_pair(trap_b=False):
    """Spawn a blocked process ``a`` and a process ``b`` linked to it; wait until linked."""
    me = actors.self()
    a = actors.spawn(_block)

    def b_main():
        actors.trap_exit(trap_b)
        actors.link(a)
        actors.send(me, "linked")
        while True:
            msg = actors.receive()
            actors.send(me, ("b got", msg))

    b = actors.spawn(b_main)
    assert actors.receive(lambda m: m == "linked", timeout=2) == "linked"
    return a, b


class _Ambiguous:
    def __bool__(self):
        raise ValueError("The truth value of an array with more than one element is ambiguous")


class NumpyLike:
    """== returns an object whose truth value raises, as numpy arrays do."""

    __hash__ = object.__hash__

    def __eq__(self, other):
        return _Ambiguous()

    def __ne__(self, other):
        return _Ambiguous()

    def __bool__(self):
        raise ValueError("ambiguous")


# --------------------------------------------------------------------------------------
# Link propagation
# --------------------------------------------------------------------------------------


def test_normal_exit_does_not_kill_a_linked_non_trapping_process():
    a = actors.spawn(_block)
    _b, bref = actors.spawn_monitor(lambda: actors.link(a))
    assert _wait_down(bref) == "normal"
    gevent.sleep(0)
    assert actors.is_alive(a)
    assert actors.process_info(a)["links"] == []


@pytest.mark.parametrize("reason", ["boom", ("shutdown", 1), "shutdown", 42])
def test_abnormal_exit_kills_a_linked_process_with_the_same_reason(reason):
    a = actors.spawn(_block)
    aref = actors.monitor(a)

    def b_main():
        actors.link(a)
        actors.exit(reason)

    actors.spawn(b_main)
    assert _wait_down(aref) == reason


def test_crash_kills_linked_process_with_the_exception_object():
    a = actors.spawn(_block)
    aref = actors.monitor(a)
    err = RuntimeError("crash")

    def b_main():
        actors.link(a)
        raise err

    actors.spawn(b_main)
    assert _wait_down(aref) is err


def test_links_are_bidirectional():
    a, b = _linked_pair()
    assert actors.process_info(a)["links"] == [b]
    assert actors.process_info(b)["links"] == [a]
    bref = actors.monitor(b)
    actors.exit(a, "from_a")  # a dies; b, linked from its own side, dies too
    assert _wait_down(bref) == "from_a"


def test_exit_propagates_transitively_along_links():
    me = actors.self()
    refs = []
    prev = actors.spawn(_block)
    first = prev
    for _ in range(5):

        def link_to(p):
            actors.link(p)
            actors.send(me, "linked")
            actors.receive()

        prev = actors.spawn(link_to, prev)
        refs.append(actors.monitor(prev))
        actors.receive(lambda m: m == "linked", timeout=2)
    actors.exit(first, "chain")
    assert [_wait_down(r) for r in refs] == ["chain"] * 5


def test_linked_test_process_blocked_in_receive_is_killed_by_a_crash():
    err = ValueError("kills the test process")

    def crash():
        actors.receive()
        raise err

    me = actors.self()
    pid = actors.spawn_link(crash)
    actors.send(pid, "go")
    with pytest.raises(Exit) as info:
        actors.receive(timeout=5)
    assert info.value.reason is err
    assert not actors.is_alive(me)
    assert actors.self() != me  # the greenlet is adopted afresh afterwards


# --------------------------------------------------------------------------------------
# trap_exit
# --------------------------------------------------------------------------------------


def test_trap_exit_turns_an_exit_signal_into_a_message():
    assert actors.trap_exit(True) is False
    pid = actors.spawn_link(lambda: actors.exit("boom"))
    assert actors.receive(_is_exit_from(pid), timeout=2) == ("EXIT", pid, "boom")
    assert actors.is_alive(actors.self())


def test_trap_exit_gets_normal_exits_of_links_as_messages():
    actors.trap_exit(True)
    pid = actors.spawn_link(lambda: None)
    assert actors.receive(timeout=2) == ("EXIT", pid, "normal")


def test_trap_exit_gets_crash_reason_object():
    actors.trap_exit(True)
    err = KeyError("k")

    def crash():
        raise err

    pid = actors.spawn_link(crash)
    msg = actors.receive(timeout=2)
    assert msg[:2] == ("EXIT", pid) and msg[2] is err


def test_trap_exit_returns_previous_value_and_sets_flag():
    me = actors.self()
    assert actors.trap_exit(True) is False
    assert actors.process_info(me)["trap_exit"] is True
    assert actors.trap_exit(True) is True
    assert actors.trap_exit(False) is True
    assert actors.process_info(me)["trap_exit"] is False


def test_trap_exit_can_be_turned_off_again():
    actors.trap_exit(True)
    actors.trap_exit(False)
    me = actors.self()
    pid = actors.spawn_link(lambda: actors.exit("boom"))
    with pytest.raises(Exit) as info:
        actors.receive(timeout=2)
    assert info.value.reason == "boom"
    assert not actors.is_alive(me)
    assert not actors.is_alive(pid)


@pytest.mark.parametrize("bad", [1, 0, None, "true"])
def test_trap_exit_non_bool_raises_type_error_naming_flag(bad):
    with pytest.raises(TypeError, match=r"\bflag\b"):
        actors.trap_exit(bad)


def test_trapping_process_in_a_link_chain_stops_propagation():
    a, b = _linked_pair(trap_b=True)
    actors.exit(a, "boom")
    assert actors.receive(lambda m: m[0] == "b got", timeout=2) == ("b got", ("EXIT", a, "boom"))
    assert actors.is_alive(b)


# --------------------------------------------------------------------------------------
# exit/2 signal rules
# --------------------------------------------------------------------------------------


def test_exit_kill_cannot_be_trapped():
    def trapper():
        actors.trap_exit(True)
        actors.receive()

    pid, ref = actors.spawn_monitor(trapper)
    gevent.sleep(0)
    actors.exit(pid, "kill")
    assert _wait_down(ref) == "killed"


def test_exit_kill_propagates_to_links_as_killed():
    a, _b_trapping = _linked_pair(trap_b=True)
    c = actors.spawn(lambda: (actors.link(a), actors.receive()))
    cref = actors.monitor(c)
    gevent.sleep(0)
    actors.exit(a, "kill")
    assert _wait_down(cref) == "killed"
    assert actors.receive(lambda m: m[0] == "b got", timeout=2) == ("b got", ("EXIT", a, "killed"))


def test_own_exit_with_reason_kill_reaches_links_as_kill_which_is_trappable():
    # Erlang: only exit(Pid, kill) is untrappable; a process that itself exits with
    # reason kill sends its links an ordinary 'kill' signal.
    actors.trap_exit(True)
    pid = actors.spawn_link(lambda: actors.exit("kill"))
    assert actors.receive(timeout=2) == ("EXIT", pid, "kill")


def test_exit_normal_to_another_non_trapping_process_is_ignored():
    pid = actors.spawn(_block)
    gevent.sleep(0)
    actors.exit(pid, "normal")
    gevent.sleep(0)
    assert actors.is_alive(pid)


def test_exit_normal_to_a_trapping_process_arrives_as_a_message():
    me = actors.self()

    def trapper():
        actors.trap_exit(True)
        actors.send(me, "ready")
        actors.send(me, ("got", actors.receive()))

    pid = actors.spawn(trapper)
    actors.receive(lambda m: m == "ready", timeout=2)
    actors.exit(pid, "normal")
    assert actors.receive(timeout=2) == ("got", ("EXIT", me, "normal"))


def test_exit_other_reason_kills_a_non_trapping_process_with_it():
    pid, ref = actors.spawn_monitor(_block)
    actors.exit(pid, ("custom", 1))
    assert not actors.is_alive(pid)
    assert _wait_down(ref) == ("custom", 1)


def test_exit_other_reason_to_a_trapping_process_is_a_message():
    me = actors.self()

    def trapper():
        actors.trap_exit(True)
        actors.send(me, "ready")
        actors.send(me, ("got", actors.receive()))

    pid = actors.spawn(trapper)
    actors.receive(lambda m: m == "ready", timeout=2)
    actors.exit(pid, "shutdown")
    assert actors.receive(timeout=2) == ("got", ("EXIT", me, "shutdown"))
    # It survived the signal and then returned normally.
    assert not actors.is_alive(pid)


def test_exit_self_normal_ends_the_caller():
    me = actors.self()

    def quitter():
        actors.exit(actors.self(), "normal")
        actors.send(me, "still running")  # never reached

    _pid, ref = actors.spawn_monitor(quitter)
    assert _wait_down(ref) == "normal"
    assert actors.receive(lambda m: m == "still running", timeout=0, default=TIMEOUT) is TIMEOUT


def test_exit_self_normal_ends_the_adopted_test_process():
    me = actors.self()
    with pytest.raises(Exit) as info:
        actors.exit(me, "normal")
    assert info.value.reason == "normal"
    assert not actors.is_alive(me)


def test_exit_self_normal_when_trapping_is_a_message():
    actors.trap_exit(True)
    me = actors.self()
    actors.exit(me, "normal")
    assert actors.is_alive(me)
    assert actors.receive(timeout=0) == ("EXIT", me, "normal")


def test_exit_self_kill_kills_the_caller_with_killed():
    me = actors.self()
    actors.trap_exit(True)
    with pytest.raises(Exit) as info:
        actors.exit(me, "kill")
    assert info.value.reason == "killed"
    assert not actors.is_alive(me)


def test_exit_one_argument_raises_exit_in_the_caller():
    with pytest.raises(Exit) as info:
        actors.exit("bye")
    assert info.value.reason == "bye"
    assert not isinstance(info.value, Exception)  # `except Exception` does not swallow it


def test_exit_to_a_dead_pid_is_a_no_op():
    pid, ref = actors.spawn_monitor(lambda: None)
    _wait_down(ref)
    assert actors.exit(pid, "kill") is None


def test_exit_signal_that_kills_the_sender_through_a_link_raises_in_the_sender():
    me = actors.self()
    pid = actors.spawn_link(_block)
    with pytest.raises(Exit) as info:
        actors.exit(pid, "boom")
    assert info.value.reason == "boom"
    assert not actors.is_alive(me)


def test_exit_with_non_pid_raises_type_error_naming_pid():
    with pytest.raises(TypeError, match=r"\bpid\b"):
        actors.exit("name", "kill")


def test_exit_from_a_hub_callback_has_no_sender():
    me = actors.self()

    def trapper():
        actors.trap_exit(True)
        actors.send(me, "ready")
        actors.send(me, actors.receive())

    pid = actors.spawn(trapper)
    actors.receive(lambda m: m == "ready", timeout=2)
    gevent.get_hub().loop.run_callback(actors.exit, pid, "from_hub")
    assert actors.receive(timeout=2) == ("EXIT", None, "from_hub")


# --------------------------------------------------------------------------------------
# link / unlink
# --------------------------------------------------------------------------------------


# What Erlang/OTP 25 does when a process that does not trap exits links to a dead pid
# (erts doc, erlang:link/1: "Failure: noproc ... if the caller is not trapping exits"):
# the call fails with the *error* noproc, which try/catch sees like any error.
_ERL_LINK_DEAD = """begin
    Dead = spawn(fun() -> ok end), timer:sleep(20), Self = self(),
    spawn(fun() -> Self ! {caught, try link(Dead), returned catch C:E -> {C, E} end} end),
    receive {caught, X} -> X end
end"""


def test_link_to_a_dead_pid_raises_noproc_error_an_ordinary_exception():
    # Regression: this used to raise Exit('noproc'), which `except Exception` misses.
    pid, ref = actors.spawn_monitor(lambda: None)
    _wait_down(ref)
    with pytest.raises(actors.NoProcError) as info:
        actors.link(pid)
    assert isinstance(info.value, Exception) and not isinstance(info.value, Exit)
    assert info.value.reason == "noproc" and info.value.pid == pid


def test_link_to_a_dead_pid_matches_erlangs_error_class():
    from erlang import erl_eval

    [erlang] = erl_eval([_ERL_LINK_DEAD])
    assert erlang == "{error,noproc}"
    dead, ref = actors.spawn_monitor(lambda: None)
    _wait_down(ref)
    me = actors.self()

    def try_link():
        try:
            actors.link(dead)
            actors.send(me, ("caught", "returned"))
        except Exception as e:  # noqa: BLE001 - the point: an ordinary except sees it
            actors.send(me, ("caught", ("error", e.reason)))

    actors.spawn(try_link)
    assert actors.receive(timeout=2) == ("caught", ("error", "noproc"))


def test_link_to_a_dead_pid_when_trapping_delivers_exit_noproc():
    actors.trap_exit(True)
    pid, ref = actors.spawn_monitor(lambda: None)
    _wait_down(ref)
    actors.link(pid)
    assert actors.receive(timeout=0) == ("EXIT", pid, "noproc")


def test_link_to_dead_pid_crashes_an_untrapping_process_with_noproc(caplog):
    dead, ref = actors.spawn_monitor(lambda: None)
    _wait_down(ref)
    _pid, ref2 = actors.spawn_monitor(lambda: actors.link(dead))
    reason = _wait_down(ref2)
    # Erlang: the process dies with {noproc, Stack}; here with the NoProcError itself.
    assert isinstance(reason, actors.NoProcError) and reason.reason == "noproc"


def test_link_is_idempotent_and_one_unlink_removes_it():
    pid = actors.spawn(_block)
    actors.link(pid)
    actors.link(pid)
    assert actors.process_info(actors.self())["links"] == [pid]
    actors.unlink(pid)
    assert actors.process_info(actors.self())["links"] == []
    assert actors.process_info(pid)["links"] == []


def test_link_to_self_is_a_no_op():
    me = actors.self()
    actors.link(me)
    assert actors.process_info(me)["links"] == []


def test_unlink_stops_propagation():
    me = actors.self()
    pid = actors.spawn(_block)
    actors.link(pid)
    actors.unlink(pid)
    actors.exit(pid, "boom")
    gevent.sleep(0)
    assert actors.is_alive(me)


def test_unlink_is_bidirectional():
    me = actors.self()
    a = actors.spawn(_block)

    def link_then_unlink():
        actors.link(a)
        actors.unlink(a)
        actors.send(me, "done")
        actors.receive()

    b = actors.spawn(link_then_unlink)
    actors.receive(lambda m: m == "done", timeout=2)
    assert actors.process_info(a)["links"] == []
    assert actors.process_info(b)["links"] == []
    bref = actors.monitor(b)
    actors.exit(a, "boom")
    assert actors.receive(lambda m: m[0] == "DOWN" and m[1] == bref, timeout=0.05, default=TIMEOUT) is TIMEOUT
    assert actors.is_alive(b)


def test_unlink_of_a_dead_or_unlinked_pid_is_a_no_op():
    pid, ref = actors.spawn_monitor(lambda: None)
    _wait_down(ref)
    actors.unlink(pid)
    other = actors.spawn(_block)
    actors.unlink(other)
    assert actors.is_alive(actors.self())


@pytest.mark.parametrize("fn", [actors.link, actors.unlink, actors.is_alive])
def test_link_functions_reject_non_pids_naming_pid(fn):
    with pytest.raises(TypeError, match=r"\bpid\b"):
        fn("<0.1.0>")


def test_unlink_after_exit_already_queued_leaves_the_message():
    # As in Erlang: unlink does not retract an EXIT already delivered.
    actors.trap_exit(True)
    pid = actors.spawn_link(lambda: actors.exit("gone"))
    assert actors.receive(timeout=2) == ("EXIT", pid, "gone")


# --------------------------------------------------------------------------------------
# Scale and immediacy
# --------------------------------------------------------------------------------------


def test_chain_of_10000_linked_processes_dies_completely_from_one_crash():
    actors.self()  # the test runs as a process
    n = 10_000

    unwound = set()

    def link_and_wait(prev, i):
        try:
            if prev is not None:
                actors.link(prev)
            actors.receive()
        finally:
            unwound.add(i)  # not a send: a dead process sends nothing, even from finally

    pids = []
    prev = None
    for i in range(n):
        prev = actors.spawn(link_and_wait, prev, i)
        pids.append(prev)
    last_ref = actors.monitor(pids[-1])
    first_ref = actors.monitor(pids[0])
    gevent.sleep(0)  # everyone links
    assert all(actors.is_alive(p) for p in pids)
    err = ValueError("chain crash")
    actors.exit(pids[n // 2], err)
    # All dead at once, synchronously, without recursion.
    assert not any(actors.is_alive(p) for p in pids)
    assert _wait_down(last_ref) is err
    assert _wait_down(first_ref) is err
    # ... and every greenlet actually unwinds.
    deadline = time.monotonic() + 10
    while len(unwound) < n and time.monotonic() < deadline:
        gevent.sleep(0.01)
    assert unwound == set(range(n))
    assert not set(pids) & set(actors.processes())


def test_is_alive_is_false_immediately_after_exit_kill():
    pid = actors.spawn(_block)
    gevent.sleep(0)
    name = "sig_kill_name"
    actors.register(name, pid)
    ref = actors.monitor(pid)
    actors.exit(pid, "kill")
    # No hub turn: the tables already say it is dead.
    assert not actors.is_alive(pid)
    assert actors.process_info(pid) is None
    assert actors.whereis(name) is None
    assert pid not in actors.processes()
    assert actors.receive(timeout=0) == ("DOWN", ref, "process", pid, "killed")


def test_process_blocked_in_receive_unwinds_at_once_when_killed():
    actors.self()  # the test runs as a process

    unwound = AsyncResult()  # not a message: a dead process sends nothing, even from finally

    def blocked():
        try:
            actors.receive()
        finally:
            unwound.set("unwound")

    pid = actors.spawn(blocked)
    gevent.sleep(0)
    assert actors.process_info(pid)["status"] == "waiting"
    start = time.perf_counter()
    actors.exit(pid, "kill")
    assert unwound.get(timeout=2) == "unwound"
    assert time.perf_counter() - start < 0.5


def test_process_blocked_in_socket_recv_dies_at_once_when_killed():
    me = actors.self()
    a, b = gevent.socket.socketpair()
    try:
        unwound = AsyncResult()

        def reader():
            try:
                actors.send(me, "reading")
                a.recv(10)
                actors.send(me, "recv returned")
            except Exit as e:
                unwound.set(("unwound", e.reason))
                raise

        pid, ref = actors.spawn_monitor(reader)
        assert actors.receive(timeout=2) == "reading"
        gevent.sleep(0)
        assert actors.process_info(pid)["status"] == "suspended"
        start = time.perf_counter()
        actors.exit(pid, "kill")
        assert not actors.is_alive(pid)
        assert _wait_down(ref) == "killed"
        assert unwound.get(timeout=2) == ("unwound", "killed")
        assert time.perf_counter() - start < 0.5
        # The socket is still usable and nobody is reading it any more.
        b.sendall(b"x")
        assert actors.receive(timeout=0.05, default=TIMEOUT) is TIMEOUT
    finally:
        a.close()
        b.close()


def test_cooperative_busy_process_is_unwound_at_its_next_switch():
    actors.self()  # the test runs as a process

    unwound = AsyncResult()

    def busy():
        n = 0
        try:
            while True:
                n += 1
                gevent.sleep(0)
        except Exit as e:
            unwound.set(("unwound", e.reason))
            raise

    pid = actors.spawn(busy)
    gevent.sleep(0)
    actors.exit(pid, "stop_now")
    assert not actors.is_alive(pid)
    assert unwound.get(timeout=2) == ("unwound", "stop_now")


def test_killed_process_never_started_does_not_run():
    ran = []
    pid, ref = actors.spawn_monitor(ran.append, 1)
    actors.exit(pid, "kill")
    assert _wait_down(ref) == "killed"
    gevent.sleep(0)
    assert ran == []


def test_adopted_greenlet_killed_while_it_was_switched_out_raises_on_its_next_api_call():
    # The test greenlet is woken from sleep(0) by a callback queued before its death
    # signal: it must not carry on as a fresh process, it must die at the next chance.
    err = ValueError("dies while test sleeps")

    def crash():
        actors.receive()
        raise err

    me = actors.self()
    pid = actors.spawn_link(crash)
    actors.send(pid, "go")
    with pytest.raises(Exit) as info:
        gevent.sleep(0)
        # If the sleep returned normally, the very next API call must raise.
        actors.self()
    assert info.value.reason is err
    assert not actors.is_alive(me)
    # After noticing, the greenlet is adopted afresh, and no stale signal hits it later.
    fresh = actors.self()
    assert fresh != me
    assert actors.receive(timeout=0.05, default=TIMEOUT) is TIMEOUT
    assert actors.is_alive(fresh)


def test_killed_process_cannot_add_links_or_monitors_before_it_notices():
    target = actors.spawn(_block)
    done = AsyncResult()

    def victim():
        actors.receive()
        gevent.sleep(0)  # killed while switched out here
        try:
            actors.monitor(target)
            actors.link(target)
        finally:
            done.set("victim done")

    def killer(p):
        actors.receive()
        actors.exit(p, "kill")

    v, vref = actors.spawn_monitor(victim)
    k = actors.spawn(killer, v)
    gevent.sleep(0)
    actors.send(v, "go")
    actors.send(k, "go")
    assert _wait_down(vref) == "killed"
    assert done.get(timeout=2) == "victim done"
    info = actors.process_info(target)
    assert info["monitored_by"] == []
    assert info["links"] == []


# --------------------------------------------------------------------------------------
# Any object as a reason
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [Evil, NumpyLike])
def test_hostile_reason_propagates_through_links_and_monitors(cls):
    reason = cls()
    actors.trap_exit(True)
    a = actors.spawn(_block)
    actors.link(a)
    b = actors.spawn(lambda: (actors.link(a), actors.receive()))
    bref = actors.monitor(b)
    aref = actors.monitor(a)
    gevent.sleep(0)
    actors.exit(a, reason)
    assert _wait_down(aref) is reason
    assert _wait_down(bref) is reason
    msg = actors.receive(lambda m: m[0] == "EXIT", timeout=1)
    assert msg[1] == a and msg[2] is reason


@pytest.mark.parametrize("cls", [Evil, NumpyLike])
def test_hostile_reason_from_process_exit_and_to_trapping_process(cls):
    reason = cls()
    actors.trap_exit(True)
    actors.spawn_link(actors.exit, reason)
    msg = actors.receive(timeout=2)
    assert msg[0] == "EXIT" and msg[2] is reason
    # And as an exit signal sent to a trapping process.
    me = actors.self()
    actors.exit(me, reason)
    msg = actors.receive(timeout=0)
    assert msg[1] == me and msg[2] is reason


def test_hostile_reason_kills_non_trapping_process():
    reason = Evil()
    pid, ref = actors.spawn_monitor(_block)
    actors.exit(pid, reason)
    assert _wait_down(ref) is reason


def test_internal_tables_are_clean_after_link_deaths():
    a, b = _linked_pair()
    actors.exit(a, "boom")
    gevent.sleep(0)
    assert a not in actors.processes() and b not in actors.processes()
    assert a._n not in rt._by_number and b._n not in rt._by_number
