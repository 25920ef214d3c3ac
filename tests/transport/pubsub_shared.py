"""The shared PubSub suite: every adapter must pass it (phoenix_pubsub's test/shared).

Bind it to an adapter in a test module by importing it and defining ``pubsub_adapter``::

    from pubsub_shared import *  # noqa: F401,F403  (the tests and their fixtures)

    @pytest.fixture
    def pubsub_adapter():
        return LocalAdapter, {}          # (adapter, adapter options)

Every test runs with ``pool_size`` 1 and 8. The tests assume one node: whatever an adapter
sends to other nodes must not come back to this one (the Redis adapter tags messages with
their node name for that). A negative assertion ("nobody got it") is made only after
:func:`settle`, which pushes a marker through the adapter to this node and waits for it,
so an adapter that delivers asynchronously cannot pass by being slow.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any, ClassVar

import pytest

import actors
from actors import TIMEOUT, Pid
from transport import pubsub
from transport._message import Broadcast
from transport.pubsub import BroadcastError, PubSub, UnknownPubSubError

WAIT = 2.0  # seconds: generous upper bound for a message that must arrive
_names = itertools.count(1)


# ----------------------------------------------------------------------------------------
# Fixtures and helpers
# ----------------------------------------------------------------------------------------


@pytest.fixture(params=[1, 8], ids=lambda n: f"pool{n}")
def pool_size(request: Any) -> int:
    return request.param  # type: ignore[no-any-return]


class PS:
    """The PubSub under test: its name, node name and supervisor."""

    def __init__(self, name: str, sup: Pid, pool_size: int) -> None:
        self.name = name
        self.sup = sup
        self.pool_size = pool_size
        self.node = pubsub.node_name(name)
        self.topic = f"topic:{name}"


@pytest.fixture
def ps(pubsub_adapter: tuple[Any, dict[str, Any]], pool_size: int) -> Any:
    adapter, opts = pubsub_adapter
    name = f"test.PubSub{next(_names)}"
    sup = PubSub.start_link(name=name, pool_size=pool_size, adapter=adapter, **opts)
    yield PS(name, sup, pool_size)
    if actors.is_alive(sup):
        actors.unlink(sup)
        actors.stop(sup)


@pytest.fixture(autouse=True)
def stop_subscribers() -> Any:
    yield
    for pid in Subscriber.live:
        if actors.is_alive(pid):
            actors.unlink(pid)
            actors.exit(pid, "kill")
    Subscriber.live.clear()


def _subscriber_loop(owner: Pid) -> None:
    while True:
        msg = actors.receive()
        if msg.__class__ is tuple and len(msg) == 3 and msg[0] == "$run":
            _, ref, fn = msg
            actors.send(owner, (ref, fn()))
        elif msg == "$stop":
            return
        else:
            actors.send(owner, ("got", actors.self(), msg))


class Subscriber:
    """Another process that runs functions on request and reports what it receives.

    Everything it receives other than a request comes back to the test process as
    ``('got', pid, message)``. The ``stop_subscribers`` fixture kills those still alive
    when the test ends.
    """

    live: ClassVar[list[Pid]] = []

    def __init__(self) -> None:
        self.pid = actors.spawn_link(_subscriber_loop, actors.self())
        Subscriber.live.append(self.pid)

    def run(self, fn: Callable[[], Any]) -> Any:
        ref = actors.make_ref()
        actors.send(self.pid, ("$run", ref, fn))
        return actors.receive(lambda m: m.__class__ is tuple and len(m) == 2 and m[0] is ref, WAIT)[1]

    def subscribe(self, ps: PS, topic: str, metadata: Any = None) -> None:
        self.run(lambda: pubsub.subscribe(ps.name, topic, metadata))

    def unsubscribe(self, ps: PS, topic: str) -> None:
        self.run(lambda: pubsub.unsubscribe(ps.name, topic))

    def kill(self) -> None:
        actors.unlink(self.pid)
        actors.exit(self.pid, "kill")


def received(match: Callable[[Any], bool] | Any, timeout: float = WAIT) -> Any:
    """Wait for a message equal to ``match`` (or for which ``match(m)`` is true)."""
    pred = match if callable(match) else (lambda m: m == match)
    return actors.receive(pred, timeout)


def got(pid: Pid, message: Any) -> Callable[[Any], bool]:
    return lambda m: m.__class__ is tuple and len(m) == 3 and m[0] == "got" and m[1] == pid and m[2] == message


def nothing_received(match: Callable[[Any], bool] | Any) -> bool:
    """No such message is queued now (call :func:`settle` first)."""
    pred = match if callable(match) else (lambda m: m == match)
    return actors.receive(pred, 0, default=TIMEOUT) is TIMEOUT


def settle(ps: PS) -> None:
    """Wait until everything broadcast so far has been delivered on this node.

    A marker goes through the adapter to this node (``direct_broadcast`` to our own node
    is carried by the adapter, even when that is a round trip through Redis) and is
    awaited; a broadcast made before it has been delivered (or dropped) by then.
    """
    topic = f"$settle:{ps.name}"
    marker = ("$settled", actors.make_ref())
    pubsub.subscribe(ps.name, topic)
    try:
        assert pubsub.direct_broadcast(ps.node, ps.name, topic, marker) == "ok"
        received(marker)
    finally:
        pubsub.unsubscribe(ps.name, topic)


def collect_dispatches(into: list) -> Callable[..., None]:
    """A dispatcher that records each call (as a list of its entries) and delivers nothing."""

    def dispatcher(entries: list, from_pid: Any, message: Any) -> None:
        into.append((list(entries), from_pid, message))

    return dispatcher


def custom_dispatch(entries: list, from_pid: Any, message: Any) -> None:
    """As phoenix_pubsub's shared CustomDispatcher: tell each subscriber its metadata."""
    for pid, metadata in entries:
        actors.send(pid, ("custom", metadata, from_pid, message))


