"""Processes: spawning, pids, self(), adoption, send, selective receive, crash logging."""

from __future__ import annotations

import logging
import pickle
import re
import time

import gevent
import pytest

import actors
from actors import TIMEOUT, Exit, Pid, ReceiveTimeout, RegistrationError


def _block():
    actors.receive()


def _wait_down(ref, timeout=2.0):
    """Receive the DOWN of ``ref``; return its reason."""
    msg = actors.receive(lambda m: isinstance(m, tuple) and len(m) == 5 and m[0] == "DOWN" and m[1] == ref, timeout)
    return msg[4]


def _error_records(caplog):
    return [r for r in caplog.records if r.levelno >= logging.ERROR and r.name.startswith("actors")]


# --------------------------------------------------------------------------------------
# spawn / spawn_link / spawn_monitor
# --------------------------------------------------------------------------------------


def test_spawn_returns_pid_and_runs_fn_with_args_and_kwargs():
    me = actors.self()
    pid = actors.spawn(lambda a, b=None: actors.send(me, ("ran", actors.self(), a, b)), 1, b=2)
    assert isinstance(pid, Pid)
    assert actors.receive(timeout=2) == ("ran", pid, 1, 2)


def test_spawn_runs_at_next_hub_turn_not_synchronously():
    ran = []
    pid = actors.spawn(ran.append, "x")
    assert ran == []
    assert actors.process_info(pid)["status"] == "runnable"
    gevent.sleep(0)
    assert ran == ["x"]
    assert not actors.is_alive(pid)


def test_spawned_process_is_alive_until_its_function_returns():
    pid, ref = actors.spawn_monitor(_block)
    gevent.sleep(0)
    assert actors.is_alive(pid)
    assert pid in actors.processes()
    actors.send(pid, "go")
    assert _wait_down(ref) == "normal"
    assert not actors.is_alive(pid)
    assert pid not in actors.processes()


def test_spawn_link_links_before_the_child_runs():
    actors.trap_exit(True)
    pid = actors.spawn_link(_block)
    # The child has not run yet, the link is already there on both sides.
    assert actors.process_info(pid)["status"] == "runnable"
    assert actors.process_info(pid)["links"] == [actors.self()]
    assert pid in actors.process_info(actors.self())["links"]


def test_spawn_link_child_crash_kills_its_parent_with_the_same_reason():
    err = ValueError("child boom")

    def child():
        raise err

    def parent():
        actors.spawn_link(child)
        actors.receive()

    _pid, ref = actors.spawn_monitor(parent)
    assert _wait_down(ref) is err


def test_spawn_link_child_killed_before_it_runs_kills_parent():
    actors.trap_exit(True)
    ran = []
    pid = actors.spawn_link(ran.append, 1)
    actors.exit(pid, "kill")
    assert actors.receive(timeout=1) == ("EXIT", pid, "killed")
    gevent.sleep(0)
    assert ran == []


def test_spawn_monitor_returns_pid_and_ref_and_delivers_down():
    pid, ref = actors.spawn_monitor(lambda: None)
    assert isinstance(pid, Pid)
    assert isinstance(ref, actors.Ref)
    assert actors.receive(timeout=2) == ("DOWN", ref, "process", pid, "normal")


def test_spawn_non_callable_raises_type_error_naming_fn():
    with pytest.raises(TypeError, match=r"\bfn\b"):
        actors.spawn(42)
    with pytest.raises(TypeError, match=r"\bfn\b"):
        actors.spawn_link("not callable")
    with pytest.raises(TypeError, match=r"\bfn\b"):
        actors.spawn_monitor(None)


def test_failed_spawn_leaves_no_process(no_leaks):
    before = set(actors.processes())
    with pytest.raises(TypeError):
        actors.spawn(object())
    assert set(actors.processes()) == before


def test_spawn_leaves_nothing_behind(no_leaks):
    pids = [actors.spawn(lambda: None) for _ in range(20)]
    ref = actors.monitor(pids[-1])
    assert _wait_down(ref) == "normal"
    assert not any(actors.is_alive(p) for p in pids)


# --------------------------------------------------------------------------------------
# Pids
# --------------------------------------------------------------------------------------


def test_pid_prints_as_erlang_pid():
    pid = actors.spawn(lambda: None)
    assert re.fullmatch(r"<0\.\d+\.0>", str(pid))
    assert repr(pid) == str(pid)


