"""GenServer: start/init contract, call/cast/info/continue, terminate, errors and logging."""

from __future__ import annotations

import inspect
import logging

import gevent
import pytest
from hostile_terms import Evil

import actors
from actors import TIMEOUT, BadReturnError, CallExit, Exit, GenServer, StartError


def _block():
    actors.receive()


def _wait_down(ref, timeout=2.0):
    return actors.receive(lambda m: isinstance(m, tuple) and len(m) == 5 and m[0] == "DOWN" and m[1] == ref, timeout)[4]


def _errors(caplog):
    return [r for r in caplog.records if r.levelno >= logging.ERROR and r.name.startswith("actors")]


class Counter(GenServer):
    """A small server used by many tests; reports lifecycle events to ``state['to']``."""

    def init(self, arg):
        to = arg.get("to") if isinstance(arg, dict) else None
        return ("ok", {"n": 0, "to": to})

    def handle_call(self, request, from_, state):
        if request == "get":
            return ("reply", state["n"], state)
        if request == "whoami":
            return ("reply", actors.self(), state)
        if isinstance(request, tuple) and request[0] == "add":
            state = {**state, "n": state["n"] + request[1]}
            return ("reply", state["n"], state)
        if request == "stop_with_reply":
            return ("stop", "normal", "bye", state)
        if isinstance(request, tuple) and request[0] == "stop3":
            return ("stop", request[1], state)
        if request == "crash":
            raise ValueError("handle_call crashed")
        if request == "call_self":
            try:
                actors.call(actors.self(), "get")
            except CallExit as e:
                return ("reply", e.why, state)
        return ("reply", ("unknown", request), state)

    def handle_cast(self, request, state):
        if isinstance(request, tuple) and request[0] == "add":
            return ("noreply", {**state, "n": state["n"] + request[1]})
        if request == "crash":
            raise KeyError("handle_cast crashed")
        return ("noreply", state)

    def handle_info(self, msg, state):
        if state["to"] is not None:
            actors.send(state["to"], ("info", msg))
        return ("noreply", state)

    def terminate(self, reason, state):
        if state["to"] is not None:
            actors.send(state["to"], ("terminate", reason, state["n"]))


# --------------------------------------------------------------------------------------
# start and init
# --------------------------------------------------------------------------------------


def test_start_returns_a_live_pid_after_init():
    pid = Counter.start()
    assert isinstance(pid, actors.Pid)
    assert actors.is_alive(pid)
    assert actors.call(pid, "get") == 0


def test_module_level_start_accepts_class_or_instance():
    pid1 = actors.start(Counter)
    pid2 = actors.start(Counter())
    assert actors.call(pid1, "get") == actors.call(pid2, "get") == 0


def test_init_receives_its_argument_and_sets_state():
    class S(GenServer):
        def init(self, arg):
            return ("ok", arg * 2)

        def handle_call(self, request, from_, state):
            return ("reply", state, state)

    assert actors.call(S.start(21), "x") == 42


def test_init_ok_with_timeout_gets_handle_info_timeout():
    me = actors.self()

    class S(GenServer):
        def init(self, arg):
            return ("ok", None, 20)

        def handle_info(self, msg, state):
            actors.send(me, ("info", msg))
            return ("noreply", state)

    S.start()
    assert actors.receive(timeout=0, default=TIMEOUT) is TIMEOUT
    assert actors.receive(timeout=5) == ("info", "timeout")


def test_timeout_is_cancelled_by_a_message():
    me = actors.self()

    class S(GenServer):
        def init(self, arg):
            return ("ok", None, 50)

        def handle_info(self, msg, state):
            actors.send(me, ("info", msg))
            return ("noreply", state)  # no new timeout

    pid = S.start()
    actors.send(pid, "early")
    assert actors.receive(timeout=5) == ("info", "early")
    assert actors.receive(timeout=0.15, default=TIMEOUT) is TIMEOUT


def test_hibernate_and_infinity_timeouts_mean_wait_forever():
    me = actors.self()

    class S(GenServer):
        def init(self, arg):
            return ("ok", None, arg)

        def handle_info(self, msg, state):
            actors.send(me, ("info", msg))
            return ("noreply", state)

    for t in ("hibernate", "infinity"):
        pid = S.start(t)
        assert actors.receive(timeout=0.05, default=TIMEOUT) is TIMEOUT
        actors.send(pid, t)
        assert actors.receive(timeout=2) == ("info", t)


