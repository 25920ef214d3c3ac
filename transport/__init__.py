"""transport: Phoenix's sockets, channels and PubSub on greenphx's processes.

Put it in your tree::

    from supervision import Application
    from transport import Endpoint
    from transport.pubsub import PubSub

    endpoint = Endpoint("MyApp.Endpoint", pubsub_server="MyApp.PubSub", sockets=[("/socket", UserSocket)])
    app = Application([PubSub.child_spec(name="MyApp.PubSub"), *endpoint.child_specs()])

Write sockets by subclassing :class:`SocketHandler` and channels by subclassing
:class:`Channel`; push, broadcast and reply from a channel with the functions below.
``transport.testing.SocketClient`` drives a socket in-process (frames in, frames out).
"""

from . import _telemetry as telemetry
from . import pubsub
from ._channel import (
    Channel,
    ChannelServer,
    broadcast,
    broadcast_from,
    broadcast_from_or_raise,
    broadcast_or_raise,
    dispatch,
    push,
    reply,
    socket_ref,
)
from ._drainer import Drainer
from ._endpoint import Endpoint
from ._logger import install as _install_logger
from ._message import Binary, Broadcast, InvalidMessageError, Message, Reply
from ._socket import Socket, SocketConnection, SocketHandler, connect
from ._transport import close_code, serve, serve_stream
from ._types import ConnectResult, HandleInfoResult, HandleInResult, HandleOutResult, JoinResult, ReplyStatus
from .pubsub import BroadcastError, PubSub, PubSubError, UnknownPubSubError
from .serializers import DEFAULT_SERIALIZERS, V1, V2, EncodeError, Serializer, negotiate

_install_logger()

__all__ = [
    "DEFAULT_SERIALIZERS",
    "Binary",
    "Broadcast",
    "BroadcastError",
    "Channel",
    "ChannelServer",
    "ConnectResult",
    "Drainer",
    "EncodeError",
    "Endpoint",
    "HandleInResult",
    "HandleInfoResult",
    "HandleOutResult",
    "InvalidMessageError",
    "JoinResult",
    "Message",
    "PubSub",
    "PubSubError",
    "Reply",
    "ReplyStatus",
    "Serializer",
    "Socket",
    "SocketConnection",
    "SocketHandler",
    "V1",
    "V2",
    "broadcast",
    "broadcast_from",
    "broadcast_from_or_raise",
    "broadcast_or_raise",
    "close_code",
    "connect",
    "dispatch",
    "negotiate",
    "push",
    "reply",
    "serve",
    "serve_stream",
    "pubsub",
    "socket_ref",
    "telemetry",
    "UnknownPubSubError",
]
