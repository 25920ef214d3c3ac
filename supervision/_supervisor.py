"""Supervisor: OTP's static supervisor as a GenServer that traps exits.

Put it in your tree::

    from supervision import Supervisor, start_link

    sup = start_link([Cache, (Worker, {"pool": 4})], strategy="one_for_one")

or subclass it and override :meth:`Supervisor.children`::

    class App(Supervisor):
        strategy = "rest_for_one"

        def children(self, arg):
            return [Db, (Api, arg)]

    App.start_link(config)

Options and defaults (Elixir's): ``strategy='one_for_one'`` (or ``one_for_all``,
``rest_for_one``), ``max_restarts=3`` within ``max_seconds=5``, ``name=None``.

Rules (OTP's ``supervisor``): children start in list order; a child whose start fails
stops the start-up and the children already started are shut down in reverse order.
When a child exits, a ``permanent`` one is always restarted, a ``transient`` one unless it
exited ``normal``, ``shutdown`` or ``('shutdown', term)``, a ``temporary`` one never (and
its spec is dropped). More than ``max_restarts`` restarts within ``max_seconds`` shuts the
supervisor down with reason ``shutdown``, which its own supervisor sees as a child exit.
On shutdown, children stop in reverse start order, each per its ``shutdown``.
``which_children`` lists them newest first, as OTP's.

``auto_shutdown`` (OTP 24, default ``'never'``): with ``'any_significant'`` the supervisor
shuts down (reason ``shutdown``) when a ``significant`` child ends by itself and is not
restarted; with ``'all_significant'`` when the last running significant one does.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import Any, NamedTuple

import actors
from actors import GenServer, Pid

from ._child_spec import ChildSpec, ChildSpecError, child_spec, start_child_process, validate_children
from ._shutdown import expected_shutdown_reason, is_clean_exit, report, shutdown_one

__all__ = [
    "ChildInfo",
    "Supervisor",
    "SupervisorError",
    "count_children",
    "delete_child",
    "restart_child",
    "start_child",
    "start_link",
    "terminate_child",
    "which_children",
]

STRATEGIES = ("one_for_one", "one_for_all", "rest_for_one")
AUTO_SHUTDOWNS = ("never", "any_significant", "all_significant")


class SupervisorError(actors.ActorsError):
    """A supervisor refused a request; ``reason`` is OTP's term for why.

    Reasons: ``'not_found'``, ``'running'``, ``'restarting'``, ``'already_present'``,
    ``('already_started', pid)``, ``'max_children'``, or a child's start error.
    """

    def __init__(self, reason: Any) -> None:
        super().__init__(reason)
        self.reason = reason


class ChildInfo(NamedTuple):
    """One row of ``which_children``: pid is None when not running, 'restarting' mid-restart."""

    id: Any
    pid: Any
    type: str
    modules: Any


class _Child:
    __slots__ = ("spec", "pid")

    def __init__(self, spec: ChildSpec, pid: Any = None) -> None:
        self.spec = spec
        self.pid = pid


def validate_flags(
    strategy: str, max_restarts: Any, max_seconds: Any, strategies: tuple = STRATEGIES, auto_shutdown: Any = "never"
) -> None:
    """Reject bad supervisor flags with an error naming the flag."""
    if auto_shutdown not in AUTO_SHUTDOWNS:
        raise ChildSpecError("auto_shutdown", f"auto_shutdown must be one of {', '.join(AUTO_SHUTDOWNS)}; got {auto_shutdown!r}")
    if strategy not in strategies:
        raise ChildSpecError("strategy", f"strategy must be one of {', '.join(strategies)}; got {strategy!r}")
    if isinstance(max_restarts, bool) or not isinstance(max_restarts, int) or max_restarts < 0:
        raise ChildSpecError("max_restarts", f"max_restarts must be an int >= 0; got {max_restarts!r}")
    if isinstance(max_seconds, bool) or not isinstance(max_seconds, (int, float)) or max_seconds <= 0:
        raise ChildSpecError("max_seconds", f"max_seconds must be a number > 0; got {max_seconds!r}")


class RestartIntensity:
    """OTP's restart intensity: at most ``max_restarts`` within a sliding ``max_seconds``."""

    __slots__ = ("max_restarts", "max_seconds", "_stamps", "total")

    def __init__(self, max_restarts: int, max_seconds: float) -> None:
        self.max_restarts = max_restarts
        self.max_seconds = max_seconds
        self._stamps: deque[float] = deque()
        #: Restarts since the supervisor started (OTP keeps none; operators count them).
        self.total = 0

    def statistics(self) -> dict[str, Any]:
        """``recent`` restarts within the window, ``total`` since start, and the limits."""
        threshold = time.monotonic() - self.max_seconds
        return {
            "recent": sum(1 for s in self._stamps if s >= threshold),
            "total": self.total,
            "max_restarts": self.max_restarts,
            "max_seconds": self.max_seconds,
        }

    def add(self) -> bool:
        """Record a restart; False when that exceeds the intensity."""
        self.total += 1
        now = time.monotonic()
        stamps = self._stamps
        stamps.append(now)
        threshold = now - self.max_seconds
        while stamps and stamps[0] < threshold:
            stamps.popleft()
        return len(stamps) <= self.max_restarts