def test_init_ignore_returns_none_and_the_process_is_gone(no_leaks):
    me = actors.self()

    class S(GenServer):
        def init(self, arg):
            actors.send(me, ("init in", actors.self()))
            return "ignore"

    assert S.start() is None
    _, pid = actors.receive(timeout=0)
    assert not actors.is_alive(pid)


def test_init_ignore_with_start_link_leaves_no_exit_when_trapping():
    actors.trap_exit(True)

    class S(GenServer):
        def init(self, arg):
            return "ignore"

    assert S.start_link() is None
    assert actors.receive(timeout=0.05, default=TIMEOUT) is TIMEOUT


def test_init_stop_raises_start_error_with_reason_and_process_is_dead(no_leaks):
    me = actors.self()

    class S(GenServer):
        def init(self, arg):
            actors.send(me, actors.self())
            return ("stop", "bad_config")

    with pytest.raises(StartError) as info:
        S.start()
    assert info.value.reason == "bad_config"
    pid = actors.receive(timeout=0)
    assert not actors.is_alive(pid)


def test_init_error_raises_start_error():
    class S(GenServer):
        def init(self, arg):
            return ("error", "nope")

    with pytest.raises(StartError) as info:
        S.start()
    assert info.value.reason == "nope"


def test_init_crash_raises_start_error_with_the_exception_and_logs_once(caplog, no_leaks):
    err = ValueError("init crashed")

    class S(GenServer):
        def init(self, arg):
            raise err

    with caplog.at_level(logging.DEBUG, logger="actors"):
        with pytest.raises(StartError) as info:
            S.start()
        gevent.sleep(0)
    assert info.value.reason is err
    errors = _errors(caplog)
    assert len(errors) == 1
    assert errors[0].exc_info[1] is err


def test_init_bad_return_is_a_start_error_and_logged(caplog):
    class S(GenServer):
        def init(self, arg):
            return "whatever"

    with caplog.at_level(logging.DEBUG, logger="actors"):
        with pytest.raises(StartError) as info:
            S.start()
    assert isinstance(info.value.reason, BadReturnError)
    assert info.value.reason.value == "whatever" and "S.init returned 'whatever'" in str(info.value.reason)
    errors = _errors(caplog)
    assert len(errors) == 1
    bad = errors[0].exc_info[1]
    assert isinstance(bad, BadReturnError)
    assert bad.callback.endswith("S.init") and bad.value == "whatever"


@pytest.mark.parametrize("result", [("stop", "bad"), "crash", "ignore", ("stop", "normal")])
def test_start_link_trapping_caller_gets_no_exit_message(result):
    actors.trap_exit(True)

    class S(GenServer):
        def init(self, arg):
            if result == "crash":
                raise RuntimeError("init crash")
            return result

    try:
        S.start_link()
    except StartError:
        pass
    assert actors.receive(timeout=0.05, default=TIMEOUT) is TIMEOUT
    assert actors.process_info(actors.self())["links"] == []


def test_start_link_init_stop_kills_a_non_trapping_caller():
    me = actors.self()

    class S(GenServer):
        def init(self, arg):
            return ("stop", "init_failed")

    with pytest.raises(Exit) as info:
        S.start_link()
    assert info.value.reason == "init_failed"
    assert not isinstance(info.value, StartError)
    assert not actors.is_alive(me)


def test_start_link_init_stop_normal_does_not_kill_the_caller():
    me = actors.self()

    class S(GenServer):
        def init(self, arg):
            return ("stop", "normal")

    with pytest.raises(StartError):
        S.start_link()
    assert actors.is_alive(me)


def test_start_link_links_the_server_to_the_caller():
    pid = Counter.start_link()
    assert actors.process_info(pid)["links"] == [actors.self()]


def test_start_with_name_registers_it():
    pid = Counter.start(name="gs_named")
    assert actors.whereis("gs_named") == pid
    assert actors.call("gs_named", ("add", 3)) == 3
    actors.cast("gs_named", ("add", 1))
    assert actors.call("gs_named", "get") == 4


