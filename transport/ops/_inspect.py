"""The one inspection layer: what the debug shell, the metrics and the dashboard read.

Plain functions returning plain data (dicts, lists, pids), built only from what every
process answers (``process_info``, ``get_state``/``get_status``, ``which_children``) and
from the public statistics of the runtime, the PubSub, the transports and Presence. No
printing, no formatting: each tool shapes the data its own way.

Listings of many processes run in the caller's process and give the server's loop a
full turn whenever they have worked :data:`WORK_SLICE` seconds (:class:`Pacer`), so a
listing of 30,000 processes costs the other sockets a few milliseconds at a time, never
a freeze. Functions that ask processes (``get_state``) take a ``timeout``: a process that
does not answer in time shows as None, it never holds the listing up for long.
"""

from __future__ import annotations

import heapq
import time
from typing import Any

import gevent
import gevent.pool

import actors
import supervision
from actors import Pid

from .. import pubsub as _pubsub
from .._channel import is_fastlane
from .._transport import outbound_queues, outbound_statistics

__all__ = [
    "PROCESS_SORTS",
    "STATE_TIMEOUT",
    "WORK_SLICE",
    "Pacer",
    "all_infos",
    "channel_count",
    "gather_states",
    "is_socket_label",
    "name_or_label",
    "outbound_totals",
    "overview",
    "presence_statistics",
    "process_detail",
    "pubsub_names",
    "pubsub_statistics",
    "runtime_statistics",
    "socket_channels",
    "socket_counts",
    "socket_row",
    "sockets",
    "subscriber_rows",
    "supervisor_restarts",
    "supervisor_state",
    "top_processes",
    "topic_counts",
    "tree",
    "try_state",
]

STATE_TIMEOUT = 0.5  # seconds a socket or a supervisor gets to answer get_state in a listing
# A listing gives the server's loop a full turn (timers and I/O, not only callbacks, which
# is all gevent.sleep(0) runs) whenever it has worked this long: with 30,000 processes the
# server kept serving with loop gaps of a few ms instead of freezing ~800 ms.
WORK_SLICE = 0.005
_LOOP_TURN = 1e-6  # any positive sleep makes the hub run a loop iteration


class Pacer:
    """Call :meth:`tick` once per item of a long listing; it yields to the loop in slices."""

    __slots__ = ("_since", "_count")

    def __init__(self) -> None:
        self._since = time.perf_counter()
        self._count = 0

    def tick(self) -> None:
        """Count one item; every 64 items, yield a loop turn if a slice's work is done."""
        self._count += 1
        if self._count & 63:
            return
        self.check()

    def check(self) -> None:
        """Yield a loop turn now if a slice's work is done (for callers that count themselves)."""
        now = time.perf_counter()
        if now - self._since >= WORK_SLICE:
            gevent.sleep(_LOOP_TURN)
            self._since = time.perf_counter()


# --------------------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------------------


def all_infos() -> list[dict[str, Any]]:
    """process_info of every live process, without stacks (the costly part), paced."""
    infos = []
    pacer = Pacer()
    for pid in actors.processes():
        pacer.tick()
        info = actors.process_info(pid, stack=False)
        if info is not None:
            infos.append(info)
    return infos


PROCESS_SORTS = {
    "queue": lambda i: i["message_queue_len"],
    "message_queue_len": lambda i: i["message_queue_len"],
    "links": lambda i: len(i["links"]),
    "monitors": lambda i: len(i["monitors"]),
    "monitored_by": lambda i: len(i["monitored_by"]),
    "pid": None,
}


def top_processes(sort: str = "queue", n: int | None = 20) -> tuple[list[dict[str, Any]], int]:
    """``(infos, total)``: the first ``n`` processes by ``sort`` (a key of
    :data:`PROCESS_SORTS`; ``'pid'``: oldest first), and how many are alive."""
    if sort not in PROCESS_SORTS:
        raise ValueError(f"sort must be one of {', '.join(repr(k) for k in PROCESS_SORTS)}; got {sort!r}")
    infos = all_infos()
    total = len(infos)
    key = PROCESS_SORTS[sort]
    if key is not None:
        infos = heapq.nlargest(total if n is None else n, infos, key=key)
    elif n is not None:
        infos = infos[:n]
    return infos, total


