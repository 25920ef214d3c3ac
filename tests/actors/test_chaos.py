"""Chaos: random deaths over a linked/monitored/named population, then clean tables.

Also a hypothesis property test of link/unlink/trap_exit/exit against a tiny model.
"""

from __future__ import annotations

import logging
import random
import time
from collections import Counter

import gevent
from hostile_terms import Evil
from hypothesis import given, settings
from hypothesis import strategies as st

import actors
from actors import RegistrationError
from actors import _runtime as rt

REASONS = ["normal", "kill", "boom", "shutdown", ("shutdown", 1), ("custom", 2), Evil()]


def _tag(reason):
    # link() to a dead pid crashes the caller with NoProcError, as Erlang's process dies
    # with {noproc, Stack}: the model knows the tag, not the exception instance.
    return "noproc" if isinstance(reason, actors.NoProcError) else reason


def _check_tables(records):
    """The runtime's invariants, checked against every record ever created."""
    live = set(rt._by_number.values())
    assert all(p.alive for p in live)
    assert all(rt._by_number[p.pid._n] is p for p in live)
    assert set(actors.processes()) == {p.pid for p in live}
    for name, p in rt._names.items():
        assert p in live and p.name == name
    for g, p in rt._adopted.items():
        assert p in live and p.glet is g and p.adopted
    for p in live:
        assert p.pid._proc is p
        for q in p.links or ():
            assert q in live, f"{p.pid} linked to dead {q.pid}"
            assert p in q.links
        for ref, q in (p.monitors or {}).items():
            assert q in live, f"{p.pid} monitors dead {q.pid}"
            assert q.monitored_by[ref] is p
        for ref, q in (p.monitored_by or {}).items():
            assert q in live, f"{p.pid} monitored by dead {q.pid}"
            assert q.monitors[ref] is p
        if p.tracer is not None:
            assert p.tracer in live or not p.tracer.alive
    for p in records:
        if not p.alive:
            assert p not in live
            assert p.pid._proc is None
            assert not p.mailbox, f"dead {p.pid} holds messages"
            assert not p.links and not p.monitors and not p.monitored_by


