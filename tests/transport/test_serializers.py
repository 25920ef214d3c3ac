"""The V1 and V2 serializers, frame for frame against Phoenix 1.7's.

The first two sections port the scenarios of Phoenix's own serializer tests with the exact
frames they expect; the rest pin down what Phoenix's tests leave implicit (key order,
Jason's escaping, what is refused on the way out and on the way in) and fuzz decode.
"""

from __future__ import annotations

import copy
import datetime
import json
import math
import pickle

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from transport._message import Binary, Broadcast, InvalidMessageError, Message, Reply
from transport.serializers import (
    V1,
    V2,
    EncodeError,
    Serializer,
    V1JSONSerializer,
    V2JSONSerializer,
    decode_json,
    encode_json,
)

EFG = Binary(bytes([101, 102, 103]))


def _via(decode, frame):
    """Feed an encoded ``(opcode, data)`` frame to a ``decode(data, opcode)``."""
    opcode, data = frame
    return decode(data, opcode)


# --- Phoenix's V1 serializer test ------------------------------------------------------

V1_MSG_JSON = '{"event":"e","payload":"m","ref":null,"topic":"t"}'
V1_BAD_JSON = '[null,null,"t","e",{"m":1}]'
V1_REPLY_JSON = '{"event":"phx_reply","payload":{"response":null,"status":null},"ref":"null","topic":"t"}'
V1_FASTLANE_JSON = '{"event":"e","payload":"m","ref":null,"topic":"t"}'


def test_v1_encodes_a_message():
    assert V1.encode(Message(topic="t", event="e", payload="m")) == ("text", V1_MSG_JSON)


def test_v1_encodes_a_reply():
    reply = Reply(topic="t", status=None, payload=None, ref="null")
    assert V1.encode(reply) == ("text", V1_REPLY_JSON)


def test_v1_decodes_a_message():
    assert V1.decode(V1_MSG_JSON, "text") == Message(topic="t", event="e", payload="m")


def test_v1_refuses_json_that_is_not_an_object():
    with pytest.raises(InvalidMessageError, match="JSON object"):
        V1.decode(V1_BAD_JSON, "text")


def test_v1_fastlane_encodes_a_broadcast():
    assert V1.fastlane(Broadcast(topic="t", event="e", payload="m")) == ("text", V1_FASTLANE_JSON)


# --- Phoenix's V2 serializer test ------------------------------------------------------

V2_FASTLANE_JSON = '[null,null,"t","e",{"m":1}]'
V2_MSG_JSON = '[null,null,"t","e",{"m":1}]'
CLIENT_PUSH = bytes([0, 2, 3, 5, 5]) + b"12" + b"123" + b"topic" + b"event" + bytes([101, 102, 103])
REPLY = bytes([1, 2, 3, 5, 2]) + b"12" + b"123" + b"topic" + b"ok" + bytes([101, 102, 103])
BROADCAST = bytes([2, 5, 5]) + b"topic" + b"event" + bytes([101, 102, 103])
SERVER_PUSH = bytes([0, 2, 5, 5]) + b"12" + b"topic" + b"event" + bytes([101, 102, 103])


def test_v2_encodes_a_message():
    assert V2.encode(Message(topic="t", event="e", payload={"m": 1})) == ("text", V2_MSG_JSON)


def test_v2_refuses_a_message_payload_that_is_not_a_map():
    with pytest.raises(EncodeError, match="dict or a Binary"):
        V2.encode(Message(topic="t", event="e", payload="invalid"))


def test_v2_encodes_a_reply():
    opcode, data = V2.encode(Reply(topic="t", status=None, payload={"m": 1}))
    assert opcode == "text"
    assert json.loads(data) == [None, None, "t", "phx_reply", {"response": {"m": 1}, "status": None}]
    assert data == '[null,null,"t","phx_reply",{"response":{"m":1},"status":null}]'


def test_v2_decodes_a_message():
    assert V2.decode(V2_MSG_JSON, "text") == Message(topic="t", event="e", payload={"m": 1})


