"""The tracker shard: the thin process that owns one partition's :class:`State`.

As phoenix_pubsub's ``Phoenix.Tracker.Shard``. Client side: :func:`call` with
``('track', pid, topic, key, meta)``, ``('untrack', pid, topic, key)``, ``('untrack',
pid)``, ``('update', pid, topic, key, meta_or_fn)``, ``'replicas'``, ``'statistics'``,
``'graceful_permdown'`` (the tracker module wraps them); lists are read from the state
directly by the caller (Phoenix's ``dirty_list``), with no mailbox hop.

Server side, every ``broadcast_period`` ms:

1. Heartbeat: if the state has a delta, broadcast it to the shard's topic
   (``phx_presence:<shard name>``) on every node; if nothing happened for
   ``max_silent_periods`` periods, broadcast an empty heartbeat so that others know we
   are alive. Both carry this replica's clocks.
2. Every ``clock_sample_periods`` heartbeats, compare the clocks heard since with ours:
   a replica that has seen events we have not (a delta we missed, or events from before
   we started) gets a ``transfer_req``; it answers with a ``transfer_ack`` holding the
   smallest delta generation that fills the gap, or its whole state.
3. Replicas silent for ``down_period`` are down (their presences leave every list and
   are reported as leaves); silent for ``permdown_period``, they are forgotten.

A tracked process is monitored; when it dies its presences leave. On a graceful stop
(``shutdown`` or ``normal``, e.g. the application stopping) the shard broadcasts
``graceful_permdown`` and the other nodes drop its presences at once; a crash does not,
and the restarted shard is a new replica (new vsn), which makes the others drop the old
one's presences as soon as they hear from the new one.

Messages between shards (all plain terms, :mod:`transport.terms` encodable; Phoenix's
shapes, atoms as :class:`~transport.terms.Atom`)::

    (:pub, :heartbeat, replica, delta | :empty, clocks)
    (:pub, :transfer_req, ref, replica, clocks)
    (:pub, :transfer_ack, ref, replica, ("delta", delta) | ("state", snapshot))
    (:pub, :graceful_permdown, replica)

``replica`` is ``(node_name, vsn)``, ``clocks`` is ``(replica, [(replica, clock), ...])``;
deltas and snapshots are in the wire form of :mod:`._state`. A message that does not
parse is logged once per sender and dropped; it never stops the shard.
"""

from __future__ import annotations

import base64
import itertools
import logging
import random
import struct
import time
from collections.abc import Callable
from typing import Any

import actors
from actors import GenServer, Pid
from transport import pubsub
from transport.terms import Atom

from ._replica import Replicas
from ._state import (
    DeltaGenerations,
    Presence,
    State,
    _context_from_wire,
    _context_to_wire,
    delta_from_wire,
    delta_to_wire,
    dominates,
    snapshot_from_wire,
    snapshot_to_wire,
)

__all__ = ["Shard", "random_ref"]

log = logging.getLogger("transport.presence")

PUB = Atom("pub")
HEARTBEAT = Atom("heartbeat")
TRANSFER_REQ = Atom("transfer_req")
TRANSFER_ACK = Atom("transfer_ack")
GRACEFUL_PERMDOWN = Atom("graceful_permdown")
EMPTY = Atom("empty")

_unique = itertools.count()


def random_ref() -> str:
    """A presence ref (``phx_ref``): unique, URL-safe, 16 characters.

    Time in ns, 16 bits of randomness and a 16-bit counter, base64url, as Phoenix's
    shard builds its refs from time, node/pid hash and a unique integer.
    """
    raw = struct.pack(">QHH", time.time_ns(), random.getrandbits(16), next(_unique) & 0xFFFF)
    return base64.urlsafe_b64encode(raw).decode("ascii")


def _now_ms() -> float:
    return time.monotonic() * 1000.0


