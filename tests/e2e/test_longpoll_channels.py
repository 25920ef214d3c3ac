"""Phoenix's LongPoll channel integration scenarios (long_poll_channels_test.exs), over real
HTTP on 127.0.0.1, for V1 and V2, plus the bad input the LongPoll transport must survive.

The server is ``examples/integration_app.py`` in a subprocess; its second listener is
Phoenix's long-poll test endpoint (window and PubSub timeout 200 ms, origins
``//example.com``). The client is ``tests/transport/longpoll/lp_http.py`` (raw HTTP/1.1).
As in Phoenix's test, every session scenario runs in two modes: ``local`` (the token names
the session's pid in this endpoint instance) and ``pubsub`` (the same token re-signed with
an unknown endpoint id, so every request reaches the session over the PubSub).
"""

from __future__ import annotations

import base64
import itertools
import json
import re
import socket as stdsocket
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from conftest import APP
from serverproc import ServerProcess
from ws_client import Msg, error, ok

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "transport" / "longpoll"))
from lp_http import Answer, request  # noqa: E402

from transport import token  # noqa: E402
from transport.terms import Atom  # noqa: E402

SECRET = "abcdefgh" * 8  # examples/integration_app.py's secret_key_base
SALT = "Integration.PubSub"  # the session token's salt: the PubSub's name
MODES = ["local", "pubsub"]
VSNS = ["1.0.0", "2.0.0"]
_unique = itertools.count()

pytestmark = pytest.mark.timeout(120)


def unique(prefix: str) -> str:
    return f"{prefix}{next(_unique)}-{uuid.uuid4().hex[:8]}"


class LongPollApp(ServerProcess):
    """integration_app.py; ``lp_port`` is its long-poll endpoint's listener."""

    def __init__(self) -> None:
        super().__init__([sys.executable, str(APP), "--port", "0", "--log-level", "debug"], name=APP.name)
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


def encode(vsn: str, msg: dict) -> str:
    if vsn.startswith("2"):
        return json.dumps([msg.get("join_ref"), msg.get("ref"), msg["topic"], msg["event"], msg.get("payload", {})])
    return json.dumps({k: v for k, v in msg.items() if k != "join_ref"})


def decode(vsn: str, text: str) -> Msg:
    data = json.loads(text)
    if vsn.startswith("2"):
        return Msg(*data)
    assert set(data) == {"topic", "event", "payload", "ref"}, text
    return Msg(None, data["ref"], data["topic"], data["event"], data["payload"])


