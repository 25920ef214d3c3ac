"""pykka actors as processes: actors._pykka."""

from __future__ import annotations

import logging
import queue

import gevent
import pykka
import pytest
from hostile_terms import Evil

import actors
from actors import TIMEOUT, CallExit, Exit
from actors._pykka import Actor, ActorRef, GeventFuture, actor_child_spec


def _wait_down(mref, timeout=2.0):
    msg = actors.receive(lambda m: isinstance(m, tuple) and len(m) == 5 and m[0] == "DOWN" and m[1] == mref, timeout)
    return msg[4]


def _is_exit_from(pid):
    return lambda m: isinstance(m, tuple) and len(m) == 3 and m[0] == "EXIT" and m[1] == pid


class Recorder(Actor):
    """Records hooks and messages; answers a few commands."""

    def __init__(self, events=None, trap=False):
        super().__init__()
        self.events = events if events is not None else []
        self.trap = trap
        self.count = 0

    def on_start(self):
        if self.trap:
            actors.trap_exit(True)
        self.events.append("start")

    def on_stop(self):
        self.events.append("stop")

    def on_failure(self, exc_type, exc_value, tb):
        self.events.append(("failure", exc_value))

    def on_receive(self, message):
        if message == "boom":
            raise ValueError("boom")
        if message == "count":
            return self.count
        if isinstance(message, tuple) and message[0] == "block":  # ('block', notify_pid)
            actors.send(message[1], ("blocked", actors.self()))
            actors.receive(lambda m: m == "never")
        if isinstance(message, tuple) and message[0] == "exit":
            actors.exit(message[1])
        self.count += 1
        self.events.append(("got", message))
        return ("ok", message)

    def add(self, a, b):
        return a + b

    def fail(self):
        raise KeyError("nope")


# --------------------------------------------------------------------------------------
# tell / ask / proxy / futures
# --------------------------------------------------------------------------------------


def test_tell_ask_proxy(no_leaks):
    ref = Recorder.start()
    assert isinstance(ref, ActorRef) and isinstance(ref, pykka.ActorRef)
    ref.tell("a")
    ref.tell("b")
    assert ref.ask("count", timeout=1) == 2  # tells were handled first, in order
    assert ref.ask("x", timeout=1) == ("ok", "x")
    proxy = ref.proxy()
    assert proxy.add(2, 3).get(timeout=1) == 5
    assert proxy.count.get(timeout=1) == 3
    proxy.count = 10  # ProxySetAttr, blocking
    assert ref.ask("count", timeout=1) == 10
    proxy.add.defer(1, 1)  # tell semantics
    with pytest.raises(KeyError):
        proxy.fail().get(timeout=1)
    assert ref.stop() is True


def test_pid_is_a_live_process_named_after_the_class(no_leaks):
    ref = Recorder.start()
    assert isinstance(ref.pid, actors.Pid)
    assert actors.is_alive(ref.pid)
    assert ref.proxy().pid.get(timeout=1) == ref.pid  # actor.pid, from inside
    assert ref.ask("x", timeout=1)  # the process has run: it waits in receive
    info = actors.process_info(ref.pid)
    assert info["initial_call"] == f"{__name__}.Recorder"
    assert info["status"] == "waiting"
    assert actors.get_state(ref.pid).pid == ref.pid  # the actor object
    status = actors.get_status(ref.pid)
    assert status["pid"] == ref.pid and status["parent"] == actors.self()
    assert status["module"] == f"{__name__}.Recorder"
    ref.stop()


def test_ask_nonblocking_and_timeout(no_leaks):
    ref = Recorder.start()
    me = actors.self()
    blocked = ref.ask(("block", me), block=False)
    assert actors.receive(lambda m: m[0] == "blocked", timeout=1)[1] == ref.pid
    later = ref.ask("x", block=False)
    with pytest.raises(pykka.Timeout):
        later.get(timeout=0.01)
    with pytest.raises(pykka.Timeout):
        ref.ask("y", timeout=0.01)
    assert not blocked.ready()
    actors.exit(ref.pid, "kill")
    with pytest.raises(pykka.ActorDeadError):
        blocked.get(timeout=1)