def test_start_with_taken_name_raises_already_started(no_leaks):
    first = Counter.start(name="gs_taken")
    with pytest.raises(StartError) as info:
        Counter.start(name="gs_taken")
    assert info.value.reason == ("already_started", first)
    assert actors.whereis("gs_taken") == first
    actors.stop(first)


def test_start_link_with_taken_name_trapping_leaves_no_exit():
    actors.trap_exit(True)
    Counter.start(name="gs_taken2")
    with pytest.raises(StartError):
        Counter.start_link(name="gs_taken2")
    assert actors.receive(timeout=0.05, default=TIMEOUT) is TIMEOUT


def test_start_timeout_kills_the_server_and_raises(no_leaks):
    me = actors.self()

    class Slow(GenServer):
        def init(self, arg):
            actors.send(me, actors.self())
            actors.receive()
            return ("ok", None)

    with pytest.raises(StartError) as info:
        Slow.start(timeout=0.05)
    assert info.value.reason == "timeout"
    pid = actors.receive(timeout=0)
    assert not actors.is_alive(pid)


def test_start_with_bad_server_or_name_raises_type_error():
    with pytest.raises(TypeError, match="server"):
        actors.start(object)
    with pytest.raises(TypeError, match=r"\bname\b"):
        Counter.start(name=42)


def test_init_can_trap_exits_and_call_the_api():
    class S(GenServer):
        def init(self, arg):
            actors.trap_exit(True)
            return ("ok", None)

    pid = S.start()
    assert actors.process_info(pid)["trap_exit"] is True


# --------------------------------------------------------------------------------------
# call / cast / info / continue
# --------------------------------------------------------------------------------------


def test_call_reply():
    pid = Counter.start()
    assert actors.call(pid, ("add", 5)) == 5
    assert actors.call(pid, ("add", 2)) == 7
    assert actors.call(pid, "whoami") == pid


def test_call_leaves_no_monitor_or_message_behind():
    pid = Counter.start()
    actors.call(pid, "get")
    me = actors.self()
    assert actors.process_info(me)["monitors"] == []
    assert actors.process_info(me)["message_queue_len"] == 0
    assert actors.process_info(pid)["monitored_by"] == []


def test_call_noreply_then_reply_from_another_process():
    class Deferred(GenServer):
        def handle_call(self, request, from_, state):
            actors.spawn(lambda: actors.reply(from_, ("deferred", request)))
            return ("noreply", state)

    pid = Deferred.start()
    assert actors.call(pid, "q") == ("deferred", "q")


def test_call_noreply_then_reply_later_from_the_server():
    class Later(GenServer):
        def init(self, arg):
            return ("ok", [])

        def handle_call(self, request, from_, pending):
            return ("noreply", pending + [from_])

        def handle_cast(self, request, pending):
            for f in pending:
                actors.reply(f, request)
            return ("noreply", [])

    pid = Later.start()
    actors.spawn(lambda: actors.cast(pid, "released"))
    assert actors.call(pid, "wait") == "released"


def test_call_stop_with_reply_replies_then_stops_and_terminates():
    me = actors.self()
    pid = Counter.start({"to": me})
    ref = actors.monitor(pid)
    assert actors.call(pid, "stop_with_reply") == "bye"
    assert _wait_down(ref) == "normal"
    assert actors.receive(lambda m: m[0] == "terminate", timeout=2) == ("terminate", "normal", 0)


def test_call_stop_without_reply_fails_the_caller_with_the_reason():
    me = actors.self()
    pid = Counter.start({"to": me})
    with pytest.raises(CallExit) as info:
        actors.call(pid, ("stop3", ("shutdown", "done")))
    assert info.value.why == ("shutdown", "done")
    assert actors.receive(lambda m: m[0] == "terminate", timeout=2) == ("terminate", ("shutdown", "done"), 0)


def test_call_reply_with_timeout_gets_handle_info_timeout():
    me = actors.self()

    class S(GenServer):
        def handle_call(self, request, from_, state):
            return ("reply", "ok", state, 10)

        def handle_info(self, msg, state):
            actors.send(me, ("info", msg))
            return ("noreply", state)

    pid = S.start()
    assert actors.call(pid, "x") == "ok"
    assert actors.receive(timeout=5) == ("info", "timeout")