class Supervisor(GenServer):
    """A static supervisor; see the module docs for the rules."""

    strategy = "one_for_one"
    max_restarts = 3
    max_seconds = 5
    auto_shutdown = "never"

    def children(self, arg: Any) -> list[Any]:
        """The child specs to start; override in a subclass (default: ``arg`` itself)."""
        return arg

    def restart_statistics(self) -> dict[str, Any] | None:
        """:meth:`RestartIntensity.statistics` of this supervisor (None before ``init``):
        tools read it from ``get_state``."""
        intensity = getattr(self, "_intensity", None)
        return intensity.statistics() if intensity is not None else None

    @classmethod
    def child_spec(cls, arg: Any = None) -> ChildSpec:
        """This supervisor as a child of another: type supervisor, shutdown infinity."""
        return ChildSpec(id=cls, start=(cls.start_link, (arg,)), type="supervisor")

    @classmethod
    def start_link(
        cls, init_arg: Any = None, *, name: str | None = None, timeout: float | None = None, hibernate_after: int | None = None
    ) -> Pid:
        """Start this supervisor linked to the caller; bad specs raise ChildSpecError.
        (``hibernate_after`` is accepted for GenServer's signature; a supervisor ignores it.)"""
        return _start(cls(), init_arg, name, timeout)

    # -- server callbacks ---------------------------------------------------------------

    def init(self, arg: Any) -> Any:
        actors.trap_exit(True)
        try:
            flags = getattr(self, "_flags", None)
            if flags is not None:
                self.strategy, self.max_restarts, self.max_seconds = flags[:3]
                if len(flags) > 3:
                    self.auto_shutdown = flags[3]
            validate_flags(self.strategy, self.max_restarts, self.max_seconds, auto_shutdown=self.auto_shutdown)
            specs = validate_children(self.children(arg))
            for spec in specs:
                self._check_significant(spec)
        except ChildSpecError as e:
            return ("error", e)
        self._intensity = RestartIntensity(self.max_restarts, self.max_seconds)
        self._children: list[_Child] = []
        for spec in specs:
            status, value = start_child_process(spec)
            if status == "error":
                report(logging.ERROR, "start_error", actors.self(), spec.id, None, value, "shutting down")
                self._shutdown_all()
                return ("stop", ("shutdown", ("failed_to_start_child", spec.id, value)))
            if status == "ignore" and spec.restart == "temporary":
                continue
            self._children.append(_Child(spec, value))
            if value is not None:
                actors.link(value)
        return ("ok", self)

    def handle_info(self, msg: Any, state: Any) -> Any:
        if msg.__class__ is tuple and len(msg) == 3 and msg[0] == "EXIT":
            return self._child_exited(msg[1], msg[2])
        if msg.__class__ is tuple and len(msg) == 2 and msg[0] == "$try_again_restart":
            child = self._find(msg[1])
            if child is not None and child.pid == "restarting":
                return self._restart(child, "restart failed")
            return ("noreply", self)
        return super().handle_info(msg, state)

    def handle_call(self, request: Any, from_: Any, state: Any) -> Any:
        op = request[0] if request.__class__ is tuple and request else None
        if op == "which_children":
            # Newest first, as OTP's supervisor keeps its children (visible to code that
            # pattern-matches the list); the children are started in list order all the same.
            rows = [ChildInfo(c.spec.id, c.pid, c.spec.type, c.spec.modules) for c in reversed(self._children)]
            return ("reply", rows, self)
        if op == "count_children":
            return ("reply", self._count(), self)
        if op == "start_child":
            return ("reply", self._start_new(request[1]), self)
        if op == "terminate_child":
            return ("reply", self._terminate_child(request[1]), self)
        if op == "restart_child":
            return ("reply", self._restart_child(request[1]), self)
        if op == "delete_child":
            return ("reply", self._delete_child(request[1]), self)
        return ("reply", ("error", ("unknown_call", request)), self)

    def terminate(self, reason: Any, state: Any) -> None:
        if getattr(self, "_children", None):
            self._shutdown_all()

    def __repr__(self) -> str:
        kids = ", ".join(f"{c.spec.id!r}={c.pid}" for c in getattr(self, "_children", ()))
        return f"<{type(self).__qualname__} {self.strategy} [{kids}]>"

    # -- internals ----------------------------------------------------------------------

    def _check_significant(self, spec: ChildSpec) -> None:
        if spec.significant and self.auto_shutdown == "never":
            # OTP: {bad_combination, [{auto_shutdown, never}, {significant, true}]}
            raise ChildSpecError("significant", f"child {spec.id!r} is significant but the supervisor's auto_shutdown is 'never'")

    def _auto_shutdown(self, spec: ChildSpec, pid: Pid, reason: Any) -> Any:
        """A significant child ended by itself and is not restarted: OTP 24's auto_shutdown."""
        if self.auto_shutdown == "all_significant" and any(c.spec.significant and isinstance(c.pid, Pid) for c in self._children):
            return ("noreply", self)
        report(logging.INFO, "auto_shutdown", actors.self(), spec.id, pid, reason, f"shutting down ({self.auto_shutdown})")
        return ("stop", "shutdown", self)

    def _find(self, child_id: Any) -> _Child | None:
        for c in self._children:
            if c.spec.id == child_id:
                return c
        return None

    def _count(self) -> dict[str, int]:
        sups = sum(1 for c in self._children if c.spec.type == "supervisor")
        return {
            "specs": len(self._children),
            "active": sum(1 for c in self._children if isinstance(c.pid, Pid) and actors.is_alive(c.pid)),
            "supervisors": sups,
            "workers": len(self._children) - sups,
        }

    def _stop_child(self, child: _Child) -> None:
        pid = child.pid
        child.pid = None
        if not isinstance(pid, Pid):
            return
        shutdown = child.spec.shutdown_ms
        reason = shutdown_one(pid, shutdown)
        if not expected_shutdown_reason(reason, shutdown) and not (reason == "normal" and child.spec.restart != "permanent"):
            report(logging.ERROR, "shutdown_error", actors.self(), child.spec.id, pid, reason, "stopped")

    def _shutdown_all(self) -> None:
        for child in reversed(self._children):
            self._stop_child(child)

    def _child_exited(self, pid: Pid, reason: Any) -> Any:
        child = next((c for c in self._children if c.pid == pid), None)
        if child is None:
            return ("noreply", self)  # an old child's late EXIT, or an unrelated link
        spec = child.spec
        me = actors.self()
        if spec.restart == "temporary" or (spec.restart == "transient" and is_clean_exit(reason)):
            if not is_clean_exit(reason):
                report(logging.INFO, "child_terminated", me, spec.id, pid, reason, "not restarted (temporary)")
            child.pid = None
            if spec.restart == "temporary":
                self._children.remove(child)
            if spec.significant:
                return self._auto_shutdown(spec, pid, reason)
            return ("noreply", self)
        report(logging.INFO, "child_terminated", me, spec.id, pid, reason, "restarting")
        child.pid = None
        return self._restart(child, reason)

    def _restart(self, child: _Child, reason: Any) -> Any:
        me = actors.self()
        if not self._intensity.add():
            report(
                logging.ERROR,
                "reached_max_restart_intensity",
                me,
                child.spec.id,
                None,
                reason,
                f"shutting down (more than {self.max_restarts} restarts in {self.max_seconds} s)",
            )
            return ("stop", "shutdown", self)
        if self.strategy == "one_for_one":
            group = [child]
        else:
            index = self._children.index(child)
            group = self._children[:] if self.strategy == "one_for_all" else self._children[index:]
            for other in reversed(group):
                if other is not child:
                    self._stop_child(other)
            # OTP: temporary siblings stopped for a group restart are not started again.
            for other in [c for c in group if c is not child and c.spec.restart == "temporary"]:
                group.remove(other)
                self._children.remove(other)
        for member in group:
            status, value = start_child_process(member.spec)
            if status == "error":
                report(logging.ERROR, "start_error", me, member.spec.id, None, value, "will try again")
                member.pid = "restarting"
                actors.send(me, ("$try_again_restart", member.spec.id))
                return ("noreply", self)
            if status == "ignore" and member.spec.restart == "temporary":
                self._children.remove(member)
                continue
            member.pid = value
            if value is not None:
                actors.link(value)
            report(logging.INFO, "child_restarted", me, member.spec.id, value, reason, "restarted")
        return ("noreply", self)

    def _start_new(self, raw: Any) -> Any:
        try:
            spec = child_spec(raw)
            self._check_significant(spec)
        except ChildSpecError as e:
            return ("error", e)
        existing = self._find(spec.id)
        if existing is not None:
            if isinstance(existing.pid, Pid):
                return ("error", ("already_started", existing.pid))
            return ("error", "already_present")
        status, value = start_child_process(spec)
        if status == "error":
            report(logging.ERROR, "start_error", actors.self(), spec.id, None, value, "not added")
            return ("error", value)
        if status == "ignore" and spec.restart == "temporary":
            return ("ok", None)
        self._children.append(_Child(spec, value))
        if value is not None:
            actors.link(value)
        return ("ok", value)

    def _terminate_child(self, child_id: Any) -> Any:
        child = self._find(child_id)
        if child is None:
            return ("error", "not_found")
        self._stop_child(child)
        if child.spec.restart == "temporary":
            self._children.remove(child)
        return ("ok", None)

    def _find_stopped(self, child_id: Any) -> tuple[_Child | None, Any]:
        """The child if it exists and is not running: (child, None) or (None, error)."""
        child = self._find(child_id)
        if child is None:
            return None, ("error", "not_found")
        if isinstance(child.pid, Pid):
            return None, ("error", "running")
        if child.pid == "restarting":
            return None, ("error", "restarting")
        return child, None

    def _restart_child(self, child_id: Any) -> Any:
        child, error = self._find_stopped(child_id)
        if child is None:
            return error
        status, value = start_child_process(child.spec)
        if status == "error":
            return ("error", value)
        child.pid = value
        if value is not None:
            actors.link(value)
        return ("ok", value)

    def _delete_child(self, child_id: Any) -> Any:
        child, error = self._find_stopped(child_id)
        if child is None:
            return error
        self._children.remove(child)
        return ("ok", None)


