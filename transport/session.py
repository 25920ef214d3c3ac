"""The cookie session in ``connect_info``, as Phoenix's ``connect_info: [session: opts]``.

A socket that authenticates with the page's session asks for it in its mount options::

    SESSION = CookieSession(key="_my_app_key", signing_salt="aBcD1234")

    endpoint = Endpoint("MyApp.Endpoint", pubsub_server="MyApp.PubSub", secret_key_base=SECRET,
                        sockets=[("/live", UserSocket, {"websocket": {"connect_info": [("session", SESSION)]}})])

    class UserSocket(SocketHandler):
        def connect(self, params, socket, connect_info):
            session = connect_info["session"]          # a dict, or None
            if session is None:
                return "error"
            return ("ok", assign(socket, user_id=session["user_id"]))

``connect`` gets the session only when the request carries the session cookie, its
signature holds for the endpoint's ``secret_key_base``, and the ``_csrf_token`` query
parameter is a valid CSRF token for that session; otherwise ``None``. As in Phoenix, this
keeps another site's page from opening a socket with a visitor's cookie.

:class:`CookieSession` reads and writes the bytes of Plug's signed cookie store
(``Plug.Session.COOKIE`` with the default ``:external_term_format`` serializer), so a
Phoenix app's session cookie is read here, and a cookie written here is read by Phoenix,
given the same ``secret_key_base``, cookie ``key`` and ``signing_salt``. The masked CSRF
tokens are Plug.CSRFProtection's. A Python page hands them out the way a Phoenix page
does::

    session = {"user_id": 7}
    token = csrf_token(session)                       # stores the CSRF state in the session
    headers.append(SESSION.set_cookie(session, SECRET))   # ("Set-Cookie", "...")
    # render <meta name="csrf-token" content="{token}">; the page's JS connects with
    # new Socket("/live", {params: {_csrf_token: token}})

Any other framework's session: give a loader instead of a :class:`CookieSession`,
``("session", loader)``, where ``loader(environ) -> dict | None`` gets the WSGI environ of
the connect request (cookies in ``HTTP_COOKIE``, the query in ``QUERY_STRING``). A loader
checks the CSRF token itself. For Flask::

    def flask_session(environ):
        cookie = SimpleCookie(environ.get("HTTP_COOKIE", "")).get(app.config["SESSION_COOKIE_NAME"])
        serializer = app.session_interface.get_signing_serializer(app)
        try:
            session = serializer.loads(cookie.value, max_age=3600) if cookie else None
        except itsdangerous.BadSignature:
            return None
        query = dict(parse_qsl(environ.get("QUERY_STRING", "")))
        flask_wtf.csrf.validate_csrf(query.get("_csrf_token"))   # raises when invalid
        return session

Not supported: encrypted cookies (``encryption_salt``), which need AES-GCM; a session
configured with one is refused when the mount is built.
"""

from __future__ import annotations

import base64
import hmac
import secrets
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

from ._crypto import b64url, derive_key, message_sign, message_verify, unb64url
from .terms import TermDecodeError, TermEncodeError, binary_to_term, term_to_binary
from .token import secret_key_base_of

__all__ = ["CookieSession", "SessionLoader", "csrf_token", "load_session", "session_option", "valid_csrf_token"]

#: ``loader(environ) -> dict | None``: reads a session from the connect request.
SessionLoader = Callable[[dict], "dict | None"]

CSRF_SESSION_KEY = "_csrf_token"
_TOKEN_BYTES = 18  # Plug's @token_size
_STATE_SIZE = 24  # base64 of 18 bytes
_MASKED_SIZE = 32  # base64 of the 24 masked bytes


