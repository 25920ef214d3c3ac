"""``phx-serve client URL --join TOPIC``: a Phoenix-aware ``wsta`` for poking at sockets.

Prints every message as one JSON line on stdout (``{"topic", "event", "payload", "ref",
"join_ref"}``; a binary payload as ``{"binary": BASE64}``), reads ``event payload`` lines
from stdin and pushes them to the joined topic (``topic event payload`` when more than one
is joined; the payload is JSON, ``{}`` when left out), printing each reply as a
``phx_reply`` line. Heartbeats, reconnects and rejoins happen underneath. At the end of
stdin it waits for the outstanding replies, leaves and exits 0. A refused connection or
join prints one line on stderr and exits 1.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import threading
from concurrent.futures import Future
from typing import Any

from .._message import Message
from ._blocking import Socket
from ._errors import ClientError, ConnectError, JoinError, JoinTimeout, PushError, PushTimeout

__all__ = ["main"]

EXIT_FAILURE = 1
EXIT_USAGE = 2


def _jsonable(payload: Any) -> Any:
    if isinstance(payload, (bytes, bytearray)):
        return {"binary": base64.b64encode(payload).decode("ascii")}
    return payload


class _Printer:
    def __init__(self) -> None:
        self._lock = threading.Lock()

    def line(self, value: dict) -> None:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
        with self._lock:
            sys.stdout.write(text + "\n")
            sys.stdout.flush()

    def message(self, msg: Message) -> None:
        self.line(
            {"topic": msg.topic, "event": msg.event, "payload": _jsonable(msg.payload), "ref": msg.ref, "join_ref": msg.join_ref}
        )

    def note(self, text: str) -> None:
        with self._lock:
            print(f"phx-serve client: {text}", file=sys.stderr, flush=True)


def _params(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"phx-serve client: --param takes KEY=VALUE, got {pair!r}")
        out[key] = value
    return out


def main(argv: list[str]) -> int:
    """The ``phx-serve client`` command."""
    parser = argparse.ArgumentParser(
        prog="phx-serve client",
        description="Connect to a Phoenix socket, join topics, print every message as a JSON line, "
        "push 'event payload' lines read from stdin.",
    )
    parser.add_argument("url", help="the socket's mount, e.g. ws://127.0.0.1:4000/socket")
    parser.add_argument("--join", action="append", default=[], metavar="TOPIC", help="a topic to join (repeatable)")
    parser.add_argument("--payload", default="{}", metavar="JSON", help="the join payload (default {})")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="a connect param (repeatable)")
    parser.add_argument("--vsn", default="2.0.0", choices=["1.0.0", "2.0.0"], help="serializer (default 2.0.0)")
    parser.add_argument("--transport", default="websocket", choices=["websocket", "longpoll"], help="default websocket")
    parser.add_argument(
        "--longpoll-fallback",
        type=float,
        metavar="SECONDS",
        help="fall back to LongPoll when the WebSocket fails (off by default)",
    )
    parser.add_argument("--origin", help="the Origin header to send (none by default)")
    parser.add_argument("--auth-token", help="a token sent in Sec-WebSocket-Protocol, as phoenix.js's authToken")
    parser.add_argument("--timeout", type=float, default=10.0, help="push/join timeout in seconds (default 10)")
    parser.add_argument("--heartbeat", type=float, default=30.0, help="heartbeat interval in seconds (default 30)")
    args = parser.parse_args(argv)
    try:
        join_payload = json.loads(args.payload)
    except ValueError as exc:
        parser.error(f"--payload is not JSON: {exc}")
    out = _Printer()
    try:
        socket = Socket(
            args.url,
            params=_params(args.param),
            vsn=args.vsn,
            transport=args.transport,
            longpoll_fallback=args.longpoll_fallback,
            origin=args.origin,
            auth_token=args.auth_token,
            timeout=args.timeout,
            heartbeat_interval=args.heartbeat,
        )
    except ValueError as exc:
        parser.error(str(exc))
    socket.on_message(out.message)
    stopping = threading.Event()

    def on_close(code: int | None, reason: str) -> None:
        if not stopping.is_set():
            out.note(f"connection closed ({code} {reason}); reconnecting")

    socket.on_close(on_close)
    try:
        socket.connect()
    except ConnectError as exc:
        out.note(f"cannot connect to {args.url}: {exc}")
        return EXIT_FAILURE
    out.note(f"connected to {args.url} ({socket.transport}, vsn {args.vsn})")
    channels = {}
    try:
        for topic in args.join:
            channel = socket.channel(topic, join_payload)

            def on_join(response: Any, rejoin: bool, topic: str = topic) -> None:
                if rejoin:
                    out.note(f"rejoined {topic}")

            channel.on_join(on_join)
            try:
                response = channel.join()
            except JoinError as exc:
                out.note(f"the server refused to join {topic}: {json.dumps(exc.response)}")
                return EXIT_FAILURE
            except JoinTimeout as exc:
                out.note(f"no answer to the join of {topic}: {exc}")
                return EXIT_FAILURE
            out.note(f"joined {topic}: {json.dumps(response)}")

            def on_error(reason: Any, topic: str = topic) -> None:
                out.note(f"{topic} errored ({reason}); rejoining")

            channel.on_error(on_error)
            channels[topic] = channel
        pending = []
        for raw in sys.stdin:
            line = raw.strip()
            if not line:
                continue
            try:
                topic, event, payload = _parse_line(line, list(channels))
            except ValueError as exc:
                out.note(str(exc))
                continue
            try:
                future = channels[topic].push_nowait(event, payload, args.timeout)
            except (ClientError, TypeError, ValueError) as exc:
                out.note(f"cannot push {event}: {exc}")
                continue

            def print_reply(f: Future[Any], topic: str = topic, event: str = event) -> None:
                _print_reply(out, topic, event, f)

            future.add_done_callback(print_reply)
            pending.append(future)
        for future in pending:
            try:
                future.result()
            except (PushError, PushTimeout):
                pass
        for channel in channels.values():
            channel.leave()
        return 0
    except KeyboardInterrupt:
        return 130
    finally:
        stopping.set()
        socket.disconnect()


def _parse_line(line: str, topics: list[str]) -> tuple[str, str, Any]:
    words = line.split(None, 1)
    if len(topics) == 1 and words[0] != topics[0]:
        topic = topics[0]
    else:
        topic = words[0]
        if topic not in topics:
            raise ValueError(
                f"not a joined topic: {topic!r} (joined: {', '.join(topics) or 'none'}); lines are 'topic event payload'"
            )
        words = words[1].split(None, 1) if len(words) > 1 else []
        if not words:
            raise ValueError(f"no event after the topic in {line!r}")
    event = words[0]
    text = words[1] if len(words) > 1 else "{}"
    try:
        payload = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"the payload of {event!r} is not JSON: {exc}") from None
    return topic, event, payload


def _print_reply(out: _Printer, topic: str, event: str, future: Any) -> None:
    exc = future.exception()
    if exc is None:
        status, response = "ok", future.result()
    elif isinstance(exc, PushTimeout):
        status, response = "timeout", None
    elif isinstance(exc, PushError):
        status, response = exc.status, exc.response
    else:
        status, response = "error", str(exc)
    out.line(
        {"topic": topic, "event": "phx_reply", "payload": {"status": status, "response": _jsonable(response)}, "push": event}
    )


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main(sys.argv[1:]))
