// Phoenix's official JavaScript Presence (the `phoenix` npm package) under Node, driven by
// commands on stdin, one JSON object per line; it answers each with one JSON line on stdout.
//
//   node tests/e2e/js/presence_client.mjs PORT [--host 127.0.0.1] [--timeout-ms N]
//
// Commands (every one answers {"id": <the command's id>, "ok": true|false, ...}):
//   {"cmd":"connect", "socket":"s1"}                         a new Socket, connected
//   {"cmd":"join", "socket":"s1", "chan":"c1", "topic":..., "params":{...}}
//        a channel with a Presence on it; answers once the join is ok and a sync happened
//   {"cmd":"push", "chan":"c1", "event":..., "payload":{...}}   answers with the reply status
//        (with "wait": false at once, with the channel's current joinRef)
//   {"cmd":"list", "chan":"c1"}       the Presence's list: {"list": {key: [phx_ref, ...]}, "metas": {...}}
//   {"cmd":"log", "chan":"c1"}        what the channel saw: [{"event": "state"|"diff", "pending": bool, "joinRef"}]
//   {"cmd":"leave", "chan":"c1"}  /  {"cmd":"disconnect", "socket":"s1"}
//   {"cmd":"wait_rejoin", "chan":"c1", "before": joinRef}   answers once the channel has
//        rejoined (a joinRef other than "before") and synced that join's state
// The test (tests/e2e/test_presence_js.py) holds the assertions. The script exits when stdin
// closes, or after --timeout-ms (60 s) in any case.

import { Socket, Presence } from "phoenix";
import WebSocket from "ws";
import readline from "node:readline";

const argv = process.argv.slice(2);
const opts = { port: Number(argv[0]), host: "127.0.0.1", timeoutMs: 60000 };
for (let i = 1; i < argv.length; i++) {
  if (argv[i] === "--host") opts.host = argv[++i];
  else if (argv[i] === "--timeout-ms") opts.timeoutMs = Number(argv[++i]);
}
if (!opts.port) {
  process.stderr.write("usage: node presence_client.mjs PORT [--host H] [--timeout-ms N]\n");
  process.exit(2);
}
setTimeout(() => process.exit(3), opts.timeoutMs).unref();

const sockets = new Map();
const chans = new Map(); // id -> {channel, presence, log, syncs, waiters}

function out(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

function snapshot(presence) {
  const list = {};
  const metas = {};
  presence.list((key, entry) => {
    list[key] = entry.metas.map((m) => m.phx_ref);
    metas[key] = entry.metas;
  });
  return { list, metas };
}

function afterSync(c, count, resolve) {
  if (c.syncs >= count) resolve();
  else c.waiters.push({ count, resolve });
}

async function run(cmd) {
  switch (cmd.cmd) {
    case "connect": {
      const socket = new Socket(`ws://${opts.host}:${opts.port}/socket`, {
        transport: WebSocket,
        rejoinAfterMs: () => 100,
        reconnectAfterMs: () => 100,
      });
      sockets.set(cmd.socket, socket);
      await new Promise((resolve) => {
        socket.onOpen(resolve);
        socket.connect();
      });
      return {};
    }
    case "join": {
      const socket = sockets.get(cmd.socket);
      const channel = socket.channel(cmd.topic, cmd.params || {});
      const presence = new Presence(channel);
      const c = { channel, presence, log: [], syncs: 0, waiters: [] };
      chans.set(cmd.chan, c);
      // Record what arrives before Presence handles it (bindings run in order; ours first).
      channel.on("presence_state", () => c.log.push({ event: "state", pending: presence.inPendingSyncState(), joinRef: channel.joinRef() }));
      channel.on("presence_diff", () => c.log.push({ event: "diff", pending: presence.inPendingSyncState(), joinRef: channel.joinRef() }));
      presence.onSync(() => {
        c.syncs += 1;
        const ready = c.waiters.filter((w) => c.syncs >= w.count);
        c.waiters = c.waiters.filter((w) => c.syncs < w.count);
        for (const w of ready) w.resolve();
      });
      await new Promise((resolve, reject) => {
        channel
          .join()
          .receive("ok", resolve)
          .receive("error", (r) => reject(new Error("join refused: " + JSON.stringify(r))))
          .receive("timeout", () => reject(new Error("join timed out")));
      });
      await new Promise((resolve) => afterSync(c, 1, resolve));
      return snapshot(presence);
    }
    case "push": {
      const c = chans.get(cmd.chan);
      if (cmd.wait === false) {
        const joinRef = c.channel.joinRef();
        c.channel.push(cmd.event, cmd.payload || {});
        return { joinRef };
      }
      const status = await new Promise((resolve) => {
        c.channel
          .push(cmd.event, cmd.payload || {})
          .receive("ok", () => resolve("ok"))
          .receive("error", () => resolve("error"))
          .receive("timeout", () => resolve("timeout"));
      });
      return { status };
    }
    case "list":
      return snapshot(chans.get(cmd.chan).presence);
    case "log":
      return { log: chans.get(cmd.chan).log };
    case "wait_rejoin": {
      const c = chans.get(cmd.chan);
      const before = cmd.before;
      const start = Date.now();
      while (c.channel.joinRef() === before || c.presence.inPendingSyncState() || !c.channel.isJoined()) {
        if (Date.now() - start > 10000) throw new Error("no rejoin within 10 s");
        await new Promise((r) => setTimeout(r, 20));
      }
      return snapshot(c.presence);
    }
    case "leave": {
      const c = chans.get(cmd.chan);
      await new Promise((resolve) => c.channel.leave().receive("ok", resolve).receive("timeout", resolve));
      return {};
    }
    case "disconnect": {
      const socket = sockets.get(cmd.socket);
      await new Promise((resolve) => socket.disconnect(resolve));
      return {};
    }
    default:
      throw new Error("unknown command " + cmd.cmd);
  }
}

const rl = readline.createInterface({ input: process.stdin });
rl.on("line", async (line) => {
  let cmd;
  try {
    cmd = JSON.parse(line);
  } catch (e) {
    out({ ok: false, error: "bad json: " + line });
    return;
  }
  try {
    const result = await run(cmd);
    out({ id: cmd.id, ok: true, ...result });
  } catch (e) {
    out({ id: cmd.id, ok: false, error: String(e && e.stack ? e.stack : e) });
  }
});
rl.on("close", () => process.exit(0));
