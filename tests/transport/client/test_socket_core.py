"""SocketCore: phoenix.js's socket_test.js, ported to the sans-I/O core (no sockets, a fake clock)."""

from __future__ import annotations

import pytest
from core_harness import Harness

from transport._message import Binary, Message
from transport.client._core import (
    ChannelClosed,
    ChannelErrored,
    ChannelEvent,
    Closed,
    Opened,
    ProtocolError,
    SocketCore,
    TransportError,
    default_reconnect_after,
    default_rejoin_after,
    endpoint_url,
    serializer_for,
)
from transport.serializers import V1, V2


def test_default_schedules_are_phoenix_js():
    assert [round(default_reconnect_after(n) * 1000) for n in range(1, 12)] == [
        10,
        50,
        100,
        150,
        200,
        250,
        500,
        1000,
        2000,
        5000,
        5000,
    ]
    assert [default_rejoin_after(n) for n in range(1, 6)] == [1, 2, 5, 10, 10]


def test_endpoint_url_appends_transport_params_and_vsn():
    assert endpoint_url("ws://h:4000/socket", "websocket", {"token": "a b", "n": 1}, "2.0.0") == (
        "ws://h:4000/socket/websocket?token=a+b&n=1&vsn=2.0.0"
    )
    assert endpoint_url("ws://h/socket/websocket", "longpoll", {}, "1.0.0") == "http://h/socket/longpoll?vsn=1.0.0"
    assert endpoint_url("https://h/s/", "websocket", {"flag": True}, "2.0.0") == "wss://h/s/websocket?flag=true&vsn=2.0.0"
    assert endpoint_url("ws://h/s?x=1", "websocket", {}, "2.0.0") == "ws://h/s/websocket?x=1&vsn=2.0.0"
    with pytest.raises(ValueError, match="ws://"):
        endpoint_url("ftp://h/s", "websocket", {}, "2.0.0")


def test_serializer_for_vsn():
    assert serializer_for("1.0.0") is V1
    assert serializer_for("2.0.0") is V2
    with pytest.raises(ValueError, match="unknown vsn"):
        serializer_for("3.0.0")


def test_connect_opens_once_and_make_ref_counts():
    h = Harness()
    h.core.connect(h.now)
    h.core.connect(h.now)  # "does not connect if already connecting"
    h.drain()
    assert h.opens == [1]
    h.core.transport_opened(1, h.now)
    h.core.connect(h.now)
    h.drain()
    assert h.opens == [1] and h.core.state == "open"
    assert [h.core.make_ref(), h.core.make_ref()] == ["1", "2"]
    assert h.take_events(Opened) == [Opened(1)]


def test_heartbeat_sent_every_interval_and_reply_rearms_it():
    h = Harness(heartbeat_interval=30)
    h.connect()
    h.tick(29.9)
    assert h.take_sent() == []
    h.tick(0.1)
    [hb] = h.take_sent()
    assert (hb.topic, hb.event, hb.payload, hb.join_ref) == ("phoenix", "heartbeat", {}, None)
    assert h.core.pending_heartbeat_ref == hb.ref
    h.tick(10)
    h.reply(hb)
    assert h.core.pending_heartbeat_ref is None
    h.tick(29.9)
    assert h.take_sent() == []
    h.tick(0.1)
    assert [m.event for m in h.take_sent()] == ["heartbeat"]


def test_heartbeat_timeout_closes_and_reconnects():
    h = Harness(heartbeat_interval=30, heartbeat_timeout=5)
    conn = h.connect()
    ch = h.core.channel("room:1")
    ch.join(h.now)
    h.reply(h.take_sent()[0])
    h.tick(30)
    h.take_sent()
    h.tick(5)
    assert [(c.conn, c.code, c.reason) for c in h.closes] == [(conn, 1000, "heartbeat timeout")]
    assert ch.state == "errored"
    h.core.transport_closed(conn, h.now, 1000, "heartbeat timeout")  # the close completes
    [closed] = h.take_events(Closed)
    assert closed.reconnect_in == pytest.approx(0.01)  # reconnects although the code was 1000
    h.tick(0.01)
    assert len(h.opens) == 2


def test_no_reconnect_after_clean_disconnect_or_server_close_1000():
    h = Harness()
    conn = h.connect()
    h.core.disconnect(h.now)
    h.drain()
    assert h.closes[-1].code == 1000 and h.core.state == "closing"
    h.core.transport_closed(conn, h.now, 1000, "")
    h.tick(10)
    assert h.opens == [conn] and h.core.state == "closed"
    h2 = Harness()
    h2.connect()
    h2.close(1000)
    h2.tick(10)
    assert len(h2.opens) == 1