# ------------------------------------------------------------------------------------------
# Client API (works for Supervisor and DynamicSupervisor alike where OTP's does)
# ------------------------------------------------------------------------------------------


def _unwrap(result: Any) -> Any:
    status, value = result
    if status == "ok":
        return value
    if isinstance(value, ChildSpecError):
        raise value
    raise SupervisorError(value)


def start_link(
    children: Any,
    *,
    strategy: str = "one_for_one",
    max_restarts: int = 3,
    max_seconds: float = 5,
    auto_shutdown: str = "never",
    name: str | None = None,
    timeout: float | None = None,
) -> Pid:
    """Start a supervisor of ``children``, linked to the caller; its pid.

    ``auto_shutdown`` (OTP 24): ``'never'``, ``'any_significant'`` (the supervisor shuts
    down, reason ``shutdown``, when a significant child ends by itself and is not
    restarted) or ``'all_significant'`` (when the last running significant child does).

    Bad child specs or flags raise :class:`ChildSpecError` (naming the field) before
    anything starts. A child that fails to start raises :class:`actors.StartError` with
    reason ``('shutdown', ('failed_to_start_child', id, reason))``.
    """
    validate_flags(strategy, max_restarts, max_seconds, auto_shutdown=auto_shutdown)
    specs = validate_children(children)
    sup = Supervisor()
    sup._flags = (strategy, max_restarts, max_seconds, auto_shutdown)  # type: ignore[attr-defined]
    return _start(sup, specs, name, timeout)


