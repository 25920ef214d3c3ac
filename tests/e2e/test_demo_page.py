"""The embedded demo (``transport.demo``), served as ``phx-serve`` serves it, end to end.

The server runs in a subprocess (:data:`SERVER_CMD`, given ``--port N``; it must print
``listening on http://HOST:PORT`` on stdout). What is checked:

* the tree's order (in-process, nothing started): PubSub, pool, HTTP listener, drainer,
  numbers publisher;
* HTTP: ``/`` is the page, ``/app.js`` and ``/phx.js`` are JavaScript (and byte for byte the
  package's files), HEAD works, an unknown path is 404, a POST is 405;
* WebSocket: ``numbers:positive`` and ``numbers:negative`` send positive / negative
  updates, one at the join and then one a second from the publisher, rising in magnitude
  (frame by frame with ``ws_client.py``: pushes and broadcasts differ by their join_ref);
  with the project's client (``transport.client``): ``numbers:bogus`` is refused with
  ``{"reason": "unknown topic"}`` and the socket lives on; the chat room refuses a join
  without a name and broadcasts ``new_msg`` as ``{"name", "body"}`` to everyone in it;
* headless Chromium (selenium): the page shows live numbers, a message typed and sent in
  the page reaches a Python client in the same room and the other way round (screenshot
  saved); after the room's channel crashes the page's client rejoins by itself; after the
  server restarts (the page sees close 1012) it reconnects to the new server on the same
  port, rejoins, and numbers and chat work again.

Chromium needs Debian's ``chromium`` and ``chromium-driver`` and the ``selenium`` package;
without them the browser tests skip locally and fail under ``CI=true``. Every wait is
bounded.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import time
import urllib.error
import urllib.request
import uuid
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from browser import headless_chromium
from serverproc import ServerProcess
from ws_client import Msg, PhxClient, ok

from transport.client import Channel, JoinError, PushError, Socket

REPO = Path(__file__).resolve().parents[2]

# How the demo is served: phx-serve with no target, ``--port N`` appended.
SERVER_CMD = [sys.executable, str(REPO / "bin" / "phx-serve")]

ROOM = "room:lobby"

pytestmark = pytest.mark.timeout(120)


# ------------------------------------------------------------------------------------------
# the server


class DemoServer(ServerProcess):
    """The demo in a subprocess (``SERVER_CMD --port PORT``)."""

    def __init__(self, port: int = 0) -> None:
        super().__init__([*SERVER_CMD, "--port", str(port)], cwd=REPO, name="the demo")
        self.ws = f"ws://{self.host}:{self.port}/socket/websocket"


@pytest.fixture(scope="module")
def server():
    s = DemoServer()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture
def clients():
    """Python clients a test opened; closed at its end whatever happened."""
    opened: list[PhxClient] = []
    yield opened
    for c in opened:
        try:
            c.close()
        except Exception:  # noqa: BLE001 - already closed by the server
            pass


def client(server: DemoServer, clients: list, timeout: float = 3.0) -> PhxClient:
    c = PhxClient(server.ws, "2.0.0", timeout=timeout)
    clients.append(c)
    return c


@pytest.fixture
def sockets():
    """``transport.client`` sockets a test opened; disconnected at its end."""
    opened: list[Socket] = []
    yield opened
    for s in opened:
        s.disconnect()


def connect(server: DemoServer, sockets: list) -> Socket:
    """A connected ``transport.client.Socket`` to the demo's ``/socket``."""
    s = Socket(f"ws://{server.host}:{server.port}/socket")
    sockets.append(s)
    s.connect()
    return s


def fetch(url: str, method: str = "GET") -> tuple[int, str, bytes]:
    """(status, content type, body) of a plain HTTP request."""
    request = urllib.request.Request(url, method=method)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: no proxies
    try:
        with opener.open(request, timeout=5) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read()


def static_file(name: str) -> bytes:
    return resources.files("transport.demo").joinpath("static", name).read_bytes()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# ------------------------------------------------------------------------------------------
