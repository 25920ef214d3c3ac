"""The Python client against greenphx over 127.0.0.1: both drivers, every serializer, LongPoll."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import pytest
from serverproc import ServerProcess

from transport import token
from transport.client import (
    AsyncSocket,
    ConnectError,
    JoinError,
    Presence,
    PushError,
    PushTimeout,
    Socket,
)

APP = Path(__file__).with_name("client_app.py")
SECRET_KEY_BASE = "s3cr3t-key-base-" * 4


@pytest.fixture(scope="module")
def server():
    proc = ServerProcess([sys.executable, str(APP), "--port", "0"], name="client_app.py")
    try:
        yield proc
    finally:
        proc.stop()


def wait_for(condition, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


CASES = [("websocket", "1.0.0"), ("websocket", "2.0.0"), ("longpoll", "2.0.0"), ("longpoll", "1.0.0")]


@pytest.mark.parametrize("transport,vsn", CASES)
def test_blocking_join_push_reply_broadcast_leave(server, transport, vsn):
    with Socket(f"{server.ws}/socket", vsn=vsn, transport=transport) as socket:
        assert socket.transport == transport
        channel = socket.channel("room:b", {"hello": 1})
        sub = channel.messages(events={"shouted", "whoami"})
        seen = []
        channel.on("shouted", seen.append)
        assert channel.join() == {"topic": "room:b"}
        assert channel.state == "joined"
        assert sub.get(5).payload == {"user_id": None, "transport": transport}
        assert channel.push("echo", {"n": 1}) == {"n": 1}
        with pytest.raises(PushError) as err:
            channel.push("error", {"why": "asked"})
        assert (err.value.status, err.value.response) == ("error", {"why": "asked"})
        assert channel.push("shout", {"m": "hi"}) == {}
        msg = sub.get(5)
        assert (msg.topic, msg.event, msg.payload) == ("room:b", "shouted", {"m": "hi"})
        wait_for(lambda: seen)  # callbacks run on their own thread
        assert [m.payload for m in seen] == [{"m": "hi"}]
        channel.leave()
        assert channel.state == "closed"
        with pytest.raises(EOFError):
            sub.get(1)


@pytest.mark.parametrize("transport,vsn", CASES)
def test_asyncio_join_push_reply_broadcast_leave(server, transport, vsn):
    async def main():
        async with AsyncSocket(f"{server.ws}/socket", vsn=vsn, transport=transport) as socket:
            channel = socket.channel("room:a")
            sub = channel.messages(events={"shouted"})
            assert await channel.join() == {"topic": "room:a"}
            assert await channel.push("echo", {"n": 2}) == {"n": 2}
            results = await asyncio.gather(*(channel.push("echo", {"i": i}) for i in range(20)))
            assert results == [{"i": i} for i in range(20)]
            await channel.push("shout", {"m": "yo"})
            assert (await sub.get(5)).payload == {"m": "yo"}
            await channel.leave()
            assert channel.state == "closed"
            assert [m async for m in sub] == []  # iteration ends with the channel

    asyncio.run(main())


def test_v2_binary_payloads_both_ways(server):
    with Socket(f"{server.ws}/socket") as socket:
        channel = socket.channel("room:bin")
        sub = channel.messages(events={"binpush"})
        channel.join()
        assert channel.push("bin", b"\x01\x02\xff") == b"\xff\x02\x01"
        channel.push_nowait("push_bin")
        assert sub.get(5).payload == b"\x00\x01\x02"

    async def main():
        async with AsyncSocket(f"{server.ws}/socket") as socket:
            channel = socket.channel("room:bin")
            await channel.join()
            assert await channel.push("bin", bytearray(b"ab")) == b"ba"

    asyncio.run(main())


def test_refused_connect_and_join_raise_clear_errors(server):
    with pytest.raises(ConnectError) as err:
        Socket(f"{server.ws}/socket", params={"reject": "true"}).connect()
    assert err.value.status == 403
    with pytest.raises(ConnectError, match="403"):
        Socket(f"{server.ws}/socket", params={"reject": "true"}, transport="longpoll").connect()
    with Socket(f"{server.ws}/socket") as socket:
        channel = socket.channel("room:x", {"refuse": True})
        with pytest.raises(JoinError) as err:
            channel.join()
        assert err.value.response == {"reason": "refused"} and channel.state == "closed"
        assert channel not in socket._channels.values()

    async def main():
        with pytest.raises(ConnectError) as err:
            await AsyncSocket(f"{server.ws}/socket", params={"reject": "true"}).connect()
        assert err.value.status == 403

    asyncio.run(main())


def test_token_in_connect_params_is_verified_by_the_socket(server):
    signed = token.sign(SECRET_KEY_BASE, "user socket", "user-7")
    calls = []

    def params():
        calls.append(1)
        return {"token": signed}

    with Socket(f"{server.ws}/socket", params=params) as socket:
        channel = socket.channel("room:t")
        sub = channel.messages(events={"whoami"})
        channel.join()
        assert sub.get(5).payload["user_id"] == "user-7"
    assert calls == [1]  # evaluated per connection, as phoenix.js's params closure
    with pytest.raises(ConnectError):
        Socket(f"{server.ws}/socket", params={"token": "forged"}).connect()


def test_push_timeout_raises(server):
    with Socket(f"{server.ws}/socket") as socket:
        channel = socket.channel("room:slow")
        channel.join()
        with pytest.raises(PushTimeout, match="no reply within 0.3 s"):
            channel.push("noreply", {}, timeout=0.3)  # the channel answers nothing


def test_presence_state_and_diffs(server):
    with Socket(f"{server.ws}/socket") as socket:
        channel = socket.channel("room:p")
        presence = Presence(channel)
        synced = []
        presence.on_sync = lambda: synced.append(sorted(presence.state))
        channel.join()
        channel.push_nowait("presence", {"joins": {"bob": {"metas": [{"phx_ref": "b1"}]}}, "leaves": {}})
        channel.push_nowait("presence", {"joins": {}, "leaves": {"anon": {"metas": [{"phx_ref": "r-anon"}]}}})
        deadline = 50
        while len(synced) < 3 and deadline:
            channel.push("echo", {})  # a round trip: the diffs before it have been delivered
            deadline -= 1
        assert synced[:3] == [["anon"], ["anon", "bob"], ["bob"]]


def test_longpoll_fallback_when_the_websocket_is_refused(server):
    with Socket(f"{server.ws}/wsblocked", origin="http://elsewhere.test", longpoll_fallback=2.0) as socket:
        assert socket.transport == "longpoll"
        channel = socket.channel("room:lp")
        channel.join()
        assert channel.push("echo", {"via": "lp"}) == {"via": "lp"}

    async def main():
        async with AsyncSocket(f"{server.ws}/wsblocked", origin="http://elsewhere.test", longpoll_fallback=2.0) as socket:
            assert socket.transport == "longpoll"
            channel = socket.channel("room:lp")
            await channel.join()
            assert await channel.push("echo", {"n": 1}) == {"n": 1}

    asyncio.run(main())
    with pytest.raises(ConnectError, match="403"):
        Socket(f"{server.ws}/wsblocked", origin="http://elsewhere.test").connect()  # no fallback asked: the refusal is final
