"""Presence across three ``phx-serve`` processes on a real Redis.

Three nodes (``phx-serve presence_node:children``, tests/e2e/presence_node.py) share a
redis-server through the Redis PubSub adapter. A WebSocket client on each node joins the
room as its own user and asks its node for the list (``list``). Checked: all three lists
converge on the three users within two broadcast periods; a node killed with SIGKILL: its
user leaves the other nodes' lists after ``down_period`` (not at once); a node stopped
with SIGTERM: its user leaves at once. Without redis-server the test skips locally (and
fails under CI=true).
"""

from __future__ import annotations

import signal
import sys
import time
import uuid
from pathlib import Path

import pytest
from serverproc import ServerProcess
from ws_client import PhxClient

REPO = Path(__file__).resolve().parents[2]
ROOM = "room:nodes"
BROADCAST_MS = 300
DOWN_MS = 2000

pytestmark = pytest.mark.timeout(120)


class Node(ServerProcess):
    def __init__(self, redis_url: str, name: str, channel: str) -> None:
        self.node_name = name
        super().__init__(
            [sys.executable, str(REPO / "bin" / "phx-serve"), "presence_node:children", "--port", "0"],
            cwd=REPO,
            name=name,
            env={
                "PYTHONPATH": str(REPO / "tests" / "e2e"),
                "PRESENCE_REDIS_URL": redis_url,
                "PRESENCE_NODE_NAME": name,
                "PRESENCE_CHANNEL": channel,
                "PRESENCE_BROADCAST_MS": str(BROADCAST_MS),
                "PRESENCE_DOWN_MS": str(DOWN_MS),
            },
        )


@pytest.fixture
def nodes(redis_server):
    channel = f"phx:presence-e2e-{uuid.uuid4().hex[:8]}"
    started = []
    try:
        for i in range(3):
            started.append(Node(redis_server.url, f"n{i}-{uuid.uuid4().hex[:6]}", channel))
        yield started
    finally:
        for n in started:
            n.stop()


def listing(client: PhxClient) -> set[str]:
    ref = client.send(ROOM, "list", {})
    reply = client.reply_to(ref, timeout=10).payload
    assert reply["status"] == "ok", reply
    return set(reply["response"])


def wait_lists(clients: dict, expected: set[str], timeout: float) -> float:
    start = time.monotonic()
    while True:
        seen = {name: listing(c) for name, c in clients.items()}
        if all(s == expected for s in seen.values()):
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise AssertionError(f"lists {seen} != {expected} after {timeout} s")
        time.sleep(0.05)


def test_three_phx_serve_nodes_on_redis(nodes):
    clients: dict[str, PhxClient] = {}
    try:
        users = {}
        for i, node in enumerate(nodes):
            c = PhxClient(node.ws + "/socket/websocket", "2.0.0", timeout=10)
            clients[node.node_name] = c
            users[node.node_name] = f"user{i}"
        start = time.monotonic()
        for node in nodes:
            c = clients[node.node_name]
            c.reply_to(c.join(ROOM, {"user": users[node.node_name]}), timeout=10)
        wait_lists(clients, set(users.values()), timeout=15)
        took = time.monotonic() - start
        # Two broadcast periods, plus room for three interpreters on two loaded cores and
        # for the nodes' first meeting (the trackers learn of each other at first beat).
        assert took < 2 * BROADCAST_MS / 1000 + 2.0, f"converged in {took:.2f} s"

        # SIGKILL: no goodbye; the others wait down_period before dropping its user
        victim = nodes[2]
        killed = time.monotonic()
        victim.proc.send_signal(signal.SIGKILL)
        victim.proc.wait(10)
        del clients[victim.node_name]
        survivors = {users[n.node_name] for n in nodes[:2]}
        assert listing(clients[nodes[0].node_name]) == set(users.values())  # not at once
        wait_lists(clients, survivors, timeout=DOWN_MS / 1000 + 10)
        took = time.monotonic() - killed
        assert took >= DOWN_MS / 1000 * 0.9, f"dropped after {took:.2f} s, before down_period"
        assert took < DOWN_MS / 1000 + 4 * BROADCAST_MS / 1000 + 3.0, took

        # SIGTERM: a graceful stop; the last node drops the user at once
        # (its client stays connected: the node's drain closes it)
        leaving = nodes[1]
        leaving_client = clients.pop(leaving.node_name)
        stopped = time.monotonic()
        leaving.proc.send_signal(signal.SIGTERM)
        wait_lists(clients, {users[nodes[0].node_name]}, timeout=DOWN_MS / 1000)
        assert time.monotonic() - stopped < DOWN_MS / 1000
        assert leaving.proc.wait(15) == 0
        leaving_client.close()
        log = nodes[0].stderr
        assert f"replica down {victim.node_name}" in log
        assert f"replica permdown {leaving.node_name}" in log
    finally:
        for c in clients.values():
            try:
                c.close()
            except Exception:  # noqa: BLE001 - the server may be gone
                pass
