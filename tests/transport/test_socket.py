"""The socket and channel protocol, in memory: exact frames, in order, for V1 and V2."""

from __future__ import annotations

import itertools
import logging

import pytest
import ujson
from channel_app import LimitedSocket, TwoArgSocket, UserSocket

import actors
from supervision import Application
from transport import Broadcast, Endpoint, pubsub, telemetry
from transport.pubsub import BroadcastError, LocalAdapter, PubSub
from transport.serializers import V2JSONSerializer
from transport.testing import ConnectRefused, SocketClient

_ids = itertools.count()


@pytest.fixture
def endpoint():
    n = next(_ids)
    pubsub_name = f"Test.PubSub.{n}"
    ep = Endpoint(
        f"Test.Endpoint.{n}",
        pubsub_server=pubsub_name,
        sockets=[("/socket", UserSocket), ("/limited", LimitedSocket), ("/two", TwoArgSocket)],
    )
    app = Application([PubSub.child_spec(name=pubsub_name, pool_size=2), *ep.child_specs()])
    app.start()
    yield ep
    app.stop()


@pytest.fixture(params=["1.0.0", "2.0.0"])
def vsn(request):
    return request.param


class Client:
    """A SocketClient that speaks the frames of one protocol version."""

    def __init__(self, endpoint, vsn, handler=UserSocket, **params):
        self.vsn = vsn
        self.raw = SocketClient(endpoint, handler, params={"vsn": vsn, **params})
        self._refs = itertools.count(1)

    def send(self, topic, event, payload=None, join_ref=None, ref=None):
        ref = ref if ref is not None else str(next(self._refs))
        payload = {} if payload is None else payload
        if self.vsn.startswith("2"):
            self.raw.send_json([join_ref, ref, topic, event, payload])
        else:
            msg = {"topic": topic, "event": event, "payload": payload, "ref": ref}
            if join_ref is not None:
                msg["join_ref"] = join_ref
            self.raw.send_json(msg)
        return ref

    def join(self, topic, payload=None, join_ref=None):
        join_ref = join_ref or str(next(self._refs))
        self.send(topic, "phx_join", payload, join_ref=join_ref, ref=join_ref)
        return join_ref

    def frame(self, timeout=1.0):
        """The next frame as (join_ref, ref, topic, event, payload); V1 has no join_ref."""
        msg = self.raw.receive_json(timeout)
        if self.vsn.startswith("2"):
            return tuple(msg)
        return (None, msg["ref"], msg["topic"], msg["event"], msg["payload"])

    def jr(self, join_ref):
        """The join_ref as this protocol puts it on the wire."""
        return join_ref if self.vsn.startswith("2") else None


def ok(response=None):
    return {"status": "ok", "response": {} if response is None else response}


def error(response):
    return {"status": "error", "response": response}


# -- heartbeat, join, leave ---------------------------------------------------------------


def test_heartbeat_replies_ok_with_a_null_join_ref(endpoint, vsn):
    c = Client(endpoint, vsn)
    ref = c.send("phoenix", "heartbeat", join_ref="99")
    assert c.frame() == (None, ref, "phoenix", "phx_reply", ok())


def test_join_ok(endpoint, vsn):
    c = Client(endpoint, vsn)
    jr = c.join("room:lobby")
    assert c.frame() == (c.jr(jr), jr, "room:lobby", "phx_reply", ok())


def test_join_ok_with_reply(endpoint, vsn):
    c = Client(endpoint, vsn)
    jr = c.join("room:reply", {"name": "ann"})
    assert c.frame() == (c.jr(jr), jr, "room:reply", "phx_reply", ok({"welcome": "ann"}))


def test_join_error_with_reply(endpoint, vsn):
    c = Client(endpoint, vsn)
    jr = c.join("room:private")
    assert c.frame() == (c.jr(jr), jr, "room:private", "phx_reply", error({"reason": "unauthorized"}))
    # the refused channel is not joined: a message to it is an unmatched topic
    ref = c.send("room:private", "ping", join_ref=jr)
    assert c.frame() == (None, ref, "room:private", "phx_reply", error({"reason": "unmatched topic"}))


