"""The endpoint: where sockets are mounted, which PubSub they use, and their channel pools.

Put it in your tree::

    endpoint = Endpoint("MyApp.Endpoint", pubsub_server="MyApp.PubSub", sockets=[("/socket", UserSocket)])
    app = Application([PubSub.child_spec(name="MyApp.PubSub"), *endpoint.child_specs()])

Options and defaults: ``pubsub_server`` (required for channels), ``sockets=[]`` as
``(path, handler[, options])`` (options: ``websocket``, ``longpoll=False``, ``drainer``,
``partitions``; see :mod:`transport.http`), ``url=None`` (``{"host": ...}`` for the
origin check), ``http_app=None`` (a WSGI app for everything else),
``secret_key_base=None`` (at least 64 bytes: the key of Phoenix.Token, LongPoll session
tokens and the cookie session; ``phx-serve`` reads ``SECRET_KEY_BASE`` or generates one).
Per socket, the handler's ``partitions`` (default: CPU
cores) sets the size of its channel pool. The HTTP side (WSGI, WebSocket and LongPoll
transports) is built on this in the endpoint module of the transports.
"""

from __future__ import annotations

from typing import Any

from actors import Pid
from supervision import ChildSpec, PartitionSupervisor

from ._message import Broadcast

__all__ = ["Endpoint", "check_secret_key_base"]

#: Plug's cookie store and Phoenix's generators ask for at least this many bytes.
MIN_SECRET_KEY_BASE = 64


def check_secret_key_base(secret: Any) -> str | bytes:
    """``secret`` if it is a str or bytes of at least 64 bytes; else a clear error."""
    if not isinstance(secret, (str, bytes)):
        raise TypeError(f"secret_key_base must be a str or bytes, got {type(secret).__name__}")
    size = len(secret.encode("utf-8") if isinstance(secret, str) else secret)
    if size < MIN_SECRET_KEY_BASE:
        raise ValueError(f"secret_key_base must be at least {MIN_SECRET_KEY_BASE} bytes, got {size}")
    return secret


