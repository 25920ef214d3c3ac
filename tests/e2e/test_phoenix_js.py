"""Phoenix's official JavaScript client against greenphx, end to end.

The npm package ``phoenix`` (pinned to the newest 1.7.x in tests/e2e/js/package.json) runs
under Node with ``ws`` as its WebSocket, driven by tests/e2e/js/phoenix_client.mjs,
against ``examples/integration_app.py`` (Phoenix's websocket_channels_test endpoint)
served by greenphx on a real port. The script only drives the scenario and records what
the client saw: every frame both ways, every step its API reported. The assertions are
here, so a failure names exactly what differed.

The scenario: heartbeat; join ``room:*`` (ok, then ``user_entered`` and ``joined``);
``new_msg`` (ok reply, then the intercepted broadcast with ``transport`` added by
``handle_out``); ``boom`` (``you_left`` from terminate, ``phx_error``, the client rejoins
by itself); ``new_msg`` again on the rejoined channel; leave (ok, ``phx_close``, then
``you_left``); disconnect with 1000. It runs with vsn 2.0.0 (the client as shipped) and
vsn 1.0.0 (the same client with V1 object framing through its ``encode``/``decode``
options).

Setup: ``npm ci --prefix tests/e2e/js``. Without Node or that install the test skips
locally and fails under ``CI=true``.
"""

from __future__ import annotations

import json
import os
import re
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import pytest

REPO = Path(__file__).resolve().parents[2]
JS_DIR = Path(__file__).resolve().parent / "js"
SCRIPT = JS_DIR / "phoenix_client.mjs"
APP = REPO / "examples" / "integration_app.py"

SERVER_START_TIMEOUT = 30.0  # s, until "listening on ..."
SERVER_STOP_TIMEOUT = 15.0  # s, after SIGTERM
CLIENT_TIMEOUT_MS = 15_000  # the script's own bound
CLIENT_KILL_TIMEOUT = 45.0  # s, ours, should the script not stop by itself
# integration_app.py closes a socket after 200 ms without a frame from the client (as
# Phoenix's test endpoint does). Phoenix's client heartbeats every 30 s by default and
# gives up on a heartbeat unanswered for one interval; 100 ms leaves the most room on
# both sides (a reply may take up to 100 ms).
HEARTBEAT_MS = 100

# What integration_app.py's handle_out adds: greenphx's socket.transport is the string
# "websocket" (Phoenix's test puts inspect(:websocket), ":websocket").
EXPECTED_TRANSPORT = "websocket"

pytestmark = pytest.mark.timeout(120)


# ------------------------------------------------------------------------------------
# prerequisites: node, the npm install, the app


def _unavailable(reason: str) -> None:
    """Skip locally; under CI=true a missing prerequisite is a failure, never a skip."""
    if os.environ.get("CI") == "true":
        pytest.fail(
            f"{reason}. Under CI=true this test must run: .ci/run has to install Node and run `npm ci --prefix tests/e2e/js`.",
            pytrace=False,
        )
    pytest.skip(reason)


def _pinned(name: str) -> str:
    return json.loads((JS_DIR / "package.json").read_text())["dependencies"][name]


@pytest.fixture(scope="module")
def node() -> str:
    exe = shutil.which("node")
    if exe is None:
        _unavailable("node is not on PATH (Phoenix's JS client needs Node >= 18)")
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30, check=False)
    match = re.match(r"v(\d+)\.", out.stdout.strip())
    if out.returncode != 0 or not match:
        _unavailable(f"`node --version` failed: {out.stdout!r} {out.stderr!r}")
    if int(match.group(1)) < 18:
        _unavailable(f"node {out.stdout.strip()} is too old: Node >= 18 is needed")
    for name in ("phoenix", "ws"):
        manifest = JS_DIR / "node_modules" / name / "package.json"
        if not manifest.is_file():
            _unavailable(f"{manifest.relative_to(REPO)} is missing: run `npm ci --prefix tests/e2e/js`")
        installed = json.loads(manifest.read_text())["version"]
        if installed != _pinned(name):
            _unavailable(
                f"node_modules has {name} {installed}, package.json pins {_pinned(name)}: run `npm ci --prefix tests/e2e/js`"
            )
    return exe


@dataclass
class Server:
    proc: subprocess.Popen
    port: int
    stderr_path: Path

    def stderr(self, tail: int = 6000) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")[-tail:]
        except OSError as e:
            return f"<stderr unreadable: {e}>"