@pytest.mark.parametrize("topic", ["room:crash", "room:bad"])
def test_a_crashing_or_invalid_join_answers_join_crashed(endpoint, vsn, topic, caplog):
    c = Client(endpoint, vsn)
    with caplog.at_level(logging.ERROR):
        jr = c.join(topic)
        assert c.frame() == (c.jr(jr), jr, topic, "phx_reply", error({"reason": "join crashed"}))
    assert any("join" in r.getMessage() for r in caplog.records)
    # the socket lives on
    c.join("room:lobby")
    assert c.frame()[3:] == ("phx_reply", ok())


def test_unmatched_topic(endpoint, vsn):
    c = Client(endpoint, vsn)
    jr = c.join("nope:lobby")
    assert c.frame() == (None, jr, "nope:lobby", "phx_reply", error({"reason": "unmatched topic"}))


def test_message_for_a_topic_not_joined(endpoint, vsn):
    c = Client(endpoint, vsn)
    ref = c.send("room:lobby", "ping", {"x": 1}, join_ref="5")
    assert c.frame() == (None, ref, "room:lobby", "phx_reply", error({"reason": "unmatched topic"}))


def test_leave_replies_then_closes_then_terminate_pushes(endpoint, vsn):
    c = Client(endpoint, vsn)
    jr = c.join("room:lobby", {"terminate_push": True})
    c.frame()
    ref = c.send("room:lobby", "phx_leave", join_ref=jr)
    assert c.frame() == (c.jr(jr), ref, "room:lobby", "phx_reply", ok())
    assert c.frame() == (c.jr(jr), jr, "room:lobby", "phx_close", {})
    assert c.frame() == (c.jr(jr), None, "room:lobby", "goodbye", {})


def test_leave_of_a_topic_not_joined_replies_ok(endpoint, vsn):
    c = Client(endpoint, vsn)
    ref = c.send("room:lobby", "phx_leave", join_ref="7")
    assert c.frame() == (c.jr("7"), ref, "room:lobby", "phx_reply", ok())


def test_leave_reason_reaches_terminate(endpoint, vsn):
    c = Client(endpoint, vsn)
    jr = c.join("room:lobby", {"observer": str(actors.self())})
    c.frame()
    c.send("room:lobby", "phx_leave", join_ref=jr)
    assert actors.receive(lambda m: m[0] == "channel_terminated", 1) == ("channel_terminated", "room:lobby", ("shutdown", "left"))


def test_leave_with_a_stale_join_ref_is_ignored(endpoint):
    c = Client(endpoint, "2.0.0")
    jr = c.join("room:lobby")
    c.frame()
    c.send("room:lobby", "phx_leave", join_ref="stale")
    c.raw.refute_frame()
    ref = c.send("room:lobby", "ping", {"still": "joined"}, join_ref=jr)
    assert c.frame() == (jr, ref, "room:lobby", "phx_reply", ok({"pong": {"still": "joined"}}))


def channel_pid(c, topic, join_ref):
    c.send(topic, "whoami", join_ref=join_ref)
    return actors.Pid.parse(c.frame()[4]["response"]["pid"])


def test_duplicate_join_replies_first_then_closes_the_old_join(endpoint, vsn):
    c = Client(endpoint, vsn)
    old = c.join("room:lobby")
    c.frame()
    old_pid = channel_pid(c, "room:lobby", old)
    ref = actors.monitor(old_pid)
    new = c.join("room:lobby")
    assert c.frame() == (c.jr(new), new, "room:lobby", "phx_reply", ok())
    assert c.frame() == (c.jr(old), old, "room:lobby", "phx_close", {})
    # A channel that does not trap exits dies with the signal's reason (no terminate).
    assert actors.receive(lambda m: m[:2] == ("DOWN", ref), 1)[4] == ("shutdown", "duplicate_join")
    ref = c.send("room:lobby", "ping", {}, join_ref=new)
    assert c.frame() == (c.jr(new), ref, "room:lobby", "phx_reply", ok({"pong": {}}))


