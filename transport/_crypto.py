"""Plug.Crypto's KeyGenerator and MessageVerifier: the primitives under tokens and sessions.

Shared by :mod:`transport.token` (Phoenix.Token) and :mod:`transport.session` (Plug's
signed cookie store), which differ only in what they sign.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac

__all__ = ["b64url", "derive_key", "message_sign", "message_verify", "unb64url"]

_PROTECTED = {"sha256": "HS256", "sha384": "HS384", "sha512": "HS512"}
_DIGEST_OF = {v: k for k, v in _PROTECTED.items()}
DIGESTS = tuple(_PROTECTED)


@functools.lru_cache(maxsize=256)
def derive_key(secret_key_base: bytes, salt: str, iterations: int = 1000, length: int = 32, digest: str = "sha256") -> bytes:
    """Plug.Crypto.KeyGenerator: PBKDF2-HMAC of the secret with the salt, cached as Plug caches."""
    return hashlib.pbkdf2_hmac(digest, secret_key_base, salt.encode("utf-8"), iterations, length)


def b64url(data: bytes) -> str:
    """Base64url without padding (Elixir's ``Base.url_encode64(padding: false)``)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64url(text: str, *, padding: bool = False) -> bytes:
    """The inverse of :func:`b64url`; raises ValueError for characters outside the alphabet,
    and for padding unless ``padding`` (Elixir refuses what ``padding: false`` did not write)."""
    if not padding:
        if "=" in text:
            raise ValueError("padded")
        text += "=" * (-len(text) % 4)
    return base64.b64decode(text, altchars=b"-_", validate=True)


def message_sign(message: bytes, key: bytes, digest: str = "sha256") -> str:
    """MessageVerifier.sign: ``b64(alg) "." b64(message) "." b64(HMAC(key, those two))``."""
    if digest not in _PROTECTED:
        raise ValueError(f"digest must be one of {sorted(_PROTECTED)}, got {digest!r}")
    plain = b64url(_PROTECTED[digest].encode("ascii")) + "." + b64url(message)
    return plain + "." + b64url(hmac.new(key, plain.encode("ascii"), digest).digest())


def message_verify(signed: str, key: bytes) -> bytes | None:
    """MessageVerifier.verify: the message if the signature holds (HS256/384/512), else None.

    The comparison is constant-time."""
    parts = signed.split(".", 2)
    if len(parts) != 3:
        return None
    try:
        protected = unb64url(parts[0]).decode("ascii")
        message = unb64url(parts[1])
        signature = unb64url(parts[2])
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None
    digest = _DIGEST_OF.get(protected)
    if digest is None:
        return None
    challenge = hmac.new(key, (parts[0] + "." + parts[1]).encode("ascii"), digest).digest()
    return message if hmac.compare_digest(challenge, signature) else None
