"""Shared benchmark harness: fresh child interpreters, RSS, and the medians table.

A benchmark script runs each (scenario, implementation, run) in a child interpreter (the
script itself with ``--child SCENARIO IMPL PARAMS``) that prints one ``RESULT {json}``
line, so the RSS, heap and hub state of one measurement never leak into another.
"""

from __future__ import annotations

import gc
import json
import os
import statistics
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def rss_bytes() -> int:
    """Resident set size now (not the peak): /proc/self/statm, else ru_maxrss."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def settle() -> None:
    """Collect garbage twice, so RSS readings see only what is still referenced."""
    gc.collect()
    gc.collect()


def emit(result: dict) -> None:
    """A child's answer to its parent."""
    sys.stdout.write("RESULT " + json.dumps(result) + "\n")
    sys.stdout.flush()


def run_child(script: str, scenario: str, impl: str, params: dict, timeout: float) -> dict | None:
    """Run one measurement in a fresh interpreter; its RESULT dict, or None if it failed."""
    cmd = [sys.executable, os.path.abspath(script), "--child", scenario, impl, json.dumps(params)]
    env = dict(os.environ, PYTHONHASHSEED="0")
    try:
        cp = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO, env=env)
    except subprocess.TimeoutExpired:
        print(f"    !! {scenario}/{impl}: child timed out after {timeout:.0f}s (killed)", flush=True)
        return None
    for line in cp.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])  # type: ignore[no-any-return]
    print(f"    !! {scenario}/{impl}: child failed (rc={cp.returncode})", flush=True)
    for line in (cp.stderr or cp.stdout).strip().splitlines()[-15:]:
        print("       " + line, flush=True)
    return None


def fmt(v: float | None, unit: str) -> str:
    """A figure formatted for its unit."""
    if v is None:
        return "n/a"
    if unit == "msg/s" or unit.endswith("/s"):
        return f"{v:,.0f}"
    if unit == "s":
        return f"{v:.3f}"
    if unit in ("KiB", "MiB"):
        return f"{v:.3f}"
    return f"{v:.2f}"


def median(xs: list) -> float | None:
    """Median of the figures that exist."""
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def print_report(results: dict, rows: list, extra: list, params: dict, runs: int, impls: tuple) -> list:
    """Print the medians table and the per-run figures; returns [(label, met)] per target.

    ``rows``: (scenario, key, label, unit, better, target) with target ``(op, factor)``
    judged on median(impls[0]) / median(impls[1]), or None. ``extra``: (scenario, impl,
    key, label, unit) printed for context.
    """
    ours, base = impls

    def series(s: str, impl: str, key: str) -> list:
        return [(x or {}).get(key) for x in results[s][impl]]

    header = f"{'scenario':<46} {ours:>13} {base:>13} {'unit':>6} {'ratio':>7} {'paired':>7} {'target':>9}  verdict"
    print(
        f"\n== medians over {runs} runs ==\n"
        f"ratio  = median({ours}) / median({base}), the figure judged against the target;\n"
        "paired = median over runs of that run's ratio (the two ran back to back)"
    )
    print(header)
    print("-" * len(header))
    verdicts = []
    for s, key, label, unit, _better, target in rows:
        if s not in results:
            continue
        sa, sb = series(s, ours, key), series(s, base, key)
        a, b = median(sa), median(sb)
        ratio = a / b if a is not None and b else None
        paired = median([x / y if x is not None and y else None for x, y in zip(sa, sb)])
        tgt, verdict = "-", "(no target)"
        if target is not None:
            op, k = target
            tgt = f"{op} {k}x"
            if ratio is None:
                verdict = "n/a"
            else:
                ok = ratio <= k if op == "<=" else ratio >= k
                margin = abs((k - ratio) / k * 100)
                if op == "<=":
                    how = f"{margin:.0f}% {'under' if ok else 'over'} limit"
                else:
                    how = f"{margin:.0f}% {'above' if ok else 'below'} floor"
                verdict = f"{'PASS' if ok else 'MISS'} ({how})"
                verdicts.append((label.format(**params), ok))
        print(
            f"{label.format(**params):<46} {fmt(a, unit):>13} {fmt(b, unit):>13} {unit:>6} "
            f"{(f'{ratio:.2f}x' if ratio is not None else 'n/a'):>7} "
            f"{(f'{paired:.2f}x' if paired is not None else 'n/a'):>7} {tgt:>9}  {verdict}"
        )
    extras = [e for e in extra if e[0] in results]
    if extras:
        print("\ncontext (medians, no target):")
        for s, impl, key, label, unit in extras:
            print(f"  {label:<44} {fmt(median(series(s, impl, key)), unit):>10} {unit}")

    print("\n== per-run figures ==")
    for s, key, label, unit, _, _ in rows:
        if s not in results:
            continue
        for impl in impls:
            vals = " ".join(f"{fmt(v, unit):>11}" for v in series(s, impl, key))
            print(f"{label.format(**params):<46} {impl:<10} {unit:>6} {vals}")
    for s, impl, key, label, unit in extras:
        vals = " ".join(f"{fmt(v, unit):>11}" for v in series(s, impl, key))
        print(f"{label:<57} {unit:>6} {vals}")
    return verdicts