# -- handle_in ------------------------------------------------------------------------------


def test_reply_and_status_only_reply(endpoint, vsn):
    c = Client(endpoint, vsn)
    jr = c.join("room:lobby")
    c.frame()
    ref = c.send("room:lobby", "ping", {"n": 1}, join_ref=jr)
    assert c.frame() == (c.jr(jr), ref, "room:lobby", "phx_reply", ok({"pong": {"n": 1}}))
    ref = c.send("room:lobby", "status_only", join_ref=jr)
    assert c.frame() == (c.jr(jr), ref, "room:lobby", "phx_reply", ok())


def test_noreply_sends_nothing(endpoint, vsn):
    c = Client(endpoint, vsn)
    jr = c.join("room:lobby")
    c.frame()
    c.send("room:lobby", "noreply", join_ref=jr)
    c.raw.refute_frame()


def test_push_from_handle_in_and_handle_info(endpoint, vsn):
    c = Client(endpoint, vsn)
    jr = c.join("room:lobby")
    c.frame()
    c.send("room:lobby", "push", {"a": 1}, join_ref=jr)
    assert c.frame() == (c.jr(jr), None, "room:lobby", "pushed", {"a": 1})
    pid = channel_pid(c, "room:lobby", jr)
    actors.send(pid, "push_me")
    assert c.frame() == (c.jr(jr), None, "room:lobby", "pushed", {"from": "info"})


def test_channel_processes_answer_calls_and_casts(endpoint, vsn):
    c = Client(endpoint, vsn)
    jr = c.join("room:lobby")
    c.frame()
    pid = channel_pid(c, "room:lobby", jr)
    assert actors.call(pid, "topic") == "room:lobby"
    actors.cast(pid, "hello")
    assert c.frame() == (c.jr(jr), None, "room:lobby", "cast", {"request": "hello"})
    assert actors.get_state(pid).topic == "room:lobby"  # the channel's socket, through sys


def test_broadcast_or_raise(endpoint, vsn):
    c = Client(endpoint, vsn)
    jr = c.join("room:lobby")
    c.frame()
    ref = c.send("room:lobby", "broadcast_or_raise", {"m": 3}, join_ref=jr)
    frames = [c.frame(), c.frame()]
    assert (None, None, "room:lobby", "new_msg", {"m": 3}) in frames
    assert (c.jr(jr), ref, "room:lobby", "phx_reply", ok()) in frames


def test_async_reply_through_a_socket_ref(endpoint, vsn):
    c = Client(endpoint, vsn)
    jr = c.join("room:lobby")
    c.frame()
    ref = c.send("room:lobby", "async", {"v": 2}, join_ref=jr)
    assert c.frame() == (c.jr(jr), ref, "room:lobby", "phx_reply", ok({"async": {"v": 2}}))


def test_broadcast_reaches_every_subscriber_and_broadcast_from_skips_the_sender(endpoint, vsn):
    a, b = Client(endpoint, vsn), Client(endpoint, "2.0.0")
    jra = a.join("room:lobby")
    b.join("room:lobby")
    a.frame(), b.frame()
    a.send("room:lobby", "broadcast", {"m": 1}, join_ref=jra)
    assert a.frame() == (None, None, "room:lobby", "new_msg", {"m": 1})
    assert b.frame() == (None, None, "room:lobby", "new_msg", {"m": 1})
    a.send("room:lobby", "broadcast_from", {"m": 2}, join_ref=jra)
    assert b.frame() == (None, None, "room:lobby", "new_msg", {"m": 2})
    a.raw.refute_frame()