def test_v2_fastlane_encodes_a_broadcast():
    assert V2.fastlane(Broadcast(topic="t", event="e", payload={"m": 1})) == (
        "text",
        V2_FASTLANE_JSON,
    )


def test_v2_fastlane_refuses_a_payload_that_is_not_a_map():
    with pytest.raises(EncodeError, match="dict or a Binary"):
        V2.fastlane(Broadcast(topic="t", event="e", payload="invalid"))


def test_v2_binary_encode_of_a_pushed_message():
    msg = Message(join_ref="12", ref=None, topic="topic", event="event", payload=EFG)
    assert V2.encode(msg) == ("binary", SERVER_PUSH)


@pytest.mark.parametrize(
    "field, overrides",
    [
        ("topic", {"topic": "t" * 256}),
        ("event", {"event": "e" * 256}),
        ("join_ref", {"join_ref": "j" * 256}),
    ],
)
def test_v2_binary_push_with_oversized_headers(field, overrides):
    fields = {"join_ref": "12", "ref": None, "topic": "topic", "event": "event", "payload": EFG}
    fields.update(overrides)
    with pytest.raises(EncodeError, match=f"^{field} is 256 bytes"):
        V2.encode(Message(**fields))


def test_v2_binary_reply():
    reply = Reply(join_ref="12", ref="123", topic="topic", status="ok", payload=EFG)
    assert V2.encode(reply) == ("binary", REPLY)


def test_v2_binary_reply_with_oversized_headers():
    reply = Reply(join_ref="12", ref="r" * 256, topic="topic", status="ok", payload=EFG)
    with pytest.raises(EncodeError, match="^ref is 256 bytes"):
        V2.encode(reply)


def test_v2_binary_fastlane():
    assert V2.fastlane(Broadcast(topic="topic", event="event", payload=EFG)) == (
        "binary",
        BROADCAST,
    )


@pytest.mark.parametrize("field", ["topic", "event"])
def test_v2_binary_fastlane_with_oversized_headers(field):
    fields = {"topic": "topic", "event": "event", "payload": EFG}
    fields[field] = field[0] * 256
    with pytest.raises(EncodeError, match=f"^{field} is 256 bytes"):
        V2.fastlane(Broadcast(**fields))


def test_v2_binary_decode_of_a_pushed_message():
    assert V2.decode(CLIENT_PUSH, "binary") == Message(join_ref="12", ref="123", topic="topic", event="event", payload=EFG)


# --- key order and Jason's output ------------------------------------------------------


def test_v1_frames_have_phoenix_key_order_and_never_join_ref():
    msg = Message(topic="t", event="e", payload={"z": 1, "a": 2}, ref="7", join_ref="3")
    assert V1.encode(msg) == ("text", '{"event":"e","payload":{"a":2,"z":1},"ref":"7","topic":"t"}')
    reply = Reply(topic="t", status="ok", payload={"b": 1, "a": 2}, ref="7", join_ref="3")
    assert V1.encode(reply) == (
        "text",
        ('{"event":"phx_reply","payload":{"response":{"a":2,"b":1},"status":"ok"},"ref":"7","topic":"t"}'),
    )


def test_v2_frames_keep_the_envelope_and_sort_payload_keys():
    msg = Message(topic="room:1", event="new", payload={"z": {"y": 1, "x": [{"b": 0, "a": 0}]}}, ref="2", join_ref="1")
    assert V2.encode(msg)[1] == '["1","2","room:1","new",{"z":{"x":[{"a":0,"b":0}],"y":1}}]'
    reply = Reply(topic="room:1", status="error", payload={"reason": "x"}, ref="2", join_ref="1")
    assert V2.encode(reply)[1] == ('["1","2","room:1","phx_reply",{"response":{"reason":"x"},"status":"error"}]')


def test_keys_sort_by_code_point_like_elixir_sorts_utf8_bytes():
    payload = {"é": 1, "z": 2, "Z": 3, "😀": 4, "\u00ff": 5, "a": 6}
    text = encode_json(payload)
    keys = list(json.loads(text))
    assert keys == sorted(payload, key=lambda k: k.encode("utf-8"))


