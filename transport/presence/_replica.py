"""Which other replicas a shard has heard from, and when: up, down, permdown (pure).

Phoenix.Tracker.Replica's bookkeeping. A replica is named by its node name; its ``vsn``
tells incarnations apart (a node that restarts comes back with a new vsn, and the old
incarnation is then permanently down at once). Time is given by the caller (ms, any
monotonic origin), so this is tested without sleeping.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["ReplicaInfo", "Replicas"]


@dataclass(slots=True)
class ReplicaInfo:
    """One remote replica as seen from here."""

    name: str
    vsn: Any
    status: str  # 'up' | 'down'
    last_heartbeat_at: float

    @property
    def ref(self) -> tuple:
        """``(name, vsn)``: the replica's name in the tracker state."""
        return (self.name, self.vsn)


class Replicas:
    """The remote replicas of one shard, by node name."""

    __slots__ = ("by_name",)

    def __init__(self) -> None:
        self.by_name: dict[str, ReplicaInfo] = {}

    def heartbeat(self, ref: tuple, now: float) -> list[tuple[str, tuple]]:
        """Note a heartbeat (or any message) from replica ``ref`` = ``(name, vsn)`` at ``now``.

        Returns the events to apply to the state, in order: ``('permdown', old_ref)``
        when ``name`` comes back with a new vsn, ``('up', ref)`` when it is new, back,
        or a new incarnation.
        """
        name, vsn = ref
        info = self.by_name.get(name)
        if info is None:
            self.by_name[name] = ReplicaInfo(name, vsn, "up", now)
            return [("up", ref)]
        if info.vsn != vsn:
            old = info.ref
            self.by_name[name] = ReplicaInfo(name, vsn, "up", now)
            return [("permdown", old), ("up", ref)]
        info.last_heartbeat_at = now
        if info.status != "up":
            info.status = "up"
            return [("up", ref)]
        return []

    def detect_downs(self, now: float, down_period: float, permdown_period: float) -> list[tuple[str, tuple]]:
        """Replicas silent for ``down_period`` go down, for ``permdown_period`` are
        forgotten: ``('down', ref)`` / ``('permdown', ref)`` events, in that order."""
        events: list[tuple[str, tuple]] = []
        for name, info in list(self.by_name.items()):
            silent = now - info.last_heartbeat_at
            if silent >= permdown_period:
                del self.by_name[name]
                if info.status == "up":
                    events.append(("down", info.ref))
                events.append(("permdown", info.ref))
            elif silent >= down_period and info.status == "up":
                info.status = "down"
                events.append(("down", info.ref))
        return events

    def remove(self, ref: tuple) -> ReplicaInfo | None:
        """Forget ``ref`` (a graceful permdown); the info it had, or None if unknown or
        already replaced by a newer vsn."""
        info = self.by_name.get(ref[0])
        if info is None or info.vsn != ref[1]:
            return None
        del self.by_name[ref[0]]
        return info

    def status(self) -> dict[str, str]:
        """``{name: 'up' | 'down'}``."""
        return {name: info.status for name, info in self.by_name.items()}