def test_intercepted_events_go_through_handle_out(endpoint, vsn):
    c = Client(endpoint, vsn)
    jr = c.join("room:lobby")
    c.frame()
    endpoint.broadcast("room:lobby", "intercepted", {"x": 1})
    assert c.frame() == (c.jr(jr), None, "room:lobby", "intercepted", {"x": 1, "intercepted": True})
    endpoint.broadcast("room:lobby", "plain", {"x": 2})
    assert c.frame() == (None, None, "room:lobby", "plain", {"x": 2})


def test_a_broadcast_is_encoded_once_per_serializer(endpoint, monkeypatch):
    calls = []
    original = V2JSONSerializer.fastlane

    def counting(self, msg):
        calls.append(msg.event)
        return original(self, msg)

    monkeypatch.setattr(V2JSONSerializer, "fastlane", counting)
    clients = [Client(endpoint, "2.0.0") for _ in range(5)] + [Client(endpoint, "1.0.0") for _ in range(3)]
    for c in clients:
        c.join("room:fan")
        c.frame()
    endpoint.broadcast("room:fan", "tick", {"n": 1})
    for c in clients:
        assert c.frame()[2:] == ("room:fan", "tick", {"n": 1})
    assert calls == ["tick"]


class _PartitionedAdapter(LocalAdapter):
    """The local adapter, cut off from every other node: what a Redis outage looks like."""

    @staticmethod
    def broadcast(adapter_name, topic, message, dispatcher):
        return ("error", "partitioned")


def test_endpoint_broadcasts_report_the_adapter_result_like_phoenix():
    # Phoenix's Endpoint.broadcast returns :ok | {:error, term} and broadcast! raises;
    # either way this node's subscribers already have the message.
    ep = Endpoint("Test.Endpoint.Partitioned", pubsub_server="Test.PubSub.Partitioned", sockets=[("/socket", UserSocket)])
    app = Application([PubSub.child_spec(name="Test.PubSub.Partitioned", adapter=_PartitionedAdapter), *ep.child_specs()])
    app.start()
    try:
        a, b = Client(ep, "2.0.0"), Client(ep, "2.0.0")
        for c in (a, b):
            c.join("room:lobby")
            c.frame()
        assert ep.broadcast("room:lobby", "e1", {}) == ("error", "partitioned")
        with pytest.raises(BroadcastError) as info:
            ep.broadcast_or_raise("room:lobby", "e2", {})
        assert info.value.reason == "partitioned"
        assert [a.frame()[3], a.frame()[3]] == ["e1", "e2"]
        assert [b.frame()[3], b.frame()[3]] == ["e1", "e2"]
        assert ep.local_broadcast("room:lobby", "e3", {}) == "ok"
        assert a.frame()[3] == b.frame()[3] == "e3"
    finally:
        app.stop()


def test_endpoint_broadcast_from_skips_that_subscriber(endpoint):
    pubsub.subscribe(endpoint.pubsub_server, "room:side")
    c = Client(endpoint, "2.0.0")
    c.join("room:side")
    c.frame()
    me = actors.self()
    assert endpoint.broadcast_from(me, "room:side", "from", {"n": 1}) == "ok"
    assert endpoint.broadcast_from_or_raise(me, "room:side", "from!", {"n": 2}) is None
    assert endpoint.local_broadcast_from(me, "room:side", "local_from", {"n": 3}) == "ok"
    assert [c.frame()[3] for _ in range(3)] == ["from", "from!", "local_from"]
    assert endpoint.broadcast("room:side", "all", {"n": 4}) == "ok"
    assert actors.receive(timeout=1.0) == Broadcast(topic="room:side", event="all", payload={"n": 4})
    assert c.frame()[3] == "all"


# -- stopping and crashing ----------------------------------------------------------------


def test_graceful_stop_sends_phx_close(endpoint, vsn):
    c = Client(endpoint, vsn)
    jr = c.join("room:lobby")
    c.frame()
    c.send("room:lobby", "stop", join_ref=jr)
    assert c.frame() == (c.jr(jr), jr, "room:lobby", "phx_close", {})


