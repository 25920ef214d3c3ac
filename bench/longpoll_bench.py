#!/usr/bin/env python3
"""LongPoll against WebSocket, same server, same run: fan-out and memory per idle session.

    python bench/longpoll_bench.py              # N=1,000 sessions per transport, 3 runs
    python bench/longpoll_bench.py --quick      # N=200, 1 run
    python bench/longpoll_bench.py -n 500 --runs 1 --json /tmp/lp.json

One server (this file with ``--serve``: ``bench/app.py``'s ``BenchSocket`` mounted at
``/socket`` with both transports, LongPoll window 10 s) pinned to CPU 0, and one load
generator (this file with ``--gen``, gevent, pinned to CPU 1); loopback only. Per run and
transport, the generator:

1. opens N sessions and joins each to ``bench:fanout`` (LongPoll: GET for a token, POST the
   join, then every client polls in a loop on a keep-alive connection; WebSocket: upgrade,
   join). The driver reads the server's RSS before and after, 2 s after the last join:
   memory per idle session = (RSS joined - RSS before) / N.
2. paced: a publisher (a WebSocket client on the topic) broadcasts ``{"t": send time}`` at
   20/s for 5 s; each client records send-to-receipt latency (p50, p99) and counts.
3. saturated: the publisher keeps 20 broadcasts unacknowledged for 5 s: deliveries/s
   (messages received by all clients / seconds from the first send to the last receipt).

Lost deliveries are reported (they must be 0). The two transports alternate order from
run to run and each gets a fresh server. Figures are medians over runs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SECRET = "bench-secret-" * 6
TOPIC = "bench:fanout"


# ------------------------------------------------------------------------------------------
# the server


def serve() -> int:
    from gevent import monkey

    monkey.patch_all()
    sys.path[:0] = [ROOT, HERE]
    import app  # bench/app.py: BenchSocket, BenchChannel, PUBSUB

    from transport import Endpoint, http
    from transport.pubsub import PubSub

    endpoint = Endpoint(
        "Bench.LongPoll.Endpoint",
        pubsub_server=app.PUBSUB,
        secret_key_base=SECRET,
        sockets=[
            (
                "/socket",
                app.BenchSocket,
                {"websocket": {"timeout": 120_000, "check_origin": False}, "longpoll": {"check_origin": False}},
            )
        ],
    )
    children = [PubSub.child_spec(name=app.PUBSUB), *endpoint.child_specs()]
    return http.main(endpoint, children, ["--port", "0", "--log-level", "warning"])


# ------------------------------------------------------------------------------------------
# the load generator


def gen(port: int, n: int, transport: str, rate: float, seconds: float, window: int) -> int:
    from gevent import monkey

    monkey.patch_all()
    import base64
    import http.client
    import socket
    import struct
    from urllib.parse import urlencode

    import gevent
    import gevent.event

    received: list[float] = []  # latencies, seconds
    counts = [0]
    recording = [False]

    def on_msg(frame: list) -> None:
        if frame[3] == "msg" and recording[0]:
            received.append(time.time() - frame[4]["t"])
            counts[0] += 1

    # -- WebSocket, raw frames (masked) ------------------------------------------------------

    class WS:
        def __init__(self) -> None:
            s = socket.create_connection(("127.0.0.1", port))
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            key = base64.b64encode(os.urandom(16)).decode()
            s.sendall(
                f"GET /socket/websocket?vsn=2.0.0 HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
            )
            buf = b""
            while b"\r\n\r\n" not in buf:
                buf += s.recv(4096)
            assert buf.startswith(b"HTTP/1.1 101"), buf
            self.s, self.buf = s, buf.split(b"\r\n\r\n", 1)[1]

        def send(self, msg: list) -> None:
            data = json.dumps(msg).encode()
            mask = os.urandom(4)
            n = len(data)
            head = struct.pack("!BB", 0x81, 0x80 | n) if n < 126 else struct.pack("!BBH", 0x81, 0x80 | 126, n)
            self.s.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

        def recv(self) -> list:
            while True:
                if len(self.buf) >= 2:
                    n = self.buf[1] & 0x7F
                    off = 2
                    if n == 126:
                        if len(self.buf) < 4:
                            n = None
                        else:
                            n, off = struct.unpack("!H", self.buf[2:4])[0], 4
                    elif n == 127:
                        if len(self.buf) < 10:
                            n = None
                        else:
                            n, off = struct.unpack("!Q", self.buf[2:10])[0], 10
                    if n is not None and len(self.buf) >= off + n:
                        data, self.buf = self.buf[off : off + n], self.buf[off + n :]
                        return json.loads(data)
                chunk = self.s.recv(65536)
                if not chunk:
                    raise ConnectionError("closed")
                self.buf += chunk

    def ws_client(ready: gevent.event.Event, done: list) -> None:
        c = WS()
        c.send(["1", "1", TOPIC, "phx_join", {}])
        while c.recv()[3] != "phx_reply":
            pass
        done.append(1)
        if len(done) == n:
            ready.set()
        while True:
            on_msg(c.recv())

    # -- LongPoll, keep-alive HTTP ---------------------------------------------------------------

    def lp_client(ready: gevent.event.Event, done: list) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=window / 1000 + 30)

        def call(method: str, token: str | None, body: bytes | None = None) -> dict:
            q = urlencode({"vsn": "2.0.0", **({"token": token} if token else {})})
            headers = {"Content-Type": "application/x-ndjson"} if body else {}
            conn.request(method, f"/socket/longpoll?{q}", body=body, headers=headers)
            return json.loads(conn.getresponse().read())

        token = call("GET", None)["token"]
        assert call("POST", token, json.dumps(["1", "1", TOPIC, "phx_join", {}]).encode())["status"] == 200
        joined = False
        while True:
            answer = call("GET", token)
            for text in answer.get("messages", ()):
                frame = json.loads(text)
                if frame[3] == "phx_reply" and not joined:
                    joined = True
                    done.append(1)
                    if len(done) == n:
                        ready.set()
                else:
                    on_msg(frame)

    client = ws_client if transport == "websocket" else lp_client
    ready = gevent.event.Event()
    done: list = []
    started = time.monotonic()
    greenlets = []
    for i in range(n):
        greenlets.append(gevent.spawn(client, ready, done))
        if i % 50 == 49:
            gevent.sleep(0.01)
    if not ready.wait(120):
        print(json.dumps({"error": f"only {len(done)} of {n} joined"}), flush=True)
        return 1
    join_s = time.monotonic() - started
    print("JOINED", flush=True)
    sys.stdin.readline()  # the driver has read the server's RSS

    pub = WS()
    pub.send(["1", "1", TOPIC, "phx_join", {}])
    while pub.recv()[3] != "phx_reply":
        pass
    acks = gevent.event.Event()
    outstanding = [0]

    def pub_reader() -> None:
        while True:
            f = pub.recv()
            if f[3] == "phx_reply":
                outstanding[0] -= 1
                acks.set()

    gevent.spawn(pub_reader)

    def phase(paced: bool) -> dict:
        received.clear()
        counts[0] = 0
        recording[0] = True
        sent = 0
        t0 = time.time()
        ref = 10
        while time.time() - t0 < seconds:
            if paced:
                due = t0 + sent / rate
                if due > time.time():
                    gevent.sleep(due - time.time())
            else:
                while outstanding[0] >= 20:
                    acks.clear()
                    acks.wait(1)
            ref += 1
            outstanding[0] += 1
            pub.send(["1", str(ref), TOPIC, "broadcast", {"t": time.time()}])
            sent += 1
        expected = sent * n
        deadline = time.time() + 30
        while counts[0] < expected and time.time() < deadline:
            gevent.sleep(0.05)
        last = time.time()
        recording[0] = False
        lat = sorted(received)
        span = max(1e-9, (last - t0) if counts[0] < expected else (t0 + seconds if False else last) - t0)
        return {
            "sent": sent,
            "delivered": counts[0],
            "lost": expected - counts[0],
            "deliveries_per_s": round(counts[0] / span),
            "p50_ms": round(lat[len(lat) // 2] * 1000, 1) if lat else None,
            "p99_ms": round(lat[int(len(lat) * 0.99)] * 1000, 1) if lat else None,
        }

    paced = phase(True)
    gevent.sleep(1)
    saturated = phase(False)
    print(
        json.dumps({"transport": transport, "n": n, "join_s": round(join_s, 2), "paced": paced, "saturated": saturated}),
        flush=True,
    )
    return 0


# ------------------------------------------------------------------------------------------
# the driver


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def pin(cpu: str) -> list[str]:
    return ["taskset", "-c", cpu] if shutil.which("taskset") and (os.cpu_count() or 1) > 1 else []


def one_run(transport: str, n: int, args: argparse.Namespace) -> dict:
    server = subprocess.Popen([*pin("0"), sys.executable, __file__, "--serve"], stdout=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline()
        port = int(line.strip().rsplit(":", 1)[1])
        time.sleep(0.5)
        before = rss(server.pid)
        g = subprocess.Popen(
            [*pin("1"), sys.executable, __file__, "--gen", str(port), str(n), transport,
             str(args.rate), str(args.seconds), "10000"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            first = g.stdout.readline()
            if first.strip() != "JOINED":
                raise RuntimeError(f"generator: {first!r}")
            time.sleep(2)
            joined = rss(server.pid)
            g.stdin.write("go\n")
            g.stdin.flush()
            result = json.loads(g.stdout.readline())
        finally:
            g.kill()
            g.wait(10)
        result["kib_per_session"] = round((joined - before) / n / 1024, 1)
        return result
    finally:
        server.terminate()
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(5)


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        return serve()
    if len(sys.argv) > 1 and sys.argv[1] == "--gen":
        port, n, transport, rate, seconds, window = sys.argv[2:8]
        return gen(int(port), int(n), transport, float(rate), float(seconds), int(window))
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-n", type=int, default=1000)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--rate", type=float, default=20.0)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--json")
    args = p.parse_args()
    if args.quick:
        args.n, args.runs = 200, 1
    results: dict[str, list] = {"websocket": [], "longpoll": []}
    for run in range(args.runs):
        order = ["longpoll", "websocket"] if run % 2 == 0 else ["websocket", "longpoll"]
        for transport in order:
            r = one_run(transport, args.n, args)
            print(json.dumps(r), file=sys.stderr, flush=True)
            results[transport].append(r)

    def med(rows: list, *path: str) -> float:
        vals = []
        for r in rows:
            v = r
            for k in path:
                v = v[k]
            vals.append(v)
        vals.sort()
        return vals[len(vals) // 2]

    print(
        f"\nN = {args.n} sessions per transport, {args.runs} run(s), medians; paced {args.rate:g}/s, "
        f"saturated 20 in flight, {args.seconds:g} s each\n"
    )
    print("| figure | LongPoll | WebSocket | LongPoll / WebSocket |")
    print("|---|---|---|---|")
    rows = [
        ("connect+join all N (s)", ("join_s",)),
        ("server RSS per idle joined session (KiB)", ("kib_per_session",)),
        ("paced: p50 latency (ms)", ("paced", "p50_ms")),
        ("paced: p99 latency (ms)", ("paced", "p99_ms")),
        ("saturated: deliveries/s", ("saturated", "deliveries_per_s")),
        ("saturated: p99 latency (ms)", ("saturated", "p99_ms")),
        ("lost (paced + saturated)", None),
    ]
    for label, path in rows:
        if path is None:
            lp = sum(r["paced"]["lost"] + r["saturated"]["lost"] for r in results["longpoll"])
            ws = sum(r["paced"]["lost"] + r["saturated"]["lost"] for r in results["websocket"])
            print(f"| {label} | {lp} | {ws} | |")
            continue
        lp, ws = med(results["longpoll"], *path), med(results["websocket"], *path)
        ratio = f"{lp / ws:.2f}x" if ws else "-"
        print(f"| {label} | {lp} | {ws} | {ratio} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
