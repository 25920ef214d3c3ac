"""The Redis adapter's wire format, without sockets; golden vectors from a real BEAM.

The interop proof with Phoenix nodes: phoenix_pubsub_redis 3.x publishes
``term_to_binary({3, mode, node, topic, message, dispatcher}, compressed: level)`` and
matches ``{3, :only, ^me, ...}`` / ``{3, :except, other, ...}`` on what it reads. Erlang
must read our bytes as exactly the terms a Phoenix node sends, and we must read Erlang's.
"""

from __future__ import annotations

import pytest
from erlang import erl_binary, erl_eval

import actors
from transport import _channel
from transport._message import Binary, Broadcast
from transport.pubsub import _api
from transport.pubsub._redis_codec import (
    CHANNEL_SERVER,
    EXCEPT,
    ONLY,
    PUBSUB,
    Envelope,
    MessageError,
    WireCodec,
    dispatcher_name,
    heartbeat,
    read_heartbeat,
)
from transport.terms import Atom, OpaqueTerm, term_to_binary

STRUCT = (
    "#{'__struct__' => 'Elixir.Phoenix.Socket.Broadcast', topic => <<\"room:1\">>, event => <<\"new_msg\">>, payload => PAYLOAD}"
)


def envelope_erl(mode: str, node: str, message: str, dispatcher: str, topic: str = '<<"room:1">>') -> str:
    return f"{{3, {mode}, '{node}', {topic}, {message}, '{dispatcher}'}}"


@pytest.fixture
def codec() -> WireCodec:
    return WireCodec("web1@host", creation=77)


# ----------------------------------------------------------------------------------------
# Pure round trips
# ----------------------------------------------------------------------------------------


def test_a_channel_broadcast_round_trips_as_a_broadcast(codec: WireCodec) -> None:
    msg = Broadcast(topic="room:1", event="new_msg", payload={"body": "hi", "n": [1, 2], "ok": True, "none": None})
    data = codec.encode(EXCEPT, "web1@host", "room:1", msg, dispatcher_name(_channel.dispatch))
    assert codec.decode(data) == Envelope("except", "web1@host", "room:1", msg, str(CHANNEL_SERVER))


def test_binary_payloads_travel_as_the_binary_tuple(codec: WireCodec) -> None:
    msg = Broadcast(topic="t", event="bin", payload=Binary(b"\x00\xff\x10"))
    env = codec.decode(codec.encode(ONLY, "other@host", "t", msg, str(CHANNEL_SERVER)))
    assert env.message == msg and env.mode == "only" and env.node == "other@host"
    # Valid UTF-8 inside {:binary, data} still comes back as bytes.
    env = codec.decode(codec.encode(EXCEPT, "x", "t", Broadcast("t", "bin", Binary(b"abc")), str(CHANNEL_SERVER)))
    assert env.message.payload == Binary(b"abc")


def test_plain_messages_keep_tuples_atoms_and_nesting(codec: WireCodec) -> None:
    message = ("user_update", {"id": 123, "tags": ("a", "b"), 5: [1.5, None]}, Atom("ok"), 2**80, -7)
    env = codec.decode(codec.encode(EXCEPT, "x", "t", message, str(PUBSUB)))
    assert env.message == message and env.dispatcher == "Elixir.Phoenix.PubSub"


def test_what_does_not_survive_a_round_trip_is_documented(codec: WireCodec) -> None:
    env = codec.decode(codec.encode(EXCEPT, "x", "t", (b"utf8 bytes", b"\xff\xfe", [1, 2, 3]), str(PUBSUB)))
    assert env.message == ("utf8 bytes", b"\xff\xfe", [1, 2, 3])


def test_pids_and_refs_come_back_as_themselves_on_their_own_node_only(codec: WireCodec) -> None:
    me, ref = actors.self(), actors.make_ref()
    data = codec.encode(ONLY, "web1@host", "t", ("$marker", ref, me, Broadcast("t", "e", {"pid": me})), str(PUBSUB))
    message = codec.decode(data).message
    assert message[1] == ref and message[2] == me and message[3].payload["pid"] == me
    # Another OS process with the same node name (another creation) sees opaque terms.
    later = WireCodec("web1@host", creation=78).decode(data).message
    assert isinstance(later[1], OpaqueTerm) and later[1].kind == "reference" and later[1].node == "web1@host"
    assert isinstance(later[2], OpaqueTerm) and later[2].kind == "pid"
    elsewhere = WireCodec("web2@host").decode(data).message
    assert isinstance(elsewhere[2], OpaqueTerm)