def test_stop_with_reply_replies_then_closes(endpoint, vsn):
    c = Client(endpoint, vsn)
    jr = c.join("room:lobby")
    c.frame()
    ref = c.send("room:lobby", "stop_reply", join_ref=jr)
    assert c.frame() == (c.jr(jr), ref, "room:lobby", "phx_reply", ok({"bye": True}))
    assert c.frame() == (c.jr(jr), jr, "room:lobby", "phx_close", {})


def test_abnormal_stop_sends_phx_error(endpoint, vsn, caplog):
    c = Client(endpoint, vsn)
    jr = c.join("room:lobby")
    c.frame()
    c.send("room:lobby", "stop_abnormal", join_ref=jr)
    assert c.frame() == (c.jr(jr), jr, "room:lobby", "phx_error", {})


def test_crash_sends_terminate_pushes_then_phx_error_and_other_channels_live(endpoint, vsn, caplog):
    c = Client(endpoint, vsn)
    jr = c.join("room:lobby", {"terminate_push": True})
    c.frame()
    other = c.join("room:other")
    c.frame()
    with caplog.at_level(logging.ERROR):
        c.send("room:lobby", "crash", join_ref=jr)
        assert c.frame() == (c.jr(jr), None, "room:lobby", "goodbye", {})
        assert c.frame() == (c.jr(jr), jr, "room:lobby", "phx_error", {})
    crash_logs = [r for r in caplog.records if "crashed on purpose" in (r.getMessage() + str(r.exc_info))]
    assert len(crash_logs) == 1
    ref = c.send("room:other", "ping", {}, join_ref=other)
    assert c.frame() == (c.jr(other), ref, "room:other", "phx_reply", ok({"pong": {}}))
    # and the crashed topic can be joined again
    again = c.join("room:lobby")
    assert c.frame() == (c.jr(again), again, "room:lobby", "phx_reply", ok())


def test_a_callback_returning_garbage_crashes_the_channel_with_a_clear_error(endpoint, vsn, caplog):
    c = Client(endpoint, vsn)
    jr = c.join("room:lobby")
    c.frame()
    with caplog.at_level(logging.ERROR):
        c.send("room:lobby", "bad_return", join_ref=jr)
        assert c.frame() == (c.jr(jr), jr, "room:lobby", "phx_error", {})
    messages = " ".join(str(r.exc_info[1]) for r in caplog.records if r.exc_info)
    assert "RoomChannel.handle_in returned 42" in messages


def test_transport_exit_reaches_channels_as_shutdown_closed(endpoint, vsn):
    c = Client(endpoint, vsn)
    c.join("room:lobby", {"observer": str(actors.self())})
    c.frame()
    c.raw.close()
    assert actors.receive(lambda m: m[0] == "channel_terminated", 1)[2] == ("shutdown", "closed")


def test_killed_transport_reason_reaches_channels_unchanged(endpoint, vsn):
    c = Client(endpoint, vsn)
    c.join("room:lobby", {"observer": str(actors.self())})
    c.frame()
    actors.exit(c.raw.pid, "kill")
    assert actors.receive(lambda m: m[0] == "channel_terminated", 1)[2] == "killed"


# -- socket-level messages ---------------------------------------------------------------


def test_channel_limit(endpoint, vsn):
    c = Client(endpoint, vsn, handler=LimitedSocket)
    for topic in ("room:1", "room:2"):
        c.join(topic)
        assert c.frame()[3:] == ("phx_reply", ok())
    jr = c.join("room:3")
    assert c.frame() == (c.jr(jr), jr, "room:3", "phx_reply", error({"reason": "too many channels joined"}))
    # rejoining a joined topic is a duplicate join, not a new channel
    jr = c.join("room:1")
    assert c.frame()[3:] == ("phx_reply", ok())


def test_join_storm_past_the_limit_is_refused_each_time(endpoint):
    c = Client(endpoint, "2.0.0", handler=LimitedSocket)
    for i in range(20):
        c.join(f"room:{i}")
    statuses = [c.frame()[4]["status"] for _ in range(20)]
    assert statuses == ["ok", "ok"] + ["error"] * 18
    assert len(c.raw.connection.channels) == 2


