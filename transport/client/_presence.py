"""Client-side Presence, as phoenix.js's ``presence.js``: pure state, and a channel binding.

The server sends ``presence_state`` (the whole state, after each join) and ``presence_diff``
(``{"joins": ..., "leaves": ...}``), both shaped ``{key: {"metas": [{..., "phx_ref": REF}]}}``.
:func:`sync_state` and :func:`sync_diff` merge them into a state dict, calling
``on_join(key, current, new)`` and ``on_leave(key, current, left)`` like phoenix.js's.
:class:`PresenceSync` holds the diffs that arrive before the state of the current join (a
rejoin's state replaces everything, so a diff for the old join must not be applied to it).

Unlike phoenix.js, neither function changes the dicts it is given.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

__all__ = ["Presence", "PresenceSync", "list_presences", "sync_diff", "sync_state"]

State = dict[str, dict[str, Any]]
JoinCallback = Callable[[str, "dict | None", dict], None]
LeaveCallback = Callable[[str, dict, dict], None]


def _refs(metas: list[dict]) -> list[Any]:
    return [m.get("phx_ref") for m in metas]


def sync_state(current: State, new: State, on_join: JoinCallback | None = None, on_leave: LeaveCallback | None = None) -> State:
    """Merge the server's whole ``new`` state into ``current``: the resulting state."""
    state = copy.deepcopy(current)
    joins: State = {}
    leaves: State = {}
    for key, presence in state.items():
        if key not in new:
            leaves[key] = presence
    for key, new_presence in new.items():
        current_presence = state.get(key)
        if current_presence is None:
            joins[key] = new_presence
            continue
        new_refs = _refs(new_presence["metas"])
        cur_refs = _refs(current_presence["metas"])
        joined = [m for m in new_presence["metas"] if m.get("phx_ref") not in cur_refs]
        left = [m for m in current_presence["metas"] if m.get("phx_ref") not in new_refs]
        if joined:
            joins[key] = {**new_presence, "metas": joined}
        if left:
            leaves[key] = {**current_presence, "metas": left}
    return _apply_diff(state, joins, leaves, on_join, on_leave)


def sync_diff(current: State, diff: dict, on_join: JoinCallback | None = None, on_leave: LeaveCallback | None = None) -> State:
    """Apply a ``presence_diff`` payload to ``current``: the resulting state."""
    return _apply_diff(copy.deepcopy(current), diff.get("joins") or {}, diff.get("leaves") or {}, on_join, on_leave)


def _apply_diff(state: State, joins: State, leaves: State, on_join: JoinCallback | None, on_leave: LeaveCallback | None) -> State:
    joins = copy.deepcopy(joins)
    leaves = copy.deepcopy(leaves)
    for key, new_presence in joins.items():
        current_presence = state.get(key)
        merged = copy.deepcopy(new_presence)
        if current_presence is not None:
            joined_refs = _refs(merged["metas"])
            kept = [m for m in current_presence["metas"] if m.get("phx_ref") not in joined_refs]
            merged["metas"] = kept + merged["metas"]
        state[key] = merged
        if on_join is not None:
            on_join(key, current_presence, new_presence)
    for key, left_presence in leaves.items():
        current_presence = state.get(key)
        if current_presence is None:
            continue
        remove = _refs(left_presence["metas"])
        current_presence["metas"] = [m for m in current_presence["metas"] if m.get("phx_ref") not in remove]
        if on_leave is not None:
            on_leave(key, current_presence, left_presence)
        if not current_presence["metas"]:
            del state[key]
    return state


def list_presences(state: State, chooser: Callable[[str, dict], Any] | None = None) -> list[Any]:
    """One entry per key: the presence, or ``chooser(key, presence)``."""
    if chooser is None:
        return list(state.values())
    return [chooser(key, presence) for key, presence in state.items()]


class PresenceSync:
    """The presence state of one channel, fed its ``presence_state``/``presence_diff`` payloads.

    ``handle_state(payload, join_ref)`` records which join the state belongs to;
    ``handle_diff(payload, current_join_ref)`` applies the diff, or holds it while the state
    for the channel's current join has not arrived. ``on_join``, ``on_leave`` and
    ``on_sync()`` are called as in phoenix.js.
    """

    def __init__(self) -> None:
        self.state: State = {}
        self.pending_diffs: list[dict] = []
        self.join_ref: str | None = None
        self.on_join: JoinCallback | None = None
        self.on_leave: LeaveCallback | None = None
        self.on_sync: Callable[[], None] | None = None

    def in_pending_sync_state(self, current_join_ref: str | None) -> bool:
        return self.join_ref is None or self.join_ref != current_join_ref

    def handle_state(self, payload: State, join_ref: str | None) -> None:
        self.join_ref = join_ref
        self.state = sync_state(self.state, payload, self.on_join, self.on_leave)
        for diff in self.pending_diffs:
            self.state = sync_diff(self.state, diff, self.on_join, self.on_leave)
        self.pending_diffs = []
        if self.on_sync is not None:
            self.on_sync()

    def handle_diff(self, payload: dict, current_join_ref: str | None) -> None:
        if self.in_pending_sync_state(current_join_ref):
            self.pending_diffs.append(payload)
            return
        self.state = sync_diff(self.state, payload, self.on_join, self.on_leave)
        if self.on_sync is not None:
            self.on_sync()

    def list(self, chooser: Callable[[str, dict], Any] | None = None) -> list[Any]:
        return list_presences(self.state, chooser)


class Presence(PresenceSync):
    """Presence bound to a channel of either driver (anything with ``on`` and ``join_ref``).

        presence = Presence(channel)
        presence.on_sync = lambda: print(presence.list())

    ``events`` renames the two events (phoenix.js's ``opts.events``).
    """

    def __init__(self, channel: Any, events: dict[str, str] | None = None) -> None:
        super().__init__()
        events = events or {}
        self.channel = channel
        # The state belongs to the join that was current when the server sent it: the
        # message's own join_ref (V2), else the channel's at delivery (V1 has none).
        channel.on(events.get("state", "presence_state"), lambda m: self.handle_state(m.payload, m.join_ref or channel.join_ref))
        channel.on(events.get("diff", "presence_diff"), lambda m: self.handle_diff(m.payload, channel.join_ref))
