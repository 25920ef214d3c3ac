"""The header-block parser behind the HTTP handler (``transport.websocket._head``), without
sockets: what pywsgi asks of it (case-insensitive first-value lookups, ``del``, ``status``),
the limits it shares with ``http.client``, and the malformed lines it refuses."""

from __future__ import annotations

import http.client
import io

import pytest

from transport.websocket._head import MAX_HEADERS, MAX_LINE, Headers, TooManyHeaders, read_headers


def parse(block: bytes) -> Headers:
    return read_headers(io.BytesIO(block))


def test_fields_in_order_lookups_in_any_case_first_value_of_a_repeat():
    h = parse(b"Host: example.com\r\nX-Tag: one\r\nx-tag: two\r\nContent-Type: text/plain\r\n\r\nbody")
    assert h.fields() == [("Host", "example.com"), ("X-Tag", "one"), ("x-tag", "two"), ("Content-Type", "text/plain")]
    assert h.get("HOST") == "example.com" and h.getheader("host") == "example.com"
    assert h.get("X-TAG") == "one"  # email.message.Message.get gives the first
    assert h.get("missing") is None and h.get("missing", "") == ""
    assert h.typeheader == "text/plain"
    assert "x-tag" in h and "nope" not in h
    assert h.status == ""
    assert list(h.headers) == ["Host: example.com\r\n", "X-Tag: one\r\n", "x-tag: two\r\n", "Content-Type: text/plain\r\n"]


def test_the_stream_is_left_at_the_body():
    stream = io.BytesIO(b"A: 1\r\n\r\nrest of it")
    read_headers(stream)
    assert stream.read() == b"rest of it"


def test_values_lose_surrounding_whitespace_and_bare_newlines_end_lines():
    h = parse(b"A:  padded \t\nB:\n\n")
    assert h.get("a") == "padded" and h.get("b") == ""


def test_del_removes_every_field_of_that_name_and_a_missing_one_is_no_error():
    h = parse(b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\ncontent-length: 6\r\n\r\n")
    del h["CONTENT-LENGTH"]
    assert h.get("content-length") is None
    assert h.fields() == [("Transfer-Encoding", "chunked")]
    del h["content-length"]


def test_an_obsolete_folded_line_joins_the_previous_value_with_a_space():
    h = parse(b"X-Long: first\r\n   second\r\n\tthird\r\nNext: n\r\n\r\n")
    assert h.get("x-long") == "first second third" and h.get("next") == "n"


def test_latin1_bytes_come_through_as_pywsgi_decodes_them():
    assert parse(b"X-Name: caf\xe9\r\n\r\n").get("x-name") == "caf\u00e9"


@pytest.mark.parametrize(
    "line",
    [
        b"Host : example.com",  # whitespace between name and colon (RFC 9112 5.1: a 400)
        b"no colon at all",
        b": empty name",
        b"Bad(Name): x",
        b" leading fold with nothing before it",
        b"\r",  # a bare CR before the CRLF: no field, and not the end of the block
    ],
)
def test_malformed_field_lines_are_value_errors(line):
    with pytest.raises(ValueError, match="invalid header line"):
        parse(line + b"\r\n\r\n")


def test_more_than_the_limit_of_headers_is_the_431_error():
    ok = b"".join(b"X-%d: v\r\n" % i for i in range(MAX_HEADERS)) + b"\r\n"
    assert len(parse(ok)) == MAX_HEADERS
    too_many = b"".join(b"X-%d: v\r\n" % i for i in range(MAX_HEADERS + 1)) + b"\r\n"
    with pytest.raises(TooManyHeaders, match="headers") as caught:
        parse(too_many)
    assert isinstance(caught.value, http.client.HTTPException)


def test_folded_lines_count_towards_the_limit():
    folded = b"X-Long: start\r\n" + b" more\r\n" * MAX_HEADERS + b"\r\n"
    with pytest.raises(TooManyHeaders):
        parse(folded)


def test_a_line_over_the_limit_sets_status_and_keeps_nothing():
    h = parse(b"A: 1\r\nX-Big: " + b"a" * MAX_LINE + b"\r\n\r\n")
    assert h.status == "Line too long" and len(h) == 0


def test_the_end_of_the_stream_ends_the_block():
    assert parse(b"A: 1\r\n").fields() == [("A", "1")]