# ----------------------------------------------------------------------------------------
# The suite
# ----------------------------------------------------------------------------------------


def test_node_name_is_a_nonempty_str(ps: PS) -> None:
    assert isinstance(ps.node, str) and ps.node
    assert pubsub.node_name(ps.name) == ps.node


def test_subscribe_and_unsubscribe(ps: PS) -> None:
    sub = Subscriber()
    assert pubsub.subscribers(ps.name, ps.topic) == []
    sub.subscribe(ps, ps.topic)
    assert pubsub.subscribers(ps.name, ps.topic) == [(sub.pid, None)]
    sub.unsubscribe(ps, ps.topic)
    assert pubsub.subscribers(ps.name, ps.topic) == []
    assert pubsub.topics(ps.name) == []


def test_subscribe_returns_none_and_broadcasts_return_ok(ps: PS) -> None:
    assert pubsub.subscribe(ps.name, ps.topic) is None
    assert pubsub.broadcast(ps.name, ps.topic, "a") == "ok"
    assert pubsub.broadcast_from(ps.name, actors.self(), ps.topic, "b") == "ok"
    assert pubsub.local_broadcast(ps.name, ps.topic, "c") == "ok"
    assert pubsub.local_broadcast_from(ps.name, actors.self(), ps.topic, "d") == "ok"
    assert pubsub.direct_broadcast(ps.node, ps.name, ps.topic, "e") == "ok"
    assert pubsub.unsubscribe(ps.name, ps.topic) is None


def test_broadcast_and_broadcast_or_raise_reach_the_subscriber(ps: PS) -> None:
    pubsub.subscribe(ps.name, ps.topic)
    assert pubsub.broadcast(ps.name, ps.topic, "ping") == "ok"
    assert received("ping") == "ping"
    assert pubsub.broadcast_or_raise(ps.name, ps.topic, "ping!") is None
    assert received("ping!") == "ping!"


def test_broadcast_reaches_every_subscriber_and_no_other_topic(ps: PS) -> None:
    pubsub.subscribe(ps.name, "some:other:topic")
    subs = [Subscriber() for _ in range(11)]
    for sub in subs:
        sub.subscribe(ps, ps.topic)
    assert pubsub.broadcast(ps.name, ps.topic, "ping") == "ok"
    for sub in subs:
        received(got(sub.pid, "ping"))
    settle(ps)
    assert nothing_received("ping")


def test_broadcast_from_skips_the_sender(ps: PS) -> None:
    other = Subscriber()
    other.subscribe(ps, ps.topic)
    pubsub.subscribe(ps.name, ps.topic)
    me = actors.self()
    assert pubsub.broadcast_from(ps.name, me, ps.topic, "from") == "ok"
    assert pubsub.broadcast_from_or_raise(ps.name, me, ps.topic, "from!") is None
    received(got(other.pid, "from"))
    received(got(other.pid, "from!"))
    settle(ps)
    assert nothing_received("from") and nothing_received("from!")


