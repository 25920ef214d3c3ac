"""The Python client's throughput against greenphx, next to phoenix.js under Node (a benchmark, not a test).

    python bench/client_bench.py [--connects 200] [--pushes 3000]

One server (tests/e2e/client_app.py) on 127.0.0.1; one client process at a time, run one
after the other: the asyncio driver, the blocking driver, phoenix.js 1.7 under Node (when
``node`` and tests/e2e/js/node_modules are there). Each measures sequential connect+join
(+disconnect) per second and sequential push round trips (``echo``, answered by the
channel) per second. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "e2e"))

from serverproc import ServerProcess  # noqa: E402

from transport.client import AsyncSocket, Socket  # noqa: E402


async def bench_asyncio(url: str, connects: int, pushes: int) -> dict:
    start = time.perf_counter()
    for _ in range(connects):
        sock = AsyncSocket(url)
        await sock.connect()
        await sock.channel("room:bench").join()
        await sock.disconnect()
    connect_rate = connects / (time.perf_counter() - start)
    async with AsyncSocket(url) as sock:
        channel = sock.channel("room:bench")
        await channel.join()
        start = time.perf_counter()
        for i in range(pushes):
            await channel.push("echo", {"i": i})
        push_rate = pushes / (time.perf_counter() - start)
    return {"connect_join_per_s": connect_rate, "push_round_trips_per_s": push_rate}


def bench_blocking(url: str, connects: int, pushes: int) -> dict:
    start = time.perf_counter()
    for _ in range(connects):
        sock = Socket(url)
        sock.connect()
        sock.channel("room:bench").join()
        sock.disconnect()
    connect_rate = connects / (time.perf_counter() - start)
    with Socket(url) as sock:
        channel = sock.channel("room:bench")
        channel.join()
        start = time.perf_counter()
        for i in range(pushes):
            channel.push("echo", {"i": i})
        push_rate = pushes / (time.perf_counter() - start)
    return {"connect_join_per_s": connect_rate, "push_round_trips_per_s": push_rate}


def bench_node(port: int, connects: int, pushes: int) -> dict | None:
    if shutil.which("node") is None or not (ROOT / "tests/e2e/js/node_modules/phoenix").exists():
        return None
    out = subprocess.run(
        ["node", str(ROOT / "bench/client_bench.mjs"), str(port), str(connects), str(pushes)],
        capture_output=True, text=True, timeout=600, check=True,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connects", type=int, default=200)
    parser.add_argument("--pushes", type=int, default=3000)
    args = parser.parse_args()
    server = ServerProcess([sys.executable, str(ROOT / "tests/e2e/client_app.py"), "--port", "0"], name="client_app.py")
    try:
        url = f"{server.ws}/socket"
        rows = [
            ("greenphx asyncio driver", asyncio.run(bench_asyncio(url, args.connects, args.pushes))),
            ("greenphx blocking driver", bench_blocking(url, args.connects, args.pushes)),
            ("phoenix.js 1.7.23 (Node)", bench_node(server.port, args.connects, args.pushes)),
        ]
    finally:
        server.stop()
    print(f"| client | connect+join /s ({args.connects} sequential) | push round trips /s ({args.pushes} sequential) |")
    print("| --- | ---: | ---: |")
    for name, result in rows:
        if result is None:
            print(f"| {name} | not run (no node) | |")
        else:
            print(f"| {name} | {result['connect_join_per_s']:.0f} | {result['push_round_trips_per_s']:.0f} |")


if __name__ == "__main__":
    main()
