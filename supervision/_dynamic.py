"""DynamicSupervisor and the partitioned pool Phoenix starts channels under.

Put it in your tree::

    children = [DynamicSupervisor.child_spec({"name": "workers", "max_children": 1000})]

    pid = dynamic.start_child("workers", {"id": "job", "start": (run_job, (42,)), "restart": "temporary"})

Options and defaults: ``max_children=None`` (no limit), ``max_restarts=3``,
``max_seconds=5``, ``extra_arguments=()`` (prepended to every child's start args),
``name=None``. Only ``one_for_one`` exists here, as in Elixir.

A :class:`PartitionSupervisor` runs ``partitions`` DynamicSupervisors (default: the number
of CPU cores) and places a child in partition ``hash(key) % partitions``; Phoenix uses the
transport pid as the key so one connection's channels share a partition.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import actors
from actors import GenServer, Pid
from actors import _runtime as rt

from ._child_spec import ChildSpec, ChildSpecError, child_spec, start_child_process
from ._shutdown import expected_shutdown_reason, is_clean_exit, report, shutdown_many, shutdown_one
from ._supervisor import ChildInfo, RestartIntensity, SupervisorError, _start, start_child, validate_flags

__all__ = [
    "DynamicSupervisor",
    "PartitionSupervisor",
    "partition_for",
    "spawn_child",
    "spawn_child_in_partition",
    "start_child_in_partition",
]


class DynamicSupervisor(GenServer):
    """Supervises children started on demand; each child's spec lives with its pid."""

    # Invariant that makes spawn_child safe: this process never holds an iterator over
    # _children across a blocking point (terminate swaps the dict out first), so another
    # greenlet may add an entry whenever this one is suspended.

    def __init__(self) -> None:
        self._children: dict[Pid, ChildSpec] = {}
        self._restarting: dict[Any, ChildSpec] = {}
        self._stopping = False

    def restart_statistics(self) -> dict[str, Any] | None:
        """Restarts within the intensity window and since start (as a Supervisor's)."""
        intensity = getattr(self, "_intensity", None)
        return intensity.statistics() if intensity is not None else None

    @classmethod
    def child_spec(cls, opts: dict[str, Any] | None = None) -> ChildSpec:
        """This supervisor as a child of another (type supervisor, shutdown infinity)."""
        opts = dict(opts or {})
        return ChildSpec(id=opts.get("id", cls), start=(cls.start_link, (opts,)), type="supervisor")

    @classmethod
    def start_link(  # type: ignore[override]  # OTP's options dict, not GenServer's init_arg
        cls, opts: dict[str, Any] | None = None, *, name: str | None = None, timeout: float | None = None
    ) -> Pid:
        """Start linked to the caller. ``opts``: see the module docs."""
        opts = dict(opts or {})
        name = name if name is not None else opts.pop("name", None)
        opts.pop("id", None)
        unknown = set(opts) - {"max_children", "max_restarts", "max_seconds", "extra_arguments"}
        if unknown:
            raise ChildSpecError(sorted(unknown)[0], f"unknown DynamicSupervisor option(s): {sorted(unknown)}")
        validate_flags("one_for_one", opts.get("max_restarts", 3), opts.get("max_seconds", 5))
        max_children = opts.get("max_children")
        if max_children is not None and (isinstance(max_children, bool) or not isinstance(max_children, int) or max_children < 0):
            raise ChildSpecError("max_children", f"max_children must be an int >= 0 or None; got {max_children!r}")
        return _start(cls(), opts, name, timeout)

    # -- server callbacks ---------------------------------------------------------------

    def init(self, opts: dict[str, Any]) -> Any:
        actors.trap_exit(True)
        self.max_children = opts.get("max_children")
        self.extra_arguments = tuple(opts.get("extra_arguments", ()))
        self.max_restarts = opts.get("max_restarts", 3)
        self.max_seconds = opts.get("max_seconds", 5)
        self._intensity = RestartIntensity(self.max_restarts, self.max_seconds)
        return ("ok", self)

    def handle_call(self, request: Any, from_: Any, state: Any) -> Any:
        op = request[0] if request.__class__ is tuple and request else None
        if op == "start_child":
            return ("reply", self._start_new(request[1]), self)
        if op == "which_children":
            rows = [ChildInfo("undefined", pid, s.type, s.modules) for pid, s in self._children.items()]
            rows += [ChildInfo("undefined", "restarting", s.type, s.modules) for s in self._restarting.values()]
            return ("reply", rows, self)
        if op == "count_children":
            sups = sum(1 for s in self._children.values() if s.type == "supervisor")
            total = len(self._children) + len(self._restarting)
            return ("reply", {"specs": total, "active": len(self._children), "supervisors": sups, "workers": total - sups}, self)
        if op == "terminate_child":
            return ("reply", self._terminate_child(request[1]), self)
        return ("reply", ("error", ("unknown_call", request)), self)

    def handle_info(self, msg: Any, state: Any) -> Any:
        if msg.__class__ is tuple and len(msg) == 3 and msg[0] == "EXIT":
            return self._child_exited(msg[1], msg[2])
        if msg.__class__ is tuple and len(msg) == 2 and msg[0] == "$try_again_restart":
            spec = self._restarting.pop(msg[1], None)
            if spec is not None:
                return self._restart(spec, "restart failed")
            return ("noreply", self)
        return super().handle_info(msg, state)

    def terminate(self, reason: Any, state: Any) -> None:
        self._stopping = True
        children = self._children
        self._children = {}
        self._restarting.clear()
        if children:
            shutdown_many((pid, spec.shutdown_ms) for pid, spec in children.items())

    def __repr__(self) -> str:
        return f"<DynamicSupervisor children={len(self._children)} max_children={self.max_children}>"

    # -- internals ----------------------------------------------------------------------

    def _start_new(self, raw: Any) -> Any:
        try:
            spec = child_spec(raw)
            if spec.significant:
                raise ChildSpecError(
                    "significant",
                    f"child {spec.id!r}: a DynamicSupervisor has no significant children (no auto_shutdown), as in Elixir",
                )
        except ChildSpecError as e:
            return ("error", e)
        if self.max_children is not None and len(self._children) + len(self._restarting) >= self.max_children:
            return ("error", "max_children")
        status, value = start_child_process(spec, self.extra_arguments)
        if status == "error":
            return ("error", value)
        if value is not None:
            self._children[value] = spec
            actors.link(value)
        return ("ok", value)

    def _terminate_child(self, pid: Any) -> Any:
        spec = self._children.pop(pid, None) if isinstance(pid, Pid) else None
        if spec is None:
            return ("error", "not_found")
        reason = shutdown_one(pid, spec.shutdown_ms)
        if not expected_shutdown_reason(reason, spec.shutdown_ms) and not (reason == "normal" and spec.restart != "permanent"):
            report(logging.ERROR, "shutdown_error", actors.self(), spec.id, pid, reason, "stopped")
        return ("ok", None)

    def _child_exited(self, pid: Pid, reason: Any) -> Any:
        spec = self._children.pop(pid, None)
        if spec is None:
            return ("noreply", self)
        if spec.restart == "temporary" or (spec.restart == "transient" and is_clean_exit(reason)):
            if not is_clean_exit(reason):
                report(logging.INFO, "child_terminated", actors.self(), spec.id, pid, reason, "not restarted")
            return ("noreply", self)
        report(logging.INFO, "child_terminated", actors.self(), spec.id, pid, reason, "restarting")
        return self._restart(spec, reason)

    def _restart(self, spec: ChildSpec, reason: Any) -> Any:
        me = actors.self()
        if not self._intensity.add():
            report(
                logging.ERROR,
                "reached_max_restart_intensity",
                me,
                spec.id,
                None,
                reason,
                f"shutting down (more than {self.max_restarts} restarts in {self.max_seconds} s)",
            )
            return ("stop", "shutdown", self)
        status, value = start_child_process(spec, self.extra_arguments)
        if status == "error":
            report(logging.ERROR, "start_error", me, spec.id, None, value, "will try again")
            key = actors.make_ref()
            self._restarting[key] = spec
            actors.send(me, ("$try_again_restart", key))
        elif value is not None:
            self._children[value] = spec
            actors.link(value)
            report(logging.INFO, "child_restarted", me, spec.id, value, reason, "restarted")
        return ("noreply", self)


