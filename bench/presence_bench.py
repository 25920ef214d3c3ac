"""Presence at 10,000 presences on one topic: one node, then spread over three nodes.

    python bench/presence_bench.py                       # relay adapter (nodes in this process)
    python bench/presence_bench.py --adapter redis       # a real redis-server on a free port
    python bench/presence_bench.py --n 2000 --json out.json

Not a test: it prints figures. What it measures (``broadcast_period`` 1,500 ms, Phoenix's
default, unless ``--period``):

one node
    time to track N presences (N idle processes, one ``track`` call each, from one
    caller), RSS growth per presence (processes spawned before the baseline, so only the
    tracker's state, monitors and refs count), the ``presence_diff`` broadcasts a local
    subscriber gets (count and mean JSON size: one per track here, as in Phoenix), and
    ``list`` of the topic (N entries).
three nodes
    N presences tracked a third on each node: time until every node lists all N; the
    tracker traffic (heartbeats/transfers: count and bytes in the term format); the diffs a
    subscriber on node 0 gets (count, mean and max size: remote changes come batched, one
    diff per heartbeat merged); then a fourth node joins and the time until it lists all N
    (it learns them by transfer).

The nodes are PubSubs in this one OS process (the relay adapter of
tests/transport/presence/presence_cluster.py, every message through the term codec, or
the Redis adapter), so the three nodes share one CPU core's worth of greenlets: times are
an upper bound of what separate machines would see.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "tests", "transport", "presence"))
sys.path.insert(0, os.path.join(REPO, "bench"))

import ujson  # noqa: E402
from _harness import rss_bytes  # noqa: E402
from presence_cluster import Cluster, RelayAdapter, idle_process  # noqa: E402

import actors  # noqa: E402
from transport import Broadcast, pubsub  # noqa: E402
from transport.terms import term_to_binary  # noqa: E402


class Counter:
    """A subscriber process that counts presence_diff broadcasts and their JSON sizes."""

    def __init__(self, pubsub_name: str, topic: str) -> None:
        me = actors.self()

        def loop() -> None:
            pubsub.subscribe(pubsub_name, topic)
            actors.send(me, "subscribed")
            count, total, biggest, entries = 0, 0, 0, 0
            while True:
                msg = actors.receive()
                if msg == "report":
                    actors.send(me, ("report", count, total, biggest, entries))
                    continue
                if isinstance(msg, Broadcast) and msg.event == "presence_diff":
                    size = len(ujson.dumps(msg.payload))
                    count += 1
                    total += size
                    biggest = max(biggest, size)
                    entries += len(msg.payload["joins"]) + len(msg.payload["leaves"])

        self.pid = actors.spawn(loop)
        actors.receive(lambda m: m == "subscribed", timeout=5)

    def report(self) -> dict:
        actors.send(self.pid, "report")
        _, count, total, biggest, entries = actors.receive(lambda m: isinstance(m, tuple) and m[0] == "report", timeout=30)
        return {
            "diffs": count,
            "mean_bytes": round(total / count) if count else 0,
            "max_bytes": biggest,
            "keys_in_diffs": entries,
        }


def wait_for(cond, timeout: float) -> float:
    start = time.monotonic()
    while not cond():
        if time.monotonic() - start > timeout:
            raise TimeoutError("not converged")
        actors.receive(lambda m: False, timeout=0.01, default=None)
    return time.monotonic() - start


def count_on(node, topic: str) -> int:
    return sum(len(e["metas"]) for e in node.presence.list(topic).values())


def traffic_meter():
    """Wrap the adapter so that every tracker message is counted and sized (term format)."""
    stats = {"messages": 0, "bytes": 0, "heartbeats": 0, "transfers": 0, "max_bytes": 0}
    original = RelayAdapter._deliver

    def deliver(network, me, node, topic, message, dispatcher):
        if topic.startswith("phx_presence:"):
            size = len(term_to_binary(message))
            stats["messages"] += 1
            stats["bytes"] += size
            stats["max_bytes"] = max(stats["max_bytes"], size)
            kind = str(message[1])
            stats["heartbeats" if kind == "heartbeat" else "transfers"] += kind != "graceful_permdown"
        return original(network, me, node, topic, message, dispatcher)

    RelayAdapter._deliver = staticmethod(deliver)
    return stats


def one_node(n: int, period: int) -> dict:
    topic = "room:bench"
    cluster = Cluster(broadcast_period=period)
    (node,) = cluster.add(1)
    counter = Counter(node.pubsub, topic)
    pids = [idle_process() for _ in range(n)]
    # Let every idle process reach its receive before the baseline (a process's first run
    # allocates its wait), so that only the tracker's own memory is counted.
    actors.receive(lambda m: False, timeout=0.5, default=None)
    gc.collect()
    rss0 = rss_bytes()
    start = time.perf_counter()
    for i, pid in enumerate(pids):
        node.presence.track(pid, topic, f"user{i}", {"online_at": i})
    tracked = time.perf_counter() - start
    gc.collect()
    rss1 = rss_bytes()
    # and once the delta has gone out in a heartbeat (kept in the delta generations)
    actors.receive(lambda m: False, timeout=2.2 * period / 1000, default=None)
    gc.collect()
    rss2 = rss_bytes()
    start = time.perf_counter()
    listed = node.presence.list(topic)
    list_s = time.perf_counter() - start
    assert len(listed) == n
    diffs = counter.report()
    # the whole state as a transfer would carry it to a new node
    from transport.presence._state import snapshot_to_wire

    state = node.presence.tracker._state(topic, "bench")
    state_bytes = len(term_to_binary(snapshot_to_wire(state.extract(("new", 1), {state.replica: 0}))))
    for pid in pids:
        actors.exit(pid, "kill")
    cluster.stop()
    actors.exit(counter.pid, "kill")
    return {
        "presences": n,
        "track_all_s": round(tracked, 3),
        "track_per_s": round(n / tracked),
        "rss_per_presence_bytes": round((rss1 - rss0) / n),
        "rss_per_presence_after_heartbeats_bytes": round((rss2 - rss0) / n),
        "list_ms": round(list_s * 1000, 1),
        "local_diffs": diffs,
        "full_state_transfer_bytes": state_bytes,
    }


def three_nodes(n: int, period: int, redis_url: str | None) -> dict:
    topic = "room:bench"
    cluster = Cluster(broadcast_period=period, redis_url=redis_url, redis_options={})
    nodes = cluster.add(3)
    wait_for(lambda: all(len(x.tracker.replicas()) == 2 for x in nodes), 30)
    stats = traffic_meter() if redis_url is None else None
    counter = Counter(nodes[0].pubsub, topic)
    pids = [idle_process() for _ in range(n)]
    start = time.perf_counter()
    for i, pid in enumerate(pids):
        nodes[i % 3].presence.track(pid, topic, f"user{i}", {"online_at": i})
    tracked = time.perf_counter() - start
    converged = wait_for(lambda: all(count_on(x, topic) == n for x in nodes), 120) + tracked
    settled = dict(stats) if stats else None
    diffs = counter.report()
    (late,) = cluster.add(1)
    start = time.perf_counter()
    late_s = wait_for(lambda: count_on(late, topic) == n, 120)
    out = {
        "presences": n,
        "nodes": 3,
        "broadcast_period_ms": period,
        "track_all_s": round(tracked, 3),
        "all_nodes_list_all_s": round(converged, 3),
        "tracker_traffic": settled,
        "node0_diffs": diffs,
        "new_node_converges_s": round(late_s, 3),
    }
    if stats:
        out["new_node_traffic"] = {k: stats[k] - settled[k] for k in stats if k != "max_bytes"} | {
            "max_bytes": stats["max_bytes"]
        }
    for pid in pids:
        actors.exit(pid, "kill")
    actors.exit(counter.pid, "kill")
    cluster.stop()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--period", type=int, default=1500, help="broadcast_period in ms")
    parser.add_argument("--adapter", choices=["relay", "redis"], default="relay")
    parser.add_argument("--json", help="write the figures here too")
    args = parser.parse_args()
    actors.trap_exit(True)
    redis = None
    redis_url = None
    if args.adapter == "redis":
        sys.path.insert(0, os.path.join(REPO, "tests"))
        from redis_server import RedisServer

        redis = RedisServer.start()
        redis_url = redis.url
    try:
        results = {"one_node": one_node(args.n, args.period), "three_nodes": three_nodes(args.n, args.period, redis_url)}
    finally:
        if redis is not None:
            redis.stop()
    results["adapter"] = args.adapter
    print(json.dumps(results, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
