#!/usr/bin/env bash
# Self-test of the load generator: builds it, then runs every scenario for about a second
# against a server on 127.0.0.1 and checks the JSON it prints.
#
#   bench/loadgen/selftest.sh                 # bench/app.py if it exists, else the inline server
#   bench/loadgen/selftest.sh --server inline # the minimal Python server below (stdlib only;
#                                             #  it also fragments join replies and sends pings)
#   bench/loadgen/selftest.sh --server app|baseline|refserver
#
# Ends with "N passed, N failed"; exits non-zero if anything failed. ~15-25 s.
set -u
HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
PY="${PYTHON:-python3}"
SERVER=""
while [ $# -gt 0 ]; do
  case "$1" in
    --server) SERVER="$2"; shift 2 ;;
    *) echo "usage: $0 [--server app|baseline|inline|refserver]" >&2; exit 2 ;;
  esac
done
if [ -z "$SERVER" ]; then
  if [ -f "$REPO/bench/app.py" ]; then SERVER=app; else SERVER=inline; fi
fi

TMP="$(mktemp -d)"
SRV_PID=""
cleanup() {
  if [ -n "$SRV_PID" ]; then kill "$SRV_PID" 2>/dev/null; wait "$SRV_PID" 2>/dev/null; fi
  rm -rf "$TMP"
}
trap cleanup EXIT

echo "== build"
CC="${CC:-gcc}"
$CC -O2 -std=gnu11 -Wall -Wextra -Werror -o "$TMP/loadgen" "$HERE/loadgen.c" || { echo "build failed"; echo "0 passed, 1 failed"; exit 1; }
LG="$TMP/loadgen"

# --- the minimal inline server (stdlib asyncio): the bench protocol, nothing more ---------
cat > "$TMP/inline_server.py" <<'PYEOF'
import asyncio, base64, hashlib, json, signal, struct, sys

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TOPICS = {}   # topic -> set of writers
STATS = {"pongs": 0, "fragmented": 0, "conns": 0}


def frame(op, data, fin=True):
    n = len(data)
    b0 = (0x80 if fin else 0) | op
    if n < 126:
        h = bytes([b0, n])
    elif n < 65536:
        h = struct.pack("!BBH", b0, 126, n)
    else:
        h = struct.pack("!BBQ", b0, 127, n)
    return h + data


def unmask(data, mask):
    n = len(data)
    if not n:
        return b""
    m = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(m, "big")).to_bytes(n, "big")


