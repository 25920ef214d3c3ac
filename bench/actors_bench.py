#!/usr/bin/env python3
"""Benchmark greenphx's ``actors`` runtime against a bare gevent baseline.

Usage::

    python bench/actors_bench.py            # full run (5 runs, ~2-3 min on 2 cores)
    python bench/actors_bench.py --quick    # smaller sizes, 3 runs (~30 s)
    python bench/actors_bench.py --runs 7 --only call,selective

Every scenario is measured twice in the same invocation: once with ``actors`` and once
with a *baseline* built from nothing but a gevent greenlet looping on a
``gevent.queue.Queue`` (for call round trips: the client puts ``(AsyncResult, msg)`` and
waits on the AsyncResult). Each (scenario, implementation, run) executes in a fresh
child interpreter (this file run with ``--child``), so the RSS, heap and hub state of one
measurement never leak into another; the two implementations alternate order from run
to run. The table reports the median over runs, the ratio actors/baseline of the
medians, and whether the target holds. This is a benchmark, not a test: it always exits 0
unless a child crashes or hangs (then 1).

Scenarios
  spawn      N processes (default 100k) that block idle in receive: seconds to spawn,
             seconds until all have reached receive, KiB of RSS growth per process
             (gc.collect() first). Torn down with a stop message; the child checks that
             every process is gone.                      target: KiB/proc <= 1.2x baseline
  send_1_1   one sender, one receiver, M messages (default 1M); timed until the receiver
             has taken the last one.                     target: msgs/s >= 0.5x baseline
  send_100   100 sender/receiver pairs, M messages in all.  target: msgs/s >= 0.5x baseline
  call       GenServer ``call`` round trip (20k calls, each timed): mean and p99 in us,
             vs the gevent ask.                          target: <= 2x baseline
  selective  receive of the one matching message behind 1,000 unmatched ones, vs scanning
             a deque of 1,000 with the same predicate and deleting the hit (the pure-Python
             ceiling). Figure only, no target.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from time import perf_counter

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
if REPO not in sys.path:
    sys.path.insert(0, REPO)
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from _harness import emit, fmt, print_report, rss_bytes, run_child, settle  # noqa: E402

IMPLS = ("actors", "baseline")

# blocks: how many times a child repeats a timing scenario (send/call/selective) back to
# back; it reports the median block, so one burst of noise on a shared box costs one block.
FULL = dict(runs=5, blocks=3, spawn_n=100_000, msgs=1_000_000, calls=20_000, sel_reps=1_000, sel_backlog=1_000)
QUICK = dict(runs=3, blocks=3, spawn_n=20_000, msgs=200_000, calls=5_000, sel_reps=300, sel_backlog=1_000)

CHILD_TIMEOUT = 120.0  # seconds; a child that takes longer is killed and the run marked failed


# ======================================================================================
# Measurements (run inside a child interpreter)
# ======================================================================================


class _Stop:
    """The stop message of the idle processes."""


STOP = _Stop()


def m_spawn(impl: str, n: int) -> dict:
    """Spawn n processes idle in receive; RSS growth per process; tear down; check clean."""
    import gevent

    state = {"ready": 0, "done": 0}

    if impl == "actors":
        import actors

        receive, spawn, send = actors.receive, actors.spawn, actors.send

        def idle() -> None:
            state["ready"] += 1
            while True:
                if receive() is STOP:
                    break
            state["done"] += 1

        def start(k: int) -> list:
            return [spawn(idle) for _ in range(k)]

        def stop(handles: list) -> None:
            for pid in handles:
                send(pid, STOP)

    else:
        from gevent.queue import Queue

        gspawn = gevent.spawn

        def idle(q) -> None:  # type: ignore[no-redef]
            state["ready"] += 1
            get = q.get
            while True:
                if get() is STOP:
                    break
            state["done"] += 1

        def start(k: int) -> list:
            qs = []
            append = qs.append
            for _ in range(k):
                q = Queue()
                gspawn(idle, q)
                append(q)
            return qs

        def stop(handles: list) -> None:
            for q in handles:
                q.put(STOP)

    def wait_for(key: str, k: int, limit: float = 60.0) -> None:
        deadline = perf_counter() + limit
        while state[key] < k:
            gevent.sleep(0)
            if perf_counter() > deadline:
                raise RuntimeError(f"only {state[key]}/{k} processes reached {key!r} in {limit}s")

    # Warm up: first-use allocations (hub, loop, code paths) must not be billed to the batch.
    warm = start(1000)
    wait_for("ready", 1000)
    stop(warm)
    wait_for("done", 1000)
    gevent.sleep(0)
    del warm
    state["ready"] = state["done"] = 0
    settle()

    rss0 = rss_bytes()
    t0 = perf_counter()
    handles = start(n)
    t_spawn = perf_counter() - t0
    wait_for("ready", n)
    t_ready = perf_counter() - t0
    gevent.sleep(0)  # let every greenlet switch out into its wait
    settle()
    rss1 = rss_bytes()

    t1 = perf_counter()
    stop(handles)
    wait_for("done", n)
    gevent.sleep(0)
    gevent.sleep(0)
    t_teardown = perf_counter() - t1
    del handles
    settle()
    rss2 = rss_bytes()

    left = None
    if impl == "actors":
        import actors

        left = len(actors.processes())
        if left:
            raise RuntimeError(f"{left} actors processes still alive after teardown")

    return {
        "spawn_s": t_spawn,
        "ready_s": t_ready,
        "kib_per_proc": (rss1 - rss0) / 1024.0 / n,
        "teardown_s": t_teardown,
        "rss_growth_mib": (rss1 - rss0) / 2**20,
        "rss_after_teardown_mib": (rss2 - rss0) / 2**20,
    }


def m_send(impl: str, pairs: int, total: int, blocks: int) -> dict:
    """`pairs` sender->receiver pairs move `total` messages; msgs/s until all received."""
    import gevent
    from gevent.event import Event

    per = total // pairs
    n_msgs = per * pairs

    if impl == "actors":
        import actors

        def run(k: int) -> float:
            receive, send, spawn = actors.receive, actors.send, actors.spawn
            done = Event()
            left = [pairs]

            def receiver() -> None:
                r = receive
                for _ in range(k):
                    r()
                left[0] -= 1
                if not left[0]:
                    done.set()

            def sender(pid) -> None:
                s = send
                for i in range(k):
                    s(pid, i)

            t0 = perf_counter()
            for _ in range(pairs):
                spawn(sender, spawn(receiver))
            if not done.wait(timeout=90):
                raise RuntimeError("receivers did not finish")
            dt = perf_counter() - t0
            gevent.sleep(0)
            return dt

    else:
        from gevent.queue import Queue

        def run(k: int) -> float:  # type: ignore[no-redef]
            done = Event()
            left = [pairs]

            def receiver(q) -> None:
                get = q.get
                for _ in range(k):
                    get()
                left[0] -= 1
                if not left[0]:
                    done.set()

            def sender(q) -> None:
                put = q.put
                for i in range(k):
                    put(i)

            t0 = perf_counter()
            for _ in range(pairs):
                q = Queue()
                gevent.spawn(receiver, q)
                gevent.spawn(sender, q)
            if not done.wait(timeout=90):
                raise RuntimeError("receivers did not finish")
            dt = perf_counter() - t0
            gevent.sleep(0)
            return dt

    run(max(1, min(per, 20_000 // pairs)))  # warm-up
    rates = []
    for _ in range(blocks):
        settle()
        rates.append(n_msgs / run(per))
    return {"msgs_per_s": statistics.median(rates), "blocks": rates, "msgs": n_msgs}


def _lat_stats(lat: list) -> dict:
    lat.sort()
    n = len(lat)
    p99 = lat[min(n - 1, int(round(0.99 * n)) - 1)]
    return {
        "mean_us": statistics.fmean(lat) * 1e6,
        "p50_us": lat[n // 2] * 1e6,
        "p99_us": p99 * 1e6,
    }


def _median_block(stats: list) -> dict:
    """Of several blocks' stats, the median of each figure."""
    return {k: statistics.median(b[k] for b in stats) for k in stats[0]}


