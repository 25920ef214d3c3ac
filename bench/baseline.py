#!/usr/bin/env python3
"""The process-less baseline of the socket benchmark (``bench/run``): same frames, no actors.

    python bench/baseline.py --port 0   # prints "listening on http://127.0.0.1:PORT"

The best server we know how to write directly on gevent + gevent-websocket + ujson for the
operations ``bench/app.py`` serves, speaking the same Phoenix V2 frames
(``[join_ref, ref, topic, event, payload]``) at the same URL (``/socket/websocket``):

* one greenlet per connection (pywsgi's), reading frames in a loop and answering inline;
* ``phx_join`` on ``bench:*`` puts the connection in ``TOPICS[topic]`` (a set) and replies
  ok; ``phx_leave`` takes it out, replies ok and sends ``phx_close`` (as Phoenix does);
  ``heartbeat`` on ``phoenix`` replies ok; ``ping`` replies ok with its payload;
* ``broadcast`` encodes ``[null,null,topic,"msg",payload]`` once and writes it to every
  connection of the topic from the broadcasting greenlet, then replies ok;
* a connection silent for 120 s is closed (1000), as the app's socket timeout.

No processes, mailboxes, supervision, channel pools, PubSub, telemetry or logging. What it
shares with greenphx on purpose: the WebSocket frame layer. It serves with greenphx's
``transport.websocket.WebSocketHandler``/``WebSocket`` (gevent-websocket 0.10.1 with its
defects fixed: one ``sendall`` per frame under a lock, a write timeout per send,
incremental UTF-8 checks), exactly what ``transport.http.PhoenixHandler`` builds on. So the
two servers run the same handshake and frame code, and the difference measured is the
process/channel/PubSub layer alone. Frames are decoded with ``ujson.loads`` and encoded with
``ujson.dumps`` (no Jason-compatibility checks, no key sorting).
"""

from gevent import monkey

monkey.patch_all()  # first, as bench/app.py and bin/phx-serve

import argparse  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import gevent  # noqa: E402
import gevent.event  # noqa: E402
import ujson  # noqa: E402
from gevent.pywsgi import WSGIServer  # noqa: E402

from transport.websocket import TIMEOUT, WebSocketError, WebSocketHandler  # noqa: E402

__all__ = ["TOPICS", "app", "main"]

PATH = "/socket/websocket"
IDLE_TIMEOUT = 120.0  # seconds, as the app's socket (timeout=120_000 ms)

#: topic -> set of WebSocket objects joined to it.
TOPICS: dict[str, set] = {}

_loads = ujson.loads
_dumps = ujson.dumps


class _Handler(WebSocketHandler):
    def log_request(self) -> None:  # no access log
        pass


def _reply(ws, join_ref, ref, topic, status, response) -> None:
    ws.send_frame("text", _dumps([join_ref, ref, topic, "phx_reply", {"response": response, "status": status}]))


def serve(ws) -> None:
    """One connection: read frames, answer them, until it ends."""
    joined: dict[str, str | None] = {}  # topic -> join_ref
    send = ws.send_frame
    read = ws.read_message
    topics = TOPICS
    try:
        while True:
            msg = read(IDLE_TIMEOUT)
            if msg is None:
                return
            if msg is TIMEOUT:
                ws.close(1000, "timeout")
                continue
            try:
                join_ref, ref, topic, event, payload = _loads(msg[1])[:5]
            except (ValueError, TypeError):
                ws.close(1011, "invalid message")
                continue
            if event == "ping":
                send("text", _dumps([join_ref, ref, topic, "phx_reply", {"response": payload, "status": "ok"}]))
            elif event == "broadcast":
                subs = topics.get(topic)
                if subs:
                    frame = _dumps([None, None, topic, "msg", payload]).encode()
                    for sub in list(subs):
                        try:
                            sub.send_frame("text", frame)
                        except WebSocketError:
                            subs.discard(sub)
                _reply(ws, join_ref, ref, topic, "ok", {})
            elif event == "heartbeat" and topic == "phoenix":
                _reply(ws, None, ref, topic, "ok", {})
            elif event == "phx_join":
                if not (isinstance(topic, str) and topic.startswith("bench:")):
                    _reply(ws, join_ref, ref, topic, "error", {"reason": "unmatched topic"})
                    continue
                topics.setdefault(topic, set()).add(ws)
                joined[topic] = join_ref
                _reply(ws, join_ref, ref, topic, "ok", {})
            elif event == "phx_leave":
                if topic in joined:
                    _leave(ws, topic)
                    del joined[topic]
                    _reply(ws, join_ref, ref, topic, "ok", {})
                    send("text", _dumps([join_ref, join_ref, topic, "phx_close", {}]))
                else:
                    _reply(ws, join_ref, ref, topic, "error", {"reason": "unmatched topic"})
            else:
                _reply(ws, join_ref, ref, topic, "error", {"reason": "unmatched topic"})
    except WebSocketError:
        return
    finally:
        for topic in joined:
            _leave(ws, topic)


def _leave(ws, topic: str) -> None:
    subs = TOPICS.get(topic)
    if subs is not None:
        subs.discard(ws)
        if not subs:
            del TOPICS[topic]


def app(environ, start_response):
    ws = environ.get("wsgi.websocket")
    if ws is None or environ.get("PATH_INFO") != PATH:
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"Not Found"]
    environ.clear()  # the connection lives on; the request's environ need not (as greenphx)
    serve(ws)
    return []


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="process-less Phoenix V2 baseline server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4000)
    args = parser.parse_args(argv)
    # The listen backlog of transport.http.HttpServer (Ranch's default), not gevent's 128.
    server = WSGIServer((args.host, args.port), app, handler_class=_Handler, log=None, error_log=None, backlog=1024)
    server.start()
    host, port = server.address[:2]
    print(f"listening on http://{host}:{port}", flush=True)
    stop = gevent.event.Event()
    gevent.signal_handler(signal.SIGTERM, stop.set)
    gevent.signal_handler(signal.SIGINT, stop.set)
    stop.wait()
    server.stop(timeout=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