# the tree


def test_children_order_pubsub_presence_pool_listener_drainer_publisher():
    from transport import Drainer, demo
    from transport.http import HttpServer
    from transport.pubsub import PubSub

    specs = demo.children({"host": "127.0.0.1", "port": 0})
    assert specs[0].id == PubSub.child_spec(name="Demo.PubSub").id
    # the presence tracker right after the PubSub it replicates over
    assert specs[1].id == demo.presence.name == "Demo.Presence"
    # the LongPoll session supervisor right after the pool (stopped after the listener)
    assert specs[3].id == ("longpoll", "Demo.Endpoint")
    specs = [specs[0], specs[2], *specs[4:]]
    starts = [s.start[0] for s in specs]
    assert specs[1].id == demo.endpoint.pool_name(demo.DemoSocket)
    assert starts[2] == HttpServer.start_link and specs[2].start[1][0][0] is demo.endpoint
    assert starts[3] == Drainer.start_link
    assert specs[4].id == "Demo.NumbersPublisher" and len(specs) == 5
    # Without server options: the same tree without the listener (for in-process use).
    assert HttpServer.start_link not in [s.start[0] for s in demo.children(None)]
    assert demo.endpoint.name == "Demo.Endpoint" and demo.endpoint.pubsub_server == "Demo.PubSub"


# ------------------------------------------------------------------------------------------
# HTTP


def test_page_and_scripts_are_served_with_their_content_types(server):
    status, ctype, body = fetch(server.http + "/")
    assert status == 200 and ctype.startswith("text/html")
    assert body == static_file("index.html")
    page = body.decode()
    assert '<script src="/phx.js"></script>' in page and '<script src="/app.js"></script>' in page
    assert "http://" not in page and "https://" not in page  # nothing from elsewhere

    for name in ("app.js", "phx.js"):
        status, ctype, body = fetch(f"{server.http}/{name}")
        assert (status, ctype) == (200, "text/javascript; charset=utf-8"), name
        assert body == static_file(name)

    status, ctype, body = fetch(server.http + "/phx.js", method="HEAD")
    assert (status, ctype, body) == (200, "text/javascript; charset=utf-8", b"")

    for path in ("/nope", "/static/app.js", "/../setup.cfg", "/app.js/", "/favicon.ico"):
        assert fetch(server.http + path)[0] == 404, path
    assert fetch(server.http + "/", method="POST")[0] == 405
    # The socket's path without an upgrade is the endpoint's, not the page's.
    assert fetch(server.http + "/socket/websocket")[0] == 400


# ------------------------------------------------------------------------------------------
# WebSocket


@pytest.mark.parametrize(("topic", "sign"), [("numbers:positive", 1), ("numbers:negative", -1)])
def test_numbers_topics_stream_updates(server, clients, topic, sign):
    c = client(server, clients)
    jr = c.join(topic)
    assert c.reply_to(jr) == Msg(jr, jr, topic, "phx_reply", ok())
    joined = time.monotonic()
    # One update right after the join, pushed by the channel (join_ref set; a tick of the
    # publisher may overtake it) ...
    pushed = c.receive(lambda m: m.event == "update" and m.join_ref == jr, timeout=3)
    assert pushed.topic == topic and set(pushed.payload) == {"number"}
    # ... and the publisher's broadcasts (join_ref null), once a second, rising in magnitude.
    ticks = [c.receive(lambda m: m.event == "update" and m.join_ref is None, timeout=3) for _ in range(2)]
    elapsed = time.monotonic() - joined
    assert all(t.topic == topic for t in ticks)
    numbers = [pushed.payload["number"], *(t.payload["number"] for t in ticks)]
    assert all(isinstance(n, int) and sign * n > 0 for n in numbers), numbers
    assert sign * ticks[0].payload["number"] < sign * ticks[1].payload["number"], numbers
    assert 0.8 < elapsed < 3.5, elapsed  # two ticks: at least ~one interval apart, at most ~two after the join


