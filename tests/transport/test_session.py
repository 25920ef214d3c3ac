"""transport.session: Plug's signed cookie store and CSRF tokens, checked against a real BEAM."""

from __future__ import annotations

import pytest
from erlang import erl_eval, erl_string

from transport.http import connect_info_option
from transport.session import CookieSession, csrf_token, load_session, session_option, valid_csrf_token

SECRET = "abcdefgh" * 8
STORE = CookieSession(key="_hello_key", signing_salt="change_me")

_ERL_HELPERS = """
B64 = fun(B) -> binary:replace(binary:replace(binary:replace(base64:encode(B), <<"+">>, <<"-">>, [global]),
                                              <<"/">>, <<"_">>, [global]), <<"=">>, <<>>, [global]) end,
UnB64 = fun(T) -> base64:decode(binary:replace(binary:replace(T, <<"-">>, <<"+">>, [global]), <<"_">>, <<"/">>, [global])) end,
Xor = fun(A, B) -> crypto:exor(A, B) end,
"""


def _erl_cookie(session_src: str) -> str:
    # Plug.Session.COOKIE.put/4 with the default serializer: MessageVerifier.sign of the term.
    return (
        _ERL_HELPERS
        + f"""
Key = crypto:pbkdf2_hmac(sha256, {erl_string(SECRET)}, <<"change_me">>, 1000, 32),
Plain = <<(B64(<<"HS256">>))/binary, ".", (B64(term_to_binary({session_src}, [{{minor_version, 2}}])))/binary>>,
<<Plain/binary, ".", (B64(crypto:mac(hmac, sha256, Key, Plain)))/binary>>
"""
    )


def test_cookies_are_byte_identical_to_plugs():
    session = {"from_session": "123", "_csrf_token": "A" * 24, "user_id": 7}
    [erl_cookie] = erl_eval(
        [
            _erl_cookie(
                '#{<<"from_session">> => <<"123">>, <<"_csrf_token">> => <<"AAAAAAAAAAAAAAAAAAAAAAAA">>, <<"user_id">> => 7}'
            )
        ]
    )
    assert STORE.dump(session, SECRET) == erl_cookie.decode()
    assert STORE.load(erl_cookie.decode(), SECRET) == session


def test_csrf_tokens_interoperate_with_plugs_masking():
    state, mask = "B" * 24, "0123456789abcdefghijklmn"
    our_session = {"_csrf_token": "C" * 24}
    ours = csrf_token(our_session)
    plug_token, plug_accepts_ours = erl_eval(
        [
            # Plug.CSRFProtection.mask/1 for a fixed mask
            _ERL_HELPERS + f"<<(B64(Xor({erl_string(state)}, {erl_string(mask)})))/binary, {erl_string(mask)}/binary>>",
            # valid_state_and_csrf_token?/2 on a token minted here
            _ERL_HELPERS + f"<<U:32/binary, M:24/binary>> = {erl_string(ours)}, Xor(UnB64(U), M) =:= {erl_string('C' * 24)}",
        ]
    )
    assert valid_csrf_token(state, plug_token.decode())
    assert plug_accepts_ours == "true"


def test_csrf_token_creates_state_once_and_masks_anew_each_time():
    session: dict = {}
    first = csrf_token(session)
    state = session["_csrf_token"]
    second = csrf_token(session)
    assert session["_csrf_token"] == state and len(state) == 24
    assert first != second and len(first) == 56
    assert valid_csrf_token(state, first) and valid_csrf_token(state, second)
    assert not valid_csrf_token(csrf_token_state_of_another_session(), first)


def csrf_token_state_of_another_session() -> str:
    other: dict = {}
    csrf_token(other)
    return other["_csrf_token"]


@pytest.mark.parametrize(
    "state,token",
    [
        (None, "x" * 56),
        ("A" * 24, None),
        ("A" * 23, "x" * 56),
        ("A" * 24, "x" * 55),
        ("A" * 24, "!" * 32 + "A" * 24),
        ("\u00e9" * 24, "A" * 56),
        (123, "A" * 56),
    ],
)
def test_malformed_csrf_input_is_simply_invalid(state, token):
    assert valid_csrf_token(state, token) is False


