"""PubSub: topics, subscribers and broadcasts across processes and nodes (phoenix_pubsub 2.x).

Put a PubSub in your supervision tree, before anything that subscribes::

    from supervision import Application
    from transport.pubsub import PubSub

    app = Application([
        PubSub.child_spec(name="MyApp.PubSub"),
        ...                                    # endpoint, workers that subscribe
    ])

Options, all given to ``PubSub.child_spec`` (or ``PubSub.start_link``), with defaults:

``name`` (required)
    The name every function below takes; the PubSub's supervisor is registered under it.
``pool_size=1``
    Number of partitions (each with its shard process), as phoenix_pubsub's default.
    A subscriber's partition is ``hash(pid) % pool_size``.
``adapter=LocalAdapter``
    How broadcasts reach other nodes; see :class:`Adapter`. :class:`LocalAdapter` serves
    one OS process; :class:`RedisAdapter` many, on one Redis (docs/redis.md).
``**adapter_opts``
    Everything else goes to the adapter's ``child_spec``. :class:`LocalAdapter` takes
    ``node_name`` (default :func:`default_node_name`); an unknown option is a TypeError.

Then, from any process::

    from transport import pubsub

    pubsub.subscribe("MyApp.PubSub", "user:123")
    pubsub.broadcast("MyApp.PubSub", "user:123", ("user_update", {"id": 123}))
    actors.receive(timeout=1)                  # -> ("user_update", {"id": 123})

Functions (``pubsub`` is the PubSub's name; messages are any Python object):

* ``subscribe(pubsub, topic, metadata=None)`` / ``unsubscribe(pubsub, topic)`` — for the
  calling process. Subscribing twice makes two subscriptions (two deliveries);
  unsubscribing drops all of them. Subscriptions end when the process dies.
* ``broadcast(pubsub, topic, message, dispatcher=None)`` — every node;
  ``broadcast_from(pubsub, from_pid, topic, message, dispatcher=None)`` — every node,
  skipping ``from_pid``; ``local_broadcast`` / ``local_broadcast_from`` — this node only;
  ``direct_broadcast(node, pubsub, topic, message, dispatcher=None)`` — one node.
* Two forms where failure is common: the broadcasts that go through the adapter return
  ``'ok'`` or ``('error', reason)``; ``broadcast_or_raise``, ``broadcast_from_or_raise``
  and ``direct_broadcast_or_raise`` (Elixir's ``broadcast!`` and friends) return None or
  raise :class:`BroadcastError`. ``local_broadcast*`` cannot fail and return ``'ok'``.
  This node's subscribers get a ``broadcast``/``broadcast_from`` before the adapter
  sends it on, even when the adapter then fails (Redis down): an error means other
  nodes may have missed it.
* ``node_name(pubsub)``; and, for tools, ``subscribers(pubsub, topic)``,
  ``topics(pubsub)``, ``shards(pubsub)``, ``statistics(pubsub)``.

A dispatcher (``dispatch(entries, from_pid, message)``) delivers one broadcast to all of
this node's subscribers of the topic in one call; the default, :func:`dispatch`, sends the
message to each pid but ``from_pid``. Phoenix channels pass their own (the fastlane),
which reads the ``metadata`` given at subscribe time. See :mod:`._adapter` for both
contracts and :mod:`._errors` for the exception tree.

How it is built. The subscription table is plain data (:class:`SubscriptionTable`, one
per partition), read and written in the caller's greenlet with no mailbox hop, as
Elixir's ``Registry`` uses ETS. Each partition has a shard process that monitors its
subscribers and removes a dead one's subscriptions. The table belongs to the running
PubSub, not to a shard: a killed shard is restarted (one_for_one) and re-monitors every
subscriber in its table, so no subscription is lost. If the whole PubSub stops or
exceeds its restart intensity, its table goes with it and a restarted PubSub starts
empty, as Elixir's Registry does — but here subscribers are not linked to it and are not
told, so put the PubSub before its subscribers under a ``rest_for_one`` supervisor if
they must resubscribe.
"""

from ._adapter import Adapter, BroadcastResult, Dispatcher, default_node_name
from ._api import (
    broadcast,
    broadcast_from,
    broadcast_from_or_raise,
    broadcast_or_raise,
    direct_broadcast,
    direct_broadcast_or_raise,
    dispatch,
    local_broadcast,
    local_broadcast_from,
    node_name,
    shards,
    statistics,
    subscribe,
    subscribers,
    topics,
    unsubscribe,
)
from ._errors import BroadcastError, PubSubError, UnknownPubSubError
from ._local import LocalAdapter
from ._pubsub import PubSub
from ._redis import RedisAdapter
from ._table import SubscriptionTable

__all__ = [
    "Adapter",
    "BroadcastError",
    "BroadcastResult",
    "Dispatcher",
    "LocalAdapter",
    "PubSub",
    "PubSubError",
    "RedisAdapter",
    "SubscriptionTable",
    "UnknownPubSubError",
    "broadcast",
    "broadcast_from",
    "broadcast_from_or_raise",
    "broadcast_or_raise",
    "default_node_name",
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