class Endpoint:
    """Phoenix's endpoint, minus HTTP: socket mounts, PubSub, channel pools, broadcasts."""

    def __init__(
        self,
        name: str,
        *,
        pubsub_server: str | None = None,
        sockets: list | None = None,
        url: dict | None = None,
        http_app: Any = None,
        secret_key_base: str | bytes | None = None,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise TypeError(f"Endpoint name must be a non-empty str, got {name!r}")
        self.name = name
        self.pubsub_server = pubsub_server
        #: ``{"host": ...}``: the host check_origin=True compares against (default: the
        #: request's Host header).
        self.url = dict(url or {})
        #: A WSGI app for requests that are not socket upgrades (default: 404).
        self.http_app = http_app
        #: The secret tokens and the cookie session are signed with (None until set).
        self.secret_key_base = check_secret_key_base(secret_key_base) if secret_key_base is not None else None
        #: (host, port) the HTTP server is listening on, once it is.
        self.bound: tuple | None = None
        #: "http", or "https" once the listener serves TLS.
        self.scheme = "http"
        self.sockets: list[tuple[str, Any, dict]] = []
        for mount in sockets or []:
            path, handler, *rest = mount
            self.sockets.append((path, handler, dict(rest[0]) if rest else {}))

    def __repr__(self) -> str:
        return f"<Endpoint {self.name}>"

    def pool_name(self, handler: Any) -> str:
        """The registered name of a socket handler's partitioned channel pool."""
        return f"{self.name}.{handler.__module__}.{handler.__qualname__}.ChannelPool"

    def child_specs(self, server: dict | None = None) -> list[ChildSpec]:
        """The endpoint's processes: per socket handler, its channel pool, then its drainer.

        The drainer comes after the pool so that, stopping in reverse order, it drains the
        sockets before the pool's channels are shut down. A mount's ``drainer`` option
        takes the drainer's options, or False for none. With ``server={"host": ...,
        "port": ...}`` the HTTP listener is included, between the pools and the drainers.
        """
        specs = self._pool_and_drainer_specs()
        if server is None:
            return specs
        from .http import with_server

        return with_server(specs, self, server)

    def _pool_and_drainer_specs(self) -> list[ChildSpec]:
        from ._drainer import Drainer

        pools: dict[str, ChildSpec] = {}
        drainers: dict[str, ChildSpec] = {}
        for _path, handler, opts in self.sockets:
            name = self.pool_name(handler)
            if name in pools:
                continue
            partitions = opts.get("partitions", handler.partitions)
            pools[name] = PartitionSupervisor.child_spec(name=name, partitions=partitions)
            drainer = opts.get("drainer", {})
            if drainer is not False:
                drainers[name] = Drainer.child_spec((self, handler, drainer))
        # LongPoll sessions live under one supervisor per endpoint (Phoenix's
        # LongPoll.Supervisor): stopped after the listener, before the channel pools.
        longpoll = []
        if any(opts.get("longpoll") for _path, _handler, opts in self.sockets):
            from supervision import DynamicSupervisor

            from .longpoll import supervisor_name

            longpoll.append(DynamicSupervisor.child_spec({"id": ("longpoll", self.name), "name": supervisor_name(self)}))
        return [*pools.values(), *longpoll, *drainers.values()]

    # Broadcasting to channels (Phoenix.Endpoint's broadcast API).

    def subscribe(self, topic: str, metadata: Any = None) -> None:
        """Subscribe the caller to ``topic`` on the endpoint's PubSub."""
        from . import pubsub

        pubsub.subscribe(self._pubsub(), topic, metadata)

    def unsubscribe(self, topic: str) -> None:
        """Unsubscribe the caller from ``topic``."""
        from . import pubsub

        pubsub.unsubscribe(self._pubsub(), topic)

    def broadcast(self, topic: str, event: str, payload: Any) -> Any:
        """Broadcast ``event`` to every channel (and subscriber) of ``topic`` on every node.

        Returns ``'ok'``, or the adapter's ``('error', reason)`` when other nodes may have
        missed it (this node's subscribers have it either way);
        :meth:`broadcast_or_raise` raises instead.
        """
        from ._channel import broadcast_message

        return broadcast_message(self._pubsub(), None, topic, event, payload, raising=False)

    def broadcast_or_raise(self, topic: str, event: str, payload: Any) -> None:
        """As :meth:`broadcast` (Phoenix's ``broadcast!``), raising ``BroadcastError`` on failure."""
        from ._channel import broadcast_message

        broadcast_message(self._pubsub(), None, topic, event, payload, raising=True)

    def broadcast_from(self, from_pid: Pid, topic: str, event: str, payload: Any) -> Any:
        """As :meth:`broadcast`, skipping the subscriber ``from_pid`` on this node."""
        from ._channel import broadcast_message

        return broadcast_message(self._pubsub(), from_pid, topic, event, payload, raising=False)

    def broadcast_from_or_raise(self, from_pid: Pid, topic: str, event: str, payload: Any) -> None:
        """As :meth:`broadcast_from` (Phoenix's ``broadcast_from!``), raising on failure."""
        from ._channel import broadcast_message

        broadcast_message(self._pubsub(), from_pid, topic, event, payload, raising=True)

    def local_broadcast(self, topic: str, event: str, payload: Any) -> str:
        """Broadcast on this node only. Always ``'ok'``."""
        from . import pubsub
        from ._channel import dispatch

        return pubsub.local_broadcast(self._pubsub(), topic, Broadcast(topic=topic, event=event, payload=payload), dispatch)

    def local_broadcast_from(self, from_pid: Pid, topic: str, event: str, payload: Any) -> str:
        """Broadcast on this node only, skipping ``from_pid``. Always ``'ok'``."""
        from . import pubsub
        from ._channel import dispatch

        return pubsub.local_broadcast_from(
            self._pubsub(), from_pid, topic, Broadcast(topic=topic, event=event, payload=payload), dispatch
        )

    def _pubsub(self) -> str:
        if self.pubsub_server is None:
            raise RuntimeError(f"{self.name} has no pubsub_server configured")
        return self.pubsub_server