def test_compressed_messages_round_trip_and_are_smaller(codec: WireCodec) -> None:
    squeezer = WireCodec("web1@host", compression_level=9)
    msg = Broadcast("t", "e", {"body": "x" * 5000})
    small = squeezer.encode(EXCEPT, "a", "t", msg, str(CHANNEL_SERVER))
    plain = codec.encode(EXCEPT, "a", "t", msg, str(CHANNEL_SERVER))
    assert small[1] == 80 and len(small) < len(plain) // 10
    assert codec.decode(small).message == msg


def test_messages_with_no_term_form_raise_an_encode_error(codec: WireCodec) -> None:
    for bad in ({1, 2}, object(), float("nan"), Broadcast("t", "e", {"x": {1}})):
        with pytest.raises(TypeError):
            codec.encode(EXCEPT, "a", "t", bad, str(PUBSUB))


def test_dispatcher_names() -> None:
    assert dispatcher_name(_channel.dispatch) == "Elixir.Phoenix.Channel.Server"
    assert dispatcher_name(_api.dispatch) == "Elixir.Phoenix.PubSub"
    assert dispatcher_name(test_dispatcher_names) == f"{__name__}.test_dispatcher_names"


@pytest.mark.parametrize(
    "data, kind",
    [
        (b"", "undecodable"),
        (b"not a term", "undecodable"),
        (b"\x83h\x06a\x03", "undecodable"),  # truncated
        (term_to_binary("a binary"), "not_a_message"),
        (term_to_binary((1, Atom("except"), Atom("n"), "t", "m")), "unknown_version"),
        (term_to_binary((4, Atom("except"), Atom("n"), "t", "m", Atom("D"))), "unknown_version"),
        (term_to_binary((3, Atom("sometimes"), Atom("n"), "t", "m", Atom("D"))), "bad_mode"),
        (term_to_binary((3, Atom("except"), 42, "t", "m", Atom("D"))), "bad_node"),
        (term_to_binary((3, Atom("except"), Atom("n"), b"\xff", "m", Atom("D"))), "bad_topic"),
        (term_to_binary((3, Atom("except"), Atom("n"), "t", "m", "D")), "bad_dispatcher"),
    ],
)
def test_bad_messages_raise_a_message_error_of_their_kind(codec: WireCodec, data: bytes, kind: str) -> None:
    with pytest.raises(MessageError) as info:
        codec.decode(data)
    assert info.value.kind == kind


def test_heartbeats_round_trip_and_reject_other_terms() -> None:
    assert read_heartbeat(heartbeat("web1@host", "abc123", "up")) == ("web1@host", "abc123", "up")
    assert read_heartbeat(heartbeat("w", "i", "bye")) == ("w", "i", "bye")
    with pytest.raises(MessageError):
        read_heartbeat(term_to_binary((Atom("greenphx_node"), 2, Atom("w"), "i", Atom("up"))))
    with pytest.raises(MessageError):
        read_heartbeat(b"\x00")


def test_node_names_are_checked() -> None:
    with pytest.raises(TypeError):
        WireCodec("")
    with pytest.raises(ValueError):
        WireCodec("x" * 256)
    with pytest.raises(ValueError):
        WireCodec("a", compression_level=10)


# ----------------------------------------------------------------------------------------
# Golden vectors: a real BEAM reads ours, we read the BEAM's
# ----------------------------------------------------------------------------------------


def test_erlang_reads_our_messages_as_phoenix_pubsub_redis_terms(codec: WireCodec) -> None:
    channel = codec.encode(
        EXCEPT,
        "web1@host",
        "room:1",
        Broadcast("room:1", "new_msg", {"body": "hi", "n": [1, 2], "ok": True, "none": None, "f": 1.5}),
        dispatcher_name(_channel.dispatch),
    )
    channel_expected = envelope_erl(
        "except",
        "web1@host",
        STRUCT.replace(
            "PAYLOAD", '#{<<"body">> => <<"hi">>, <<"n">> => [1,2], <<"ok">> => true, <<"none">> => nil, <<"f">> => 1.5}'
        ),
        "Elixir.Phoenix.Channel.Server",
    )
    binary = codec.encode(ONLY, "phx@host", "room:1", Broadcast("room:1", "new_msg", Binary(b"\x01\xff")), str(CHANNEL_SERVER))
    binary_expected = envelope_erl(
        "only", "phx@host", STRUCT.replace("PAYLOAD", "{binary, <<1,255>>}"), "Elixir.Phoenix.Channel.Server"
    )
    plain = codec.encode(EXCEPT, "web1@host", "user:123", ("user_update", {"id": 123}), str(PUBSUB))
    plain_expected = envelope_erl(
        "except", "web1@host", '{<<"user_update">>, #{<<"id">> => 123}}', "Elixir.Phoenix.PubSub", '<<"user:123">>'
    )
    compressed = WireCodec("web1@host", compression_level=6).encode(
        EXCEPT, "web1@host", "room:1", Broadcast("room:1", "new_msg", {"body": "y" * 300}), str(CHANNEL_SERVER)
    )
    compressed_expected = envelope_erl(
        "except",
        "web1@host",
        STRUCT.replace("PAYLOAD", '#{<<"body">> => <<"' + "y" * 300 + '">>}'),
        "Elixir.Phoenix.Channel.Server",
    )
    me = actors.self()
    with_pid = codec.encode(ONLY, "web1@host", "t", (me, actors.make_ref()), str(PUBSUB))
    results = erl_eval(
        [
            f"binary_to_term({erl_binary(channel)}) =:= {channel_expected}",
            # Byte for byte what OTP 26+ (or 25 with UTF-8 atoms) writes for that term.
            f"term_to_binary({channel_expected}, [{{minor_version, 2}}]) =:= {erl_binary(channel)}",
            f"binary_to_term({erl_binary(binary)}) =:= {binary_expected}",
            f"binary_to_term({erl_binary(plain)}) =:= {plain_expected}",
            f"binary_to_term({erl_binary(compressed)}) =:= {compressed_expected}",
            f"case binary_to_term({erl_binary(with_pid)}) of"
            f" {{3, only, 'web1@host', <<\"t\">>, {{P, R}}, 'Elixir.Phoenix.PubSub'}}"
            " -> is_pid(P) andalso is_reference(R) andalso node(P) =:= 'web1@host' andalso node(R) =:= 'web1@host';"
            " _ -> false end",
        ]
    )
    assert results == ["true"] * 6


