"""transport.token: Phoenix.Token's bytes, checked against tokens minted by a real BEAM."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

import pytest
from erlang import erl_eval, erl_string

from transport import token
from transport.terms import Atom, term_to_binary

SECRET = "s" * 32 + "ecret key base of at least sixty-four bytes, as Phoenix wants"
SALT = "user socket"

# Erlang that mints a token exactly as Plug.Crypto.sign/4 does (PBKDF2 and HMAC from :crypto).
_MINT = """
B64 = fun(B) -> binary:replace(binary:replace(binary:replace(base64:encode(B), <<"+">>, <<"-">>, [global]),
                                              <<"/">>, <<"_">>, [global]), <<"=">>, <<>>, [global]) end,
Key = crypto:pbkdf2_hmac(sha256, {secret}, {salt}, 1000, 32),
Payload = term_to_binary({{{data}, {signed_ms}, {max_age}}}, [{{minor_version, 2}}]),
Plain = <<(B64({protected}))/binary, ".", (B64(Payload))/binary>>,
<<Plain/binary, ".", (B64(crypto:mac(hmac, {digest}, Key, Plain)))/binary>>
"""


def _mint(data: str, signed_ms: int, max_age: str = "86400", digest: str = "sha256", protected: str = "HS256") -> str:
    return _MINT.format(
        secret=erl_string(SECRET),
        salt=erl_string(SALT),
        data=data,
        signed_ms=signed_ms,
        max_age=max_age,
        digest=digest,
        protected=erl_string(protected),
    )


NOW_MS = int(time.time() * 1000)
CASES = [
    ("42", 42),
    ('<<"user:1">>', "user:1"),
    ('#{<<"id">> => 7, <<"roles">> => [<<"admin">>]}', {"id": 7, "roles": ["admin"]}),
    ('#{user_id => 7, name => <<"J\\x{e9}r\\x{f4}me"/utf8>>}', {Atom("user_id"): 7, Atom("name"): "J\u00e9r\u00f4me"}),
    ('{v1, <<"Demo.Endpoint">>, nil}', (Atom("v1"), "Demo.Endpoint", None)),
]


@pytest.fixture(scope="module")
def erlang_tokens():
    exprs = [_mint(src, NOW_MS) for src, _ in CASES]
    exprs.append(_mint('<<"hs512">>', NOW_MS, digest="sha512", protected="HS512"))
    exprs.append(_mint('<<"hs384">>', NOW_MS, digest="sha384", protected="HS384"))
    exprs.append(_mint('<<"forever">>', NOW_MS - 10**12, max_age="infinity"))
    return [t.decode() for t in erl_eval(exprs)]


@pytest.mark.parametrize("index", range(len(CASES)))
def test_tokens_are_byte_identical_to_the_beams(erlang_tokens, index):
    _, value = CASES[index]
    ours = token.sign(SECRET, SALT, value, signed_at=NOW_MS / 1000)
    assert ours == erlang_tokens[index]
    assert token.verify(SECRET, SALT, erlang_tokens[index]) == ("ok", value)


def test_hs384_and_hs512_tokens_verify(erlang_tokens):
    assert token.verify(SECRET, SALT, erlang_tokens[-3]) == ("ok", "hs512")
    assert token.verify(SECRET, SALT, erlang_tokens[-2]) == ("ok", "hs384")
    assert token.sign(SECRET, SALT, "hs512", signed_at=NOW_MS / 1000, digest="sha512") == erlang_tokens[-3]


def test_infinity_never_expires(erlang_tokens):
    assert token.verify(SECRET, SALT, erlang_tokens[-1]) == ("ok", "forever")
    assert token.verify(SECRET, SALT, erlang_tokens[-1], max_age=60) == ("error", "expired")
    ours = token.sign(SECRET, SALT, 1, signed_at=0, max_age="infinity")
    assert token.verify(SECRET, SALT, ours) == ("ok", 1)


def test_age_checks_follow_plug():
    old = token.sign(SECRET, SALT, 1, signed_at=time.time() - 100)
    assert token.verify(SECRET, SALT, old) == ("ok", 1)  # the signed max age: 86,400 s
    assert token.verify(SECRET, SALT, old, max_age=99) == ("error", "expired")
    assert token.verify(SECRET, SALT, old, max_age=101) == ("ok", 1)
    assert token.verify(SECRET, SALT, old, max_age="infinity") == ("ok", 1)
    fresh = token.sign(SECRET, SALT, 1)
    assert token.verify(SECRET, SALT, fresh, max_age=0) == ("error", "expired")
    assert token.verify(SECRET, SALT, fresh, max_age=-5) == ("error", "expired")
    short = token.sign(SECRET, SALT, 1, signed_at=time.time() - 10, max_age=5)
    assert token.verify(SECRET, SALT, short) == ("error", "expired")  # its own max age applies


def _sign_raw(payload: bytes) -> str:
    """An HS256 token over arbitrary payload bytes, computed here without transport's helpers."""
    key = hashlib.pbkdf2_hmac("sha256", SECRET.encode(), SALT.encode(), 1000, 32)
    plain = "SFMyNTY." + base64.urlsafe_b64encode(payload).rstrip(b"=").decode()
    sig = hmac.new(key, plain.encode(), "sha256").digest()
    return plain + "." + base64.urlsafe_b64encode(sig).rstrip(b"=").decode()