def test_unknown_numbers_topic_is_refused_and_the_socket_lives_on(server, sockets):
    socket = connect(server, sockets)
    closes: list = []
    socket.on_close(lambda code, reason: closes.append(code))
    with pytest.raises(JoinError) as refused:
        socket.channel("numbers:bogus").join()
    assert refused.value.response == {"reason": "unknown topic"}
    channel = socket.channel("numbers:positive")
    updates = channel.messages(events={"update"})
    troubles: list = []
    channel.on_error(troubles.append)
    channel.on_close(troubles.append)
    assert channel.join() == {}
    assert updates.get(3).payload["number"] > 0
    assert socket.is_connected and closes == [] and troubles == []


def test_chat_broadcasts_new_msg_with_the_senders_name(server, sockets):
    room = unique("room:test")
    ann_socket, bob_socket = connect(server, sockets), connect(server, sockets)
    for params, reason in (({}, "name required"), ({"name": "x" * 33}, "name too long")):
        with pytest.raises(JoinError) as refused:
            ann_socket.channel(room, params).join()
        assert refused.value.response == {"reason": reason}
    ann, bob = ann_socket.channel(room, {"name": "ann"}), bob_socket.channel(room, {"name": "bob"})
    heard = {ann: ann.messages(events={"new_msg"}), bob: bob.messages(events={"new_msg"})}
    ann.join()
    bob.join()

    assert ann.push("new_msg", {"body": "hello bob"}) == {}
    for c in (ann, bob):
        assert heard[c].get(3).payload == {"name": "ann", "body": "hello bob"}

    with pytest.raises(PushError) as refused:
        bob.push("new_msg", {"body": "   "})
    assert refused.value.response == {"reason": "invalid body"}
    assert bob.push("new_msg", {"body": "hi ann", "name": "mallory"}) == {}  # the name is the join's
    assert heard[ann].get(3).payload == {"name": "bob", "body": "hi ann"}


# ------------------------------------------------------------------------------------------
# the page in headless Chromium


@pytest.fixture(scope="module")
def browser():
    with headless_chromium() as driver:
        yield driver


def wait_for(driver, condition, timeout: float, message: str):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(lambda d: condition(d), message)


def number(driver, sign: str) -> int | None:
    text = driver.find_element("id", sign).text.strip()
    return int(text) if re.fullmatch(r"-?\d+", text) else None


def wait_numbers_live(driver, timeout: float = 10.0) -> None:
    """Both numbers shown with the right sign, and each changes (the publisher's ticks)."""
    first = {}
    for sign in ("positive", "negative"):
        first[sign] = wait_for(driver, lambda d, s=sign: number(d, s), timeout, f"no {sign} number shown")
    assert first["positive"] > 0 and first["negative"] < 0, first
    for sign in ("positive", "negative"):
        wait_for(driver, lambda d, s=sign: number(d, s) not in (None, first[s]), timeout, f"the {sign} number is not live")
    assert number(driver, "positive") > 0 and number(driver, "negative") < 0


def page_events(driver) -> list[str]:
    return driver.execute_script("return window.demo ? window.demo.events.slice() : []")


def join_as(driver, name: str, timeout: float = 10.0) -> None:
    field = driver.find_element("id", "name")
    field.clear()
    field.send_keys(name)
    driver.find_element("id", "join").click()
    wait_for(driver, lambda d: d.find_element("id", "chat-status").text == f"joined {ROOM} as {name}", timeout, "chat not joined")
    wait_for(driver, lambda d: d.find_element("id", "send").is_enabled(), timeout, "send button not enabled")


def send_from_page(driver, body: str) -> None:
    box = driver.find_element("id", "message")
    box.send_keys(body)
    driver.find_element("id", "send").click()


def listener(server: DemoServer, sockets: list, name: str = "py") -> tuple[Channel, Any]:
    """A Python client in the page's room: its channel, and the chat messages it hears."""
    channel = connect(server, sockets).channel(ROOM, {"name": name})
    heard = channel.messages(events={"new_msg"})
    channel.join()
    return channel, heard