def test_chaos_random_deaths_leave_clean_tables():
    rng = random.Random(20240611)
    me = actors.self()
    my_proc = me._proc
    actors.trap_exit(True)  # the test links to some workers and must survive them
    records: list = []
    pop: list = []  # pids of the live workers
    refs: list = []
    names = [f"chaos_{i}" for i in range(12)]

    def worker(trap):
        records.append(rt._current())
        actors.trap_exit(trap)
        while True:
            msg = actors.receive()
            if msg.__class__ is not tuple or not msg or msg[0] != "cmd":
                continue  # EXIT / DOWN / noise: dropped
            op = msg[1]
            if op == "crash":
                raise ValueError("chaos crash")
            if op == "return":
                return
            if op == "exit":
                actors.exit(msg[2])
            if op == "link":
                actors.link(msg[2])  # a dead pid crashes a non-trapping worker with NoProcError
            elif op == "unlink":
                actors.unlink(msg[2])
            elif op == "monitor":
                actors.monitor(msg[2])
            elif op == "trap":
                actors.trap_exit(msg[2])
            elif op == "register":
                try:
                    actors.register(msg[2])
                except RegistrationError:
                    pass
            elif op == "signal":
                actors.exit(msg[2], msg[3])
            elif op == "spawn_link":
                actors.spawn_link(worker, rng.random() < 0.5)
            elif op == "nap_then_watch":
                gevent.sleep(0)  # may be killed while switched out here
                actors.monitor(msg[2])
                actors.link(msg[2])
            elif op == "send_name":
                try:
                    actors.send(msg[2], "hello")
                except RegistrationError:
                    pass

    def spawn_one():
        trap = rng.random() < 0.3
        how = rng.random()
        if how < 0.2:
            pid = actors.spawn_link(worker, trap)
        elif how < 0.4:
            pid, ref = actors.spawn_monitor(worker, trap)
            refs.append(ref)
        else:
            pid = actors.spawn(worker, trap)
        records.append(pid._proc)
        pop.append(pid)
        if rng.random() < 0.2:
            try:
                actors.register(rng.choice(names), pid)
            except RegistrationError:
                pass

    def pick():
        return rng.choice(pop) if pop else None

    logging.getLogger("actors").disabled = True  # thousands of crash tracebacks cost time
    try:
        start = time.perf_counter()
        deaths = 0
        step = 0
        while deaths < 10_000:
            step += 1
            # Everyone alive takes part, including children that workers spawned.
            pop[:] = [p.pid for p in rt._by_number.values() if p.pid != me]
            while len(pop) < 40:
                spawn_one()
            # Structure: links, monitors, trap flags, names.
            for _ in range(rng.randint(0, 3)):
                a, b = pick(), pick()
                kind = rng.random()
                if kind < 0.35:
                    actors.send(a, ("cmd", "link", b))
                elif kind < 0.45:
                    actors.send(a, ("cmd", "unlink", b))
                elif kind < 0.65:
                    actors.send(a, ("cmd", "monitor", b if rng.random() < 0.8 else rng.choice(names)))
                elif kind < 0.75:
                    actors.send(a, ("cmd", "trap", rng.random() < 0.5))
                elif kind < 0.85:
                    actors.send(a, ("cmd", "register", rng.choice(names)))
                elif kind < 0.9:
                    actors.send(a, ("cmd", "spawn_link"))
                elif kind < 0.93:
                    actors.send(a, ("cmd", "send_name", rng.choice(names)))
                elif kind < 0.97:
                    actors.send(a, ("cmd", "nap_then_watch", b))
                else:
                    refs.append(actors.monitor(b))
            # One death-causing action per step.
            victim = pick()
            kind = rng.random()
            reason = rng.choice(REASONS)
            if kind < 0.2:
                actors.send(victim, ("cmd", "crash"))
            elif kind < 0.35:
                actors.send(victim, ("cmd", "return"))
            elif kind < 0.5:
                actors.send(victim, ("cmd", "exit", reason))
            elif kind < 0.7:
                actors.exit(victim, "kill")
            elif kind < 0.85:
                actors.exit(victim, reason)
            else:
                actors.send(victim, ("cmd", "signal", pick(), reason))
            deaths += 1
            if rng.random() < 0.5:
                gevent.sleep(0)
            if step % 100 == 0:
                actors.flush()
            if step % 1000 == 0:
                _check_tables(records)
        # Let every queued command run, then end everyone.
        gevent.sleep(0)
        gevent.sleep(0)
        for p in [proc.pid for proc in rt._by_number.values()]:
            if p != me:
                actors.exit(p, "kill")
        deadline = time.perf_counter() + 10
        # A spawned process's greenlet goes back to the runtime's pool once unwound.
        while not all(p.glet.dead or (type(p.glet) is rt._ProcGreenlet and p.glet.running is not p) for p in records):
            assert time.perf_counter() < deadline, "greenlets not unwound"
            gevent.sleep(0)
        actors.flush()
        elapsed = time.perf_counter() - start
    finally:
        logging.getLogger("actors").disabled = False

    assert len(records) > 1000  # the population really churned
    _check_tables(records)
    assert actors.processes() == [me]
    assert list(rt._by_number) == [me._n]
    assert rt._names == {}
    assert list(rt._adopted.values()) == [my_proc]
    assert rt._dying == {}
    assert not my_proc.links and not my_proc.monitors and not my_proc.monitored_by
    assert not my_proc.mailbox
    assert elapsed < 60


# --------------------------------------------------------------------------------------
# Property: link / unlink / trap_exit / exit against a model of who dies
# --------------------------------------------------------------------------------------

N = 4
MODEL_REASONS = ["normal", "kill", "boom", "shutdown"]

ops = st.lists(
    st.one_of(
        st.tuples(st.just("link"), st.integers(0, N - 1), st.integers(0, N - 1)),
        st.tuples(st.just("unlink"), st.integers(0, N - 1), st.integers(0, N - 1)),
        st.tuples(st.just("trap"), st.integers(0, N - 1), st.booleans()),
        st.tuples(st.just("exit_from_test"), st.integers(0, N - 1), st.sampled_from(MODEL_REASONS)),
        st.tuples(st.just("self_exit"), st.integers(0, N - 1), st.sampled_from(MODEL_REASONS)),
        st.tuples(st.just("signal"), st.integers(0, N - 1), st.integers(0, N - 1), st.sampled_from(MODEL_REASONS)),
    ),
    max_size=25,
)