def _start(server: Any, arg: Any, name: str | None, timeout: float | None) -> Pid:
    try:
        pid = actors.start_link(server, arg, name=name, timeout=timeout)
    except actors.StartError as e:
        if isinstance(e.reason, ChildSpecError):
            raise e.reason from None
        raise
    assert pid is not None
    return pid


def which_children(sup: Any, timeout: float | None = 5.0) -> list[ChildInfo]:
    """The supervisor's children: newest first for a :class:`Supervisor` (as OTP's
    ``supervisor:which_children``), in start order for a :class:`DynamicSupervisor` (as
    OTP's ``simple_one_for_one`` and Elixir's, which list by pid)."""
    return actors.call(sup, ("which_children",), timeout)


def count_children(sup: Any, timeout: float | None = 5.0) -> dict[str, int]:
    """Counts of specs, active children, supervisors and workers."""
    return actors.call(sup, ("count_children",), timeout)


def start_child(sup: Any, spec: Any, timeout: float | None = 5.0) -> Any:
    """Add and start a child; its pid (None if it ignored). Raises SupervisorError."""
    return _unwrap(actors.call(sup, ("start_child", spec), timeout))


def terminate_child(sup: Any, child: Any, timeout: float | None = None) -> None:
    """Stop a child (by id, or by pid for a dynamic supervisor); its spec stays unless temporary."""
    _unwrap(actors.call(sup, ("terminate_child", child), timeout))


def restart_child(sup: Any, child_id: Any, timeout: float | None = 5.0) -> Any:
    """Start again a stopped child of a static supervisor; its pid."""
    return _unwrap(actors.call(sup, ("restart_child", child_id), timeout))


def delete_child(sup: Any, child_id: Any, timeout: float | None = 5.0) -> None:
    """Forget a stopped child's spec."""
    _unwrap(actors.call(sup, ("delete_child", child_id), timeout))