def test_disconnect_broadcast_to_the_socket_id_closes_it(endpoint, vsn):
    c = Client(endpoint, vsn, user_id="42")
    other = Client(endpoint, vsn, user_id="7")
    c.join("room:lobby", {"observer": str(actors.self())})
    c.frame()
    assert c.raw.connection.socket.id == "user_socket:42"
    endpoint.broadcast("user_socket:42", "disconnect", {})
    assert c.raw.receive_close() == (1000, "")
    assert actors.receive(lambda m: m[0] == "channel_terminated", 1)[2] == ("shutdown", "closed")
    ref = other.send("phoenix", "heartbeat")
    assert other.frame()[1] == ref


def test_drain_closes_with_1012(endpoint, vsn):
    c = Client(endpoint, vsn)
    jr = c.join("room:lobby")
    c.frame()
    pid = channel_pid(c, "room:lobby", jr)
    ref = actors.monitor(pid)
    # what the drainer sends to every channel process
    actors.send(pid, Broadcast(topic="room:lobby", event="phx_drain", payload={}))
    assert c.raw.receive_close() == (1012, "")
    assert actors.receive(lambda m: m[:2] == ("DOWN", ref), 1)[4] == ("shutdown", "draining")


def test_socket_push_close_and_garbage_collect_messages(endpoint, vsn):
    c = Client(endpoint, vsn)
    actors.send(c.raw.pid, ("socket_push", "text", '"raw"'))
    assert c.raw.receive_frame() == ("text", '"raw"')
    actors.send(c.raw.pid, "garbage_collect")
    actors.send(c.raw.pid, ("anything", "else"))
    ref = c.send("phoenix", "heartbeat")
    assert c.frame()[1] == ref


def test_socket_close_from_a_channel_pid_not_joined_is_ignored(endpoint):
    c = Client(endpoint, "2.0.0")
    actors.send(c.raw.pid, ("socket_close", actors.self(), "normal"))
    ref = c.send("phoenix", "heartbeat")
    assert c.frame()[1] == ref


def test_custom_channel_speaks_the_join_protocol(endpoint, vsn):
    c = Client(endpoint, vsn)
    jr = c.join("custom:channel", {"p": 1})
    assert c.frame() == (c.jr(jr), jr, "custom:channel", "phx_reply", ok({"custom": True, "payload": {"p": 1}}))


def test_route_assigns_are_merged_into_the_channel_socket(endpoint):
    c = Client(endpoint, "2.0.0")
    jr = c.join("assigns:room")
    c.frame()
    c.send("assigns:room", "whoami", join_ref=jr)
    pid = actors.Pid.parse(c.frame()[4]["response"]["pid"])
    assert actors.get_state(pid).assigns["extra"] == 1


def test_channels_run_under_the_partitioned_pool(endpoint):
    import supervision

    c = Client(endpoint, "2.0.0")
    jr = c.join("room:lobby")
    c.frame()
    c.send("room:lobby", "whoami", join_ref=jr)
    pid = actors.Pid.parse(c.frame()[4]["response"]["pid"])
    partition = supervision.partition_for(endpoint.pool_name(UserSocket), c.raw.pid)
    assert pid in [row.pid for row in supervision.which_children(partition)]


# -- connect --------------------------------------------------------------------------------


def test_connect_refusals(endpoint):
    with pytest.raises(ConnectRefused) as info:
        SocketClient(endpoint, UserSocket, params={"reject": "1"})
    assert info.value.result == "error"
    with pytest.raises(ConnectRefused) as info:
        SocketClient(endpoint, UserSocket, params={"ratelimit": "1"})
    assert info.value.result == ("error", "rate_limit")


