"""The tracker: a supervisor of ``pool_size`` shards and the functions that reach them.

Phoenix.Tracker. A topic belongs to shard ``crc32(topic) % pool_size`` (a stable hash, so
that every node puts a topic in the same shard: shards of the same number on different
nodes replicate each other). See the package docs for the options.
"""

from __future__ import annotations

import builtins
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import actors
from actors import Pid
from supervision import ChildSpec, Supervisor

from ._shard import Shard, ShardState
from ._state import Presence as Element

__all__ = ["Tracker", "TrackerConfig", "TrackerError", "running_trackers"]


class TrackerError(RuntimeError):
    """No tracker runs under that name (not started, or stopped)."""


@dataclass(frozen=True)
class TrackerConfig:
    """Every tracker option, with Phoenix.Tracker's defaults."""

    name: str
    pubsub_server: str
    handle_diff: Callable[[dict], Any] | None = None
    pool_size: int = 1
    broadcast_period: int = 1500
    max_silent_periods: int = 10
    down_period: int | None = None  # default broadcast_period * max_silent_periods * 2 (30 s)
    permdown_period: int = 1_200_000
    clock_sample_periods: int = 2
    max_delta_sizes: tuple[int, ...] = (100, 1000, 10_000)
    log_level: Any = False
    namespace: str | None = None  # default: the name

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"tracker: name must be a non-empty str, got {self.name!r}")
        if self.namespace is None:
            object.__setattr__(self, "namespace", self.name)
        elif not isinstance(self.namespace, str) or not self.namespace:
            raise TypeError(f"tracker: namespace must be a non-empty str, got {self.namespace!r}")
        if not isinstance(self.pubsub_server, str) or not self.pubsub_server:
            raise TypeError(f"tracker: pubsub_server must be the PubSub's name (a str), got {self.pubsub_server!r}")
        for option in ("pool_size", "broadcast_period", "max_silent_periods", "permdown_period", "clock_sample_periods"):
            value = getattr(self, option)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"tracker: {option} must be an int >= 1, got {value!r}")
        down_period = self.down_period
        if down_period is None:
            down_period = self.broadcast_period * self.max_silent_periods * 2
            object.__setattr__(self, "down_period", down_period)
        elif isinstance(down_period, bool) or not isinstance(down_period, int):
            raise ValueError(f"tracker: down_period must be an int (ms), got {down_period!r}")
        # Phoenix's two checks: a replica must get the chance to miss a heartbeat before
        # it is down, and down must come before permdown.
        if down_period < 2 * self.broadcast_period:
            raise ValueError("tracker: down_period must be at least twice as large as the broadcast_period")
        if self.permdown_period <= down_period:
            raise ValueError("tracker: permdown_period must be larger than the down_period")
        sizes = tuple(self.max_delta_sizes)
        if not sizes or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in sizes):
            raise ValueError(f"tracker: max_delta_sizes must be ints >= 1, got {self.max_delta_sizes!r}")
        object.__setattr__(self, "max_delta_sizes", sizes)
        if self.handle_diff is not None and not callable(self.handle_diff):
            raise TypeError("tracker: handle_diff must be callable as handle_diff(diff)")


class _Running:
    """One running tracker: its config, its supervisor and each shard's state."""

    __slots__ = ("config", "shards", "sup")

    def __init__(self, config: TrackerConfig, sup: Pid) -> None:
        self.config = config
        self.sup = sup
        self.shards: dict[int, ShardState] = {}


_running: dict[str, _Running] = {}


def running_trackers() -> list[Tracker]:
    """The trackers running in this OS process, for operator tools (metrics, dashboard)."""
    found = []
    for running in list(_running.values()):
        if actors.is_alive(running.sup):
            tracker = Tracker.__new__(Tracker)
            tracker.config = running.config
            found.append(tracker)
    return found


def _start_shard(config: TrackerConfig, index: int, registry: dict) -> Pid | None:
    return Shard.start_link((config, index, registry), name=f"{config.name}_shard{index}")


class _TrackerSupervisor(Supervisor):
    strategy = "one_for_one"

    def init(self, config: TrackerConfig) -> Any:
        running = _Running(config, actors.self())
        _running[config.name] = running
        self._running = running
        children = [
            {
                "id": ("shard", i),
                "start": (_start_shard, (config, i, running.shards)),
                # Time to broadcast the graceful permdown, then give up.
                "shutdown": 5000,
            }
            for i in range(config.pool_size)
        ]
        return super().init(children)

    def terminate(self, reason: Any, state: Any) -> None:
        try:
            super().terminate(reason, state)
        finally:
            running = getattr(self, "_running", None)
            if running is not None:
                name = running.config.name
                if _running.get(name) is running:
                    del _running[name]