def m_call(impl: str, n: int, blocks: int) -> dict:
    """n request/reply round trips, each timed with perf_counter."""
    import gevent

    pc = perf_counter
    out: dict = {}

    if impl == "actors":
        import actors

        class Echo(actors.GenServer):
            def handle_call(self, request, from_, state):
                return ("reply", request, state)

        pid = Echo.start()
        call = actors.call

        def bench(timeout_kw: dict) -> dict:
            for i in range(min(2000, n)):
                call(pid, i, **timeout_kw)
            stats = []
            for _ in range(blocks):
                settle()
                lat = [0.0] * n
                for i in range(n):
                    t = pc()
                    call(pid, i, **timeout_kw)
                    lat[i] = pc() - t
                stats.append(_lat_stats(lat))
            return _median_block(stats)

        out.update(bench({}))  # the default timeout (5 s), as applications call it
        nt = bench({"timeout": None})
        out["notimeout_mean_us"], out["notimeout_p99_us"] = nt["mean_us"], nt["p99_us"]
        actors.stop(pid)
    else:
        from gevent.event import AsyncResult
        from gevent.queue import Queue

        def server_ar(q) -> None:
            get = q.get
            while True:
                ar, msg = get()
                if ar is None:
                    return
                ar.set(msg)

        def server_q(q) -> None:
            get = q.get
            while True:
                rq, msg = get()
                if rq is None:
                    return
                rq.put(msg)

        q_ar, q_q = Queue(), Queue()
        g1, g2 = gevent.spawn(server_ar, q_ar), gevent.spawn(server_q, q_q)
        put_ar, put_q = q_ar.put, q_q.put

        def ask_ar(msg):
            ar = AsyncResult()
            put_ar((ar, msg))
            return ar.get()

        reply_q = Queue()

        def ask_q(msg):
            put_q((reply_q, msg))
            return reply_q.get()

        def bench(ask) -> dict:
            for i in range(min(2000, n)):
                ask(i)
            stats = []
            for _ in range(blocks):
                settle()
                lat = [0.0] * n
                for i in range(n):
                    t = pc()
                    ask(i)
                    lat[i] = pc() - t
                stats.append(_lat_stats(lat))
            return _median_block(stats)

        out.update(bench(ask_ar))
        rq = bench(ask_q)
        out["replyq_mean_us"], out["replyq_p99_us"] = rq["mean_us"], rq["p99_us"]
        q_ar.put((None, None))
        q_q.put((None, None))
        gevent.joinall([g1, g2], timeout=5)
    return out


