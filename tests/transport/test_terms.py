"""transport.terms against the real BEAM: Erlang's bytes decode here, ours decode there."""

from __future__ import annotations

import math
import zlib

import pytest
from erlang import erl_binary, erl_eval
from hypothesis import given, settings
from hypothesis import strategies as st

from transport.terms import (
    Atom,
    ImproperList,
    OpaqueTerm,
    TermDecodeError,
    TermEncodeError,
    binary_to_term,
    term_to_binary,
)

BROADCAST = {
    Atom("__struct__"): Atom("Elixir.Phoenix.Socket.Broadcast"),
    Atom("topic"): "room:lobby",
    Atom("event"): "new_msg",
    Atom("payload"): {"body": "héllo", "n": 1, "ok": True, "none": None, "list": [1, "a"]},
}

# (Erlang source, the Python value, whether our bytes equal term_to_binary's byte for byte)
GOLDEN = [
    ("ok", Atom("ok"), True),
    ("'Elixir.Phoenix.Socket.Broadcast'", Atom("Elixir.Phoenix.Socket.Broadcast"), True),
    ("'h\u00e9llo'", Atom("h\u00e9llo"), True),
    ("nil", None, True),
    ("true", True, True),
    ("false", False, True),
    ("undefined", Atom("undefined"), True),
    ("0", 0, True),
    ("255", 255, True),
    ("256", 256, True),
    ("-1", -1, True),
    ("2147483647", 2**31 - 1, True),
    ("2147483648", 2**31, True),
    ("-2147483648", -(2**31), True),
    ("-2147483649", -(2**31) - 1, True),
    ("1 bsl 64", 2**64, True),
    ("-(1 bsl 64)", -(2**64), True),
    ("1 bsl 2100", 2**2100, True),
    ("0.0", 0.0, True),
    ("-1.5", -1.5, True),
    ("1.0e300", 1.0e300, True),
    ("5.0e-324", 5.0e-324, True),
    ("<<>>", "", True),
    ('<<"h\u00e9llo w\u00f6rld"/utf8>>', "h\u00e9llo w\u00f6rld", True),
    ("<<255, 0, 1>>", b"\xff\x00\x01", True),
    ("[]", [], True),
    ("[1, 2, 3]", [1, 2, 3], True),
    ('"abc"', [97, 98, 99], True),
    ("[1, 256, -1]", [1, 256, -1], True),
    ('[<<"a">>, ok, [nil]]', ["a", Atom("ok"), [None]], True),
    ("lists:duplicate(70000, 1)", [1] * 70000, True),
    ("{}", (), True),
    ("{a}", (Atom("a"),), True),
    ("list_to_tuple(lists:seq(1, 300))", tuple(range(1, 301)), True),
    ("#{}", {}, True),
    (
        '#{<<"b">> => 1, a => 2, 1 => 3, {x} => 4, <<"a">> => 6, 2.5 => 7, nil => 8}',
        {"b": 1, Atom("a"): 2, 1: 3, (Atom("x"),): 4, "a": 6, 2.5: 7, None: 8},
        True,
    ),
    (
        "#{'__struct__' => 'Elixir.Phoenix.Socket.Broadcast', topic => <<\"room:lobby\">>, event => <<\"new_msg\">>,"
        ' payload => #{<<"body">> => <<"h\u00e9llo"/utf8>>, <<"n">> => 1, <<"ok">> => true,'
        ' <<"none">> => nil, <<"list">> => [1, <<"a">>]}}',
        BROADCAST,
        True,
    ),
    ("maps:from_list([{I, I} || I <- lists:seq(1, 40)])", {i: i for i in range(1, 41)}, False),
    ("[1 | 2]", ImproperList([1], 2), True),
    ('[a, b | <<"t">>]', ImproperList([Atom("a"), Atom("b")], "t"), True),
    ('{<<"user">>, 1733380000000, 86400}', ("user", 1733380000000, 86400), True),
    (
        "{3, except, 'node@host', <<\"t\">>, {binary, <<255, 1>>}, 'Elixir.Phoenix.Channel.Server'}",
        (3, Atom("except"), Atom("node@host"), "t", (Atom("binary"), b"\xff\x01"), Atom("Elixir.Phoenix.Channel.Server")),
        True,
    ),
]


