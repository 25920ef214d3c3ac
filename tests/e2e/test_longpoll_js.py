"""Phoenix's official JavaScript client over LongPoll, against greenphx, end to end.

``examples/integration_app.py`` serves its long-poll endpoint in a subprocess; the client is
the npm package ``phoenix`` (pinned in tests/e2e/js/package.json):

* under Node (``tests/e2e/js/longpoll_client.mjs``, ``xhr2`` as XMLHttpRequest) with
  ``transport: LongPoll`` on ``/js``;
* in headless Chromium: a page served from another origin by this test, loading the
  package's ``priv/static/phoenix.js``, once with ``transport: LongPoll`` and once with the
  default WebSocket and ``longPollFallbackMs`` against ``/js_wsblocked``, whose WebSocket
  refuses the page's origin (403), so the client falls back to LongPoll by itself.

Each runs the same scenario: join (ok, ``joined``, ``user_entered``), a push with a reply
and the broadcast it causes, a binary push (an ArrayBuffer, base64 in the POST), a crash
(``boom``: the channel errors, the client rejoins by itself), a push on the rejoined
channel, leave, disconnect. Without Node, the npm install, Chromium or selenium the tests
skip locally and fail under ``CI=true``.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import uuid
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from browser import headless_chromium, unavailable
from conftest import APP
from serverproc import ServerProcess

JS_DIR = Path(__file__).resolve().parent / "js"

pytestmark = pytest.mark.timeout(120)


class LongPollApp(ServerProcess):
    """integration_app.py; ``lp_port`` is its long-poll endpoint's listener."""

    def __init__(self) -> None:
        super().__init__([sys.executable, str(APP), "--port", "0"], name=APP.name)
        line = self._stdout.get(timeout=10)
        found = re.fullmatch(r"listening on http://127\.0\.0\.1:(\d+) \(Integration\.LongPollEndpoint\)", (line or "").strip())
        assert found, f"no second 'listening on' line: {line!r}\n{self.stderr}"
        self.lp_port = int(found.group(1))


@pytest.fixture(scope="module")
def server():
    app = LongPollApp()
    try:
        yield app
    finally:
        assert app.stop() == 0, app.stderr[-3000:]


def _check_scenario(steps: list[dict], user: str, binary: bool = True) -> None:
    """What every run of the scenario must have observed, in order."""
    names = [s["name"] for s in steps]
    assert names.count("socket_open") == 1, names
    joins = [s for s in steps if s["name"] == "join_reply"]
    assert [j["status"] for j in joins] == ["ok", "ok"], steps
    assert joins[0]["join_ref"] != joins[1]["join_ref"]
    events = [(s["event"], s["join_ref"]) for s in steps if s["name"] == "event"]
    jr1, jr2 = joins[0]["join_ref"], joins[1]["join_ref"]
    for jr in (jr1, jr2):
        assert ("joined", jr) in events and ("user_entered", jr) in events and ("new_msg", jr) in events, events
    payloads = {s["event"]: s["payload"] for s in steps if s["name"] == "event" and s["join_ref"] == jr1}
    assert payloads["joined"] == {"status": "connected", "user_id": user}
    assert payloads["new_msg"] == {"body": "hi!", "transport": "longpoll"}
    replies = {s["label"]: (s["status"], s.get("response")) for s in steps if s["name"] == "reply"}
    assert replies["first"] == ("ok", {}) and replies["after_rejoin"] == ("ok", {})
    if binary:
        assert replies["binary"] == ("ok", {"size": 4, "sum": 256})
    # the crash: what terminate pushed, then the error, then the rejoin
    crash = names.index("channel_error")
    assert ("you_left", jr1) in events and crash < names.index("join_reply", names.index("join_reply") + 1)
    assert {"leave_reply", "channel_close"} <= set(names[names.index("join_reply", crash) :])
    assert names[-1] == "disconnected"