class _Tag:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name


MATCH, NOISE = _Tag("match"), _Tag("noise")


def _is_match(m) -> bool:
    return m[0] is MATCH


def m_selective(impl: str, reps: int, backlog: int, blocks: int) -> dict:
    """Each rep: queue `backlog` unmatched + 1 matching message, time taking the match."""
    pc = perf_counter
    noise = [(NOISE, i) for i in range(backlog)]
    per_block: list = []

    if impl == "actors":
        import actors

        me = actors.self()  # the main greenlet, adopted as a process
        send, receive, flush = actors.send, actors.receive, actors.flush
        for block in range(blocks + 1):  # block 0 is a warm-up
            total = 0.0
            for i in range(reps if block else max(10, reps // 10)):
                flush()
                for m in noise:
                    send(me, m)
                send(me, (MATCH, i))
                t = pc()
                got = receive(_is_match)
                total += pc() - t
                assert got[1] == i
            if block:
                per_block.append(total / reps * 1e6)
        left = len(flush())
    else:
        from collections import deque

        for block in range(blocks + 1):  # block 0 is a warm-up
            total = 0.0
            for i in range(reps if block else max(10, reps // 10)):
                dq = deque(noise)
                dq.append((MATCH, i))
                t = pc()
                for idx, m in enumerate(dq):
                    if _is_match(m):
                        del dq[idx]
                        break
                total += pc() - t
                assert m[1] == i
            if block:
                per_block.append(total / reps * 1e6)
        left = len(dq)
    if left != backlog:
        raise RuntimeError(f"expected {backlog} unmatched messages left, found {left}")
    return {"us_per_receive": statistics.median(per_block), "blocks": per_block}


def child_main(scenario: str, impl: str, params: dict) -> None:
    if scenario == "spawn":
        res = m_spawn(impl, params["spawn_n"])
    elif scenario == "send_1_1":
        res = m_send(impl, 1, params["msgs"], params["blocks"])
    elif scenario == "send_100":
        res = m_send(impl, 100, params["msgs"], params["blocks"])
    elif scenario == "call":
        res = m_call(impl, params["calls"], params["blocks"])
    elif scenario == "selective":
        res = m_selective(impl, params["sel_reps"], params["sel_backlog"], params["blocks"])
    else:
        raise SystemExit(f"unknown scenario {scenario!r}")
    emit(res)


# ======================================================================================
# Orchestration (the parent process)
# ======================================================================================

SCENARIOS = ("spawn", "send_1_1", "send_100", "call", "selective")

# (scenario, metric key, label, unit, better, target) -- better: 'low' or 'high';
# target: (op, factor) compared against actors/baseline, or None.
ROWS = [
    ("spawn", "spawn_s", "spawn {spawn_n:,} idle: spawn", "s", "low", None),
    ("spawn", "ready_s", "spawn {spawn_n:,} idle: all in receive", "s", "low", None),
    ("spawn", "kib_per_proc", "spawn {spawn_n:,} idle: RSS per process", "KiB", "low", ("<=", 1.2)),
    ("spawn", "teardown_s", "spawn {spawn_n:,} idle: teardown", "s", "low", None),
    ("send_1_1", "msgs_per_s", "send 1->1 ({msgs:,} msgs)", "msg/s", "high", (">=", 0.5)),
    ("send_100", "msgs_per_s", "send 100->100 ({msgs:,} msgs)", "msg/s", "high", (">=", 0.5)),
    ("call", "mean_us", "call round trip ({calls:,}): mean", "us", "low", ("<=", 2.0)),
    ("call", "p99_us", "call round trip ({calls:,}): p99", "us", "low", ("<=", 2.0)),
    ("selective", "us_per_receive", "selective receive, {sel_backlog:,} ahead", "us", "low", None),
]

# Extra figures printed for context (no target).
EXTRA = [
    ("call", "actors", "notimeout_mean_us", "actors call(timeout=None): mean", "us"),
    ("call", "actors", "notimeout_p99_us", "actors call(timeout=None): p99", "us"),
    ("call", "baseline", "replyq_mean_us", "baseline ask via reply Queue: mean", "us"),
    ("call", "baseline", "replyq_p99_us", "baseline ask via reply Queue: p99", "us"),
    ("spawn", "actors", "rss_after_teardown_mib", "actors RSS left after teardown", "MiB"),
    ("spawn", "baseline", "rss_after_teardown_mib", "baseline RSS left after teardown", "MiB"),
]

BASELINE_NAME = {
    "spawn": "gevent.spawn + Queue per process",
    "send_1_1": "gevent Queue put/get",
    "send_100": "gevent Queue put/get",
    "call": "Queue.put((AsyncResult, msg)) + AsyncResult.get()",
    "selective": "deque scan + del (pure-Python ceiling)",
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller sizes and 3 runs")
    ap.add_argument("--runs", type=int, help="runs per scenario and implementation (>= 1)")
    ap.add_argument("--only", help="comma-separated subset of: " + ",".join(SCENARIOS))
    ap.add_argument("--spawn-n", type=int)
    ap.add_argument("--msgs", type=int)
    ap.add_argument("--calls", type=int)
    ap.add_argument("--blocks", type=int, help="timed blocks per child for send/call/selective (median kept)")
    ap.add_argument("--json", metavar="FILE", help="also write all raw figures to FILE")
    ap.add_argument("--child", nargs=3, metavar=("SCENARIO", "IMPL", "PARAMS"), help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.child:
        scenario, impl, params = args.child
        child_main(scenario, impl, json.loads(params))
        return 0

    params = dict(QUICK if args.quick else FULL)
    for key in ("runs", "blocks", "spawn_n", "msgs", "calls"):
        if getattr(args, key, None):
            params[key] = getattr(args, key)
    runs = max(1, params["runs"])
    scenarios = SCENARIOS
    if args.only:
        scenarios = tuple(s.strip() for s in args.only.split(","))
        bad = [s for s in scenarios if s not in SCENARIOS]
        if bad:
            ap.error(f"unknown scenario(s) {bad}; choose from {SCENARIOS}")

    import gevent
    import greenlet

    print(
        f"actors benchmark: python {sys.version.split()[0]}, gevent {gevent.__version__}, "
        f"greenlet {greenlet.__version__}, {os.cpu_count()} CPUs, "
        f"{'quick' if args.quick else 'full'} mode, {runs} runs, each in a fresh child interpreter"
    )
    print(
        "sizes: spawn {spawn_n:,} | messages {msgs:,} | calls {calls:,} | selective reps "
        "{sel_reps:,} with {sel_backlog:,} ahead | {blocks} timed blocks per child "
        "(send/call/selective; median block kept)".format(**params)
    )
    t_start = perf_counter()
    results: dict = {s: {i: [] for i in IMPLS} for s in scenarios}
    failed = False
    for r in range(runs):
        order = IMPLS if r % 2 == 0 else IMPLS[::-1]
        print(f"\n-- run {r + 1}/{runs} (order: {' then '.join(order)})", flush=True)
        for s in scenarios:
            got = {}
            for impl in order:
                res = run_child(__file__, s, impl, params, CHILD_TIMEOUT)
                failed |= res is None
                results[s][impl].append(res)
                got[impl] = res
            parts = []
            for sc, key, _label, unit, _, _ in ROWS:
                if sc != s:
                    continue
                a = (got["actors"] or {}).get(key)
                b = (got["baseline"] or {}).get(key)
                ratio = f"{a / b:.2f}x" if a is not None and b else "n/a"
                parts.append(f"{key}: actors {fmt(a, unit)} / baseline {fmt(b, unit)} {unit} = {ratio}")
            print(f"   {s:<10} " + "; ".join(parts), flush=True)
    elapsed = perf_counter() - t_start

    verdicts = print_report(results, ROWS, EXTRA, params, runs, IMPLS)
    print("\nbaselines: " + "; ".join(f"{s}: {BASELINE_NAME[s]}" for s in scenarios))
    if verdicts:
        met = sum(ok for _, ok in verdicts)
        print(f"\ntargets met: {met}/{len(verdicts)}" + "".join(f"\n  MISS: {line}" for line, ok in verdicts if not ok))
    print(f"total wall time {elapsed:.1f}s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"params": params, "results": results}, f, indent=1)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