def test_non_ascii_is_written_as_utf8_and_slash_is_not_escaped():
    text = V2.encode(Message("t", "e", {"m": "é 😀 / </script> \u2028 & <"}))[1]
    assert text == '[null,null,"t","e",{"m":"é 😀 / </script> \u2028 & <"}]'
    assert "\\u" not in text


def test_control_characters_are_escaped_as_jason_escapes_them():
    value = '\x00\x01\b\t\n\x0b\x0c\r\x1a\x1f\x7f"\\'
    assert encode_json(value) == '"\\u0000\\u0001\\b\\t\\n\\u000B\\f\\r\\u001A\\u001F\x7f\\"\\\\"'
    # A literal backslash followed by "u001f" is not an escape and keeps its case.
    assert encode_json("\\u001f\x1f") == '"\\\\u001f\\u001F"'


# --- what encode refuses ---------------------------------------------------------------


def test_encode_error_is_a_value_error():
    assert issubclass(EncodeError, ValueError)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("where", ["top", "nested"])
def test_nan_and_infinity_are_refused(bad, where):
    payload = {"x": bad} if where == "top" else {"a": [1, {"b": [bad]}]}
    for encode in (
        lambda: V1.encode(Message("t", "e", payload)),
        lambda: V2.encode(Message("t", "e", payload)),
        lambda: V2.fastlane(Broadcast("t", "e", payload)),
        lambda: V2.encode(Reply("t", "ok", payload)),
    ):
        with pytest.raises(EncodeError, match="NaN and Infinity"):
            encode()


@pytest.mark.parametrize("key", [1, None, True, 1.5, (1, 2), b"k", frozenset()])
def test_non_string_keys_are_refused_at_any_depth(key):
    for payload in ({key: 1}, {"a": [{"b": {key: 1}}]}, {"a": ({key: 1},)}):
        with pytest.raises(EncodeError, match="keys must be str"):
            V2.encode(Message("t", "e", payload))
        with pytest.raises(EncodeError, match="keys must be str"):
            V1.fastlane(Broadcast("t", "e", payload))


@pytest.mark.parametrize("value", [b"x", bytearray(b"x"), memoryview(b"x")])
def test_bytes_are_refused_inside_json(value):
    for payload in ({"x": value}, {"a": [1, value]}):
        with pytest.raises(EncodeError, match="bytes"):
            V2.encode(Message("t", "e", payload))
    with pytest.raises(EncodeError, match="bytes"):
        V1.encode(Message("t", "e", value))


def test_binary_cannot_sit_inside_json_or_in_v1():
    with pytest.raises(EncodeError, match="Binary"):
        V2.encode(Message("t", "e", {"file": EFG}))
    with pytest.raises(EncodeError, match="Binary"):
        V1.encode(Message("t", "e", EFG))
    with pytest.raises(EncodeError, match="Binary"):
        V1.encode(Reply("t", "ok", EFG))
    with pytest.raises(EncodeError, match="Binary"):
        V1.fastlane(Broadcast("t", "e", EFG))


class _RawJSON:
    """ujson would splice __json__'s text into the output unchecked."""

    def __json__(self):
        return '{"raw":NaN}'


@pytest.mark.parametrize("value", [{1, 2}, object(), datetime.date(2024, 1, 1), _RawJSON(), iter([1]), 1j])
def test_values_that_are_not_json_are_refused(value):
    with pytest.raises(EncodeError, match="cannot be encoded as JSON"):
        V2.encode(Message("t", "e", {"v": value}))


def test_lone_surrogates_and_self_containing_values_are_refused():
    with pytest.raises(EncodeError, match="Unicode"):
        V2.encode(Message("t", "e", {"m": "\ud800"}))
    with pytest.raises(EncodeError, match="Unicode"):
        V2.encode(Message("t", "e", EFG, join_ref="\ud800"))
    loop: list = []
    loop.append(loop)
    with pytest.raises(EncodeError, match="nested too deeply"):
        V2.encode(Message("t", "e", {"loop": loop}))