def _spawn_linked(fn: Any, args: tuple) -> Pid:
    """The start function recorded for a spawn_child child, used when it is restarted."""
    return actors.spawn_link(fn, *args)


_TEMPLATES: dict[tuple, ChildSpec] = {}


def _spawn_spec(fn: Any, args: tuple, restart: str, shutdown: Any, child_id: Any) -> ChildSpec:
    """The spec recorded for a spawn_child child.

    A temporary child is never restarted, so its spec never needs its args: one
    validated spec per (fn, restart, shutdown, id) is shared by all such children,
    which keeps the per-child cost of the pool at a dict entry.
    """
    if restart == "temporary":
        key = (fn, shutdown, child_id)
        spec = _TEMPLATES.get(key)
        if spec is None:
            if len(_TEMPLATES) > 1024:  # unbounded keys (lambdas made per call) must not leak
                _TEMPLATES.clear()
            spec = _TEMPLATES[key] = child_spec(
                ChildSpec(
                    id=child_id if child_id is not None else fn,
                    start=(_spawn_linked, (fn, ())),
                    restart=restart,
                    shutdown=shutdown,
                )
            )
        return spec
    return child_spec(
        ChildSpec(
            id=child_id if child_id is not None else fn, start=(_spawn_linked, (fn, args)), restart=restart, shutdown=shutdown
        )
    )