def test_cast_is_handled():
    pid = Counter.start()
    assert actors.cast(pid, ("add", 10)) is None
    assert actors.call(pid, "get") == 10


def test_cast_to_dead_pid_or_unregistered_name_is_dropped():
    pid, ref = actors.spawn_monitor(lambda: None)
    _wait_down(ref)
    assert actors.cast(pid, "x") is None
    assert actors.cast("gs_no_such_name", "x") is None


def test_cast_bad_dest_raises_type_error():
    with pytest.raises(TypeError, match=r"\bdest\b"):
        actors.cast(1, "x")


def test_handle_info_gets_plain_messages():
    me = actors.self()
    pid = Counter.start({"to": me})
    actors.send(pid, {"any": "thing"})
    assert actors.receive(timeout=2) == ("info", {"any": "thing"})


def test_handle_info_gets_exit_messages_from_non_parents_when_trapping():
    me = actors.self()

    class S(Counter):
        def init(self, arg):
            actors.trap_exit(True)
            return super().init(arg)

    pid = S.start({"to": me})
    actors.exit(pid, "please")
    assert actors.receive(timeout=2) == ("info", ("EXIT", me, "please"))
    assert actors.is_alive(pid)


def test_default_handle_info_logs_a_warning_and_keeps_running(caplog):
    class S(GenServer):
        def handle_call(self, request, from_, state):
            return ("reply", state, state)

    pid = S.start(5)
    with caplog.at_level(logging.DEBUG, logger="actors"):
        actors.send(pid, "stray")
        assert actors.call(pid, "x") == 5
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "stray" in warnings[0].getMessage()
    assert _errors(caplog) == []


def test_default_handle_call_crashes_the_server():
    class S(GenServer):
        pass

    pid = S.start()
    with pytest.raises(CallExit) as info:
        actors.call(pid, "anything")
    assert isinstance(info.value.why, RuntimeError)
    assert not actors.is_alive(pid)


def test_handle_continue_from_init_runs_before_any_message():
    class S(GenServer):
        def init(self, arg):
            return ("ok", ["init"], ("continue", "more"))

        def handle_continue(self, arg, state):
            return ("noreply", state + [("continued", arg)])

        def handle_call(self, request, from_, state):
            return ("reply", state, state)

    pid = S.start()
    assert actors.call(pid, "state") == ["init", ("continued", "more")]


def test_handle_continue_from_a_cast_and_chained():
    class S(GenServer):
        def init(self, arg):
            return ("ok", [])

        def handle_cast(self, request, state):
            return ("noreply", state + ["cast"], ("continue", 1))

        def handle_continue(self, arg, state):
            state = state + [arg]
            if arg < 3:
                return ("noreply", state, ("continue", arg + 1))
            return ("noreply", state)

        def handle_call(self, request, from_, state):
            return ("reply", state, state)

    pid = S.start()
    actors.cast(pid, "go")
    assert actors.call(pid, "state") == ["cast", 1, 2, 3]


def test_messages_are_handled_in_order():
    me = actors.self()
    pid = Counter.start({"to": me})
    for i in range(100):
        actors.send(pid, i)
    assert [actors.receive(timeout=2)[1] for _ in range(100)] == list(range(100))


def test_server_handles_message_with_hostile_first_element():
    me = actors.self()
    pid = Counter.start({"to": me})
    evil = Evil()
    actors.send(pid, (evil, 1, 2))
    actors.send(pid, (evil, 1))
    msg = actors.receive(timeout=2)
    assert msg[0] == "info" and msg[1][0] is evil
    assert actors.receive(timeout=2)[1][0] is evil
    assert actors.is_alive(pid)


def test_server_handles_exit_tuple_with_hostile_sender_when_trapping():
    me = actors.self()

    class S(Counter):
        def init(self, arg):
            actors.trap_exit(True)
            return super().init(arg)

    pid = S.start({"to": me})
    evil = Evil()
    actors.send(pid, ("EXIT", evil, "r"))
    msg = actors.receive(timeout=2)
    assert msg[1][1] is evil
    assert actors.is_alive(pid)


# --------------------------------------------------------------------------------------
# call failures
# --------------------------------------------------------------------------------------