def test_unsubscribe_from_a_topic_not_subscribed_is_a_noop(ps: PS) -> None:
    assert pubsub.unsubscribe(ps.name, ps.topic) is None
    assert pubsub.subscribers(ps.name, ps.topic) == []
    pubsub.subscribe(ps.name, "kept")
    pubsub.unsubscribe(ps.name, ps.topic)
    assert pubsub.subscribers(ps.name, "kept") == [(actors.self(), None)]


def test_unsubscribed_process_gets_nothing(ps: PS) -> None:
    pubsub.subscribe(ps.name, ps.topic)
    pubsub.unsubscribe(ps.name, ps.topic)
    pubsub.broadcast(ps.name, ps.topic, "late")
    settle(ps)
    assert nothing_received("late")


def test_direct_broadcast_to_own_node(ps: PS) -> None:
    pubsub.subscribe(ps.name, ps.topic)
    assert pubsub.direct_broadcast(ps.node, ps.name, ps.topic, "direct") == "ok"
    received("direct")
    assert pubsub.direct_broadcast_or_raise(ps.node, ps.name, ps.topic, "direct!") is None
    received("direct!")


def test_direct_broadcast_to_unknown_node_delivers_nothing_here(ps: PS) -> None:
    # Whether the adapter reports an unknown node is its own business ("ok" for a
    # fire-and-forget transport, an error for the local adapter); it must not deliver
    # here, and the raising form must agree with the returning one.
    pubsub.subscribe(ps.name, ps.topic)
    result = pubsub.direct_broadcast("IDONTKNOW@127.0.0.1", ps.name, ps.topic, "lost")
    assert result == "ok" or (result.__class__ is tuple and result[0] == "error")
    if result == "ok":
        assert pubsub.direct_broadcast_or_raise("IDONTKNOW@127.0.0.1", ps.name, ps.topic, "lost!") is None
    else:
        with pytest.raises(BroadcastError) as info:
            pubsub.direct_broadcast_or_raise("IDONTKNOW@127.0.0.1", ps.name, ps.topic, "lost!")
        assert info.value.reason == result[1]
    settle(ps)
    assert nothing_received("lost") and nothing_received("lost!")


def test_local_broadcast_reaches_this_node(ps: PS) -> None:
    pubsub.subscribe(ps.name, ps.topic)
    assert pubsub.local_broadcast(ps.name, ps.topic, "local") == "ok"
    received("local")


def test_local_broadcast_from_skips_the_sender(ps: PS) -> None:
    other = Subscriber()
    other.subscribe(ps, ps.topic)
    pubsub.subscribe(ps.name, ps.topic)
    assert pubsub.local_broadcast_from(ps.name, actors.self(), ps.topic, "local_from") == "ok"
    received(got(other.pid, "local_from"))
    settle(ps)
    assert nothing_received("local_from")


def test_custom_dispatcher_gets_metadata_through_every_form(ps: PS) -> None:
    me = actors.self()
    pubsub.subscribe(ps.name, ps.topic)
    pubsub.subscribe(ps.name, ps.topic, metadata="special")

    def both(message: Any, from_pid: Any) -> None:
        received(("custom", None, from_pid, message))
        received(("custom", "special", from_pid, message))

    pubsub.broadcast(ps.name, ps.topic, "broadcast", custom_dispatch)
    both("broadcast", None)
    pubsub.broadcast_from(ps.name, me, ps.topic, "broadcast_from", custom_dispatch)
    both("broadcast_from", me)
    pubsub.local_broadcast(ps.name, ps.topic, "local", custom_dispatch)
    both("local", None)
    pubsub.local_broadcast_from(ps.name, me, ps.topic, "local_from", custom_dispatch)
    both("local_from", me)
    pubsub.direct_broadcast(ps.node, ps.name, ps.topic, "direct", custom_dispatch)
    both("direct", None)
    pubsub.broadcast_or_raise(ps.name, ps.topic, "raise", custom_dispatch)
    both("raise", None)


