"""The demo on two nodes sharing a real Redis: the chat and the room list cross nodes, the
numbers still tick once a second per topic.

Two ``phx-serve --pubsub redis://... --node-name ...`` processes serve the embedded demo on
their own ports; the project's Python client plays two people, one on each node.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
from serverproc import ServerProcess

from transport.client import Socket

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
PHX_SERVE = [sys.executable, str(REPO / "bin" / "phx-serve")]
OPTS = "heartbeat_interval=0.2&node_timeout=1.5&reconnect_backoff_initial=0.02&reconnect_backoff_max=0.5"


@pytest.fixture
def two_nodes(redis_server):
    url = f"{redis_server.url}?{OPTS}&channel=phx:demo-nodes"
    nodes = [
        ServerProcess(
            [*PHX_SERVE, "--port", "0", "--pubsub", url, "--node-name", name],
            cwd=REPO,
            name=f"demo {name}",
            env={"SECRET_KEY_BASE": "d" * 64},
        )
        for name in ("demo-a", "demo-b")
    ]
    try:
        yield nodes
    finally:
        for node in nodes:
            node.stop()


def _person(node: ServerProcess, name: str):
    socket = Socket(f"{node.ws}/socket")
    socket.connect(timeout=10)
    room = socket.channel("room:lobby", {"name": name})
    messages = room.messages(events={"new_msg"})
    room.join(timeout=10)
    return socket, room, messages


def test_chat_typed_on_one_node_appears_on_the_other(two_nodes):
    a, b = two_nodes
    ann_socket, ann, ann_inbox = _person(a, "ann")
    bob_socket, bob, bob_inbox = _person(b, "bob")
    try:
        # The nodes find each other through heartbeats; until then a broadcast may be
        # reported as not reaching everyone. Retry the first line within a bound.
        deadline = time.monotonic() + 10
        while True:
            ann.push("new_msg", {"body": "hello from a"}, timeout=10)
            try:
                got = bob_inbox.get(timeout=1)
                break
            except TimeoutError:
                assert time.monotonic() < deadline, "node b never got node a's chat line"
        assert got.payload == {"name": "ann", "body": "hello from a"}
        bob.push("new_msg", {"body": "and back from b"}, timeout=10)
        while True:  # ann's own lines come back to her too; the first of bob's is the one
            msg = ann_inbox.get(timeout=5)
            if msg.payload["name"] == "bob":
                break
        assert msg.payload == {"name": "bob", "body": "and back from b"}
    finally:
        ann_socket.disconnect()
        bob_socket.disconnect()


def test_numbers_tick_once_a_second_per_topic_however_many_nodes(two_nodes):
    a, _b = two_nodes
    socket = Socket(f"{a.ws}/socket")
    socket.connect(timeout=10)
    try:
        numbers = socket.channel("numbers:positive", {})
        updates = numbers.messages(events={"update"})
        numbers.join(timeout=10)
        start = time.monotonic()
        got = []
        while time.monotonic() - start < 3.5:
            try:
                updates.get(timeout=max(0.01, 3.5 - (time.monotonic() - start)))
            except TimeoutError:
                break
            got.append(time.monotonic())
        # One on join, then one per second from this node's publisher only: 4 or 5 in 3.5 s
        # (two nodes each broadcasting to everyone would give about twice as many).
        assert 3 <= len(got) <= 5, len(got)
    finally:
        socket.disconnect()
