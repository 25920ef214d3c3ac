"""How long a Prometheus scrape holds the server's event loop, with many sockets open.

    python bench/ops_scrape.py              # 15,000 WebSockets, each joined to a channel
    python bench/ops_scrape.py --sockets 2000

Serves ``bench/app.py``'s endpoint with ``phx-serve --metrics`` in a subprocess, opens
``--sockets`` WebSocket connections from this process (gevent, raw frames, each joining
``bench:<n % 100>``), then scrapes ``/metrics`` back to back. The server's own loop-lag
sampler (every 50 ms) reports the lag since the previous scrape, so the second of two
back-to-back scrapes reports the longest loop stall during the first one. Prints the
scrape times and those lags. Loopback only; the server is stopped at the end.
"""

from __future__ import annotations

import argparse
import base64
import os
import re
import socket as pysocket
import subprocess
import sys
import time

WS_SOCKETS = 'greenphx_phoenix_sockets{transport="websocket"}'
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sockets", type=int, default=15_000)
    parser.add_argument("--scrapes", type=int, default=5)
    args = parser.parse_args()

    from gevent import monkey

    monkey.patch_all()
    import gevent
    import gevent.pool

    with pysocket.socket() as s:
        s.bind(("127.0.0.1", 0))
        mport = s.getsockname()[1]
    env = dict(os.environ, PYTHONPATH=REPO)
    server = subprocess.Popen(
        [
            sys.executable,
            os.path.join(REPO, "bin", "phx-serve"),
            "bench.app:endpoint",
            "--port",
            "0",
            "--log-level",
            "warning",
            "--metrics",
            f"127.0.0.1:{mport}",
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        port = None
        for line in server.stdout:
            m = re.match(r"listening on http://[^:]+:(\d+)", line.strip())
            if m:
                port = int(m.group(1))
                break
        assert port, "the server did not start"
        conns = []

        def open_one(n: int) -> None:
            sock = pysocket.create_connection(("127.0.0.1", port), timeout=30)
            key = base64.b64encode(os.urandom(16)).decode()
            sock.sendall(
                (
                    f"GET /socket/websocket?vsn=2.0.0 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                    f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
                ).encode()
            )
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = sock.recv(4096)
                if not chunk:
                    raise ConnectionError("closed during the handshake")
                head += chunk
            assert head.startswith(b"HTTP/1.1 101"), head[:40]
            payload = f'["1","1","bench:{n % 100}","phx_join",{{}}]'.encode()
            mask = os.urandom(4)
            masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            sock.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + masked)
            sock.recv(4096)  # the join's reply
            conns.append(sock)

        started = time.monotonic()
        pool = gevent.pool.Pool(200)
        for n in range(args.sockets):
            pool.spawn(open_one, n)
        pool.join()
        print(f"{len(conns)} sockets joined in {time.monotonic() - started:.1f} s", flush=True)
        gevent.sleep(2)

        import urllib.request

        def scrape() -> tuple[float, dict[str, float]]:
            t = time.perf_counter()
            with urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics", timeout=60) as r:
                text = r.read().decode()
            took = time.perf_counter() - t
            values = {}
            for line in text.splitlines():
                if not line.startswith("#") and " " in line:
                    key, value = line.rsplit(" ", 1)
                    values[key] = float(value)
            return took, values

        scrape()  # warm up, and start a fresh lag window
        gevent.sleep(3)
        _took, idle = scrape()
        print(
            f"idle 3 s (no scrape): loop lag p99 {idle['greenphx_runtime_event_loop_lag_p99_milliseconds']:.1f} ms, "
            f"max {idle['greenphx_runtime_event_loop_lag_max_milliseconds']:.1f} ms",
            flush=True,
        )
        for k in range(args.scrapes):
            took, _ = scrape()
            _took2, after = scrape()  # its window is the first scrape's
            print(
                f"scrape {k + 1}: {took * 1000:.0f} ms; loop lag during it p99 "
                f"{after['greenphx_runtime_event_loop_lag_p99_milliseconds']:.1f} ms, max "
                f"{after['greenphx_runtime_event_loop_lag_max_milliseconds']:.1f} ms; sockets "
                f"{after.get(WS_SOCKETS, 0):.0f}, channels "
                f"{after['greenphx_phoenix_channels']:.0f}, processes {after['greenphx_runtime_processes']:.0f}",
                flush=True,
            )
            gevent.sleep(1)
        for sock in conns:
            sock.close()
    finally:
        server.terminate()
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
