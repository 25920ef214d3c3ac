"""The LongPoll wire without sockets: answers, bodies, the bounded buffer, token data, options."""

from __future__ import annotations

import base64
import json

import pytest

from transport.http import longpoll_options
from transport.longpoll import MAX_BATCH_LINES, BadRequest, MessageBuffer, parse_body, status_body
from transport.longpoll._core import cors_preflight_headers, new_priv_topic, session_token_data, token_session
from transport.terms import Atom


def test_status_only_answer():
    assert status_body(403) == b'{"status":403}'
    assert json.loads(status_body(410)) == {"status": 410}


def test_poll_answer_carries_token_and_messages_verbatim():
    frames = ['[null,null,"room:a","new_msg",{"body":"h\u00e9/"}]', '["1","1","room:a","phx_reply",{}]']
    doc = json.loads(status_body(200, "tok", frames))
    assert doc == {"status": 200, "token": "tok", "messages": frames}
    assert json.loads(status_body(204, "tok", [])) == {"status": 204, "token": "tok", "messages": []}


def test_preflight_allows_what_was_asked():
    h = dict(cors_preflight_headers("content-type"))
    assert h["access-control-allow-origin"] == "*"
    assert h["access-control-allow-headers"] == "content-type"
    assert h["access-control-allow-methods"] == "get, post, options"
    assert h["access-control-max-age"] == "3600"
    assert dict(cors_preflight_headers(None))["access-control-allow-headers"] == ""


def test_a_json_body_is_one_text_frame_whatever_the_content_type():
    body = b'["1","1","room:a","phx_join",{}]'
    for ctype in ("application/json", "", None, "text/plain; charset=utf-8"):
        assert parse_body(body, ctype) == [("text", body.decode())]


def test_ndjson_text_and_binary_lines():
    binary = bytes([0, 1, 1, 6, 4]) + b"11room:aping" + bytes(range(256))
    body = b'["1","2","room:a","x",{}]\r\n' + base64.b64encode(binary) + b"\n\n" + b'["1","3","room:a","y",{}]\n'
    frames = parse_body(body, "application/x-ndjson")
    assert frames == [("text", '["1","2","room:a","x",{}]'), ("binary", binary), ("text", '["1","3","room:a","y",{}]')]
    assert parse_body(b"", "application/x-ndjson") == []


def test_ndjson_line_limit_counts_frames_not_blank_lines():
    line = b'["1","2","room:a","x",{}]'
    assert len(parse_body(b"\n".join([line] * MAX_BATCH_LINES) + b"\n\n\n", "application/x-ndjson")) == MAX_BATCH_LINES
    with pytest.raises(BadRequest) as e:
        parse_body(b"\n".join([line] * (MAX_BATCH_LINES + 1)), "application/x-ndjson")
    assert e.value.status == 400


@pytest.mark.parametrize("line", [b"!!!", b"QUJD=x", b'{"v1":1}', b"QQ"])
def test_ndjson_lines_that_are_neither_json_arrays_nor_base64(line):
    with pytest.raises(BadRequest):
        parse_body(b'["1","2","t","e",{}]\n' + line, "application/x-ndjson")


def test_an_empty_body_is_not_a_message():
    with pytest.raises(BadRequest):
        parse_body(b"", "application/json")


def test_text_that_is_not_utf8_is_refused():
    with pytest.raises(BadRequest):
        parse_body(b'["\xff"]', "application/json")
    with pytest.raises(BadRequest):
        parse_body(b'["\xff"]', "application/x-ndjson")


def test_buffer_is_bounded_in_count_and_bytes():
    b = MessageBuffer(max_messages=3, max_bytes=10)
    assert b.append("abc") and b.append("def") and b.append("g")
    assert not b.append("h")  # count
    assert len(b) == 3 and b.size == 7
    assert b.take() == ["abc", "def", "g"] and not b and b.size == 0
    assert b.append("0123456789")
    assert not b.append("x")  # bytes
    assert b.statistics() == {
        "messages": 1,
        "bytes": 10,
        "max_messages": 3,
        "max_bytes": 10,
        "high_water": 10,
        "total_in": 4,
        "total_out": 3,
    }
    b.clear()
    assert len(b) == 0


def test_token_data_round_trip_and_refusals():
    data = session_token_data("eid", "<0.12.0>", "phx:lp:abc")
    assert data == (Atom("v1"), "eid", "<0.12.0>", "phx:lp:abc")
    assert token_session(data) == ("eid", "<0.12.0>", "phx:lp:abc")
    for bad in [
        ("v1", "eid", "p", "phx:lp:x"),
        (Atom("v2"), "e", "p", "phx:lp:x"),
        (Atom("v1"), "e", "p", "other"),
        (Atom("v1"), 1, "p", "phx:lp:x"),
        ["v1"],
        None,
    ]:
        assert token_session(bad) is None


def test_priv_topics_are_unique_and_prefixed():
    topics = {new_priv_topic() for _ in range(100)}
    assert len(topics) == 100 and all(t.startswith("phx:lp:") for t in topics)


def test_options_defaults_and_validation():
    opts = longpoll_options(True)
    assert (opts["window_ms"], opts["pubsub_timeout_ms"], opts["crypto"], opts["path"]) == (
        10_000,
        2_000,
        {"max_age": 1_209_600},
        "/longpoll",
    )
    assert (opts["max_buffer_messages"], opts["max_buffer_bytes"], opts["max_body_size"]) == (10_000, 8_000_000, 8_000_000)
    assert longpoll_options(False) is None
    assert longpoll_options({"check_origin": ["//example.com"]})["check_origin"] == [(None, "example.com", None)]
    for bad in (
        {"window": 1},
        {"window_ms": 0},
        {"crypto": {"max_age": -1}},
        {"crypto": {"salt": "x"}},
        {"path": "longpoll"},
        {"connect_info": ["nope"]},
        {"check_origin": 3},
    ):
        with pytest.raises((TypeError, ValueError)):
            longpoll_options(bad)
    with pytest.raises(TypeError):
        longpoll_options("yes")