class Model:
    def __init__(self):
        self.alive = [True] * N
        self.trap = [False] * N
        self.links: set[frozenset] = set()
        self.reason: dict[int, object] = {}
        self.exits: list[Counter] = [Counter() for _ in range(N)]

    def die(self, i, reason):
        pending = [(i, reason)]
        while pending:
            p, r = pending.pop()
            if not self.alive[p]:
                continue
            self.alive[p] = False
            self.reason[p] = r
            for pair in [pair for pair in self.links if p in pair]:
                self.links.discard(pair)
                (q,) = pair - {p}
                if not self.alive[q]:
                    continue
                if self.trap[q]:
                    self.exits[q][(p, r)] += 1
                elif r != "normal":
                    pending.append((q, r))

    def signal(self, target, reason, sender):
        if not self.alive[target]:
            return
        if reason == "kill":
            self.die(target, "killed")
        elif self.trap[target]:
            self.exits[target][(sender, reason)] += 1
        elif reason == "normal" and sender != target:
            pass
        else:
            self.die(target, reason)

    def link(self, i, j):
        if i == j:
            return
        if not self.alive[j]:
            if self.trap[i]:
                self.exits[i][(j, "noproc")] += 1
            else:
                self.die(i, "noproc")
            return
        self.links.add(frozenset((i, j)))


def _model_worker(test):
    while True:
        _, seq, op, arg = actors.receive(lambda m: m.__class__ is tuple and m[0] == "cmd")
        if op == "link":
            actors.link(arg)
        elif op == "unlink":
            actors.unlink(arg)
        elif op == "trap":
            actors.trap_exit(arg)
        elif op == "self_exit":
            actors.exit(arg)
        elif op == "signal":
            actors.exit(arg[0], arg[1])
        actors.send(test, ("ack", seq))


@settings(max_examples=150, deadline=None, database=None)
@given(ops)
def test_links_and_exit_signals_match_a_model(ops):
    me = actors.self()
    actors.trap_exit(False)
    pids = [actors.spawn(_model_worker, me) for _ in range(N)]
    index = {p: i for i, p in enumerate(pids)}
    index[me] = "test"
    refs = [actors.monitor(p) for p in pids]
    downs: dict[int, object] = {}
    model = Model()

    def is_down_of(i):
        return lambda m: m.__class__ is tuple and len(m) == 5 and m[0] == "DOWN" and m[1] == refs[i]

    try:
        for seq, op in enumerate(ops):
            kind, i = op[0], op[1]
            if kind == "exit_from_test":
                actors.exit(pids[i], op[2])
                model.signal(i, op[2], "test")
                continue
            if not model.alive[i]:
                continue
            if kind == "link":
                arg = pids[op[2]]
                model.link(i, op[2])
            elif kind == "unlink":
                arg = pids[op[2]]
                model.links.discard(frozenset((i, op[2])))
            elif kind == "trap":
                arg = op[2]
                model.trap[i] = op[2]
            elif kind == "self_exit":
                arg = op[2]
                model.die(i, op[2])
            else:  # signal from worker i to worker j
                arg = (pids[op[2]], op[3])
                model.signal(op[2], op[3], i)
            actors.send(pids[i], ("cmd", seq, kind, arg))
            down_of_i = is_down_of(i)
            msg = actors.receive(lambda m, s=seq, d=down_of_i: m == ("ack", s) or d(m), timeout=0.5)
            if msg[0] == "DOWN":
                downs[i] = _tag(msg[4])

        for i, p in enumerate(pids):
            assert actors.is_alive(p) == model.alive[i], (i, ops)
        for m in actors.flush():
            if m[0] == "DOWN":
                downs[refs.index(m[1])] = _tag(m[4])
        for i in range(N):
            if model.alive[i]:
                info = actors.process_info(pids[i], messages=True)
                assert info["trap_exit"] == model.trap[i]
                linked = {index[p] for p in info["links"]}
                assert linked == {j for pair in model.links if i in pair for j in pair - {i}}
                got = Counter(
                    (index.get(m[1], m[1]), _tag(m[2])) for m in info["messages"] if m.__class__ is tuple and m[0] == "EXIT"
                )
                assert got == model.exits[i], (i, ops)
            else:
                assert downs[i] == model.reason[i], (i, ops)
    finally:
        for p in pids:
            actors.exit(p, "kill")
        actors.flush()