class CookieSession:
    """Plug's signed cookie session store (``Plug.Session.COOKIE``).

    ``key`` is the cookie's name and ``signing_salt`` the salt of its key, as in the
    Phoenix endpoint's ``@session_options``; ``key_iterations``, ``key_length`` and
    ``key_digest`` as Plug's ``key_opts`` (defaults 1000, 32, ``"sha256"``);
    ``csrf_token_key`` is the session key of the CSRF state (``"_csrf_token"``);
    ``check_csrf=False`` gives ``connect`` the session without a CSRF token (Phoenix's
    ``check_csrf: false``; only for sockets that cannot be opened cross-site).
    """

    def __init__(
        self,
        key: str,
        signing_salt: str,
        *,
        csrf_token_key: str = CSRF_SESSION_KEY,
        check_csrf: bool = True,
        key_iterations: int = 1000,
        key_length: int = 32,
        key_digest: str = "sha256",
        encryption_salt: str | None = None,
    ) -> None:
        if not isinstance(key, str) or not key:
            raise TypeError(f"the session cookie's key must be a non-empty str, got {key!r}")
        if not isinstance(signing_salt, str) or not signing_salt:
            raise TypeError("the cookie store expects a signing_salt (a non-empty str)")
        if encryption_salt is not None:
            raise NotImplementedError("encrypted cookie sessions (encryption_salt) are not supported; use a signed one")
        self.key = key
        self.signing_salt = signing_salt
        self.csrf_token_key = csrf_token_key
        self.check_csrf = check_csrf
        self._key_opts = (key_iterations, key_length, key_digest)

    def __repr__(self) -> str:
        return f"CookieSession(key={self.key!r})"

    def _signing_key(self, secret_key_base: Any) -> bytes:
        return derive_key(secret_key_base_of(secret_key_base), self.signing_salt, *self._key_opts)

    def dump(self, session: dict, secret_key_base: Any) -> str:
        """The cookie value holding ``session`` (what Plug writes)."""
        if not isinstance(session, dict):
            raise TypeError(f"a session is a dict, got {type(session).__name__}")
        try:
            payload = term_to_binary(session)
        except TermEncodeError as e:
            raise TypeError(f"the session cannot be stored in a cookie: {e}") from None
        return message_sign(payload, self._signing_key(secret_key_base))

    def load(self, cookie_value: str, secret_key_base: Any) -> dict | None:
        """The session in a cookie value, or None when it is forged, foreign or garbled."""
        payload = message_verify(cookie_value, self._signing_key(secret_key_base))
        if payload is None:
            return None
        try:
            session = binary_to_term(payload)
        except TermDecodeError:
            return None
        return session if isinstance(session, dict) else None

    def set_cookie(
        self,
        session: dict,
        secret_key_base: Any,
        *,
        path: str = "/",
        same_site: str | None = "Lax",
        secure: bool = False,
        http_only: bool = True,
        max_age: int | None = None,
    ) -> tuple[str, str]:
        """A ``("Set-Cookie", ...)`` header storing ``session``, with Plug's defaults."""
        parts = [f"{self.key}={self.dump(session, secret_key_base)}", f"path={path}"]
        if max_age is not None:
            parts.append(f"max-age={int(max_age)}")
        if secure:
            parts.append("secure")
        if http_only:
            parts.append("HttpOnly")
        if same_site:
            parts.append(f"SameSite={same_site}")
        return ("Set-Cookie", "; ".join(parts))

    def from_environ(self, environ: dict, secret_key_base: Any) -> dict | None:
        """What ``connect_info["session"]`` holds for this request (see the module docs)."""
        cookie = _cookie(environ, self.key)
        if cookie is None:
            return None
        session = self.load(cookie, secret_key_base)
        if session is None:
            return None
        if self.check_csrf:
            params = dict(parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True))
            if not valid_csrf_token(session.get(self.csrf_token_key), params.get("_csrf_token")):
                return None
        return session