def assert_chat_round_trip(driver, server, sockets, page_name: str) -> None:
    py, heard = listener(server, sockets)
    body = unique("from the page")
    send_from_page(driver, body)
    assert heard.get(10).payload == {"name": page_name, "body": body}
    wait_for(driver, lambda d: d.find_element("id", "message").get_attribute("value") == "", 5, "message box not cleared")
    reply_body = unique("from python")
    assert py.push("new_msg", {"body": reply_body}) == {}
    wait_for(driver, lambda d: ["py", reply_body] in shown_messages(d), 10, "the Python client's message is not shown")
    assert [page_name, body] in shown_messages(driver)


def shown_messages(driver) -> list[list[str]]:
    """The chat list as [name, body] pairs."""
    return driver.execute_script(
        "return [...document.querySelectorAll('#messages li')].filter(li => li.querySelector('.name'))"
        ".map(li => [li.querySelector('.name').textContent, li.lastChild.textContent])"
    )


def test_page_shows_live_numbers_and_chats(server, browser, sockets, tmp_path):
    browser.get(server.http + "/")
    assert browser.title == "greenphx demo"
    wait_for(browser, lambda d: d.find_element("id", "connection").text == "connected", 10, "socket not connected")
    wait_numbers_live(browser)

    join_as(browser, "Selenium")
    assert_chat_round_trip(browser, server, sockets, "Selenium")

    shot = tmp_path / "demo_page.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 0
    if os.environ.get("DEMO_SCREENSHOT"):
        shutil.copy(shot, os.environ["DEMO_SCREENSHOT"])
    print(f"screenshot: {shot}")

    severe = [e for e in browser.get_log("browser") if e.get("level") == "SEVERE"]
    assert severe == [], severe  # no script errors, CSP violations or failed loads


def test_the_form_says_rename_once_joined_and_blank_messages_are_cleared_not_sent(server, browser, sockets):
    browser.get(server.http + "/")
    wait_for(browser, lambda d: d.find_element("id", "connection").text == "connected", 10, "socket not connected")
    join_as(browser, "Blank")
    assert browser.find_element("id", "join").text == "Rename"
    _py, heard = listener(server, sockets)
    send_from_page(browser, "   ")
    wait_for(browser, lambda d: d.find_element("id", "message").get_attribute("value") == "", 5, "blanks left in the box")
    body = unique("after the blanks")
    send_from_page(browser, body)
    assert heard.get(10).payload == {"name": "Blank", "body": body}  # the first line heard: no blank one before it


def test_page_rejoins_the_room_after_its_channel_crashes(server, browser, sockets):
    browser.get(server.http + "/")
    join_as(browser, "Crashy")
    joins_before = page_events(browser).count(f"{ROOM} joined as Crashy")
    # An event RoomChannel has no handler for crashes the channel (as in Phoenix).
    browser.execute_script("window.demo.room.push('boom')")
    wait_for(browser, lambda d: f"{ROOM} phx_error" in page_events(d), 5, "no phx_error seen by the page")
    wait_for(browser, lambda d: page_events(d).count(f"{ROOM} joined as Crashy") > joins_before, 10, "the room was not rejoined")
    assert "RoomChannel does not handle 'boom'" in server.stderr
    wait_for(browser, lambda d: d.find_element("id", "send").is_enabled(), 5, "send button not enabled after the rejoin")
    assert_chat_round_trip(browser, server, sockets, "Crashy")
    # The socket itself was never dropped, and the numbers channels were untouched.
    assert not any(e.startswith("socket closed") for e in page_events(browser))


