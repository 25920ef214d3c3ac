"""LongPoll across nodes: one session served by two phx-serve processes behind a round-robin proxy.

Two phx-serve processes (tests/e2e/longpoll_node_app.py) share one real Redis (``--pubsub``)
and one ``SECRET_KEY_BASE``. A small HTTP proxy in this test (127.0.0.1 only, one request
per connection) sends each request to the next node in turn, with no stickiness: the
session opens on one node and its polls and posts land on both. Checked over real sockets:
join, push with reply, ``broadcast_from`` the session reaching WebSocket subscribers on
both nodes once, binary frames arriving intact from either node, broadcasts from either
node reaching the session exactly once and in each publisher's order, a held poll woken by
a broadcast from the other node, and leave.
"""

from __future__ import annotations

import base64
import http.client
import json
import secrets
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from serverproc import ServerProcess
from ws_client import PhxClient

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
PHX_SERVE = [sys.executable, str(REPO / "bin" / "phx-serve")]
# A channel of its own: the Redis server is shared with the other tests of the run.
OPTS = (
    "channel=phx:LongPollNodes&heartbeat_interval=0.2&node_timeout=1.5&reconnect_backoff_initial=0.02&reconnect_backoff_max=0.5"
)
WINDOW_S = 3.0  # longpoll_node_app.WINDOW_MS

pytestmark = pytest.mark.timeout(90)


class RoundRobinProxy:
    """An HTTP proxy on 127.0.0.1: each connection carries one request, which goes to the
    next backend in turn. ``log`` holds ``(backend index, method, target)`` per request."""

    def __init__(self, ports: list[int]) -> None:
        self.ports = ports
        self.log: list[tuple[int, str, str]] = []
        self._lock = threading.Lock()
        self._count = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(30)
        try:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            head, body = data.split(b"\r\n\r\n", 1)
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            headers = [line for line in lines[1:] if line.split(":", 1)[0].strip().lower() != "connection"]
            length = next((int(h.split(":", 1)[1]) for h in headers if h.lower().startswith("content-length:")), 0)
            while len(body) < length:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                body += chunk
            with self._lock:
                index = self._count % len(self.ports)
                self._count += 1
                self.log.append((index, method, target))
            upstream = socket.create_connection(("127.0.0.1", self.ports[index]), timeout=30)
            try:
                request = "\r\n".join([lines[0], *headers, "Connection: close"]).encode("latin-1") + b"\r\n\r\n" + body
                upstream.sendall(request)
                while chunk := upstream.recv(65536):
                    conn.sendall(chunk)
            finally:
                upstream.close()
        except OSError:
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self._stopped.set()
        self._listener.close()
        self._thread.join(2)


def frame(join_ref: str | None, ref: str | None, topic: str, event: str, payload: Any) -> str:
    return json.dumps([join_ref, ref, topic, event, payload])


def binary_push(join_ref: str, ref: str, topic: str, event: str, data: bytes) -> bytes:
    """A V2 binary push frame (kind 0), as phoenix.js encodes an ArrayBuffer payload."""
    parts = [p.encode() for p in (join_ref, ref, topic, event)]
    return bytes([0, *(len(p) for p in parts)]) + b"".join(parts) + data


