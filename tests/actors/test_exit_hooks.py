"""Exit hooks: a table a process writes to drops its rows the moment the process dies."""

from __future__ import annotations

import logging

import pytest

import actors
from actors import _runtime as rt


def _down(ref, timeout=2.0):
    return actors.receive(lambda m: m.__class__ is tuple and len(m) == 5 and m[0] == "DOWN" and m[1] == ref, timeout)


def _hook_then(rows: dict, key, action):
    def body():
        rows[actors.self()] = key
        rt.add_exit_hook(key, rows.pop)
        action()

    return body


def _wait():
    actors.receive()


def _crash():
    raise RuntimeError("boom")


@pytest.mark.parametrize(
    "how, reason",
    [("normal", "normal"), ("crash", None), ("kill", "killed"), ("shutdown", "shutdown")],
)
def test_the_hook_runs_at_every_kind_of_death(how, reason, caplog):
    rows: dict = {}
    action = {"normal": lambda: None, "crash": _crash}.get(how, _wait)
    caplog.set_level(logging.CRITICAL, logger="actors")  # the crash's report is not the point
    pid, ref = actors.spawn_monitor(_hook_then(rows, "table", action))
    if how in ("kill", "shutdown"):
        actors.receive(lambda m: False, 0.05, default=None)  # let it register and wait
        assert pid in rows
        actors.exit(pid, "kill" if how == "kill" else "shutdown")
        assert pid not in rows  # synchronous: applied with the signal, before any switch
    down = _down(ref)
    assert pid not in rows
    if reason is not None:
        assert down[4] == reason


def test_one_hook_per_key_and_removal():
    calls: list = []
    me = actors.self()

    def body():
        rt.add_exit_hook("a", lambda pid: calls.append(("first", pid)))
        rt.add_exit_hook("a", lambda pid: calls.append(("second", pid)))
        rt.add_exit_hook("b", lambda pid: calls.append(("b", pid)))
        rt.add_exit_hook("c", lambda pid: calls.append(("c", pid)))
        rt.remove_exit_hook("c")
        rt.remove_exit_hook("never added")
        actors.send(me, "ready")

    pid, ref = actors.spawn_monitor(body)
    _down(ref)
    assert actors.receive(lambda m: m == "ready", 0) == "ready"
    assert calls == [("second", pid), ("b", pid)]


def test_a_failing_hook_is_logged_and_the_rest_of_the_death_goes_on(caplog):
    calls: list = []

    def body():
        rt.add_exit_hook("bad", lambda pid: 1 / 0)
        rt.add_exit_hook("good", calls.append)

    pid, ref = actors.spawn_monitor(body)
    assert _down(ref)[4] == "normal"
    assert calls == [pid]
    assert not actors.is_alive(pid)
    assert [r for r in caplog.records if "exit hook" in r.getMessage()]


def test_an_adopted_process_runs_its_hooks_when_released():
    calls: list = []
    me = actors.self()
    rt.add_exit_hook("t", calls.append)
    rt._release_current()
    assert calls == [me]
