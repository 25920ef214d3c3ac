// Drives Phoenix's official JavaScript client (the `phoenix` npm package) under Node
// against a greenphx endpoint, and reports everything it sees as JSON lines on stdout.
//
//   node tests/e2e/js/phoenix_client.mjs PORT [--vsn 2.0.0|1.0.0] [--topic room:x]
//        [--user-id ID] [--heartbeat-ms N] [--timeout-ms N] [--host 127.0.0.1]
//
// The script only drives the scenario and waits for each step; the assertions live in
// tests/e2e/test_phoenix_js.py, which reads these lines. One JSON object per line:
//
//   {"kind":"step", "name":..., ...}      a step of the scenario the client observed
//   {"kind":"frame", "dir":"in"|"out", "data":..., "raw":...}   every WebSocket frame
//   {"kind":"log", "log_kind":..., "msg":..., "data":...}       the client's own logger
//   {"kind":"result", "ok":true|false, "reason":...}            always the last line
//
// Exit status: 0 when every step was observed, 1 when a step failed or timed out
// (the result line says which), 2 on a usage error. The whole run is bounded by
// --timeout-ms (15 s by default): the script always stops by itself.
//
// vsn 2.0.0 is the client as shipped. vsn 1.0.0 is the same client with the V1 framing
// (JSON objects, as Phoenix's pre-1.4 client sent) plugged in through its documented
// `encode`/`decode` options, so the server's V1 serializer is driven by the official
// channel, push, rejoin and heartbeat logic too.

import { Socket } from "phoenix";
import WebSocket from "ws";

// ---------------------------------------------------------------------------------------
// arguments

function usage(message) {
  process.stderr.write(`phoenix_client.mjs: ${message}\n`);
  process.stderr.write(
    "usage: node phoenix_client.mjs PORT [--vsn 2.0.0|1.0.0] [--topic room:x] " +
      "[--user-id ID] [--heartbeat-ms N] [--timeout-ms N] [--host 127.0.0.1]\n",
  );
  process.exit(2);
}

const argv = process.argv.slice(2);
const opts = {
  port: null,
  vsn: "2.0.0",
  topic: `room:js-e2e-${process.pid}`,
  userId: "js-e2e",
  heartbeatMs: 30000,
  timeoutMs: 15000,
  host: "127.0.0.1",
};
for (let i = 0; i < argv.length; i++) {
  const arg = argv[i];
  const value = () => {
    if (i + 1 >= argv.length) usage(`${arg} needs a value`);
    return argv[++i];
  };
  if (arg === "--vsn") opts.vsn = value();
  else if (arg === "--topic") opts.topic = value();
  else if (arg === "--user-id") opts.userId = value();
  else if (arg === "--heartbeat-ms") opts.heartbeatMs = Number(value());
  else if (arg === "--timeout-ms") opts.timeoutMs = Number(value());
  else if (arg === "--host") opts.host = value();
  else if (opts.port === null && /^\d+$/.test(arg)) opts.port = Number(arg);
  else usage(`unexpected argument ${JSON.stringify(arg)}`);
}
if (opts.port === null) usage("PORT is required");
if (!["1.0.0", "2.0.0"].includes(opts.vsn)) usage(`unsupported --vsn ${opts.vsn}`);
for (const key of ["heartbeatMs", "timeoutMs"]) {
  if (!Number.isFinite(opts[key]) || opts[key] <= 0) usage(`bad value for ${key}`);
}

// ---------------------------------------------------------------------------------------
// output

const started = Date.now();
let finished = false;