class Session:
    """A LongPoll client session (phoenix.js's wire) through one HTTP port."""

    def __init__(self, port: int, params: dict | None = None) -> None:
        self.port = port
        self.params = dict(params or {})
        self.token: str | None = None

    def call(self, method: str, body: bytes | None = None, content_type: str | None = None) -> dict:
        query = {**self.params, "vsn": "2.0.0", **({"token": self.token} if self.token else {})}
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=WINDOW_S + 10)
        try:
            conn.request(
                method,
                "/socket/longpoll?" + urlencode(query),
                body=body,
                headers={"Content-Type": content_type or "application/json"},
            )
            answer = conn.getresponse()
            raw = answer.read()
        finally:
            conn.close()
        assert answer.status == 200, (answer.status, raw)
        return json.loads(raw)

    def open(self) -> None:
        body = self.call("GET")
        assert body["status"] == 410 and body["token"], body
        self.token = body["token"]

    def poll(self) -> tuple[int, list[list]]:
        body = self.call("GET")
        assert body["status"] in (200, 204), body
        assert body["token"] == self.token  # the same session, whichever node answered
        return body["status"], [json.loads(m) for m in body["messages"]]

    def post(self, *frames: str | bytes) -> int:
        lines = [f if isinstance(f, str) else base64.b64encode(f).decode() for f in frames]
        return self.call("POST", "\n".join(lines).encode(), "application/x-ndjson")["status"]

    def collect(self, until: Any, timeout: float = 15.0) -> list[list]:
        """Poll until ``until(messages so far)`` holds (bounded); every message seen."""
        seen: list[list] = []
        deadline = time.monotonic() + timeout
        while not until(seen):
            assert time.monotonic() < deadline, f"gave up waiting; saw {seen}"
            seen += self.poll()[1]
        return seen


def reply(messages: list[list], ref: str) -> dict:
    found = [m for m in messages if m[3] == "phx_reply" and m[1] == ref]
    assert len(found) == 1, (ref, messages)
    return found[0][4]


def has_reply(ref: str):
    return lambda seen: any(m[3] == "phx_reply" and m[1] == ref for m in seen)


class Node:
    def __init__(self, redis_url: str, name: str, secret: str) -> None:
        self.name = name
        self.server = ServerProcess(
            [*PHX_SERVE, "longpoll_node_app:children", "--port", "0", "--pubsub", f"{redis_url}?{OPTS}", "--node-name", name],
            cwd=HERE,
            name=f"node {name}",
            env={"SECRET_KEY_BASE": secret},
        )
        self.ctl = self.client()
        assert self.ctl.reply_to(self.ctl.join(f"ctl:{name}"), timeout=5).payload["status"] == "ok"

    def client(self) -> PhxClient:
        return PhxClient(f"{self.server.ws}/socket/websocket", "2.0.0", timeout=5.0)

    def call(self, event: str, payload: Any = None) -> Any:
        msg = self.ctl.reply_to(self.ctl.send(f"ctl:{self.name}", event, payload), timeout=20)
        assert msg.payload["status"] == "ok", msg
        return msg.payload["response"]

    def stop(self) -> None:
        try:
            self.ctl.close()
        except Exception:  # noqa: BLE001 - already closed
            pass
        self.server.stop()


