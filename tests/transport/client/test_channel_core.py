"""ChannelCore and Push: phoenix.js's channel_test.js, ported to the sans-I/O core."""

from __future__ import annotations

import pytest
from core_harness import Harness

from transport._message import Message
from transport.client import BufferFull, ChannelStateError
from transport.client._core import ChannelClosed, ChannelErrored, Joined, PushDone
from transport.serializers import V1


def joined(h: Harness, topic: str = "room:1", params=None):
    ch = h.core.channel(topic, params)
    ch.join(h.now)
    [join] = h.take_sent()
    h.reply(join, "ok", {"hello": 1})
    return ch, join


def test_join_sends_params_sets_joining_and_is_once_only():
    h = Harness()
    h.connect()
    calls = []
    ch = h.core.channel("room:1", lambda: calls.append(1) or {"n": len(calls)})
    push = ch.join(h.now)
    assert ch.state == "joining" and ch.joined_once
    [join] = h.take_sent()
    assert (join.topic, join.event, join.payload, join.ref, join.join_ref) == ("room:1", "phx_join", {"n": 1}, push.ref, push.ref)
    with pytest.raises(ChannelStateError, match="multiple times"):
        ch.join(h.now)
    h.reply(join, "ok", {"hello": 1})
    assert ch.state == "joined"
    assert [e for e in h.take_events() if isinstance(e, (Joined, PushDone))] == [
        PushDone(push, "ok", {"hello": 1}),
        Joined(ch, {"hello": 1}, False),
    ]


def test_join_before_connect_waits_and_is_sent_once_on_open():
    h = Harness()
    ch = h.core.channel("room:1")
    ch.join(h.now)
    h.core.connect(h.now)
    h.drain()
    assert h.take_sent() == []
    h.close(None, error=ConnectionRefusedError())  # the first attempt fails
    assert ch.state == "errored"
    h.tick(0.01)
    h.open_pending()
    sent = h.take_sent()
    assert [m.event for m in sent] == ["phx_join"]  # once, not twice as phoenix.js would
    h.reply(sent[0])
    assert ch.state == "joined"


def test_join_timeout_errors_sends_leave_and_rejoins_on_schedule():
    h = Harness(timeout=10)
    h.connect()
    ch = h.core.channel("room:1")
    push = ch.join(h.now)
    [join] = h.take_sent()
    h.tick(10)
    assert ch.state == "errored"
    [leave] = h.take_sent()
    assert (leave.event, leave.join_ref) == ("phx_leave", join.join_ref)
    assert PushDone(push, "timeout", None) in h.take_events()
    times = []
    for _ in range(4):
        start = h.now
        while not h.sent:
            h.tick(0.5)
        times.append(h.now - start)
        [rejoin] = h.take_sent()
        assert rejoin.event == "phx_join"
        h.tick(10)  # times out again
        h.take_sent()  # its leave
    assert times == [1.0, 2.0, 5.0, 10.0]


def test_join_error_errors_and_rejoins_after_a_second():
    h = Harness()
    h.connect()
    ch = h.core.channel("room:1")
    ch.join(h.now)
    [join] = h.take_sent()
    h.reply(join, "error", {"reason": "nope"})
    assert ch.state == "errored"
    assert ChannelErrored(ch, {"reason": "nope"}) in h.take_events()
    h.tick(0.999)
    assert h.take_sent() == []
    h.tick(0.001)
    assert [m.event for m in h.take_sent()] == ["phx_join"]


def test_phx_error_errors_a_joined_channel_and_rejoins_after_a_second():
    h = Harness()
    h.connect()
    ch, join = joined(h)
    h.server(Message("room:1", "phx_error", {}, join.ref, join.join_ref))
    assert ch.state == "errored"
    h.tick(1)
    [rejoin] = h.take_sent()
    assert rejoin.event == "phx_join" and rejoin.join_ref != join.join_ref
    h.reply(rejoin)
    assert ch.state == "joined"
    assert Joined(ch, {}, True) in h.take_events()
    # and the rejoin schedule started over after the successful join
    h.server(Message("room:1", "phx_error", {}, rejoin.ref, rejoin.join_ref))
    h.tick(1)
    assert [m.event for m in h.take_sent()] == ["phx_join"]


def test_phx_error_while_joining_resets_the_join_push():
    h = Harness()
    h.connect()
    ch = h.core.channel("room:1")
    push = ch.join(h.now)
    [join] = h.take_sent()
    h.server(Message("room:1", "phx_error", {}, join.ref, join.join_ref))
    assert ch.state == "errored" and push.ref is None
    h.reply(join)  # a late reply for the reset join is ignored
    assert ch.state == "errored"


def test_pushes_before_join_raise_and_pushes_while_joining_are_buffered():
    h = Harness()
    h.connect()
    ch = h.core.channel("room:1")
    with pytest.raises(ChannelStateError, match="before joining"):
        ch.push("ev", {}, h.now)
    ch.join(h.now)
    [join] = h.take_sent()
    p1 = ch.push("one", {"n": 1}, h.now)
    p2 = ch.push("two", {"n": 2}, h.now)
    assert h.take_sent() == [] and ch.buffered == 2
    h.reply(join)
    sent = h.take_sent()
    assert [(m.event, m.payload, m.join_ref) for m in sent] == [("one", {"n": 1}, join.ref), ("two", {"n": 2}, join.ref)]
    assert [m.ref for m in sent] == [p1.ref, p2.ref]