class ShardState:
    """What a shard process holds."""

    __slots__ = (
        "bad_senders",
        "config",
        "generations",
        "index",
        "last_error",
        "monitors",
        "name",
        "pending_clocks",
        "presences",
        "replica",
        "replicas",
        "sample_count",
        "silent_periods",
        "stopping",
        "topic",
    )

    def __init__(self, config: Any, index: int, node_name: str) -> None:
        self.config = config
        self.index = index
        self.name = f"{config.name}_shard{index}"
        # Shards of the same number replicate each other on this topic: the namespace
        # (default the tracker's name) must be the same on every node.
        self.topic = f"phx_presence:{config.namespace}_shard{index}"
        # vsn: this incarnation (µs since the epoch, as Phoenix's System.system_time).
        self.replica = (node_name, time.time_ns() // 1000)
        self.presences = State(self.replica)
        self.replicas = Replicas()
        self.generations = DeltaGenerations(config.max_delta_sizes)
        self.pending_clocks: dict[str, tuple[tuple, dict]] = {}
        self.silent_periods = config.max_silent_periods
        self.sample_count = config.clock_sample_periods
        self.monitors: dict[Pid, Any] = {}
        self.bad_senders: set = set()
        self.last_error: Any = None
        self.stopping = False

    def __repr__(self) -> str:
        return f"<TrackerShard {self.name!r} {self.replica!r}: {len(self.presences.values)} presences>"


class Shard(GenServer):
    """One tracker shard; started by the tracker's supervisor."""

    # -- server callbacks ---------------------------------------------------------------

    def init(self, arg: tuple[Any, int, dict]) -> Any:
        config, index, registry = arg
        actors.trap_exit(True)  # so that a supervisor's shutdown runs terminate (graceful permdown)
        actors.set_label(("tracker_shard", config.name, index))
        node = pubsub.node_name(config.pubsub_server)
        state = ShardState(config, index, node)
        registry[index] = state
        pubsub.subscribe(config.pubsub_server, state.topic)
        # Stuttered first beat, as Phoenix: shards started together do not beat together.
        actors.send_after(actors.self(), "heartbeat", random.randint(0, max(0, config.broadcast_period // 4)))
        return ("ok", state)

    def handle_call(self, request: Any, from_: Any, state: ShardState) -> Any:
        kind = request[0] if request.__class__ is tuple else request
        if kind == "track":
            _, pid, topic, key, meta = request
            return ("reply", self._track(state, pid, topic, key, meta), state)
        if kind == "untrack":
            if len(request) == 2:
                self._drop(state, state.presences.leave_pid(request[1]))
                self._unmonitor(state, request[1])
            else:
                _, pid, topic, key = request
                left = state.presences.leave(pid, topic, key)
                if left is not None:
                    self._drop(state, [left])
                if pid not in state.presences.pids:
                    self._unmonitor(state, pid)
            return ("reply", "ok", state)
        if kind == "update":
            _, pid, topic, key, meta = request
            return ("reply", self._update(state, pid, topic, key, meta), state)
        if kind == "replicas":
            return ("reply", state.replicas.status(), state)
        if kind == "statistics":
            return ("reply", self._statistics(state), state)
        if kind == "sync":
            return ("reply", "ok", state)
        if kind == "heartbeat_now":
            # Tests and tools: beat at once (the timer keeps its own schedule).
            self._heartbeat(state)
            return ("reply", "ok", state)
        if kind == "graceful_permdown":
            self._graceful_permdown(state)
            return ("stop", "normal", "ok", state)
        return super().handle_call(request, from_, state)

    def handle_info(self, msg: Any, state: ShardState) -> Any:
        if msg == "heartbeat":
            self._heartbeat(state)
            self._request_transfers(state)
            self._detect_downs(state)
            actors.send_after(actors.self(), "heartbeat", state.config.broadcast_period)
            return ("noreply", state)
        if msg.__class__ is tuple and msg:
            if msg[0] == PUB:
                try:
                    self._handle_pub(msg, state)
                except (ValueError, TypeError, KeyError, IndexError, AttributeError) as e:
                    self._bad_message(state, msg, e)
                return ("noreply", state)
            if len(msg) == 5 and msg[0] == "DOWN":
                pid = msg[3]
                if state.monitors.get(pid) == msg[1]:
                    del state.monitors[pid]
                    self._drop(state, state.presences.leave_pid(pid))
                return ("noreply", state)
            if len(msg) == 3 and msg[0] == "EXIT":
                return ("noreply", state)
        return super().handle_info(msg, state)

    def terminate(self, reason: Any, state: ShardState) -> None:
        if not state.stopping and _is_graceful(reason):
            try:
                self._graceful_permdown(state)
            except Exception:  # noqa: BLE001 - the PubSub may be gone already
                log.debug("%s: graceful permdown not sent", state.name, exc_info=True)

    # -- local changes ------------------------------------------------------------------

    def _monitor(self, state: ShardState, pid: Pid) -> None:
        if pid not in state.monitors:
            state.monitors[pid] = actors.monitor(pid)

    def _unmonitor(self, state: ShardState, pid: Pid) -> None:
        ref = state.monitors.pop(pid, None)
        if ref is not None:
            actors.demonitor(ref, flush=True)

    def _track(self, state: ShardState, pid: Pid, topic: str, key: Any, meta: dict) -> Any:
        if state.presences.get_by_pid(pid, topic, key) is not None:
            return ("error", ("already_tracked", pid, topic, key))
        ref = random_ref()
        meta = {**meta, "phx_ref": ref}
        self._monitor(state, pid)
        presence = state.presences.join(pid, topic, key, meta)
        self._report(state, [presence], [])
        return ("ok", ref)

    def _update(self, state: ShardState, pid: Pid, topic: str, key: Any, meta: Any) -> Any:
        current = state.presences.get_by_pid(pid, topic, key)
        if current is None:
            return ("error", "nopresence")
        prev_meta = current.meta
        new_meta = meta(prev_meta) if callable(meta) else meta
        if not isinstance(new_meta, dict):
            return ("error", ("bad_meta", "update needs a dict, or a function returning one"))
        ref = random_ref()
        new_meta = {**new_meta, "phx_ref": ref, "phx_ref_prev": prev_meta.get("phx_ref")}
        left, joined = state.presences.leave_join(pid, topic, key, new_meta)
        self._report(state, [joined], [left])
        return ("ok", ref)

    def _drop(self, state: ShardState, leaves: list[Presence]) -> None:
        if leaves:
            self._report(state, [], leaves)

    def _report(self, state: ShardState, joins: list[Presence], leaves: list[Presence]) -> None:
        handle_diff: Callable | None = state.config.handle_diff
        if handle_diff is None or (not joins and not leaves):
            return
        diff: dict[str, tuple[list, list]] = {}
        for p in joins:
            entry = diff.get(p.topic)
            if entry is None:
                entry = diff[p.topic] = ([], [])
            entry[0].append((p.key, p.meta))
        for p in leaves:
            entry = diff.get(p.topic)
            if entry is None:
                entry = diff[p.topic] = ([], [])
            entry[1].append((p.key, p.meta))
        try:
            handle_diff(diff)
        except Exception:  # noqa: BLE001 - a diff handler's bug must not lose the state
            log.exception("%s: handle_diff failed for topics %s", state.name, sorted(diff)[:5])

    # -- heartbeats and transfers --------------------------------------------------------

    def _broadcast(self, state: ShardState, msg: tuple) -> None:
        try:
            result = pubsub.broadcast_from(state.config.pubsub_server, actors.self(), state.topic, msg)
        except pubsub.PubSubError as e:  # the PubSub is restarting: the next beat retries
            result = ("error", str(e))
        self._note_result(state, result)

    def _direct(self, state: ShardState, node: str, msg: tuple) -> None:
        try:
            result = pubsub.direct_broadcast(node, state.config.pubsub_server, state.topic, msg)
        except pubsub.PubSubError as e:
            result = ("error", str(e))
        self._note_result(state, result)

    @staticmethod
    def _note_result(state: ShardState, result: Any) -> None:
        # A lost heartbeat or transfer is repaired by the next ones (clocks show the
        # gap), so an error is logged when it starts or changes, not once per beat.
        if result == "ok":
            if state.last_error is not None:
                log.info("%s: broadcasts to other nodes work again", state.name)
                state.last_error = None
            return
        kind = result[1][0] if result.__class__ is tuple and len(result) == 2 and result[1].__class__ is tuple else result
        if kind != state.last_error:
            state.last_error = kind
            log.warning("%s: a tracker message did not reach every node: %r (repeats of this are not logged)", state.name, result)

    def _heartbeat(self, state: ShardState) -> None:
        presences = state.presences
        if presences.has_delta():
            delta = presences.take_delta()
            self._broadcast(state, (PUB, HEARTBEAT, state.replica, delta_to_wire(delta), _clocks_to_wire(presences)))
            state.generations.push(delta)
            state.silent_periods = 0
        elif state.silent_periods >= state.config.max_silent_periods:
            self._broadcast(state, (PUB, HEARTBEAT, state.replica, EMPTY, _clocks_to_wire(presences)))
            state.silent_periods = 0
        else:
            state.silent_periods += 1

    def _request_transfers(self, state: ShardState) -> None:
        if state.sample_count > 1:
            state.sample_count -= 1
            return
        state.sample_count = state.config.clock_sample_periods
        ours = state.presences.context
        candidates = []
        for name, (ref, clock) in state.pending_clocks.items():
            info = state.replicas.by_name.get(name)
            if info is None or info.ref != ref or info.status != "up":
                continue
            known = {r: c for r, c in clock.items() if r in ours}
            if not dominates(ours, known):
                candidates.append((ref, known))
        state.pending_clocks.clear()
        # Ask only replicas whose knowledge no other candidate's covers (Phoenix's clockset).
        for i, (ref, clock) in enumerate(candidates):
            if any(j != i and dominates(other, clock) and (other != clock or j < i) for j, (_, other) in enumerate(candidates)):
                continue
            msg = (PUB, TRANSFER_REQ, actors.make_ref().__repr__(), state.replica, _clocks_to_wire(state.presences))
            if state.config.log_level:
                log.log(_level(state.config.log_level), "%s: transfer_req to %s", state.name, ref[0])
            self._direct(state, ref[0], msg)

    def _detect_downs(self, state: ShardState) -> None:
        events = state.replicas.detect_downs(_now_ms(), state.config.down_period, state.config.permdown_period)
        self._apply_replica_events(state, events)

    def _apply_replica_events(self, state: ShardState, events: list[tuple[str, tuple]]) -> None:
        for event, ref in events:
            if state.config.log_level:
                log.log(_level(state.config.log_level), "%s: replica %s %s", state.name, event, ref[0])
            if event == "up":
                self._report(state, state.presences.replica_up(ref), [])
                # A replica we did not hear from (new, back, or a new incarnation) learns of
                # us at our next beat rather than after max_silent_periods: it then sees our
                # clock and asks for what it lacks. (Phoenix waits for the silent beat.)
                state.silent_periods = state.config.max_silent_periods
            elif event == "down":
                self._report(state, [], state.presences.replica_down(ref))
            elif event == "permdown":
                self._report(state, [], state.presences.remove_down_replica(ref))
                state.generations.remove_replica(ref)
                state.pending_clocks.pop(ref[0], None)

    def _handle_pub(self, msg: tuple, state: ShardState) -> None:
        kind = msg[1]
        if kind == HEARTBEAT:
            _, _, ref, delta, clocks = msg
            ref = _ref(ref)
            if ref == state.replica:
                return
            self._apply_replica_events(state, state.replicas.heartbeat(ref, _now_ms()))
            if delta != EMPTY:
                joins, leaves = state.presences.merge(delta_from_wire(delta))
                self._report(state, joins, leaves)
            clock_ref, context = _clocks_from_wire(clocks)
            state.pending_clocks[ref[0]] = (clock_ref, context)
        elif kind == TRANSFER_REQ:
            _, _, req_ref, ref, clocks = msg
            ref = _ref(ref)
            _, remote_context = _clocks_from_wire(clocks)
            presences = state.presences
            gen = state.generations.fulfilling(state.replica, remote_context, presences.context)
            if gen is not None:
                payload: tuple = ("delta", delta_to_wire(gen.restricted(remote_context, exclude=ref)))
            else:
                payload = ("state", snapshot_to_wire(presences.extract(ref, remote_context)))
            reply = (PUB, TRANSFER_ACK, req_ref, state.replica, payload)
            self._direct(state, ref[0], reply)
        elif kind == TRANSFER_ACK:
            _, _, _req_ref, ref, (form, data) = msg
            ref = _ref(ref)
            info = state.replicas.by_name.get(ref[0])
            if info is None or info.ref != ref:
                return  # from a replica we do not know (yet): its heartbeat will come
            remote = delta_from_wire(data) if form == "delta" else snapshot_from_wire(data)
            joins, leaves = state.presences.merge(remote)
            self._report(state, joins, leaves)
        elif kind == GRACEFUL_PERMDOWN:
            ref = _ref(msg[2])
            info = state.replicas.remove(ref)
            if info is not None:
                events = [("down", ref)] if info.status == "up" else []
                self._apply_replica_events(state, [*events, ("permdown", ref)])
        else:
            raise ValueError(f"unknown tracker message kind {kind!r}")

    def _graceful_permdown(self, state: ShardState) -> None:
        state.stopping = True
        self._broadcast(state, (PUB, GRACEFUL_PERMDOWN, state.replica))

    def _bad_message(self, state: ShardState, msg: Any, error: Exception) -> None:
        sender = None
        try:
            sender = _ref(msg[3] if msg[1] in (TRANSFER_REQ, TRANSFER_ACK) else msg[2])
        except Exception:  # noqa: BLE001 - the message is bad: name it by kind only
            pass
        key: tuple[Any, Any] = (sender, msg[1] if len(msg) > 1 else None)
        try:
            hash(key)
        except TypeError:
            key = ("unhashable", None)
        if key in state.bad_senders:
            return
        state.bad_senders.add(key)
        log.warning(
            "%s: dropped a bad tracker message from %r (%s: %s); further ones from it are dropped silently",
            state.name,
            sender,
            type(error).__name__,
            error,
        )

    def _statistics(self, state: ShardState) -> dict[str, Any]:
        presences = state.presences
        return {
            "shard": state.name,
            "replica": state.replica,
            "presences": len(presences.values),
            "local_presences": len(presences.local),
            "topics": presences.topic_count(),
            "tracked_processes": len(state.monitors),
            "replicas": state.replicas.status(),
            "pending_delta_size": presences.delta.size(),
            "generation_sizes": [g.size() for g in state.generations.generations],
        }


def _ref(ref: Any) -> tuple:
    if isinstance(ref, list):
        ref = tuple(ref)
    if ref.__class__ is not tuple or len(ref) != 2 or not isinstance(ref[0], str):
        raise ValueError(f"a replica is (node_name, vsn), got {ref!r}")
    return ref


def _clocks_to_wire(presences: State) -> tuple:
    return (presences.replica, _context_to_wire(presences.context))


def _clocks_from_wire(clocks: Any) -> tuple[tuple, dict]:
    ref, context = clocks
    return _ref(ref), _context_from_wire(context)


def _is_graceful(reason: Any) -> bool:
    return reason in ("normal", "shutdown") or (reason.__class__ is tuple and len(reason) == 2 and reason[0] == "shutdown")


def _level(level: Any) -> int:
    if isinstance(level, int) and not isinstance(level, bool):
        return level
    return logging.getLevelName(str(level).upper()) if isinstance(level, str) else logging.DEBUG
