"""Introspection: processes(), process_info, GenServer system requests, trace."""

from __future__ import annotations

import gevent
import pytest

import actors
from actors import CallExit, GenServer
from actors import _runtime as rt

INFO_KEYS = {
    "pid",
    "registered_name",
    "status",
    "message_queue_len",
    "message_queue_high_water",
    "links",
    "monitors",
    "monitored_by",
    "trap_exit",
    "initial_call",
    "label",
    "current_stacktrace",
    "hibernating",
}


def _block():
    actors.receive()


def _wait_down(ref, timeout=2.0):
    return actors.receive(lambda m: isinstance(m, tuple) and len(m) == 5 and m[0] == "DOWN" and m[1] == ref, timeout)[4]


def distinctive_waiting_function_name():
    actors.receive(lambda m: m == "release")


class Store(GenServer):
    def init(self, arg):
        return ("ok", arg)

    def handle_call(self, request, from_, state):
        return ("reply", state, state)


# --------------------------------------------------------------------------------------
# processes()
# --------------------------------------------------------------------------------------


def test_processes_lists_live_pids_and_not_dead_ones():
    live = [actors.spawn(_block) for _ in range(3)]
    dead, ref = actors.spawn_monitor(lambda: None)
    _wait_down(ref)
    procs = actors.processes()
    assert set(live) <= set(procs)
    assert actors.self() in procs
    assert dead not in procs
    assert all(actors.is_alive(p) for p in procs)


def test_processes_are_oldest_first():
    pids = [actors.spawn(_block) for _ in range(5)]
    procs = actors.processes()
    assert [p for p in procs if p in pids] == pids


def test_killed_process_leaves_processes_at_once():
    pid = actors.spawn(_block)
    actors.exit(pid, "kill")
    assert pid not in actors.processes()


# --------------------------------------------------------------------------------------
# process_info
# --------------------------------------------------------------------------------------


def test_process_info_has_the_documented_keys():
    pid = actors.spawn(_block)
    info = actors.process_info(pid)
    assert set(info) == INFO_KEYS
    assert info["pid"] == pid
    assert set(actors.process_info(pid, messages=True)) == INFO_KEYS | {"messages"}
    assert set(actors.process_info(pid, stack=False)) == INFO_KEYS - {"current_stacktrace"}


def test_the_queue_high_water_mark_remembers_the_longest_queue():
    pid = actors.spawn(_block)
    assert actors.process_info(pid)["message_queue_high_water"] == 0
    for i in range(5):
        actors.send(pid, i)
    info = actors.process_info(pid)
    assert info["message_queue_len"] == 5 and info["message_queue_high_water"] == 5


def test_process_info_of_dead_pid_is_none():
    pid, ref = actors.spawn_monitor(lambda: None)
    _wait_down(ref)
    assert actors.process_info(pid) is None


def test_process_info_non_pid_raises_type_error_naming_pid():
    with pytest.raises(TypeError, match=r"\bpid\b"):
        actors.process_info("<0.1.0>")


def test_status_runnable_waiting_suspended_running():
    pid = actors.spawn(_block)
    assert actors.process_info(pid)["status"] == "runnable"
    gevent.sleep(0)
    assert actors.process_info(pid)["status"] == "waiting"
    sleeper = actors.spawn(gevent.sleep, 10)
    gevent.sleep(0)
    assert actors.process_info(sleeper)["status"] == "suspended"
    assert actors.process_info(actors.self())["status"] == "running"
    actors.exit(sleeper, "kill")


def test_message_queue_len_counts_and_messages_copies_the_queue():
    pid = actors.spawn(distinctive_waiting_function_name)
    gevent.sleep(0)
    for i in range(7):
        actors.send(pid, i)
    gevent.sleep(0)  # the receiver scans them; none matches
    info = actors.process_info(pid, messages=True)
    assert info["message_queue_len"] == 7
    assert info["messages"] == list(range(7))
    info["messages"].clear()  # a copy
    assert actors.process_info(pid)["message_queue_len"] == 7
    assert actors.process_info(pid)["status"] == "waiting"


def test_links_monitors_monitored_by_registered_name_trap_exit():
    me = actors.self()
    pid = actors.spawn(_block)
    other = actors.spawn(_block)
    actors.link(pid)
    actors.monitor(pid)
    actors.monitor(other)
    actors.register("intro_name", pid)
    actors.trap_exit(True)
    mine = actors.process_info(me)
    assert mine["links"] == [pid]
    assert sorted(mine["monitors"]) == sorted([("process", pid), ("process", other)])
    assert mine["trap_exit"] is True
    theirs = actors.process_info(pid)
    assert theirs["links"] == [me]
    assert theirs["monitored_by"] == [me]
    assert theirs["monitors"] == []
    assert theirs["registered_name"] == "intro_name"
    assert theirs["trap_exit"] is False