def test_connect_returning_garbage_is_refused_and_logged(endpoint, caplog):
    with caplog.at_level(logging.ERROR, logger="transport.socket"):
        with pytest.raises(ConnectRefused):
            SocketClient(endpoint, UserSocket, params={"garbage": "1"})
    assert any("returned invalid value 42" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("bad_vsn", ["3.0.0", "2.0", "abc", ""])
def test_unknown_or_malformed_vsn_is_refused(endpoint, bad_vsn):
    with pytest.raises(ConnectRefused):
        SocketClient(endpoint, UserSocket, params={"vsn": bad_vsn})


def test_default_vsn_is_v1(endpoint):
    client = SocketClient(endpoint, UserSocket, params={})
    assert client.serializer.vsn.startswith("1")


def test_two_argument_connect(endpoint):
    client = SocketClient(endpoint, TwoArgSocket, params={"vsn": "2.0.0"})
    assert client.connection.socket.assigns == {"two_arg": True}


def test_splat_not_at_the_end_fails_at_definition_time():
    from transport import SocketHandler

    with pytest.raises(ValueError, match="must end with"):

        class Bad(SocketHandler):
            channels = [("room:*:x", object)]


# -- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("vsn", "frame"),
    [
        ("2.0.0", ("text", "not json")),
        ("2.0.0", ("text", '{"topic": "x"}')),
        ("2.0.0", ("text", '[null, "1", "room:lobby"]')),
        ("2.0.0", ("text", '[null, "1", 5, "phx_join", {}]')),
        ("2.0.0", ("binary", b"\x05\x00")),
        ("1.0.0", ("text", "[1, 2]")),
        ("1.0.0", ("text", '{"topic": "a", "event": "b"}')),
        ("1.0.0", ("binary", b"\xff\xfe")),
    ],
)
def test_a_malformed_frame_closes_only_that_socket_with_1011(endpoint, vsn, frame, caplog):
    bystander = Client(endpoint, "2.0.0")
    bjr = bystander.join("room:lobby")
    bystander.frame()
    bad = SocketClient(endpoint, UserSocket, params={"vsn": vsn})
    with caplog.at_level(logging.WARNING, logger="transport"):
        bad.send_frame(*frame)
        assert bad.receive_close() == (1011, "invalid message")
    assert len([r for r in caplog.records if "invalid message" in r.getMessage()]) == 1
    ref = bystander.send("room:lobby", "ping", {}, join_ref=bjr)
    assert bystander.frame()[1] == ref


def test_v1_decodes_a_binary_frame_holding_json_as_phoenix_does(endpoint):
    c = SocketClient(endpoint, UserSocket, params={"vsn": "1.0.0"})
    c.send_frame("binary", b'{"topic":"phoenix","event":"heartbeat","payload":{},"ref":"1"}')
    assert ujson.loads(c.receive_frame()[1])["ref"] == "1"


def test_v2_binary_push_reaches_handle_in_and_binary_reply(endpoint):
    from transport import Binary, Channel, SocketHandler, push

    class BinChannel(Channel):
        def join(self, topic, payload, socket):
            return ("ok", socket)

        def handle_in(self, event, payload, socket):
            push(socket, "bin_push", Binary(payload.data[::-1]))
            return ("reply", ("ok", Binary(payload.data + b"!")), socket)

    class BinSocket(SocketHandler):
        channels = [("bin:*", BinChannel)]

    endpoint.sockets.append(("/bin", BinSocket, {}))
    import supervision

    spec = next(sp for sp in endpoint.child_specs() if sp.id == endpoint.pool_name(BinSocket))
    pool = supervision.start_link([spec])
    c = Client(endpoint, "2.0.0", handler=BinSocket)
    c.join("bin:1", join_ref="1")
    c.frame()
    # client push: kind 0, join_ref "1", ref "2", topic "bin:1", event "up", then data
    c.raw.send_frame("binary", bytes([0, 1, 1, 5, 2]) + b"12bin:1up" + b"\x01\x02")
    assert c.raw.receive_frame() == ("binary", bytes([0, 1, 5, 8]) + b"1bin:1bin_push" + b"\x02\x01")
    assert c.raw.receive_frame() == ("binary", bytes([1, 1, 1, 5, 2]) + b"12bin:1ok" + b"\x01\x02!")
    actors.unlink(pool)
    actors.exit(pool, "shutdown")