def test_call_default_timeout_is_five_seconds():
    assert inspect.signature(actors.call).parameters["timeout"].default == 5.0
    assert inspect.signature(actors.get_state).parameters["timeout"].default == 5.0


def test_call_timeout_raises_call_exit_timeout():
    class Mute(GenServer):
        def handle_call(self, request, from_, state):
            return ("noreply", state)

    pid = Mute.start()
    with pytest.raises(CallExit) as info:
        actors.call(pid, "hello?", timeout=0.05)
    assert info.value.why == "timeout"
    assert info.value.pid == pid and info.value.request == "hello?"
    assert info.value.reason == ("timeout", ("call", pid, "hello?"))
    assert isinstance(info.value, Exit)
    # The call's monitor is gone.
    assert actors.process_info(actors.self())["monitors"] == []
    assert actors.is_alive(pid)


def test_late_reply_after_timeout_does_not_confuse_the_next_call():
    class Slow(GenServer):
        def init(self, arg):
            return ("ok", None)

        def handle_call(self, request, from_, state):
            if request == "slow":
                return ("noreply", from_)
            return ("reply", ("fast", request), state)

        def handle_cast(self, request, state):
            actors.reply(state, "late answer")
            return ("noreply", None)

    pid = Slow.start()
    with pytest.raises(CallExit):
        actors.call(pid, "slow", timeout=0.02)
    actors.cast(pid, "release")  # the server now answers the abandoned call
    assert actors.call(pid, 1) == ("fast", 1)
    assert actors.call(pid, 2) == ("fast", 2)
    # As OTP's call aliases: the reply to an abandoned call is dropped, not left queued.
    assert actors.flush() == []


def test_call_dead_pid_raises_noproc():
    pid, ref = actors.spawn_monitor(lambda: None)
    _wait_down(ref)
    with pytest.raises(CallExit) as info:
        actors.call(pid, "x")
    assert info.value.why == "noproc"


def test_call_unregistered_name_raises_noproc():
    with pytest.raises(CallExit) as info:
        actors.call("gs_not_registered", "x")
    assert info.value.why == "noproc"


def test_callee_dying_mid_call_raises_its_reason():

    def killer():
        target = actors.receive()
        actors.exit(target, ("custom", "reason"))

    k = actors.spawn(killer)

    class S(GenServer):
        def handle_call(self, request, from_, state):
            actors.send(k, actors.self())  # get killed while the caller waits
            return ("noreply", state)

    pid = S.start()
    with pytest.raises(CallExit) as info:
        actors.call(pid, "x", timeout=5)
    assert info.value.why == ("custom", "reason")
    assert actors.process_info(actors.self())["monitors"] == []


def test_callee_crashing_in_handle_call_raises_the_exception_as_why(caplog):
    pid = Counter.start()
    with caplog.at_level(logging.DEBUG, logger="actors"):
        with pytest.raises(CallExit) as info:
            actors.call(pid, "crash")
        gevent.sleep(0)
    assert isinstance(info.value.why, ValueError)
    assert len(_errors(caplog)) == 1


def test_linked_non_trapping_caller_dies_with_the_callee_reason():
    def caller(me):
        pid = Counter.start_link()
        try:
            actors.call(pid, "crash")
        except CallExit:
            actors.send(me, "got CallExit")
            raise

    _pid, ref = actors.spawn_monitor(caller, actors.self())
    reason = _wait_down(ref)
    assert isinstance(reason, ValueError)


def test_call_with_bad_dest_or_timeout_raises_type_error():
    pid = Counter.start()
    with pytest.raises(TypeError, match=r"\bdest\b"):
        actors.call(123, "x")
    with pytest.raises(TypeError, match=r"\btimeout\b"):
        actors.call(pid, "x", timeout="5")


def test_calling_self_raises_calling_self():
    pid = Counter.start()
    assert actors.call(pid, "call_self") == "calling_self"


def test_calling_self_from_a_plain_process():
    with pytest.raises(CallExit) as info:
        actors.call(actors.self(), "x")
    assert info.value.why == "calling_self"


def test_uncaught_call_exit_ends_a_process_with_otp_reason():
    dead, ref0 = actors.spawn_monitor(lambda: None)
    _wait_down(ref0)
    _pid, ref = actors.spawn_monitor(lambda: actors.call(dead, "q"))
    assert _wait_down(ref) == ("noproc", ("call", dead, "q"))


