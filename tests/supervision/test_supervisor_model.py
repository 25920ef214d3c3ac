"""Property test: the supervisor's decisions match a small model of OTP's rules."""

from __future__ import annotations

import gevent
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sup_helpers import worker_spec

import actors
import supervision
from actors import Pid, _runtime

REASONS = ["boom", "normal", ("shutdown", "x"), "shutdown"]


class Model:
    """OTP's supervisor rules for one supervisor, with no clock (every restart is in the window)."""

    def __init__(self, children: list[tuple[str, str]], strategy: str, max_restarts: int) -> None:
        self.children = [[cid, restart, True] for cid, restart in children]  # id, restart, running
        self.strategy = strategy
        self.max_restarts = max_restarts
        self.restarts = 0
        self.alive = True

    def index(self, cid: str) -> int:
        return next(i for i, c in enumerate(self.children) if c[0] == cid)

    def exit(self, cid: str, reason: object) -> list[str]:
        """Apply a child's exit; the ids started again, in start order."""
        i = self.index(cid)
        child = self.children[i]
        clean = reason in ("normal", "shutdown") or (isinstance(reason, tuple) and reason[0] == "shutdown")
        if child[1] == "temporary":
            del self.children[i]
            return []
        if child[1] == "transient" and clean:
            child[2] = False
            return []
        self.restarts += 1
        if self.restarts > self.max_restarts:
            self.alive = False
            return []
        if self.strategy == "one_for_one":
            group = [child]
        else:
            group = self.children[:] if self.strategy == "one_for_all" else self.children[i:]
            for other in [c for c in group if c is not child and c[1] == "temporary"]:
                group.remove(other)
                self.children.remove(other)
        for member in group:
            member[2] = True
        return [m[0] for m in group]


children_st = st.lists(st.sampled_from(["permanent", "transient", "temporary"]), min_size=1, max_size=4)
events_st = st.lists(st.tuples(st.integers(0, 3), st.sampled_from(REASONS)), max_size=12)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(
    restarts=children_st,
    strategy=st.sampled_from(["one_for_one", "one_for_all", "rest_for_one"]),
    max_restarts=st.integers(0, 4),
    events=events_st,
)
def test_supervisor_follows_the_otp_model(restarts, strategy, max_restarts, events):
    _runtime._release_current()
    baseline = set(actors.processes())
    actors.trap_exit(True)
    me = actors.self()
    ids = [f"c{i}" for i in range(len(restarts))]
    model = Model(list(zip(ids, restarts)), strategy, max_restarts)
    sup = supervision.start_link(
        [worker_spec(cid, me, restart=r) for cid, r in zip(ids, restarts)],
        strategy=strategy,
        max_restarts=max_restarts,
        max_seconds=3600,
    )
    sup_ref = actors.monitor(sup)
    assert [_started() for _ in ids] == ids
    for index, reason in events:
        rows = supervision.which_children(sup)[::-1]  # OTP lists newest first; the model, in start order
        running = [r for r in rows if isinstance(r.pid, Pid)]
        if not running:
            break
        target = running[index % len(running)]
        before = {r.id: r.pid for r in rows}
        child_ref = actors.monitor(target.pid)
        if reason == "normal":
            actors.send(target.pid, "stop")
        else:
            actors.send(target.pid, ("exit", reason))
        # The child's EXIT reaches the supervisor when our DOWN does, so every later call
        # to the supervisor is answered after it has handled the exit.
        actors.receive(lambda m: m[:2] == ("DOWN", child_ref), 5)
        expected_starts = model.exit(target.id, reason)
        if not model.alive:
            down = actors.receive(lambda m: m[:2] == ("DOWN", sup_ref), 5)
            assert down[4] == "shutdown"
            assert not any(isinstance(p, Pid) and actors.is_alive(p) for p in before.values())
            break
        assert [_started() for _ in expected_starts] == expected_starts
        rows = supervision.which_children(sup)[::-1]  # OTP lists newest first; the model, in start order
        assert [r.id for r in rows] == [c[0] for c in model.children]
        for row, (cid, _restart, is_running) in zip(rows, model.children):
            assert (isinstance(row.pid, Pid) and actors.is_alive(row.pid)) == is_running, (cid, row)
            if cid not in expected_starts and is_running:
                assert row.pid == before[cid], f"{cid} restarted though the rules say it should not"
        assert actors.receive(lambda m: m[0] == "started", 0, default=None) is None
    if actors.is_alive(sup):
        actors.stop(sup, "shutdown")
    _runtime._release_current()
    gevent.sleep(0)
    assert set(actors.processes()) - baseline == set(), "processes left behind after the tree stopped"


def _started() -> str:
    return actors.receive(lambda m: isinstance(m, tuple) and m[0] == "started", 2)[1]
