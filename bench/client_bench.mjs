// phoenix.js under Node, for bench/client_bench.py: connect+join rate and push round trips.
//   node bench/client_bench.mjs PORT CONNECTS PUSHES   -> one JSON line
import { createRequire } from "module";
const require = createRequire(new URL("../tests/e2e/js/package.json", import.meta.url));
const { Socket } = require("phoenix");
const WebSocket = require("ws");

const [port, connects, pushes] = process.argv.slice(2).map(Number);
const url = `ws://127.0.0.1:${port}/socket`;
const once = (fn) => new Promise((resolve, reject) => fn(resolve, reject));

async function connectJoin() {
  const socket = new Socket(url, { transport: WebSocket });
  socket.connect();
  const channel = socket.channel("room:bench", {});
  await once((ok, err) => channel.join().receive("ok", ok).receive("error", err).receive("timeout", err));
  return [socket, channel];
}

let t = performance.now();
for (let i = 0; i < connects; i++) {
  const [socket] = await connectJoin();
  socket.disconnect();  // its callback waits for teardown polling (150 ms steps): not counted
}
const connectRate = connects / ((performance.now() - t) / 1000);
const [socket, channel] = await connectJoin();
t = performance.now();
for (let i = 0; i < pushes; i++) {
  await once((ok, err) => channel.push("echo", { i }).receive("ok", ok).receive("error", err).receive("timeout", err));
}
const pushRate = pushes / ((performance.now() - t) / 1000);
console.log(JSON.stringify({ connect_join_per_s: connectRate, push_round_trips_per_s: pushRate }));
socket.disconnect(() => process.exit(0));
