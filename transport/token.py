"""Phoenix.Token: sign data for a client, verify it when it comes back.

The same bytes as Phoenix (``Phoenix.Token`` over ``Plug.Crypto.MessageVerifier``), so a
token minted by a Phoenix app with the same ``secret_key_base`` verifies here, and one
minted here verifies in Phoenix::

    from transport import token

    t = token.sign(endpoint, "user socket", user_id)          # in a page or an API answer
    token.verify(endpoint, "user socket", t, max_age=86400)   # in connect: ('ok', user_id)

``context`` is the endpoint's ``secret_key_base`` (``str`` or ``bytes``), or anything with
a ``secret_key_base`` attribute (an :class:`~transport.Endpoint`, a
:class:`~transport.Socket` through its endpoint). The salt names the purpose, so a token
minted for one purpose does not verify for another.

What a token is: the key is PBKDF2-HMAC-SHA256(secret_key_base, salt, 1000 iterations,
32 bytes), cached per (secret, salt) as Plug does; the payload is the external term of
``(data, signed_at_ms, max_age_s)`` (:mod:`transport.terms`); the token is
``"SFMyNTY." + b64url(payload) + "." + b64url(HMAC-SHA256(key, "SFMyNTY." +
b64url(payload)))`` without padding. ``SFMyNTY`` is ``HS256``; verification also accepts
HS384 and HS512 tokens, and the legacy payloads ``(data, signed_at_ms)`` and
``%{data: ..., signed: ...}`` that older Plug and Phoenix versions wrote (max age
86,400 s). The token is signed, not encrypted: anyone holding it can read ``data``.

Options of :func:`sign`: ``signed_at`` (seconds since the epoch; default now),
``max_age`` (seconds, default 86,400, or ``"infinity"``: the age stored in the token,
which :func:`verify` uses unless it is given one), ``key_iterations=1000``,
``key_length=32``, ``key_digest="sha256"``, ``digest="sha256"`` (the HMAC: sha256, sha384
or sha512). :func:`verify` takes ``max_age`` (default: the one in the token) and the
three ``key_*`` options, and answers ``('ok', data)``, ``('error', 'expired')``,
``('error', 'invalid')`` or ``('error', 'missing')`` (the token is ``None``).
"""

from __future__ import annotations

import time
from typing import Any, Literal

from ._crypto import DIGESTS, derive_key, message_sign, message_verify
from .terms import Atom, TermDecodeError, TermEncodeError, binary_to_term, term_to_binary

__all__ = ["MaxAge", "VerifyResult", "secret_key_base_of", "sign", "verify"]

#: Seconds, or ``"infinity"`` for a token that never expires.
MaxAge = int | float | Literal["infinity"]
#: ``('ok', data)`` or ``('error', 'expired' | 'invalid' | 'missing')``.
VerifyResult = tuple[str, Any]

DEFAULT_MAX_AGE = 86_400
_INFINITY = ("infinity", Atom("infinity"))


def secret_key_base_of(context: Any) -> bytes:
    """The secret key base of a context: itself if it is one, else its attribute."""
    secret = context
    if not isinstance(secret, (str, bytes, bytearray)):
        secret = getattr(context, "secret_key_base", None)
        if secret is None and getattr(context, "endpoint", None) is not None:
            secret = getattr(context.endpoint, "secret_key_base", None)
    if isinstance(secret, str):
        secret = secret.encode("utf-8")
    if not isinstance(secret, (bytes, bytearray)) or not secret:
        raise ValueError(f"no secret_key_base in {context!r:.80} (give an Endpoint with one, or the secret itself)")
    return bytes(secret)


def sign(
    context: Any,
    salt: str,
    data: Any,
    *,
    signed_at: float | None = None,
    max_age: MaxAge = DEFAULT_MAX_AGE,
    key_iterations: int = 1000,
    key_length: int = 32,
    key_digest: str = "sha256",
    digest: str = "sha256",
) -> str:
    """A token holding ``data`` (any value :mod:`transport.terms` encodes) for ``salt``."""
    if not isinstance(salt, str):
        raise TypeError(f"salt must be a str, got {salt!r:.40}")
    if digest not in DIGESTS:
        raise ValueError(f"digest must be one of {sorted(DIGESTS)}, got {digest!r}")
    signed_ms = int(time.time() * 1000) if signed_at is None else int(signed_at * 1000)
    age: Any = max_age
    if max_age in _INFINITY:
        age = Atom("infinity")
    elif isinstance(max_age, bool) or not isinstance(max_age, (int, float)):
        raise TypeError(f"max_age must be seconds or 'infinity', got {max_age!r}")
    try:
        payload = term_to_binary((data, signed_ms, age))
    except TermEncodeError as e:
        raise TypeError(f"the token's data cannot be signed: {e}") from None
    key = derive_key(secret_key_base_of(context), salt, key_iterations, key_length, key_digest)
    return message_sign(payload, key, digest)


def verify(
    context: Any,
    salt: str,
    token: str | None,
    *,
    max_age: MaxAge | None = None,
    key_iterations: int = 1000,
    key_length: int = 32,
    key_digest: str = "sha256",
) -> VerifyResult:
    """``('ok', data)`` when ``token`` was signed for ``salt`` with this secret and is not
    older than ``max_age`` seconds (default: the max age signed into it); otherwise
    ``('error', 'expired' | 'invalid' | 'missing')``."""
    if token is None:
        return ("error", "missing")
    if isinstance(token, bytes):
        try:
            token = token.decode("ascii")
        except UnicodeDecodeError:
            return ("error", "invalid")
    if not isinstance(token, str):
        return ("error", "invalid")
    payload = message_verify(token, derive_key(secret_key_base_of(context), salt, key_iterations, key_length, key_digest))
    if payload is None:
        return ("error", "invalid")
    try:
        message = binary_to_term(payload)
    except TermDecodeError:
        return ("error", "invalid")
    shape = _shape(message)
    if shape is None:
        return ("error", "invalid")
    data, signed_ms, signed_max_age = shape
    if _expired(signed_ms, signed_max_age if max_age is None else max_age):
        return ("error", "expired")
    return ("ok", data)


def _shape(message: Any) -> tuple[Any, int, Any] | None:
    if isinstance(message, tuple) and len(message) == 3:
        data, signed, age = message
    elif isinstance(message, tuple) and len(message) == 2:  # Plug.Crypto 1.1
        (data, signed), age = message, DEFAULT_MAX_AGE
    elif isinstance(message, dict) and set(message) == {Atom("data"), Atom("signed")}:  # Phoenix < 1.4
        data, signed, age = message[Atom("data")], message[Atom("signed")], DEFAULT_MAX_AGE
    else:
        return None
    if not isinstance(signed, int) or isinstance(signed, bool):
        return None
    return data, signed, age


def _expired(signed_ms: int, max_age: Any) -> bool:
    if max_age in _INFINITY:
        return False
    if isinstance(max_age, bool) or not isinstance(max_age, (int, float)):
        return True  # an age we cannot read is not a promise we can keep
    if max_age <= 0:
        return True
    return signed_ms + int(max_age * 1000) < int(time.time() * 1000)