def test_phx_js_heartbeats_and_backs_off(server, browser):
    """phx.js's heartbeat (at a short interval here) is answered and keeps the socket
    open; its reconnect and rejoin delays are 1 s, 2 s, 5 s, then 10 s."""
    browser.get(server.http + "/")
    wait_for(browser, lambda d: d.execute_script("return window.demo.socket.isConnected()"), 10, "page socket not connected")
    result = browser.execute_async_script(
        """
        const done = arguments[arguments.length - 1];
        const socket = new Phx.Socket("/socket", {heartbeatIntervalMs: 100});
        const replies = [], closes = [];
        socket.onMessage(m => { if (m.topic === "phoenix") replies.push([m.event, m.payload.status]); });
        socket.onClose(e => closes.push(e.code));
        socket.connect();
        setTimeout(() => {
          const connected = socket.isConnected();
          socket.disconnect();
          done({replies, closes, connected,
                page: [1, 2, 3, 4, 5, 9].map(t => window.demo.socket.reconnectAfterMs(t)),
                rejoin: [1, 2, 3, 4, 5].map(t => window.demo.socket.rejoinAfterMs(t)),
                heartbeat: window.demo.socket.heartbeatIntervalMs});
        }, 1000);
        """
    )
    assert result["connected"] and result["closes"] == [1000]
    assert 5 <= len(result["replies"]) <= 11 and set(map(tuple, result["replies"])) == {("phx_reply", "ok")}, result
    assert result["page"] == [1000, 2000, 5000, 10000, 10000, 10000]
    assert result["rejoin"] == [1000, 2000, 5000, 10000, 10000]
    assert result["heartbeat"] == 30000


FAKE_TRANSPORT_SCENARIO = """
const done = arguments[arguments.length - 1];
class FakeWS {  // a WebSocket whose server is this script
  constructor(url) { this.url = url; this.readyState = 0; this.sent = []; this.closedWith = null; FakeWS.all.push(this);
                     setTimeout(() => { this.readyState = 1; this.onopen && this.onopen(); }, 0); }
  send(data) { this.sent.push(JSON.parse(data)); }
  close(code) { this.readyState = 3; this.closedWith = code; }
  serverSends(frame) { this.onmessage && this.onmessage({data: JSON.stringify(frame)}); }
}
FakeWS.all = [];
const sleep = ms => new Promise(r => setTimeout(r, ms));
const socket = new Phx.Socket("/socket", {transport: FakeWS, heartbeatIntervalMs: 3600000,
                                           reconnectAfterMs: () => 20, rejoinAfterMs: () => 20});
const out = {};
(async () => {
  socket.connect();
  await sleep(10);
  const ws = FakeWS.all[0];
  out.url = ws.url;
  const ch = socket.channel("room:x", {name: "a"});
  const seen = [];
  ch.on("new_msg", p => seen.push(p.body));
  let joinReplies = 0;
  ch.join().receive("ok", () => joinReplies++);
  const join1 = ws.sent[0];
  out.join1 = join1;
  ws.serverSends([join1[0], join1[1], "room:x", "phx_reply", {status: "ok", response: {}}]);
  out.stateAfterJoin = ch.state;
  const push = ch.push("new_msg", {body: "b"});
  let pushReply = null;
  push.receive("ok", r => pushReply = r);
  const sentPush = ws.sent[1];
  out.sentPush = sentPush;
  ws.serverSends([join1[0], sentPush[1], "room:x", "phx_reply", {status: "ok", response: {n: 1}}]);
  out.pushReply = pushReply;
  // the server-side channel crashes: phx_error, then a rejoin with a new join_ref
  ws.serverSends([join1[0], join1[0], "room:x", "phx_error", {}]);
  out.stateAfterError = ch.state;
  await sleep(60);
  const join2 = ws.sent[2];
  out.join2 = join2;
  ws.serverSends([join2[0], join2[1], "room:x", "phx_reply", {status: "ok", response: {}}]);
  out.joinReplies = joinReplies;
  // frames of the first join are stale now; broadcasts (join_ref null) and current ones count
  ws.serverSends([join1[0], null, "room:x", "new_msg", {body: "stale"}]);
  ws.serverSends([null, null, "room:x", "new_msg", {body: "broadcast"}]);
  ws.serverSends([join2[0], null, "room:x", "new_msg", {body: "pushed"}]);
  out.seen = seen;
  // an unsolicited phx_close (server stopped the channel) rejoins too
  ws.serverSends([join2[0], join2[0], "room:x", "phx_close", {}]);
  await sleep(60);
  out.join3 = ws.sent[3];
  // heartbeat: an unanswered one drops the connection at the next beat, then reconnects
  socket.heartbeatIntervalMs = 30;
  socket.startHeartbeat();
  await sleep(100);
  out.heartbeat = ws.sent.find(f => f[3] === "heartbeat");
  out.firstClosedWith = ws.closedWith;
  out.connections = FakeWS.all.length;
  const ws2 = FakeWS.all[1];
  await sleep(10);
  out.rejoinOnReconnect = ws2 ? ws2.sent.filter(f => f[3] === "phx_join").map(f => f[2]) : null;
  out.stateOnReconnect = ch.state;
  socket.disconnect();
  await sleep(60);
  out.connectionsAfterDisconnect = FakeWS.all.length;
  done(out);
})().catch(e => done({error: String(e && e.stack || e)}));
"""