def test_future_set_get_and_combinators():
    f = GeventFuture()
    assert not f.ready()
    with pytest.raises(pykka.Timeout):
        f.get(timeout=0)
    gevent.spawn_later(0.01, f.set, [1, 2, 3, 11])
    assert f.get(timeout=1) == [1, 2, 3, 11]
    assert f.get() == [1, 2, 3, 11]  # again, without blocking
    with pytest.raises(queue.Full):
        f.set(1)
    assert f.map(len).get(timeout=1) == 4
    assert f.filter(lambda x: x > 10).get(timeout=1) == [11]
    assert f.reduce(lambda a, b: a + b).get(timeout=1) == 17
    g = GeventFuture()
    g.set("g")
    assert f.join(g).get(timeout=1) == [[1, 2, 3, 11], "g"]
    assert pykka.get_all([f, g], timeout=1) == [[1, 2, 3, 11], "g"]

    e = GeventFuture()
    try:
        raise ZeroDivisionError("z")
    except ZeroDivisionError as exc:
        original = exc
        e.set_exception()
    with pytest.raises(ZeroDivisionError) as info:
        e.get(timeout=1)
    assert info.value is original  # the same object, with its real traceback
    with pytest.raises(queue.Full):
        e.set_exception((ValueError, ValueError(), None))


def test_ask_exception_goes_to_the_caller_and_the_actor_lives(no_leaks):
    ref = Recorder.start()
    mref = actors.monitor(ref.pid)
    with pytest.raises(ValueError, match="boom") as info:
        ref.ask("boom", timeout=1)
    assert any(frame.name == "on_receive" for frame in info.traceback)  # real traceback
    assert ref.ask("count", timeout=1) == 0  # still alive and serving
    assert ref.is_alive()
    assert actors.receive(timeout=0, default=TIMEOUT) is TIMEOUT  # no DOWN
    ref.stop()
    assert _wait_down(mref) == "normal"


# --------------------------------------------------------------------------------------
# stop, crash, exit reasons
# --------------------------------------------------------------------------------------


def test_stop_ends_the_process_normal(no_leaks):
    events = []
    ref = Recorder.start(events)
    mref = actors.monitor(ref.pid)
    ref.tell("a")
    assert ref.stop(timeout=1) is True
    assert _wait_down(mref) == "normal"
    assert events == ["start", ("got", "a"), "stop"]
    assert not ref.is_alive()
    assert ref.stop(timeout=1) is False  # already dead
    with pytest.raises(pykka.ActorDeadError):
        ref.tell("x")
    with pytest.raises(pykka.ActorDeadError):
        ref.ask("x", timeout=1)


def test_asks_queued_behind_a_stop_fail_with_actor_dead(no_leaks):
    ref = Recorder.start()
    me = actors.self()
    ref.tell(("block", me))
    actors.receive(lambda m: m[0] == "blocked", timeout=1)
    stopping = ref.stop(block=False)
    queued = ref.ask("x", block=False)
    mref = actors.monitor(ref.pid)
    actors.send(ref.pid, "never")  # unblock the handler
    assert stopping.get(timeout=1) is True
    with pytest.raises(pykka.ActorDeadError):
        queued.get(timeout=1)
    assert _wait_down(mref) == "normal"


def test_tell_exception_crashes_with_the_exception_as_reason(no_leaks, caplog):
    events = []
    ref = Recorder.start(events)
    mref = actors.monitor(ref.pid)
    me = actors.self()
    ref.tell(("block", me))
    actors.receive(lambda m: m[0] == "blocked", timeout=1)
    ref.tell("boom")
    queued = ref.ask("x", block=False)  # queued behind the crash
    with caplog.at_level(logging.ERROR):
        actors.send(ref.pid, "never")
        reason = _wait_down(mref)
    assert isinstance(reason, ValueError) and str(reason) == "boom"
    assert events[-1] == ("failure", reason)  # on_failure ran, on_stop did not
    assert "stop" not in events
    with pytest.raises(pykka.ActorDeadError):
        queued.get(timeout=1)
    assert not ref.is_alive()
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].name == "actors"  # logged once, by the runtime


def test_tell_crash_kills_linked_processes_and_traps_see_exit(no_leaks):
    ref = Recorder.start()
    me = actors.self()

    def linked(trap):
        actors.trap_exit(trap)
        actors.link(ref.pid)
        actors.send(me, ("linked", actors.self()))
        msg = actors.receive()
        actors.send(me, ("trapper got", msg))

    plain = actors.spawn(linked, False)
    trapper = actors.spawn(linked, True)
    actors.receive(lambda m: m == ("linked", plain), timeout=1)
    actors.receive(lambda m: m == ("linked", trapper), timeout=1)
    mplain = actors.monitor(plain)
    ref.tell("boom")
    reason = _wait_down(mplain)
    assert isinstance(reason, ValueError)
    got = actors.receive(lambda m: m[0] == "trapper got", timeout=1)[1]
    assert got == ("EXIT", ref.pid, reason)


