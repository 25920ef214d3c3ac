#!/usr/bin/env python3
"""Cost of pykka actors that are ``actors`` processes (``actors._pykka.Actor``).

Usage::

    python bench/pykka_bench.py            # 100k actors, 3 runs
    python bench/pykka_bench.py --quick    # 20k actors, 1 run

Each scenario runs in a fresh child interpreter (this file with ``--child``) so RSS and
hub state never leak between measurements; the table shows the median over runs.
For scale, the same figures are taken for a bare ``actors.spawn`` process and a
GenServer (``call`` round trip) in the same way.

Scenarios
  start      N actors started with ``Actor.start()`` and idle in receive: seconds to start
             them, seconds until all have run ``on_start``, KiB of RSS per actor
             (gc.collect() first); then ``ref.stop(block=False)`` for all, seconds until
             every process is gone; then a fresh N and seconds to stop the *last* 5k
             (pykka's list registry made that 12.8 s with ThreadingActor).
  tell       one sender ``tell``s M messages to one actor; msgs/s until it has handled
             the last one (an ``ask`` behind them).
  ask        ``ref.ask(msg)`` round trip, each timed: mean and p99 in us; also via a
             proxy method call, and ``actors.call`` to the same actor.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
from time import perf_counter

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
if REPO not in sys.path:
    sys.path.insert(0, REPO)

FULL = dict(runs=3, n=100_000, last=5_000, msgs=300_000, asks=20_000)
QUICK = dict(runs=1, n=20_000, last=5_000, msgs=100_000, asks=5_000)


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _settle() -> None:
    gc.collect()
    gc.collect()


def m_start(n: int, last: int) -> dict:
    import gevent

    import actors
    from actors._pykka import Actor

    started = [0]

    class Idle(Actor):
        def on_start(self) -> None:
            started[0] += 1

        def on_receive(self, message):
            return message

    warm = [Idle.start() for _ in range(1000)]
    gevent.sleep(0)
    for r in warm:
        r.stop(block=False)
    gevent.sleep(0)
    del warm
    started[0] = 0
    _settle()

    rss0 = _rss_bytes()
    t0 = perf_counter()
    refs = [Idle.start() for _ in range(n)]
    t_start = perf_counter() - t0
    gevent.sleep(0)  # every actor runs on_start and blocks in receive
    t_ready = perf_counter() - t0
    assert started[0] == n, started[0]
    _settle()
    rss1 = _rss_bytes()

    t1 = perf_counter()
    futures = [r.stop(block=False) for r in refs]
    assert all(f.get(timeout=60) for f in futures)
    gevent.sleep(0)
    t_stop_all = perf_counter() - t1
    assert len(actors.processes()) <= 1, len(actors.processes())  # the main greenlet
    del refs, futures
    _settle()

    refs = [Idle.start() for _ in range(n)]
    gevent.sleep(0)
    t2 = perf_counter()
    futures = [r.stop(block=False) for r in refs[-last:]]
    assert all(f.get(timeout=60) for f in futures)
    t_stop_last = perf_counter() - t2
    for r in refs[:-last]:
        r.stop(block=False)
    gevent.sleep(0)

    return {
        "start_s": t_start,
        "ready_s": t_ready,
        "us_per_start": t_ready / n * 1e6,
        "kib_per_actor": (rss1 - rss0) / 1024.0 / n,
        "stop_all_s": t_stop_all,
        f"stop_last_{last}_s": t_stop_last,
    }


def m_spawn_baseline(n: int) -> dict:
    import gevent

    import actors

    def idle() -> None:
        actors.receive()

    warm = [actors.spawn(idle) for _ in range(1000)]
    gevent.sleep(0)
    for p in warm:
        actors.exit(p, "kill")
    gevent.sleep(0)
    del warm
    _settle()
    rss0 = _rss_bytes()
    t0 = perf_counter()
    pids = [actors.spawn(idle) for _ in range(n)]
    gevent.sleep(0)
    t_ready = perf_counter() - t0
    _settle()
    rss1 = _rss_bytes()
    for p in pids:
        actors.send(p, "stop")
    gevent.sleep(0)
    return {"ready_s": t_ready, "us_per_start": t_ready / n * 1e6, "kib_per_actor": (rss1 - rss0) / 1024.0 / n}


def m_tell(msgs: int) -> dict:
    from actors._pykka import Actor

    class Sink(Actor):
        def __init__(self) -> None:
            super().__init__()
            self.n = 0

        def on_receive(self, message):
            self.n += 1
            return self.n

    ref = Sink.start()
    ref.ask("warm", timeout=5)
    t0 = perf_counter()
    tell = ref.tell
    for i in range(msgs):
        tell(i)
    assert ref.ask("last", timeout=60) == msgs + 2
    dt = perf_counter() - t0
    ref.stop()
    return {"tell_msgs_per_s": msgs / dt}


def m_ask(asks: int) -> dict:
    import actors
    from actors._pykka import Actor

    class Echo(Actor):
        def on_receive(self, message):
            return message

        def echo(self, x):
            return x

    ref = Echo.start()
    proxy = ref.proxy()
    for i in range(1000):
        ref.ask(i)

    def timed(fn) -> list:
        out = []
        for i in range(asks):
            t = perf_counter()
            fn(i)
            out.append(perf_counter() - t)
        out.sort()
        return out

    ask = ref.ask
    a = timed(ask)
    p = timed(lambda i: proxy.echo(i).get())
    pid = ref.pid
    c = timed(lambda i: actors.call(pid, i))
    ref.stop()

    # A GenServer call round trip, for scale.
    class Srv(actors.GenServer):
        def handle_call(self, request, from_, state):
            return ("reply", request, state)

    spid = Srv.start(None)
    for i in range(1000):
        actors.call(spid, i)
    g = timed(lambda i: actors.call(spid, i))
    actors.stop(spid)

    def stats(xs: list, name: str) -> dict:
        return {f"{name}_mean_us": statistics.fmean(xs) * 1e6, f"{name}_p99_us": xs[int(len(xs) * 0.99)] * 1e6}

    return {**stats(a, "ask"), **stats(p, "proxy"), **stats(c, "call_actor"), **stats(g, "call_genserver")}


def child(args: argparse.Namespace) -> None:
    cfg = json.loads(args.child)
    fn = {"start": m_start, "spawn": m_spawn_baseline, "tell": m_tell, "ask": m_ask}[cfg.pop("scenario")]
    print(json.dumps(fn(**cfg)))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--child")
    args = ap.parse_args()
    if args.child:
        child(args)
        return
    c = QUICK if args.quick else FULL
    plan = [
        {"scenario": "start", "n": c["n"], "last": c["last"]},
        {"scenario": "spawn", "n": c["n"]},
        {"scenario": "tell", "msgs": c["msgs"]},
        {"scenario": "ask", "asks": c["asks"]},
    ]
    results: dict[str, list[float]] = {}
    for _ in range(c["runs"]):
        for cfg in plan:
            out = subprocess.run(
                [sys.executable, __file__, "--child", json.dumps(cfg)],
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
            if out.returncode != 0:
                print(out.stderr, file=sys.stderr)
                sys.exit(1)
            prefix = "baseline_spawn_" if cfg["scenario"] == "spawn" else ""
            for k, v in json.loads(out.stdout.strip().splitlines()[-1]).items():
                results.setdefault(prefix + k, []).append(v)
    print(f"pykka actors on actors processes: n={c['n']}, runs={c['runs']} (median)")
    for k, vs in results.items():
        print(f"  {k:32s} {statistics.median(vs):12.3f}")


if __name__ == "__main__":
    main()