# -- Node ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def node() -> str:
    exe = shutil.which("node")
    if exe is None:
        unavailable("node is not on PATH")
    pinned = json.loads((JS_DIR / "package.json").read_text())["dependencies"]
    for name in ("phoenix", "xhr2"):
        manifest = JS_DIR / "node_modules" / name / "package.json"
        if not manifest.is_file() or json.loads(manifest.read_text())["version"] != pinned[name]:
            unavailable(f"node_modules lacks {name} {pinned[name]}: run `npm ci --prefix tests/e2e/js`")
    return exe


def test_official_client_over_longpoll_in_node(node, server):
    user = f"lp-node-{uuid.uuid4().hex[:6]}"
    topic = f"room:lp-node-{uuid.uuid4().hex[:8]}"
    out = subprocess.run(
        [node, str(JS_DIR / "longpoll_client.mjs"), str(server.lp_port), "--topic", topic, "--user-id", user],
        cwd=JS_DIR, capture_output=True, text=True, timeout=45, check=False,
    )  # fmt: skip
    records = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    transcript = out.stdout[-6000:] + out.stderr[-2000:] + "\n--- server ---\n" + server.stderr[-2000:]
    assert records and records[-1]["kind"] == "result", transcript
    assert records[-1]["ok"] is True and out.returncode == 0, transcript
    steps = [r for r in records if r["kind"] == "step"]
    assert steps[0]["transport"] == "LongPoll"
    _check_scenario(steps[1:], user)
    http = [r for r in records if r["kind"] == "http"]
    # every request went to the LongPoll path and was answered HTTP 200 with a known status
    assert {r["path"] for r in http} == {"/js/longpoll"}, http
    # disconnect aborts what is in flight (the poll, perhaps the leave's POST): no answer read
    aborted = [r for r in http if r["status"] is None]
    assert len(aborted) <= 2 and all(r["t"] >= http[-1]["t"] - 50 for r in aborted), http
    http = [r for r in http if r["status"] is not None]
    assert all(r["http"] == 200 for r in http), http
    assert {r["status"] for r in http if r["method"] == "GET"} <= {200, 204, 410}
    assert [r["status"] for r in http if r["method"] == "POST"] == [200] * sum(1 for r in http if r["method"] == "POST")
    assert [r["status"] for r in http if r["method"] == "GET"].count(410) == 1, "one session for the whole run"


# -- Chromium --------------------------------------------------------------------------------


