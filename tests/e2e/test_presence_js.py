"""Phoenix's official JavaScript ``Presence`` against greenphx's Presence, end to end.

The npm package ``phoenix`` (tests/e2e/js, pinned) runs under Node
(tests/e2e/js/presence_client.mjs, driven line by line on stdin) against an endpoint served
in this test's own hub, so that after every step the test compares the list each client's
``Presence`` holds with ``Presence.list`` on the server. The channel is Phoenix's guide
channel: track in ``handle_info`` after the join, push ``presence_state``; it also updates
its meta on ``set_status`` and crashes on ``boom``.

Steps: two users join (one with two sockets: one key, two metas), a meta update
(``phx_ref_prev``), a crashed channel (its presence leaves, the client rejoins and gets a
new state), a leave, a disconnect. Every diff a client saw before the state of its current
join was held by the client (``inPendingSyncState``) and the lists still match.
"""

from __future__ import annotations

import itertools
import json
import os
from typing import Any

import gevent
import gevent.subprocess as gsubprocess
import pytest
from test_phoenix_js import JS_DIR, node  # noqa: F401 - the fixture checks Node and the npm install

import actors
from supervision import Application
from transport import Channel, Endpoint, SocketHandler, push
from transport.presence import Presence
from transport.pubsub import PubSub

SCRIPT = JS_DIR / "presence_client.mjs"
TOPIC = "room:presence-js"
STEP_TIMEOUT = 15.0

pytestmark = pytest.mark.timeout(120)

_ids = itertools.count(1)


def make_app() -> tuple[Application, Endpoint, Presence]:
    n = next(_ids)
    pubsub_name = f"PresenceJs.PubSub.{n}"
    presence = Presence(f"PresenceJs.Presence.{n}", pubsub_server=pubsub_name, broadcast_period=200, down_period=1000)

    class RoomChannel(Channel):
        def join(self, topic, payload, socket):
            actors.send(actors.self(), "after_join")
            return ("ok", socket.assign(user=payload["user"], device=payload.get("device", "web")))

        def handle_info(self, msg, socket):
            if msg == "after_join":
                presence.track(socket, socket.assigns["user"], {"device": socket.assigns["device"], "status": "online"})
                push(socket, "presence_state", presence.list(socket))
                return ("noreply", socket)
            return super().handle_info(msg, socket)

        def handle_in(self, event, payload, socket):
            if event == "set_status":
                status = payload["status"]
                result = presence.update(socket, socket.assigns["user"], lambda meta: {**meta, "status": status})
                return ("reply", "ok" if result[0] == "ok" else "error", socket)
            raise RuntimeError(f"boom: {event}")

    class UserSocket(SocketHandler):
        channels = [("room:*", RoomChannel)]

        def connect(self, params, socket, connect_info):
            return ("ok", socket)

        def id(self, socket):
            return None

    endpoint = Endpoint(
        f"PresenceJs.Endpoint.{n}",
        pubsub_server=pubsub_name,
        sockets=[("/socket", UserSocket, {"websocket": {"timeout": 60_000}, "drainer": False})],
    )
    app = Application(
        [
            PubSub.child_spec(name=pubsub_name),
            presence.child_spec(),
            *endpoint.child_specs(server={"host": "127.0.0.1", "port": 0}),
        ]
    )
    return app, endpoint, presence


class NodeDriver:
    """presence_client.mjs as a subprocess this hub talks to without blocking."""

    def __init__(self, node_exe: str, port: int) -> None:
        env = dict(os.environ)
        self.proc = gsubprocess.Popen(
            [node_exe, str(SCRIPT), str(port), "--timeout-ms", "90000"],
            cwd=JS_DIR,
            env=env,
            stdin=gsubprocess.PIPE,
            stdout=gsubprocess.PIPE,
            stderr=gsubprocess.PIPE,
        )
        self.ids = itertools.count(1)

    def __call__(self, cmd: str, **args: Any) -> dict:
        cid = next(self.ids)
        self.proc.stdin.write((json.dumps({"id": cid, "cmd": cmd, **args}) + "\n").encode())
        self.proc.stdin.flush()
        with gevent.Timeout(STEP_TIMEOUT, AssertionError(f"no answer to {cmd} {args} within {STEP_TIMEOUT} s")):
            while True:
                line = self.proc.stdout.readline()
                if not line:
                    raise AssertionError(f"the Node client exited: {self.proc.stderr.read().decode(errors='replace')[-3000:]}")
                answer = json.loads(line)
                if answer.get("id") == cid:
                    break
        assert answer["ok"], answer.get("error")
        return answer

    def close(self) -> None:
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=10)
        except Exception:  # noqa: BLE001 - make sure it is gone
            self.proc.kill()
            self.proc.wait(timeout=5)