@pytest.fixture(scope="module")
def golden():
    """One BEAM run: Erlang's bytes for every case, and whether it reads ours back as the same term."""
    exprs = []
    for source, value, _ in GOLDEN:
        exprs.append(f"term_to_binary({source}, [{{minor_version, 2}}])")
        exprs.append(f"binary_to_term({erl_binary(term_to_binary(value))}) =:= ({source})")
        exprs.append(f"binary_to_term({erl_binary(term_to_binary(value, compressed=9))}) =:= ({source})")
    results = erl_eval(exprs)
    return {GOLDEN[i][0]: results[3 * i : 3 * i + 3] for i in range(len(GOLDEN))}


@pytest.mark.parametrize("source,value,exact", GOLDEN, ids=[g[0][:40] for g in GOLDEN])
def test_golden_vectors(golden, source, value, exact):
    erlang_bytes, erlang_reads_ours, erlang_reads_ours_compressed = golden[source]
    assert binary_to_term(erlang_bytes) == value
    assert type(binary_to_term(erlang_bytes)) is type(value)
    assert erlang_reads_ours == "true"
    assert erlang_reads_ours_compressed == "true"
    if exact:
        assert term_to_binary(value) == erlang_bytes


def test_what_only_erlang_writes_decodes_here():
    legacy_atom, legacy_float, compressed, pid, ref, port, fun = erl_eval(
        [
            "term_to_binary(hello, [{minor_version, 1}])",  # OTP 25's default: ATOM_EXT (tag 100)
            "term_to_binary(1.5, [{minor_version, 0}])",  # FLOAT_EXT, a 31-byte text
            'term_to_binary(lists:duplicate(1000, <<"abc">>), [compressed])',
            "term_to_binary(self())",
            "term_to_binary(make_ref())",
            "term_to_binary(hd(erlang:ports()))",
            "term_to_binary(fun() -> ok end)",
        ]
    )
    assert legacy_atom[1] == 100 and binary_to_term(legacy_atom) == Atom("hello")
    assert legacy_float[1] == 99 and binary_to_term(legacy_float) == 1.5
    assert compressed[1] == 80 and binary_to_term(compressed) == ["abc"] * 1000
    for raw, kind in ((pid, "pid"), (ref, "reference"), (port, "port")):
        term = binary_to_term(raw)
        assert isinstance(term, OpaqueTerm) and term.kind == kind
        assert term.node == "nonode@nohost"
        assert term_to_binary(term) == raw
        assert term_to_binary((term, [term])) == b"\x83h\x02" + raw[1:] + b"l\x00\x00\x00\x01" + raw[1:] + b"j"
    with pytest.raises(TermDecodeError, match="executable"):
        binary_to_term(fun)


def test_binaries_as_bytes_keeps_every_binary_raw():
    data = term_to_binary({"k": ["v", b"\xff"]})
    assert binary_to_term(data) == {"k": ["v", b"\xff"]}
    assert binary_to_term(data, binaries="bytes") == {b"k": [b"v", b"\xff"]}
    with pytest.raises(ValueError):
        binary_to_term(data, binaries="text")  # type: ignore[arg-type]


def test_the_atoms_nil_true_and_false_are_none_true_and_false():
    for name, value in (("nil", None), ("true", True), ("false", False)):
        assert term_to_binary(Atom(name)) == term_to_binary(value)
        assert binary_to_term(term_to_binary(Atom(name))) is value


def test_atoms_are_never_equal_to_strings():
    assert Atom("ok") != "ok" and "ok" != Atom("ok")
    assert Atom("ok") == Atom("ok") and hash(Atom("ok")) == hash(Atom("ok"))
    assert {Atom("id"): 1, "id": 2} == {Atom("id"): 1, "id": 2}
    assert len({Atom("id"): 1, "id": 2}) == 2
    assert f"{Atom('ok')}" == "ok" and repr(Atom("ok")) == "Atom('ok')"


@pytest.mark.parametrize(
    "value",
    [{1, 2}, object(), float("nan"), float("inf"), Atom("x" * 256), {"k": {1}}],
    ids=["set", "object", "nan", "inf", "long-atom", "nested-set"],
)
def test_values_without_a_term_form_are_refused(value):
    with pytest.raises(TermEncodeError):
        term_to_binary(value)


def test_encoding_errors_are_type_errors_too():
    with pytest.raises(TypeError):
        term_to_binary(object())