def test_current_stacktrace_of_waiting_process_mentions_its_function():
    pid = actors.spawn(distinctive_waiting_function_name)
    gevent.sleep(0)
    stack = actors.process_info(pid)["current_stacktrace"]
    assert stack and all(isinstance(line, str) for line in stack)
    assert any("distinctive_waiting_function_name" in line for line in stack)
    assert any("receive" in line for line in stack)


def test_current_stacktrace_of_the_caller_mentions_this_test():
    stack = actors.process_info(actors.self())["current_stacktrace"]
    assert any("test_current_stacktrace_of_the_caller_mentions_this_test" in line for line in stack)


def test_current_stacktrace_of_unstarted_process_is_empty():
    pid = actors.spawn(_block)
    assert actors.process_info(pid)["current_stacktrace"] == []


def test_initial_call_names_the_function_and_label_is_settable():
    me = actors.self()

    def labelled():
        actors.set_label(("worker", 3))
        actors.send(me, "labelled")
        actors.receive()

    pid = actors.spawn(labelled)
    assert "labelled" in actors.process_info(pid)["initial_call"]
    assert actors.process_info(pid)["label"] is None
    actors.receive(timeout=2)
    assert actors.process_info(pid)["label"] == ("worker", 3)
    assert actors.process_info(me)["initial_call"] == "main greenlet"


def test_initial_call_of_a_gen_server_names_its_class():
    pid = Store.start(1)
    assert actors.process_info(pid)["initial_call"].endswith("Store.init")


# --------------------------------------------------------------------------------------
# GenServer system requests
# --------------------------------------------------------------------------------------


def test_get_state():
    pid = Store.start({"a": 1})
    assert actors.get_state(pid) == {"a": 1}


def test_replace_state_returns_and_installs_the_new_state():
    pid = Store.start(10)
    assert actors.replace_state(pid, lambda s: s + 5) == 15
    assert actors.get_state(pid) == 15
    assert actors.call(pid, "x") == 15


def test_replace_state_with_a_failing_function_fails_the_caller_not_the_server():
    pid = Store.start(10)
    with pytest.raises(actors.CallExit) as info:
        actors.replace_state(pid, lambda s: 1 / 0)
    assert info.value.why[0] == "callback_failed" and isinstance(info.value.why[1], ZeroDivisionError)
    assert actors.is_alive(pid)
    assert actors.get_state(pid) == 10


def test_replace_state_non_callable_raises_type_error():
    pid = Store.start(1)
    with pytest.raises(TypeError, match=r"\bfn\b"):
        actors.replace_state(pid, 5)


def test_get_status_of_a_linked_server():
    pid = Store.start_link("st", name="intro_status")
    actors.send(pid, "ignored by default handle_info")  # logged and dropped
    status = actors.get_status(pid)
    assert status["pid"] == pid
    assert status["module"].endswith("Store")
    assert status["status"] == "running"
    assert status["parent"] == actors.self()
    assert status["name"] == "intro_status"
    assert status["state"] == "st"
    assert status["message_queue_len"] == 0


def test_get_status_parent_of_an_unlinked_server_is_itself():
    pid = Store.start(0)
    assert actors.get_status(pid)["parent"] == pid


def test_system_requests_to_dead_server_raise_noproc():
    pid = Store.start(0)
    actors.stop(pid)
    for fn in (actors.get_state, actors.get_status):
        with pytest.raises(CallExit) as info:
            fn(pid)
        assert info.value.why == "noproc"


def test_system_requests_do_not_disturb_normal_messages():

    class Rec(GenServer):
        def init(self, arg):
            return ("ok", [])

        def handle_info(self, msg, state):
            return ("noreply", state + [msg])

    pid = Rec.start()
    actors.send(pid, 1)
    assert actors.get_state(pid) == [1]
    actors.send(pid, 2)
    assert actors.get_state(pid) == [1, 2]


# --------------------------------------------------------------------------------------
# trace
# --------------------------------------------------------------------------------------