def _environ(cookie: str | None = None, query: str = "") -> dict:
    env = {"QUERY_STRING": query}
    if cookie is not None:
        env["HTTP_COOKIE"] = cookie
    return env


def test_from_environ_needs_cookie_signature_and_csrf():
    session = {"user_id": 7}
    token = csrf_token(session)
    cookie = f"_hello_key={STORE.dump(session, SECRET)}"
    assert STORE.from_environ(_environ(cookie, f"_csrf_token={token}&vsn=2.0.0"), SECRET) == session
    # another app's malformed cookie on the same domain does not hide ours
    assert STORE.from_environ(_environ(f'bad="cookie; {cookie}', f"_csrf_token={token}"), SECRET) == session
    assert STORE.from_environ(_environ(None, f"_csrf_token={token}"), SECRET) is None
    assert STORE.from_environ(_environ(cookie, ""), SECRET) is None
    assert STORE.from_environ(_environ(cookie, "_csrf_token=bad"), SECRET) is None
    assert STORE.from_environ(_environ(cookie, f"_csrf_token={token}"), "x" * 64) is None
    assert STORE.from_environ(_environ(cookie + "x", f"_csrf_token={token}"), SECRET) is None
    relaxed = CookieSession("_hello_key", "change_me", check_csrf=False)
    assert relaxed.from_environ(_environ(cookie), SECRET) == session
    other_salt = CookieSession("_hello_key", "other")
    assert other_salt.from_environ(_environ(cookie, f"_csrf_token={token}"), SECRET) is None


def test_a_cookie_that_is_not_a_map_or_not_a_term_is_no_session():
    from transport._crypto import derive_key, message_sign

    key = derive_key(SECRET.encode(), "change_me")
    assert STORE.load(message_sign(b"\x83k\x00\x01a", key), SECRET) is None  # a list
    assert STORE.load(message_sign(b"junk", key), SECRET) is None


def test_set_cookie_has_plugs_defaults():
    name, value = STORE.set_cookie({"a": 1}, SECRET)
    assert name == "Set-Cookie"
    assert value.startswith("_hello_key=SFMyNTY.") and value.endswith("; path=/; HttpOnly; SameSite=Lax")
    _, secure = STORE.set_cookie({}, SECRET, secure=True, max_age=60, same_site=None)
    assert "; max-age=60; secure; HttpOnly" in secure and "SameSite" not in secure


def test_session_options_as_phoenix_writes_them():
    store = session_option({"store": "cookie", "key": "_k", "signing_salt": "s", "same_site": "Lax"})
    assert isinstance(store, CookieSession) and store.key == "_k"
    loader = lambda environ: {"from": "flask"}  # noqa: E731
    assert session_option(loader) is loader
    assert session_option(STORE) is STORE
    with pytest.raises(ValueError, match="not built in"):
        session_option({"store": "ets", "key": "_k", "signing_salt": "s"})
    with pytest.raises(TypeError, match="signing_salt"):
        session_option({"key": "_k"})
    with pytest.raises(NotImplementedError, match="encrypted"):
        session_option({"key": "_k", "signing_salt": "s", "encryption_salt": "e"})
    with pytest.raises(TypeError, match="CookieSession"):
        session_option(42)
    checked = connect_info_option(["uri", ("session", {"key": "_k", "signing_salt": "s"}), ("extra", 1)])
    assert checked[0] == "uri" and isinstance(checked[1][1], CookieSession) and checked[2] == ("extra", 1)
    with pytest.raises(ValueError, match="connect_info entries"):
        connect_info_option(["peer"])


def test_load_session_checks_what_it_is_given():
    class NoSecret:
        secret_key_base = None

    class WithSecret:
        secret_key_base = SECRET

    with pytest.raises(ValueError, match="secret_key_base"):
        load_session(STORE, _environ("_hello_key=x"), NoSecret())
    assert load_session(STORE, _environ(), WithSecret()) is None
    assert load_session(lambda env: {"q": env["QUERY_STRING"]}, _environ(query="a=1"), None) == {"q": "a=1"}
    with pytest.raises(TypeError, match="loader returns"):
        load_session(lambda env: "user", _environ(), None)