@pytest.fixture(scope="module")
def server(node: str):
    """``python examples/integration_app.py --port 0``, up until the module's tests end."""
    if not APP.is_file():
        pytest.fail(f"{APP.relative_to(REPO)} is missing", pytrace=False)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    with tempfile.TemporaryDirectory(prefix="phx-js-e2e-") as tmp:
        stderr_path = Path(tmp) / "server.stderr"
        with open(stderr_path, "wb") as stderr:
            proc = subprocess.Popen(
                [sys.executable, str(APP), "--port", "0"],
                cwd=REPO,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=stderr,
            )
        try:
            port = _await_listening(proc, stderr_path)
            srv = Server(proc, port, stderr_path)
            yield srv
        finally:
            returncode = _stop(proc)
        assert returncode == 0, (
            f"integration_app.py exited {returncode} on SIGTERM (expected 0)\n"
            f"--- server stderr ---\n{stderr_path.read_text(errors='replace')[-6000:]}"
        )


def _await_listening(proc: subprocess.Popen, stderr_path: Path) -> int:
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    buf = b""
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0 or not sel.select(timeout=left):
                break
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                break
            buf += chunk
    line = buf.split(b"\n", 1)[0].decode(errors="replace").strip()
    match = re.fullmatch(r"listening on http://127\.0\.0\.1:(\d+)", line)
    if not match:
        _stop(proc)
        pytest.fail(
            f"integration_app.py did not print 'listening on http://127.0.0.1:PORT' within "
            f"{SERVER_START_TIMEOUT:.0f} s; stdout started with {buf[:500]!r}, "
            f"exit code {proc.poll()}\n--- server stderr ---\n"
            f"{stderr_path.read_text(errors='replace')[-6000:]}",
            pytrace=False,
        )
    return int(match.group(1))


def _stop(proc: subprocess.Popen) -> int | None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=SERVER_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
            return None  # did not stop on SIGTERM
    if proc.stdout:
        proc.stdout.close()
    return proc.returncode


# ------------------------------------------------------------------------------------
# running the client and reading what it saw


class Frame(NamedTuple):
    join_ref: str | None
    ref: str | None
    topic: str
    event: str
    payload: Any


@dataclass
class Run:
    vsn: str
    topic: str
    user_id: str
    returncode: int | None
    records: list[dict]
    stderr: str
    server: Server
    result: dict | None = None
    steps: list[dict] = field(default_factory=list)
    frames: list[tuple[str, Frame, str]] = field(default_factory=list)  # (dir, frame, raw)

    def transcript(self) -> str:
        lines = [f"--- client (vsn {self.vsn}, exit {self.returncode}) ---"]
        for rec in self.records:
            t = rec.get("t", "?")
            if rec["kind"] == "frame":
                arrow = "->" if rec["dir"] == "out" else "<-"
                lines.append(f"{t:>6} {arrow} {rec.get('raw')}")
            elif rec["kind"] == "step":
                rest = {k: v for k, v in rec.items() if k not in ("kind", "t", "name")}
                lines.append(f"{t:>6} ** {rec['name']} {json.dumps(rest) if rest else ''}")
            elif rec["kind"] == "log":
                lines.append(f"{t:>6} .. {rec.get('log_kind')}: {rec.get('msg')}")
            else:
                lines.append(f"{t:>6} {json.dumps(rec)}")
        if self.stderr.strip():
            lines.append(f"--- client stderr ---\n{self.stderr[-3000:]}")
        lines.append(f"--- server stderr (tail) ---\n{self.server.stderr(3000)}")
        return "\n".join(lines)

    def why(self, what: str) -> str:
        return f"{what}\n{self.transcript()}"

    def topic_frames(self, direction: str) -> list[Frame]:
        return [f for d, f, _ in self.frames if d == direction and f.topic == self.topic]

    def step_names(self) -> list[str]:
        return [s["name"] for s in self.steps]


def _frame(vsn: str, rec: dict) -> Frame:
    """One recorded frame in Phoenix's wire format for ``vsn``, checked and normalised."""
    data, raw, direction = rec.get("data"), rec.get("raw"), rec["dir"]
    assert not rec.get("binary"), f"unexpected binary frame ({direction}): {rec}"
    if vsn == "2.0.0":
        assert isinstance(data, list) and len(data) == 5, (
            f"a V2 frame is [join_ref, ref, topic, event, payload]; {direction}: {raw}"
        )
        return Frame(*data)
    assert isinstance(data, dict), f"a V1 frame is a JSON object; {direction}: {raw}"
    if direction == "in":
        # Phoenix's V1 serializer writes exactly these keys, never join_ref.
        assert set(data) == {"topic", "event", "payload", "ref"}, f"V1 frame keys: {raw}"
        return Frame(None, data["ref"], data["topic"], data["event"], data["payload"])
    return Frame(data.get("join_ref"), data["ref"], data["topic"], data["event"], data["payload"])