def test_phx_js_protocol_with_a_fake_transport(server, browser):
    """phx.js against a scripted WebSocket: V2 frames, replies by ref, rejoin after phx_error
    and phx_close with a new join_ref, stale frames ignored, heartbeat timeout reconnects."""
    browser.get(server.http + "/")
    wait_for(browser, lambda d: d.execute_script("return !!window.Phx"), 10, "phx.js not loaded")
    out = browser.execute_async_script(FAKE_TRANSPORT_SCENARIO)
    assert "error" not in out, out.get("error")
    assert out["url"].endswith("/socket/websocket?vsn=2.0.0") and out["url"].startswith("ws://")
    j1 = out["join1"]
    assert j1[0] == j1[1] and j1[2:] == ["room:x", "phx_join", {"name": "a"}]
    assert out["stateAfterJoin"] == "joined"
    assert out["sentPush"][0] == j1[0] and out["sentPush"][2:] == ["room:x", "new_msg", {"body": "b"}]
    assert out["pushReply"] == {"n": 1}
    assert out["stateAfterError"] == "errored"
    j2 = out["join2"]
    assert j2[0] == j2[1] != j1[0] and j2[2:] == ["room:x", "phx_join", {"name": "a"}]
    assert out["joinReplies"] == 2
    assert out["seen"] == ["broadcast", "pushed"]
    j3 = out["join3"]
    assert j3[3] == "phx_join" and j3[0] not in (j1[0], j2[0])
    assert out["heartbeat"][2:] == ["phoenix", "heartbeat", {}] and out["heartbeat"][0] is None
    assert out["firstClosedWith"] == 1000 and out["connections"] == 2
    assert out["rejoinOnReconnect"] == ["room:x"]
    assert out["connectionsAfterDisconnect"] == 2  # disconnect() does not reconnect


def test_page_reconnects_after_a_server_restart(browser, sockets):
    first = DemoServer()
    second = None
    try:
        browser.get(first.http + "/")
        join_as(browser, "Phoenix")
        wait_numbers_live(browser)

        assert first.stop() == 0  # drains: the page's socket is closed with 1012
        wait_for(browser, lambda d: "socket closed 1012" in page_events(d), 10, "the page did not see close 1012")
        wait_for(browser, lambda d: "disconnected" in d.find_element("id", "connection").text, 5, "badge not disconnected")

        second = DemoServer(port=first.port)  # same address: the page's URL stays valid
        # Back-off 1 s, 2 s, 5 s, 10 s: the next try lands within about 10 s of the start.
        wait_for(browser, lambda d: d.find_element("id", "connection").text == "connected", 20, "the page did not reconnect")
        wait_numbers_live(browser)
        wait_for(browser, lambda d: page_events(d).count(f"{ROOM} joined as Phoenix") >= 2, 10, "the room was not rejoined")
        assert_chat_round_trip(browser, second, sockets, "Phoenix")
    finally:
        first.stop()
        if second is not None:
            assert second.stop() == 0
