"""``phx-serve --workers 2``: two OS processes on one port, one node each on a real Redis.

The launcher is started like any phx-serve (``ServerProcess`` waits for its ``listening on``
line, printed once both workers listen). Clients connect to the one port; the kernel
spreads them over the workers (SO_REUSEPORT), which the join reply's node name shows. A
broadcast made on one worker reaches the other's clients exactly once; a worker killed
with SIGKILL is restarted by the launcher; SIGTERM drains both (1012) and exits 0.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from serverproc import ServerProcess
from ws_client import PhxClient

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
PHX_SERVE = [sys.executable, str(REPO / "bin" / "phx-serve")]
OPTS = "heartbeat_interval=0.2&node_timeout=1.5&reconnect_backoff_initial=0.02&reconnect_backoff_max=0.5"


def _join(server: ServerProcess, topic: str) -> tuple[PhxClient, str]:
    client = PhxClient(f"{server.ws}/socket/websocket", "2.0.0", timeout=5.0)
    reply = client.reply_to(client.join(topic), timeout=10)
    assert reply.payload["status"] == "ok", reply
    return client, reply.payload["response"]["node"]


def _worker_pids(server: ServerProcess) -> list[int]:
    text = server.wait_log(r"2 workers serving .* \(OS pids (\d+), (\d+)\)", timeout=10)
    found = re.search(r"2 workers serving .* \(OS pids (\d+), (\d+)\)", text)
    return [int(found.group(1)), int(found.group(2))]


def test_two_workers_share_one_port_and_their_topics(redis_server):
    server = ServerProcess(
        [
            *PHX_SERVE,
            "redis_node_app:children",
            "--port",
            "0",
            "--workers",
            "2",
            "--pubsub",
            f"{redis_server.url}?{OPTS}",
            "--node-name",
            "wk",
        ],
        cwd=HERE,
        name="phx-serve --workers 2",
    )
    clients: list[PhxClient] = []
    try:
        pids = _worker_pids(server)
        nodes: dict[str, list[PhxClient]] = {}
        for _ in range(24):
            client, node = _join(server, "t:shared")
            clients.append(client)
            nodes.setdefault(node, []).append(client)
        assert set(nodes) == {"wk-w0", "wk-w1"}, {k: len(v) for k, v in nodes.items()}  # both workers serve

        # Wait until each worker hears the other (heartbeats), then broadcast from worker 0.
        publisher = nodes["wk-w0"][0]
        deadline = time.monotonic() + 10
        while True:
            reply = publisher.reply_to(publisher.send("t:shared", "stats"), timeout=5)
            if reply.payload["response"].get("nodes", {}).get("wk-w1", {}).get("status") == "up":
                break
            assert time.monotonic() < deadline, reply
            time.sleep(0.1)
        reply = publisher.reply_to(publisher.send("t:shared", "burst", {"topic": "t:shared", "n": 20, "start": 0}), timeout=10)
        assert reply.payload["response"] == {"errors": []}
        for client in clients:
            got = []
            while len(got) < 20:
                msg = client.next(timeout=10)
                if msg.event == "m":
                    got.append(msg.payload["s"])
            assert got == list(range(20))  # every one, once, in order, whichever worker serves it

        # A worker killed outright is restarted, and serves again.
        mark = server.log_mark()
        os.kill(pids[1], signal.SIGKILL)
        server.wait_log(r"worker 1 is serving again \(OS pid \d+\)", mark, timeout=30)
        seen = set()
        for _ in range(24):
            client, node = _join(server, "t:after")
            clients.append(client)
            seen.add(node)
        assert seen == {"wk-w0", "wk-w1"}

        # SIGTERM: both workers drain (1012), the launcher exits 0.
        assert server.stop() == 0
        survivors = [c for c, _ in zip(clients[24:], range(24))]  # joined after the restart
        assert {c.wait_closed(timeout=10) for c in survivors} == {1012}
    finally:
        for c in clients:
            c.close()
        server.stop()
    assert "Traceback" not in server.stderr


def test_workers_without_a_shared_pubsub_are_refused():
    result = subprocess.run(
        [*PHX_SERVE, "redis_node_app:children", "--port", "0", "--workers", "2"],
        cwd=HERE,
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert result.returncode == 2
    assert "--workers 2 needs --pubsub" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("value", ["0", "-1", "many"])
def test_a_bad_worker_count_is_a_usage_error(value):
    result = subprocess.run(
        [*PHX_SERVE, "--workers", value],
        cwd=HERE,
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert result.returncode == 2 and "--workers must be a positive number or 'auto'" in result.stderr


def test_workers_that_keep_dying_bring_the_launcher_down_with_status_1(redis_server):
    started = time.monotonic()
    result = subprocess.run(
        [*PHX_SERVE, "serve_target:crashing", "--port", "0", "--workers", "2", "--pubsub", redis_server.url],
        cwd=HERE,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert result.returncode == 1, result.stderr[-2000:]
    assert "the workers keep dying (restart intensity exceeded): giving up" in result.stderr
    assert time.monotonic() - started < 30