def name_or_label(info: dict[str, Any]) -> str:
    """A process's registered name, else its label's repr, else ''."""
    if info.get("registered_name"):
        return str(info["registered_name"])
    label = info.get("label")
    return repr(label) if label is not None else ""


def process_detail(pid: Pid, *, timeout: float = STATE_TIMEOUT, stack: bool = True) -> dict[str, Any] | None:
    """``{'info': process_info, 'status': the state as format_status shows it, or None}``
    for a live process (None if dead): what a drill-down shows. ``status`` is None when
    the process does not answer ``get_status`` within ``timeout`` (not sys-aware, or busy)."""
    info = actors.process_info(pid, stack=stack)
    if info is None:
        return None
    try:
        status = actors.get_status(pid, timeout=timeout)["state"]
    except actors.CallExit:
        status = None
    return {"info": info, "status": status}


def runtime_statistics() -> dict[str, Any]:
    """:func:`actors.statistics` (process count, mailboxes, spawns and exits), paced."""
    return actors.statistics(pace=Pacer().check)


# --------------------------------------------------------------------------------------
# Supervision
# --------------------------------------------------------------------------------------


def supervisor_state(pid: Pid, timeout: float = STATE_TIMEOUT) -> Any:
    """``get_state`` of a process, or None if it does not answer in time."""
    try:
        return actors.get_state(pid, timeout=timeout)
    except actors.CallExit:
        return None


try_state = supervisor_state


def _is_supervisor(state: Any) -> bool:
    return isinstance(state, (supervision.Supervisor, supervision.DynamicSupervisor))


def _restarts(state: Any) -> dict[str, Any] | None:
    stats = getattr(state, "restart_statistics", None)
    return stats() if callable(stats) else None


def tree(root: Pid, *, limit: int = 25, timeout: float = STATE_TIMEOUT) -> dict[str, Any] | None:
    """The supervision tree under ``root`` as nested dicts, or None if ``root`` is not a
    (live, answering) supervisor.

    Each node: ``pid`` (or ``'restarting'``/None), ``id``, ``type``, ``name``, ``label``,
    ``status``, ``queue``, and for supervisors ``supervisor`` (class name), ``strategy``,
    ``counts`` (count_children), ``restarts`` (``{'recent', 'total', 'max_restarts',
    'max_seconds'}``) and ``children`` (None if which_children went unanswered). Only the
    first ``limit`` children of a supervisor are looked into (a channel pool may hold
    100,000); the rest are listed with their pid and id only.
    """
    if not _is_supervisor(supervisor_state(root, timeout)):
        return None
    return _node(root, "root", "supervisor", limit, timeout, Pacer())


def _node(pid: Any, child_id: Any, kind: str, limit: int, timeout: float, pacer: Pacer, shown: bool = True) -> dict[str, Any]:
    pacer.tick()
    node: dict[str, Any] = {
        "pid": pid,
        "id": child_id,
        "type": kind,
        "name": None,
        "label": None,
        "status": None,
        "queue": None,
        "supervisor": None,
        "strategy": None,
        "counts": None,
        "restarts": None,
        "children": [],
    }
    if not isinstance(pid, Pid):
        # pid None: the child's start returned ignore (an adapter that needs no process, as
        # the local PubSub adapter) or it was terminated; OTP shows it as undefined.
        node["status"] = "restarting" if pid == "restarting" else "no process"
        return node
    if not shown:
        return node  # past the limit: listed, not looked into
    info = actors.process_info(pid, stack=False)
    if info is None:
        node["status"] = "dead"
        return node
    node.update(name=info["registered_name"], label=info["label"], status=info["status"], queue=info["message_queue_len"])
    if kind != "supervisor":
        return node
    state = supervisor_state(pid, timeout)
    if not _is_supervisor(state):
        node["supervisor"] = "?"
        return node
    node["supervisor"] = type(state).__qualname__
    node["strategy"] = getattr(state, "strategy", "one_for_one")
    node["restarts"] = _restarts(state)
    try:
        node["counts"] = supervision.count_children(pid, timeout=timeout)
        children = supervision.which_children(pid, timeout=timeout)
        if isinstance(state, supervision.Supervisor):
            children = children[::-1]  # OTP lists newest first; the tree reads in start order
    except actors.CallExit:
        node["children"] = None
        return node
    node["children"] = [_node(c.pid, c.id, c.type, limit, timeout, pacer, k < limit) for k, c in enumerate(children)]
    return node