def test_pids_are_unique():
    pids = [actors.spawn(lambda: None) for _ in range(200)]
    assert len(set(pids)) == 200
    assert len({str(p) for p in pids}) == 200
    assert sorted(pids) == pids  # allocated in increasing order


def test_pids_are_never_reused_after_death():
    pid, ref = actors.spawn_monitor(lambda: None)
    _wait_down(ref)
    later = [actors.spawn(lambda: None) for _ in range(50)]
    assert pid not in later


def test_pid_is_hashable_and_equal_by_number():
    pid = actors.spawn(_block)
    same = Pid.parse(str(pid))
    assert same == pid
    assert hash(same) == hash(pid)
    assert {pid: "v"}[same] == "v"
    assert len({pid, same}) == 1
    other = actors.spawn(_block)
    assert other != pid
    assert pid != str(pid)  # not equal to its text
    assert pid != pid._n  # nor to its number


def test_pid_parse_forms():
    assert str(Pid.parse("<0.5.0>")) == "<0.5.0>"
    assert Pid.parse("<0.5.0>") == Pid.parse("0.5.0") == Pid.parse("  <0.5.0>  ")
    assert Pid.parse("<0.5.0>") != Pid.parse("<0.6.0>")
    pid = actors.spawn(_block)
    assert Pid.parse(pid) is pid


@pytest.mark.parametrize("bad", ["", "<1.5.0>", "<0.x.0>", "0.5", "<0.5.1>", "pid"])
def test_pid_parse_rejects_malformed_text(bad):
    with pytest.raises(ValueError):
        Pid.parse(bad)


def test_pid_parse_rejects_non_str():
    with pytest.raises(TypeError):
        Pid.parse(5)


def test_parsed_pid_of_live_process_reaches_it():
    me = actors.self()

    def echo():
        actors.send(me, ("echo", actors.receive()))

    pid = actors.spawn(echo)
    actors.send(Pid.parse(str(pid)), "hello")
    assert actors.receive(timeout=2) == ("echo", "hello")


def test_parsed_pid_of_dead_process_is_dead_and_send_is_dropped():
    pid, ref = actors.spawn_monitor(lambda: None)
    _wait_down(ref)
    parsed = Pid.parse(str(pid))
    assert parsed == pid
    assert not actors.is_alive(parsed)
    assert actors.send(parsed, "lost") is None


def test_pid_pickles_to_the_same_live_process():
    pid = actors.spawn(_block)
    copy = pickle.loads(pickle.dumps(pid))
    assert copy == pid
    assert actors.is_alive(copy)


# --------------------------------------------------------------------------------------
# self() and adoption
# --------------------------------------------------------------------------------------


def test_self_inside_a_process_is_its_own_pid():
    me = actors.self()
    pid = actors.spawn(lambda: actors.send(me, actors.self()))
    assert actors.receive(timeout=2) == pid


def test_self_in_the_test_greenlet_is_an_adopted_live_process():
    me = actors.self()
    assert isinstance(me, Pid)
    assert actors.self() == me
    assert actors.is_alive(me)
    assert me in actors.processes()
    assert actors.process_info(me)["status"] == "running"


def test_fresh_adopted_process_per_test_has_clean_state():
    # The autouse fixture released the previous test's process: nothing carried over.
    me = actors.self()
    info = actors.process_info(me)
    assert info["message_queue_len"] == 0
    assert info["links"] == []
    assert info["trap_exit"] is False


def test_gevent_greenlet_is_adopted_on_first_api_call_and_dies_normal_when_it_ends():
    me = actors.self()

    def worker():
        actors.send(me, ("hello", actors.self()))
        actors.receive()  # until told to finish

    g = gevent.spawn(worker)
    kind, pid = actors.receive(timeout=2)
    assert kind == "hello"
    assert actors.is_alive(pid)
    assert actors.process_info(pid)["status"] == "waiting"
    ref = actors.monitor(pid)
    actors.send(pid, "finish")
    assert _wait_down(ref) == "normal"
    assert g.dead
    assert pid not in actors.processes()


def test_adopted_gevent_greenlet_crash_is_its_exit_reason():
    me = actors.self()
    err = KeyError("adopted boom")

    def worker():
        actors.send(me, actors.self())
        actors.receive()
        raise err

    g = gevent.spawn(worker)
    pid = actors.receive(timeout=2)
    ref = actors.monitor(pid)
    actors.send(pid, "crash")
    assert _wait_down(ref) is err
    g.join(1)
    assert g.dead


