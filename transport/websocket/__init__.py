"""WebSocket frames and handshake on gevent-websocket 0.10.1, with its defects fixed.

Serve it with pywsgi::

    from gevent.pywsgi import WSGIServer
    from transport.websocket import TIMEOUT, WebSocketHandler

    def app(environ, start_response):
        ws = environ["wsgi.websocket"]           # a transport.websocket.WebSocket
        while (message := ws.read_message(timeout=60)) is not None:
            if message is TIMEOUT:
                ws.close(1000, "idle")           # the reply ends the read loop
                continue
            ws.send_frame(*message)              # ('text', str) or ('binary', bytes)
        return []                                # ws.close_code: why it ended

    WSGIServer(("127.0.0.1", 4000), app, handler_class=WebSocketHandler).serve_forever()

Options, with their defaults: on :class:`WebSocketHandler` (per connection, may be set per
request by a subclass) ``ws_max_message_size=None``, ``ws_write_timeout=10.0``,
``ws_close_timeout=2.0``, ``websocket_class=WebSocket``, ``select_subprotocol(offered) ->
None``; on :class:`WebSocket` (constructor keywords and attributes) ``max_message_size=None``,
``write_timeout=10.0``, ``close_timeout=2.0``, ``yield_every=64``.

A reader greenlet in ``read_message`` and any number of senders may share a connection;
``close()`` never waits for the peer (the reader sees the reply and closes TCP), and
``ws.close(code); ws.wait_closed()`` is the full closing handshake when nobody else reads.
``try_send_frame`` is ``send_frame`` returning False instead of raising.

Layers: ``_frames`` is the pure RFC 6455 framing (:class:`FrameReader`: bytes in, events out;
:func:`encode_frame`), ``_handshake`` the pure handshake check, ``_connection`` drives them
from a gevent socket, ``_handler`` plugs into pywsgi.

Exceptions (none of them is an ``OSError``)::

    WebSocketError                 base of everything raised here
     +-- ConnectionClosed          send on a closing or closed connection
     +-- WriteTimeout              a send exceeded write_timeout; the connection was aborted
     +-- ProtocolError(code)       the peer broke RFC 6455 (1002 framing, 1007 UTF-8)
          +-- MessageTooBig        a message over max_message_size (1009)

``read_message`` never raises these: a protocol error closes the connection with its code
and ``read_message`` returns None, leaving the code in ``close_code``.

gevent-websocket 0.10.1's defects (shared/notes/measured-dependencies.md), as handled here:

1, 2, 4. Close frames carry the code packed as a big-endian uint16 plus UTF-8 reason; a
   peer's close is echoed with its code; protocol-error closes carry 1002/1007/1009.
3. ``close_code``/``close_reason``: the peer's code (1005 if its close frame had none), 1006
   if it vanished, or our code after a protocol error.
5. One frame per message, header and payload in one buffer and one ``sendall``, under a lock.
6. ``max_message_size`` is checked on the header, before the payload is read (1009); payload
   unmasked with one integer XOR (50 MiB in ~0.23 s); UTF-8 checked by the C codec,
   incrementally across fragments; fragments joined once, from a list.
7. ``Sec-WebSocket-Protocol`` parsed as a comma-separated list; ``select_subprotocol`` picks.
8. Bad handshakes answer 400/426 with bytes bodies (bad base64, key not 16 bytes, missing or
   unsupported version, HTTP/1.0); no traceback. Only version 13 is supported.
9. ``write_timeout`` bounds every send; ``read_message(timeout=...)`` gives the idle timeout.
10. Unmasked client frames fail the connection with 1002. Closing handshake: ``close()``
   sends our close frame and returns; the reader closes TCP on the peer's reply, or after
   ``close_timeout``. A peer's close is echoed and TCP closed at once. After a protocol
   error: close frame, half-close, input drained for at most ``close_timeout``, then close.
   Messages arriving after our close frame are dropped.
11. permessage-deflate is not implemented: an offer is ignored (no
   ``Sec-WebSocket-Extensions`` in the 101), so clients send uncompressed frames.
12. ``read_message`` yields to the hub every ``yield_every`` messages.
"""

from ._connection import TIMEOUT, WOULD_BLOCK, WebSocket, data_frame
from ._exceptions import (
    ConnectionClosed,
    MessageTooBig,
    ProtocolError,
    WebSocketError,
    WriteTimeout,
)
from ._frames import FrameReader, decode_close, encode_close, encode_frame, unmask
from ._handler import WebSocketHandler
from ._handshake import accept_key, check_request, parse_list

__all__ = [
    "TIMEOUT",
    "WOULD_BLOCK",
    "ConnectionClosed",
    "FrameReader",
    "MessageTooBig",
    "ProtocolError",
    "WebSocket",
    "WebSocketError",
    "WebSocketHandler",
    "WriteTimeout",
    "accept_key",
    "check_request",
    "decode_close",
    "encode_close",
    "data_frame",
    "encode_frame",
    "parse_list",
    "unmask",
]
