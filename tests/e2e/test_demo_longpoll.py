"""The demo page over LongPoll, and its fallback to LongPoll when WebSockets are blocked.

The demo runs as ``phx-serve`` serves it (a subprocess); the page's client is the project's
``phx.js`` with its LongPoll transport. In headless Chromium:

* ``/?transport=longpoll`` joins over LongPoll only (no WebSocket is ever opened), shows
  live numbers, chats with a page on WebSocket in the same room (both ways) and both pages
  list both names in the room (presence);
* against ``tests/e2e/demo_ws_blocked.py`` (the same demo with the WebSocket unmounted: a
  handshake gets 404, as behind a proxy that refuses upgrades) the plain page falls back to
  LongPoll by itself, works (numbers, chat with a Python LongPoll client, presence), and
  after a reload goes straight to LongPoll (the fallback is remembered for the session);
* phx.js's fallback rules with scripted WebSockets: one that opens but never answers the
  health-check heartbeat is given up for LongPoll after ``longPollFallbackMs``; one that
  answers keeps the socket on WebSocket, and a later failure of it reconnects on WebSocket
  (a server restart is not a blocking proxy).

Chromium needs Debian's ``chromium`` and ``chromium-driver`` and ``selenium``; without them
these tests skip locally and fail under ``CI=true``. Every wait is bounded.
"""

from __future__ import annotations

import re
import sys
import uuid
from pathlib import Path

import pytest
from browser import headless_chromium
from serverproc import ServerProcess

from transport.client import Socket

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
PHX_SERVE = [sys.executable, str(REPO / "bin" / "phx-serve")]
ROOM = "room:lobby"

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def demo():
    server = ServerProcess([*PHX_SERVE, "--port", "0"], cwd=REPO, name="the demo")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def blocked():
    """The demo with its WebSocket unmounted (tests/e2e/demo_ws_blocked.py)."""
    server = ServerProcess([*PHX_SERVE, "demo_ws_blocked:children", "--port", "0"], cwd=HERE, name="the demo without WebSocket")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser():
    with headless_chromium() as driver:
        yield driver


@pytest.fixture
def pages(browser):
    """Opens pages in windows of their own; closes all but the first at the end."""
    first = browser.current_window_handle
    opened: list[str] = []

    def open_page(url: str) -> str:
        if opened:
            browser.switch_to.new_window("window")
        else:
            browser.switch_to.window(first)
        browser.get(url)
        opened.append(browser.current_window_handle)
        return browser.current_window_handle

    yield open_page
    for handle in opened:
        if handle != first and handle in browser.window_handles:
            browser.switch_to.window(handle)
            browser.close()
    browser.switch_to.window(first)
    browser.execute_script("sessionStorage.clear()")


# -- page helpers ------------------------------------------------------------------------------


def wait_for(driver, condition, timeout: float, message: str):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(lambda d: condition(d), message)


def on(driver, handle: str) -> None:
    driver.switch_to.window(handle)


def number(driver, sign: str) -> int | None:
    text = driver.find_element("id", sign).text.strip()
    return int(text) if re.fullmatch(r"-?\d+", text) else None


def wait_numbers_live(driver, timeout: float = 10.0) -> None:
    """Both numbers shown with their sign, and each changes (the publisher's ticks)."""
    first = {}
    for sign in ("positive", "negative"):
        first[sign] = wait_for(driver, lambda d, s=sign: number(d, s), timeout, f"no {sign} number shown")
    assert first["positive"] > 0 and first["negative"] < 0, first
    for sign in ("positive", "negative"):
        wait_for(driver, lambda d, s=sign: number(d, s) not in (None, first[s]), timeout, f"the {sign} number is not live")


def join_as(driver, name: str, timeout: float = 10.0) -> None:
    field = driver.find_element("id", "name")
    field.clear()
    field.send_keys(name)
    driver.find_element("id", "join").click()
    wait_for(driver, lambda d: d.find_element("id", "chat-status").text == f"joined {ROOM} as {name}", timeout, "chat not joined")
    wait_for(driver, lambda d: d.find_element("id", "send").is_enabled(), timeout, "send button not enabled")


def send_from_page(driver, body: str) -> None:
    driver.find_element("id", "message").send_keys(body)
    driver.find_element("id", "send").click()


def shown_messages(driver) -> list[list[str]]:
    return driver.execute_script(
        "return [...document.querySelectorAll('#messages li')].filter(li => li.querySelector('.name'))"
        ".map(li => [li.querySelector('.name').textContent, li.lastChild.textContent])"
    )


def present(driver) -> set[str]:
    return set(driver.execute_script("return [...document.querySelectorAll('#present li')].map(li => li.dataset.name)"))


def transport(driver) -> str:
    return driver.execute_script("return window.demo.transport")


def page_events(driver) -> list[str]:
    return driver.execute_script("return window.demo ? window.demo.events.slice() : []")