class Tracker:
    """A named tracker (Phoenix.Tracker): presences of processes on topics, on every node.

    Make one per application (``Tracker(name, pubsub_server=..., **options)``), put
    :meth:`child_spec` in your tree after the PubSub, then call the methods from any
    process. ``handle_diff(diff)`` is called in the shard process with ``{topic: (joins,
    leaves)}``, each a list of ``(key, meta)``, whenever presences join or leave on any
    node (here: at once; from other nodes: when their heartbeat or a transfer arrives).
    """

    def __init__(
        self, name: str, *, pubsub_server: str, handle_diff: Callable[[dict], Any] | None = None, **options: Any
    ) -> None:
        self.config = TrackerConfig(name=name, pubsub_server=pubsub_server, handle_diff=handle_diff, **options)

    @property
    def name(self) -> str:
        """The tracker's name (its supervisor is registered under it)."""
        return self.config.name

    def __repr__(self) -> str:
        return f"<Tracker {self.config.name!r} pool_size={self.config.pool_size}>"

    def child_spec(self) -> ChildSpec:
        """The tracker as a child of your supervisor: after the PubSub it uses."""
        return ChildSpec(id=self.config.name, start=(self.start_link, ()), type="supervisor")

    def start_link(self) -> Pid:
        """Start the tracker's supervisor, linked to the caller."""
        return _TrackerSupervisor.start_link(self.config, name=self.config.name)

    # -- client API ---------------------------------------------------------------------

    def _running(self, function: str) -> _Running:
        running = _running.get(self.config.name)
        if running is None or not actors.is_alive(running.sup):
            raise TrackerError(f"{function}: no tracker {self.config.name!r} is running")
        return running

    def shard_name(self, topic: str) -> str:
        """The registered name of the shard that owns ``topic``."""
        return f"{self.config.name}_shard{self.shard_index(topic)}"

    def shard_index(self, topic: str) -> int:
        """The shard number of ``topic``."""
        if not isinstance(topic, str):
            raise TypeError(f"topic must be a str, got {type(topic).__name__}")
        return zlib.crc32(topic.encode("utf-8")) % self.config.pool_size

    def _call(self, topic: str, request: Any, function: str) -> Any:
        self._running(function)
        try:
            return actors.call(self.shard_name(topic), request, timeout=self._call_timeout)
        except actors.CallExit as e:
            raise TrackerError(f"{function}: the shard of {topic!r} is not available ({e})") from e

    _call_timeout = 5.0

    def track(self, pid: Pid, topic: str, key: Any, meta: dict) -> tuple[str, Any]:
        """Track ``pid`` on ``topic`` under ``key`` with ``meta`` (a dict): ``('ok', phx_ref)``,
        or ``('error', ('already_tracked', pid, topic, key))``. The presence leaves when
        ``pid`` dies."""
        if pid.__class__ is not Pid:
            raise TypeError(f"track: pid must be a Pid, got {type(pid).__name__}")
        if not isinstance(meta, dict):
            raise TypeError(f"track: meta must be a dict, got {type(meta).__name__}")
        return self._call(topic, ("track", pid, topic, key, meta), "track")

    def untrack(self, pid: Pid, topic: str | None = None, key: Any = None) -> str:
        """Stop tracking ``pid`` on ``topic`` under ``key``; with no topic, everywhere. ``'ok'``."""
        if topic is None:
            running = self._running("untrack")
            for i in range(running.config.pool_size):
                actors.call(f"{self.config.name}_shard{i}", ("untrack", pid), timeout=self._call_timeout)
            return "ok"
        return self._call(topic, ("untrack", pid, topic, key), "untrack")

    def update(self, pid: Pid, topic: str, key: Any, meta: dict | Callable[[dict], dict]) -> tuple[str, Any]:
        """Replace the meta of a tracked presence (or apply a function to it): ``('ok',
        phx_ref)`` or ``('error', 'nopresence')``. The new meta carries ``phx_ref_prev``."""
        if not (isinstance(meta, dict) or callable(meta)):
            raise TypeError(f"update: meta must be a dict or a function, got {type(meta).__name__}")
        return self._call(topic, ("update", pid, topic, key, meta), "update")

    def _state(self, topic: str, function: str) -> Any:
        running = self._running(function)
        shard = running.shards.get(self.shard_index(topic))
        if shard is None:
            raise TrackerError(f"{function}: the shard of {topic!r} is restarting")
        return shard.presences

    def list(self, topic: str) -> list[tuple[Any, dict]]:
        """``[(key, meta), ...]`` of ``topic`` on every node that is up, oldest first.

        Read from the shard's state in the caller (no message to the shard), as
        Phoenix's ``dirty_list``.
        """
        return [(p.key, p.meta) for p in self._state(topic, "list").get_by_topic(topic)]

    def get_by_key(self, topic: str, key: Any) -> builtins.list[tuple[Any, dict]]:
        """``[(pid, meta), ...]`` of ``key`` on ``topic``; a remote presence's pid is a str."""
        return [(p.pid, p.meta) for p in self._state(topic, "get_by_key").get_by_key(topic, key)]

    def elements(self, topic: str) -> builtins.list[Element]:
        """The topic's presences with pid and tag (for tools and tests)."""
        return self._state(topic, "elements").get_by_topic(topic)

    def shards(self) -> builtins.list[str]:
        """The registered names of the shards."""
        return [f"{self.config.name}_shard{i}" for i in range(self.config.pool_size)]

    def replicas(self, shard: int = 0) -> dict[str, str]:
        """``{node_name: 'up' | 'down'}`` as shard ``shard`` sees the other nodes."""
        self._running("replicas")
        return actors.call(f"{self.config.name}_shard{shard}", "replicas", timeout=self._call_timeout)

    def statistics(self) -> builtins.list[dict[str, Any]]:
        """One dict per shard: presences, topics, tracked processes, replicas, delta sizes."""
        self._running("statistics")
        return [actors.call(name, "statistics", timeout=self._call_timeout) for name in self.shards()]

    def graceful_permdown(self) -> None:
        """Tell every node to drop this node's presences now, and stop the shards (they
        are restarted by the supervisor as new replicas)."""
        self._running("graceful_permdown")
        for name in self.shards():
            try:
                actors.call(name, "graceful_permdown", timeout=self._call_timeout)
            except actors.CallExit:
                pass