def test_legacy_payloads_verify():
    def legacy(payload: object) -> str:
        return _sign_raw(term_to_binary(payload))

    now = int(time.time() * 1000)
    assert token.verify(SECRET, SALT, legacy(("d", now))) == ("ok", "d")
    assert token.verify(SECRET, SALT, legacy({Atom("data"): "d", Atom("signed"): now})) == ("ok", "d")
    assert token.verify(SECRET, SALT, legacy(("d", now - 86_401_000))) == ("error", "expired")
    assert token.verify(SECRET, SALT, legacy(["not", "a", "token"])) == ("error", "invalid")
    assert token.verify(SECRET, SALT, legacy(("d", "not a time", 5))) == ("error", "invalid")


def test_forged_truncated_and_foreign_tokens_are_invalid():
    good = token.sign(SECRET, SALT, {"user": 1})
    head, payload, sig = good.split(".")
    forged_payload = base64.urlsafe_b64encode(term_to_binary(({"user": 2}, int(time.time() * 1000), 86400))).rstrip(b"=").decode()
    bad = [
        f"{head}.{forged_payload}.{sig}",  # someone else's data under our signature
        good[:-1],
        good[: len(good) // 2],
        good + "=",
        f"{head}.{payload}",
        f"{head}.{payload}.{sig}.extra",
        "",
        "...",
        "SFMyNTY.%%%.%%%",
        "bm9uZQ." + payload + "." + sig,  # alg "none"
        good.replace("SFMyNTY", "SFMzODQ", 1),  # claims HS384 with an HS256 signature
    ]
    for forged in bad:
        assert token.verify(SECRET, SALT, forged) == ("error", "invalid"), forged
    assert token.verify(SECRET, "another salt", good) == ("error", "invalid")
    assert token.verify(SECRET + "x", SALT, good) == ("error", "invalid")
    assert token.verify(SECRET, SALT, None) == ("error", "missing")
    assert token.verify(SECRET, SALT, 12345) == ("error", "invalid")  # type: ignore[arg-type]
    assert token.verify(SECRET, SALT, good.encode()) == ("ok", {"user": 1})


def test_a_signed_fun_or_junk_payload_is_invalid_not_a_crash():
    for payload in (b"\x83p\x00\x00\x00\x10", b"\x83", b"not a term", b"\x83P\xff\xff\xff\xffxx"):
        assert token.verify(SECRET, SALT, _sign_raw(payload)) == ("error", "invalid")


def test_context_is_a_secret_or_has_one():
    class Endpoint:
        secret_key_base = SECRET

    class Socket:
        endpoint = Endpoint()

    t = token.sign(Endpoint(), SALT, 5)
    assert token.verify(SECRET.encode(), SALT, t) == ("ok", 5)
    assert token.verify(Socket(), SALT, t) == ("ok", 5)
    with pytest.raises(ValueError, match="secret_key_base"):
        token.sign(object(), SALT, 5)
    with pytest.raises(ValueError, match="secret_key_base"):
        token.sign("", SALT, 5)


def test_bad_arguments_are_clear():
    with pytest.raises(TypeError, match="salt"):
        token.sign(SECRET, b"salt", 1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="cannot be signed"):
        token.sign(SECRET, SALT, {1, 2})
    with pytest.raises(TypeError, match="max_age"):
        token.sign(SECRET, SALT, 1, max_age="forever")
    with pytest.raises(ValueError, match="digest"):
        token.sign(SECRET, SALT, 1, digest="md5")