# -- telemetry --------------------------------------------------------------------------------


def test_telemetry_events_with_durations(endpoint):
    seen = []
    events = [
        ("phoenix", "socket_connected"),
        ("phoenix", "channel_joined"),
        ("phoenix", "channel_handled_in"),
    ]
    telemetry.attach_many("test-telemetry", events, lambda e, m, md, cfg: seen.append((e, m, md)))
    try:
        c = Client(endpoint, "2.0.0")
        jr = c.join("room:lobby", {"k": 1})
        c.frame()
        c.send("room:lobby", "ping", {}, join_ref=jr)
        c.frame()
    finally:
        telemetry.detach("test-telemetry")
    names = [e for e, _m, _md in seen]
    assert names == events
    assert all(m["duration"] >= 0 for _e, m, _md in seen)
    assert seen[0][2]["result"] == "ok" and seen[0][2]["vsn"] == "2.0.0"
    assert seen[1][2]["params"] == {"k": 1} and seen[1][2]["result"] == "ok"
    assert seen[2][2]["event"] == "ping"


def test_a_raising_telemetry_handler_is_detached_not_fatal(endpoint, caplog):
    def broken(*args):
        raise ValueError("handler bug")

    telemetry.attach("broken", ("phoenix", "channel_joined"), broken)
    c = Client(endpoint, "2.0.0")
    with caplog.at_level(logging.ERROR, logger="transport.telemetry"):
        c.join("room:lobby")
        assert c.frame()[3] == "phx_reply"
        c.join("room:other")
        assert c.frame()[3] == "phx_reply"
    assert "broken" not in telemetry.list_handlers(("phoenix", "channel_joined"))
    assert len([r for r in caplog.records if "broken" in r.getMessage()]) == 1


def test_a_transport_process_answers_get_state_with_a_snapshot(endpoint):
    c = Client(endpoint, "2.0.0", user_id="9")
    jr = c.join("room:lobby")
    c.frame()
    pid = channel_pid(c, "room:lobby", jr)
    state = actors.get_state(c.raw.pid)
    assert state == {
        "handler": "UserSocket",
        "id": "user_socket:9",
        "serializer": "V2JSONSerializer",
        "channels": {"room:lobby": pid},
        "transport": "memory",
        "peer": None,
        "path": None,
    }
    assert actors.get_status(c.raw.pid)["state"] == state
    assert actors.process_info(c.raw.pid)["label"] == ("socket", "UserSocket", "user_socket:9")


# -- the channel's copy of the socket --------------------------------------------------------


def test_the_channels_socket_copy_matches_dataclasses_replace_field_for_field():
    import dataclasses

    from transport import Socket
    from transport._channel import _channel_socket
    from transport._message import Message

    names = [f.name for f in dataclasses.fields(Socket)]
    socket = Socket(**{name: f"<{name}>" for name in names})
    socket.private = {"p": 1}
    for join_ref, expected_join_ref in (("7", "7"), (None, "3")):  # V1: no join_ref, the ref stands in
        message = Message("room:1", "phx_join", {}, "3", join_ref)
        copy = _channel_socket(socket, message, "TheChannel", {"a": 1})
        expected = dataclasses.replace(
            socket, topic="room:1", channel="TheChannel", join_ref=expected_join_ref, assigns={"a": 1}, private={"p": 1}
        )
        assert copy == expected
        assert copy.private is not socket.private  # the channel's own private map

    class Wider(Socket):
        pass

    wider = Wider(**{name: f"<{name}>" for name in names})
    wider.private = {}
    assert type(_channel_socket(wider, Message("t", "phx_join", {}, "1", "1"), "C", {})) is Wider