def test_reply_rejects_a_bad_from():
    with pytest.raises(TypeError, match="from_"):
        actors.reply("not a from", 1)
    with pytest.raises(TypeError, match="from_"):
        actors.reply((1, 2), 1)


# --------------------------------------------------------------------------------------
# Bad callback returns
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "callback,bad",
    [
        ("handle_call", "oops"),
        ("handle_call", ("reply",)),
        ("handle_call", ("noreply", 1, 2, 3)),
        ("handle_cast", ("reply", 1, 2)),
        ("handle_info", None),
        ("handle_continue", ["noreply", 1]),
    ],
)
def test_bad_callback_return_crashes_with_bad_return_error(caplog, callback, bad):

    class S(GenServer):
        def init(self, arg):
            return ("ok", None)

        def handle_call(self, request, from_, state):
            return bad

        def handle_cast(self, request, state):
            if callback == "handle_continue":
                return ("noreply", state, ("continue", 1))
            return bad

        def handle_info(self, msg, state):
            return bad

        def handle_continue(self, arg, state):
            return bad

    with caplog.at_level(logging.DEBUG, logger="actors"):
        pid = S.start()
        ref = actors.monitor(pid)
        if callback == "handle_call":
            with pytest.raises(CallExit) as info:
                actors.call(pid, "x")
            assert isinstance(info.value.why, BadReturnError)
        elif callback in ("handle_cast", "handle_continue"):
            actors.cast(pid, "x")
        elif callback == "handle_info":
            actors.send(pid, "x")
        reason = _wait_down(ref)
        gevent.sleep(0)
    assert isinstance(reason, BadReturnError)
    assert reason.callback.endswith(f"S.{callback}")
    assert reason.value == bad or reason.value is bad
    assert callback in str(reason) and repr(bad) in str(reason)
    if callback == "handle_call":
        assert info.value.why is reason
    errors = _errors(caplog)
    assert len(errors) == 1
    assert errors[0].exc_info[1] is reason


@pytest.mark.parametrize("timeout", ["soon", -5, ("continue",), [1], True])
@pytest.mark.parametrize("callback", ["handle_call", "handle_cast", "handle_info"])
def test_bad_timeout_element_is_a_bad_return_naming_the_callback(caplog, callback, timeout):
    class S(GenServer):
        def handle_call(self, request, from_, state):
            return ("reply", "answer", state, timeout)

        def handle_cast(self, request, state):
            return ("noreply", state, timeout)

        def handle_info(self, msg, state):
            return ("noreply", state, timeout)

    with caplog.at_level(logging.DEBUG, logger="actors"):
        pid = S.start()
        ref = actors.monitor(pid)
        if callback == "handle_call":
            with pytest.raises(CallExit):
                actors.call(pid, "x")
        elif callback == "handle_cast":
            actors.cast(pid, "x")
        else:
            actors.send(pid, "x")
        reason = _wait_down(ref)
        gevent.sleep(0)
    assert isinstance(reason, BadReturnError)
    assert reason.callback.endswith(f"S.{callback}")
    assert len(_errors(caplog)) == 1


def test_zero_timeout_loop_does_not_starve_other_processes():
    # OTP's "keep working" idiom: ('noreply', state, 0) until done. On greenlets a loop
    # of zero timeouts must still let other processes run between its steps.
    me = actors.self()
    ticks = []

    def ticker():
        while True:
            ticks.append(1)
            gevent.sleep(0)

    class Worker(GenServer):
        def init(self, arg):
            return ("ok", 0, 0)

        def handle_info(self, msg, n):
            if n < 200:
                return ("noreply", n + 1, 0)
            actors.send(me, ("done", len(ticks)))
            return ("noreply", n)

    t = actors.spawn(ticker)
    Worker.start()
    tag, seen = actors.receive(timeout=5)
    actors.exit(t, "kill")
    assert tag == "done"
    assert seen >= 100  # the ticker ran while the worker looped


def test_bad_timeout_element_from_init_is_a_start_error():
    class S(GenServer):
        def init(self, arg):
            return ("ok", None, "soon")

    with pytest.raises(StartError) as info:
        S.start()
    assert isinstance(info.value.reason, BadReturnError)
    assert info.value.reason.value == ("ok", None, "soon")