def test_dispatcher_gets_all_entries_in_one_call(ps: PS) -> None:
    calls: list = []
    dispatcher = collect_dispatches(calls)
    subs = [Subscriber() for _ in range(40)]  # spread over every partition of a pool of 8
    for i, sub in enumerate(subs):
        sub.subscribe(ps, ps.topic, metadata=i)
    expected = sorted(((sub.pid, i) for i, sub in enumerate(subs)), key=lambda e: e[1])
    pubsub.local_broadcast(ps.name, ps.topic, "one", dispatcher)
    assert len(calls) == 1
    entries, from_pid, message = calls[0]
    assert (from_pid, message) == (None, "one")
    assert sorted(entries, key=lambda e: e[1]) == expected
    calls.clear()
    pubsub.broadcast_from(ps.name, subs[0].pid, ps.topic, "two", dispatcher)
    settle(ps)
    assert len(calls) == 1
    assert calls[0][1] == subs[0].pid and len(calls[0][0]) == 40


def test_dispatcher_is_not_called_for_a_topic_without_subscribers(ps: PS) -> None:
    calls: list = []
    dispatcher = collect_dispatches(calls)
    assert pubsub.broadcast(ps.name, "nobody:here", "x", dispatcher) == "ok"
    assert pubsub.local_broadcast(ps.name, "nobody:here", "x", dispatcher) == "ok"
    assert pubsub.broadcast(ps.name, "nobody:here", "x") == "ok"
    settle(ps)
    assert calls == []


def test_duplicate_subscriptions_deliver_twice_and_unsubscribe_drops_both(ps: PS) -> None:
    pubsub.subscribe(ps.name, ps.topic)
    pubsub.subscribe(ps.name, ps.topic, metadata="again")
    pubsub.subscribe(ps.name, "other")
    me = actors.self()
    assert sorted(pubsub.subscribers(ps.name, ps.topic), key=repr) == sorted([(me, None), (me, "again")], key=repr)
    pubsub.broadcast(ps.name, ps.topic, "twice")
    received("twice")
    received("twice")
    pubsub.unsubscribe(ps.name, ps.topic)
    assert pubsub.subscribers(ps.name, ps.topic) == []
    assert pubsub.subscribers(ps.name, "other") == [(me, None)]
    pubsub.broadcast(ps.name, ps.topic, "gone")
    settle(ps)
    assert nothing_received("twice") and nothing_received("gone")


def test_subscriptions_vanish_when_the_subscriber_dies(ps: PS) -> None:
    survivor = Subscriber()
    survivor.subscribe(ps, ps.topic)
    doomed = [Subscriber() for _ in range(10)]
    for sub in doomed:
        sub.subscribe(ps, ps.topic)
        sub.subscribe(ps, "second:topic", metadata="x")
    assert len(pubsub.subscribers(ps.name, ps.topic)) == 11
    for sub in doomed:
        sub.kill()
    # gone as they die: nothing to wait for
    assert pubsub.subscribers(ps.name, ps.topic) == [(survivor.pid, None)]
    assert pubsub.subscribers(ps.name, "second:topic") == []
    assert pubsub.topics(ps.name) == [ps.topic]


def test_a_process_that_exits_normally_is_removed_too(ps: PS) -> None:
    sub = Subscriber()
    sub.subscribe(ps, ps.topic)
    mref = actors.monitor(sub.pid)
    actors.send(sub.pid, "$stop")
    received(lambda m: m.__class__ is tuple and m[:2] == ("DOWN", mref))
    assert pubsub.subscribers(ps.name, ps.topic) == []


def test_messages_are_any_object_and_arrive_in_order(ps: PS) -> None:
    pubsub.subscribe(ps.name, ps.topic)
    message = Broadcast(topic=ps.topic, event="new_msg", payload={"body": "hi", "n": [1, 2]})
    pubsub.broadcast(ps.name, ps.topic, message)
    assert received(lambda m: isinstance(m, Broadcast)) == message
    for i in range(50):
        pubsub.broadcast(ps.name, ps.topic, ("seq", i))
    got_order = [received(lambda m: m.__class__ is tuple and m[0] == "seq")[1] for _ in range(50)]
    assert got_order == list(range(50))