def server_list(presence: Presence) -> dict[str, list[str]]:
    return {key: [m["phx_ref"] for m in entry["metas"]] for key, entry in presence.list(TOPIC).items()}


def wait_lists_match(js: NodeDriver, presence: Presence, chans: list[str], timeout: float = 5.0) -> dict:
    """Poll until every client's Presence list is the server's; that list."""
    deadline = gevent.get_hub().loop.now() + timeout
    while True:
        expected = server_list(presence)
        seen = {c: js("list", chan=c)["list"] for c in chans}
        if all(_same(s, expected) for s in seen.values()):
            return expected
        if gevent.get_hub().loop.now() > deadline:
            raise AssertionError(f"client lists {seen} != server list {expected}")
        gevent.sleep(0.05)


def _same(a: dict, b: dict) -> bool:
    return {k: sorted(v) for k, v in a.items()} == {k: sorted(v) for k, v in b.items()}


@pytest.fixture
def setup(node):  # noqa: F811 - the imported fixture
    if not SCRIPT.is_file():
        pytest.fail(f"{SCRIPT} is missing", pytrace=False)
    app, endpoint, presence = make_app()
    app.start()
    js = NodeDriver(node, endpoint.bound[1])
    try:
        yield js, presence
    finally:
        js.close()
        app.stop()


def test_phoenix_js_presence_tracks_the_server_list(setup):
    js, presence = setup
    js("connect", socket="a1")
    js("connect", socket="a2")
    js("connect", socket="b1")

    first = js("join", socket="a1", chan="alice1", topic=TOPIC, params={"user": "alice", "device": "laptop"})
    assert list(first["list"]) == ["alice"]
    js("join", socket="b1", chan="bob", topic=TOPIC, params={"user": "bob"})
    # alice's second device: one key, two metas, everywhere
    js("join", socket="a2", chan="alice2", topic=TOPIC, params={"user": "alice", "device": "phone"})
    chans = ["alice1", "alice2", "bob"]
    lists = wait_lists_match(js, presence, chans)
    assert sorted(lists) == ["alice", "bob"] and len(lists["alice"]) == 2
    devices = sorted(m["device"] for m in js("list", chan="bob")["metas"]["alice"])
    assert devices == ["laptop", "phone"]

    # a meta update: a new phx_ref, the old one as phx_ref_prev
    old_ref = next(m["phx_ref"] for m in presence.list(TOPIC)["bob"]["metas"])
    assert js("push", chan="bob", event="set_status", payload={"status": "away"})["status"] == "ok"
    wait_lists_match(js, presence, chans)
    (meta,) = js("list", chan="alice1")["metas"]["bob"]
    assert meta["status"] == "away" and meta["phx_ref_prev"] == old_ref and meta["phx_ref"] != old_ref

    # a crashed channel: its presence leaves; the client rejoins, is tracked again, syncs a new state
    before = js("push", chan="alice2", event="boom", payload={}, wait=False)["joinRef"]
    rejoined = js("wait_rejoin", chan="alice2", before=before)
    lists = wait_lists_match(js, presence, chans)
    assert len(lists["alice"]) == 2 and _same(rejoined["list"], js("list", chan="alice2")["list"])

    # a leave, then a disconnect
    js("leave", chan="alice1")
    chans = ["alice2", "bob"]
    lists = wait_lists_match(js, presence, chans)
    assert len(lists["alice"]) == 1
    js("disconnect", socket="b1")
    chans = ["alice2"]
    lists = wait_lists_match(js, presence, chans)
    assert list(lists) == ["alice"]

    # What each channel saw: every diff that came before the state of its join was held
    # (pending) by the client, and each join got exactly one state.
    for chan in ("alice1", "alice2", "bob"):
        log = js("log", chan=chan)["log"]
        for join_ref in {e["joinRef"] for e in log}:
            events = [e for e in log if e["joinRef"] == join_ref]
            states = [i for i, e in enumerate(events) if e["event"] == "state"]
            assert len(states) == 1, (chan, events)
            for i, e in enumerate(events):
                if e["event"] == "diff":
                    assert e["pending"] == (i < states[0]), (chan, events)
    held = sum(1 for c in ("alice1", "alice2", "bob") for e in js("log", chan=c)["log"] if e["event"] == "diff" and e["pending"])
    # our own join's diff is broadcast before the state is pushed (as in Phoenix): held
    assert held >= 1
