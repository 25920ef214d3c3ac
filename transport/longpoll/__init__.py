"""The LongPoll transport: Phoenix's long-polling fallback, at ``<mount>/longpoll``.

Put it in your tree: mount a socket with ``longpoll=True`` (or a dict of options) and
give the endpoint a ``secret_key_base``; ``Endpoint.child_specs`` then includes the
session supervisor::

    endpoint = Endpoint("MyApp.Endpoint", pubsub_server="MyApp.PubSub", secret_key_base=SECRET,
                        sockets=[("/socket", UserSocket, {"longpoll": {"window_ms": 10_000}})])
    app = Application([PubSub.child_spec(name="MyApp.PubSub"),
                       *endpoint.child_specs(server={"host": "127.0.0.1", "port": 4000})])

phoenix.js connects with ``new Socket("/socket", {transport: LongPoll})``, or falls back to
it by itself with ``longPollFallbackMs``. Options, wire and policies: docs/longpoll.md.

Pure core (``_core``): answers, bodies, the bounded buffer, token data. Processes: the
session (``_session``, one per client session, the socket's transport process) and the
HTTP handler (``_handler``, one process per request).
"""

from ._core import DEFAULTS, MAX_BATCH_LINES, BadRequest, MessageBuffer, parse_body, status_body
from ._core import options as longpoll_options
from ._handler import LongPollHandler, endpoint_id, supervisor_name
from ._session import run_session

__all__ = [
    "DEFAULTS",
    "MAX_BATCH_LINES",
    "BadRequest",
    "LongPollHandler",
    "MessageBuffer",
    "endpoint_id",
    "longpoll_options",
    "parse_body",
    "run_session",
    "status_body",
    "supervisor_name",
]
