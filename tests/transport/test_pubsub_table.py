"""SubscriptionTable on its own: plain values as subscribers, no processes."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from transport.pubsub import SubscriptionTable


def test_add_reports_the_first_subscription_of_a_subscriber() -> None:
    t = SubscriptionTable()
    assert t.add("a", "x") is True
    assert t.add("a", "y") is False
    assert t.add("a", "x", "dup") is False
    assert t.add("b", "x") is True
    assert t.subscribers("x") == [("a", None), ("a", "dup"), ("b", None)]
    assert len(t) == 4
    assert t.statistics() == {"subscriptions": 4, "subscribers": 2, "topics": 2}


def test_remove_drops_every_duplicate_and_reports_the_last_one() -> None:
    t = SubscriptionTable()
    t.add("a", "x")
    t.add("a", "x", 1)
    t.add("a", "y")
    assert t.remove("a", "x") is False  # still holds y
    assert t.subscribers("x") == []
    assert "x" not in t.topics()
    assert t.remove("a", "x") is False  # not subscribed: no change
    assert t.remove("a", "y") is True
    assert not t.holds("a")
    assert len(t) == 0 and t.topics() == [] and t.all_subscribers() == []


def test_remove_of_unknown_subscriber_or_topic_is_a_noop() -> None:
    t = SubscriptionTable()
    assert t.remove("nobody", "x") is False
    t.add("a", "x")
    assert t.remove("a", "other") is False
    assert t.subscribers("x") == [("a", None)]


def test_remove_all_drops_a_subscriber_everywhere() -> None:
    t = SubscriptionTable()
    for topic in ("x", "y", "z"):
        t.add("a", topic)
        t.add("b", topic)
    t.add("a", "x")
    assert t.remove_all("a") == 4
    assert t.remove_all("a") == 0
    assert all(t.subscribers(topic) == [("b", None)] for topic in ("x", "y", "z"))
    assert t.topics_of("b") == ["x", "y", "z"] and t.topics_of("a") == []


def test_entries_is_a_live_view_in_subscription_order() -> None:
    t = SubscriptionTable()
    assert list(t.entries("x")) == [] and not t.entries("x")
    t.add("a", "x", 1)
    view = t.entries("x")
    t.add("b", "x", 2)
    assert list(view) == [("a", 1), ("b", 2)]
    assert t.count("x") == 2 and t.count("nope") == 0


def test_removing_many_subscribers_of_one_topic_is_linear() -> None:
    # 20k subscribers of one topic, all removed one by one: quadratic would take minutes.
    t = SubscriptionTable()
    for i in range(20_000):
        t.add(i, "big")
    for i in range(20_000):
        assert t.remove_all(i) == 1
    assert len(t) == 0 and t.topics() == []


ops = st.lists(
    st.tuples(
        st.sampled_from(["add", "remove", "remove_all"]),
        st.integers(0, 4),  # subscriber
        st.sampled_from(["t0", "t1", "t2"]),
        st.integers(0, 3),  # metadata
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(ops)
def test_table_matches_a_list_model(operations: list) -> None:
    t = SubscriptionTable()
    model: list[tuple[int, str, int]] = []  # (subscriber, topic, metadata) in insertion order
    for op, sub, topic, meta in operations:
        if op == "add":
            first = not any(s == sub for s, _, _ in model)
            assert t.add(sub, topic, meta) is first
            model.append((sub, topic, meta))
        elif op == "remove":
            had = any(s == sub and tp == topic for s, tp, _ in model)
            model = [e for e in model if not (e[0] == sub and e[1] == topic)]
            last = had and not any(s == sub for s, _, _ in model)
            assert t.remove(sub, topic) is last
        else:
            n = sum(1 for s, _, _ in model if s == sub)
            model = [e for e in model if e[0] != sub]
            assert t.remove_all(sub) == n
        for tp in ("t0", "t1", "t2"):
            assert t.subscribers(tp) == [(s, m) for s, x, m in model if x == tp]
        assert len(t) == len(model)
        assert sorted(t.topics()) == sorted({tp for _, tp, _ in model})
        assert Counter(t.all_subscribers()) == Counter({s for s, _, _ in model})
        for s in range(5):
            assert t.holds(s) == any(x == s for x, _, _ in model)
            assert sorted(t.topics_of(s)) == sorted({tp for x, tp, _ in model if x == s})