def test_we_read_what_a_phoenix_node_publishes(codec: WireCodec) -> None:
    # What Phoenix.PubSub.Redis publishes on OTP 25 (legacy atom tags), with atom keys in
    # the payload as Elixir code writes them, and compressed as with compression_level: 6.
    from_phoenix = envelope_erl(
        "except",
        "phx@host",
        STRUCT.replace("PAYLOAD", '#{body => <<"hi">>, status => ok, <<"n">> => 1, list => [a, <<"b">>], nothing => nil}'),
        "Elixir.Phoenix.Channel.Server",
    )
    binary = envelope_erl("only", "web1@host", STRUCT.replace("PAYLOAD", "{binary, <<0,1,2>>}"), "Elixir.Phoenix.Channel.Server")
    plain = envelope_erl(
        "except", "phx@host", '{user_update, #{id => 1, name => <<"é"/utf8>>}}', "Elixir.Phoenix.PubSub", '<<"user:1">>'
    )
    disconnect = envelope_erl(
        "except",
        "phx@host",
        "#{'__struct__' => 'Elixir.Phoenix.Socket.Broadcast', topic => <<\"users_socket:1\">>, "
        'event => <<"disconnect">>, payload => #{}}',
        "Elixir.Phoenix.Channel.Server",
        '<<"users_socket:1">>',
    )
    raw = erl_eval(
        [
            f"term_to_binary({from_phoenix})",
            f"term_to_binary({from_phoenix}, [{{compressed, 6}}])",
            f"term_to_binary({binary})",
            f"term_to_binary({plain})",
            f"term_to_binary({disconnect})",
        ]
    )
    assert all(isinstance(r, bytes) for r in raw)
    expected = Broadcast("room:1", "new_msg", {"body": "hi", "status": "ok", "n": 1, "list": ["a", "b"], "nothing": None})
    for data in raw[:2]:
        assert codec.decode(data) == Envelope("except", "phx@host", "room:1", expected, "Elixir.Phoenix.Channel.Server")
    assert codec.decode(raw[2]).message == Broadcast("room:1", "new_msg", Binary(b"\x00\x01\x02"))
    assert codec.decode(raw[2]).mode == "only" and codec.decode(raw[2]).node == "web1@host"
    env = codec.decode(raw[3])
    assert env.message == (Atom("user_update"), {Atom("id"): 1, Atom("name"): "é"}) and env.topic == "user:1"
    assert env.dispatcher == "Elixir.Phoenix.PubSub"
    assert codec.decode(raw[4]).message == Broadcast("users_socket:1", "disconnect", {})


def test_an_erlang_pid_from_another_node_stays_opaque_and_encodes_back_verbatim(codec: WireCodec) -> None:
    [data] = erl_eval(["term_to_binary({3, except, 'phx@host', <<\"t\">>, {hello, self()}, 'Elixir.Phoenix.PubSub'})"])
    env = codec.decode(data)
    pid = env.message[1]
    assert isinstance(pid, OpaqueTerm) and pid.kind == "pid"
    again = codec.encode(EXCEPT, "phx@host", "t", (Atom("hello"), pid), str(PUBSUB))
    assert again == data or codec.decode(again).message[1] == pid
