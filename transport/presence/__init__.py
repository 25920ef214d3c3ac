"""Presence: who is on a topic, on this node and every other (Phoenix.Presence).

Put a Presence in your tree after the PubSub it uses, before the endpoint::

    from transport.presence import Presence

    presence = Presence("MyApp.Presence", pubsub_server="MyApp.PubSub")

    app = Application([
        PubSub.child_spec(name="MyApp.PubSub"),
        presence.child_spec(),
        *endpoint.child_specs(),
    ])

Then, in a channel (see docs/presence.md for the whole channel)::

    def join(self, topic, payload, socket):
        actors.send(actors.self(), "after_join")
        return ("ok", socket)

    def handle_info(self, msg, socket):
        if msg == "after_join":
            presence.track(socket, socket.assigns["user_id"], {"online_at": time.time()})
            push(socket, "presence_state", presence.list(socket))
            return ("noreply", socket)
        ...

Every change is broadcast to the topic's subscribers on each node as ``presence_diff``
``{"joins": {key: {"metas": [...]}}, "leaves": {...}}``, which phoenix.js's ``Presence``
class (and this project's demo client) applies to the ``presence_state``.

Options (keywords to :class:`Presence`), with defaults (Phoenix.Tracker's):

``name`` (required, first argument)
    The tracker's name; its supervisor and shards (``<name>_shard<N>``) are registered
    under it. Unique per node; the same on every node.
``pubsub_server`` (required)
    The PubSub's name. Nodes replicate over it, so it must reach every node (the Redis
    adapter, or anything that carries ``broadcast`` and ``direct_broadcast``).
``pool_size=1``
    Shards; a topic lives in shard ``crc32(topic) % pool_size``. Must be the same on
    every node.
``broadcast_period=1500``
    ms between heartbeats (each carries the changes since the last one).
``max_silent_periods=10``
    Heartbeats with no change after which an empty one is sent anyway.
``down_period=broadcast_period * max_silent_periods * 2`` (30,000)
    ms without hearing from a node before its presences leave (at least twice
    ``broadcast_period``).
``permdown_period=1_200_000``
    ms before a silent node is forgotten for good (more than ``down_period``).
``clock_sample_periods=2``
    Heartbeats between checks for missed changes (which trigger a transfer).
``max_delta_sizes=(100, 1000, 10_000)``
    Sizes of the delta generations kept to answer transfers without the whole state.
``log_level=False``
    Log replica up/down and transfers at this level ('debug', 'info', ...).
``namespace=name``
    Shards replicate over the PubSub topics ``phx_presence:<namespace>_shard<N>``: the
    trackers of one cluster must share it. Set it only to run several nodes in one OS
    process (where each needs its own registered name).

Functions (methods of the Presence): ``track(socket, key, meta)`` or ``track(pid,
topic, key, meta)`` -> ``('ok', phx_ref)`` | ``('error', reason)``; ``untrack`` and
``update`` with the same shapes (``update`` takes a dict or a function of the old meta);
``list(socket | topic)`` -> ``{key: {"metas": [...]}}``; ``get_by_key(socket | topic,
key)`` -> ``{"metas": [...]}`` or ``[]``. Override :meth:`Presence.fetch` to add data to
every entry in one batch (it sees the lists and the diffs).

Where this cannot be Phoenix: a ``phx_ref`` is made of time, randomness and a counter
(Phoenix hashes the node and pid in); keys are turned into strings for the wire
(``str(key)``, as Phoenix's ``to_string``); the shards replicate between greenphx nodes
only (the messages follow Phoenix.Tracker's shapes, but their payloads are not Phoenix's
structs). The tracker underneath is :class:`Tracker`; its CRDT is :class:`State`.
"""

from __future__ import annotations

import builtins
import logging
from typing import Any

from actors import Pid
from supervision import ChildSpec
from transport import pubsub
from transport._channel import dispatch
from transport._message import Broadcast
from transport._socket import Socket

from ._state import Delta, DeltaGenerations, Snapshot, State
from ._tracker import Tracker, TrackerConfig, TrackerError, running_trackers

__all__ = [
    "Delta",
    "DeltaGenerations",
    "Presence",
    "Snapshot",
    "State",
    "Tracker",
    "TrackerConfig",
    "TrackerError",
    "group",
    "running_trackers",
]

log = logging.getLogger("transport.presence")


def group(entries: list[tuple[Any, dict]]) -> dict[str, dict[str, list]]:
    """``[(key, meta), ...]`` as Phoenix.Presence shows them: ``{str(key): {"metas": [...]}}``."""
    out: dict[str, dict[str, list]] = {}
    for key, meta in entries:
        k = key if key.__class__ is str else str(key)
        entry = out.get(k)
        if entry is None:
            out[k] = {"metas": [meta]}
        else:
            entry["metas"].append(meta)
    return out