def _cookie(environ: dict, name: str) -> str | None:
    # Split as Plug.Conn.Cookies does rather than with http.cookies, which drops every
    # cookie after one it cannot parse (another app's cookie on the domain would hide ours).
    for part in environ.get("HTTP_COOKIE", "").split(";"):
        key, sep, value = part.strip().partition("=")
        if sep and key == name:
            return value
    return None


def csrf_token(session: dict, *, key: str = CSRF_SESSION_KEY) -> str:
    """A fresh masked CSRF token for ``session`` (Plug.CSRFProtection.get_csrf_token/0).

    Stores the session's CSRF state under ``key`` first if it has none: write the session
    (e.g. :meth:`CookieSession.set_cookie`) after calling this. Each call masks the state
    anew, so tokens differ while all stay valid for the session.
    """
    # Plug pads (Base.url_encode64/1), but 18 and 24 bytes never need padding.
    state = session.get(key)
    if not (isinstance(state, str) and len(state) == _STATE_SIZE):
        state = b64url(secrets.token_bytes(_TOKEN_BYTES))
        session[key] = state
    mask = b64url(secrets.token_bytes(_TOKEN_BYTES))
    masked = bytes(a ^ b for a, b in zip(state.encode("ascii"), mask.encode("ascii")))
    return b64url(masked) + mask


def valid_csrf_token(state: Any, token: Any) -> bool:
    """Whether ``token`` (from the client) is a masked CSRF token for the session state
    ``state`` (Plug.CSRFProtection.valid_state_and_csrf_token?/2). Constant-time."""
    if not (isinstance(state, str) and len(state) == _STATE_SIZE and state.isascii()):
        return False
    if not (isinstance(token, str) and len(token) == _MASKED_SIZE + _STATE_SIZE and token.isascii()):
        return False
    user_token, mask = token[:_MASKED_SIZE], token[_MASKED_SIZE:]
    try:
        unmasked = unb64url(user_token, padding=True)
    except ValueError:
        try:  # tokens from Plug versions that used the standard alphabet
            unmasked = base64.b64decode(user_token, validate=True)
        except ValueError:
            return False
    if len(unmasked) != _STATE_SIZE:
        return False
    expected = bytes(a ^ b for a, b in zip(unmasked, mask.encode("ascii")))
    return hmac.compare_digest(expected, state.encode("ascii"))


def session_option(value: Any) -> CookieSession | SessionLoader:
    """Normalise a ``("session", value)`` connect_info entry: a :class:`CookieSession`, a
    dict of its options (Phoenix's keyword list: ``key``, ``signing_salt``, ...; ``store``
    may be ``"cookie"``), or a loader callable."""
    if isinstance(value, CookieSession) or (callable(value) and not isinstance(value, type)):
        return value
    if isinstance(value, dict):
        opts = dict(value)
        store = opts.pop("store", "cookie")
        if store not in ("cookie", "COOKIE"):
            raise ValueError(f"session store {store!r} is not built in; give a loader(environ) -> dict | None instead")
        for plug_only in ("same_site", "secure", "http_only", "max_age", "path", "domain", "extra", "log", "serializer"):
            opts.pop(plug_only, None)  # cookie attributes: they do not change how it is read
        try:
            return CookieSession(**opts)
        except TypeError as e:
            raise TypeError(f"connect_info session: {e}") from None
    raise TypeError(f"connect_info ('session', ...) takes a CookieSession, its options as a dict, or a loader; got {value!r:.60}")


def load_session(option: CookieSession | SessionLoader, environ: dict, endpoint: Any) -> dict | None:
    """The session ``connect`` sees for this request under ``option``."""
    if isinstance(option, CookieSession):
        if getattr(endpoint, "secret_key_base", None) is None:
            raise ValueError(f"{endpoint!r} has no secret_key_base: a cookie session cannot be read without one")
        return option.from_environ(environ, endpoint)
    session = option(environ)
    if session is not None and not isinstance(session, dict):
        raise TypeError(f"a session loader returns a dict or None, got {type(session).__name__}")
    return session