def test_subclasses_of_json_types_are_written_as_their_base_type():
    import collections
    import enum

    class Colour(enum.IntEnum):
        RED = 1

    class Name(str):
        pass

    payload = collections.OrderedDict([(Name("b"), Colour.RED), ("a", (True, None, 1.5))])
    assert V2.encode(Message("t", "e", payload))[1] == '[null,null,"t","e",{"a":[true,null,1.5],"b":1}]'


def test_reply_payload_may_be_any_json_value_and_v1_payloads_too():
    assert V2.encode(Reply("t", "ok", "fine", "1", "1"))[1] == ('["1","1","t","phx_reply",{"response":"fine","status":"ok"}]')
    assert V1.encode(Message("t", "e", [1, 2]))[1] == '{"event":"e","payload":[1,2],"ref":null,"topic":"t"}'


def test_encode_refuses_things_that_are_not_messages():
    for serializer in (V1, V2):
        with pytest.raises(TypeError):
            serializer.encode(Broadcast("t", "e", {}))


# --- binary frames ---------------------------------------------------------------------


def test_header_fields_are_limited_in_utf8_bytes_not_characters():
    V2.fastlane(Broadcast("t" * 255, "e" * 255, EFG))  # the maximum fits
    assert V2.encode(Message("é" * 127, "e", EFG))[1][2] == 254
    with pytest.raises(EncodeError, match="topic is 256 bytes"):
        V2.encode(Message("é" * 128, "e", EFG))


def test_none_refs_and_status_are_written_empty_as_phoenix_writes_nil():
    assert V2.encode(Reply("t", None, EFG)) == ("binary", bytes([1, 0, 0, 1, 0]) + b"t" + b"efg")
    assert V2.encode(Message("t", "e", EFG)) == ("binary", bytes([0, 0, 1, 1]) + b"te" + b"efg")


def test_header_fields_must_be_strings():
    with pytest.raises(EncodeError, match="topic must be a str"):
        V2.fastlane(Broadcast(None, "e", EFG))  # type: ignore[arg-type]
    with pytest.raises(EncodeError, match="Binary.data must be bytes"):
        V2.fastlane(Broadcast("t", "e", Binary("text")))  # type: ignore[arg-type]


def test_every_binary_kind_round_trips():
    data = bytes(range(256)) * 3
    push = Message("room:é", "ev😀", Binary(data), None, "12")
    assert _via(V2.client_decode, V2.encode(push)) == push
    reply = Reply("room:1", "ok", Binary(data), "123", "12")
    assert _via(V2.client_decode, V2.encode(reply)) == reply
    broadcast = Broadcast("room:1", "ev", Binary(data))
    assert _via(V2.client_decode, V2.fastlane(broadcast)) == broadcast
    client_push = Message("room:1", "ev", Binary(data), "123", "12")
    assert _via(V2.decode, V2.client_encode(client_push)) == client_push
    # Absent refs travel as empty strings (Phoenix's to_string(nil)).
    assert _via(V2.client_decode, V2.encode(Reply("t", "ok", Binary(b""), None, None))) == Reply("t", "ok", Binary(b""), "", "")
    assert _via(V2.decode, V2.client_encode(Message("t", "e", Binary(b"")))) == Message("t", "e", Binary(b""), "", "")


def test_binary_decode_accepts_bytearray_and_memoryview():
    assert V2.decode(bytearray(CLIENT_PUSH), "binary") == V2.decode(memoryview(CLIENT_PUSH), "binary")


@pytest.mark.parametrize(
    "frame, match",
    [
        (b"", "empty"),
        (REPLY, "kind 1 \\(reply\\) is sent by servers"),
        (BROADCAST, "kind 2 \\(broadcast\\) is sent by servers"),
        (bytes([3, 0, 0, 0, 0]), "unknown binary frame kind 3"),
        (bytes([255]), "unknown binary frame kind 255"),
        (bytes([0, 1, 1, 1]), "shorter than its 5-byte header"),
        (CLIENT_PUSH[:16], "truncated"),
        (bytes([0, 0, 0, 1, 1]) + b"\xffe", "topic is not valid UTF-8"),
        ("text, not bytes", "must be bytes"),
    ],
)
def test_bad_binary_frames_are_invalid_messages(frame, match):
    with pytest.raises(InvalidMessageError, match=match):
        V2.decode(frame, "binary")