// JSON-safe copy of anything the client hands us (close events, errors, circular objects).
function plain(value, depth = 0, seen = new WeakSet()) {
  if (value === null || value === undefined) return value ?? null;
  const type = typeof value;
  if (type === "string" || type === "boolean") return value;
  if (type === "number") return Number.isFinite(value) ? value : String(value);
  if (type === "bigint" || type === "symbol" || type === "function") return String(value);
  if (value instanceof Error) return { error: value.name, message: value.message };
  if (ArrayBuffer.isView(value) || value instanceof ArrayBuffer) {
    return { binary: Buffer.from(value.buffer ?? value).toString("base64") };
  }
  if (depth > 6 || seen.has(value)) return "[…]";
  seen.add(value);
  if (Array.isArray(value)) return value.map((v) => plain(v, depth + 1, seen));
  // ws's CloseEvent / ErrorEvent keep their fields behind getters: pick the useful ones.
  const out = {};
  for (const key of ["type", "code", "reason", "wasClean", "message"]) {
    if (key in value && typeof value[key] !== "function" && typeof value[key] !== "object") {
      out[key] = value[key];
    }
  }
  if (Object.keys(out).length && !Object.keys(value).length) return out;
  for (const [key, v] of Object.entries(value)) {
    if (key === "target" || key.startsWith("_")) continue;
    out[key] = plain(v, depth + 1, seen);
  }
  return out;
}

function emit(kind, fields) {
  if (finished && kind !== "result") return;
  const line = JSON.stringify({ kind, t: Date.now() - started, ...plain(fields) });
  process.stdout.write(line + "\n");
}

function step(name, fields = {}) {
  emit("step", { name, ...fields });
}

function finish(ok, reason) {
  if (finished) return;
  emit("result", { ok, reason: reason ?? null });
  finished = true;
  process.stdout.write("", () => process.exit(ok ? 0 : 1));
}

// ---------------------------------------------------------------------------------------
// a WebSocket (from `ws`) that reports every frame, in both directions

class RecordingWebSocket extends WebSocket {
  constructor(url, protocols) {
    super(url, protocols);
    step("ws_connecting", { url });
    // Registered before the client's onmessage, so a frame is reported before what it
    // triggers in the client.
    this.on("message", (data, isBinary) => {
      frame("in", isBinary ? data : data.toString("utf8"), isBinary);
    });
    this.on("close", (code, reason) => {
      step("ws_closed", { code, reason: reason.toString("utf8") });
    });
  }

  send(data, ...rest) {
    frame("out", data, typeof data !== "string");
    return super.send(data, ...rest);
  }
}

const framesIn = []; // {topic, event, ref} of every text frame from the server

function frame(dir, data, isBinary) {
  if (isBinary) {
    emit("frame", { dir, binary: true, raw: Buffer.from(data).toString("base64") });
    return;
  }
  let parsed = null;
  try {
    parsed = JSON.parse(data);
  } catch (err) {
    parsed = { unparsable: String(err.message) };
  }
  emit("frame", { dir, raw: data, data: parsed });
  if (dir === "in") {
    const [, ref, topic, event] = Array.isArray(parsed) ? parsed : [];
    framesIn.push(
      Array.isArray(parsed)
        ? { topic, event, ref }
        : { topic: parsed?.topic, event: parsed?.event, ref: parsed?.ref },
    );
  }
}

// ---------------------------------------------------------------------------------------
// vsn 1.0.0 framing: JSON objects, as Phoenix's pre-1.4 client sent and expected

const v1 = {
  encode(msg, callback) {
    const { join_ref, ref, topic, event, payload } = msg;
    return callback(JSON.stringify({ topic, event, payload, ref, join_ref }));
  },
  decode(raw, callback) {
    const { topic, event, payload, ref } = JSON.parse(raw);
    return callback({ join_ref: null, ref, topic, event, payload });
  },
};

// ---------------------------------------------------------------------------------------
// waiting for what the client observes

const waiters = [];
const seen = []; // every observation: {name, ...}

function observe(name, fields = {}) {
  const entry = { name, ...fields };
  seen.push(entry);
  step(name, fields);
  for (const waiter of [...waiters]) {
    if (waiter.match(entry)) {
      waiters.splice(waiters.indexOf(waiter), 1);
      clearTimeout(waiter.timer);
      waiter.resolve(entry);
    }
  }
}

