"""Metrics and the dashboard of a real ``phx-serve`` (the demo), end to end.

* ``/metrics`` scraped with a real HTTP client (urllib) while the test opens sockets,
  has joins refused and sends chat messages: the counters and gauges match what it did;
* the dashboard in headless Chromium: a socket appears when a client connects, and its
  channel disappears from the page when the channel process is killed (through the
  debug shell);
* off by default: a plain ``phx-serve`` has no metrics listener and no ``/metrics``.
"""

from __future__ import annotations

import re
import socket
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from serverproc import ServerProcess
from test_demo_page import browser, wait_for  # noqa: F401 - the shared Chromium fixture
from ws_client import PhxClient

from transport import debug_shell

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(120)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served():
    ports = {"metrics": free_port(), "dashboard": free_port(), "shell": free_port()}
    cmd = [
        sys.executable,
        str(REPO / "bin" / "phx-serve"),
        "--port",
        "0",
        "--metrics",
        f"127.0.0.1:{ports['metrics']}",
        "--dashboard",
        f"127.0.0.1:{ports['dashboard']}",
        "--debug-shell",
        f"127.0.0.1:{ports['shell']}",
    ]
    server = ServerProcess(cmd, cwd=REPO, name="phx-serve with metrics and dashboard")
    server.metrics = f"http://127.0.0.1:{ports['metrics']}/metrics"
    server.dashboard = f"http://127.0.0.1:{ports['dashboard']}/"
    server.shell = f"127.0.0.1:{ports['shell']}"
    try:
        yield server
    finally:
        server.stop()


def scrape(url: str) -> dict[str, float]:
    """``{'name{labels}': value}`` from one scrape (comments and _created series left out)."""
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    samples = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        key, value = line.rsplit(" ", 1)
        samples[key] = float(value)
    return samples


def value(samples: dict[str, float], name: str, **labels: str) -> float:
    """The sample of ``name`` whose labels include ``labels`` (0 if there is none)."""
    for key, v in samples.items():
        m = re.fullmatch(r"([^{]+)(?:\{(.*)\})?", key)
        if m.group(1) != name:
            continue
        have = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        if all(have.get(k) == v2 for k, v2 in labels.items()):
            return v
    return 0.0


def wait_value(url: str, name: str, expected: float, timeout: float = 10.0, **labels: str) -> dict[str, float]:
    deadline = time.monotonic() + timeout
    while True:
        samples = scrape(url)
        if value(samples, name, **labels) == expected or time.monotonic() > deadline:
            assert value(samples, name, **labels) == expected, (name, labels)
            return samples
        time.sleep(0.1)


def test_metrics_count_what_the_clients_did(served):
    url = served.metrics
    before = scrape(url)
    p = "greenphx_phoenix"
    ws = f"{served.ws}/socket/websocket"
    clients = [PhxClient(ws, "2.0.0") for _ in range(5)]
    try:
        for c in clients[:3]:
            c.reply_to(c.join("numbers:positive"))
        for c in clients[3:]:
            assert c.reply_to(c.join("numbers:bogus")).payload["status"] == "error"
        chat = clients[0]
        chat.reply_to(chat.join("room:metrics", {"name": "ann"}))
        for k in range(4):
            assert chat.reply_to(chat.send("room:metrics", "new_msg", {"body": f"m{k}"})).payload["status"] == "ok"

        samples = wait_value(url, f"{p}_sockets", 5, transport="websocket")
        connects = value(samples, f"{p}_socket_connected_duration_milliseconds_count", result="ok", transport="websocket")
        assert (
            connects - value(before, f"{p}_socket_connected_duration_milliseconds_count", result="ok", transport="websocket") == 5
        )
        joined_ok = value(samples, f"{p}_channel_joined_total", result="ok", transport="websocket")
        refused = value(samples, f"{p}_channel_joined_total", result="error", transport="websocket")
        assert joined_ok - value(before, f"{p}_channel_joined_total", result="ok", transport="websocket") == 4
        assert refused - value(before, f"{p}_channel_joined_total", result="error", transport="websocket") == 2
        handled = value(
            samples, f"{p}_channel_handled_in_duration_milliseconds_count", channel="transport.demo.RoomChannel", event="new_msg"
        )
        assert (
            handled
            - value(
                before,
                f"{p}_channel_handled_in_duration_milliseconds_count",
                channel="transport.demo.RoomChannel",
                event="new_msg",
            )
            == 4
        )
        assert value(samples, f"{p}_channels") == 4  # 3 numbers + 1 room (no dashboard page is open yet)
        assert value(samples, "greenphx_pubsub_subscriptions", pubsub="Demo.PubSub") >= 4
        assert value(samples, "greenphx_runtime_processes") > 10
        assert value(samples, "greenphx_runtime_supervisor_restarts_total", supervisor="phx-serve") == 0
        assert "greenphx_runtime_event_loop_lag_p99_milliseconds" in samples
    finally:
        for c in clients:
            c.close()
    wait_value(url, f"{p}_sockets", 0, transport="websocket")


def test_dashboard_shows_a_socket_and_loses_its_killed_channel(served, browser):  # noqa: F811
    driver = browser
    driver.get(served.dashboard)
    wait_for(driver, lambda d: d.find_element("id", "status").text == "live", 15, "the dashboard's channel did not join")
    client = PhxClient(f"{served.ws}/socket/websocket", "2.0.0")
    try:
        client.reply_to(client.join("room:dash", {"name": "bob"}))

        def sockets_on_page(d) -> dict[str, str]:
            # Read in one script: the page redraws its tables every snapshot.
            return dict(
                d.execute_script(
                    "return Array.from(document.querySelectorAll('#sockets tbody tr'))"
                    ".map(tr => [tr.dataset.pid, tr.querySelector('.channels').textContent]);"
                )
            )

        def room_socket(d):
            return next((pid for pid, chans in sockets_on_page(d).items() if "room:dash" in chans), None)

        pid = wait_for(driver, room_socket, 15, "the client's socket never showed up with its channel")
        assert re.fullmatch(r"<0\.\d+\.0>", pid)
        killed = debug_shell.attach(
            served.shell,
            "kill([p for p in actors.processes()"
            " if (actors.process_info(p, stack=False) or {}).get('label') == ('channel', 'room:dash')][0])",
            timeout=10,
        )
        assert killed == 0

        def channel_gone(d):
            shown = sockets_on_page(d)
            return pid in shown and "room:dash" not in shown[pid]

        wait_for(driver, channel_gone, 15, "the killed channel stayed on the page")
        assert driver.find_element("id", "tree").text.startswith("<0.")  # the supervision tree is drawn
        assert driver.find_elements("css selector", "#charts .uplot")  # the charts are drawn
    finally:
        client.close()


def test_metrics_and_dashboard_are_off_by_default():
    server = ServerProcess([sys.executable, str(REPO / "bin" / "phx-serve"), "--port", "0"], cwd=REPO, name="plain phx-serve")
    try:
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(f"{server.http}/metrics", timeout=5)
        assert e.value.code == 404
        with socket.socket() as s:  # nothing listens on the default metrics port
            assert s.connect_ex(("127.0.0.1", 9568)) != 0
    finally:
        server.stop()
