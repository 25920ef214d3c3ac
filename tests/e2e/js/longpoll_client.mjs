// Phoenix's official JavaScript client over its LongPoll transport, under Node (xhr2 is
// the XMLHttpRequest), against examples/integration_app.py's long-poll endpoint.
//
//   node longpoll_client.mjs PORT [--vsn 2.0.0|1.0.0] [--topic room:x] [--user-id ID]
//                                 [--path /js] [--timeout-ms N]
//
// Prints one JSON object per line: {"kind":"step", "name":..., ...} for what the client
// observed, {"kind":"http", ...} for every request the transport made, and last
// {"kind":"result", "ok":true|false, "reason":...}. Exit status 0 when every step was
// observed, 1 otherwise. The Python test (tests/e2e/test_longpoll_js.py) asserts.
//
// The scenario: open (LongPoll's 410), join (ok, "joined", "user_entered"), new_msg (ok,
// then the broadcast back through handle_out), a binary push (an ArrayBuffer, sent by the
// client as a base64 ndjson line; the reply is JSON), boom (the channel crashes: error,
// then the client rejoins by itself), new_msg on the rejoined channel, leave, disconnect.

import XMLHttpRequest from "xhr2";

const argv = process.argv.slice(2);
const opts = { port: null, vsn: "2.0.0", topic: `room:lp-js-${process.pid}`, userId: "lp-js", path: "/js", timeoutMs: 15000 };
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  if (a === "--vsn") opts.vsn = argv[++i];
  else if (a === "--topic") opts.topic = argv[++i];
  else if (a === "--user-id") opts.userId = argv[++i];
  else if (a === "--path") opts.path = argv[++i];
  else if (a === "--timeout-ms") opts.timeoutMs = Number(argv[++i]);
  else if (opts.port === null && /^\d+$/.test(a)) opts.port = Number(a);
  else {
    process.stderr.write(`longpoll_client.mjs: unexpected argument ${a}\n`);
    process.exit(2);
  }
}
if (opts.port === null) {
  process.stderr.write("longpoll_client.mjs: PORT is required\n");
  process.exit(2);
}

const started = Date.now();
let finished = false;
function emit(kind, fields) {
  if (finished && kind !== "result") return;
  process.stdout.write(JSON.stringify({ kind, t: Date.now() - started, ...fields }) + "\n");
}

// Every request the transport makes, and the status in its answer.
class RecordingXHR extends XMLHttpRequest {
  open(method, url, ...rest) {
    this._rec = { method, url: String(url) };
    return super.open(method, url, ...rest);
  }
  send(body) {
    const rec = this._rec;
    this.addEventListener("loadend", () => {
      let status = null;
      try {
        status = JSON.parse(this.responseText).status;
      } catch (_e) {
        status = null;
      }
      emit("http", { method: rec.method, path: new URL(rec.url).pathname, http: this.status, status, lines: typeof body === "string" ? body.split("\n").length : 0 });
    });
    return super.send(body);
  }
}
globalThis.XMLHttpRequest = RecordingXHR;
// phoenix.js finds XMLHttpRequest on `self` or `window` (its `global`), which Node lacks:
// give it `self` before the module is evaluated.
globalThis.self = globalThis;
const { LongPoll, Socket } = await import("phoenix");

const waiters = [];
const seen = [];
function observe(name, fields = {}) {
  const entry = { name, ...fields };
  seen.push(entry);
  emit("step", entry);
  for (const w of [...waiters]) {
    if (w.match(entry)) {
      waiters.splice(waiters.indexOf(w), 1);
      clearTimeout(w.timer);
      w.resolve(entry);
    }
  }
}
function waitFor(description, match, { since = 0, timeoutMs = 5000 } = {}) {
  for (let i = since; i < seen.length; i++) if (match(seen[i])) return Promise.resolve(seen[i]);
  return new Promise((resolve, reject) => {
    const w = { description, match, resolve };
    w.timer = setTimeout(() => {
      waiters.splice(waiters.indexOf(w), 1);
      reject(new Error(`timed out waiting for ${description}`));
    }, timeoutMs);
    waiters.push(w);
  });
}

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

