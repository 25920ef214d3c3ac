#!/usr/bin/env bash
# The load generator's own ceiling: it drives bench/loadgen/refserver (a minimal C server
# for the same protocol) with the server pinned to CPU 0 and the generator to CPU 1, as
# bench/run pins them, and prints per case the throughput, the generator's CPU share in the
# measurement window and its CPU cost per operation (so: the rate at which it would
# saturate its core, 1 / cost).
#
#   bench/loadgen/ceiling.sh [--runs 3] [--duration 5] [--server-cmd "python3 bench/app.py --port 0"]
#
# refserver runs twice: coalescing writes per connection (several frames per read at the
# generator: its best case) and with --no-coalesce (one send() per frame, so one frame per
# read: the generator's worst case, and what a Python server produces). --server-cmd adds a
# third server (anything printing "listening on http://127.0.0.1:PORT"). ~1-2 minutes.
set -u
HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
RUNS=3
DUR=5
EXTRA=""
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) RUNS="$2"; shift 2 ;;
    --duration) DUR="$2"; shift 2 ;;
    --server-cmd) EXTRA="$2"; shift 2 ;;
    *) echo "usage: $0 [--runs N] [--duration S] [--server-cmd CMD]" >&2; exit 2 ;;
  esac
done
TMP="$(mktemp -d)"
SRV_PID=""
cleanup() { if [ -n "$SRV_PID" ]; then kill "$SRV_PID" 2>/dev/null; wait "$SRV_PID" 2>/dev/null; fi; rm -rf "$TMP"; }
trap cleanup EXIT
CC="${CC:-gcc}"
$CC -O2 -std=gnu11 -Wall -Wextra -o "$TMP/loadgen" "$HERE/loadgen.c" || exit 1
$CC -O2 -std=gnu11 -Wall -Wextra -o "$TMP/refserver" "$HERE/refserver.c" || exit 1
PIN0="taskset -c 0"; PIN1="taskset -c 1"
if [ "$(nproc)" -lt 2 ] || ! command -v taskset >/dev/null; then PIN0=""; PIN1=""; echo "(not pinned)"; fi

start_server() {  # "$@": command
  (cd "$REPO" && exec $PIN0 "$@") >"$TMP/srv.out" 2>"$TMP/srv.err" &
  SRV_PID=$!
  PORT=""
  for _ in $(seq 1 150); do
    PORT="$(grep -o 'listening on http://127.0.0.1:[0-9]*' "$TMP/srv.out" 2>/dev/null | grep -o '[0-9]*$' | head -1)"
    [ -n "$PORT" ] && return 0
    sleep 0.1
  done
  echo "server did not start: $*"; cat "$TMP/srv.err"; return 1
}
stop_server() { kill "$SRV_PID" 2>/dev/null; wait "$SRV_PID" 2>/dev/null; SRV_PID=""; }

report() {  # label, json file
  python3 - "$1" "$2" <<'PYEOF'
import json, sys
label, path = sys.argv[1], sys.argv[2]
try:
    d = json.loads(open(path).read())
except Exception as e:
    print("%-44s  (no result: %s)" % (label, e)); sys.exit()
ops = d.get("replies_per_s") or d.get("deliveries_per_s") or 0
unit = "replies/s" if "replies_per_s" in d else "deliveries/s"
cpu = d["window_cpu_user_s"] + d["window_cpu_sys_s"]
n = ops * d["window_wall_s"]
us = cpu / n * 1e6 if n else float("nan")
print("%-44s %11.0f %-12s gen CPU %5.1f%% (user %.2f s, sys %.2f s)  %.2f us/op -> saturates at ~%.0fk/s  p50 %.2f ms  p99 %.2f ms%s"
      % (label, ops, unit, d["window_cpu_share"] * 100, d["window_cpu_user_s"], d["window_cpu_sys_s"], us,
         (1e3 / us) if us == us and us > 0 else float("nan"), d.get("p50_ms") or -1, d.get("p99_ms") or -1,
         "  lost %d" % d["lost"] if "lost" in d else ""))
PYEOF
}

cases() {  # server label
  for r in $(seq 1 "$RUNS"); do
    $PIN1 "$TMP/loadgen" --quiet --port "$PORT" pingpong --clients 100 --duration "$DUR" --warmup 1 >"$TMP/r.json" 2>/dev/null
    report "$1 pingpong 100 clients #$r" "$TMP/r.json"
    $PIN1 "$TMP/loadgen" --quiet --port "$PORT" fanout --subs 1000 --duration "$DUR" --warmup 1 >"$TMP/r.json" 2>/dev/null
    report "$1 fanout 1000 subs #$r" "$TMP/r.json"
  done
}

echo "== refserver (coalescing writes)"
start_server "$TMP/refserver" --port 0 --max-s 600 && { cases "refserver"; stop_server; }
echo "== refserver --no-coalesce (one send per frame)"
start_server "$TMP/refserver" --port 0 --max-s 600 --no-coalesce && { cases "refserver-nc"; stop_server; }
if [ -n "$EXTRA" ]; then
  echo "== $EXTRA"
  # shellcheck disable=SC2086
  start_server $EXTRA && { cases "extra"; stop_server; }
fi