class Session:
    """One long-poll client session: the token, and GET/POST helpers (Phoenix's ``poll``)."""

    def __init__(
        self, server: LongPollApp, path: str = "/ws", vsn: str = "2.0.0", params: dict | None = None, headers: dict | None = None
    ) -> None:
        self.server, self.path, self.vsn = server, path, vsn
        self.params = dict(params or {})
        self.headers = headers
        self.token: str | None = None

    def call(self, method: str, body: bytes = b"", headers: dict | None = None, params: dict | None = None) -> Answer:
        query = {**self.params, "vsn": self.vsn, **(params or {})}
        if self.token is not None:
            query["token"] = self.token
        answer = request(
            self.server.lp_port, method, f"{self.path}/longpoll", query, body, {**(self.headers or {}), **(headers or {})}
        )
        assert answer.status == (400 if method not in ("GET", "POST", "OPTIONS") else 200), answer
        assert answer.headers.get("access-control-allow-origin") == "*", answer.headers
        return answer

    def open(self) -> Answer:
        answer = self.call("GET")
        assert answer.lp_status == 410 and answer.body["token"], answer
        assert answer.body["messages"] == []
        self.token = answer.body["token"]
        return answer

    def get(self) -> Answer:
        return self.call("GET")

    def messages(self, answer: Answer) -> list[Msg]:
        return [decode(self.vsn, m) for m in answer.body["messages"]]

    def post(self, msg: dict | list, headers: dict | None = None) -> Answer:
        if isinstance(msg, list):
            body = "\n".join(encode(self.vsn, m) for m in msg).encode()
            headers = {"Content-Type": "application/x-ndjson", **(headers or {})}
        else:
            body = encode(self.vsn, msg).encode()
            headers = {"Content-Type": "application/json", **(headers or {})}
        return self.call("POST", body, headers)

    def post_raw(self, body: bytes, content_type: str) -> Answer:
        return self.call("POST", body, {"Content-Type": content_type})

    def join(self, topic: str, join_ref: str | None = "1", payload: dict | None = None, ref: str = "1") -> None:
        answer = self.post({"topic": topic, "event": "phx_join", "ref": ref, "join_ref": join_ref, "payload": payload or {}})
        assert answer.lp_status == 200, answer

    def collect(self, until: Any, timeout: float = 5.0) -> list[Msg]:
        """Poll until ``until(messages so far)`` holds (bounded); every message seen."""
        seen: list[Msg] = []
        deadline = time.monotonic() + timeout
        while not until(seen):
            assert time.monotonic() < deadline, f"gave up waiting; saw {seen}"
            answer = self.get()
            assert answer.lp_status in (200, 204), answer
            if answer.lp_status == 200:
                assert answer.body["token"] == self.token
                seen += self.messages(answer)
        return seen

    def to_pubsub_mode(self) -> None:
        """Phoenix's ``:pubsub`` mode: the same session, named by an unknown endpoint id."""
        status, data = token.verify(SECRET, SALT, self.token)
        assert status == "ok" and data[0] == Atom("v1"), data
        self.token = token.sign(SECRET, SALT, (Atom("v1"), "unknown", data[2], data[3]))


def joined(server, topic, mode, path="/ws", vsn="1.0.0", join_ref="1", payload=None, params=None, headers=None) -> Session:
    s = Session(server, path, vsn, params, headers)
    s.open()
    s.join(topic, join_ref, payload)
    if mode == "pubsub":
        s.to_pubsub_mode()
    return s


def events(msgs: list[Msg]) -> list[str]:
    return [m.event for m in msgs]


def has(*names: str):
    return lambda seen: all(n in events(seen) for n in names)


# -- the scenarios of long_poll_channels_test.exs, in both modes ------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_joins_and_polls_messages(server, mode):
    topic = unique("room:lobby")
    s = joined(server, topic, mode)
    msgs = s.collect(lambda seen: len(seen) >= 3)
    assert msgs == [
        Msg(None, "1", topic, "phx_reply", ok()),
        Msg(None, None, topic, "user_entered", {"user": None}),
        Msg(None, None, topic, "joined", {"status": "connected", "user_id": None}),
    ]
    # a poll with nothing to say: 204 after the window, with the token again
    answer = s.get()
    assert (answer.lp_status, answer.body["messages"], answer.body["token"]) == (204, [], s.token)


def _joined_connect_info(server, mode, headers) -> dict:
    s = joined(server, unique("room:lobby"), mode, path="/ws/connect_info", headers=headers)
    msgs = s.collect(has("joined"))
    return next(m for m in msgs if m.event == "joined").payload["connect_info"]


@pytest.mark.parametrize("mode", MODES)
def test_x_headers_reach_connect_info(server, mode):
    info = _joined_connect_info(server, mode, {"x-application": "Phoenix"})
    assert info["x_headers"] == {"x-application": "Phoenix"}


@pytest.mark.parametrize("mode", MODES)
def test_trace_context_headers_reach_connect_info(server, mode):
    ctx = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "tracestate": "congo=t61rcWkgMz"}
    assert _joined_connect_info(server, mode, ctx)["trace_context_headers"] == ctx


@pytest.mark.parametrize("mode", MODES)
def test_peer_data_reaches_connect_info(server, mode):
    assert _joined_connect_info(server, mode, {"x-application": "Phoenix"})["peer_data"]["address"] == "127.0.0.1"