def test_on_start_failure_crashes_without_on_failure(no_leaks):
    events = []

    class BadStart(Recorder):
        def on_start(self):
            raise RuntimeError("no start")

    ref = BadStart.start(events)
    mref = actors.monitor(ref.pid)
    reason = _wait_down(mref)
    assert isinstance(reason, RuntimeError) and str(reason) == "no start"
    assert events == []


def test_on_stop_failure_becomes_the_exit_reason(no_leaks):
    class BadStop(Recorder):
        def on_stop(self):
            raise RuntimeError("no stop")

    ref = BadStop.start()
    mref = actors.monitor(ref.pid)
    assert ref.stop(timeout=1) is True
    reason = _wait_down(mref)
    assert isinstance(reason, RuntimeError) and str(reason) == "no stop"


def test_exit_raised_by_the_actor_runs_on_stop_and_is_the_reason(no_leaks):
    events = []
    ref = Recorder.start(events)
    mref = actors.monitor(ref.pid)
    pending = ref.ask(("exit", "shutdown"), block=False)
    assert _wait_down(mref) == "shutdown"
    assert events[-1] == "stop"
    with pytest.raises(pykka.ActorDeadError):
        pending.get(timeout=1)


# --------------------------------------------------------------------------------------
# kill: no zombie
# --------------------------------------------------------------------------------------


def test_kill_leaves_no_zombie_and_fails_pending_asks(no_leaks):
    events = []
    ref = Recorder.start(events)
    mref = actors.monitor(ref.pid)
    me = actors.self()
    in_progress = ref.ask(("block", me), block=False)
    actors.receive(lambda m: m[0] == "blocked", timeout=1)
    queued = ref.ask("x", block=False)
    actors.exit(ref.pid, "kill")
    # Synchronously dead, as in Erlang:
    assert not ref.is_alive()
    assert not actors.is_alive(ref.pid)
    with pytest.raises(pykka.ActorDeadError):
        ref.tell("x")
    with pytest.raises(pykka.ActorDeadError):
        ref.ask("x", timeout=1)
    with pytest.raises(pykka.ActorDeadError):
        ref.proxy()
    # Pending asks fail instead of hanging:
    with pytest.raises(pykka.ActorDeadError):
        in_progress.get(timeout=1)
    with pytest.raises(pykka.ActorDeadError):
        queued.get(timeout=1)
    assert _wait_down(mref) == "killed"
    assert "stop" not in events and not any(e[0] == "failure" for e in events if isinstance(e, tuple))
    assert ref.stop(timeout=1) is False
    assert ref.actor_stopped.wait(timeout=1) is True


def test_kill_before_the_process_ever_ran_fails_asks(no_leaks):
    ref = Recorder.start()
    pending = ref.ask("x", block=False)
    actors.exit(ref.pid, "kill")  # still in the same hub turn: its body never runs
    with pytest.raises(pykka.ActorDeadError):
        pending.get(timeout=1)
    assert not ref.is_alive()


def test_kill_of_one_actor_never_stops_the_others(no_leaks, monkeypatch):
    stop_all_calls = []
    monkeypatch.setattr(pykka.ActorRegistry, "stop_all", classmethod(lambda cls, **kw: stop_all_calls.append(kw)))
    a = Recorder.start()
    b = Recorder.start()
    # A pykka ThreadingActor in pykka's registry would be stopped by stop_all too.

    class Threaded(pykka.ThreadingActor):
        def on_receive(self, message):
            return message

    threaded = Threaded.start()
    try:
        me = actors.self()
        a.tell(("block", me))  # killed inside a handler: where pykka's loop calls stop_all()
        actors.receive(lambda m: m[0] == "blocked", timeout=1)
        ma = actors.monitor(a.pid)
        actors.exit(a.pid, "kill")
        assert _wait_down(ma) == "killed"
        assert stop_all_calls == []
        assert b.is_alive() and b.ask("still here", timeout=1) == ("ok", "still here")
        assert threaded.is_alive() and threaded.ask("t", timeout=1) == "t"
        # The same for a crash and for a linked process's exit signal:
        c = Recorder.start()
        mc = actors.monitor(c.pid)
        c.tell("boom")
        assert isinstance(_wait_down(mc), ValueError)
        assert stop_all_calls == [] and b.ask("count", timeout=1) == 1
    finally:
        threaded.stop()
    b.stop()