def test_trace_delivers_receive_events_to_the_caller():
    pid = actors.spawn(distinctive_waiting_function_name)
    assert actors.trace(pid) is True
    actors.send(pid, "hello")
    actors.send(pid, {"k": 1})
    assert actors.receive(timeout=0) == ("trace", pid, "receive", "hello")
    assert actors.receive(timeout=0) == ("trace", pid, "receive", {"k": 1})


def test_trace_delivers_send_events():
    me = actors.self()

    def talker():
        actors.receive()
        actors.send(me, "spoken")

    pid = actors.spawn(talker)
    actors.trace(pid)
    actors.send(pid, "go")
    msgs = [actors.receive(timeout=2) for _ in range(3)]
    assert ("trace", pid, "receive", "go") in msgs
    assert ("trace", pid, "send", "spoken", me) in msgs
    assert "spoken" in msgs


def test_trace_to_another_tracer():
    me = actors.self()

    def tracer():
        while True:
            actors.send(me, ("tracer got", actors.receive()))

    t = actors.spawn(tracer)
    pid = actors.spawn(_block)
    assert actors.trace(pid, tracer=t) is True
    actors.send(pid, "m")
    assert actors.receive(timeout=2) == ("tracer got", ("trace", pid, "receive", "m"))


def test_trace_stops_when_told():
    pid = actors.spawn(distinctive_waiting_function_name)
    before = rt._tracing
    actors.trace(pid)
    assert rt._tracing == before + 1
    actors.send(pid, 1)
    assert actors.trace(pid, False) is True
    assert rt._tracing == before
    actors.send(pid, 2)
    assert actors.flush() == [("trace", pid, "receive", 1)]
    assert actors.process_info(pid)["message_queue_len"] == 2


def test_trace_stops_when_the_tracer_dies():
    before = rt._tracing
    pid = actors.spawn(distinctive_waiting_function_name)
    t = actors.spawn(_block)
    actors.trace(pid, tracer=t)
    actors.exit(t, "kill")
    actors.send(pid, "after tracer died")  # noticed here
    assert rt._tracing == before
    assert actors.process_info(pid)["message_queue_len"] == 1


def test_trace_stops_when_the_traced_process_dies():
    before = rt._tracing
    pid = actors.spawn(_block)
    actors.trace(pid)
    actors.exit(pid, "kill")
    assert rt._tracing == before


def test_trace_twice_counts_once():
    before = rt._tracing
    pid = actors.spawn(_block)
    actors.trace(pid)
    actors.trace(pid)
    assert rt._tracing == before + 1
    actors.trace(pid, False)
    assert rt._tracing == before


def test_trace_dead_pid_or_dead_tracer_returns_false():
    dead, ref = actors.spawn_monitor(lambda: None)
    _wait_down(ref)
    pid = actors.spawn(_block)
    assert actors.trace(dead) is False
    assert actors.trace(pid, tracer=dead) is False
    assert actors.trace(dead, False) is False


def test_trace_non_pid_raises_type_error():
    with pytest.raises(TypeError, match=r"\bpid\b"):
        actors.trace("x")


def test_trace_of_a_gen_server_call():
    pid = Store.start(7)
    actors.trace(pid)
    assert actors.call(pid, "q") == 7
    events = actors.flush()
    assert any(e[2] == "receive" and e[3][2] == "q" for e in events)
    assert any(e[2] == "send" for e in events)


def test_tracing_ends_when_the_tracer_dies_even_for_a_silent_process():
    """A dead tracer must not leave a quiet process traced: every send would keep paying
    for the trace check (and transport pushes would keep taking the mailbox path)."""
    from actors import _runtime

    before = _runtime._tracing
    quiet = actors.spawn(actors.receive)
    tracer = actors.spawn(actors.receive)
    assert actors.trace(quiet, tracer=tracer) is True
    assert _runtime._tracing == before + 1
    ref = actors.monitor(tracer)
    actors.exit(tracer, "kill")
    actors.receive(lambda m: isinstance(m, tuple) and m[:2] == ("DOWN", ref), 2)
    assert _runtime._tracing == before  # no message ever reached `quiet`
    # Re-targeting a trace moves it; the old tracer's death then changes nothing.
    t1, t2 = actors.spawn(actors.receive), actors.spawn(actors.receive)
    actors.trace(quiet, tracer=t1)
    actors.trace(quiet, tracer=t2)
    actors.exit(t1, "kill")
    assert _runtime._tracing == before + 1
    actors.exit(t2, "kill")
    assert _runtime._tracing == before
    actors.exit(quiet, "kill")
