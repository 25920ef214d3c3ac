"""The tracker state (transport/presence/_state.py): a pure CRDT, tested without processes.

Example tests pin the semantics (joins, leaves, updates, removals seen through deltas and
snapshots, replica down/permdown, generations); hypothesis drives 2-5 replicas through
random operations and deliveries (any interleaving, reordering and duplication of
deltas, plus snapshots) and checks that they converge on exactly the live presences.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from transport.presence._state import (
    Delta,
    DeltaGenerations,
    State,
    delta_from_wire,
    delta_to_wire,
    dominates,
    snapshot_from_wire,
    snapshot_to_wire,
)
from transport.terms import binary_to_term, term_to_binary


def replicas(n: int) -> list[State]:
    states = [State((f"node{i}", 1)) for i in range(n)]
    for s in states:
        for other in states:
            if other is not s:
                s.replica_up(other.replica)
    return states


def live(state: State) -> set:
    return {(p.topic, p.key, str(p.pid), p.tag) for p in state.online_list()}


def over_wire(delta: Delta) -> Delta:
    # Every delta in these tests crosses the term codec, as over Redis.
    return delta_from_wire(binary_to_term(term_to_binary(delta_to_wire(delta))))


def test_join_leave_and_lists():
    (a,) = replicas(1)
    p = a.join("pid1", "room:1", "alice", {"n": 1})
    a.join("pid2", "room:1", "bob", {})
    a.join("pid1", "room:2", "alice", {})
    assert [x.key for x in a.get_by_topic("room:1")] == ["alice", "bob"]
    assert a.get_by_pid("pid1", "room:1", "alice") == p
    assert {x.topic for x in a.get_by_pid("pid1")} == {"room:1", "room:2"}
    assert a.leave("pid1", "room:1", "alice") == p
    assert a.leave("pid1", "room:1", "alice") is None
    assert [x.key for x in a.get_by_topic("room:1")] == ["bob"]
    assert [x.topic for x in a.leave_pid("pid1")] == ["room:2"]
    assert a.get_by_topic("room:2") == [] and a.topic_count() == 1
    # three joins and two leaves, each an event with its own clock tick
    assert a.context[a.replica] == 5


def test_double_join_is_refused():
    (a,) = replicas(1)
    a.join("pid", "t", "k", {})
    try:
        a.join("pid", "t", "k", {})
    except ValueError as e:
        assert "already tracked" in str(e)
    else:
        raise AssertionError("a second join of the same (pid, topic, key) must fail")


def test_delta_carries_joins_and_leaves():
    a, b = replicas(2)
    a.join("p1", "t", "k1", {"x": 1})
    a.join("p2", "t", "k2", {})
    joins, leaves = b.merge(over_wire(a.take_delta()))
    assert sorted(p.key for p in joins) == ["k1", "k2"] and leaves == []
    assert b.context[a.replica] == 2
    a.leave("p1", "t", "k1")
    joins, leaves = b.merge(over_wire(a.take_delta()))
    assert joins == [] and [p.key for p in leaves] == ["k1"] and leaves[0].meta == {"x": 1}
    assert [p.key for p in b.get_by_topic("t")] == ["k2"]


def test_a_join_and_leave_in_one_delta_never_shows():
    a, b = replicas(2)
    a.join("p1", "t", "k1", {})
    a.leave("p1", "t", "k1")
    assert b.merge(over_wire(a.take_delta())) == ([], [])
    assert b.context[a.replica] == 2


def test_update_is_a_leave_and_a_join():
    a, b = replicas(2)
    a.join("p", "t", "k", {"v": 1})
    b.merge(a.take_delta())
    left, joined = a.leave_join("p", "t", "k", {"v": 2})
    assert left.meta == {"v": 1} and joined.meta == {"v": 2}
    joins, leaves = b.merge(over_wire(a.take_delta()))
    assert [p.meta for p in joins] == [{"v": 2}] and [p.meta for p in leaves] == [{"v": 1}]


def test_gap_stays_in_the_cloud_until_filled():
    a, b = replicas(2)
    a.join("p1", "t", "k1", {})
    d1 = a.take_delta()
    a.join("p2", "t", "k2", {})
    a.join("p3", "t", "k3", {})
    d2 = a.take_delta()
    joins, leaves = b.merge(d2)  # d1 missed so far
    assert [p.key for p in joins] == ["k2", "k3"] and leaves == []
    assert b.context[a.replica] == 0 and b.clouds[a.replica] == {2, 3}
    assert not dominates(b.context, a.context)  # what makes a shard ask for a transfer
    assert [p.key for p in b.merge(d1)[0]] == ["k1"]
    assert b.context[a.replica] == 3 and a.replica not in b.clouds
    assert live(b) == live(a)


def test_a_leave_seen_before_its_join_wins():
    a, b = replicas(2)
    a.join("p1", "t", "k1", {})
    d1 = a.take_delta()
    a.leave("p1", "t", "k1")
    d2 = a.take_delta()
    # d2's cloud holds tag 1 without a value: the late join can never show
    assert b.merge(d2) == ([], [])
    assert b.merge(d1) == ([], [])
    assert b.context[a.replica] == 2 and live(b) == set()


def test_snapshot_transfer_catches_up_and_removes():
    a, b, c = replicas(3)
    a.join("pa", "t", "a", {})
    c.join("pc", "t", "c", {})
    b.merge(a.take_delta())
    b.merge(c.take_delta())
    a.leave("pa", "t", "a")
    a.take_delta()  # lost on its way to b
    c.merge(b.extract(c.replica, c.context))
    snap = snapshot_from_wire(binary_to_term(term_to_binary(snapshot_to_wire(a.extract(b.replica, b.context)))))
    joins, leaves = b.merge(snap)
    assert joins == [] and [p.key for p in leaves] == ["a"]
    assert live(b) == {("t", "c", "pc", (c.replica, 1))}
    # the snapshot left out b's own presences and never removes them
    b.join("pb", "t", "b", {})
    b.merge(a.extract(b.replica, b.context))
    assert [p.key for p in b.get_by_topic("t")] == ["c", "b"]


def test_merge_never_touches_own_presences():
    a, b = replicas(2)
    a.join("pa", "t", "a", {})
    b.merge(a.take_delta())
    # b echoes a's value back, and a snapshot of b covers a's tag without its value
    joins, leaves = a.merge(b.extract(a.replica, b.context))
    assert joins == [] and leaves == []
    assert [p.key for p in a.get_by_topic("t")] == ["a"]


def test_unknown_replica_is_ignored_until_up():
    a = State(("a", 1))
    b = State(("b", 1))
    a.join("p", "t", "k", {})
    assert b.merge(a.take_delta()) == ([], [])
    assert b.get_by_topic("t") == []
    b.replica_up(a.replica)
    assert [p.key for p in b.merge(a.extract(b.replica, b.context))[0]] == ["k"]


def test_down_up_and_permdown():
    a, b = replicas(2)
    a.join("p", "t", "k", {})
    b.merge(a.take_delta())
    assert [p.key for p in b.replica_down(a.replica)] == ["k"]
    assert b.get_by_topic("t") == [] and b.down_replicas() == [a.replica]
    assert b.replica_down(a.replica) == []  # already down: nothing leaves twice
    # a merge from a down replica changes what is stored but reports nothing
    a.join("p2", "t", "k2", {})
    assert b.merge(a.take_delta()) == ([], [])
    assert sorted(p.key for p in b.replica_up(a.replica)) == ["k", "k2"]
    assert sorted(p.key for p in b.remove_down_replica(a.replica)) == ["k", "k2"]
    assert b.values == {} and a.replica not in b.context and a.replica not in b.replicas
    # once forgotten, its deltas are ignored (it is unknown again)
    a.join("p3", "t", "k3", {})
    assert b.merge(a.take_delta()) == ([], [])


def test_permdown_of_a_down_replica_reports_nothing_again():
    a, b = replicas(2)
    a.join("p", "t", "k", {})
    b.merge(a.take_delta())
    b.replica_down(a.replica)
    assert b.remove_down_replica(a.replica) == []


def test_delta_generations_answer_a_lagging_replica():
    a, b = replicas(2)
    gens = DeltaGenerations(max_sizes=(4, 100))
    deltas = []
    for i in range(6):
        a.join(f"p{i}", "t", f"k{i}", {})
        d = a.take_delta()
        gens.push(d)
        deltas.append(d)
    b.merge(deltas[0])
    b.merge(deltas[1])
    gen = gens.fulfilling(a.replica, b.context, a.context)
    assert gen is not None and gen.size() <= 100
    b.merge(gen.restricted(b.context, exclude=b.replica))
    assert live(b) == live(a)
    # up to date: nothing fulfils; from scratch beyond the biggest generation: neither
    assert gens.fulfilling(a.replica, b.context, a.context) is None
    # lagging on a third replica: a generation of a's own events cannot help
    c_ctx = dict(b.context)
    c_ctx[("other", 1)] = 0
    assert gens.fulfilling(a.replica, {**c_ctx, a.replica: 1}, {**a.context, ("other", 1): 3}) is None


def test_delta_merge_needs_contiguous_ranges():
    (a,) = replicas(1)
    a.join("p1", "t", "k1", {})
    d1 = a.take_delta()
    a.join("p2", "t", "k2", {})
    d2 = a.take_delta()
    a.join("p3", "t", "k3", {})
    d3 = a.take_delta()
    assert d1.merge(d3) is None
    merged = d1.merge(d2).merge(d3)
    assert sorted(v[2] for v in merged.values.values()) == ["k1", "k2", "k3"]
    assert merged.start == {a.replica: 0} and merged.end == {a.replica: 3}


# ----------------------------------------------------------------------------------------
# Properties
# ----------------------------------------------------------------------------------------


@st.composite
def scenarios(draw):
    n = draw(st.integers(min_value=2, max_value=5))
    steps = draw(
        st.lists(
            st.one_of(
                st.tuples(st.just("join"), st.integers(0, n - 1), st.integers(0, 3), st.integers(0, 2)),
                st.tuples(st.just("leave"), st.integers(0, n - 1), st.integers(0, 3), st.integers(0, 2)),
                st.tuples(st.just("die"), st.integers(0, n - 1), st.integers(0, 3), st.just(0)),
                st.tuples(st.just("update"), st.integers(0, n - 1), st.integers(0, 3), st.integers(0, 2)),
                st.tuples(st.just("heartbeat"), st.integers(0, n - 1), st.just(0), st.just(0)),
                st.tuples(st.just("deliver"), st.integers(0, 10_000), st.booleans(), st.just(0)),
                st.tuples(st.just("snapshot"), st.integers(0, n - 1), st.integers(0, n - 1), st.just(0)),
            ),
            max_size=60,
        )
    )
    final_order = draw(st.randoms(use_true_random=False))
    return n, steps, final_order


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_replicas_converge_whatever_the_delivery(scenario):
    n, steps, rng = scenario
    states = replicas(n)
    inflight: list[tuple[int, Delta]] = []  # (receiver, delta): may be delivered late, twice
    expected: dict = {}  # (replica index, pid, key) -> meta version, the truth
    version = 0
    for op, r, pid, key in steps:
        s = states[r] if op not in ("deliver",) else None
        if op == "join":
            if (r, pid, key) not in expected:
                s.join(f"pid{pid}", "room", key, {"v": version})
                expected[(r, pid, key)] = version
        elif op == "leave":
            if s.leave(f"pid{pid}", "room", key) is not None:
                del expected[(r, pid, key)]
        elif op == "die":
            s.leave_pid(f"pid{pid}")
            for k in [k for k in expected if k[0] == r and k[1] == pid]:
                del expected[k]
        elif op == "update":
            if (r, pid, key) in expected:
                version += 1
                s.leave_join(f"pid{pid}", "room", key, {"v": version})
                expected[(r, pid, key)] = version
        elif op == "heartbeat":
            if s.has_delta():
                d = s.take_delta()
                inflight.extend((i, d) for i in range(n) if i != r)
        elif op == "deliver" and inflight:
            i = r % len(inflight)
            receiver, d = inflight[i] if pid else inflight.pop(i)  # pid: deliver and keep (a duplicate)
            states[receiver].merge(over_wire(d))
        elif op == "snapshot" and r != pid:
            src, dst = states[r], states[pid]
            dst.merge(src.extract(dst.replica, dst.context))
        version += 1
    # Flush: every replica's last delta, then everything in flight in a random order, twice.
    for r, s in enumerate(states):
        if s.has_delta():
            d = s.take_delta()
            inflight.extend((i, d) for i in range(n) if i != r)
    rng.shuffle(inflight)
    for receiver, d in inflight + inflight[::-1]:
        states[receiver].merge(over_wire(d))
    truth = {("room", key, f"pid{pid}", r, {"v": v}["v"]) for (r, pid, key), v in expected.items()}
    for s in states:
        seen = {(p.topic, p.key, str(p.pid), int(p.tag[0][0][4:]), p.meta["v"]) for p in s.online_list()}
        assert seen == truth
        assert s.context == states[0].context or set(s.context) == set(states[0].context)
    # and every replica's own clocks are known to all: nothing more to ask for
    for s in states:
        for other in states:
            assert dominates(s.context, other.context)


@settings(max_examples=150, deadline=None)
@given(scenarios())
def test_merge_is_idempotent(scenario):
    n, steps, _ = scenario
    a, b = replicas(2)
    for op, r, pid, key in steps:
        target = a if r % 2 == 0 else b
        if op == "join" and target.get_by_pid(f"p{pid}", "t", key) is None:
            target.join(f"p{pid}", "t", key, {})
        elif op == "leave":
            target.leave(f"p{pid}", "t", key)
        elif op == "heartbeat" and a.has_delta():
            d = a.take_delta()
            b.merge(d)
            before = (live(b), dict(b.context), {k: set(v) for k, v in b.clouds.items()})
            assert b.merge(d) == ([], [])
            assert (live(b), dict(b.context), {k: set(v) for k, v in b.clouds.items()}) == before
        elif op == "snapshot":
            snap = a.extract(b.replica, b.context)
            b.merge(snap)
            before = (live(b), dict(b.context))
            assert b.merge(snap) == ([], [])
            assert (live(b), dict(b.context)) == before


@settings(max_examples=100, deadline=None)
@given(
    st.integers(2, 5),
    st.lists(st.tuples(st.integers(0, 4), st.integers(0, 5)), min_size=1, max_size=30),
    st.randoms(use_true_random=False),
)
def test_a_dead_process_leaves_everywhere(n, joins, rng):
    states = replicas(n)
    for r, pid in joins:
        s = states[r % n]
        if s.get_by_pid(f"pid{pid}", "t", "k") is None:
            s.join(f"pid{pid}", "t", "k", {})
    deltas = []
    for r, s in enumerate(states):
        d = s.take_delta()
        deltas.extend((i, d) for i in range(n) if i != r)
    rng.shuffle(deltas)
    for i, d in deltas:
        states[i].merge(d)
    victim_replica, victim_pid = joins[0][0] % n, f"pid{joins[0][1]}"
    states[victim_replica].leave_pid(victim_pid)
    d = states[victim_replica].take_delta()
    for i, s in enumerate(states):
        if i != victim_replica:
            s.merge(over_wire(d))
    for s in states:
        assert not any(p.pid == victim_pid and p.tag[0] == states[victim_replica].replica for p in s.online_list())
        assert live(s) == live(states[0])
