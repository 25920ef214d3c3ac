"""The blocking client under gevent's monkey patching: many clients as greenlets of one process.

The clients run in a subprocess (``gevent_clients.py``: patching must come before every
import); the server is ``client_app.py``. See gevent_clients.py for the scenario.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from serverproc import ROOT, ServerProcess

HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def server():
    proc = ServerProcess([sys.executable, str(HERE / "client_app.py"), "--port", "0"], name="client_app.py")
    try:
        yield proc
    finally:
        proc.stop()


@pytest.mark.parametrize("transport,clients", [("websocket", 50), ("longpoll", 10)])
def test_blocking_clients_as_greenlets_under_monkey_patching(server, transport, clients):
    done = subprocess.run(
        [sys.executable, str(HERE / "gevent_clients.py"), f"{server.ws}/socket", str(clients), transport],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout)
    results = out["results"]
    for i, got in enumerate(results):
        room = i % 5
        assert got.get("join") == {"topic": f"room:g{room}"}, got
        assert got["echoes"] == [{"i": i, "n": k} for k in range(5)]
        assert got["shout"] == {} and got["noreply"] == "timeout"
        # every client heard every shout of its room, once
        assert got["heard"] == [j for j in range(clients) if j % 5 == room], got
    # Callbacks and client calls ran as greenlets of the main thread, and while 'clients'
    # greenlets waited 1 s for replies that never came the hub kept running: its ticker
    # (10 ms sleeps) never missed more than a fraction of that second.
    assert out["main_thread"], out
    assert out["max_gap"] < 0.5, out
    assert out["ticks"] >= 10, out