def supervisor_restarts(root: Pid, *, timeout: float = STATE_TIMEOUT) -> list[dict[str, Any]]:
    """Every supervisor under ``root`` (``root`` included): ``{'supervisor': a stable name
    (registered name, else the path of child ids from the root), 'pid', 'total', 'recent'}``.

    Only supervisors are visited, and a DynamicSupervisor's children are not (a channel
    pool's partition holds the channels): its own restarts are counted, a supervisor it
    started is not.
    """
    rows: list[dict[str, Any]] = []
    pacer = Pacer()
    # Names from the registry: process_info of a supervisor sorts all its links (7,500
    # children for a channel pool's partition at 15,000 sockets).
    names = {}
    for name in actors.registered():
        named = actors.whereis(name)
        if named is not None:
            names[named] = name
    pending: list[tuple[Pid, str]] = [(root, "root")]
    while pending:
        pid, path = pending.pop()
        pacer.tick()
        state = supervisor_state(pid, timeout)
        if not _is_supervisor(state):
            continue
        restarts = _restarts(state) or {}
        name = names.get(pid, path)
        rows.append({"supervisor": name, "pid": pid, "total": restarts.get("total", 0), "recent": restarts.get("recent", 0)})
        if not isinstance(state, supervision.Supervisor):
            # A dynamic supervisor holds what is started at run time (channels, sessions,
            # 100,000 of them): listing its children at every scrape would cost more than
            # the restarts it could find there.
            continue
        try:
            children = supervision.which_children(pid, timeout=timeout)
        except actors.CallExit:
            continue
        for child in children:
            if child.type == "supervisor" and isinstance(child.pid, Pid):
                pending.append((child.pid, f"{path}/{child.id}"))
    rows.sort(key=lambda r: r["supervisor"])
    return rows


# --------------------------------------------------------------------------------------
# PubSub and Presence
# --------------------------------------------------------------------------------------


def pubsub_names() -> list[str]:
    """Names of the running PubSub servers (each registers its supervisor under its name)."""
    names = []
    for name in actors.registered():
        try:
            _pubsub.shards(name)
        except (_pubsub.UnknownPubSubError, TypeError):
            continue
        names.append(name)
    return names


def pubsub_statistics() -> list[dict[str, Any]]:
    """:func:`transport.pubsub.statistics` of every running PubSub (the Redis adapter's
    counters and nodes under ``adapter_statistics``)."""
    rows = []
    for name in pubsub_names():
        try:
            rows.append(_pubsub.statistics(name))
        except _pubsub.UnknownPubSubError:
            continue
    return rows


def topic_counts(pubsub: str) -> tuple[dict[str, int], dict[str, int]]:
    """``(subscriptions, processes)`` per topic of ``pubsub`` on this node, paced."""
    counts: dict[str, int] = {}
    distinct: dict[str, int] = {}
    pacer = Pacer()
    for topic in _pubsub.topics(pubsub):
        pacer.tick()
        entries = _pubsub.subscribers(pubsub, topic)
        counts[topic] = len(entries)
        distinct[topic] = len({pid for pid, _meta in entries})
    return counts, distinct