def test_adopted_gevent_greenlet_raising_exit_uses_its_reason():
    me = actors.self()

    def worker():
        actors.send(me, actors.self())
        actors.receive()
        raise Exit("bye")

    gevent.spawn(worker)
    pid = actors.receive(timeout=2)
    ref = actors.monitor(pid)
    actors.send(pid, "go")
    assert _wait_down(ref) == "bye"


def test_adopted_gevent_greenlet_killed_by_link_exits_its_greenlet():
    me = actors.self()

    def worker():
        actors.send(me, actors.self())
        try:
            actors.receive()
        except Exit as e:
            actors.send(me, ("unwound", e.reason))
            raise

    g = gevent.spawn(worker)
    pid = actors.receive(timeout=2)
    actors.exit(pid, "boom")
    assert not actors.is_alive(pid)
    assert actors.receive(timeout=2) == ("unwound", "boom")
    g.join(1)
    assert g.dead


def test_raw_greenlet_adopted_is_reaped_when_dead():
    import greenlet

    box = []
    g = greenlet.greenlet(lambda: box.append(actors.self()))
    g.switch()
    assert g.dead
    (pid,) = box
    # A raw greenlet gives no death notice; processes() notices it.
    assert pid not in actors.processes()
    assert not actors.is_alive(pid)


# --------------------------------------------------------------------------------------
# send
# --------------------------------------------------------------------------------------


def test_send_never_blocks_even_to_a_process_that_never_receives():
    pid = actors.spawn(_block)
    gevent.sleep(0)
    start = time.perf_counter()
    for i in range(20_000):
        assert actors.send(pid, i) is None
    assert time.perf_counter() - start < 5
    assert actors.process_info(pid)["message_queue_len"] == 20_000


def test_send_to_dead_pid_is_silently_dropped():
    pid, ref = actors.spawn_monitor(lambda: None)
    _wait_down(ref)
    assert actors.send(pid, "into the void") is None


def test_send_to_a_pid_that_never_existed_is_dropped():
    assert actors.send(Pid.parse("<0.987654321.0>"), "x") is None


def test_send_to_self_is_queued():
    actors.send(actors.self(), "note")
    assert actors.receive(timeout=0) == "note"


def test_fifo_order_of_10000_messages_between_one_pair():
    me = actors.self()
    n = 10_000

    def sender():
        for i in range(n):
            actors.send(me, ("seq", i))
            if i % 1000 == 0:
                gevent.sleep(0)  # interleave with the receiver

    actors.spawn(sender)
    got = [actors.receive(timeout=5)[1] for _ in range(n)]
    assert got == list(range(n))


def test_fifo_is_per_pair_with_concurrent_senders():
    me = actors.self()

    def sender(tag):
        for i in range(2000):
            actors.send(me, (tag, i))
            if i % 97 == 0:
                gevent.sleep(0)

    for tag in "abc":
        actors.spawn(sender, tag)
    seen = {t: [] for t in "abc"}
    for _ in range(6000):
        tag, i = actors.receive(timeout=5)
        seen[tag].append(i)
    for tag in "abc":
        assert seen[tag] == list(range(2000))


def test_send_to_registered_name():
    me = actors.self()

    def named():
        actors.send(me, ("got", actors.receive()))

    pid = actors.spawn(named)
    actors.register("proc_send_name", pid)
    actors.send("proc_send_name", 7)
    assert actors.receive(timeout=2) == ("got", 7)


def test_send_to_unregistered_name_raises_registration_error():
    with pytest.raises(RegistrationError, match="nobody_here"):
        actors.send("nobody_here", "x")


@pytest.mark.parametrize("dest", [42, None, ("name", "node"), b"bytes", 3.5])
def test_send_with_wrong_dest_type_raises_type_error_naming_dest(dest):
    with pytest.raises(TypeError, match=r"\bdest\b"):
        actors.send(dest, "x")


# --------------------------------------------------------------------------------------
# receive
# --------------------------------------------------------------------------------------


def test_receive_without_match_returns_oldest_first():
    me = actors.self()
    for m in ("a", "b", "c"):
        actors.send(me, m)
    assert [actors.receive(timeout=0) for _ in range(3)] == ["a", "b", "c"]