def test_a_frame_ending_right_after_its_fields_has_an_empty_payload():
    frame = bytes([0, 0, 0, 1, 1]) + b"te"
    assert V2.decode(frame, "binary") == Message("t", "e", Binary(b""), "", "")


# --- V2 text decode --------------------------------------------------------------------


@pytest.mark.parametrize("payload", ['{"a":1}', "[1,2]", '"s"', "1.5", "null", "true", "{}"])
def test_v2_payload_may_be_any_json_value(payload):
    msg = V2.decode(f'["1","2","t","e",{payload}]', "text")
    assert msg.payload == json.loads(payload)


def test_v2_ignores_elements_after_the_payload_and_accepts_bytes():
    assert V2.decode('["1","2","t","e",{},"extra",3]', "text") == Message("t", "e", {}, "2", "1")
    assert V2.decode('[null,"2","t","é",{}]'.encode(), "text") == Message("t", "é", {}, "2", None)


@pytest.mark.parametrize(
    "text, match",
    [
        ('{"topic":"t"}', "JSON array"),
        ('"t"', "JSON array"),
        ('["1","2","t","e"]', "JSON array"),
        ("[]", "JSON array"),
        ('["1","2",1,"e",{}]', "topic must be a string"),
        ('["1","2",null,"e",{}]', "topic must be a string"),
        ('["1","2","t",["e"],{}]', "event must be a string"),
        ('["1",2,"t","e",{}]', "ref must be a string or null"),
        ('[1,"2","t","e",{}]', "join_ref must be a string or null"),
        ('[{"a":1},"2","t","e",{}]', "join_ref must be a string or null"),
    ],
)
def test_v2_text_frames_that_are_not_messages(text, match):
    with pytest.raises(InvalidMessageError, match=match):
        V2.decode(text, "text")


def test_v2_refuses_unknown_opcodes_and_non_utf8_text():
    with pytest.raises(InvalidMessageError, match="unknown opcode"):
        V2.decode(V2_MSG_JSON, "ping")
    with pytest.raises(InvalidMessageError, match="UTF-8"):
        V2.decode(b'["1","2","t","e",{"m":"\xff"}]', "text")
    with pytest.raises(InvalidMessageError, match="str or bytes"):
        V2.decode(None, "text")  # type: ignore[arg-type]


# --- V1 decode -------------------------------------------------------------------------


@pytest.mark.parametrize("missing", ["topic", "event", "payload", "ref"])
def test_v1_names_the_missing_key(missing):
    message = {"topic": "t", "event": "e", "payload": {}, "ref": "1"}
    del message[missing]
    with pytest.raises(InvalidMessageError, match=f"missing the key '{missing}'"):
        V1.decode(json.dumps(message), "text")


def test_v1_join_ref_is_optional_and_kept_when_sent():
    base = {"topic": "t", "event": "e", "payload": {"a": 1}, "ref": "1"}
    assert V1.decode(json.dumps(base), "text").join_ref is None
    assert V1.decode(json.dumps({**base, "join_ref": "9"}), "text") == Message("t", "e", {"a": 1}, "1", "9")


def test_v1_ignores_the_opcode():
    # Phoenix's V1 decode! never looks at the opcode: JSON in a binary frame is a message.
    for opcode in ("binary", "text", "anything"):
        assert V1.decode(V1_MSG_JSON.encode(), opcode) == Message("t", "e", "m")
        assert V1.decode(V1_MSG_JSON, opcode) == Message("t", "e", "m")


@pytest.mark.parametrize(
    "message, match",
    [
        ({"topic": 1, "event": "e", "payload": {}, "ref": "1"}, "topic must be a string"),
        ({"topic": "t", "event": None, "payload": {}, "ref": "1"}, "event must be a string"),
        ({"topic": "t", "event": "e", "payload": {}, "ref": 1}, "ref must be"),
        ({"topic": "t", "event": "e", "payload": {}, "ref": "1", "join_ref": 2}, "join_ref must be"),
    ],
)
def test_v1_field_types(message, match):
    with pytest.raises(InvalidMessageError, match=match):
        V1.decode(json.dumps(message), "text")