async function scenario() {
  const socketOpts = {
    transport: LongPoll,
    params: { user_id: opts.userId },
    vsn: opts.vsn,
    timeout: 5000,
    rejoinAfterMs: () => 200,
    reconnectAfterMs: () => 200,
  };
  if (opts.vsn === "1.0.0") Object.assign(socketOpts, v1);
  const socket = new Socket(`ws://127.0.0.1:${opts.port}${opts.path}`, socketOpts);
  emit("step", { name: "start", endpoint: socket.endPointURL(), transport: socket.transport.name });
  socket.onOpen(() => observe("socket_open"));
  socket.onError((e) => observe("socket_error", { error: String(e) }));
  socket.onClose((e) => observe("socket_close", { code: e?.code ?? null }));
  socket.connect();
  await waitFor("open", (e) => e.name === "socket_open");

  const channel = socket.channel(opts.topic, { user: "alice" });
  for (const event of ["joined", "user_entered", "new_msg", "you_left"]) {
    channel.on(event, (payload) => observe("event", { event, payload, join_ref: channel.joinRef() ?? null }));
  }
  channel.onError(() => observe("channel_error"));
  channel.onClose(() => observe("channel_close"));
  let joins = 0;
  channel.join().receive("ok", (r) => observe("join_reply", { status: "ok", response: r, attempt: ++joins, join_ref: channel.joinRef() }));
  let join = await waitFor("the join", (e) => e.name === "join_reply" && e.attempt === 1);
  await waitFor('"joined"', (e) => e.name === "event" && e.event === "joined");
  await waitFor('"user_entered"', (e) => e.name === "event" && e.event === "user_entered");

  const pushed = (label, event, payload) =>
    channel
      .push(event, payload)
      .receive("ok", (r) => observe("reply", { label, status: "ok", response: r }))
      .receive("error", (r) => observe("reply", { label, status: "error", response: r }))
      .receive("timeout", () => observe("reply", { label, status: "timeout" }));

  let mark = seen.length;
  pushed("first", "new_msg", { body: "hi!" });
  await waitFor("the new_msg reply", (e) => e.name === "reply" && e.label === "first");
  await waitFor("the broadcast", (e) => e.name === "event" && e.event === "new_msg" && e.payload.body === "hi!", { since: mark });

  if (opts.vsn === "2.0.0") {
    pushed("binary", "binary_size", new Uint8Array([1, 2, 3, 250]).buffer);
    await waitFor("the binary push's reply", (e) => e.name === "reply" && e.label === "binary");
  }

  mark = seen.length;
  channel.push("boom", {});
  await waitFor("the channel error", (e) => e.name === "channel_error", { since: mark });
  join = await waitFor("the rejoin", (e) => e.name === "join_reply" && e.attempt === 2, { since: mark });
  mark = seen.length;
  pushed("after_rejoin", "new_msg", { body: "again!" });
  await waitFor("the reply after the rejoin", (e) => e.name === "reply" && e.label === "after_rejoin");
  await waitFor("the broadcast after the rejoin", (e) => e.name === "event" && e.event === "new_msg" && e.payload.body === "again!", { since: mark });

  mark = seen.length;
  channel.leave().receive("ok", () => observe("leave_reply", { status: "ok" }));
  await waitFor("the leave reply", (e) => e.name === "leave_reply", { since: mark });
  await waitFor("the channel close", (e) => e.name === "channel_close", { since: mark });

  mark = seen.length;
  socket.disconnect(() => observe("disconnected"), 1000, "bye");
  await waitFor("the disconnect", (e) => e.name === "disconnected", { since: mark });
  return join;
}

const deadline = setTimeout(() => finish(false, `overall timeout of ${opts.timeoutMs} ms`), opts.timeoutMs);
function finish(ok, reason) {
  if (finished) return;
  clearTimeout(deadline);
  emit("result", { ok, reason: reason ?? null });
  finished = true;
  process.stdout.write("", () => process.exit(ok ? 0 : 1));
}
scenario().then(
  () => finish(true),
  (err) => finish(false, err?.message ?? String(err)),
);
