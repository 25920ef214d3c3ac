"""The two contracts of the PubSub layer: an adapter, and a dispatcher.

An **adapter** carries broadcasts between nodes (OS processes, machines). It is any object
with four callables: a module, a class of static methods (``LocalAdapter``), or an
instance. As phoenix_pubsub's ``Phoenix.PubSub.Adapter``:

``child_spec(*, name, adapter_name, pool_size, **adapter_opts)``
    The child spec of the processes the adapter needs, mounted in the PubSub's own
    supervisor after its shards. It receives every option given to ``PubSub.child_spec``:
    ``name`` is the whole PubSub's name; the adapter keeps its own state under
    ``adapter_name`` (``f"{name}.Adapter"``). Unknown options must raise ``TypeError``
    naming the option. The start function may return None (OTP's ``ignore``) if the
    adapter runs no process.

``node_name(adapter_name) -> str``
    The name of this node, as other nodes know it.

``broadcast(adapter_name, topic, message, dispatcher) -> 'ok' | ('error', reason)``
    Send the broadcast to every *other* node, each of which hands it to
    ``local_broadcast(name, topic, message, dispatcher)``. The PubSub has already
    dispatched to this node's subscribers itself (whatever the adapter then returns).

``direct_broadcast(adapter_name, node_name, topic, message, dispatcher) -> 'ok' | ('error', reason)``
    Send the broadcast to one node, which may be this one; the adapter delivers it there
    with ``local_broadcast``.

Optionally ``statistics(adapter_name) -> dict``: shown by ``statistics(pubsub)`` under
``adapter_statistics``.

A broadcast that reaches another node carries its dispatcher with it, so a dispatcher
that crosses nodes must be importable by its qualified name (a module-level function),
as Elixir requires a module.

A **dispatcher** is ``dispatch(entries, from_pid, message)``: ``entries`` is a list of
``(subscriber_pid, metadata)`` for *all* of this node's subscriptions to the topic (one
call per broadcast, never one per subscriber), ``from_pid`` the broadcaster to skip (or
None), ``message`` the broadcast. The list is a snapshot the dispatcher owns: it may keep
it, iterate it twice, or block. Its return value is ignored; an exception propagates to
the broadcaster.
"""

from __future__ import annotations

import os
import socket
from typing import Any, Protocol, runtime_checkable

from actors import Pid
from supervision import ChildSpec

__all__ = ["Adapter", "BroadcastResult", "Dispatcher", "default_node_name"]

#: What a non-raising broadcast returns: ``'ok'``, or ``('error', reason)``.
BroadcastResult = str | tuple[str, Any]


class Dispatcher(Protocol):
    """Delivers one broadcast to this node's subscribers of its topic."""

    def __call__(self, entries: list[tuple[Pid, Any]], from_pid: Pid | None, message: Any, /) -> object: ...


@runtime_checkable
class Adapter(Protocol):
    """Carries broadcasts between nodes; see the module docs for the contract."""

    def node_name(self, adapter_name: str, /) -> str: ...

    def child_spec(self, *, name: str, adapter_name: str, pool_size: int, **adapter_opts: Any) -> ChildSpec | dict[str, Any]: ...

    def broadcast(self, adapter_name: str, topic: str, message: Any, dispatcher: Dispatcher, /) -> BroadcastResult: ...

    def direct_broadcast(
        self, adapter_name: str, node_name: str, topic: str, message: Any, dispatcher: Dispatcher, /
    ) -> BroadcastResult: ...


def default_node_name() -> str:
    """A node name unique to this OS process: ``greenphx_<os pid>@<host name>``.

    Computed when called (not at import), so a forked child gets its own.
    """
    return f"greenphx_{os.getpid()}@{socket.gethostname()}"