def run_client(node: str, server: Server, vsn: str) -> Run:
    topic = f"room:js-e2e-{vsn}-{uuid.uuid4().hex[:8]}"
    user_id = f"js-e2e-{vsn}"
    cmd = [
        node, str(SCRIPT), str(server.port),
        "--vsn", vsn,
        "--topic", topic,
        "--user-id", user_id,
        "--heartbeat-ms", str(HEARTBEAT_MS),
        "--timeout-ms", str(CLIENT_TIMEOUT_MS),
    ]  # fmt: skip
    try:
        out = subprocess.run(
            cmd, cwd=JS_DIR, capture_output=True, text=True, timeout=CLIENT_KILL_TIMEOUT,
            stdin=subprocess.DEVNULL, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired as e:
        pytest.fail(
            f"the Node client did not stop by itself within {CLIENT_KILL_TIMEOUT:.0f} s\n"
            f"stdout: {e.stdout!r}\nstderr: {e.stderr!r}",
            pytrace=False,
        )
    records, junk = [], []
    for line in out.stdout.splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            junk.append(line)
            continue
        if isinstance(rec, dict) and "kind" in rec:
            records.append(rec)
        else:
            junk.append(line)
    run = Run(vsn, topic, user_id, out.returncode, records, out.stderr, server)
    assert not junk, run.why(f"the client printed lines that are not its JSON records: {junk[:5]}")
    results = [r for r in records if r["kind"] == "result"]
    assert len(results) == 1 and records[-1] is results[0], run.why("the client must end with exactly one result line")
    run.result = results[0]
    run.steps = [r for r in records if r["kind"] == "step"]
    for rec in records:
        if rec["kind"] == "frame":
            run.frames.append((rec["dir"], _frame(vsn, rec), rec.get("raw")))
    return run


def ok(response: Any = None) -> dict:
    return {"status": "ok", "response": {} if response is None else response}


# ------------------------------------------------------------------------------------
# the test


@pytest.mark.parametrize("vsn", ["2.0.0", "1.0.0"])
def test_official_phoenix_js_client(node: str, server: Server, vsn: str) -> None:
    run = run_client(node, server, vsn)
    v2 = vsn == "2.0.0"
    T = run.topic

    # The client got through every step by itself (the script waits for each one).
    assert run.result["ok"] is True and run.returncode == 0, run.why(f"the client failed: {run.result.get('reason')}")

    # --- the connection: one, to the URL Phoenix's client builds, no reconnects ------
    start = run.steps[0]
    assert start["name"] == "start"
    assert start["endpoint"] == (f"ws://127.0.0.1:{server.port}/ws/websocket?user_id={run.user_id}&vsn={vsn}"), run.why(
        "the client's endpoint URL"
    )
    names = run.step_names()
    assert names.count("ws_connecting") == 1, run.why("the client connected more than once")
    assert names.count("socket_open") == 1, run.why("the socket opened more than once")
    assert "socket_error" not in names, run.why("the client saw a socket error")

    # --- heartbeats: every phoenix/heartbeat is answered ok with its own ref ---------
    beats_out = [f for d, f, _ in run.frames if d == "out" and f.topic == "phoenix"]
    beats_in = [f for d, f, _ in run.frames if d == "in" and f.topic == "phoenix"]
    assert beats_out, run.why("the client sent no heartbeat")
    for f in beats_out:
        assert (f.join_ref, f.topic, f.event, f.payload) == (None, "phoenix", "heartbeat", {}), run.why(f"heartbeat frame {f}")
    answered = {f.ref: f for f in beats_in}
    assert len(answered) == len(beats_in), run.why("two heartbeat replies share a ref")
    for f in beats_out[:-1]:  # the last one may still be in flight at disconnect
        assert answered.get(f.ref) == Frame(None, f.ref, "phoenix", "phx_reply", ok()), run.why(
            f"heartbeat {f.ref} was not answered with an ok phx_reply"
        )
    assert set(answered) <= {f.ref for f in beats_out}, run.why("a heartbeat reply for no heartbeat")
    assert "heartbeat_reply" in names, run.why("socket.ping() got no answer")

    # --- what the client sent on the topic ------------------------------------------
    sent = run.topic_frames("out")
    assert [f.event for f in sent] == [
        "phx_join", "new_msg", "boom", "phx_join", "new_msg", "phx_leave",
    ], run.why("the client's pushes on the topic")  # fmt: skip
    join1, msg1, boom, join2, msg2, leave = sent
    jr1, jr2 = join1.ref, join2.ref
    assert join1.join_ref == jr1 and join2.join_ref == jr2, run.why("a join's join_ref is its ref")
    assert jr1 != jr2, run.why("the rejoin reused the join_ref")
    assert join1.payload == join2.payload == {"user": "alice"}
    assert (msg1.join_ref, msg1.payload) == (jr1, {"body": "hi!"})
    assert (boom.join_ref, boom.payload) == (jr1, {})
    assert (msg2.join_ref, msg2.payload) == (jr2, {"body": "again!"})
    assert (leave.join_ref, leave.payload) == (jr2, {})

    # --- what the server sent on the topic: exactly Phoenix's frames, in its order ---
    # (V1 frames carry no join_ref; their phx_error/phx_close ref is the join's.)
    j1, j2 = (jr1, jr2) if v2 else (None, None)
    joined = {"status": "connected", "user_id": run.user_id}
    expected = [
        # join: the reply, then handle_info(:after_join) broadcasts and pushes
        Frame(j1, jr1, T, "phx_reply", ok()),
        Frame(None, None, T, "user_entered", {"user": "alice"}),
        Frame(j1, None, T, "joined", joined),
        # new_msg: handle_in replies, then the intercepted broadcast goes through handle_out
        Frame(j1, msg1.ref, T, "phx_reply", ok()),
        Frame(j1, None, T, "new_msg", {"body": "hi!", "transport": EXPECTED_TRANSPORT}),
        # boom: no reply; terminate pushes you_left, then the transport reports the crash
        Frame(j1, None, T, "you_left", {"message": "bye!"}),
        Frame(j1, jr1, T, "phx_error", {}),
        # the client's automatic rejoin
        Frame(j2, jr2, T, "phx_reply", ok()),
        Frame(None, None, T, "user_entered", {"user": "alice"}),
        Frame(j2, None, T, "joined", joined),
        Frame(j2, msg2.ref, T, "phx_reply", ok()),
        Frame(j2, None, T, "new_msg", {"body": "again!", "transport": EXPECTED_TRANSPORT}),
        # leave: the reply, phx_close, then what terminate pushed
        Frame(j2, leave.ref, T, "phx_reply", ok()),
        Frame(j2, jr2, T, "phx_close", {}),
        Frame(j2, None, T, "you_left", {"message": "bye!"}),
    ]
    received = run.topic_frames("in")
    assert received == expected, run.why("the server's frames on the topic")
    others = [(d, raw) for d, f, raw in run.frames if f.topic not in (T, "phoenix")]
    assert not others, run.why(f"frames on other topics: {others}")

    # --- what Phoenix's client API reported, in order --------------------------------
    def summary(step: dict) -> tuple:
        name = step["name"]
        if name == "event":
            return ("event", step["event"], step["payload"])
        if name == "join_reply":
            return ("join_reply", step["attempt"], step["status"], step["response"])
        if name == "push_reply":
            return ("push_reply", step["label"], step["status"], step["response"])
        if name in ("leave_reply",):
            return (name, step["status"], step["response"])
        if name == "channel_close":
            return (name, step["reason"])
        if name == "leave_frames":
            return (name, step["complete"])
        if name in ("socket_close", "ws_closed"):
            return (name, step["code"])
        return (name,)

    flow = [summary(s) for s in run.steps if s["name"] not in ("start", "ws_connecting")]

    def new_msg(body: str) -> tuple:
        return ("event", "new_msg", {"body": body, "transport": EXPECTED_TRANSPORT})

    expected_flow = [
        ("socket_open",),
        ("heartbeat_reply",),
        ("join_reply", 1, "ok", {}),
        ("event", "user_entered", {"user": "alice"}),
        ("event", "joined", joined),
        ("push_reply", "first", "ok", {}),
        new_msg("hi!"),
        ("event", "you_left", {"message": "bye!"}),
        ("channel_error",),  # onError: the client marks the channel errored and rejoins
        ("join_reply", 2, "ok", {}),
        ("event", "user_entered", {"user": "alice"}),
        ("event", "joined", joined),
        ("push_reply", "after_rejoin", "ok", {}),
        new_msg("again!"),
        # leave: phoenix.js acknowledges it at once by itself (the server's reply, its
        # phx_close and you_left are checked in the frames above), closing the channel
        # first (its own hook runs before ours); then the script waited for those frames
        ("channel_close", "leave"),
        ("leave_reply", "ok", {}),
        ("leave_frames", True),
        # disconnect(…, 1000): the server answers the close handshake with 1000
        ("ws_closed", 1000),
        ("socket_close", 1000),
        ("disconnected",),
    ]
    assert flow == expected_flow, run.why("what the client observed")
    error_step = next(s for s in run.steps if s["name"] == "channel_error")
    assert error_step["join_ref"] == jr1, run.why("phx_error reached the first join")

    # The server survived all of it.
    assert server.proc.poll() is None, run.why("the server exited")
