"""The shard: the process that stands for one partition of the subscription table.

Nothing waits on it. ``subscribe`` (in ``_api``) writes the partition's table itself and
gives the subscribing process an exit hook (``actors._runtime.add_exit_hook``) that drops
every row it holds there the moment it dies, before its links and monitors fire, the way
ETS drops a dead owner's rows; ``unsubscribe`` of its last topic there takes the hook
away. So a dead subscriber is never in a table, and no process is woken to clean up
after it (a shard that monitored each subscriber cost a message, a wake-up and a ``DOWN``
per subscriber's life: about 3 % of a connect/join/leave/close cycle).

The table is not the shard's: it belongs to the PubSub (one per partition, made when the
PubSub starts). The shard is the partition's place in the tree (Phoenix.PubSub's
Registry runs one process per partition too): it has a label the shell shows, answers
``sync``, and is what :func:`statistics` names per partition. It holds nothing of its own,
so a shard that is killed and restarted loses nothing.
"""

from __future__ import annotations

from typing import Any

import actors
from actors import GenServer, Pid

from ._table import SubscriptionTable

__all__ = ["Shard"]


class ShardState:
    """What a shard holds: its partition's index and table (shared, not its own)."""

    __slots__ = ("index", "pubsub", "table")

    def __init__(self, pubsub: str, index: int, table: SubscriptionTable) -> None:
        self.pubsub = pubsub
        self.index = index
        self.table = table

    def __repr__(self) -> str:
        return f"<ShardState {self.pubsub!r}[{self.index}] {self.table!r}>"


class Shard(GenServer):
    """Stands for one partition in the PubSub's tree; started by the PubSub supervisor."""

    @classmethod
    def start_shard(cls, instance: Any, index: int) -> Pid | None:
        """The child start function: a shard for ``instance.tables[index]``, linked."""
        return cls.start_link((instance, index))

    # -- server callbacks ---------------------------------------------------------------

    def init(self, arg: tuple[Any, int]) -> Any:
        instance, index = arg
        actors.set_label(("pubsub_shard", instance.name, index))
        instance.owners[index] = actors.self()
        return ("ok", ShardState(instance.name, index, instance.tables[index]))

    def handle_call(self, request: Any, from_: Any, state: ShardState) -> Any:
        if request == "sync":
            return ("reply", "ok", state)
        return super().handle_call(request, from_, state)