@pytest.mark.parametrize("mode", MODES)
def test_uri_reaches_connect_info(server, mode):
    uri = _joined_connect_info(server, mode, None)["uri"]
    assert (uri["host"], uri["path"], uri["query"], uri["scheme"]) == (
        "127.0.0.1",
        "/ws/connect_info/longpoll",
        "vsn=1.0.0",
        "http",
    )


@pytest.mark.parametrize("mode", MODES)
def test_publishing_events(server, mode):
    topic = unique("room:lobby")
    s = joined(server, topic, mode)
    watcher = joined(server, topic, "local")
    answer = s.post({"topic": topic, "event": "new_msg", "ref": "2", "payload": {"body": "hi!"}})
    assert answer.lp_status == 200
    # the broadcast reached another session on the topic, through handle_out
    seen = watcher.collect(lambda m: any(x.event == "new_msg" for x in m))
    assert Msg(None, None, topic, "new_msg", {"body": "hi!", "transport": "longpoll"}) in seen
    msgs = s.collect(lambda m: any(x.event == "new_msg" for x in m))
    assert msgs[-1] == Msg(None, None, topic, "new_msg", {"body": "hi!", "transport": "longpoll"})
    # an event for a topic not joined: 200 for the POST, an error reply in the next poll
    answer = s.post({"topic": "room:private-room", "event": "new_msg", "ref": "12300", "payload": {"body": "no"}})
    assert answer.lp_status == 200
    msgs = s.collect(lambda m: any(x.ref == "12300" for x in m))
    assert msgs[-1] == Msg(None, "12300", "room:private-room", "phx_reply", error({"reason": "unmatched topic"}))


@pytest.mark.parametrize("mode", MODES)
def test_publishing_batch_events_on_v2(server, mode):
    topic = unique("room:lobby")
    s = joined(server, topic, mode, vsn="2.0.0")
    batch = [
        {"topic": topic, "event": "new_msg", "ref": "2", "join_ref": "1", "payload": {"body": "hi1"}},
        {"topic": topic, "event": "new_msg", "ref": "3", "join_ref": "1", "payload": {"body": "hi2"}},
    ]
    assert s.post(batch).lp_status == 200
    msgs = s.collect(lambda m: sum(1 for x in m if x.event == "new_msg") >= 2)
    assert events(msgs[:3]) == ["phx_reply", "user_entered", "joined"]
    assert [m for m in msgs if m.event == "new_msg"] == [
        Msg("1", None, topic, "new_msg", {"body": "hi1", "transport": "longpoll"}),
        Msg("1", None, topic, "new_msg", {"body": "hi2", "transport": "longpoll"}),
    ]


@pytest.mark.parametrize("mode", MODES)
def test_shuts_down_after_the_window(server, mode):
    topic = unique("room:lobby")
    watcher = joined(server, topic, "local")
    s = joined(server, topic, mode, payload={"report_terminate": True})
    # s never polls: within 1.5 x window its session ends, and its channel with it
    seen = watcher.collect(has("channel_terminated"))
    assert next(m for m in seen if m.event == "channel_terminated").payload == {"reason": ["shutdown", "inactive"]}
    assert s.post({"topic": topic, "event": "new_msg", "ref": "2", "payload": {}}).lp_status == 410


@pytest.mark.parametrize("vsn", VSNS)
def test_refuses_connects_that_error_with_403(server, vsn):
    for params in ({"reject": "true"}, {"custom_error": "true"}):
        answer = Session(server, vsn=vsn, params=params).get()
        assert answer.body == {"status": 403}


@pytest.mark.parametrize("vsn", VSNS)
def test_refuses_unallowed_origins(server, vsn):
    assert Session(server, vsn=vsn, headers={"Origin": "https://example.com"}).get().lp_status == 410
    mark = server.log_mark()
    refused = Session(server, vsn=vsn, headers={"Origin": "http://notallowed.com"})
    assert refused.get().body == {"status": 403}
    assert refused.call("OPTIONS").body == {"status": 403}
    server.wait_log(r"Origin of the request: http://notallowed\.com", mark)