def test_selective_receive_skips_1000_unmatched_and_leaves_them_in_order():
    me = actors.self()
    for i in range(1000):
        actors.send(me, ("skip", i))
    actors.send(me, ("want", "yes"))
    actors.send(me, ("skip", "after"))
    assert actors.receive(lambda m: m[0] == "want", timeout=1) == ("want", "yes")
    assert actors.process_info(me)["message_queue_len"] == 1001
    assert actors.flush() == [("skip", i) for i in range(1000)] + [("skip", "after")]


def test_selective_receive_takes_the_first_of_several_matches():
    me = actors.self()
    for m in [1, "x", 2, "y", 3]:
        actors.send(me, m)
    assert actors.receive(lambda m: isinstance(m, str), timeout=0) == "x"
    assert actors.receive(lambda m: isinstance(m, str), timeout=0) == "y"
    assert actors.flush() == [1, 2, 3]


def test_receive_timeout_zero_polls_empty_mailbox():
    start = time.perf_counter()
    with pytest.raises(ReceiveTimeout):
        actors.receive(timeout=0)
    assert time.perf_counter() - start < 0.5


def test_receive_timeout_zero_returns_a_queued_message():
    actors.send(actors.self(), "ready")
    assert actors.receive(timeout=0) == "ready"


def test_receive_timeout_zero_does_not_return_unmatched():
    actors.send(actors.self(), "no")
    assert actors.receive(lambda m: m == "yes", timeout=0, default=TIMEOUT) is TIMEOUT
    assert actors.flush() == ["no"]


def test_receive_timeout_raises_receive_timeout_after_roughly_the_timeout():
    start = time.perf_counter()
    with pytest.raises(ReceiveTimeout) as info:
        actors.receive(timeout=0.05)
    elapsed = time.perf_counter() - start
    assert 0.04 <= elapsed < 2
    assert isinstance(info.value, TimeoutError)


def test_receive_timeout_returns_default_when_given():
    assert actors.receive(timeout=0.01, default=TIMEOUT) is TIMEOUT
    assert actors.receive(timeout=0, default=None) is None
    assert repr(TIMEOUT) == "TIMEOUT"


def test_receive_timeout_with_unmatched_messages_keeps_them():
    me = actors.self()
    actors.send(me, 1)
    actors.send(me, 2)
    with pytest.raises(ReceiveTimeout):
        actors.receive(lambda m: m == 3, timeout=0.02)
    assert actors.flush() == [1, 2]


def test_message_arriving_while_waiting_wakes_the_receiver():
    me = actors.self()
    actors.spawn(lambda: actors.send(me, "wake"))  # runs only once we block
    start = time.perf_counter()
    assert actors.receive(timeout=5) == "wake"
    assert time.perf_counter() - start < 1


def test_non_matching_message_arriving_while_waiting_does_not_satisfy_it():
    me = actors.self()
    actors.spawn(lambda: actors.send(me, "noise"))
    assert actors.receive(lambda m: m == "signal", timeout=0.1, default=TIMEOUT) is TIMEOUT
    assert actors.flush() == ["noise"]


def test_matching_message_after_noise_while_waiting_is_taken():
    me = actors.self()

    def chatter():
        for i in range(5):
            actors.send(me, ("noise", i))
            gevent.sleep(0)
        actors.send(me, "signal")
        actors.send(me, ("noise", 5))

    actors.spawn(chatter)
    assert actors.receive(lambda m: m == "signal", timeout=5) == "signal"
    assert actors.flush() == [("noise", i) for i in range(6)]


def test_receive_with_default_none_timeout_waits_forever_until_message():
    me = actors.self()

    def later():
        gevent.sleep(0.02)
        actors.send(me, "late")

    actors.spawn(later)
    assert actors.receive() == "late"


def test_receive_timeout_string_raises_type_error_naming_timeout():
    with pytest.raises(TypeError, match=r"\btimeout\b"):
        actors.receive(timeout="1")


def test_flush_returns_and_clears_the_mailbox():
    me = actors.self()
    for i in range(3):
        actors.send(me, i)
    assert actors.flush() == [0, 1, 2]
    assert actors.flush() == []
    assert actors.process_info(me)["message_queue_len"] == 0


def test_messages_may_be_any_object_even_with_hostile_eq_and_bool():
    class Evil:
        __hash__ = object.__hash__

        def __eq__(self, other):
            raise RuntimeError("no ==")

        def __bool__(self):
            raise RuntimeError("no bool")

    me = actors.self()
    evil = Evil()
    actors.send(me, evil)
    actors.send(me, (evil, evil))
    assert actors.receive(timeout=0) is evil
    msg = actors.receive(lambda m: isinstance(m, tuple), timeout=0)
    assert msg[0] is evil and msg[1] is evil


