"""The PubSub functions: subscribe, unsubscribe, the broadcasts, and introspection.

Every function takes the PubSub's name and runs in the caller's greenlet. Subscribing
writes the caller's partition of the subscription table directly and, the first time a
process subscribes in that partition, gives the process an exit hook that drops its rows
there the moment it dies (the way ETS drops a dead owner's rows); a broadcast reads the
topic's entries from every partition and hands them to the dispatcher in one call. No
call waits on a process's mailbox, and no process is woken to clean up after another.
"""

from __future__ import annotations

from typing import Any

import actors
from actors import Pid
from actors import _runtime as rt

from ._adapter import Dispatcher
from ._errors import BroadcastError, UnknownPubSubError
from ._table import SubscriptionTable

__all__ = [
    "broadcast",
    "broadcast_from",
    "broadcast_from_or_raise",
    "broadcast_or_raise",
    "direct_broadcast",
    "direct_broadcast_or_raise",
    "dispatch",
    "local_broadcast",
    "local_broadcast_from",
    "node_name",
    "shards",
    "statistics",
    "subscribe",
    "subscribers",
    "topics",
    "unsubscribe",
]

OK = "ok"


class _Instance:
    """One running PubSub: its adapter, its partitions, and who owns each partition.

    Made by the PubSub supervisor's ``init`` and registered under the PubSub's name; a
    restart of the whole PubSub makes a new one (with empty tables). ``owners[i]`` is
    the shard standing for ``tables[i]`` in the tree (None before the first one starts).
    """

    __slots__ = ("adapter", "adapter_name", "name", "owners", "pool_size", "sup", "tables")

    def __init__(self, name: str, adapter: Any, adapter_name: str, pool_size: int, sup: Pid) -> None:
        self.name = name
        self.adapter = adapter
        self.adapter_name = adapter_name
        self.pool_size = pool_size
        self.tables = tuple(SubscriptionTable() for _ in range(pool_size))
        self.owners: list[Pid | None] = [None] * pool_size
        self.sup = sup

    def __repr__(self) -> str:
        return f"<PubSub {self.name!r} pool_size={self.pool_size} sup={self.sup}>"


# name -> the running instance. Entries are added by the PubSub supervisor's init and
# removed when it terminates; one left by a killed supervisor is noticed (its pid is
# dead) and dropped at the next lookup.
_instances: dict[str, _Instance] = {}


def _lookup(pubsub: Any, function: str) -> _Instance:
    if not isinstance(pubsub, str):
        raise TypeError(f"{function}: pubsub must be the PubSub's name (a str), got {type(pubsub).__name__}")
    inst = _instances.get(pubsub)
    if inst is None:
        raise UnknownPubSubError(pubsub, function)
    if not actors.is_alive(inst.sup):
        if _instances.get(pubsub) is inst:
            del _instances[pubsub]
        raise UnknownPubSubError(pubsub, function)
    return inst


def _check_topic(topic: Any, function: str) -> None:
    if not isinstance(topic, str):
        raise TypeError(f"{function}: topic must be a str, got {type(topic).__name__}")


def _check_dispatcher(dispatcher: Any, function: str) -> Dispatcher:
    if dispatcher is None:
        return dispatch
    if not callable(dispatcher):
        raise TypeError(
            f"{function}: dispatcher must be callable as dispatch(entries, from_pid, message), got {type(dispatcher).__name__}"
        )
    return dispatcher


def _check_from(from_pid: Any, function: str) -> None:
    if from_pid.__class__ is not Pid:
        raise TypeError(f"{function}: from_pid must be a Pid, got {type(from_pid).__name__}")


# ----------------------------------------------------------------------------------------
# Subscriptions
# ----------------------------------------------------------------------------------------


def subscribe(pubsub: str, topic: str, metadata: Any = None) -> None:
    """Subscribe the calling process to ``topic`` on the PubSub named ``pubsub``.

    ``metadata`` is kept with the subscription and given to dispatchers (Phoenix channels
    put their fastlane there). Subscribing twice to one topic makes two subscriptions, and
    the process gets each broadcast twice; ``unsubscribe`` drops both. Subscriptions end
    when the process dies.

    Raises :class:`UnknownPubSubError` if no PubSub runs under that name and ``TypeError``
    for a topic that is not a str.
    """
    inst = _lookup(pubsub, "subscribe")
    _check_topic(topic, "subscribe")
    pid = actors.self()
    table = inst.tables[hash(pid) % inst.pool_size]
    if table.add(pid, topic, metadata):
        rt.add_exit_hook(table, table.remove_all)