class Presence:
    """Phoenix.Presence: see the package docs. Subclass to override :meth:`fetch`."""

    def __init__(self, name: str, *, pubsub_server: str, **options: Any) -> None:
        if "handle_diff" in options:
            raise TypeError("Presence: handle_diff is Presence's own (it broadcasts presence_diff); override fetch instead")
        self.pubsub_server = pubsub_server
        self.tracker = Tracker(name, pubsub_server=pubsub_server, handle_diff=self._handle_diff, **options)

    @property
    def name(self) -> str:
        """The tracker's name."""
        return self.tracker.name

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"

    def child_spec(self) -> ChildSpec:
        """Put this in your tree after the PubSub."""
        return self.tracker.child_spec()

    # -- the hook -----------------------------------------------------------------------

    def fetch(self, topic: str, presences: dict[str, dict[str, list]]) -> dict[str, dict[str, Any]]:
        """Enrich ``presences`` (``{key: {"metas": [...]}}``) in one batch; default: as is.

        Called for every ``list``/``get_by_key`` and for the joins and the leaves of every
        diff (in the tracker's shard process: keep it quick, or the shard falls behind).
        Return the same shape; entries may gain keys next to ``"metas"``.
        """
        return presences

    # -- API ----------------------------------------------------------------------------

    @staticmethod
    def _target(target: Any, args: tuple, arity: int, function: str) -> tuple[Pid, str, tuple]:
        if isinstance(target, Socket):
            if target.channel_pid is None or target.topic is None:
                raise ValueError(f"{function}: the socket has not joined a channel")
            if len(args) != arity - 1:
                raise TypeError(f"{function}(socket, ...) takes {arity - 1} more arguments, got {len(args)}")
            return target.channel_pid, target.topic, args
        if target.__class__ is Pid:
            if len(args) != arity:
                raise TypeError(f"{function}(pid, topic, ...) takes {arity} more arguments, got {len(args)}")
            return target, args[0], args[1:]
        raise TypeError(f"{function}: expected a joined Socket or a Pid, got {type(target).__name__}")

    def track(self, target: Socket | Pid, *args: Any) -> tuple[str, Any]:
        """``track(socket, key, meta)`` or ``track(pid, topic, key, meta)``: ``('ok', phx_ref)``
        or ``('error', ('already_tracked', pid, topic, key))``."""
        pid, topic, (key, meta) = self._target(target, args, 3, "track")
        return self.tracker.track(pid, topic, key, meta)

    def untrack(self, target: Socket | Pid, *args: Any) -> str:
        """``untrack(socket, key)`` or ``untrack(pid, topic, key)``: ``'ok'``."""
        pid, topic, (key,) = self._target(target, args, 2, "untrack")
        return self.tracker.untrack(pid, topic, key)

    def update(self, target: Socket | Pid, *args: Any) -> tuple[str, Any]:
        """``update(socket, key, meta)`` or ``update(pid, topic, key, meta)`` (meta a dict or
        a function of the old one): ``('ok', phx_ref)`` or ``('error', 'nopresence')``."""
        pid, topic, (key, meta) = self._target(target, args, 3, "update")
        return self.tracker.update(pid, topic, key, meta)

    @staticmethod
    def _topic(target: Any) -> str:
        if isinstance(target, Socket):
            if target.topic is None:
                raise ValueError("the socket has not joined a channel")
            return target.topic
        if not isinstance(target, str):
            raise TypeError(f"expected a topic (str) or a joined Socket, got {type(target).__name__}")
        return target

    def list(self, target: Socket | str) -> dict[str, dict[str, Any]]:
        """Everyone on the topic (a socket's, or a str): ``{key: {"metas": [...]}}``, through
        :meth:`fetch`."""
        topic = self._topic(target)
        return self.fetch(topic, group(self.tracker.list(topic)))

    def get_by_key(self, target: Socket | str, key: Any) -> Any:
        """One key's entry ``{"metas": [...]}`` (through :meth:`fetch`), or ``[]`` if absent."""
        topic = self._topic(target)
        metas = [meta for _pid, meta in self.tracker.get_by_key(topic, key)]
        if not metas:
            return []
        k = key if key.__class__ is str else str(key)
        return self.fetch(topic, {k: {"metas": metas}}).get(k, [])

    # -- the tracker's diff handler --------------------------------------------------------

    def _handle_diff(self, diff: dict[str, tuple[builtins.list, builtins.list]]) -> None:
        for topic, (joins, leaves) in diff.items():
            payload = {"joins": self.fetch(topic, group(joins)), "leaves": self.fetch(topic, group(leaves))}
            # Each node tells its own subscribers: the diff was computed here.
            pubsub.local_broadcast(self.pubsub_server, topic, Broadcast(topic, "presence_diff", payload), dispatch)