def test_reconnect_schedule_grows_and_resets_after_open():
    h = Harness()
    h.connect()
    h.close(1006)
    delays = []
    for _ in range(11):
        [closed] = h.take_events(Closed) or [None]
        if closed is not None:
            delays.append(round(closed.reconnect_in * 1000))
        h.tick(h.core.next_deadline() - h.now)
        h.core.transport_closed(h.core.conn, h.now, None, "", error=ConnectionRefusedError())
    assert delays == [10, 50, 100, 150, 200, 250, 500, 1000, 2000, 5000, 5000]
    assert any(isinstance(e, TransportError) for e in h.events + h.take_events())
    h.tick(h.core.next_deadline() - h.now)
    h.open_pending()
    h.close(1011)
    [closed] = h.take_events(Closed)
    assert closed.reconnect_in == pytest.approx(0.01) and closed.was_open


def test_custom_reconnect_after():
    h = Harness(reconnect_after=lambda tries: tries * 2.0)
    h.connect()
    h.close(1006)
    assert h.take_events(Closed)[0].reconnect_in == 2.0


def test_news_from_an_old_connection_is_ignored():
    h = Harness()
    old = h.connect()
    h.close(1006)
    h.tick(0.01)
    new = h.open_pending()
    assert new != old
    h.take_events()
    h.core.transport_closed(old, h.now, 1006)
    h.core.receive_frame(old, *reversed(V2.encode(Message("t", "e", {}, None, None))), h.now)
    assert h.core.state == "open" and h.take_events(Closed) == [] and h.take_events(ChannelEvent) == []


def test_close_errors_channels_and_they_rejoin_on_open_with_new_join_ref():
    h = Harness()
    h.connect()
    ch = h.core.channel("room:1", {"a": 1})
    ch.join(h.now)
    [join] = h.take_sent()
    h.reply(join)
    assert ch.state == "joined"
    h.close(1006)
    assert ch.state == "errored"
    assert [e.reason for e in h.take_events(ChannelErrored)] == ["connection closed"]
    h.tick(0.01)
    h.open_pending()
    [rejoin] = h.take_sent()
    assert (rejoin.event, rejoin.payload, rejoin.ref == rejoin.join_ref) == ("phx_join", {"a": 1}, True)
    assert rejoin.join_ref != join.join_ref
    assert ch.state == "joining"


def test_message_dispatch_by_topic_and_join_ref():
    h = Harness()
    h.connect()
    ch = h.core.channel("room:1")
    other = h.core.channel("room:2")
    ch.join(h.now)
    other.join(h.now)
    j1, j2 = h.take_sent()
    h.reply(j1)
    h.reply(j2)
    h.take_events()
    h.server(Message("room:1", "new", {"x": 1}, None, j1.join_ref))
    h.server(Message("room:1", "old", {"x": 2}, None, "999"))  # an outdated join: dropped
    h.server(Message("room:1", "bcast", {"x": 3}, None, None))  # a broadcast has no join_ref
    events = h.take_events(ChannelEvent)
    assert [(e.channel, e.message.event) for e in events] == [(ch, "new"), (ch, "bcast")]


def test_binary_frames_reach_channels_as_bytes():
    h = Harness()
    h.connect()
    ch = h.core.channel("room:1")
    ch.join(h.now)
    [join] = h.take_sent()
    h.reply(join)
    h.take_events()
    h.server(Message("room:1", "bin", Binary(b"\x00\x01"), None, join.join_ref))
    [ev] = h.take_events(ChannelEvent)
    assert ev.message.payload == b"\x00\x01"
    push = ch.push("up", b"\xff", h.now)
    [sent] = h.take_sent()
    assert sent.payload == Binary(b"\xff") and sent.ref == push.ref


def test_undecodable_frame_is_reported_and_dropped():
    h = Harness()
    conn = h.connect()
    h.core.receive_frame(conn, "text", "not json", h.now)
    [err] = h.take_events(ProtocolError)
    assert "JSON" in err.error and h.core.state == "open"


def test_phx_close_from_server_removes_channel():
    h = Harness()
    h.connect()
    ch = h.core.channel("room:1")
    ch.join(h.now)
    [join] = h.take_sent()
    h.reply(join)
    h.server(Message("room:1", "phx_close", {}, join.ref, join.join_ref))
    assert ch.state == "closed" and ch not in h.core.channels
    assert ChannelClosed(ch, "server") in h.take_events()


def test_socket_options_are_checked():
    with pytest.raises(ValueError, match="max_buffered_pushes"):
        SocketCore(max_buffered_pushes=-1)
    with pytest.raises(TypeError, match="topic"):
        SocketCore().channel(42)
