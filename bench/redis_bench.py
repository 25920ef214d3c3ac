"""Many nodes on one Redis: deliveries/s, latency and losses, against one node holding them all.

    python bench/redis_bench.py                    # 3 nodes x 5,000 subscribers, 3 runs
    python bench/redis_bench.py --subs 1000 --messages 100 --runs 1   # quick

Scenario ``redis``: a redis-server (started here, on a free loopback port, nothing saved)
and 3 node processes (``--node``), each a PubSub on the Redis adapter holding ``subs``
subscribers of one topic. The subscribers are what a channel's fastlane feeds: processes
standing in for WebSocket transports (fastlane metadata with the V2 serializer), so each
node decodes the Redis message once, encodes the frame once and pushes it to every
subscriber's mailbox; only the socket write is missing. Node 1 broadcasts ``messages``
channel broadcasts (``{"s": seq, "t": wall clock}``) as fast as it can; every node counts
what its subscribers got.

Scenario ``local``: one process on the local adapter holding 3 x ``subs`` subscribers,
the same broadcasts: what Redis and the extra processes cost.

Figures: deliveries/s (all subscribers' deliveries over the time from the first broadcast
to the last delivery), p50/p99 latency from the broadcast call to a subscriber's receipt
(sampled on every 25th subscriber, all on one machine's clock), lost (expected minus
counted; must be 0). Node processes are pinned round-robin to the available cores with
``os.sched_setaffinity`` (2 cores here: nodes 1 and 3 share core 0, node 2 and Redis core 1).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))

SAMPLE_EVERY = 25
TOPIC = "bench:redis"


def _node(name: str, url: str | None, subs: int, messages: int, publish: bool, out: str) -> None:
    import ujson

    import actors
    from supervision import Application
    from transport import pubsub
    from transport._channel import dispatch
    from transport._message import Broadcast
    from transport.pubsub import PubSub, RedisAdapter
    from transport.serializers import V2

    opts = {"adapter": RedisAdapter, "url": url, "node_name": name} if url else {}
    app = Application([PubSub.child_spec(name="Bench.PubSub", **opts)])
    app.start()
    me = actors.self()
    counts = [0]
    samples: list[float] = []

    def transport(sample: bool) -> None:
        n = 0
        while True:
            msg = actors.receive()
            n += 1
            counts[0] += 1
            if sample:
                frame = ujson.loads(msg[2])
                samples.append(time.time() - frame[4]["t"])
            if n == messages:
                actors.send(me, "done")

    def subscribe_as(transport_pid: actors.Pid) -> None:
        pubsub.subscribe("Bench.PubSub", TOPIC, ("fastlane", transport_pid, V2, ()))
        actors.send(me, "subscribed")

    for i in range(subs):
        pid = actors.spawn(transport, i % SAMPLE_EVERY == 0)
        # The subscription belongs to a channel process in real life; here a helper that
        # stays alive (its pid owns the subscription).
        actors.spawn(lambda p=pid: (subscribe_as(p), actors.receive()))
        actors.receive(lambda m: m == "subscribed")
    if url:
        # Every node must see the others before the publisher starts, or it would count them out.
        deadline = time.monotonic() + 20
        while pubsub.statistics("Bench.PubSub")["adapter_statistics"]["expected_receivers"] < 3:
            if time.monotonic() > deadline:
                raise SystemExit(f"the nodes did not see each other: {pubsub.statistics('Bench.PubSub')['adapter_statistics']}")
            actors.receive(lambda m: False, 0.05, default=None)
    print("READY", flush=True)
    import gevent.socket

    gevent.socket.wait_read(sys.stdin.fileno())  # cooperatively: heartbeats go on meanwhile
    sys.stdin.readline()  # GO
    start = time.time()
    errors = 0
    if publish:
        for s in range(messages):
            result = pubsub.broadcast("Bench.PubSub", TOPIC, Broadcast(TOPIC, "m", {"s": s, "t": time.time()}), dispatch)
            if result != "ok":
                errors += 1
            if s % 50 == 0:
                actors.receive(lambda m: False, 0, default=None)  # let the hub breathe
    done = 0
    deadline = time.monotonic() + 120
    while done < subs and time.monotonic() < deadline:
        if actors.receive(lambda m: m == "done", max(0.0, deadline - time.monotonic()), default=None) == "done":
            done += 1
    end = time.time()
    with open(out, "w") as f:
        json.dump({"node": name, "count": counts[0], "start": start, "end": end, "samples": samples, "errors": errors}, f)
    print("DONE", flush=True)
    os._exit(0)


def _pin(pid: int, index: int) -> str:
    cores = sorted(os.sched_getaffinity(0))
    core = cores[index % len(cores)]
    try:
        os.sched_setaffinity(pid, {core})
        return str(core)
    except OSError:
        return "-"


def run(scenario: str, subs: int, messages: int) -> dict:
    from redis_server import RedisServer

    server = RedisServer.start() if scenario == "redis" else None
    tmp = tempfile.mkdtemp(prefix="greenphx-redis-bench-")
    names = ["n1", "n2", "n3"] if scenario == "redis" else ["solo"]
    per_node = subs if scenario == "redis" else subs * 3
    procs = []
    pins = []
    try:
        if server is not None:
            pins.append(f"redis:{_pin(server.proc.pid, 1)}")
        for i, name in enumerate(names):
            out = os.path.join(tmp, f"{name}.json")
            cmd = [
                sys.executable,
                os.path.abspath(__file__),
                "--node",
                name,
                server.url if server else "-",
                str(per_node),
                str(messages),
                "1" if i == 0 else "0",
                out,
            ]
            proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            pins.append(f"{name}:{_pin(proc.pid, i)}")
            procs.append((proc, out))
        for proc, _ in procs:
            line = proc.stdout.readline()
            if line.strip() != "READY":
                raise RuntimeError(f"a node failed to start: {line!r}")
        for proc, _ in procs:
            proc.stdin.write("GO\n")
            proc.stdin.flush()
        results = []
        for proc, out in procs:
            proc.stdout.readline()
            proc.wait(180)
            with open(out) as f:
                results.append(json.load(f))
    finally:
        for proc, _ in procs:
            if proc.poll() is None:
                proc.kill()
        if server is not None:
            server.stop()
    start = min(r["start"] for r in results)
    end = max(r["end"] for r in results)
    total = sum(r["count"] for r in results)
    expected = messages * subs * 3
    samples = sorted(s for r in results for s in r["samples"])
    return {
        "scenario": scenario,
        "deliveries_per_s": total / (end - start),
        "p50_ms": 1000 * samples[len(samples) // 2],
        "p99_ms": 1000 * samples[int(len(samples) * 0.99)],
        "lost": expected - total,
        "publish_errors": sum(r["errors"] for r in results),
        "seconds": end - start,
        "pinned": " ".join(pins),
    }


def main() -> None:
    if sys.argv[1:2] == ["--node"]:
        name, url, subs, messages, publish, out = sys.argv[2:8]
        _node(name, None if url == "-" else url, int(subs), int(messages), publish == "1", out)
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subs", type=int, default=5000, help="subscribers per node (default 5000)")
    parser.add_argument("--messages", type=int, default=200, help="broadcasts (default 200)")
    parser.add_argument("--runs", type=int, default=3, help="runs per scenario; medians are shown (default 3)")
    args = parser.parse_args()
    rows = {"redis": [], "local": []}
    for _ in range(args.runs):
        for scenario in ("redis", "local"):
            r = run(scenario, args.subs, args.messages)
            rows[scenario].append(r)
            print(json.dumps(r), flush=True)
    print(f"\n3 x {args.subs} subscribers on one topic, {args.messages} broadcasts from one node; medians of {args.runs}")
    print("| scenario | deliveries/s | p50 ms | p99 ms | lost | publish errors |")
    print("|---|---|---|---|---|---|")
    for scenario, runs in rows.items():
        med = {
            k: statistics.median(r[k] for r in runs) for k in ("deliveries_per_s", "p50_ms", "p99_ms", "lost", "publish_errors")
        }
        label = "3 nodes on Redis" if scenario == "redis" else "1 node, local adapter"
        print(
            f"| {label} | {med['deliveries_per_s']:,.0f} | {med['p50_ms']:.1f} | {med['p99_ms']:.1f} "
            f"| {med['lost']:.0f} | {med['publish_errors']:.0f} |"
        )


if __name__ == "__main__":
    main()