@pytest.mark.parametrize("vsn", VSNS)
def test_filters_params_on_join(server, vsn):
    topic = unique("room:lobby")
    mark = server.log_mark()
    joined(server, topic, "local", vsn=vsn, payload={"foo": "bar", "password": "shouldnotshow"})
    server.wait_log(rf"JOINED {re.escape(topic)} in \S+\n\s+Parameters: \{{'foo': 'bar', 'password': '\[FILTERED\]'\}}", mark)
    assert "shouldnotshow" not in server.log_since(mark)


@pytest.mark.parametrize("vsn", VSNS)
def test_sends_phx_error_if_a_channel_crashes(server, vsn):
    topic = unique("room:lobby")
    jr = "1" if vsn.startswith("2") else None
    s = joined(server, topic, "local", vsn=vsn, join_ref=jr)
    answer = s.post({"topic": topic, "event": "boom", "ref": "1", "join_ref": jr, "payload": {}})
    assert answer.lp_status == 200
    msgs = s.collect(has("phx_error"))
    assert events(msgs) == ["phx_reply", "user_entered", "joined", "you_left", "phx_error"]
    assert msgs[-1] == Msg(jr, jr, topic, "phx_error", {})


@pytest.mark.parametrize("vsn", VSNS)
def test_sends_phx_close_if_a_channel_leaves(server, vsn):
    topic = unique("room:lobby")
    jr = "1" if vsn.startswith("2") else None
    s = joined(server, topic, "local", vsn=vsn, join_ref=jr)
    answer = s.post({"topic": topic, "event": "phx_leave", "ref": "2", "join_ref": jr, "payload": {}})
    assert answer.lp_status == 200
    msgs = s.collect(has("phx_close", "you_left"))
    assert events(msgs) == ["phx_reply", "user_entered", "joined", "phx_reply", "phx_close", "you_left"]
    assert msgs[3] == Msg(jr, "2", topic, "phx_reply", ok())
    assert msgs[4] == Msg(jr, jr, topic, "phx_close", {})


@pytest.mark.parametrize("vsn", VSNS)
def test_shuts_down_on_a_disconnect_broadcast_to_the_socket_id(server, vsn):
    user = unique("u")
    topics = [unique("room:lpdisconnect1-"), unique("room:lpdisconnect2-")]
    watchers = [joined(server, t, "local", vsn=vsn) for t in topics]
    s = Session(server, vsn=vsn, params={"user_id": user})
    s.open()
    for t in topics:
        s.join(t, payload={"report_terminate": True})
    other_topic = unique("room:lobby")
    other = joined(server, other_topic, "local", vsn=vsn)
    other.post({"topic": other_topic, "event": "broadcast_disconnect", "ref": "2", "join_ref": "1", "payload": {"user_id": user}})
    for w in watchers:
        seen = w.collect(has("channel_terminated"))
        assert next(m for m in seen if m.event == "channel_terminated").payload == {"reason": ["shutdown", "disconnected"]}
    # the session is gone: a poll with its token starts a new one
    assert s.get().lp_status == 410


@pytest.mark.parametrize("vsn", VSNS)
def test_refuses_non_matching_versions(server, vsn):
    mark = server.log_mark()
    answer = Session(server, vsn="123.1.1", headers={"Origin": "https://example.com"}).get()
    assert answer.body == {"status": 403}
    server.wait_log(r"requested transport version '123\.1\.1' does not match", mark)


@pytest.mark.parametrize("vsn", VSNS)
def test_forces_application_json_content_type(server, vsn):
    topic = unique("room:lobby")
    jr = "1" if vsn.startswith("2") else None
    s = joined(server, topic, "local", vsn=vsn, join_ref=jr)
    answer = s.post({"topic": topic, "event": "phx_leave", "ref": "2", "join_ref": jr, "payload": {}}, {"Content-Type": ""})
    assert answer.lp_status == 200