def test_unknown_pubsub_name_raises_a_clear_error(ps: PS) -> None:
    calls: list[Callable[[], Any]] = [
        lambda: pubsub.subscribe("no.such.PubSub", "t"),
        lambda: pubsub.unsubscribe("no.such.PubSub", "t"),
        lambda: pubsub.broadcast("no.such.PubSub", "t", 1),
        lambda: pubsub.broadcast_or_raise("no.such.PubSub", "t", 1),
        lambda: pubsub.broadcast_from("no.such.PubSub", actors.self(), "t", 1),
        lambda: pubsub.local_broadcast("no.such.PubSub", "t", 1),
        lambda: pubsub.local_broadcast_from("no.such.PubSub", actors.self(), "t", 1),
        lambda: pubsub.direct_broadcast(ps.node, "no.such.PubSub", "t", 1),
        lambda: pubsub.node_name("no.such.PubSub"),
        lambda: pubsub.subscribers("no.such.PubSub", "t"),
    ]
    for call in calls:
        with pytest.raises(UnknownPubSubError, match="no.such.PubSub") as info:
            call()
        assert isinstance(info.value, LookupError) and info.value.pubsub == "no.such.PubSub"


def test_a_stopped_pubsub_is_unknown(ps: PS) -> None:
    pubsub.subscribe(ps.name, ps.topic)
    actors.unlink(ps.sup)
    actors.stop(ps.sup)
    with pytest.raises(UnknownPubSubError, match=ps.name):
        pubsub.broadcast(ps.name, ps.topic, "x")
    with pytest.raises(UnknownPubSubError):
        pubsub.subscribe(ps.name, ps.topic)


def test_a_killed_pubsub_is_unknown(ps: PS) -> None:
    actors.unlink(ps.sup)
    actors.exit(ps.sup, "kill")
    with pytest.raises(UnknownPubSubError, match=ps.name):
        pubsub.local_broadcast(ps.name, ps.topic, "x")


def test_bad_arguments_raise_type_errors_naming_them(ps: PS) -> None:
    me = actors.self()
    cases: list[tuple[str, Callable[[], Any]]] = [
        ("topic", lambda: pubsub.subscribe(ps.name, 42)),
        ("topic", lambda: pubsub.subscribe(ps.name, b"bytes")),
        ("topic", lambda: pubsub.unsubscribe(ps.name, None)),
        ("topic", lambda: pubsub.broadcast(ps.name, ("t",), 1)),
        ("topic", lambda: pubsub.broadcast_from(ps.name, me, 1, 1)),
        ("topic", lambda: pubsub.local_broadcast(ps.name, 1, 1)),
        ("topic", lambda: pubsub.local_broadcast_from(ps.name, me, 1, 1)),
        ("topic", lambda: pubsub.direct_broadcast(ps.node, ps.name, 1, 1)),
        ("from_pid", lambda: pubsub.broadcast_from(ps.name, "me", ps.topic, 1)),
        ("from_pid", lambda: pubsub.local_broadcast_from(ps.name, None, ps.topic, 1)),
        ("dispatcher", lambda: pubsub.broadcast(ps.name, ps.topic, 1, "not callable")),
        ("dispatcher", lambda: pubsub.local_broadcast(ps.name, ps.topic, 1, 42)),
        ("node", lambda: pubsub.direct_broadcast(42, ps.name, ps.topic, 1)),
        ("pubsub", lambda: pubsub.subscribe(42, ps.topic)),
        ("pubsub", lambda: pubsub.broadcast(None, ps.topic, 1)),
    ]
    for argument, call in cases:
        with pytest.raises(TypeError, match=argument):
            call()
    assert pubsub.subscribers(ps.name, ps.topic) == []


def test_many_subscribers_across_partitions(ps: PS) -> None:
    subs = [Subscriber() for _ in range(100)]
    for sub in subs:
        sub.subscribe(ps, ps.topic)
    stats = pubsub.statistics(ps.name)
    assert stats["pool_size"] == ps.pool_size == len(stats["partitions"])
    assert stats["subscriptions"] == stats["subscribers"] == 100
    assert sum(row["subscribers"] for row in stats["partitions"]) == 100
    if ps.pool_size > 1:
        assert sum(1 for row in stats["partitions"] if row["subscribers"]) > 1
    pubsub.broadcast(ps.name, ps.topic, "all")
    for sub in subs:
        received(got(sub.pid, "all"))


__all__ = [n for n in globals() if n.startswith("test_")] + [
    "PS",
    "Subscriber",
    "collect_dispatches",
    "custom_dispatch",
    "got",
    "nothing_received",
    "pool_size",
    "ps",
    "received",
    "settle",
    "stop_subscribers",
]