def unsubscribe(pubsub: str, topic: str) -> None:
    """Drop every subscription of the calling process to ``topic`` (none: no-op)."""
    inst = _lookup(pubsub, "unsubscribe")
    _check_topic(topic, "unsubscribe")
    pid = actors.self()
    table = inst.tables[hash(pid) % inst.pool_size]
    if table.remove(pid, topic):
        rt.remove_exit_hook(table)


# ----------------------------------------------------------------------------------------
# Broadcasts
# ----------------------------------------------------------------------------------------


def dispatch(entries: list[tuple[Pid, Any]], from_pid: Pid | None, message: Any) -> None:
    """The default dispatcher: send ``message`` to every subscriber except ``from_pid``.

    A process subscribed twice gets it twice.
    """
    send = actors.send
    if from_pid is None:
        for pid, _ in entries:
            send(pid, message)
    else:
        for pid, _ in entries:
            if pid != from_pid:
                send(pid, message)


def _dispatch_local(inst: _Instance, from_pid: Pid | None, topic: str, message: Any, dispatcher: Dispatcher) -> None:
    # One snapshot list of the topic's entries across all partitions, then one call. The
    # copy (a few ns per entry) lets the dispatcher block or keep the list while the
    # table changes under it, as Registry.dispatch's ETS lookup does.
    tables = inst.tables
    if len(tables) == 1:
        view = tables[0].entries(topic)
        if not view:
            return
        entries = list(view)
    else:
        entries = []
        for table in tables:
            view = table.entries(topic)
            if view:
                entries.extend(view)
        if not entries:
            return
    dispatcher(entries, from_pid, message)


def broadcast(pubsub: str, topic: str, message: Any, dispatcher: Dispatcher | None = None) -> Any:
    """Broadcast ``message`` to every subscriber of ``topic`` on every node.

    This node's subscribers get it first, through ``dispatcher`` (default
    :func:`dispatch`), whatever happens to the other nodes: local delivery never waits
    on, or depends on, the adapter. Then the adapter sends it to the other nodes.
    Returns ``'ok'``, or the adapter's ``('error', reason)``: this node's subscribers
    have it, other nodes may not. :func:`broadcast_or_raise` raises instead.
    """
    inst = _lookup(pubsub, "broadcast")
    _check_topic(topic, "broadcast")
    dispatcher = _check_dispatcher(dispatcher, "broadcast")
    _dispatch_local(inst, None, topic, message, dispatcher)
    return inst.adapter.broadcast(inst.adapter_name, topic, message, dispatcher)


def broadcast_from(pubsub: str, from_pid: Pid, topic: str, message: Any, dispatcher: Dispatcher | None = None) -> Any:
    """As :func:`broadcast`, telling the dispatcher to skip ``from_pid`` on this node.

    The default dispatcher sends to every subscriber but ``from_pid`` (usually
    ``actors.self()``: "tell everyone but me").
    """
    inst = _lookup(pubsub, "broadcast_from")
    _check_from(from_pid, "broadcast_from")
    _check_topic(topic, "broadcast_from")
    dispatcher = _check_dispatcher(dispatcher, "broadcast_from")
    _dispatch_local(inst, from_pid, topic, message, dispatcher)
    return inst.adapter.broadcast(inst.adapter_name, topic, message, dispatcher)


def local_broadcast(pubsub: str, topic: str, message: Any, dispatcher: Dispatcher | None = None) -> str:
    """Broadcast to this node's subscribers only. Always ``'ok'``.

    Adapters call this on the receiving node to deliver a broadcast from another node.
    """
    inst = _lookup(pubsub, "local_broadcast")
    _check_topic(topic, "local_broadcast")
    _dispatch_local(inst, None, topic, message, _check_dispatcher(dispatcher, "local_broadcast"))
    return OK


def local_broadcast_from(pubsub: str, from_pid: Pid, topic: str, message: Any, dispatcher: Dispatcher | None = None) -> str:
    """As :func:`local_broadcast`, skipping ``from_pid``. Always ``'ok'``."""
    inst = _lookup(pubsub, "local_broadcast_from")
    _check_from(from_pid, "local_broadcast_from")
    _check_topic(topic, "local_broadcast_from")
    _dispatch_local(inst, from_pid, topic, message, _check_dispatcher(dispatcher, "local_broadcast_from"))
    return OK