def test_pykkas_own_loop_would_stop_all_actors_on_a_kill(no_leaks, monkeypatch):
    """Control for the test above: pykka 4.5's loop calls stop_all() when Exit hits a handler.

    If this starts failing, pykka changed the loop that Actor._actor_loop_running replaces.
    """
    stop_all_calls = []
    monkeypatch.setattr(pykka.ActorRegistry, "stop_all", classmethod(lambda cls, **kw: stop_all_calls.append(kw)))

    class PykkaLoop(Recorder):
        _actor_loop_running = pykka.Actor._actor_loop_running

    ref = PykkaLoop.start()
    ref.tell(("block", actors.self()))
    actors.receive(lambda m: m[0] == "blocked", timeout=1)
    mref = actors.monitor(ref.pid)
    actors.exit(ref.pid, "kill")
    assert _wait_down(mref) == "killed"
    gevent.sleep(0)  # the greenlet unwinds at the hub's turn after the kill
    assert stop_all_calls == [{}]


def test_actor_asks_another_actor(no_leaks):
    class Asker(Actor):
        def __init__(self, other):
            super().__init__()
            self.other = other

        def on_receive(self, message):
            return ("via", self.other.ask(message, timeout=1))

    b = Recorder.start()
    a = Asker.start(b)
    assert a.ask("q", timeout=1) == ("via", ("ok", "q"))
    assert a.proxy().other.get(timeout=1) is b
    a.stop()
    b.stop()


def test_untrapped_exit_signal_kills_and_normal_is_ignored(no_leaks):
    ref = Recorder.start()
    mref = actors.monitor(ref.pid)
    actors.exit(ref.pid, "normal")  # ignored by a process that does not trap exits
    assert ref.ask("x", timeout=1) == ("ok", "x")
    actors.exit(ref.pid, "bye")
    assert not ref.is_alive()
    assert _wait_down(mref) == "bye"


def test_crash_of_a_linked_process_kills_the_actor(no_leaks):
    me = actors.self()

    def owner():
        ref = Recorder.start_link()
        actors.send(me, ("ref", ref))
        actors.receive(lambda m: m == "crash")
        raise RuntimeError("owner crashed")

    owner_pid = actors.spawn(owner)
    ref = actors.receive(lambda m: m[0] == "ref", timeout=1)[1]
    assert actors.process_info(ref.pid)["links"] == [owner_pid]
    mref = actors.monitor(ref.pid)
    in_progress = ref.ask(("block", me), block=False)
    actors.receive(lambda m: m[0] == "blocked", timeout=1)
    actors.send(owner_pid, "crash")
    reason = _wait_down(mref)
    assert isinstance(reason, RuntimeError) and str(reason) == "owner crashed"
    with pytest.raises(pykka.ActorDeadError):
        in_progress.get(timeout=1)


def test_start_link_links_to_the_caller(no_leaks):
    actors.trap_exit(True)
    ref = Recorder.start_link()
    assert ref.pid in actors.process_info(actors.self())["links"]
    ref.tell("boom")
    msg = actors.receive(_is_exit_from(ref.pid), timeout=1)
    assert isinstance(msg[2], ValueError)


# --------------------------------------------------------------------------------------
# trap_exit, raw messages, names, calls
# --------------------------------------------------------------------------------------


def test_trapping_actor_receives_exit_messages(no_leaks):
    events = []
    ref = Recorder.start(events, trap=True)
    me = actors.self()

    def victim():
        actors.link(ref.pid)
        actors.send(me, "linked")
        actors.receive(lambda m: m == "die")
        raise Exit("oops")

    v = actors.spawn(victim)
    actors.receive(lambda m: m == "linked", timeout=1)
    actors.send(v, "die")
    mref = actors.monitor(ref.pid)
    sender = actors.spawn(actors.exit, ref.pid, "trapped")  # not the parent: a message
    assert _wait_down(actors.monitor(sender)) == "normal"
    # A marker after both signals: once it is handled, both EXITs were.
    assert ref.ask("marker", timeout=1) == ("ok", "marker")
    assert ("got", ("EXIT", v, "oops")) in events
    assert ("got", ("EXIT", sender, "trapped")) in events
    assert ref.is_alive()
    actors.exit(ref.pid, "kill")  # kill is never trapped
    assert _wait_down(mref) == "killed"