@pytest.mark.parametrize("timeout", [0, 5, 2.5, None, "hibernate", "infinity", ("continue", 1)])
def test_valid_timeout_elements_are_accepted(timeout):
    class S(GenServer):
        def handle_cast(self, request, state):
            return ("noreply", state, timeout)

        def handle_continue(self, arg, state):
            return ("noreply", state)

        def handle_info(self, msg, state):
            return ("noreply", state)

        def handle_call(self, request, from_, state):
            return ("reply", "alive", state)

    pid = S.start()
    actors.cast(pid, "x")
    assert actors.call(pid, "ping") == "alive"


# --------------------------------------------------------------------------------------
# terminate and stop
# --------------------------------------------------------------------------------------


def test_stop_runs_terminate_and_waits_for_death():
    me = actors.self()
    pid = Counter.start({"to": me})
    actors.call(pid, ("add", 4))
    assert actors.stop(pid) is None
    assert not actors.is_alive(pid)  # already dead when stop returns
    assert actors.receive(timeout=0) == ("terminate", "normal", 4)


def test_stop_with_reason_passes_it_to_terminate():
    me = actors.self()
    pid = Counter.start({"to": me})
    actors.stop(pid, ("shutdown", "maintenance"))
    assert actors.receive(timeout=0) == ("terminate", ("shutdown", "maintenance"), 0)


def test_stop_by_name():
    pid = Counter.start(name="gs_stop_name")
    actors.stop("gs_stop_name")
    assert not actors.is_alive(pid)
    assert actors.whereis("gs_stop_name") is None


def test_stop_dead_raises_noproc():
    pid = Counter.start()
    actors.stop(pid)
    with pytest.raises(CallExit) as info:
        actors.stop(pid)
    assert info.value.why == "noproc"


def test_stop_bad_dest_raises_type_error():
    with pytest.raises(TypeError, match=r"\bdest\b"):
        actors.stop(3.14)


def test_stop_when_terminate_changes_the_reason_raises_it():
    class S(GenServer):
        def terminate(self, reason, state):
            actors.exit("other_reason")

    pid = S.start()
    with pytest.raises(CallExit) as info:
        actors.stop(pid, "shutdown")
    assert info.value.why == "other_reason"


def test_stop_timeout_when_server_is_stuck():
    class Stuck(GenServer):
        def handle_cast(self, request, state):
            actors.receive(lambda m: m == "never")
            return ("noreply", state)

    pid = Stuck.start()
    actors.cast(pid, "block")
    with pytest.raises(CallExit) as info:
        actors.stop(pid, timeout=0.05)
    assert info.value.why == "timeout"
    assert actors.process_info(actors.self())["monitors"] == []
    actors.exit(pid, "kill")


def test_terminate_is_called_on_a_crash_with_the_exception():
    me = actors.self()
    pid = Counter.start({"to": me})
    actors.cast(pid, "crash")
    tag, reason, _n = actors.receive(timeout=2)
    assert tag == "terminate" and isinstance(reason, KeyError)


def test_terminate_crash_becomes_the_exit_reason_and_is_logged_once(caplog):
    err = RuntimeError("terminate failed")

    class S(GenServer):
        def terminate(self, reason, state):
            raise err

    pid = S.start()
    ref = actors.monitor(pid)
    with caplog.at_level(logging.DEBUG, logger="actors"):
        with pytest.raises(CallExit) as info:
            actors.stop(pid)
        gevent.sleep(0)
    assert info.value.why is err
    assert _wait_down(ref) is err
    assert len(_errors(caplog)) == 1


@pytest.mark.parametrize("parent_traps", [False, True])
def test_terminate_runs_when_the_parent_exits_with_shutdown_and_server_traps(parent_traps):
    me = actors.self()

    class Trapper(Counter):
        def init(self, arg):
            actors.trap_exit(True)
            return super().init(arg)

    def parent():
        actors.trap_exit(parent_traps)
        pid = Trapper.start_link({"to": me})
        actors.send(me, ("server", pid))
        actors.receive(lambda m: m == "exit now")
        actors.exit("shutdown")

    actors.spawn(parent)
    _, server = actors.receive(timeout=2)
    sref = actors.monitor(server)
    actors.send(actors.process_info(server)["links"][0], "exit now")
    assert actors.receive(lambda m: m[0] == "terminate", timeout=2) == ("terminate", "shutdown", 0)
    assert _wait_down(sref) == "shutdown"