def test_buffered_push_that_times_out_is_not_sent_after_join():
    h = Harness(timeout=10)
    h.connect()
    ch = h.core.channel("room:1")
    ch.join(h.now, timeout=60)
    [join] = h.take_sent()
    early = ch.push("early", {}, h.now, timeout=2)
    h.tick(2)
    assert early.status == "timeout" and ch.buffered == 0
    late = ch.push("late", {}, h.now)
    h.reply(join)
    assert [m.event for m in h.take_sent()] == ["late"]
    assert late.sent


def test_buffered_push_timeout_restarts_when_sent():
    h = Harness()
    h.connect()
    ch = h.core.channel("room:1")
    ch.join(h.now)
    [join] = h.take_sent()
    push = ch.push("ev", {}, h.now, timeout=5)
    h.tick(4)
    h.reply(join)
    h.take_sent()
    h.tick(4)  # 8 s since push(), 4 s since it was sent
    assert push.status is None
    h.tick(1)
    assert push.status == "timeout"


def test_push_buffer_is_bounded():
    h = Harness(max_buffered_pushes=2)
    h.connect()
    ch = h.core.channel("room:1")
    ch.join(h.now)
    ch.push("a", {}, h.now)
    ch.push("b", {}, h.now)
    with pytest.raises(BufferFull, match="max_buffered_pushes=2"):
        ch.push("c", {}, h.now)


def test_push_replies_are_routed_by_ref_and_timeouts_complete():
    h = Harness()
    h.connect()
    ch, _ = joined(h)
    ok = ch.push("a", {}, h.now)
    err = ch.push("b", {}, h.now, timeout=3)
    lost = ch.push("c", {}, h.now, timeout=3)
    m_ok, m_err, _ = h.take_sent()
    h.reply(m_err, "error", {"reason": "bad"})
    h.reply(m_ok, "ok", {"v": 1})
    h.tick(3)
    assert (ok.status, ok.response) == ("ok", {"v": 1})
    assert (err.status, err.response) == ("error", {"reason": "bad"})
    assert lost.status == "timeout"
    h.reply(m_ok, "ok", {"v": 2})  # a second reply to the same ref is ignored
    assert ok.response == {"v": 1}


def test_pushes_while_disconnected_wait_for_the_rejoin():
    h = Harness()
    h.connect()
    ch, join = joined(h)
    h.close(1006)
    push = ch.push("during", {"x": 1}, h.now)
    h.tick(0.01)
    h.open_pending()
    [rejoin] = h.take_sent()
    assert rejoin.event == "phx_join"
    h.reply(rejoin)
    [sent] = h.take_sent()
    assert (sent.event, sent.join_ref, sent.ref) == ("during", rejoin.ref, push.ref)


def test_leave_waits_for_the_server_then_closes():
    h = Harness()
    h.connect()
    ch, join = joined(h)
    push = ch.leave(h.now)
    assert ch.state == "leaving"
    [leave] = h.take_sent()
    assert (leave.event, leave.join_ref) == ("phx_leave", join.ref)
    h.reply(leave)
    assert ch.state == "closed" and ch not in h.core.channels and push.status == "ok"
    assert ChannelClosed(ch, "leave") in h.take_events()
    with pytest.raises(ChannelStateError, match="closed"):
        ch.push("x", {}, h.now)


def test_leave_closes_on_timeout_and_at_once_when_disconnected():
    h = Harness(timeout=10)
    h.connect()
    ch, _ = joined(h)
    ch.leave(h.now)
    h.tick(10)
    assert ch.state == "closed"
    h.take_sent()
    ch2, _ = joined(h, "room:2")
    h.close(1000)
    ch2.leave(h.now)
    assert ch2.state == "closed" and h.take_sent() == []


def test_leave_stops_rejoins():
    h = Harness()
    h.connect()
    ch, join = joined(h)
    h.server(Message("room:1", "phx_error", {}, join.ref, join.join_ref))
    ch.leave(h.now)
    h.tick(29)
    assert [m.event for m in h.take_sent()] == []


def test_join_of_an_open_topic_leaves_the_old_channel():
    h = Harness()
    h.connect()
    old, join = joined(h)
    new = h.core.channel("room:1")
    new.join(h.now)
    leave, join2 = h.take_sent()
    assert (leave.event, leave.join_ref) == ("phx_leave", join.ref)
    assert join2.event == "phx_join" and old.state == "leaving"


def test_v1_frames_and_binary_refused():
    h = Harness(serializer=V1)
    h.connect()
    ch, join = joined(h)
    assert ch.state == "joined"
    with pytest.raises(ValueError, match="V2"):
        ch.push("bin", b"\x00", h.now)
    h.server(Message("room:1", "news", {"a": 1}, None, None))
    assert [e.message.payload for e in h.take_events() if hasattr(e, "message")] == [{"a": 1}]


def test_unencodable_payload_raises_on_push():
    h = Harness()
    h.connect()
    ch, _ = joined(h)
    with pytest.raises(TypeError, match="cannot encode"):
        ch.push("x", {"bad": object()}, h.now)
    assert ch._replies == {}


def test_abandon_forgets_the_channel():
    h = Harness()
    h.connect()
    ch = h.core.channel("room:1")
    ch.join(h.now)
    [join] = h.take_sent()
    h.reply(join, "error", {"reason": "no"})
    ch.abandon(h.now)
    h.tick(29)
    assert ch.state == "closed" and ch not in h.core.channels and h.take_sent() == []