def test_deep_nesting_is_refused_on_both_sides():
    nested: list = []
    for _ in range(5000):
        nested = [nested]
    with pytest.raises(TermEncodeError):
        term_to_binary(nested)
    hostile = b"\x83" + b"l\x00\x00\x00\x01" * 1000 + b"j" + b"j" * 1000
    with pytest.raises(TermDecodeError, match="max_depth"):
        binary_to_term(hostile)
    assert binary_to_term(b"\x83" + b"l\x00\x00\x00\x01" * 10 + b"j" + b"j" * 10, max_depth=10)


def test_every_truncation_is_a_decode_error():
    data = term_to_binary((BROADCAST, 2**80, 1.5, [1, 300], ImproperList([1], 2), b"\xff" * 3))
    for cut in range(len(data)):
        with pytest.raises(TermDecodeError):
            binary_to_term(data[:cut])


@pytest.mark.parametrize(
    "data,match",
    [
        (b"", "version"),
        (b"\x84a\x01", "version"),
        (b"\x83a\x01\x00", "after the term"),
        (b"\x83\xff", "unknown tag"),
        (b"\x83l\xff\xff\xff\xffj", "truncated"),  # a length no input could hold
        (b"\x83t\xff\xff\xff\xff", "truncated"),
        (b"\x83M\x00\x00\x00\x01\x03\xe0", "bitstrings"),
        (b"\x83w\x02\xff\xfe", "UTF-8"),
        (b"\x83t\x00\x00\x00\x01ja\x01", "hash"),  # a list as a map key
        (b"\x83t\x00\x00\x00\x02a\x01a\x01F?\xf0\x00\x00\x00\x00\x00\x00a\x02", "collide"),  # 1 and 1.0
        (b"\x83h\x01P\x00\x00\x00\x01", "compressed term may only"),
        (b"\x83R\x01", "distribution"),
    ],
)
def test_malformed_input_names_the_problem(data, match):
    with pytest.raises(TermDecodeError, match=match):
        binary_to_term(data)


def test_compressed_terms_are_bounded():
    plain = term_to_binary([b"a" * 1000] * 100)[1:]
    packed = zlib.compress(plain)
    good = b"\x83P" + len(plain).to_bytes(4, "big") + packed
    assert binary_to_term(good) == ["a" * 1000] * 100
    with pytest.raises(TermDecodeError, match="max_size"):
        binary_to_term(good, max_size=len(plain) - 1)
    lying = b"\x83P" + (len(plain) - 10).to_bytes(4, "big") + packed
    with pytest.raises(TermDecodeError, match="stated size"):
        binary_to_term(lying)
    with pytest.raises(TermDecodeError, match="corrupt"):
        binary_to_term(b"\x83P\x00\x00\x00\x05garbage")
    bomb = b"\x83P" + (2**32 - 1).to_bytes(4, "big") + zlib.compress(b"\x00" * 10_000_000)
    with pytest.raises(TermDecodeError, match="max_size"):
        binary_to_term(bomb)


def test_compression_is_kept_only_when_it_pays():
    small = term_to_binary("x", compressed=True)
    assert small == term_to_binary("x")
    big = term_to_binary("x" * 10_000, compressed=True)
    assert big[1] == 80 and len(big) < 200
    assert binary_to_term(big) == "x" * 10_000
    with pytest.raises(ValueError):
        term_to_binary("x", compressed=10)


def _not_special(name: str) -> bool:
    # The atoms nil, true and false decode to None, True and False: no round trip as Atoms.
    return name not in ("nil", "true", "false")


json_like = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
    | st.binary().filter(lambda b: not _utf8(b))
    | st.builds(Atom, st.text(max_size=20).filter(_not_special)),
    lambda children: (
        st.lists(children, max_size=5)
        | st.tuples(children, children)
        | st.dictionaries(
            st.text(max_size=8) | st.builds(Atom, st.text(max_size=8).filter(_not_special)) | st.integers(), children, max_size=5
        )
    ),
    max_leaves=30,
)


def _utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


@settings(max_examples=300, deadline=None)
@given(json_like)
def test_round_trip(value):
    decoded = binary_to_term(term_to_binary(value))
    assert decoded == value
    assert binary_to_term(term_to_binary(value, compressed=True)) == value
    if isinstance(value, float):
        assert math.copysign(1.0, decoded) == math.copysign(1.0, value)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=64))
def test_random_bytes_only_ever_raise_decode_errors(data):
    try:
        binary_to_term(b"\x83" + data)
    except TermDecodeError:
        pass
