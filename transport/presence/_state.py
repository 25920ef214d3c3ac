"""The tracker's state: a causal, add-wins set of presences per replica (pure data).

The shape of phoenix_pubsub's ``Phoenix.Tracker.State`` (an ORSWOT), written for Python
dicts. No process, no clock, no I/O: a :class:`State` changes only through the methods
below, and every change that other replicas must see is also recorded in the state's
pending :class:`Delta`. The shard process (``_shard.py``) owns one State, sends its
deltas in heartbeats and merges what other replicas send.

Vocabulary
----------
replica
    ``(name, vsn)``: a node's name and the version of this incarnation of its shard (a
    restarted node is a new replica with the same name). Any hashable, term-encodable
    value works; the shard uses ``(node_name, time in µs)``.
tag (a dot)
    ``(replica, clock)``: the unique name of one event of one replica. Each join and each
    leave of a replica bumps its clock by one.
context
    ``{replica: clock}``: every event of ``replica`` up to ``clock`` has been seen.
cloud
    ``{replica: {clock, ...}}``: events seen beyond the contiguous context (they arrived
    out of order); :meth:`State.compact` folds them into the context once the gap fills.
value
    ``(topic, pid, key, meta)`` under its tag. A presence is *live* while its tag is in
    ``values``; it is *removed* once its tag is seen (context or cloud) without a value.

Merging is the join of two such (seen, live) pairs: a remote value is added when its tag
was never seen here; a local value is removed when the remote has seen its tag but no
longer holds it. That join is commutative, associative and idempotent, so replicas that
exchange their deltas in any order, any number of times, converge (see
``tests/transport/presence/test_state.py``).

Where this differs from Phoenix's State (on purpose):

* A replica's own presences are authoritative locally: a merge never adds or removes a
  value tagged with this state's own replica (only its owner joins and leaves it; a
  replica that restarts is a new replica). Phoenix's extract leaves the requester's own
  values out while its context still covers them; skipping them here makes that safe.
* ``pid`` is opaque here. Values of other replicas are indexed by tag and topic only, so
  a remote pid only needs to be distinct within its replica (the shard sends ``str(pid)``).
* A diff never reports a presence of a replica that is down (it is not in any list).
* Sets, not lists, in memory; :func:`delta_to_wire` / :func:`delta_from_wire` (and the
  snapshot pair) turn them into tuples, lists and ints for the PubSub wire.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Iterator
from typing import Any, NamedTuple

__all__ = [
    "Delta",
    "DeltaGenerations",
    "Presence",
    "Snapshot",
    "State",
    "delta_from_wire",
    "delta_to_wire",
    "dominates",
    "snapshot_from_wire",
    "snapshot_to_wire",
]

Replica = Hashable
Tag = tuple  # (replica, clock)
Context = dict  # {replica: clock}
Clouds = dict  # {replica: set[clock]}
Value = tuple[str, Any, Any, Any]  # (topic, pid, key, meta)

UP = "up"
DOWN = "down"


class Presence(NamedTuple):
    """One element of the set, as joins, leaves and lists return it."""

    topic: str
    pid: Any
    key: Any
    meta: Any
    tag: tuple


# ----------------------------------------------------------------------------------------
# Clocks
# ----------------------------------------------------------------------------------------


def dominates(c1: Context, c2: Context) -> bool:
    """True if ``c1`` has seen everything ``c2`` has (a replica missing counts as 0)."""
    get = c1.get
    for replica, clock in c2.items():
        if get(replica, 0) < clock:
            return False
    return True


def _upperbound(c1: Context, c2: Context) -> Context:
    out = dict(c1)
    for replica, clock in c2.items():
        if out.get(replica, 0) < clock:
            out[replica] = clock
    return out


def _lowerbound(c1: Context, c2: Context) -> Context:
    out = dict(c1)
    for replica, clock in c2.items():
        mine = out.get(replica)
        if mine is None or clock < mine:
            out[replica] = clock
    return out


def _covered(context: Context, clouds: Clouds, tag: Tag) -> bool:
    replica, clock = tag
    if clock <= context.get(replica, 0):
        return True
    cloud = clouds.get(replica)
    return cloud is not None and clock in cloud


def _put_tag(clouds: Clouds, tag: Tag) -> None:
    replica, clock = tag
    cloud = clouds.get(replica)
    if cloud is None:
        clouds[replica] = {clock}
    else:
        cloud.add(clock)


# ----------------------------------------------------------------------------------------
# Deltas and snapshots
# ----------------------------------------------------------------------------------------


class Delta:
    """The events of a stretch of one replica's history, ready to send.

    ``values``: the presences added in that stretch and still live; ``clouds``: every tag
    the stretch has seen (its joins, its leaves and the clock bumps of its leaves, and
    removals of other replicas' presences it observed); ``start``/``end``: the sender's
    own clock before and after the stretch (``{replica: clock}``), which lets deltas be
    chained into generations. A delta has no context of its own: what it has seen is its
    clouds.
    """

    __slots__ = ("clouds", "end", "start", "values")

    def __init__(self, start: Context, end: Context | None = None) -> None:
        self.values: dict[Tag, Value] = {}
        self.clouds: Clouds = {}
        self.start: Context = dict(start)
        self.end: Context = dict(start if end is None else end)

    def size(self) -> int:
        """Values plus tags: what Phoenix's ``delta_size`` counts."""
        return len(self.values) + sum(len(c) for c in self.clouds.values())

    def is_empty(self) -> bool:
        """True if the delta has seen no event."""
        return not any(self.clouds.values())

    def covers(self, tag: Tag) -> bool:
        """True if the delta has seen ``tag``."""
        cloud = self.clouds.get(tag[0])
        return cloud is not None and tag[1] in cloud

    def copy(self) -> Delta:
        """A copy that shares nothing mutable with this one."""
        out = Delta(self.start, self.end)
        out.values = dict(self.values)
        out.clouds = {r: set(c) for r, c in self.clouds.items()}
        return out

    def merge(self, later: Delta) -> Delta | None:
        """This delta followed by ``later``, as one delta; None if there is a gap between them.

        Contiguous when this delta's end has reached ``later``'s start (Phoenix's
        ``merge_deltas``).
        """
        if not self.end and later.start:
            return None
        if not all(clock >= later.start.get(replica, 0) for replica, clock in self.end.items()):
            return None
        out = Delta(_lowerbound(self.start, later.start), _upperbound(self.end, later.end))
        out.clouds = {r: set(c) for r, c in self.clouds.items()}
        for replica, cloud in later.clouds.items():
            mine = out.clouds.get(replica)
            if mine is None:
                out.clouds[replica] = set(cloud)
            else:
                mine |= cloud
        values = {tag: v for tag, v in self.values.items() if tag in later.values or not later.covers(tag)}
        for tag, v in later.values.items():
            if tag not in self.values and not self.covers(tag):
                values[tag] = v
        out.values = values
        return out

    def restricted(self, replicas: Iterable[Replica], exclude: Replica | None = None) -> Delta:
        """The part of the delta about ``replicas`` (those a receiver knows), without
        ``exclude``'s own values."""
        known = set(replicas)
        out = Delta({r: c for r, c in self.start.items() if r in known}, {r: c for r, c in self.end.items() if r in known})
        out.values = {tag: v for tag, v in self.values.items() if tag[0] in known and tag[0] != exclude}
        out.clouds = {r: set(c) for r, c in self.clouds.items() if r in known}
        return out

    def without_replica(self, replica: Replica) -> None:
        """Forget everything about ``replica`` (it is permanently down)."""
        self.start.pop(replica, None)
        self.end.pop(replica, None)
        self.clouds.pop(replica, None)
        for tag in [t for t in self.values if t[0] == replica]:
            del self.values[tag]

    def __repr__(self) -> str:
        return f"<Delta {len(self.values)} values, {self.size()} size, {self.start} -> {self.end}>"


class Snapshot:
    """A whole state as another replica may merge it (Phoenix's ``extract`` of a State).

    ``replica`` the sender; ``context`` and ``clouds`` what it has seen; ``values`` its live
    presences, leaving out those the receiver cannot place (of replicas it does not know)
    and the receiver's own.
    """

    __slots__ = ("clouds", "context", "replica", "values")

    def __init__(self, replica: Replica, context: Context, clouds: Clouds, values: dict[Tag, Value]) -> None:
        self.replica = replica
        self.context = context
        self.clouds = clouds
        self.values = values

    def covers(self, tag: Tag) -> bool:
        """True if the sender has seen ``tag``."""
        return _covered(self.context, self.clouds, tag)

    def __repr__(self) -> str:
        return f"<Snapshot of {self.replica!r}: {len(self.values)} values>"


def _context_to_wire(context: Context) -> list:
    return [(r, c) for r, c in context.items()]


def _context_from_wire(items: Any) -> Context:
    return {_replica(r): int(c) for r, c in items}


def _replica(r: Any) -> Any:
    # Tuples survive the term codec; lists (e.g. after JSON) are turned back into tuples
    # so that a replica stays hashable.
    return tuple(r) if isinstance(r, list) else r


def _values_to_wire(values: dict[Tag, Value]) -> list:
    out = []
    for (replica, clock), (topic, pid, key, meta) in values.items():
        out.append((replica, clock, topic, pid if pid.__class__ in (str, int) else str(pid), key, meta))
    return out


def _values_from_wire(items: Any) -> dict[Tag, Value]:
    return {(_replica(r), int(c)): (topic, pid, key, meta) for r, c, topic, pid, key, meta in items}


def _clouds_to_wire(clouds: Clouds) -> list:
    return [(r, sorted(c)) for r, c in clouds.items() if c]


def _clouds_from_wire(items: Any) -> Clouds:
    return {_replica(r): {int(c) for c in cs} for r, cs in items}


def delta_to_wire(delta: Delta) -> dict:
    """A delta as plain terms (dicts, lists, tuples, str, int): what a heartbeat carries.

    Pids other than str/int become ``str(pid)``: another replica needs them only to tell
    two presences apart.
    """
    return {
        "values": _values_to_wire(delta.values),
        "clouds": _clouds_to_wire(delta.clouds),
        "range": (_context_to_wire(delta.start), _context_to_wire(delta.end)),
    }


def delta_from_wire(data: Any) -> Delta:
    """The inverse of :func:`delta_to_wire`; ``ValueError``/``TypeError``/``KeyError`` on bad input."""
    start, end = data["range"]
    out = Delta(_context_from_wire(start), _context_from_wire(end))
    out.values = _values_from_wire(data["values"])
    out.clouds = _clouds_from_wire(data["clouds"])
    return out


def snapshot_to_wire(snapshot: Snapshot) -> dict:
    """A snapshot as plain terms (see :func:`delta_to_wire`)."""
    return {
        "replica": snapshot.replica,
        "context": _context_to_wire(snapshot.context),
        "clouds": _clouds_to_wire(snapshot.clouds),
        "values": _values_to_wire(snapshot.values),
    }


def snapshot_from_wire(data: Any) -> Snapshot:
    """The inverse of :func:`snapshot_to_wire`."""
    return Snapshot(
        _replica(data["replica"]),
        _context_from_wire(data["context"]),
        _clouds_from_wire(data["clouds"]),
        _values_from_wire(data["values"]),
    )


# ----------------------------------------------------------------------------------------
# The state
# ----------------------------------------------------------------------------------------


class State:
    """One replica's view of the set; see the module docs.

    Mutated in place (it holds every presence of a shard, 10,000s of them); the methods
    that change what is live return what joined and what left, as :class:`Presence`
    lists, for the shard to report.
    """

    __slots__ = ("clouds", "context", "delta", "local", "pids", "replica", "replicas", "topics", "values")

    def __init__(self, replica: Replica) -> None:
        self.replica = replica
        self.context: Context = {replica: 0}
        self.clouds: Clouds = {}
        #: tag -> (topic, pid, key, meta), every replica's live presences
        self.values: dict[Tag, Value] = {}
        #: topic -> {tag: None} (insertion ordered), for lists by topic
        self.topics: dict[str, dict[Tag, None]] = {}
        #: (topic, pid, key) -> tag, this replica's own presences
        self.local: dict[tuple, Tag] = {}
        #: pid -> {(topic, key): None}, this replica's own presences by process
        self.pids: dict[Any, dict[tuple, None]] = {}
        self.replicas: dict[Replica, str] = {replica: UP}
        self.delta = Delta({replica: 0})

    def __repr__(self) -> str:
        return f"<State {self.replica!r}: {len(self.values)} values, {len(self.replicas)} replicas>"

    # -- reading ------------------------------------------------------------------------

    def clocks(self) -> tuple[Replica, Context]:
        """``(replica, context)``: what a heartbeat announces."""
        return (self.replica, dict(self.context))

    def _presence(self, tag: Tag) -> Presence:
        topic, pid, key, meta = self.values[tag]
        return Presence(topic, pid, key, meta, tag)

    def _is_up(self, replica: Replica) -> bool:
        return self.replicas.get(replica) == UP

    def get_by_topic(self, topic: str) -> list[Presence]:
        """The topic's presences of replicas that are up, oldest first."""
        tags = self.topics.get(topic)
        if not tags:
            return []
        values = self.values
        replicas = self.replicas
        out = []
        for tag in tags:
            if replicas.get(tag[0]) == UP:
                topic_, pid, key, meta = values[tag]
                out.append(Presence(topic_, pid, key, meta, tag))
        return out

    def get_by_key(self, topic: str, key: Any) -> list[Presence]:
        """The presences of ``key`` on ``topic`` (replicas that are up)."""
        return [p for p in self.get_by_topic(topic) if p.key == key]

    def get_by_pid(self, pid: Any, topic: str | None = None, key: Any = None) -> Any:
        """This replica's presence of ``pid`` on ``topic`` under ``key`` (or None); with
        ``topic`` None, all of ``pid``'s presences as a list."""
        if topic is None:
            return [self._presence(self.local[(t, pid, k)]) for (t, k) in self.pids.get(pid, ())]
        tag = self.local.get((topic, pid, key))
        return None if tag is None else self._presence(tag)

    def online_list(self) -> list[Presence]:
        """Every presence of a replica that is up."""
        return [self._presence(tag) for tag in self.values if self._is_up(tag[0])]

    def topic_count(self) -> int:
        """How many topics hold a presence (of any replica)."""
        return len(self.topics)

    # -- local changes ------------------------------------------------------------------

    def _bump(self) -> Tag:
        clock = self.context[self.replica] + 1
        self.context[self.replica] = clock
        tag = (self.replica, clock)
        _put_tag(self.delta.clouds, tag)
        self.delta.end[self.replica] = clock
        return tag

    def _insert(self, tag: Tag, topic: str, pid: Any, key: Any, meta: Any) -> None:
        self.values[tag] = (topic, pid, key, meta)
        tags = self.topics.get(topic)
        if tags is None:
            self.topics[topic] = {tag: None}
        else:
            tags[tag] = None

    def _delete(self, tag: Tag) -> Value:
        value = self.values.pop(tag)
        topic = value[0]
        tags = self.topics[topic]
        del tags[tag]
        if not tags:
            del self.topics[topic]
        return value

    def join(self, pid: Any, topic: str, key: Any, meta: Any) -> Presence:
        """Add a presence of this replica. ``ValueError`` if ``(pid, topic, key)`` is already
        tracked (leave it first, or use :meth:`leave_join`)."""
        if (topic, pid, key) in self.local:
            raise ValueError(f"already tracked: {(pid, topic, key)!r}")
        tag = self._bump()
        self._insert(tag, topic, pid, key, meta)
        self.local[(topic, pid, key)] = tag
        keys = self.pids.get(pid)
        if keys is None:
            self.pids[pid] = {(topic, key): None}
        else:
            keys[(topic, key)] = None
        self.delta.values[tag] = (topic, pid, key, meta)
        return Presence(topic, pid, key, meta, tag)

    def leave(self, pid: Any, topic: str, key: Any) -> Presence | None:
        """Remove one presence of this replica; what left, or None if it was not tracked."""
        tag = self.local.pop((topic, pid, key), None)
        if tag is None:
            return None
        keys = self.pids[pid]
        del keys[(topic, key)]
        if not keys:
            del self.pids[pid]
        value = self._delete(tag)
        self.delta.values.pop(tag, None)
        _put_tag(self.delta.clouds, tag)
        self._bump()
        return Presence(*value, tag)

    def leave_pid(self, pid: Any) -> list[Presence]:
        """Remove every presence of ``pid`` (its process died or was untracked)."""
        return [p for (topic, key) in list(self.pids.get(pid, ())) if (p := self.leave(pid, topic, key)) is not None]

    def leave_join(self, pid: Any, topic: str, key: Any, meta: Any) -> tuple[Presence, Presence]:
        """Replace a presence's meta (an update): ``(left, joined)``; ``KeyError`` if not tracked."""
        left = self.leave(pid, topic, key)
        if left is None:
            raise KeyError((pid, topic, key))
        return left, self.join(pid, topic, key, meta)

    # -- deltas -------------------------------------------------------------------------

    def has_delta(self) -> bool:
        """True if something happened since the last :meth:`take_delta`."""
        return not self.delta.is_empty()

    def take_delta(self) -> Delta:
        """The pending delta, replaced by an empty one starting at the current clock."""
        delta = self.delta
        self.delta = Delta({self.replica: self.context[self.replica]})
        self.compact()
        return delta

    def extract(self, remote: Replica, remote_context: Context) -> Snapshot:
        """The whole state as ``remote`` may merge it: values of replicas it knows,
        except its own."""
        known = remote_context.keys()
        values = {tag: v for tag, v in self.values.items() if tag[0] != remote and tag[0] in known}
        clouds = {r: set(c) for r, c in self.clouds.items() if r in known}
        return Snapshot(self.replica, dict(self.context), clouds, values)

    # -- merging ------------------------------------------------------------------------

    def merge(self, remote: Delta | Snapshot) -> tuple[list[Presence], list[Presence]]:
        """Merge a delta or a snapshot of another replica; ``(joins, leaves)``.

        Values of replicas this state does not know (not up nor down: never seen, or
        permanently gone) are ignored, as are values tagged with this replica.
        """
        me = self.replica
        context = self.context
        clouds = self.clouds
        joins: list[Presence] = []
        leaves: list[Presence] = []
        for tag, value in remote.values.items():
            replica = tag[0]
            if replica == me or replica not in context or _covered(context, clouds, tag):
                continue
            topic, pid, key, meta = value
            self._insert(tag, topic, pid, key, meta)
            if self.replicas.get(replica) == UP:
                joins.append(Presence(topic, pid, key, meta, tag))
        # Removals: a tag the remote has seen but no longer holds. For a delta only its
        # clouds can say so; a snapshot may cover any of our tags.
        if isinstance(remote, Delta):
            candidates: Iterable[Tag] = (
                (replica, clock) for replica, cloud in remote.clouds.items() if replica != me for clock in cloud
            )
        else:
            candidates = [tag for tag in self.values if tag[0] != me and remote.covers(tag)]
        remote_values = remote.values
        values = self.values
        for tag in candidates:
            if tag in values and tag not in remote_values:
                value = self._delete(tag)
                # Pass the removal on, as Phoenix does: a replica that missed it from
                # its owner can learn it from us.
                self.delta.values.pop(tag, None)
                _put_tag(self.delta.clouds, tag)
                if self.replicas.get(tag[0]) == UP:
                    leaves.append(Presence(*value, tag))
        for replica, cloud in remote.clouds.items():
            if replica == me or replica not in context or not cloud:
                continue
            mine = clouds.get(replica)
            if mine is None:
                clouds[replica] = set(cloud)
            else:
                mine |= cloud
        if isinstance(remote, Snapshot):
            for replica, clock in remote.context.items():
                if replica != me and replica in context and context[replica] < clock:
                    context[replica] = clock
        self.compact()
        return joins, leaves

    def compact(self) -> None:
        """Fold cloud tags that continue the context into it; drop those already covered."""
        context = self.context
        for replica in list(self.clouds):
            cloud = self.clouds[replica]
            clock = context.get(replica)
            if clock is None:
                del self.clouds[replica]
                continue
            while clock + 1 in cloud:
                clock += 1
            context[replica] = clock
            if cloud and min(cloud) <= clock:
                cloud = {c for c in cloud if c > clock}
            if cloud:
                self.clouds[replica] = cloud
            else:
                del self.clouds[replica]

    # -- replicas -----------------------------------------------------------------------

    def _replica_values(self, replica: Replica) -> Iterator[Presence]:
        for tag, (topic, pid, key, meta) in self.values.items():
            if tag[0] == replica:
                yield Presence(topic, pid, key, meta, tag)

    def replica_up(self, replica: Replica) -> list[Presence]:
        """Mark ``replica`` up (first heard of, or back); its presences that rejoin."""
        if replica == self.replica:
            return []
        was = self.replicas.get(replica)
        self.replicas[replica] = UP
        self.context.setdefault(replica, 0)
        return list(self._replica_values(replica)) if was == DOWN else []

    def replica_down(self, replica: Replica) -> list[Presence]:
        """Mark ``replica`` down (silent): its presences leave every list; kept for a return."""
        if replica == self.replica or self.replicas.get(replica) != UP:
            return []
        self.replicas[replica] = DOWN
        return list(self._replica_values(replica))

    def remove_down_replica(self, replica: Replica) -> list[Presence]:
        """Forget ``replica`` for good (permanently down); its presences that were still
        listed (it was up) are returned as leaves."""
        if replica == self.replica:
            return []
        was = self.replicas.pop(replica, None)
        tags = [tag for tag in self.values if tag[0] == replica]
        left = []
        for tag in tags:
            value = self._delete(tag)
            if was == UP:
                left.append(Presence(*value, tag))
        self.context.pop(replica, None)
        self.clouds.pop(replica, None)
        self.delta.without_replica(replica)
        return left

    def down_replicas(self) -> list[Replica]:
        """Replicas that are down (not yet forgotten)."""
        return [r for r, s in self.replicas.items() if s == DOWN]


# ----------------------------------------------------------------------------------------
# Delta generations
# ----------------------------------------------------------------------------------------


class DeltaGenerations:
    """The last deltas a replica sent, merged into generations of bounded size.

    Phoenix's ``DeltaGeneration``: a replica that missed some heartbeats asks for a
    transfer; if one generation spans exactly from what it has seen to now, that (smaller)
    delta answers instead of the whole state. ``max_sizes`` are the generations' size
    limits (Phoenix's ``[100, 1000, 10_000]``).
    """

    __slots__ = ("generations", "max_sizes")

    def __init__(self, max_sizes: Iterable[int] = (100, 1000, 10_000)) -> None:
        self.max_sizes = tuple(max_sizes)
        self.generations: list[Delta] = []

    def push(self, delta: Delta) -> None:
        """Record a delta this replica sent."""
        if not self.generations:
            self.generations = [delta.copy() for _ in self.max_sizes]
            return
        out = []
        prev = delta
        for gen, max_size in zip(self.generations, self.max_sizes):
            merged = gen.merge(delta)
            if merged is None:
                # A gap (cannot happen for our own deltas): keep the generation as it was.
                out.append(gen)
                prev = gen
            elif merged.size() <= max_size:
                out.append(merged)
                prev = merged
            else:
                # Too big: this generation starts over from the previous (smaller) one.
                out.append(prev.copy())
        self.generations = out

    def reset(self) -> None:
        """Forget every generation."""
        self.generations = []

    def remove_replica(self, replica: Replica) -> None:
        """Forget ``replica`` (permanently down) in every generation."""
        for gen in self.generations:
            gen.without_replica(replica)

    def fulfilling(self, owner: Replica, remote_context: Context, local_context: Context) -> Delta | None:
        """The smallest generation that takes ``remote_context`` (which has seen up to
        ``remote_context[owner]`` of ``owner``) to ``owner``'s present; None if none does.

        A generation holds only ``owner``'s own events, so it answers only a remote that
        lags on ``owner`` alone: if it also lags on another replica that both know, None
        (send the whole state), where Phoenix would send the delta and let the next
        transfer request catch up.
        """
        for replica, clock in local_context.items():
            if replica != owner and replica in remote_context and remote_context[replica] < clock:
                return None
        have = remote_context.get(owner, 0)
        for gen in self.generations:
            start = gen.start.get(owner, 0)
            end = gen.end.get(owner, 0)
            if start < end and start <= have < end:
                return gen
        return None
