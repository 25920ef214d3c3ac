"""Blocking ``transport.client`` sockets as gevent greenlets, after ``monkey.patch_all()``.

    python tests/e2e/gevent_clients.py ws://127.0.0.1:PORT/socket N [websocket|longpoll]

Against ``tests/e2e/client_app.py``: N clients at once, each connects, joins
``room:g<i % 5>``, pushes ``echo`` five times, then (once every client has joined) shouts
once and pushes an event the channel never answers, with a 1 s timeout. Meanwhile a
ticker greenlet sleeps 10 ms at a time and records the longest gap between its wake-ups:
a driver that blocked the hub (a real thread's lock, an unpatched socket) shows up there.
Prints one JSON line with what every client got; exits 0.
"""

from gevent import monkey

monkey.patch_all()

import json  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import gevent  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from transport.client import PushTimeout, Socket  # noqa: E402

native_thread = monkey.get_original("threading", "get_ident")
ROOMS = 5
NOREPLY_TIMEOUT = 1.0


def main(url: str, n: int, transport: str) -> dict:
    gaps: list[float] = []
    threads: set[int] = set()  # the OS threads client code and callbacks ran on
    joined = threading.Barrier(n)  # a greenlet barrier, once patched

    def ticker() -> None:
        last = time.monotonic()
        while True:
            gevent.sleep(0.01)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    def client(i: int) -> dict:
        topic = f"room:g{i % ROOMS}"
        heard: list[int] = []

        def on_shout(message) -> None:
            threads.add(native_thread())
            heard.append(message.payload["from"])

        socket = Socket(url, transport=transport, timeout=20)
        socket.connect(timeout=30)
        try:
            channel = socket.channel(topic)
            channel.on("shouted", on_shout)
            result = {"join": channel.join(), "echoes": [channel.push("echo", {"i": i, "n": k}) for k in range(5)]}
            threads.add(native_thread())
            joined.wait(30)
            result["shout"] = channel.push("shout", {"from": i})
            try:
                channel.push("noreply", {}, timeout=NOREPLY_TIMEOUT)
                result["noreply"] = "answered"
            except PushTimeout:
                result["noreply"] = "timeout"
            expected = n // ROOMS + (1 if i % ROOMS < n % ROOMS else 0)
            deadline = time.monotonic() + 10
            while len(heard) < expected and time.monotonic() < deadline:
                gevent.sleep(0.01)
            result["heard"] = sorted(heard)
            return result
        finally:
            socket.disconnect()

    tick = gevent.spawn(ticker)
    started = time.monotonic()
    jobs = [gevent.spawn(client, i) for i in range(n)]
    gevent.joinall(jobs, timeout=60)
    elapsed = time.monotonic() - started
    tick.kill()
    return {
        "results": [job.value if job.successful() else {"error": repr(job.exception)} for job in jobs],
        "elapsed": elapsed,
        "ticks": len(gaps),
        "max_gap": max(gaps),
        "os_threads": len(threads),
        "main_thread": list(threads) == [native_thread()],
    }


if __name__ == "__main__":
    url, n = sys.argv[1], int(sys.argv[2])
    transport = sys.argv[3] if len(sys.argv) > 3 else "websocket"
    print(json.dumps(main(url, n, transport)), flush=True)