def subscriber_rows(pubsub: str, topic: str) -> list[dict[str, Any]]:
    """The subscriptions to ``topic``: ``{'pid', 'info' (None if dead), 'transport'}``
    (``transport``: the socket's transport pid for a channel's fastlane subscription)."""
    rows = []
    pacer = Pacer()
    for pid, meta in _pubsub.subscribers(pubsub, topic):
        pacer.tick()
        transport_pid = meta[1] if is_fastlane(meta) else None
        rows.append({"pid": pid, "info": actors.process_info(pid, stack=False), "transport": transport_pid})
    return rows


def presence_statistics(timeout: float = STATE_TIMEOUT) -> list[dict[str, Any]]:
    """One row per running Presence tracker: ``name``, ``presences`` (every node's),
    ``local_presences``, ``topics`` (sums over its shards) and ``replicas``."""
    from ..presence import running_trackers

    rows = []
    for tracker in running_trackers():
        totals: dict[str, Any] = {"name": tracker.name, "presences": 0, "local_presences": 0, "topics": 0, "replicas": {}}
        for shard in tracker.shards():
            try:
                stats = actors.call(shard, "statistics", timeout=timeout)
            except actors.CallExit:
                continue
            for key in ("presences", "local_presences", "topics"):
                totals[key] += stats.get(key, 0)
            totals["replicas"].update(stats.get("replicas") or {})
        rows.append(totals)
    return rows


# --------------------------------------------------------------------------------------
# Sockets
# --------------------------------------------------------------------------------------


def is_socket_label(label: Any) -> bool:
    """Whether a process label is a socket's transport: ``('socket', handler, id)``."""
    return label.__class__ is tuple and len(label) == 3 and label[0] == "socket"


def gather_states(pids: list[Pid], timeout: float = STATE_TIMEOUT) -> list[Any]:
    """get_state of many processes at once (None for those that do not answer in time)."""
    if not pids:
        return []
    if len(pids) == 1:
        return [try_state(pids[0], timeout)]
    pool = gevent.pool.Pool(64)
    return list(pool.imap(lambda p: try_state(p, timeout), pids))


def socket_row(pid: Pid, info: dict[str, Any], st: Any) -> dict[str, Any]:
    """One socket from its process_info and its ``get_state`` snapshot (None: unanswered,
    in which case the channels are found through their monitors on the transport)."""
    label = info["label"]
    snap = st if isinstance(st, dict) else {}
    channels = snap.get("channels")
    if not isinstance(channels, dict):
        channels = {}
        for watcher in info["monitored_by"]:
            winfo = actors.process_info(watcher, stack=False)
            wl = winfo["label"] if winfo else None
            if wl.__class__ is tuple and len(wl) == 2 and wl[0] == "channel":
                channels[wl[1]] = watcher
    return {
        "pid": pid,
        "handler": snap.get("handler", label[1]),
        "id": snap.get("id", label[2]),
        "transport": snap.get("transport"),
        "serializer": snap.get("serializer"),
        "peer": snap.get("peer"),
        "path": snap.get("path"),
        "channels": channels,
        "bytes_in": snap.get("bytes_in"),
        "bytes_out": snap.get("bytes_out"),
        "frames_in": snap.get("frames_in"),
        "frames_out": snap.get("frames_out"),
        "outbound": outbound_statistics(pid),
        "answered": bool(snap),
        "snapshot": snap,
    }


