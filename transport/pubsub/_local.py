"""The local adapter: one node, one OS process, no network.

The default adapter. There are no other nodes, so ``broadcast`` has nothing to send
(the PubSub then dispatches locally, as always), and ``direct_broadcast`` delivers to this
node's subscribers when given this node's name and answers ``('error', ('nodedown',
node))`` for any other name.

Options (given to ``PubSub.child_spec`` next to the PubSub's own):

* ``node_name`` — this node's name; default :func:`default_node_name`
  (``greenphx_<os pid>@<host>``).

The adapter runs no process: its child's start function records the node name under the
adapter's name and returns None, so the PubSub supervisor lists it as an ignored child.
"""

from __future__ import annotations

from typing import Any

from ._adapter import BroadcastResult, Dispatcher, default_node_name
from ._api import OK, local_broadcast

__all__ = ["LocalAdapter"]

# adapter_name -> (pubsub name, node name), written each time the PubSub (re)starts.
_config: dict[str, tuple[str, str]] = {}


def _start(adapter_name: str, pubsub: str, node: str) -> None:
    _config[adapter_name] = (pubsub, node)
    # OTP's ignore: no process to supervise


class LocalAdapter:
    """The single-node adapter (see the module docs). Use the class itself as ``adapter``."""

    @staticmethod
    def child_spec(
        *, name: str, adapter_name: str, pool_size: int, node_name: str | None = None, **unknown: Any
    ) -> dict[str, Any]:
        """The adapter's child: records the node name, starts no process."""
        if unknown:
            raise TypeError(f"LocalAdapter: unknown option {min(unknown)!r} (it accepts node_name)")
        if node_name is None:
            node_name = default_node_name()
        elif not isinstance(node_name, str) or not node_name:
            raise TypeError(f"LocalAdapter: node_name must be a non-empty str, got {node_name!r}")
        return {"id": adapter_name, "start": (_start, (adapter_name, name, node_name))}

    @staticmethod
    def node_name(adapter_name: str) -> str:
        """This node's name."""
        return _config[adapter_name][1]

    @staticmethod
    def broadcast(adapter_name: str, topic: str, message: Any, dispatcher: Dispatcher) -> BroadcastResult:
        """There are no other nodes: nothing to send."""
        return OK

    @staticmethod
    def direct_broadcast(adapter_name: str, node_name: str, topic: str, message: Any, dispatcher: Dispatcher) -> BroadcastResult:
        """Deliver here if ``node_name`` is this node; else ``('error', ('nodedown', node_name))``."""
        pubsub, me = _config[adapter_name]
        if node_name != me:
            return ("error", ("nodedown", node_name))
        return local_broadcast(pubsub, topic, message, dispatcher)