# -- beyond Phoenix's suite: 408, CORS, methods, bad input -----------------------------------


def test_a_post_the_socket_layer_does_not_take_within_the_window_is_408(server):
    s = Session(server, "/ws/slow", "2.0.0")
    s.open()
    started = time.monotonic()
    answer = s.post({"topic": unique("slow:"), "event": "phx_join", "ref": "1", "join_ref": "1", "payload": {}})
    assert answer.lp_status == 408
    assert time.monotonic() - started < 0.9  # answered at the window (200 ms), not after the 1 s join


def test_options_answers_the_cors_preflight(server):
    answer = Session(server).call("OPTIONS", headers={"Access-Control-Request-Headers": "content-type, x-custom"})
    assert answer.raw == b""
    h = answer.headers
    assert (
        h["access-control-allow-origin"],
        h["access-control-allow-headers"],
        h["access-control-allow-methods"],
        h["access-control-max-age"],
    ) == ("*", "content-type, x-custom", "get, post, options", "3600")


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH"])
def test_other_methods_are_400(server, method):
    answer = Session(server).call(method)
    assert answer.raw == b""


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(lambda t: t[:-3] + ("AAA" if not t.endswith("AAA") else "BBB"), id="forged-signature"),
        pytest.param(lambda t: t[: len(t) // 2], id="truncated"),
        pytest.param(lambda t: "SFMyNTY.bm90IGEgdGVybQ.c2ln", id="garbage"),
        pytest.param(lambda t: token.sign("z" * 64, SALT, token.verify(SECRET, SALT, t)[1]), id="other-endpoint-secret"),
        pytest.param(lambda t: token.sign(SECRET, "Other.PubSub", token.verify(SECRET, SALT, t)[1]), id="other-salt"),
        pytest.param(
            lambda t: token.sign(SECRET, SALT, token.verify(SECRET, SALT, t)[1], signed_at=time.time() - 1_300_000), id="expired"
        ),
        pytest.param(lambda t: token.sign(SECRET, SALT, ("v1", "x", "<0.1.0>", "phx:lp:x")), id="wrong-shape"),
    ],
)
def test_bad_tokens_start_a_new_session_and_are_410_for_post(server, forge):
    topic = unique("room:lobby")
    good = joined(server, topic, "local", vsn="2.0.0")
    bad = Session(server, vsn="2.0.0")
    bad.token = forge(good.token)
    assert bad.post({"topic": topic, "event": "new_msg", "ref": "9", "join_ref": "1", "payload": {}}).body == {"status": 410}
    answer = bad.get()
    assert answer.lp_status == 410 and answer.body["token"] != bad.token
    # the real session never noticed
    assert events(good.collect(has("joined"))) == ["phx_reply", "user_entered", "joined"]


def test_a_body_that_is_not_a_message_is_400_and_closes_only_that_session(server):
    topic = unique("room:lobby")
    bystander = joined(server, topic, "local", vsn="2.0.0")
    s = joined(server, topic, "local", vsn="2.0.0")
    mark = server.log_mark()
    assert s.post_raw(b"this is not json", "application/json").body == {"status": 400}
    server.wait_log(r"invalid message from client", mark)
    assert s.post({"topic": topic, "event": "new_msg", "ref": "2", "join_ref": "1", "payload": {}}).body == {"status": 410}
    # another session on the same topic carries on
    assert (
        bystander.post({"topic": topic, "event": "new_msg", "ref": "2", "join_ref": "1", "payload": {"body": "still"}}).lp_status
        == 200
    )
    assert any(m.event == "new_msg" and m.payload["body"] == "still" for m in bystander.collect(has("new_msg")))