async def handle(reader, writer):
    STATS["conns"] += 1
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except Exception:
        writer.close()
        return
    key = None
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"sec-websocket-key:"):
            key = line.split(b":", 1)[1].strip()
    if not key or b"/socket/websocket" not in head.split(b"\r\n", 1)[0]:
        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        writer.close()
        return
    acc = base64.b64encode(hashlib.sha1(key + GUID).digest())
    writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 b"Sec-WebSocket-Accept: " + acc + b"\r\n\r\n")
    joined = set()

    def reply(jr, ref, topic, status, resp, fragmented=False):
        data = json.dumps([jr, ref, topic, "phx_reply", {"response": resp, "status": status}]).encode()
        if fragmented:  # exercise the client's reassembly: text(FIN=0) + ping + continuation(FIN=1)
            STATS["fragmented"] += 1
            k = len(data) // 2
            writer.write(frame(1, data[:k], fin=False) + frame(9, b"hi") + frame(0, data[k:]))
        else:
            writer.write(frame(1, data))

    try:
        while True:
            h = await reader.readexactly(2)
            op, n = h[0] & 15, h[1] & 127
            if n == 126:
                n = struct.unpack("!H", await reader.readexactly(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", await reader.readexactly(8))[0]
            if not h[1] & 0x80:
                break  # clients must mask
            mask = await reader.readexactly(4)
            data = unmask(await reader.readexactly(n), mask)
            if op == 8:
                writer.write(frame(8, data[:2]))
                break
            if op == 9:
                writer.write(frame(10, data))
                continue
            if op == 10:
                STATS["pongs"] += 1
                continue
            if op != 1:
                continue
            jr, ref, topic, event, payload = json.loads(data)
            if topic == "phoenix":
                reply(jr, ref, topic, "ok", {})
            elif event == "phx_join":
                TOPICS.setdefault(topic, set()).add(writer)
                joined.add(topic)
                reply(jr, ref, topic, "ok", {}, fragmented=True)
            elif topic not in joined:
                reply(jr, ref, topic, "error", {"reason": "unmatched topic"})
            elif event == "phx_leave":
                TOPICS.get(topic, set()).discard(writer)
                joined.discard(topic)
                reply(jr, ref, topic, "ok", {})
                writer.write(frame(1, json.dumps([jr, jr, topic, "phx_close", {}]).encode()))
            elif event == "ping":
                reply(jr, ref, topic, "ok", payload)
            elif event == "broadcast":
                msg = frame(1, json.dumps([None, None, topic, "msg", payload]).encode())
                for w in list(TOPICS.get(topic, ())):
                    w.write(msg)
                reply(jr, ref, topic, "ok", {})
            else:
                reply(jr, ref, topic, "error", {"reason": "unmatched event"})
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        for t in joined:
            TOPICS.get(t, set()).discard(writer)
        try:
            await writer.drain()
        except Exception:
            pass
        writer.close()


async def main():
    port = int(sys.argv[sys.argv.index("--port") + 1]) if "--port" in sys.argv else 0
    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=4096)
    print("listening on http://127.0.0.1:%d" % server.sockets[0].getsockname()[1], flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    try:
        await asyncio.wait_for(stop.wait(), 300)  # bounded: exits by itself after 5 min
    except asyncio.TimeoutError:
        pass
    print("inline-server: pongs=%(pongs)d fragmented=%(fragmented)d conns=%(conns)d" % STATS,
          file=sys.stderr, flush=True)


asyncio.run(main())
PYEOF

echo "== server: $SERVER"
case "$SERVER" in
  app)       SRV_CMD=("$PY" "$REPO/bench/app.py" --port 0) ;;
  baseline)  SRV_CMD=("$PY" "$REPO/bench/baseline.py" --port 0) ;;
  inline)    SRV_CMD=("$PY" "$TMP/inline_server.py" --port 0) ;;
  refserver) $CC -O2 -std=gnu11 -Wall -o "$TMP/refserver" "$HERE/refserver.c" || exit 1
             SRV_CMD=("$TMP/refserver" --port 0 --max-s 300) ;;
  *) echo "unknown server $SERVER" >&2; exit 2 ;;
esac
(cd "$REPO" && exec "${SRV_CMD[@]}") >"$TMP/server.out" 2>"$TMP/server.err" &
SRV_PID=$!
PORT=""
for _ in $(seq 1 150); do
  PORT="$(grep -o 'listening on http://127.0.0.1:[0-9]*' "$TMP/server.out" 2>/dev/null | grep -o '[0-9]*$' | head -1)"
  [ -n "$PORT" ] && break
  kill -0 "$SRV_PID" 2>/dev/null || break
  sleep 0.1
done
if [ -z "$PORT" ]; then
  echo "server did not start:"; cat "$TMP/server.out" "$TMP/server.err"
  echo "0 passed, 1 failed"; exit 1
fi
echo "   listening on port $PORT"