def direct_broadcast(node: str, pubsub: str, topic: str, message: Any, dispatcher: Dispatcher | None = None) -> Any:
    """Broadcast to the subscribers on the node named ``node`` only (it may be this one).

    The adapter carries it, even to this node, so prefer :func:`local_broadcast` for
    this node. Returns ``'ok'`` or the adapter's ``('error', reason)``: the local adapter
    answers ``('error', ('nodedown', node))`` for any node but its own.
    """
    inst = _lookup(pubsub, "direct_broadcast")
    if not isinstance(node, str):
        raise TypeError(f"direct_broadcast: node must be a node name (a str), got {type(node).__name__}")
    _check_topic(topic, "direct_broadcast")
    dispatcher = _check_dispatcher(dispatcher, "direct_broadcast")
    return inst.adapter.direct_broadcast(inst.adapter_name, node, topic, message, dispatcher)


def _raise_unless_ok(result: Any, function: str) -> None:
    if result == OK:
        return
    if result.__class__ is tuple and len(result) == 2 and result[0] == "error":
        raise BroadcastError(result[1], function)
    raise BroadcastError(("bad_adapter_result", result), function)


def broadcast_or_raise(pubsub: str, topic: str, message: Any, dispatcher: Dispatcher | None = None) -> None:
    """:func:`broadcast` that raises :class:`BroadcastError` instead of returning an error."""
    _raise_unless_ok(broadcast(pubsub, topic, message, dispatcher), "broadcast")


def broadcast_from_or_raise(pubsub: str, from_pid: Pid, topic: str, message: Any, dispatcher: Dispatcher | None = None) -> None:
    """:func:`broadcast_from` that raises :class:`BroadcastError` instead of returning an error."""
    _raise_unless_ok(broadcast_from(pubsub, from_pid, topic, message, dispatcher), "broadcast_from")


def direct_broadcast_or_raise(node: str, pubsub: str, topic: str, message: Any, dispatcher: Dispatcher | None = None) -> None:
    """:func:`direct_broadcast` that raises :class:`BroadcastError` instead of returning an error."""
    _raise_unless_ok(direct_broadcast(node, pubsub, topic, message, dispatcher), "direct_broadcast")


def node_name(pubsub: str) -> str:
    """The name of this node, as the PubSub's adapter reports it."""
    inst = _lookup(pubsub, "node_name")
    return inst.adapter.node_name(inst.adapter_name)


# ----------------------------------------------------------------------------------------
# Introspection (what the debug shell shows: topics and their subscribers)
# ----------------------------------------------------------------------------------------


def subscribers(pubsub: str, topic: str) -> list[tuple[Pid, Any]]:
    """This node's ``(pid, metadata)`` subscriptions to ``topic``, duplicates included.

    Ordered by partition, then by subscription time within a partition.
    """
    inst = _lookup(pubsub, "subscribers")
    _check_topic(topic, "subscribers")
    return [entry for table in inst.tables for entry in table.entries(topic)]


def topics(pubsub: str) -> list[str]:
    """Every topic with at least one subscriber on this node, sorted."""
    inst = _lookup(pubsub, "topics")
    return sorted({topic for table in inst.tables for topic in table.topics()})


def shards(pubsub: str) -> list[Pid | None]:
    """The shard process of each partition, by partition index (None while restarting).

    ``actors.call(pid, "sync")`` returns ``'ok'`` once the shard has handled every
    message already delivered to it: after it, the table no longer holds the
    subscriptions of a process that died before the call.
    """
    inst = _lookup(pubsub, "shards")
    return [owner if owner is not None and actors.is_alive(owner) else None for owner in inst.owners]


def statistics(pubsub: str) -> dict[str, Any]:
    """Sizes of the PubSub: totals and one row per partition.

    Keys: ``name``, ``adapter``, ``node_name``, ``pool_size``, ``subscriptions``
    (duplicates included), ``subscribers`` (distinct processes), ``topics`` (distinct),
    ``partitions``: a list of ``{'index', 'shard', 'subscriptions', 'subscribers',
    'topics'}``, and ``adapter_statistics``: what the adapter's optional
    ``statistics(adapter_name)`` returns (the Redis adapter's counters and nodes), else None.
    """
    inst = _lookup(pubsub, "statistics")
    owners = shards(pubsub)
    rows = [{"index": i, "shard": owners[i], **table.statistics()} for i, table in enumerate(inst.tables)]
    adapter_stats = getattr(inst.adapter, "statistics", None)
    return {
        "name": inst.name,
        "adapter": getattr(inst.adapter, "__qualname__", None) or getattr(inst.adapter, "__name__", repr(inst.adapter)),
        "node_name": inst.adapter.node_name(inst.adapter_name),
        "pool_size": inst.pool_size,
        "subscriptions": sum(r["subscriptions"] for r in rows),
        "subscribers": sum(r["subscribers"] for r in rows),
        "topics": len({t for table in inst.tables for t in table.topics()}),
        "partitions": rows,
        "adapter_statistics": adapter_stats(inst.adapter_name) if callable(adapter_stats) else None,
    }
