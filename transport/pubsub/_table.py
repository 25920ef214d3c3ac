"""The subscription table of one PubSub partition: a plain data structure, no process.

It plays the part of the ETS tables behind Elixir's ``Registry`` (``keys: :duplicate``):
the caller's greenlet reads and writes it directly in ``subscribe``, ``unsubscribe`` and
``broadcast``, and the partition's shard process only removes the entries of subscribers
that died. That is safe without locks because greenlets switch only at blocking points
and no method here blocks.

Two indexes are kept in step:

* by topic: ``topic -> {entry_key: (subscriber, metadata)}``. A broadcast takes the
  values of one dict, already in the ``(subscriber, metadata)`` shape a dispatcher wants,
  in subscription order.
* by subscriber: ``subscriber -> {topic: [entry_key, ...]}``, so unsubscribing and
  removing a dead subscriber cost what that subscriber holds, not what the topic holds
  (10,000 subscribers of one topic dying is linear, not quadratic).

A subscriber may hold several entries for one topic (duplicate subscriptions deliver
duplicate messages, as in phoenix_pubsub); ``remove`` drops all of them at once.

Subscribers are only used as dict keys here, so the table is tested with plain values.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Any

__all__ = ["SubscriptionTable"]

_EMPTY: tuple = ()


class SubscriptionTable:
    """Subscriptions of one partition, indexed by topic and by subscriber."""

    __slots__ = ("_by_subscriber", "_by_topic", "_next_key", "_size")

    def __init__(self) -> None:
        self._by_topic: dict[str, dict[int, tuple[Any, Any]]] = {}
        self._by_subscriber: dict[Hashable, dict[str, list[int]]] = {}
        self._next_key = 0
        self._size = 0

    # -- writes ---------------------------------------------------------------------------

    def add(self, subscriber: Hashable, topic: str, metadata: Any = None) -> bool:
        """Add one subscription; True if ``subscriber`` had none in this table before."""
        key = self._next_key
        self._next_key = key + 1
        entries = self._by_topic.get(topic)
        if entries is None:
            entries = self._by_topic[topic] = {}
        entries[key] = (subscriber, metadata)
        held = self._by_subscriber.get(subscriber)
        first = held is None
        if first:
            held = self._by_subscriber[subscriber] = {}
        keys = held.get(topic)  # type: ignore[union-attr]
        if keys is None:
            held[topic] = [key]  # type: ignore[index]
        else:
            keys.append(key)
        self._size += 1
        return first

    def remove(self, subscriber: Hashable, topic: str) -> bool:
        """Drop every subscription of ``subscriber`` to ``topic``.

        True if that removed the subscriber's last subscription in this table (so nobody
        needs to watch it any more); False if it still holds others, or held none to
        ``topic``.
        """
        held = self._by_subscriber.get(subscriber)
        if held is None:
            return False
        keys = held.pop(topic, None)
        if keys is None:
            return False
        self._drop_keys(topic, keys)
        if held:
            return False
        del self._by_subscriber[subscriber]
        return True

    def remove_all(self, subscriber: Hashable) -> int:
        """Drop every subscription of ``subscriber``; how many there were."""
        held = self._by_subscriber.pop(subscriber, None)
        if held is None:
            return 0
        removed = 0
        for topic, keys in held.items():
            self._drop_keys(topic, keys)
            removed += len(keys)
        return removed

    def _drop_keys(self, topic: str, keys: list[int]) -> None:
        entries = self._by_topic[topic]
        for key in keys:
            del entries[key]
        if not entries:
            del self._by_topic[topic]
        self._size -= len(keys)

    # -- reads ----------------------------------------------------------------------------

    def entries(self, topic: str) -> Iterable[tuple[Any, Any]]:
        """A live view of ``topic``'s ``(subscriber, metadata)`` pairs (empty if none).

        The view changes as the table does; copy it before anything that may block.
        """
        entries = self._by_topic.get(topic)
        return entries.values() if entries is not None else _EMPTY

    def subscribers(self, topic: str) -> list[tuple[Any, Any]]:
        """A copy of ``topic``'s ``(subscriber, metadata)`` pairs, in subscription order."""
        return list(self.entries(topic))

    def topics_of(self, subscriber: Hashable) -> list[str]:
        """The distinct topics ``subscriber`` is subscribed to here."""
        held = self._by_subscriber.get(subscriber)
        return list(held) if held is not None else []

    def holds(self, subscriber: Hashable) -> bool:
        """Whether ``subscriber`` has at least one subscription in this table."""
        return subscriber in self._by_subscriber

    def all_subscribers(self) -> list[Any]:
        """Every distinct subscriber with a subscription here."""
        return list(self._by_subscriber)

    def topics(self) -> list[str]:
        """Every topic with at least one subscription here."""
        return list(self._by_topic)

    def count(self, topic: str) -> int:
        """The number of subscriptions (duplicates included) to ``topic``."""
        entries = self._by_topic.get(topic)
        return len(entries) if entries is not None else 0

    def __len__(self) -> int:
        """The number of subscriptions, duplicates included."""
        return self._size

    def statistics(self) -> dict[str, int]:
        """Sizes: ``subscriptions`` (duplicates included), ``subscribers``, ``topics``."""
        return {
            "subscriptions": self._size,
            "subscribers": len(self._by_subscriber),
            "topics": len(self._by_topic),
        }

    def __repr__(self) -> str:
        s = self.statistics()
        return f"<SubscriptionTable {s['subscriptions']} subscriptions, {s['subscribers']} subscribers, {s['topics']} topics>"
