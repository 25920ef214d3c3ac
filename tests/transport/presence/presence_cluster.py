"""Several greenphx "nodes" in one OS process, for the tracker's replication tests.

A node is a PubSub (its own name and node name) plus a Presence, under one supervisor.
:class:`RelayAdapter` connects the PubSubs of one ``network``: a broadcast on one node
is delivered to every other node's PubSub, a direct broadcast to the named one, and every
tracker message crosses the Erlang term codec on its way (``term_to_binary`` then
``binary_to_term``), as it would over Redis. A test can cut a node off (its messages,
both ways, are dropped: what the others see of a node killed with SIGKILL or behind a
partition) and drop messages by a predicate (lost heartbeats).

With ``redis_url`` the nodes' PubSubs use the real Redis adapter instead (one Redis
channel per cluster): the same tests then run over a real redis-server, and every
tracker message crosses Redis and the phoenix_pubsub_redis wire format. Cutting and
dropping messages is only possible on the relay.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from typing import Any

import actors
import supervision
from transport.presence import Presence
from transport.pubsub import PubSub, local_broadcast
from transport.terms import binary_to_term, term_to_binary

_networks = itertools.count(1)

# network -> {node_name: pubsub name}
_nodes: dict[str, dict[str, str]] = {}
# adapter_name -> (network, node_name)
_adapters: dict[str, tuple[str, str]] = {}
# network -> set of cut-off node names
_cut: dict[str, set[str]] = {}
# network -> predicate(from_node, to_node, topic, message) -> True to drop
_drops: dict[str, Callable[[str, str, str, Any], bool]] = {}
# network -> count of tracker messages relayed
relayed: dict[str, int] = {}


def _start(adapter_name: str, network: str, node: str, pubsub: str) -> None:
    _adapters[adapter_name] = (network, node)
    _nodes.setdefault(network, {})[node] = pubsub


def _wire(topic: str, message: Any) -> Any:
    if topic.startswith("phx_presence:"):
        return binary_to_term(term_to_binary(message))
    return message


class RelayAdapter:
    """A PubSub adapter that relays between the PubSubs of one in-process network."""

    @staticmethod
    def child_spec(*, name: str, adapter_name: str, pool_size: int, node_name: str, network: str) -> dict:
        return {"id": adapter_name, "start": (_start, (adapter_name, network, node_name, name))}

    @staticmethod
    def node_name(adapter_name: str) -> str:
        return _adapters[adapter_name][1]

    @staticmethod
    def _deliver(network: str, me: str, node: str, topic: str, message: Any, dispatcher: Any) -> None:
        cut = _cut.get(network, ())
        if me in cut or node in cut:
            return
        drop = _drops.get(network)
        if drop is not None and drop(me, node, topic, message):
            return
        pubsub = _nodes[network].get(node)
        if pubsub is None:
            return
        if topic.startswith("phx_presence:"):
            relayed[network] = relayed.get(network, 0) + 1
        try:
            local_broadcast(pubsub, topic, _wire(topic, message), dispatcher)
        except Exception:  # noqa: BLE001 - that node is stopped: as a lost message
            pass

    @staticmethod
    def broadcast(adapter_name: str, topic: str, message: Any, dispatcher: Any) -> Any:
        network, me = _adapters[adapter_name]
        for node in list(_nodes[network]):
            if node != me:
                RelayAdapter._deliver(network, me, node, topic, message, dispatcher)
        return "ok"

    @staticmethod
    def direct_broadcast(adapter_name: str, node_name: str, topic: str, message: Any, dispatcher: Any) -> Any:
        network, me = _adapters[adapter_name]
        if node_name not in _nodes[network]:
            return ("error", ("nodedown", node_name))
        RelayAdapter._deliver(network, me, node_name, topic, message, dispatcher)
        return "ok"


class Node:
    """One node: PubSub ``<prefix>.PubSub`` and Presence ``<prefix>.Presence``."""

    def __init__(self, cluster: Cluster, index: int, presence_cls: type[Presence], options: dict) -> None:
        self.cluster = cluster
        self.node_name = f"node{index}@{cluster.network}"
        prefix = f"{cluster.network}.n{index}"
        self.pubsub = f"{prefix}.PubSub"
        self.presence = presence_cls(
            f"{prefix}.Presence", pubsub_server=self.pubsub, namespace=f"{cluster.network}.Presence", **options
        )
        if cluster.redis_url is None:
            spec = PubSub.child_spec(name=self.pubsub, adapter=RelayAdapter, node_name=self.node_name, network=cluster.network)
        else:
            from transport.pubsub import RedisAdapter

            spec = PubSub.child_spec(
                name=self.pubsub,
                adapter=RedisAdapter,
                url=cluster.redis_url,
                node_name=self.node_name,
                channel=f"phx:presence-tests:{cluster.network}",
                **cluster.redis_options,
            )
        self.sup = supervision.start_link([spec, self.presence.child_spec()], strategy="rest_for_one")

    @property
    def tracker(self):
        return self.presence.tracker

    def tracker_sup(self) -> actors.Pid:
        return actors.whereis(self.presence.name)

    def heartbeat_now(self) -> None:
        for shard in self.tracker.shards():
            actors.call(shard, "heartbeat_now")

    def stop(self) -> None:
        """Stop gracefully (the tree in reverse order: the tracker says goodbye first)."""
        if actors.is_alive(self.sup):
            actors.unlink(self.sup)
            ref = actors.monitor(self.sup)
            actors.exit(self.sup, "shutdown")
            actors.receive(lambda m: m.__class__ is tuple and m[:2] == ("DOWN", ref), timeout=10)
        _nodes.get(self.cluster.network, {}).pop(self.node_name, None)

    def kill_tracker(self) -> None:
        """Kill this node outright, as SIGKILL would: no goodbye; the node goes silent.

        The tracker's supervisor is killed first (its shards then stop with ``killed``,
        which is not a graceful stop), and the node's root at once, before it can restart
        the tracker. Killing only the root would not do: the tracker's supervisor, told
        of its parent's death, would shut its shards down with ``shutdown``, the graceful
        goodbye, as OTP's supervisors do.
        """
        tracker = self.tracker_sup()
        actors.unlink(self.sup)
        ref = actors.monitor(self.sup)
        if tracker is not None:
            actors.exit(tracker, "kill")
        actors.exit(self.sup, "kill")
        actors.receive(lambda m: m.__class__ is tuple and m[:2] == ("DOWN", ref), timeout=10)
        _nodes.get(self.cluster.network, {}).pop(self.node_name, None)


class Cluster:
    """``n`` nodes on one relay network; ``options`` go to every Presence."""

    def __init__(
        self,
        presence_cls: type[Presence] = Presence,
        redis_url: str | None = None,
        redis_options: dict | None = None,
        **options: Any,
    ) -> None:
        self.network = f"net{next(_networks)}"
        self.redis_url = redis_url
        # Quick node detection for tests; the bench passes {} (the adapter's defaults).
        self.redis_options = {"heartbeat_interval": 0.2, "node_timeout": 1.0} if redis_options is None else redis_options
        self.presence_cls = presence_cls
        self.options = options
        self.nodes: list[Node] = []
        _nodes[self.network] = {}

    def add(self, count: int = 1) -> list[Node]:
        new = [Node(self, len(self.nodes) + i, self.presence_cls, self.options) for i in range(count)]
        self.nodes.extend(new)
        return new

    def cut(self, node: Node) -> None:
        assert self.redis_url is None, "only the relay can cut a node off"
        _cut.setdefault(self.network, set()).add(node.node_name)

    def heal(self, node: Node) -> None:
        _cut.get(self.network, set()).discard(node.node_name)

    def drop(self, predicate: Callable[[str, str, str, Any], bool] | None) -> None:
        assert self.redis_url is None, "only the relay can drop messages"
        if predicate is None:
            _drops.pop(self.network, None)
        else:
            _drops[self.network] = predicate

    def relayed(self) -> int:
        return relayed.get(self.network, 0)

    def stop(self) -> None:
        for node in self.nodes:
            try:
                node.stop()
            except Exception:  # noqa: BLE001 - best effort at teardown
                pass
        _nodes.pop(self.network, None)
        _cut.pop(self.network, None)
        _drops.pop(self.network, None)


def keys_on(node: Node, topic: str) -> dict[str, int]:
    """``{key: number of metas}`` of ``topic`` as ``node`` lists it."""
    return {k: len(v["metas"]) for k, v in node.presence.list(topic).items()}


def wait_until(condition: Callable[[], bool], timeout: float, interval: float = 0.01) -> float:
    """Poll ``condition`` until true; the seconds it took. AssertionError at the deadline."""
    start = time.monotonic()
    deadline = start + timeout
    while True:
        if condition():
            return time.monotonic() - start
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        actors.receive(lambda m: False, timeout=interval, default=None)


def idle_process() -> actors.Pid:
    """A process that only waits (to be tracked, then killed)."""
    return actors.spawn(lambda: actors.receive(lambda m: m == "stop"))