def test_v1_payload_may_be_any_json_value():
    text = '{"topic":"t","event":"e","payload":[1,"x",null],"ref":null}'
    assert V1.decode(text, "text").payload == [1, "x", None]


def test_v1_client_side_round_trip():
    msg = Message("t", "e", {"a": 1}, "2", "1")
    assert _via(V1.decode, V1.client_encode(msg)) == msg
    assert _via(V1.client_decode, V1.encode(Reply("t", "ok", {"x": 1}, "2", "1"))) == Reply("t", "ok", {"x": 1}, "2", None)
    assert _via(V1.client_decode, V1.fastlane(Broadcast("t", "e", {"x": 1}))) == Message("t", "e", {"x": 1}, None, None)


# --- strict JSON on the way in (as Jason) ----------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        "NaN",
        "Infinity",
        "-Infinity",
        "1e400",
        "-1e400",
        "01",
        "1.",
        ".5",
        "-",
        "+1",
        '"\x01"',
        '"tab\there"',
        '"\\ud800"',
        '"\\udc00\\ud800"',
        '"\\uD83D"',
        '{"\\ud800":1}',
        "[1,]",
        "{'a':1}",
        "tru",
    ],
)
def test_decode_rejects_what_jason_rejects(payload):
    for serializer, text in (
        (V2, f'["1","2","t","e",{payload}]'),
        (V1, f'{{"topic":"t","event":"e","ref":null,"payload":{payload}}}'),
    ):
        with pytest.raises(InvalidMessageError, match="not valid JSON"):
            serializer.decode(text, "text")


@pytest.mark.parametrize(
    "text",
    ["", " ", '["1","2","t","e",{}] x', '\ufeff["1","2","t","e",{}]', "[" * 100_000],
)
def test_decode_rejects_malformed_documents(text):
    for serializer in (V1, V2):
        with pytest.raises(InvalidMessageError, match="not valid JSON"):
            serializer.decode(text, "text")


def test_decode_accepts_escaped_surrogate_pairs_and_whitespace():
    msg = V2.decode(' \n[ "1" , "2" ,"t","e",{"m":"\\ud83d\\ude00\\u00e9\\/"}]\r\n\t', "text")
    assert msg.payload == {"m": "😀é/"}


def test_decode_json_keeps_big_integers_and_the_last_duplicate_key():
    assert decode_json('{"a":1,"a":123456789012345678901234567890}') == {"a": 123456789012345678901234567890}


# --- the singletons --------------------------------------------------------------------


def test_serializers_are_hashable_singletons():
    assert V1JSONSerializer() is V1 and V2JSONSerializer() is V2
    assert copy.copy(V1) is V1 and copy.deepcopy(V2) is V2
    assert pickle.loads(pickle.dumps(V1)) is V1 and pickle.loads(pickle.dumps(V2)) is V2
    cache = {V1: "v1", V2: "v2"}
    assert cache[V1JSONSerializer()] == "v1" and cache[V2JSONSerializer()] == "v2"
    assert isinstance(V1, Serializer) and isinstance(V2, Serializer)
    assert (V1.vsn, V2.vsn) == ("1.0.0", "2.0.0")


# --- properties ------------------------------------------------------------------------

_keys = st.text(max_size=8)
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)
)
_json_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_keys, inner, max_size=4),
    max_leaves=20,
)
_json_with_floats = st.recursive(
    _scalars | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_keys, inner, max_size=4),
    max_leaves=20,
)