def requests_to(driver, path: str) -> list[str]:
    """URLs of the page's requests (resource timing) whose path is ``path``."""
    return driver.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name).filter(u => new URL(u).pathname === arguments[0])",
        path,
    )


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def severe_logs(driver) -> list[dict]:
    return [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]


# -- the page over LongPoll --------------------------------------------------------------------


def test_longpoll_page_and_websocket_page_chat_and_see_each_other(demo, browser, pages):
    lp = pages(demo.http + "/?transport=longpoll")
    wait_for(
        browser,
        lambda d: d.find_element("id", "connection").text == "connected · long polling",
        10,
        "LongPoll page not connected",
    )
    assert transport(browser) == "LongPoll"
    wait_numbers_live(browser)
    lp_name = unique("lp")
    join_as(browser, lp_name)

    ws = pages(demo.http + "/")
    wait_for(browser, lambda d: d.find_element("id", "connection").text == "connected", 10, "WebSocket page not connected")
    assert transport(browser) == "WebSocket"
    ws_name = unique("ws")
    join_as(browser, ws_name)

    # presence: each page lists both names
    for handle in (ws, lp):
        on(browser, handle)
        wait_for(browser, lambda d: {lp_name, ws_name} <= present(d), 10, f"presence incomplete on {handle}")

    # chat, both ways
    hello = unique("over long polling")
    on(browser, lp)
    send_from_page(browser, hello)
    on(browser, ws)
    wait_for(
        browser,
        lambda d: [lp_name, hello] in shown_messages(d),
        10,
        "the LongPoll page's message is not shown on the WebSocket page",
    )
    reply = unique("over websocket")
    send_from_page(browser, reply)
    on(browser, lp)
    wait_for(
        browser,
        lambda d: [ws_name, reply] in shown_messages(d),
        10,
        "the WebSocket page's message is not shown on the LongPoll page",
    )
    wait_for(browser, lambda d: [lp_name, hello] in shown_messages(d), 5, "the LongPoll page's own message is not shown")

    # the WebSocket page leaves: the LongPoll page sees it go
    on(browser, ws)
    browser.close()
    on(browser, lp)
    wait_for(browser, lambda d: ws_name not in present(d) and lp_name in present(d), 10, "the closed page's name is still listed")

    # LongPoll only: polls and posts went to /socket/longpoll, no WebSocket was tried
    assert requests_to(browser, "/socket/longpoll"), "no LongPoll requests seen"
    assert requests_to(browser, "/socket/websocket") == []
    assert not any(e.startswith("falling back") for e in page_events(browser))
    assert [e for e in page_events(browser) if e.startswith("socket ")] == ["socket open LongPoll"]
    assert severe_logs(browser) == []


def test_page_falls_back_to_longpoll_when_websockets_are_blocked(blocked, browser, pages):
    pages(blocked.http + "/")
    wait_for(browser, lambda d: d.find_element("id", "connection").text == "connected · long polling", 10, "page not connected")
    assert transport(browser) == "LongPoll"
    assert any(e.startswith("falling back to LongPoll") for e in page_events(browser)), page_events(browser)
    assert browser.execute_script("return sessionStorage.getItem('phx:fallback:LongPoll')") == "true"
    wait_numbers_live(browser)
    name = unique("fallback")
    join_as(browser, name)

    # a Python LongPoll client in the same room: chat both ways, and presence lists it
    socket = Socket(f"{blocked.ws}/socket", transport="longpoll")
    socket.connect(timeout=10)
    try:
        channel = socket.channel(ROOM, {"name": "py"})
        heard = channel.messages(events={"new_msg"})
        channel.join()
        wait_for(browser, lambda d: {name, "py"} <= present(d), 10, "presence does not list both")
        body = unique("from the page")
        send_from_page(browser, body)
        assert heard.get(10).payload == {"name": name, "body": body}
        reply = unique("from python")
        assert channel.push("new_msg", {"body": reply}) == {}
        wait_for(browser, lambda d: ["py", reply] in shown_messages(d), 10, "the Python client's message is not shown")
    finally:
        socket.disconnect()

    # a reload goes straight to LongPoll: the fallback is remembered for this session
    browser.refresh()
    wait_for(
        browser,
        lambda d: d.find_element("id", "connection").text == "connected · long polling",
        10,
        "reloaded page not connected",
    )
    assert any("remembered" in e for e in page_events(browser)), page_events(browser)
    assert requests_to(browser, "/socket/websocket") == []
    wait_numbers_live(browser)
    # the only errors are the refused handshakes of the first load (logged by Chromium)
    assert all("/socket/websocket" in e["message"] for e in severe_logs(browser)), severe_logs(browser)