def test_too_many_ndjson_lines_are_refused_whole(server):
    topic = unique("room:lobby")
    s = joined(server, topic, "local", vsn="2.0.0")
    line = encode("2.0.0", {"topic": topic, "event": "new_msg", "ref": "5", "join_ref": "1", "payload": {"n": 1}})
    assert s.post_raw("\n".join([line] * 101).encode(), "application/x-ndjson").body == {"status": 400}
    assert s.post_raw("\n".join([line] * 100).encode(), "application/x-ndjson").lp_status == 200
    msgs = s.collect(lambda m: sum(1 for x in m if x.event == "new_msg") >= 100)
    assert sum(1 for x in msgs if x.event == "new_msg") == 100  # none of the refused 101


def test_an_invalid_base64_line_is_400_and_nothing_is_dispatched(server):
    topic = unique("room:lobby")
    s = joined(server, topic, "local", vsn="2.0.0")
    line = encode("2.0.0", {"topic": topic, "event": "new_msg", "ref": "5", "join_ref": "1", "payload": {"n": 1}})
    assert s.post_raw(f"{line}\n!!not-base64!!".encode(), "application/x-ndjson").body == {"status": 400}
    # the session lives on and saw nothing of that batch
    assert s.post_raw(line.encode(), "application/x-ndjson").lp_status == 200
    msgs = s.collect(lambda m: any(x.event == "new_msg" for x in m))
    assert sum(1 for x in msgs if x.event == "new_msg") == 1


def test_a_binary_frame_in_ndjson_reaches_the_channel(server):
    topic = unique("room:lobby")
    s = joined(server, topic, "local", vsn="2.0.0")
    # a V2 binary push: kind 0, then join_ref, ref, topic and event lengths, then the payload
    jr, ref, event, data = b"1", b"7", b"binary_size", bytes([1, 2, 3, 250])
    frame = bytes([0, len(jr), len(ref), len(topic), len(event)]) + jr + ref + topic.encode() + event + data
    assert s.post_raw(base64.b64encode(frame), "application/x-ndjson").lp_status == 200
    msgs = s.collect(lambda m: any(x.ref == "7" for x in m))
    assert msgs[-1] == Msg("1", "7", topic, "phx_reply", ok({"size": 4, "sum": 256}))


def test_a_10_mb_body_is_answered_413_without_being_read(server):
    s = Session(server, vsn="2.0.0")
    s.open()
    from urllib.parse import urlencode

    sock = stdsocket.create_connection(("127.0.0.1", server.lp_port), timeout=10)
    try:
        size = 10 * 1024 * 1024
        head = (
            f"POST /ws/longpoll?{urlencode({'vsn': '2.0.0', 'token': s.token})} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: application/x-ndjson\r\nContent-Length: {size}\r\n\r\n"
        )
        sock.sendall(head.encode() + b"A" * 65536)  # the client is still sending
        data = b""
        while b"\r\n\r\n" not in data or not data.endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        sock.close()
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), data[:200]
    assert b"connection: close" in head.lower()
    assert json.loads(body) == {"status": 413}
    # the session is untouched
    assert s.get().lp_status == 204


def test_concurrent_polls_the_older_is_answered(server):
    topic = unique("room:lobby")
    s = Session(server, "/js", "2.0.0")  # a 1 s window, so waiting and answering differ
    s.open()
    results: dict = {}

    def poll(name: str) -> None:
        started = time.monotonic()
        results[name] = (s.get(), started, time.monotonic())

    older = threading.Thread(target=poll, args=("older",))
    older.start()
    time.sleep(0.3)  # the older poll is waiting (it waits up to 1 s)
    newer = threading.Thread(target=poll, args=("newer",))
    newer.start()
    older.join(5)
    s.join(topic)
    newer.join(5)
    old_answer, old_start, old_end = results["older"]
    new_answer, _new_start, _ = results["newer"]
    assert old_answer.lp_status == 204 and old_end - old_start < 0.9, "the older poll waited out its window"
    assert new_answer.lp_status == 200 and "phx_reply" in events(s.messages(new_answer))