PASS=0
FAIL=0
# run NAME CHECK -- loadgen args...   (CHECK: a Python expression over d, the JSON object)
run() {
  local name="$1" check="$2"; shift 3
  local t0=$SECONDS
  timeout 60 "$LG" --port "$PORT" "$@" >"$TMP/$name.json" 2>"$TMP/$name.err"
  local rc=$?
  if "$PY" - "$TMP/$name.json" "$rc" "$check" <<'PYEOF'
import json, sys
path, rc, check = sys.argv[1], int(sys.argv[2]), sys.argv[3]
text = open(path).read()
lines = [l for l in text.splitlines() if l.strip()]
assert len(lines) == 1, "expected exactly one line on stdout, got %d" % len(lines)
d = json.loads(lines[0])
for k in ("cpu_user_s", "cpu_sys_s", "wall_s"):
    assert isinstance(d.get(k), (int, float)), "missing " + k
assert rc == 0, "exit status %d" % rc
assert d["aborted"] is False, "aborted: %s" % d.get("abort_reason")
assert eval(check, {}, {"d": d}), "check failed: " + check
keys = ["connect_join_per_s", "broadcast_reach_ms", "deliveries_per_s", "pushes_per_s", "replies_per_s",
        "cycles_per_s", "p50_ms", "p99_ms", "lost", "failed", "cpu_user_s", "cpu_sys_s", "wall_s", "window_cpu_share"]
print("   " + ", ".join("%s=%s" % (k, d[k]) for k in keys if k in d))
PYEOF
  then PASS=$((PASS + 1)); echo "ok   $name ($((SECONDS - t0)) s)"
  else FAIL=$((FAIL + 1)); echo "FAIL $name (rc=$rc)"; tail -5 "$TMP/$name.err"; cat "$TMP/$name.json"
  fi
}

run pingpong "d['joined'] == 20 and d['replies_per_s'] > 0 and d['p50_ms'] is not None and d['p99_ms'] >= d['p50_ms']" -- \
  pingpong --clients 20 --duration 1 --warmup 0.3
run fanout "d['subs_joined'] == 50 and d['deliveries_per_s'] > 0 and d['lost'] == 0 and d['window_pushes_acked'] > 0 and d['p99_ms'] is not None" -- \
  fanout --subs 50 --duration 1 --warmup 0.3
run fanout_paced "d['lost'] == 0 and 150 <= d['pushes_per_s'] <= 250 and abs(d['deliveries_per_s'] - 50 * d['pushes_per_s']) <= 50 * 20" -- \
  fanout --subs 50 --rate 200 --duration 1 --warmup 0.3
run connect "d['joined'] == 300 and d['failed'] == 0 and d['broadcast_reached'] == 300 and d['broadcast_reach_ms'] is not None and d['connect_join_per_s'] > 0" -- \
  connect --conns 300 --broadcast-reach --hold-s 0.5
if grep -qx HOLDING "$TMP/connect.err"; then PASS=$((PASS + 1)); echo "ok   connect printed HOLDING"
else FAIL=$((FAIL + 1)); echo "FAIL connect did not print HOLDING"; fi
run churn "d['completed'] == 300 and d['failed'] == 0 and d['cycles_per_s'] > 0" -- \
  churn --cycles 300 --concurrency 50

# loopback only
for bad in 10.0.0.1 example.com 0.0.0.0 ::1; do
  timeout 10 "$LG" --host "$bad" --port "$PORT" pingpong --clients 1 --duration 1 >"$TMP/refuse.out" 2>"$TMP/refuse.err"
  rc=$?
  if [ "$rc" = 2 ] && [ ! -s "$TMP/refuse.out" ] && grep -q "loopback only" "$TMP/refuse.err"; then
    PASS=$((PASS + 1)); echo "ok   refuses --host $bad"
  else FAIL=$((FAIL + 1)); echo "FAIL --host $bad was not refused (rc=$rc)"; fi
done

kill "$SRV_PID" 2>/dev/null; wait "$SRV_PID" 2>/dev/null; SRV_PID=""
if [ "$SERVER" = inline ]; then
  # the inline server fragments join replies with a ping in between: the client reassembled
  # them (the joins above succeeded) and answered the pings
  line="$(grep 'inline-server:' "$TMP/server.err")"
  echo "   $line"
  pongs="$(echo "$line" | sed -n 's/.*pongs=\([0-9]*\).*/\1/p')"
  if [ "${pongs:-0}" -gt 0 ]; then PASS=$((PASS + 1)); echo "ok   pings answered, fragmented replies reassembled"
  else FAIL=$((FAIL + 1)); echo "FAIL no pong came back"; fi
fi
echo "$PASS passed, $FAIL failed"
[ "$FAIL" = 0 ]