FALLBACK_RULES = """
const done = arguments[arguments.length - 1];
const sleep = ms => new Promise(r => setTimeout(r, ms));
const until = async (what, test, ms) => { const end = Date.now() + ms;
  while (!test()) { if (Date.now() > end) throw new Error("timed out: " + what); await sleep(20); } };
class Store { constructor() { this.items = {}; } getItem(k) { return k in this.items ? this.items[k] : null; }
              setItem(k, v) { this.items[k] = String(v); } }
// A WebSocket that opens and then passes nothing (a proxy that lets the upgrade through).
class Silent { constructor(url) { this.readyState = 0; Silent.made++;
                 setTimeout(() => { this.readyState = 1; this.onopen && this.onopen(); }, 0); }
               send() {} close() { this.readyState = 3; } }
Silent.made = 0;
// A WebSocket that answers heartbeats, and can be dropped as a server restart drops it.
class Healthy { constructor(url) { this.readyState = 0; Healthy.all.push(this);
                  setTimeout(() => { this.readyState = 1; this.onopen && this.onopen(); }, 0); }
                send(data) { const [jr, ref, topic, event] = JSON.parse(data);
                  if (event === "heartbeat") setTimeout(() => this.onmessage && this.onmessage(
                    {data: JSON.stringify([null, ref, "phoenix", "phx_reply", {status: "ok", response: {}}])}), 0); }
                close() { this.readyState = 3; }
                drop() { this.readyState = 3; this.onerror && this.onerror({});
                  this.onclose && this.onclose({code: 1006, reason: ""}); } }
Healthy.all = [];
const out = {};
(async () => {
  const store = new Store();
  const logs = [];
  const s1 = new Phx.Socket("/socket", {transport: Silent, longPollFallbackMs: 300, sessionStorage: store,
                                         logger: (k, m) => logs.push(m)});
  const opened = [];
  s1.onOpen(() => opened.push(s1.transport.name));
  s1.connect();
  const ch = s1.channel("numbers:positive");
  let update = null;
  ch.on("update", p => { update = p.number; });
  ch.join();
  await until("LongPoll open", () => opened.includes("LongPoll"), 5000);
  await until("an update over LongPoll", () => update !== null, 5000);
  out.s1 = {opened, logs: logs.filter(m => /falling back|established/.test(m)), stored: store.getItem("phx:fallback:LongPoll"),
            update, state: ch.state};
  s1.disconnect();

  Silent.made = 0;
  const s2logs = [];
  const s2 = new Phx.Socket("/socket", {transport: Silent, longPollFallbackMs: 300, sessionStorage: store,
                                         logger: (k, m) => s2logs.push(m)});
  let s2open = null;
  s2.onOpen(() => { s2open = s2.transport.name; });
  s2.connect();
  await until("remembered LongPoll open", () => s2open !== null, 5000);
  out.s2 = {open: s2open, silentMade: Silent.made, logs: s2logs.filter(m => /falling back/.test(m))};
  s2.disconnect();

  const s3logs = [];
  const s3 = new Phx.Socket("/socket", {transport: Healthy, longPollFallbackMs: 300, sessionStorage: new Store(),
                                         reconnectAfterMs: () => 50, logger: (k, m) => s3logs.push(m)});
  const s3opens = [];
  s3.onOpen(() => s3opens.push(s3.transport.name));
  s3.connect();
  await until("healthy", () => s3.primaryPassedHealthCheck, 2000);
  await sleep(500);  // past the fallback period: still on WebSocket
  Healthy.all[0].drop();
  await until("reconnected", () => s3opens.length === 2, 2000);
  await sleep(400);
  out.s3 = {opens: s3opens, made: Healthy.all.length, fellBack: s3logs.some(m => /falling back/.test(m))};
  s3.disconnect();
  done(out);
})().catch(e => done({error: String(e && e.stack || e)}));
"""


def test_phx_js_fallback_rules(demo, browser, pages):
    pages(demo.http + "/")
    wait_for(browser, lambda d: d.execute_script("return !!window.Phx && !!window.Phx.LongPoll"), 10, "phx.js not loaded")
    out = browser.execute_async_script(FALLBACK_RULES)
    assert "error" not in out, out.get("error")
    # a WebSocket that opens but answers no heartbeat is given up after longPollFallbackMs
    s1 = out["s1"]
    assert s1["opened"] == ["Silent", "LongPoll"], s1
    assert s1["logs"] == ["falling back to LongPoll (no heartbeat answered)", "established LongPoll fallback"], s1
    assert s1["stored"] == "true" and s1["state"] == "joined" and s1["update"] > 0, s1
    # remembered: the next socket with that store never tries the WebSocket
    assert out["s2"] == {"open": "LongPoll", "silentMade": 0, "logs": ["falling back to LongPoll (remembered for this session)"]}
    # a healthy WebSocket stays, and its later failure reconnects on WebSocket, not LongPoll
    assert out["s3"] == {"opens": ["Healthy", "Healthy"], "made": 2, "fellBack": False}
