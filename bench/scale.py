#!/usr/bin/env python3
"""The scale scenario: 100,000 joined connections on one machine, over several workers.

    python bench/scale.py                      # 100,000 connections (about 3-4 minutes)
    python bench/scale.py --conns 20000        # a smaller run
    python bench/scale.py --json out.json

What runs, all on 127.0.0.1 and all stopped by this script (by pid) at the end:

* a ``redis-server`` on a free port (no persistence), the PubSub the workers share;
* ``phx-serve app:endpoint --workers W --pubsub redis://...`` from ``bench/`` (the
  benchmark endpoint of ``bench/app.py``; its sockets time out after 120 s idle). A process
  may hold at most ~20,000 open files here, so W defaults to one worker per 16,000
  connections (7 for 100,000);
* G copies of the C load generator (``bench/loadgen``), one per 15,000 connections, each
  binding its connections to its own source address 127.0.0.(2+i) (one address has
  ~28,000 ephemeral ports). Each connects its share, joins ``bench:scale``, sends Phoenix's
  heartbeat every ``--heartbeat-s`` (30) seconds, and holds.

Once every generator holds, one broadcast is sent on ``bench:scale`` from a separate client
(payload ``t`` = ``time.monotonic()`` in microseconds, the clock every process here
shares); each generator reports when the last of its connections got it. The hold ends
once every connection has it and has answered a heartbeat, or after ``--hold-s``.

Reported: connect+join rate over all generators (all joined / the slowest generator's
connect+join time), server RSS per connection (the workers' RSS holding everything, minus
their RSS before any connection, over the connections joined), heartbeat round trip p50 /
p99 / max (the worst generator's), and the time for the one broadcast to reach all of
them (target: 1.5 s). Everything the generators print is kept in the JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
LOADGEN = os.path.join(HERE, "loadgen", "loadgen")
PER_WORKER = 16_000
PER_GENERATOR = 15_000
TOPIC = "bench:scale"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def children_of(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.1)


class Redis:
    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            sys.exit("bench/scale.py needs redis-server (apt-get install redis-server)")
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="greenphx-scale-redis-")
        self.proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.dir,
                "--maxclients",
                "10000",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(self._ping, 10, "redis-server")
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def _ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        stop(self.proc)
        shutil.rmtree(self.dir, ignore_errors=True)


def stop(proc: subprocess.Popen, timeout: float = 60.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def start_server(workers: int, redis_url: str) -> tuple[subprocess.Popen, int]:
    env = {**os.environ, "PYTHONPATH": REPO, "SECRET_KEY_BASE": "s" * 64}
    proc = subprocess.Popen(
        [
            sys.executable,
            os.path.join(REPO, "bin", "phx-serve"),
            "app:endpoint",
            "--port",
            "0",
            "--workers",
            str(workers),
            "--pubsub",
            redis_url,
            "--log-level",
            "warning",
        ],
        cwd=HERE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith("listening on "):
            return proc, int(line.strip().rsplit(":", 1)[1])
    stop(proc)
    sys.exit("the server did not start")


def broadcast_once(port: int) -> float:
    """Join the topic and ask the server to broadcast seq 0 stamped with the shared clock."""
    from websockets.sync.client import connect

    # Its own source address: the generators' connections hold every ephemeral port of theirs,
    # and the kernel may find none left to give 127.0.0.1.
    sock = socket.socket()
    sock.bind(("127.0.0.254", 0))
    sock.settimeout(30)
    sock.connect(("127.0.0.1", port))
    with connect(f"ws://127.0.0.1:{port}/socket/websocket?vsn=2.0.0", sock=sock, open_timeout=30) as ws:
        ws.send(json.dumps(["1", "1", TOPIC, "phx_join", {}]))
        json.loads(ws.recv(timeout=30))
        sent = time.monotonic()
        ws.send(json.dumps(["1", "2", TOPIC, "broadcast", {"t": int(sent * 1e6), "s": 0}]))
        ws.recv(timeout=30)
    return sent


def run(conns: int, workers: int, generators: int, heartbeat_s: float, hold_s: float) -> dict:
    if not os.path.exists(LOADGEN):
        subprocess.run(["make", "-C", os.path.join(HERE, "loadgen")], check=True, capture_output=True)
    redis = Redis()
    server, port = start_server(workers, redis.url)
    gens: list[subprocess.Popen] = []
    try:
        if workers == 1:
            worker_pids = [server.pid]  # --workers 1 serves in the process itself
        else:
            worker_pids = wait_for(
                lambda: children_of(server.pid) if len(children_of(server.pid)) >= workers else None, 30, "workers"
            )
        time.sleep(2)  # let start-up settle before the baseline
        rss_before = sum(rss_bytes(p) for p in worker_pids)
        share = math.ceil(conns / generators)
        started = time.monotonic()
        for i in range(generators):
            n = min(share, conns - i * share)
            gens.append(
                subprocess.Popen(
                    [
                        LOADGEN,
                        "--port",
                        str(port),
                        "--src-addr",
                        f"127.0.0.{2 + i}",
                        "--heartbeat-s",
                        str(heartbeat_s),
                        "--phase-timeout-s",
                        "600",
                        "--max-s",
                        str(900),
                        "--quiet",
                        "connect",
                        "--conns",
                        str(n),
                        "--topic",
                        TOPIC,
                        "--concurrency",
                        "100",
                        "--hold-s",
                        str(hold_s),
                        "--await-broadcast",
                    ],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
        holding = set()
        while len(holding) < len(gens):
            for k, g in enumerate(gens):
                if k in holding:
                    continue
                line = g.stderr.readline()
                if "HOLDING" in line:
                    holding.add(k)
                elif not line and g.poll() is not None:
                    raise RuntimeError(f"generator {k} exited before holding")
        setup_s = time.monotonic() - started
        rss_held = sum(rss_bytes(p) for p in worker_pids)
        broadcast_once(port)
        results = []
        for g in gens:
            out, _ = g.communicate(timeout=hold_s + 120)
            results.append(json.loads(out))
    finally:
        for g in gens:
            if g.poll() is None:
                g.kill()
        stop(server)
        redis.stop()
    joined = sum(r["joined"] for r in results)
    slowest = max(r["connect_join_s"] for r in results)
    figures = {
        "conns": conns,
        "workers": workers,
        "generators": generators,
        "joined": joined,
        "failed": sum(r["failed"] for r in results),
        "dropped_during_hold": sum(r["dropped_during_hold"] for r in results),
        "setup_s": round(setup_s, 1),
        "connect_join_per_s": round(joined / slowest) if slowest else None,
        "rss_before_mib": round(rss_before / 2**20, 1),
        "rss_held_mib": round(rss_held / 2**20, 1),
        "rss_per_conn_kib": round((rss_held - rss_before) / max(joined, 1) / 1024, 2),
        "heartbeat_replies": sum(r.get("heartbeat_replies", 0) for r in results),
        "heartbeat_p50_ms": max(r.get("heartbeat_p50_ms") or 0 for r in results),
        "heartbeat_p99_ms": max(r.get("heartbeat_p99_ms") or 0 for r in results),
        "heartbeat_max_ms": max(r.get("heartbeat_max_ms") or 0 for r in results),
        "broadcast_reached": sum(r.get("broadcast_reached", 0) for r in results),
        "broadcast_reach_ms": max((r.get("broadcast_reach_ms") or 0) for r in results),
        "generators_cpu_share": [r.get("cpu_share") for r in results],
        "generator_results": results,
    }
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conns", type=int, default=100_000)
    parser.add_argument("--workers", type=int, help=f"default: one per {PER_WORKER:,} connections")
    parser.add_argument("--generators", type=int, help=f"default: one per {PER_GENERATOR:,} connections")
    parser.add_argument("--heartbeat-s", type=float, default=30.0)
    parser.add_argument(
        "--hold-s", type=float, default=75.0, help="the longest hold (it ends once all got the broadcast and a heartbeat reply)"
    )
    parser.add_argument("--json", help="write the figures here too")
    args = parser.parse_args()
    workers = args.workers or max(1, math.ceil(args.conns / PER_WORKER))
    generators = args.generators or max(1, math.ceil(args.conns / PER_GENERATOR))
    if generators > 250:
        sys.exit("at most 250 generators (127.0.0.2-251)")
    figures = run(args.conns, workers, generators, args.heartbeat_s, args.hold_s)
    width = max(len(k) for k in figures)
    for key, value in figures.items():
        if key != "generator_results":
            print(f"{key:<{width}}  {value}")
    target = figures["broadcast_reach_ms"] <= 1500 and figures["broadcast_reached"] == figures["joined"]
    print(
        f"one broadcast reached {figures['broadcast_reached']:,} of {figures['joined']:,} in "
        f"{figures['broadcast_reach_ms']:.0f} ms (target 1,500 ms: {'met' if target else 'missed'})"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