# --------------------------------------------------------------------------------------
# Crashes and their logging
# --------------------------------------------------------------------------------------


def test_crash_reason_is_the_exception_object():
    err = ZeroDivisionError("nope")

    def crash():
        raise err

    _pid, ref = actors.spawn_monitor(crash)
    assert _wait_down(ref) is err


def test_crash_is_logged_exactly_once_with_traceback(caplog):
    def crashing_function_xyz():
        raise ValueError("logged boom")

    with caplog.at_level(logging.DEBUG, logger="actors"):
        pid, ref = actors.spawn_monitor(crashing_function_xyz)
        reason = _wait_down(ref)
        gevent.sleep(0)
    errors = _error_records(caplog)
    assert len(errors) == 1
    rec = errors[0]
    assert rec.name == "actors"
    assert rec.exc_info is not None and rec.exc_info[1] is reason
    assert str(pid) in rec.getMessage()
    assert "crashing_function_xyz" in caplog.text  # in the traceback
    assert "Traceback" in caplog.text


def test_crash_of_linked_processes_is_logged_once_not_per_victim(caplog):
    def crash():
        actors.receive()
        raise ValueError("one crash")

    def victim(target):
        actors.link(target)
        actors.receive()

    with caplog.at_level(logging.DEBUG, logger="actors"):
        a = actors.spawn(crash)
        refs = [actors.monitor(actors.spawn(victim, a)) for _ in range(3)]
        gevent.sleep(0)
        actors.send(a, "go")
        for ref in refs:
            assert isinstance(_wait_down(ref), ValueError)
    assert len(_error_records(caplog)) == 1


@pytest.mark.parametrize(
    "how",
    [
        lambda: None,
        lambda: actors.exit("normal"),
        lambda: actors.exit("shutdown"),
        lambda: actors.exit(("shutdown", "bye")),
        lambda: actors.exit("some_reason"),
        lambda: actors.exit(("any", "term")),
        lambda: actors.exit(actors.self(), "kill"),
    ],
    ids=["return", "normal", "shutdown", "shutdown_tuple", "atom", "tuple", "kill_self"],
)
def test_non_crash_exits_of_raw_processes_are_not_logged_as_errors(caplog, how):
    with caplog.at_level(logging.DEBUG, logger="actors"):
        _pid, ref = actors.spawn_monitor(how)
        _wait_down(ref)
        gevent.sleep(0)
    assert _error_records(caplog) == []


def test_killed_process_is_not_logged(caplog):
    with caplog.at_level(logging.DEBUG, logger="actors"):
        pid, ref = actors.spawn_monitor(_block)
        gevent.sleep(0)
        actors.exit(pid, "kill")
        assert _wait_down(ref) == "killed"
        gevent.sleep(0)
    assert _error_records(caplog) == []


def test_exit_reason_of_explicit_exit_is_its_argument():
    obj = object()
    _pid, ref = actors.spawn_monitor(lambda: actors.exit(obj))
    assert _wait_down(ref) is obj


def test_receive_timeout_counts_from_the_call_even_after_busy_work():
    gevent.sleep(0.005)  # the loop blocks, then caches its clock
    end = time.perf_counter() + 0.15
    while time.perf_counter() < end:
        pass  # compute without yielding: the event loop's cached clock falls behind
    start = time.perf_counter()
    assert actors.receive(timeout=0.1, default=TIMEOUT) is TIMEOUT
    assert time.perf_counter() - start >= 0.09


def test_an_ended_process_is_freed_without_the_cyclic_collector():
    """Record and greenlet must not keep each other alive: servers make cyclic collections
    rare (transport.http.tune_gc), so every ended process would pile up until one ran."""
    import gc

    def short(n):
        actors.receive(timeout=0, default=None)
        if n % 3 == 1:
            raise actors.Exit("custom")
        return n

    gc.collect()
    gc.disable()
    try:
        for n in range(300):
            pid, ref = actors.spawn_monitor(short, n)
            actors.receive(lambda m, ref=ref: isinstance(m, tuple) and m[:2] == ("DOWN", ref), 2)
        garbage = gc.collect()
    finally:
        gc.enable()
    assert garbage < 30, f"{garbage} objects of 300 ended processes needed the cyclic collector"