def test_trapping_actor_stops_on_its_parents_exit(no_leaks):
    events = []
    me = actors.self()

    def parent():
        ref = Recorder.start_link(events, trap=True)
        actors.send(me, ("ref", ref))
        actors.receive(lambda m: m == "shutdown")
        actors.exit(ref.pid, "shutdown")  # what a supervisor does
        actors.receive()

    p = actors.spawn(parent)
    ref = actors.receive(lambda m: m[0] == "ref", timeout=1)[1]
    assert ref.ask("x", timeout=1)  # on_start (trap_exit) has run
    mref = actors.monitor(ref.pid)
    actors.send(p, "shutdown")
    assert _wait_down(mref) == "shutdown"
    assert events[-1] == "stop"
    actors.exit(p, "kill")


def test_raw_messages_and_downs_reach_on_receive_and_names_work(no_leaks):
    events = []
    ref = Recorder.start(events)
    actors.register("recorder", ref.pid)
    assert actors.whereis("recorder") == ref.pid
    actors.send("recorder", "raw")
    other = actors.spawn(lambda: actors.receive())

    class Watcher(Actor):
        def on_start(self):
            self.mref = actors.monitor(other)

        def on_receive(self, message):
            events.append(("watcher", message))
            return self.mref

    w = Watcher.start()
    wref = w.ask("mref?", timeout=1)
    actors.exit(other, "gone")
    assert ref.ask("marker", timeout=1)
    assert ("got", "raw") in events
    w.ask("marker", timeout=1)
    assert ("watcher", ("DOWN", wref, "process", other, "gone")) in events
    w.stop()
    ref.stop()
    assert actors.whereis("recorder") is None


def test_call_cast_and_stop_through_the_runtime(no_leaks):
    events = []
    ref = Recorder.start(events)
    actors.cast(ref.pid, "cast me")
    assert actors.call(ref.pid, "call me", timeout=1) == ("ok", "call me")
    assert events[-2:] == [("got", "cast me"), ("got", "call me")]
    with pytest.raises(CallExit) as info:
        actors.call(ref.pid, "boom", timeout=1)  # OTP's call: the server crashes
    assert isinstance(info.value.why, ValueError)
    assert not ref.is_alive()

    ref2 = Recorder.start(events)
    actors.stop(ref2.pid, "shutdown", timeout=1)  # on_stop runs, exit reason 'shutdown'
    assert events[-1] == "stop"
    assert not ref2.is_alive()


def test_hostile_terms_do_not_crash_the_loop(no_leaks):
    from actors._gen_server import _SYSTEM, _call

    got = []

    class Keeper(Actor):
        def on_start(self):
            actors.trap_exit(True)

        def on_receive(self, message):
            got.append(message)

    ref = Keeper.start()
    evil = Evil()
    for msg in [(evil, 1, 2), (evil,), ("EXIT", evil, "r"), evil]:
        actors.send(ref.pid, msg)
    assert _call(ref.pid, _SYSTEM, evil, 1) == ("error", ("unknown_system_msg", evil))
    assert _call(ref.pid, _SYSTEM, (evil, 1), 1) == ("error", ("unknown_system_msg", (evil, 1)))
    ref.ask("marker", timeout=1)
    assert [m if m is evil else m[0] if m[0] is evil else m[1] for m in got[:4]] == [evil] * 4
    assert ref.is_alive()
    ref.stop()


# --------------------------------------------------------------------------------------
# registry
# --------------------------------------------------------------------------------------


def test_not_registered_in_pykkas_registry_and_unregister_is_harmless(no_leaks):
    before = pykka.ActorRegistry.get_all()
    ref = Recorder.start()
    assert ref not in pykka.ActorRegistry.get_all()
    assert pykka.ActorRegistry.get_by_class(Recorder) == []
    pykka.ActorRegistry.unregister(ref)  # what pykka's _stop does: a no-op here
    assert pykka.ActorRegistry.get_all() == before
    assert ref.ask("x", timeout=1) == ("ok", "x")
    assert ref.stop(timeout=1) is True  # pykka's _stop unregisters: still fine
    assert pykka.ActorRegistry.get_all() == before


