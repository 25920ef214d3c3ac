"""Many phx-serve nodes on one real Redis, real WebSocket clients on each (127.0.0.1 only).

Each test starts its own redis-server (tests/redis_server.py) and phx-serve processes
serving tests/e2e/redis_node_app.py with ``--pubsub``; heartbeats and backoffs are short
(URL query options) so outages are noticed within a second.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from serverproc import ServerProcess
from ws_client import Closed, PhxClient

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
PHX_SERVE = [sys.executable, os.path.join(REPO, "bin", "phx-serve")]
BACKOFF_MAX = 0.5
NODE_TIMEOUT = 1.5
OPTS = f"heartbeat_interval=0.2&node_timeout={NODE_TIMEOUT}&reconnect_backoff_initial=0.02&reconnect_backoff_max={BACKOFF_MAX}"


@pytest.fixture
def redis():
    from redis_server import RedisServer

    server = RedisServer.start()
    yield server
    server.stop()


class Node:
    """One phx-serve process, and a control client joined to ``ctl:<name>``."""

    def __init__(self, url: str, name: str) -> None:
        self.name = name
        self.server = ServerProcess(
            [*PHX_SERVE, "redis_node_app:children", "--port", "0", "--pubsub", f"{url}?{OPTS}", "--node-name", name],
            cwd=Path(HERE),
            name=f"node {name}",
        )
        self.ctl = self.client()
        self.ctl.reply_to(self.ctl.join(f"ctl:{name}"), timeout=5)

    def client(self, **params: Any) -> PhxClient:
        return PhxClient(f"{self.server.ws}/socket/websocket", "2.0.0", params=params or None, timeout=5.0)

    def call(self, event: str, payload: Any = None, timeout: float = 30.0) -> Any:
        msg = self.ctl.reply_to(self.ctl.send(f"ctl:{self.name}", event, payload), timeout=timeout)
        assert msg.payload["status"] == "ok", msg
        return msg.payload["response"]

    def stats(self) -> dict:
        return self.call("stats")

    def stop(self) -> None:
        try:
            self.ctl.close()
        except Exception:  # noqa: BLE001
            pass
        self.server.stop()


def start_nodes(url: str, names: list[str]) -> list[Node]:
    with ThreadPoolExecutor(len(names)) as pool:
        return list(pool.map(lambda n: Node(url, n), names))


def wait_for(condition: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s")
        time.sleep(0.05)


def all_see_each_other(nodes: list[Node]) -> None:
    names = {n.name for n in nodes}

    def ok() -> bool:
        return all({k for k, v in n.stats()["nodes"].items() if v["status"] == "up"} >= names - {n.name} for n in nodes)

    wait_for(ok, 10, "every node sees the others up")


def subscriber(node: Node, topic: str, **params: Any) -> PhxClient:
    client = node.client(**params)
    reply = client.reply_to(client.join(topic), timeout=5)
    assert reply.payload["status"] == "ok"
    return client


def collect(client: PhxClient, topic: str, count: int, timeout: float) -> list[tuple[str, int]]:
    """The next ``count`` ``m`` broadcasts on ``topic`` as (publisher, seq), in arrival order."""
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < count:
        msg = client.next(timeout=max(0.01, deadline - time.monotonic()))
        if msg.topic == topic and msg.event == "m":
            out.append((msg.payload["p"], msg.payload["s"]))
    return out


def drain(client: PhxClient, topic: str, quiet: float = 0.5) -> list[tuple[str, int]]:
    """Everything that arrives until ``quiet`` seconds pass without a frame."""
    out = []
    while True:
        try:
            msg = client.next(timeout=quiet)
        except Closed:
            raise
        except AssertionError:  # no frame within ``quiet``
            return out
        if msg.topic == topic and msg.event == "m":
            out.append((msg.payload["p"], msg.payload["s"]))


def per_publisher(got: list[tuple[str, int]]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for p, s in got:
        out.setdefault(p, []).append(s)
    return out


def test_ten_thousand_broadcasts_from_random_nodes_reach_every_subscriber_once_in_order(redis: Any) -> None:
    nodes = start_nodes(redis.url, ["n1", "n2", "n3"])
    try:
        all_see_each_other(nodes)
        topic = "t:data"
        subs = [subscriber(n, topic) for n in nodes]
        # 10,000 broadcasts in bursts of 100-400, each burst from a random node; the three
        # nodes publish at the same time (one thread per control client).
        rng = random.Random(12)
        plan: dict[str, list[tuple[int, int]]] = {n.name: [] for n in nodes}
        next_seq = {n.name: 0 for n in nodes}
        total = 0
        while total < 10_000:
            size = min(rng.randint(100, 400), 10_000 - total)
            name = rng.choice(list(plan))
            plan[name].append((next_seq[name], size))
            next_seq[name] += size
            total += size
        results: dict[str, list] = {}
        received: list[list] = [[] for _ in subs]

        def publish(node: Node) -> None:
            errors = []
            for start, n in plan[node.name]:
                errors += node.call("burst", {"topic": topic, "n": n, "start": start})["errors"]
            results[node.name] = errors

        readers = [
            threading.Thread(target=lambda i=i: received[i].extend(collect(subs[i], topic, 10_000, 120))) for i in range(3)
        ]
        for t in readers:
            t.start()
        with ThreadPoolExecutor(3) as pool:
            list(pool.map(publish, nodes))
        for t in readers:
            t.join(130)
        assert results == {"n1": [], "n2": [], "n3": []}
        for i, got in enumerate(received):
            assert len(got) == 10_000, f"subscriber on {nodes[i].name} got {len(got)}"
            by = per_publisher(got)
            for name, seqs in by.items():
                assert seqs == list(range(next_seq[name])), f"{nodes[i].name} from {name}: out of order or missing"
        for client in subs:
            assert drain(client, topic, quiet=0.3) == []  # exactly once: nothing more comes
        stats = nodes[0].stats()
        assert stats["decode_errors"] == 0 and stats["publish_errors"] == 0
    finally:
        for n in nodes:
            n.stop()


def test_redis_killed_mid_stream_local_delivery_goes_on_no_ok_is_lost_and_delivery_resumes(redis: Any) -> None:
    nodes = start_nodes(redis.url, ["a", "b"])
    a, b = nodes
    try:
        all_see_each_other(nodes)
        topic = "t:outage"
        on_a, on_b = subscriber(a, topic), subscriber(b, topic)
        outcome: dict[str, Any] = {}

        def publish() -> None:
            errors = []
            for k in range(40):  # 40 bursts of 100, Redis killed somewhere in the middle
                errors += a.call("burst", {"topic": topic, "n": 100, "start": k * 100})["errors"]
            outcome["errors"] = errors

        publisher = threading.Thread(target=publish)
        publisher.start()
        time.sleep(0.3)
        redis.kill()
        time.sleep(0.5)
        redis.restart()
        restarted = time.monotonic()
        publisher.join(60)
        errors = {s for s, _reason in outcome["errors"]}
        assert errors, "the outage produced no error at all"
        # Local deliveries never stopped: a's own subscriber got all 4,000.
        got_a = collect(on_a, topic, 4000, 30)
        assert [s for _p, s in got_a] == list(range(4000))
        # Every broadcast reported ok reached b (none ok-then-lost); b's are in order. The one
        # exception the adapter's docs name: the broadcast in flight when Redis was killed
        # (counted and answered to a, not yet written to b's socket), i.e. the last ok just
        # before the first error; a publishes one at a time, so there is at most that one.
        got_b = [s for _p, s in drain(on_b, topic, quiet=1.0)]
        assert got_b == sorted(got_b) and len(set(got_b)) == len(got_b)
        lost = set(range(4000)) - errors - set(got_b)
        in_flight_at_kill = {min(errors) - 1}
        assert lost <= in_flight_at_kill, f"{len(lost)} broadcasts reported ok never reached b: {sorted(lost)[:10]}"
        # Cross-node delivery resumes within the backoff bound (plus a loaded machine's slack).

        def delivered_again() -> bool:
            seq = 100_000 + int(time.monotonic() * 1000) % 100_000
            if a.call("burst", {"topic": topic, "n": 1, "start": seq})["errors"]:
                return False
            return any(s == seq for _p, s in drain(on_b, topic, quiet=0.3))

        wait_for(delivered_again, BACKOFF_MAX + 5, "a's broadcasts reach b again")
        assert time.monotonic() - restarted < BACKOFF_MAX + 5
        assert a.stats()["reconnects"] >= 1 and b.stats()["reconnects"] >= 1
    finally:
        for n in nodes:
            n.stop()


def test_a_node_killed_with_sigkill_the_others_carry_on_and_see_it_down(redis: Any) -> None:
    nodes = start_nodes(redis.url, ["a", "b", "c"])
    a, b, c = nodes
    try:
        all_see_each_other(nodes)
        topic = "t:kill"
        on_b = subscriber(b, topic)
        c.server.proc.send_signal(signal.SIGKILL)
        c.server.proc.wait(10)
        # Until a stops hearing c, a broadcast c did not get is an error, never a silent ok.
        wait_for(lambda: a.stats()["nodes"]["c"]["status"] == "down", NODE_TIMEOUT + 5, "a marks c down")
        stats = a.stats()
        assert stats["nodes"]["c"]["seconds_since_last_message"] >= NODE_TIMEOUT
        assert stats["nodes"]["b"]["status"] == "up"
        assert a.call("burst", {"topic": topic, "n": 200, "start": 0})["errors"] == []
        assert [s for _p, s in collect(on_b, topic, 200, 10)] == list(range(200))
    finally:
        for n in nodes:
            n.stop()


def test_direct_broadcast_broadcast_from_and_disconnect_by_socket_id_across_nodes(redis: Any) -> None:
    nodes = start_nodes(redis.url, ["a", "b", "c"])
    a, b, c = nodes
    try:
        all_see_each_other(nodes)
        # Direct broadcast: only the named node's subscribers.
        subs = {n.name: subscriber(n, "t:direct") for n in nodes}
        assert a.call("direct", {"node": "b", "topic": "t:direct", "payload": {"p": "a", "s": 1}})["result"] == "ok"
        assert collect(subs["b"], "t:direct", 1, 5) == [("a", 1)]
        assert "nodedown" in a.call("direct", {"node": "ghost", "topic": "t:direct", "payload": {"p": "a", "s": 2}})["result"]
        # A marker broadcast to all: the others' first message is the marker, not the direct one.
        assert a.call("burst", {"topic": "t:direct", "n": 1, "start": 99})["errors"] == []
        for name in ("a", "c"):
            assert collect(subs[name], "t:direct", 1, 5) == [("a", 99)]

        # broadcast_from: everyone on the topic but the sender, on every node.
        speaker, same_node, remote = subscriber(a, "t:from"), subscriber(a, "t:from"), subscriber(c, "t:from")
        reply = speaker.reply_to(speaker.send("t:from", "say", {"body": "hello"}), timeout=5)
        assert reply.payload["response"]["result"] == "ok"
        for client in (same_node, remote):
            msg = client.event("said", "t:from", timeout=5)
            assert msg.payload == {"body": "hello", "p": "a"}
        # A marker from the sender's node comes after anything that node sent it before.
        assert a.call("burst", {"topic": "t:from", "n": 1, "start": 1})["errors"] == []
        assert collect(speaker, "t:from", 1, 5) == [("a", 1)]
        speaker.refute(lambda m: m.event == "said")

        # disconnect by socket id closes the user's sockets on every node, and only theirs.
        user7 = [subscriber(n, "t:u", user_id="7") for n in nodes]
        user8 = subscriber(a, "t:u", user_id="8")
        b.call("disconnect", {"user_id": 7})
        for client in user7:
            client.wait_closed(timeout=5)
        user8.reply_to(user8.heartbeat(), timeout=5)
    finally:
        for n in nodes:
            n.stop()


def test_a_second_node_with_a_taken_name_refuses_to_start_with_one_line(redis: Any) -> None:
    first = Node(redis.url, "same")
    try:
        done = subprocess.run(
            [*PHX_SERVE, "redis_node_app:children", "--port", "0", "--pubsub", redis.url, "--node-name", "same"],
            cwd=HERE,
            capture_output=True,
            text=True,
            timeout=30,
            env={**os.environ, "PYTHONPATH": REPO},
        )
        assert done.returncode != 0
        last = done.stderr.strip().splitlines()[-1]
        assert last.startswith("phx-serve: could not start: node name 'same' is already in use"), done.stderr
        assert "Traceback" not in done.stderr
    finally:
        first.stop()
