"""A small Phoenix channel client over a real WebSocket, speaking V1 or V2 JSON frames.

    client = PhxClient(f"{base}/ws/websocket", "2.0.0")
    jr = client.join("room:lobby")
    msg = client.receive(lambda m: m.ref == jr)          # a selective receive, like assert_receive
    assert msg == Msg(jr, jr, "room:lobby", "phx_reply", {"status": "ok", "response": {}})

Frames are read into a mailbox: :meth:`next` takes the oldest one (strict order),
:meth:`receive` the oldest one matching a predicate, leaving the others for later.
Every wait is bounded by a timeout. :func:`handshake` does an upgrade with
``http.client`` and returns the HTTP status and body, for refusal codes.

Each client numbers its refs from "1", as Phoenix's test client does; a join's ref is also
its join_ref. V1 frames carry ``join_ref`` on the way in (as phoenix.js >= 1.3 sends it)
but never on the way out, so a V1 message's ``join_ref`` is always None.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import inspect
import itertools
import json
import os
import time
from collections.abc import Callable
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

__all__ = ["Closed", "Msg", "PhxClient", "error", "handshake", "ok"]


class Msg(NamedTuple):
    join_ref: str | None
    ref: str | None
    topic: str
    event: str
    payload: Any


class Closed(AssertionError):
    """The server closed the connection while a frame was expected."""


def ok(response: Any = None) -> dict:
    return {"status": "ok", "response": {} if response is None else response}


def error(response: Any) -> dict:
    return {"status": "error", "response": response}


class PhxClient:
    """One WebSocket connection to a mounted socket; ``vsn`` picks the frame format."""

    def __init__(
        self,
        url: str,
        vsn: str,
        params: dict | None = None,
        headers: dict | list | None = None,
        user_agent: str | None = "greenphx-e2e",
        timeout: float = 2.0,
    ) -> None:
        self.vsn = vsn
        self.v2 = vsn.startswith("2")
        self.timeout = timeout
        query = "&".join(f"{k}={v}" for k, v in {"vsn": vsn, **(params or {})}.items())
        self.url = f"{url}?{query}"
        options: dict[str, Any] = {
            "additional_headers": headers,
            "user_agent_header": user_agent,
            "compression": None,
            "open_timeout": timeout,
            "close_timeout": 1,
            # From websockets 15 on: no keepalive pings (they must not keep an idle socket
            # alive), and no *_PROXY from the environment for a loopback server.
            "ping_interval": None,
            "proxy": None,
        }
        known = inspect.signature(connect).parameters
        options = {k: v for k, v in options.items() if k in known}
        # As a context manager: a bare connect() is deprecated from websockets 17 on.
        self._stack = contextlib.ExitStack()
        self.ws = self._stack.enter_context(connect(self.url, **options))
        self.close_code: int | None = None  # the server's close code, once it closed
        self._refs = itertools.count(1)
        self.join_refs: dict[str, str] = {}
        self.mailbox: list[Msg] = []
        self.history: list[Msg] = []  # every frame received, in order

    # -- sending ------------------------------------------------------------------------------

    def send(self, topic: str, event: str, payload: Any = None, join_ref: str | None = None, ref: str | None = None) -> str:
        """Send one message; ``join_ref`` defaults to the topic's last join. Returns its ref."""
        ref = ref if ref is not None else str(next(self._refs))
        join_ref = join_ref if join_ref is not None else self.join_refs.get(topic)
        payload = {} if payload is None else payload
        if self.v2:
            frame = [join_ref, ref, topic, event, payload]
        else:
            frame = {"topic": topic, "event": event, "payload": payload, "ref": ref}
            if join_ref is not None:
                frame["join_ref"] = join_ref
        self.ws.send(json.dumps(frame))
        return ref

    def join(self, topic: str, payload: Any = None) -> str:
        """Send phx_join; its ref is its join_ref. Returns it."""
        ref = str(next(self._refs))
        self.join_refs[topic] = ref
        self.send(topic, "phx_join", payload, join_ref=ref, ref=ref)
        return ref

    def leave(self, topic: str) -> str:
        return self.send(topic, "phx_leave")

    def heartbeat(self) -> str:
        return self.send("phoenix", "heartbeat", join_ref=None)

    def close(self) -> None:
        self._stack.close()

    # -- receiving ----------------------------------------------------------------------------

    def jr(self, join_ref: str | None) -> str | None:
        """The join_ref as the server puts it on the wire for this protocol version."""
        return join_ref if self.v2 else None

    def _decode(self, data: Any) -> Msg:
        if not isinstance(data, str):
            raise AssertionError(f"expected a text frame, got {data!r}")
        value = json.loads(data)
        if self.v2:
            if not (isinstance(value, list) and len(value) == 5):
                raise AssertionError(f"not a V2 message: {data}")
            return Msg(*value)
        if not isinstance(value, dict) or set(value) - {"topic", "event", "payload", "ref"}:
            raise AssertionError(f"not a V1 message (a V1 server frame has no join_ref): {data}")
        return Msg(None, value["ref"], value["topic"], value["event"], value["payload"])

    def _read(self, deadline: float) -> Msg:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        try:
            data = self.ws.recv(timeout=remaining)
        except ConnectionClosed as e:
            self.close_code = e.rcvd.code if e.rcvd is not None else None
            raise Closed(f"connection closed ({self.close_code or 'no close frame'}) while waiting") from None
        msg = self._decode(data)
        self.history.append(msg)
        return msg

    def next(self, timeout: float | None = None) -> Msg:
        """The oldest frame not yet taken."""
        if self.mailbox:
            return self.mailbox.pop(0)
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        try:
            return self._read(deadline)
        except TimeoutError:
            raise AssertionError(f"no frame within {timeout or self.timeout}s") from None

    def receive(self, match: Callable[[Msg], bool], timeout: float | None = None) -> Msg:
        """The oldest frame for which ``match`` is true; other frames stay in the mailbox."""
        for i, msg in enumerate(self.mailbox):
            if match(msg):
                return self.mailbox.pop(i)
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        while True:
            try:
                msg = self._read(deadline)
            except TimeoutError:
                raise AssertionError(f"no matching frame within {timeout or self.timeout}s; mailbox: {self.mailbox}") from None
            if match(msg):
                return msg
            self.mailbox.append(msg)

    def reply_to(self, ref: str, timeout: float | None = None) -> Msg:
        """The phx_reply to the message sent with ``ref``."""
        return self.receive(lambda m: m.event == "phx_reply" and m.ref == ref, timeout)

    def event(self, event: str, topic: str | None = None, timeout: float | None = None) -> Msg:
        """The next message with this event (and topic, if given)."""
        return self.receive(lambda m: m.event == event and (topic is None or m.topic == topic), timeout)

    def refute(self, match: Callable[[Msg], bool]) -> None:
        """Assert that no frame received so far matches (mailbox and history)."""
        seen = [m for m in self.history if match(m)]
        assert not seen, f"unexpected frame(s): {seen}"

    def wait_closed(self, timeout: float | None = None) -> int | None:
        """Wait (bounded) until the server closes the connection; the close code it sent.

        Frames arriving before the close go to the mailbox.
        """
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        while True:
            try:
                self.mailbox.append(self._read(deadline))
            except Closed:
                return self.close_code
            except TimeoutError:
                raise AssertionError(f"connection still open after {timeout or self.timeout}s") from None


def handshake(url: str, headers: dict | None = None, timeout: float = 2.0) -> tuple[int, bytes]:
    """Attempt a WebSocket upgrade with plain ``http.client``: (status, body)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        conn.request(
            "GET",
            target,
            headers={
                "Connection": "Upgrade",
                "Upgrade": "websocket",
                "Sec-WebSocket-Version": "13",
                "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
                **(headers or {}),
            },
        )
        response = conn.getresponse()
        body = b"" if response.status == 101 else response.read()
        return response.status, body
    finally:
        conn.close()
