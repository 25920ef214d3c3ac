"""Connection greenlets (``_spawn_plain``) and a process handing itself on (``_handoff``).

The HTTP server runs each connection's handler in a greenlet from the runtime's pool, as
no process until it uses the runtime (then it is adopted, as any greenlet is). A
WebSocket upgrade hands that process on to its transport, as Cowboy's connection process
becomes a WebSocket handler. These tests pin the contract: pid, mailbox and monitors
carry over; in a connection greenlet the next body runs in the same greenlet once the
handler has returned (its frames gone); an adopted gevent greenlet gives the process to a
new greenlet and runs on; a process killed after handing on still runs the next body,
which meets the death at its first runtime call (so what was handed to it, a socket, is
released); a handler crashing after handing on is logged and the process goes on; a
handler's adopted process ends with the handler, and a kill aimed at it lands in it and
never in whatever its greenlet runs next.
"""

from __future__ import annotations

import gc
import weakref

import gevent
import gevent.event
from greenlet import getcurrent

import actors
from actors import _runtime as rt


class _Held:
    """Something the first body holds in a local variable."""


def _down(ref, timeout=2.0):
    msg = actors.receive(lambda m: m.__class__ is tuple and len(m) == 5 and m[0] == "DOWN" and m[1] == ref, timeout)
    return msg[4]


def _next_body(parent, first_greenlet, held_ref):
    gc.collect()  # nothing but the first body's frames held the object
    actors.send(
        parent,
        (
            "next",
            actors.self(),
            getcurrent() is first_greenlet,
            held_ref() is None,
            actors.process_info(actors.self(), stack=False)["initial_call"],
        ),
    )
    actors.send(parent, ("mail", actors.receive(timeout=2)))


def _handler(parent):
    held = _Held()
    me = actors.self()  # adopted here, on its first runtime call
    actors.send(parent, ("first", me, actors.process_info(me, stack=False)["initial_call"]))
    actors.receive(lambda m: m == "monitored", timeout=2)
    rt._handoff("test.next_body", _next_body, (parent, getcurrent(), weakref.ref(held)))
    actors.send(me, "queued before the hand-on")


def test_a_connection_greenlet_runs_the_handed_on_body_in_the_same_greenlet_after_the_handler():
    me = actors.self()
    rt._spawn_plain(_handler, (me,), "test.connection")
    tag, pid, initial_call = actors.receive(timeout=2)
    assert (tag, initial_call) == ("first", "test.connection")
    ref = actors.monitor(pid)
    actors.send(pid, "monitored")
    tag, same_pid, same_greenlet, first_frames_gone, initial_call = actors.receive(timeout=2)
    assert (tag, same_pid, same_greenlet, first_frames_gone) == ("next", pid, True, True)
    assert initial_call == "test.next_body"
    assert actors.receive(timeout=2) == ("mail", "queued before the hand-on")
    assert _down(ref) == "normal"  # the monitor made before the hand-on fires once, at the end


def _handler_killed_after_handing_on(parent, cleaned):
    actors.send(parent, actors.self())
    rt._handoff("test.cleanup", _must_clean_up, (parent, cleaned))
    gevent.sleep(5)  # still in the handler when the kill comes
    actors.send(parent, "the handler ran on")


def _must_clean_up(parent, cleaned):
    try:
        actors.self()  # a dead process's first runtime call raises its exit signal
        actors.send(parent, "ran on as if alive")
    finally:
        cleaned.set()  # e.g. closing the socket it was handed


def test_a_process_killed_after_handing_on_still_runs_the_next_body_to_its_first_runtime_call():
    me = actors.self()
    cleaned = gevent.event.Event()
    rt._spawn_plain(_handler_killed_after_handing_on, (me, cleaned), "test.connection")
    pid = actors.receive(timeout=2)
    ref = actors.monitor(pid)
    actors.exit(pid, "kill")
    assert _down(ref) == "killed"
    assert cleaned.wait(2)
    assert actors.receive(timeout=0.2, default=None) is None  # neither body ran on


def _handler_crashing_after_handing_on(parent):
    rt._handoff("test.next_body", _next_body, (parent, getcurrent(), weakref.ref(_Held())))
    raise RuntimeError("the handler crashed after handing on")


def test_a_handler_crash_after_handing_on_is_logged_and_the_process_goes_on(caplog):
    me = actors.self()
    rt._spawn_plain(_handler_crashing_after_handing_on, (me,), "test.connection")
    tag, pid, same_greenlet, _gone, _initial_call = actors.receive(timeout=2)
    assert (tag, same_greenlet) == ("next", True)
    assert actors.is_alive(pid)
    actors.send(pid, "still there")
    assert actors.receive(timeout=2) == ("mail", "still there")
    assert [r.getMessage() for r in caplog.records if "crashed" in r.getMessage()] == [
        "test.connection crashed: RuntimeError('the handler crashed after handing on')"
    ]


def test_an_adopted_gevent_greenlet_gives_its_process_to_a_new_greenlet_and_runs_on():
    me = actors.self()
    seen = {}

    def adopted():
        seen["pid"] = actors.self()
        rt._handoff("test.next_body", _next_body, (me, getcurrent(), weakref.ref(_Held())))
        seen["after"] = "ran on"

    gevent.spawn(adopted).join(timeout=2)
    assert seen["after"] == "ran on"
    tag, pid, same_greenlet, _gone, initial_call = actors.receive(timeout=2)
    assert (tag, pid, same_greenlet, initial_call) == ("next", seen["pid"], False, "test.next_body")
    actors.send(pid, "hello")
    assert actors.receive(timeout=2) == ("mail", "hello")


def test_a_handler_is_a_process_only_once_it_uses_the_runtime_and_its_process_ends_with_it():
    me = actors.self()
    before = set(actors.processes())
    done = gevent.event.Event()
    rt._spawn_plain(done.set, (), "test.connection")
    assert done.wait(2)
    assert set(actors.processes()) == before  # it never used the runtime: no process

    def uses_the_runtime(parent, go):
        actors.send(parent, actors.self())
        go.wait(2)

    go = gevent.event.Event()
    rt._spawn_plain(uses_the_runtime, (me, go), "test.connection")
    pid = actors.receive(timeout=2)
    ref = actors.monitor(pid)
    go.set()
    assert _down(ref) == "normal"


def test_a_kill_lands_in_the_handler_and_never_in_what_its_greenlet_runs_next():
    me = actors.self()
    greenlets = []

    def victim(parent):
        greenlets.append(getcurrent())
        actors.send(parent, actors.self())
        gevent.sleep(5)  # switched out in gevent, not in a receive
        actors.send(parent, "not killed")

    rt._spawn_plain(victim, (me,), "test.connection")
    pid = actors.receive(timeout=2)
    ref = actors.monitor(pid)
    actors.exit(pid, "kill")
    assert _down(ref) == "killed"
    for _ in range(100):  # its greenlet goes back to the pool once the Exit has unwound it
        if greenlets[0] in rt._pool:
            break
        gevent.sleep(0)

    def next_one(parent):
        actors.send(parent, ("next", getcurrent() is greenlets[0], actors.self()))
        actors.receive(timeout=0.3, default=None)  # a stale signal would land here
        actors.send(parent, "next one finished")

    rt._spawn_plain(next_one, (me,), "test.connection")
    tag, reused, _pid = actors.receive(timeout=2)
    assert tag == "next" and reused  # the pool hands out its most recently parked greenlet
    assert actors.receive(timeout=2) == "next one finished"
    assert actors.receive(timeout=0.1, default=None) is None