# --------------------------------------------------------------------------------------
# construction edge cases
# --------------------------------------------------------------------------------------


def test_tell_from_init_is_delivered_after_start(no_leaks):
    class Early(Recorder):
        def __init__(self):
            super().__init__()
            self.actor_ref.tell("early")
            self.pending = self.actor_ref.ask("early ask", block=False)

    ref = Early.start()
    assert ref.ask("count", timeout=1) == 2
    assert ref.proxy().pending.get(timeout=1).get(timeout=1) == ("ok", "early ask")
    ref.stop()


def test_actor_initialised_by_pykkas_init_is_rewired(no_leaks):
    class Direct(Actor):
        def __init__(self):
            pykka.Actor.__init__(self)

        def on_receive(self, message):
            return message

    ref = Direct.start()
    assert isinstance(ref, ActorRef) and ref.pid is not None
    assert ref.ask("x", timeout=1) == "x"
    mref = actors.monitor(ref.pid)
    actors.exit(ref.pid, "kill")
    assert not ref.is_alive()
    assert _wait_down(mref) == "killed"


def test_missing_super_init_and_double_start_are_errors(no_leaks):
    class NoInit(Actor):
        def __init__(self):
            pass

    with pytest.raises(AssertionError, match="super"):
        NoInit.start()
    obj = Recorder()
    obj._start_actor_loop()  # pykka's seam, as pykka's own start would call it
    with pytest.raises(RuntimeError, match="already been started"):
        obj._start_actor_loop()
    ref = obj.actor_ref
    assert ref.ask("x", timeout=1) == ("ok", "x")
    ref.stop()


def test_actor_stopped_wait(no_leaks):
    ref = Recorder.start()
    assert ref.actor_stopped.wait(timeout=0.01) is False
    gevent.spawn(ref.stop)
    assert ref.actor_stopped.wait(timeout=1) is True


# --------------------------------------------------------------------------------------
# supervision
# --------------------------------------------------------------------------------------


class Configured(Actor):
    def __init__(self, a, b=None):
        super().__init__()
        self.config = (a, b)

    def on_receive(self, message):
        return self.config


def test_actor_child_spec_shape_and_start(no_leaks):
    spec = actor_child_spec(Configured, 1, b=2)
    assert spec["id"] is Configured
    assert spec["restart"] == "permanent" and spec["type"] == "worker"
    fn, args = spec["start"]
    assert isinstance(args, tuple)
    assert actor_child_spec(Configured, 1, id="c1")["id"] == "c1"
    with pytest.raises(TypeError):
        actor_child_spec(object)

    actors.trap_exit(True)
    pid = fn(*args)
    assert isinstance(pid, actors.Pid)
    assert pid in actors.process_info(actors.self())["links"]  # linked to the caller
    assert actors.call(pid, "config", timeout=1) == (1, 2)
    actors.exit(pid, "shutdown")
    assert actors.receive(_is_exit_from(pid), timeout=1)[2] == "shutdown"

    cs = Configured.child_spec(5)
    assert cs["id"] is Configured
    pid = cs["start"][0](*cs["start"][1])
    assert actors.call(pid, "config", timeout=1) == (5, None)
    actors.exit(pid, "kill")
    assert actors.receive(_is_exit_from(pid), timeout=1)[2] == "killed"


def test_supervisor_restarts_a_crashed_actor(no_leaks):
    import supervision

    sup = supervision.start_link([actor_child_spec(Recorder, id="rec"), Configured.child_spec("x")])
    try:
        [conf, rec] = supervision.which_children(sup)  # newest first, as OTP
        assert rec.id == "rec" and conf.id is Configured
        assert actors.call(conf.pid, "config", timeout=1) == ("x", None)
        pid1 = rec.pid
        mref = actors.monitor(pid1)
        actors.send(pid1, "boom")  # a raw message is a tell: the actor crashes
        assert isinstance(_wait_down(mref), ValueError)
        # The supervisor got the EXIT before our call, so it has restarted the child.
        pid2 = supervision.which_children(sup)[-1].pid
        assert isinstance(pid2, actors.Pid) and pid2 != pid1
        assert actors.call(pid2, "count", timeout=1) == 0
    finally:
        actors.trap_exit(True)
        actors.exit(sup, "shutdown")
        actors.receive(_is_exit_from(sup), timeout=5)
    assert not actors.is_alive(pid2)