def wait_for(condition: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, f"{what}: not within {timeout}s"
        time.sleep(0.05)
    return value


@pytest.fixture
def nodes(redis_server):
    secret = secrets.token_urlsafe(48)
    started: list[Node] = []
    try:
        threads = [
            threading.Thread(target=lambda n=n: started.append(Node(redis_server.url, n, secret))) for n in ("lp_a", "lp_b")
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert len(started) == 2, "a node did not start"
        started.sort(key=lambda n: n.name)
        for n in started:
            other = ({"lp_a", "lp_b"} - {n.name}).pop()
            wait_for(
                lambda n=n, other=other: n.call("stats")["nodes"].get(other, {}).get("status") == "up",
                10,
                f"{n.name} sees {other}",
            )
        yield started
    finally:
        for n in started:
            n.stop()


def test_a_longpoll_session_is_served_by_either_node_behind_a_round_robin_proxy(nodes):
    a, b = nodes
    proxy = RoundRobinProxy([a.server.port, b.server.port])
    subs: list[PhxClient] = []
    try:
        topic = "t:lp-nodes"
        for node in nodes:
            sub = node.client()
            assert sub.reply_to(sub.join(topic), timeout=5).payload["status"] == "ok"
            subs.append(sub)

        s = Session(proxy.port)
        s.open()
        home = nodes[proxy.log[0][0]].name  # the node that started the session holds it

        # join and push with reply, each request landing on the next node
        assert s.post(frame("1", "1", topic, "phx_join", {})) == 200
        seen = s.collect(has_reply("1"))
        assert reply(seen, "1") == {"status": "ok", "response": {"node": home}}
        assert s.post(frame("1", "2", topic, "say", {"body": "hi"})) == 200
        assert reply(s.collect(has_reply("2")), "2") == {"status": "ok", "response": {"result": "ok"}}
        for sub in subs:  # broadcast_from the session: on both nodes, once
            said = sub.event("said", topic, timeout=5)
            assert said.payload == {"body": "hi", "p": home}

        # binary frames (base64 lines), one POST to each node: the bytes arrive intact
        payloads = {"3": b"hello", "4": bytes(range(256))}
        for ref, data in payloads.items():
            assert s.post(binary_push("1", ref, topic, "bytes", data)) == 200
        seen = s.collect(lambda seen: all(has_reply(r)(seen) for r in payloads))
        for ref, data in payloads.items():
            assert reply(seen, ref) == {"status": "ok", "response": {"hex": data.hex()}}

        # broadcasts from either node reach the session exactly once, in each publisher's order
        for node in nodes:
            assert node.call("burst", {"topic": topic, "n": 50, "start": 0}) == {"errors": []}
        got = [(m[4]["p"], m[4]["s"]) for m in s.collect(lambda seen: sum(m[3] == "m" for m in seen) >= 100) if m[3] == "m"]
        assert len(got) == 100, got
        for node in nodes:
            assert [seq for p, seq in got if p == node.name] == list(range(50)), got
        status, late = s.poll()  # nothing more comes (a whole window)
        assert (status, late) == (204, []), late

        # a poll held on one node is woken by a broadcast published on the other
        held: dict[str, Any] = {}

        def hold() -> None:
            started = time.monotonic()
            held["answer"] = s.poll()
            held["took"] = time.monotonic() - started

        before = len(proxy.log)
        poller = threading.Thread(target=hold)
        poller.start()
        wait_for(lambda: len(proxy.log) > before, 5, "the held poll reached the proxy")
        held_on = proxy.log[before][0]
        time.sleep(0.3)  # the poll is waiting in its node by now (it waits up to a whole window)
        publisher = nodes[1 - held_on]
        assert publisher.call("burst", {"topic": topic, "n": 1, "start": 1000}) == {"errors": []}
        poller.join(WINDOW_S + 10)
        status, messages = held["answer"]
        assert status == 200 and [(m[3], m[4]) for m in messages] == [("m", {"p": publisher.name, "s": 1000})], held
        assert held["took"] < WINDOW_S - 0.5, held  # woken, not timed out

        # leave
        assert s.post(frame("1", "5", topic, "phx_leave", {})) == 200
        seen = s.collect(lambda seen: has_reply("5")(seen) and any(m[3] == "phx_close" for m in seen))
        assert reply(seen, "5")["status"] == "ok"

        for sub in subs:  # the session's broadcast_from came once to each (read by now if twice)
            assert [m.payload["body"] for m in sub.history if m.event == "said"] == ["hi"]

        # a disconnect broadcast to a session's socket id, from the node not holding it, ends it
        user = Session(proxy.port, {"user_id": "lp-7"})
        user.open()
        user_home = proxy.log[-1][0]
        nodes[1 - user_home].call("disconnect", {"user_id": "lp-7"})
        ended = time.monotonic() + 10
        while (body := user.call("POST", frame(None, "1", "phoenix", "heartbeat", {}).encode()))["status"] == 200:
            assert time.monotonic() < ended, "the session outlived its disconnect"
            time.sleep(0.05)
        assert body == {"status": 410}
        assert user.call("GET")["status"] == 410  # a new session (the old token names a dead one)

        # no stickiness: GETs and POSTs of this one session reached both nodes
        for method in ("GET", "POST"):
            assert {i for i, m, _ in proxy.log if m == method} == {0, 1}, proxy.log
        for node in nodes:
            stats = node.call("stats")
            assert stats["decode_errors"] == 0 and stats["publish_errors"] == 0, stats
            assert "LongPoll session" not in node.server.stderr, node.server.stderr[-3000:]
    finally:
        for sub in subs:
            sub.close()
        proxy.close()