def sockets(
    peer: str | None = None,
    *,
    timeout: float = STATE_TIMEOUT,
    infos: list[dict[str, Any]] | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """Every socket (WebSocket and LongPoll), the largest outbound queue first, as
    :func:`socket_row` rows; ``peer``: only those whose ``ip:port`` contains it; ``limit``:
    only the first ``limit`` of them are asked for their state (a dashboard's page)."""
    if infos is None:
        infos = all_infos()
    found = [(i["pid"], i) for i in infos if is_socket_label(i["label"])]
    if limit is not None and peer is None:
        found.sort(key=lambda f: -((outbound_statistics(f[0]) or {}).get("bytes") or 0))
        found = found[:limit]
    states = gather_states([pid for pid, _ in found], timeout)
    rows = []
    for (pid, info), st in zip(found, states):
        row = socket_row(pid, info, st)
        if peer is not None and (row["peer"] is None or peer not in str(row["peer"])):
            continue
        rows.append(row)
    # A client that stopped reading shows first (its transport may not even answer).
    rows.sort(key=lambda r: -(r["outbound"] or {}).get("bytes", 0))
    return rows


def socket_channels(pid: Pid, *, timeout: float = STATE_TIMEOUT) -> dict[str, Pid] | None:
    """``{topic: channel pid}`` of a socket's transport process; None if ``pid`` is not one."""
    info = actors.process_info(pid, stack=False)
    if info is None or not is_socket_label(info["label"]):
        return None
    return socket_row(pid, info, try_state(pid, timeout))["channels"]


def socket_counts() -> dict[str, int]:
    """Open sockets by transport, without asking any process: WebSocket connections from
    the stream transports' registry, LongPoll sessions from their supervisors' child counts."""
    counts = {"websocket": len(outbound_queues()), "longpoll": 0}
    for name in actors.registered():
        # Every endpoint's LongPoll sessions live under one supervisor (longpoll.supervisor_name).
        if name.__class__ is str and name.endswith(".LongPoll.Supervisor"):
            try:
                counts["longpoll"] += supervision.count_children(name, timeout=STATE_TIMEOUT)["active"]
            except (actors.CallExit, actors.ActorsError):
                continue
    return counts


def channel_count(timeout: float = STATE_TIMEOUT) -> int:
    """Joined channels: the children of every endpoint's channel pool (``*.ChannelPool``)."""
    total = 0
    for name in actors.registered():
        if not (name.__class__ is str and name.endswith(".ChannelPool")):
            continue
        try:
            partitions = supervision.which_children(name, timeout=timeout)
        except (actors.CallExit, actors.ActorsError):
            continue
        for part in partitions:
            if isinstance(part.pid, Pid):
                try:
                    total += supervision.count_children(part.pid, timeout=timeout)["active"]
                except actors.CallExit:
                    continue
    return total


def outbound_totals() -> dict[str, int]:
    """Bytes and frames queued for all stream transports, the largest single queue, and the
    frames dropped by ``drop_oldest`` (of the sockets open now); read from the queues, paced."""
    total = frames = largest = dropped = 0
    pacer = Pacer()
    for queue in outbound_queues():
        pacer.tick()
        size = queue.bytes
        total += size
        frames += queue.frames
        dropped += queue.dropped
        if size > largest:
            largest = size
    return {"bytes": total, "frames": frames, "largest": largest, "dropped": dropped}


def overview(root: Any = None, *, timeout: float = STATE_TIMEOUT) -> dict[str, Any]:
    """Every figure a scrape or a dashboard tick needs, in one paced pass.

    ``sockets`` (:func:`socket_counts`), ``channels`` (:func:`channel_count`), ``runtime``
    (:func:`runtime_statistics`), ``outbound`` (:func:`outbound_totals`), ``pubsub``
    (:func:`pubsub_statistics`), ``presence`` (:func:`presence_statistics`) and, given the
    application root (a pid or a registered name), ``restarts``
    (:func:`supervisor_restarts`; else an empty list).
    """
    restarts: list[dict[str, Any]] = []
    if root is not None:
        pid = actors.whereis(root) if isinstance(root, str) else root
        if pid is not None and actors.is_alive(pid):
            restarts = supervisor_restarts(pid, timeout=timeout)
    return {
        "sockets": socket_counts(),
        "channels": channel_count(timeout),
        "runtime": runtime_statistics(),
        "outbound": outbound_totals(),
        "pubsub": pubsub_statistics(),
        "presence": presence_statistics(timeout),
        "restarts": restarts,
    }
