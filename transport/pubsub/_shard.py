"""The shard: the thin process that watches one partition's subscribers.

Client side: ``subscribe``/``unsubscribe`` (in ``_api``) write the table themselves and
cast the shard ``('check', pid)`` whenever a process gains its first or loses its last
subscription in the partition. Server side: the shard reconciles — it monitors a pid the
table holds and drops the monitor of one it no longer holds — and when a monitored
process dies it removes all of that process's subscriptions.

Because every membership change is followed by a ``check`` and the shard decides from
the table as it is when the message is handled (not from the message), the shard's
monitors always converge to exactly the table's subscribers, whatever the interleaving.

The table is not the shard's: it belongs to the PubSub (one per partition, made when the
PubSub starts). A shard that is killed and restarted loses only its monitors; the new one
monitors every subscriber already in its table in ``init`` (a subscriber that died in
between gets ``DOWN`` with reason ``noproc`` at once and is removed). Subscriptions
therefore survive a shard restart. A check cast to a shard that is dead is lost, but the
subscription it announced is already in the table for the next shard's ``init`` to see.
"""

from __future__ import annotations

from typing import Any

import actors
from actors import GenServer, Pid, Ref

from ._table import SubscriptionTable

__all__ = ["Shard"]


class ShardState:
    """What a shard holds: its partition's table (shared) and its monitors (its own)."""

    __slots__ = ("index", "monitors", "pubsub", "table")

    def __init__(self, pubsub: str, index: int, table: SubscriptionTable) -> None:
        self.pubsub = pubsub
        self.index = index
        self.table = table
        self.monitors: dict[Pid, Ref] = {}

    def __repr__(self) -> str:
        return f"<ShardState {self.pubsub!r}[{self.index}] {len(self.monitors)} monitored, {self.table!r}>"


class Shard(GenServer):
    """Watches the subscribers of one partition; started by the PubSub supervisor."""

    @classmethod
    def start_shard(cls, instance: Any, index: int) -> Pid | None:
        """The child start function: a shard for ``instance.tables[index]``, linked."""
        return cls.start_link((instance, index))

    # -- server callbacks ---------------------------------------------------------------

    def init(self, arg: tuple[Any, int]) -> Any:
        instance, index = arg
        actors.set_label(("pubsub_shard", instance.name, index))
        state = ShardState(instance.name, index, instance.tables[index])
        instance.owners[index] = actors.self()
        for pid in state.table.all_subscribers():
            state.monitors[pid] = actors.monitor(pid)
        return ("ok", state)

    def handle_cast(self, request: Any, state: ShardState) -> Any:
        if request.__class__ is tuple and len(request) == 2 and request[0] == "check":
            self._reconcile(request[1], state)
            return ("noreply", state)
        return super().handle_cast(request, state)

    def handle_info(self, msg: Any, state: ShardState) -> Any:
        if msg.__class__ is tuple and len(msg) == 5 and msg[0] == "DOWN":
            pid = msg[3]
            if state.monitors.get(pid) is msg[1]:
                del state.monitors[pid]
                state.table.remove_all(pid)
            return ("noreply", state)
        return super().handle_info(msg, state)

    def handle_call(self, request: Any, from_: Any, state: ShardState) -> Any:
        if request == "sync":
            return ("reply", "ok", state)
        return super().handle_call(request, from_, state)

    @staticmethod
    def _reconcile(pid: Pid, state: ShardState) -> None:
        ref = state.monitors.get(pid)
        if state.table.holds(pid):
            if ref is None:
                state.monitors[pid] = actors.monitor(pid)
        elif ref is not None:
            del state.monitors[pid]
            actors.demonitor(ref, flush=True)