// Resolves with the first observation (already seen after `since`, or future) matching.
function waitFor(description, match, { since = 0, timeoutMs = 5000 } = {}) {
  for (let i = since; i < seen.length; i++) {
    if (match(seen[i])) return Promise.resolve(seen[i]);
  }
  return new Promise((resolve, reject) => {
    const waiter = { description, match, resolve };
    waiter.timer = setTimeout(() => {
      waiters.splice(waiters.indexOf(waiter), 1);
      reject(new Error(`timed out after ${timeoutMs} ms waiting for ${description}`));
    }, timeoutMs);
    waiters.push(waiter);
  });
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// ---------------------------------------------------------------------------------------
// the scenario

const endpoint = `ws://${opts.host}:${opts.port}/ws`;
const socketOpts = {
  transport: RecordingWebSocket,
  params: { user_id: opts.userId },
  vsn: opts.vsn,
  timeout: 5000,
  heartbeatIntervalMs: opts.heartbeatMs,
  // Phoenix's defaults (1 s, 2 s, 5 s ...) work too; shorter keeps the test quick.
  rejoinAfterMs: () => 200,
  reconnectAfterMs: () => 200,
  logger: (logKind, msg, data) => emit("log", { log_kind: logKind, msg, data }),
};
if (opts.vsn === "1.0.0") {
  socketOpts.encode = v1.encode;
  socketOpts.decode = v1.decode;
}

async function scenario() {
  const socket = new Socket(endpoint, socketOpts);
  step("start", { endpoint: socket.endPointURL(), vsn: opts.vsn, topic: opts.topic });

  socket.onOpen(() => observe("socket_open"));
  socket.onClose((event) =>
    observe("socket_close", { code: event?.code ?? null, reason: event?.reason ?? null }),
  );
  socket.onError((error) => observe("socket_error", { error: error?.message ?? String(error) }));

  socket.connect();
  await waitFor("the socket to open", (e) => e.name === "socket_open");

  // Heartbeat: the client's ping() sends phoenix/heartbeat and waits for its reply.
  const pinged = socket.ping((rtt) => observe("heartbeat_reply", { rtt }));
  if (!pinged) throw new Error("socket.ping() refused: socket not connected");
  await waitFor("the heartbeat reply", (e) => e.name === "heartbeat_reply");

  const channel = socket.channel(opts.topic, { user: "alice" });
  const current = () => channel.joinRef() ?? null;
  for (const event of ["joined", "user_entered", "new_msg", "you_left"]) {
    channel.on(event, (payload, ref, joinRef) =>
      observe("event", { event, payload, ref: ref ?? null, join_ref: joinRef ?? null }),
    );
  }
  channel.onError((reason) => observe("channel_error", { reason, join_ref: current() }));
  channel.onClose((reason) => observe("channel_close", { reason }));

  let joins = 0;
  channel
    .join()
    .receive("ok", (response) =>
      observe("join_reply", { status: "ok", response, attempt: ++joins, join_ref: current() }),
    )
    .receive("error", (response) =>
      observe("join_reply", { status: "error", response, attempt: ++joins, join_ref: current() }),
    )
    .receive("timeout", () =>
      observe("join_reply", { status: "timeout", attempt: ++joins, join_ref: current() }),
    );

  const joinReply = (attempt) => (e) => e.name === "join_reply" && e.attempt === attempt;
  const eventOf = (event, joinRef) => (e) =>
    e.name === "event" && e.event === event && (opts.vsn === "1.0.0" || e.join_ref === joinRef);

  // 1. join: ok reply, then "joined" pushed and "user_entered" broadcast
  let mark = seen.length;
  let reply = await waitFor("the join reply", joinReply(1));
  if (reply.status !== "ok") throw new Error(`join answered ${reply.status}`);
  let joinRef = reply.join_ref;
  await waitFor('"joined" after the join', eventOf("joined", joinRef), { since: mark });
  await waitFor('"user_entered" after the join', eventOf("user_entered", joinRef), { since: mark });

  // 2. new_msg: ok reply, and the broadcast comes back through handle_out
  const pushAndAwait = async (label, body) => {
    const at = seen.length;
    channel
      .push("new_msg", { body })
      .receive("ok", (response) => observe("push_reply", { label, status: "ok", response }))
      .receive("error", (response) => observe("push_reply", { label, status: "error", response }))
      .receive("timeout", () => observe("push_reply", { label, status: "timeout" }));
    const answer = await waitFor(`the reply to new_msg (${label})`, (e) => {
      return e.name === "push_reply" && e.label === label;
    });
    if (answer.status !== "ok") throw new Error(`new_msg (${label}) answered ${answer.status}`);
    await waitFor(
      `the new_msg broadcast (${label})`,
      (e) => eventOf("new_msg", joinRef)(e) && e.payload && e.payload.body === body,
      { since: at },
    );
  };
  await pushAndAwait("first", "hi!");

  // 3. boom: the channel crashes, the client sees phx_error and rejoins by itself
  mark = seen.length;
  channel
    .push("boom", {}, 10000)
    .receive("ok", (response) => observe("boom_reply", { status: "ok", response }))
    .receive("error", (response) => observe("boom_reply", { status: "error", response }));
  await waitFor("the channel error after boom", (e) => e.name === "channel_error", {
    since: mark,
  });
  reply = await waitFor("the automatic rejoin", joinReply(2), { since: mark });
  if (reply.status !== "ok") throw new Error(`rejoin answered ${reply.status}`);
  joinRef = reply.join_ref;
  await waitFor('"joined" after the rejoin', eventOf("joined", joinRef), { since: mark });
  await waitFor('"user_entered" after the rejoin', eventOf("user_entered", joinRef), {
    since: mark,
  });

  // 4. the rejoined channel works
  await pushAndAwait("after_rejoin", "again!");

  // 5. leave: ok reply closes the channel on the client
  mark = seen.length;
  const frameMark = framesIn.length;
  const leavePush = channel
    .leave()
    .receive("ok", (response) => observe("leave_reply", { status: "ok", response }))
    .receive("timeout", () => observe("leave_reply", { status: "timeout" }));
  reply = await waitFor("the leave reply", (e) => e.name === "leave_reply", { since: mark });
  if (reply.status !== "ok") throw new Error(`leave answered ${reply.status}`);
  await waitFor("the channel close", (e) => e.name === "channel_close", { since: mark });
  // phoenix.js acknowledges a leave at once, by itself (the channel is already leaving,
  // so it cannot push): the server's reply, its phx_close and what terminate pushes come
  // later, to a client that has dropped the channel. Only the frame log shows them: wait
  // (at most 2 s) until they are there, then go on either way; the test checks them.
  const leaveRef = leavePush.ref;
  const arrived = () => {
    const got = framesIn.slice(frameMark).filter((f) => f.topic === opts.topic);
    return (
      got.some((f) => f.event === "phx_reply" && f.ref === leaveRef) &&
      got.some((f) => f.event === "phx_close") &&
      got.some((f) => f.event === "you_left")
    );
  };
  const until = Date.now() + 2000;
  while (!arrived() && Date.now() < until) await sleep(10);
  step("leave_frames", { complete: arrived() });
  await sleep(50); // anything the server wrongly sends after those

  // 6. disconnect: a clean close from the client
  mark = seen.length;
  socket.disconnect(() => observe("disconnected"), 1000, "bye");
  await waitFor("the disconnect callback", (e) => e.name === "disconnected", { since: mark });
  await waitFor("the socket close", (e) => e.name === "socket_close", { since: mark });
}

const deadline = setTimeout(() => {
  const pending = waiters.map((w) => w.description).filter(Boolean);
  finish(false, `overall timeout of ${opts.timeoutMs} ms reached${pending.length ? `: ${pending}` : ""}`);
}, opts.timeoutMs);

scenario().then(
  () => {
    clearTimeout(deadline);
    finish(true);
  },
  (err) => {
    clearTimeout(deadline);
    finish(false, err && err.message ? err.message : String(err));
  },
);