def test_terminate_runs_when_the_parent_is_sent_shutdown():
    me = actors.self()

    class Trapper(Counter):
        def init(self, arg):
            actors.trap_exit(True)
            return super().init(arg)

    def parent():
        actors.send(me, ("server", Trapper.start_link({"to": me})))
        actors.receive()

    p = actors.spawn(parent)
    _, _server = actors.receive(timeout=2)
    actors.exit(p, "shutdown")
    assert actors.receive(timeout=2) == ("terminate", "shutdown", 0)


def test_terminate_not_called_when_server_does_not_trap_and_parent_dies():
    me = actors.self()

    def parent():
        actors.send(me, ("server", Counter.start_link({"to": me})))
        actors.receive()

    p = actors.spawn(parent)
    _, server = actors.receive(timeout=2)
    sref = actors.monitor(server)
    actors.exit(p, "shutdown")
    assert _wait_down(sref) == "shutdown"
    assert actors.receive(timeout=0.05, default=TIMEOUT) is TIMEOUT


def test_terminate_not_called_on_kill():
    me = actors.self()

    class Trapper(Counter):
        def init(self, arg):
            actors.trap_exit(True)
            return super().init(arg)

    pid = Trapper.start({"to": me})
    ref = actors.monitor(pid)
    actors.exit(pid, "kill")
    assert _wait_down(ref) == "killed"
    assert actors.receive(timeout=0.05, default=TIMEOUT) is TIMEOUT


# --------------------------------------------------------------------------------------
# Logging
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("reason", ["normal", "shutdown", ("shutdown", "x"), ("shutdown", {"k": 1})])
def test_quiet_stop_reasons_are_not_logged(caplog, reason):
    with caplog.at_level(logging.DEBUG, logger="actors"):
        pid = Counter.start()
        actors.stop(pid, reason)
        gevent.sleep(0)
        pid = Counter.start()
        ref = actors.monitor(pid)
        with pytest.raises(CallExit):
            actors.call(pid, ("stop3", reason))
        _wait_down(ref)
        gevent.sleep(0)
    assert _errors(caplog) == []


def test_other_stop_reason_is_logged_once_without_traceback(caplog):
    with caplog.at_level(logging.DEBUG, logger="actors"):
        pid = Counter.start()
        actors.stop(pid, "bad_thing")
        gevent.sleep(0)
    errors = _errors(caplog)
    assert len(errors) == 1
    assert errors[0].name == "actors.gen_server"
    assert "bad_thing" in errors[0].getMessage()


def test_crash_in_handle_cast_is_logged_once_with_traceback(caplog):
    pid = Counter.start()
    ref = actors.monitor(pid)
    with caplog.at_level(logging.DEBUG, logger="actors"):
        actors.cast(pid, "crash")
        reason = _wait_down(ref)
        gevent.sleep(0)
    errors = _errors(caplog)
    assert len(errors) == 1  # not once by the runtime and again by GenServer
    assert errors[0].name == "actors.gen_server"
    assert errors[0].exc_info[1] is reason
    assert "handle_cast crashed" in caplog.text and "Traceback" in caplog.text


def test_stop_with_hostile_reason_works_and_is_logged_once(caplog):
    reason = Evil()
    pid = Counter.start()
    ref = actors.monitor(pid)
    with caplog.at_level(logging.DEBUG, logger="actors"):
        actors.stop(pid, reason)
        gevent.sleep(0)
    assert _wait_down(ref) is reason
    assert len(_errors(caplog)) == 1


def test_stop_with_hostile_tuple_reason_works(caplog):
    reason = (Evil(), "x")
    pid = Counter.start()
    ref = actors.monitor(pid)
    with caplog.at_level(logging.DEBUG, logger="actors"):
        actors.stop(pid, reason)
        gevent.sleep(0)
    assert _wait_down(ref) is reason
    assert len(_errors(caplog)) == 1