PAGE = """<!doctype html><meta charset="utf-8"><title>greenphx LongPoll</title>
<script src="phoenix.js"></script>
<script>
window.runScenario = function (port, path, mode, user, topic, done) {
  const steps = [];
  const observe = (name, fields) => { steps.push(Object.assign({name}, fields || {})); check(); };
  const waiters = [];
  const check = () => { for (const w of [...waiters]) { const hit = steps.slice(w.since).find(w.match);
    if (hit) { waiters.splice(waiters.indexOf(w), 1); clearTimeout(w.timer); w.resolve(hit); } } };
  const waitFor = (what, match, since) => new Promise((resolve, reject) => {
    const w = {match, resolve, since: since || 0};
    w.timer = setTimeout(() => { waiters.splice(waiters.indexOf(w), 1); reject(new Error("timed out: " + what)); }, 6000);
    waiters.push(w); check(); });
  sessionStorage.clear();
  const logs = [];
  const opts = {params: {user_id: user}, timeout: 5000, rejoinAfterMs: () => 200, reconnectAfterMs: () => 200,
                logger: (kind, msg) => logs.push(kind + ": " + msg)};
  if (mode === "longpoll") { opts.transport = Phoenix.LongPoll; } else { opts.longPollFallbackMs = 3000; }
  const socket = new Phoenix.Socket("ws://127.0.0.1:" + port + path, opts);
  socket.onOpen(() => observe("socket_open", {transport: socket.transport.name}));
  socket.onError((e) => observe("socket_error", {}));
  socket.onClose((e) => observe("socket_close", {code: e && e.code}));
  (async () => {
    socket.connect();
    await waitFor("open", (e) => e.name === "socket_open");
    const channel = socket.channel(topic, {user: "alice"});
    for (const ev of ["joined", "user_entered", "new_msg", "you_left"]) {
      channel.on(ev, (payload) => observe("event", {event: ev, payload, join_ref: channel.joinRef()}));
    }
    channel.onError(() => observe("channel_error"));
    channel.onClose(() => observe("channel_close"));
    let joins = 0;
    channel.join().receive("ok", (r) => observe("join_reply", {status: "ok", attempt: ++joins, join_ref: channel.joinRef()}));
    await waitFor("join", (e) => e.name === "join_reply");
    await waitFor("joined", (e) => e.name === "event" && e.event === "joined");
    const pushed = (label, event, payload) => channel.push(event, payload)
      .receive("ok", (r) => observe("reply", {label, status: "ok", response: r}))
      .receive("error", (r) => observe("reply", {label, status: "error", response: r}))
      .receive("timeout", () => observe("reply", {label, status: "timeout"}));
    let mark = steps.length;
    pushed("first", "new_msg", {body: "hi!"});
    await waitFor("reply", (e) => e.name === "reply" && e.label === "first");
    await waitFor("broadcast", (e) => e.name === "event" && e.event === "new_msg", mark);
    pushed("binary", "binary_size", new Uint8Array([1, 2, 3, 250]).buffer);
    await waitFor("binary reply", (e) => e.name === "reply" && e.label === "binary");
    mark = steps.length;
    channel.push("boom", {});
    await waitFor("error", (e) => e.name === "channel_error", mark);
    await waitFor("rejoin", (e) => e.name === "join_reply" && e.attempt === 2, mark);
    mark = steps.length;
    pushed("after_rejoin", "new_msg", {body: "again!"});
    await waitFor("reply 2", (e) => e.name === "reply" && e.label === "after_rejoin");
    await waitFor("broadcast 2", (e) => e.name === "event" && e.event === "new_msg", mark);
    mark = steps.length;
    channel.leave().receive("ok", () => observe("leave_reply"));
    await waitFor("leave", (e) => e.name === "leave_reply", mark);
    await waitFor("close", (e) => e.name === "channel_close", mark);
    const transport = socket.transport.name;
    socket.disconnect(() => observe("disconnected"), 1000, "bye");
    await waitFor("disconnected", (e) => e.name === "disconnected");
    return transport;
  })().then((transport) => done({ok: true, steps, logs, transport}),
            (err) => done({ok: false, reason: String(err), steps, logs}));
};
</script>"""


@pytest.fixture(scope="module")
def page_origin():
    """The test page and phoenix.js, served from another origin than the endpoint's."""
    phoenix_js = JS_DIR / "node_modules" / "phoenix" / "priv" / "static" / "phoenix.js"
    if not phoenix_js.is_file():
        unavailable(f"{phoenix_js} is missing: run `npm ci --prefix tests/e2e/js`")
    root = tempfile.mkdtemp(prefix="greenphx-lp-page-")
    shutil.copy(phoenix_js, Path(root) / "phoenix.js")
    (Path(root) / "index.html").write_text(PAGE)

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=root))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def browser():
    with headless_chromium() as driver:
        yield driver


@pytest.mark.parametrize(("mode", "path"), [("longpoll", "/js"), ("fallback", "/js_wsblocked")])
def test_official_client_over_longpoll_in_chromium(browser, page_origin, server, mode, path):
    browser.get(page_origin + "/index.html")
    user = f"lp-browser-{uuid.uuid4().hex[:6]}"
    topic = f"room:lp-browser-{uuid.uuid4().hex[:8]}"
    mark = server.log_mark()
    result = browser.execute_async_script(
        "window.runScenario(arguments[0], arguments[1], arguments[2], arguments[3], arguments[4], arguments[5]);",
        server.lp_port, path, mode, user, topic,
    )  # fmt: skip
    assert result["ok"], json.dumps(result, indent=1)[-6000:]
    assert result["transport"] == "LongPoll"
    opened = [s for s in result["steps"] if s["name"] == "socket_open"]
    assert opened and all(s["transport"] == "LongPoll" for s in opened)
    _check_scenario(result["steps"], user)
    if mode == "fallback":
        # the WebSocket was tried first and refused (the page's origin), then LongPoll took over
        assert any("falling back to LongPoll" in line for line in result["logs"]), result["logs"]
        server.wait_log(rf"Origin of the request: {re.escape(page_origin)}", mark)