def _jason(value) -> str:
    """A reference writer for Jason's output (no floats): sorted keys, Jason's escapes."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        out = []
        for char in value:
            code = ord(char)
            if char in '"\\':
                out.append("\\" + char)
            elif char in "\b\t\n\f\r":
                out.append({"\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}[char])
            elif code < 0x20:
                out.append(f"\\u{code:04X}")
            else:
                out.append(char)
        return '"' + "".join(out) + '"'
    if isinstance(value, list):
        return "[" + ",".join(_jason(v) for v in value) + "]"
    items = sorted(value.items(), key=lambda kv: kv[0].encode("utf-8"))
    return "{" + ",".join(f"{_jason(k)}:{_jason(v)}" for k, v in items) + "}"


@settings(max_examples=300, deadline=None)
@given(_json_values)
def test_encode_writes_exactly_what_jason_writes(value):
    assert encode_json(value) == _jason(value)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(_keys, _json_with_floats, max_size=5), st.text(max_size=5), st.one_of(st.none(), st.text(max_size=5)))
def test_json_frames_round_trip(payload, topic, ref):
    msg = Message(topic, "ev", payload, ref, ref)
    assert _via(V2.decode, V2.client_encode(msg)) == msg
    assert _via(V2.client_decode, V2.encode(msg)) == msg
    assert _via(V1.decode, V1.client_encode(msg)) == msg
    reply = Reply(topic, "ok", payload, ref, ref)
    assert _via(V2.client_decode, V2.encode(reply)) == reply
    # A JSON broadcast is a push with no refs on the wire ([null, null, topic, event, payload]).
    assert _via(V2.client_decode, V2.fastlane(Broadcast(topic, "ev", payload))) == Message(topic, "ev", payload, None, None)


@settings(max_examples=200, deadline=None)
@given(
    st.binary(max_size=300), st.text(min_size=1, max_size=80), st.text(min_size=1, max_size=20), st.text(min_size=1, max_size=20)
)
def test_binary_frames_round_trip(data, topic, event, ref):
    # V2's binary frames carry each field's length in one byte (an absent ref is an empty
    # one): anything that fits survives server -> client and client -> server.
    fits = all(len(x.encode()) < 256 for x in (topic, event, ref))
    push = Message(topic, event, Binary(data), None, ref)  # a server push carries no ref
    sent = Message(topic, event, Binary(data), ref, ref)
    broadcast = Broadcast(topic, event, Binary(data))
    if not fits:
        with pytest.raises(EncodeError):
            V2.encode(push)
        return
    assert _via(V2.client_decode, V2.encode(push)) == push
    assert _via(V2.decode, V2.client_encode(sent)) == sent
    assert _via(V2.client_decode, V2.fastlane(broadcast)) == broadcast


# --- fuzz: nothing but InvalidMessageError escapes decode ------------------------------

_opcodes = st.sampled_from(["text", "binary", "ping", ""])
_binary_frames = st.builds(
    lambda kind, sizes, body: bytes([kind, *sizes]) + body,
    st.integers(0, 4),
    st.lists(st.integers(0, 12), max_size=5),
    st.binary(max_size=40),
)
_json_frames = st.one_of(
    st.builds(json.dumps, st.lists(_json_values, max_size=7)),
    st.builds(
        json.dumps,
        st.dictionaries(st.sampled_from(["topic", "event", "payload", "ref", "join_ref", "x"]), _json_values, max_size=6),
    ),
    st.builds(json.dumps, _json_values),
)
_garbage = st.one_of(
    st.text(),
    st.text(alphabet=st.characters(blacklist_categories=())),  # raw surrogates too
    st.binary(),
    _binary_frames,
    _json_frames,
    _json_frames.map(lambda s: s.encode("utf-8", "surrogatepass")),
    st.builds(
        lambda s, i, junk: s[:i] + junk + s[i:],
        _json_frames,
        st.integers(0, 60),
        st.sampled_from(["\\ud800", "\x00", "NaN", "01", ",", "]", "\\u", '"', "1e999"]),
    ),
)


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_garbage, _opcodes)
def test_decode_raises_nothing_but_invalid_message_error(data, opcode):
    for decode in (V1.decode, V2.decode, V1.client_decode, V2.client_decode):
        try:
            result = decode(data, opcode)
        except InvalidMessageError:
            continue
        assert isinstance(result, (Message, Reply, Broadcast))
        if isinstance(result, (Message, Reply)):
            assert isinstance(result.topic, str)
            assert result.ref is None or isinstance(result.ref, str)
            assert result.join_ref is None or isinstance(result.join_ref, str)