def spawn_child(
    sup: Pid | str,
    fn: Any,
    *args: Any,
    restart: str = "temporary",
    shutdown: Any = 5000,
    child_id: Any = None,
) -> Pid:
    """Run ``fn(*args)`` as a new child process of a DynamicSupervisor; its pid.

    Elixir's ``Task.Supervisor.start_child``, without the round trip of ``start_child``:
    the child is linked to the supervisor from birth and entered in its table before it
    runs, so the supervisor sees its exit like any other child's. Raises
    ``SupervisorError`` with ``'noproc'`` (not a live DynamicSupervisor),
    ``'shutting_down'`` or ``'max_children'``.
    """
    proc = rt._lookup(sup, "spawn_child")
    spec = _spawn_spec(fn, args, restart, shutdown, child_id)
    server = proc.system if proc is not None else None
    if proc is None or not isinstance(server, DynamicSupervisor) or not proc.alive:
        raise SupervisorError("noproc")
    if server._stopping:
        raise SupervisorError("shutting_down")
    if server.max_children is not None and len(server._children) + len(server._restarting) >= server.max_children:
        raise SupervisorError("max_children")
    pid, _ = rt._spawn(fn, args, {}, link_to=proc)
    server._children[pid] = spec
    return pid


# ------------------------------------------------------------------------------------------
# Partitioned pool
# ------------------------------------------------------------------------------------------


def _partition_name(name: str, index: int) -> str:
    return f"{name}.partition.{index}"


class PartitionSupervisor:
    """A supervisor of ``partitions`` DynamicSupervisors, addressed by key.

    Put it in your tree::

        PartitionSupervisor.child_spec(name="MyApp.ChannelPool", partitions=4)

    Options and defaults: ``name`` (required: partitions are found by name),
    ``partitions=os.cpu_count()``, ``max_children=None`` per partition,
    ``max_restarts=3``, ``max_seconds=5`` (for the partitions' supervisor).
    """

    @staticmethod
    def child_spec(*, name: str, partitions: int | None = None, **options: Any) -> ChildSpec:
        """The pool as a child of another supervisor."""
        return ChildSpec(id=name, start=(PartitionSupervisor.start_link, (name, partitions, options)), type="supervisor")

    @staticmethod
    def start_link(name: str, partitions: int | None = None, options: dict[str, Any] | None = None) -> Pid:
        """Start the pool linked to the caller; its top supervisor's pid (registered as ``name``)."""
        from ._supervisor import start_link as supervisor_start_link

        if not isinstance(name, str) or not name:
            raise ChildSpecError("name", f"PartitionSupervisor needs a str name; got {name!r}")
        count = partitions if partitions is not None else (os.cpu_count() or 1)
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ChildSpecError("partitions", f"partitions must be an int >= 1; got {count!r}")
        options = dict(options or {})
        max_restarts = options.pop("max_restarts", 3)
        max_seconds = options.pop("max_seconds", 5)
        children = [
            ChildSpec(
                id=i,
                start=(DynamicSupervisor.start_link, ({**options, "name": _partition_name(name, i)},)),
                type="supervisor",
            )
            for i in range(count)
        ]
        pid = supervisor_start_link(
            children, strategy="one_for_one", max_restarts=max_restarts, max_seconds=max_seconds, name=name
        )
        _PARTITIONS[name] = tuple(_partition_name(name, i) for i in range(count))
        return pid


# pool name -> its partitions' registered names, built once (every channel join looks one up)
_PARTITIONS: dict[str, tuple[str, ...]] = {}


def partition_for(name: str, key: Any) -> Pid:
    """The pid of the partition ``hash(key) % partitions`` of pool ``name``."""
    names = _PARTITIONS.get(name)
    if names is None or actors.whereis(name) is None:
        raise SupervisorError(("no_pool", name))
    index = hash(key) % len(names)
    pid = actors.whereis(names[index])
    if pid is None:
        raise SupervisorError(("partition_down", name, index))
    return pid


def start_child_in_partition(name: str, key: Any, spec: Any, timeout: float | None = 5.0) -> Any:
    """Start ``spec`` in the partition that ``key`` hashes to; the child's pid."""
    return start_child(partition_for(name, key), spec, timeout)


def spawn_child_in_partition(name: str, key: Any, fn: Any, *args: Any, **options: Any) -> Pid:
    """:func:`spawn_child` in the partition that ``key`` hashes to."""
    return spawn_child(partition_for(name, key), fn, *args, **options)
