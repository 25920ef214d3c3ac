"""Child specifications: what a supervisor needs to start, restart and stop a child.

A child may be given as:

* a :class:`ChildSpec`, or a dict with its fields (``id`` and ``start`` required);
* a class with a ``child_spec(arg)`` classmethod (Elixir's convention), alone or as
  ``(cls, arg)``;
* a :class:`actors.GenServer` subclass, alone or as ``(cls, init_arg)``: started with
  ``cls.start_link(init_arg)``, id the class.

``start`` is a callable or ``(callable, args)``. It must start a process linked to the
caller (the supervisor) and return its pid — or ``('ok', pid)``, ``None``/``'ignore'``, or
``('error', reason)``; raising is an error too. Supervisors link to what it returns anyway,
so a start function that forgot to link is still supervised.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

from actors import CallExit, Exit, GenServer, Pid, StartError
from actors import _runtime as rt

__all__ = ["ChildSpec", "ChildSpecError", "child_spec"]

RESTARTS = ("permanent", "transient", "temporary")
TYPES = ("worker", "supervisor")


class ChildSpecError(ValueError):
    """A child specification is invalid; ``field`` names the offending field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True, slots=True)
class ChildSpec:
    """One child of a supervisor, with OTP's fields and defaults.

    ``shutdown`` is ``'brutal_kill'``, a number of milliseconds, or ``'infinity'``;
    it defaults to 5000 for workers and ``'infinity'`` for supervisors. ``significant``
    (OTP 24): the child's own end may shut its supervisor down, per the supervisor's
    ``auto_shutdown``; only a transient or temporary child can be significant.
    """

    id: Any
    start: tuple[Callable[..., Any], tuple]
    restart: str = "permanent"
    shutdown: Any = None
    type: str = "worker"
    modules: Any = None
    significant: bool = False

    @property
    def shutdown_ms(self) -> Any:
        """The effective shutdown: the given value, or OTP's default for the type."""
        if self.shutdown is not None:
            return self.shutdown
        return "infinity" if self.type == "supervisor" else 5000


def child_spec(child: Any, **overrides: Any) -> ChildSpec:
    """Normalise and validate any accepted child form into a :class:`ChildSpec`."""
    spec = _normalise(child)
    if overrides:
        unknown = set(overrides) - set(ChildSpec.__dataclass_fields__)
        if unknown:
            raise ChildSpecError(sorted(unknown)[0], f"unknown child spec field(s): {sorted(unknown)}")
        spec = replace(spec, **overrides)
    return _validate(spec)


def _normalise(child: Any) -> ChildSpec:
    if isinstance(child, ChildSpec):
        return child
    if isinstance(child, dict):
        unknown = set(child) - set(ChildSpec.__dataclass_fields__)
        if unknown:
            raise ChildSpecError(sorted(unknown)[0], f"unknown child spec field(s) {sorted(unknown)} in {child!r}")
        if "id" not in child:
            raise ChildSpecError("id", f"child spec {child!r} is missing 'id'")
        if "start" not in child:
            raise ChildSpecError("start", f"child spec {child.get('id')!r} is missing 'start'")
        return ChildSpec(**{**child, "start": _start_pair(child["start"], child["id"])})
    cls, arg, has_arg = child, None, False
    if isinstance(child, tuple) and len(child) == 2 and isinstance(child[0], type):
        cls, arg, has_arg = child[0], child[1], True
    if isinstance(cls, type):
        factory = getattr(cls, "child_spec", None)
        if callable(factory):
            return _normalise(factory(arg) if has_arg else factory(None))
        if issubclass(cls, GenServer):
            return ChildSpec(id=cls, start=(cls.start_link, (arg,)))
    raise ChildSpecError(
        "start",
        f"cannot make a child spec from {child!r}: give a ChildSpec, a dict with 'id' and "
        "'start', a GenServer subclass, or a class with child_spec()",
    )


def _start_pair(start: Any, child_id: Any) -> tuple[Callable[..., Any], tuple]:
    if callable(start):
        return (start, ())
    if isinstance(start, (tuple, list)) and len(start) == 2 and callable(start[0]):
        args = start[1]
        if not isinstance(args, (tuple, list)):
            raise ChildSpecError("start", f"child {child_id!r}: start args must be a tuple, got {args!r}")
        return (start[0], tuple(args))
    raise ChildSpecError("start", f"child {child_id!r}: 'start' must be a callable or (callable, args), got {start!r}")


def _validate(spec: ChildSpec) -> ChildSpec:
    if not (isinstance(spec.start, tuple) and len(spec.start) == 2 and callable(spec.start[0])):
        spec = replace(spec, start=_start_pair(spec.start, spec.id))
    try:
        hash(spec.id)
    except TypeError:
        raise ChildSpecError("id", f"child id {spec.id!r} must be hashable") from None
    if spec.restart not in RESTARTS:
        raise ChildSpecError(
            "restart", f"child {spec.id!r}: 'restart' must be one of {', '.join(RESTARTS)}; got {spec.restart!r}"
        )
    if spec.significant.__class__ is not bool:
        raise ChildSpecError("significant", f"child {spec.id!r}: 'significant' must be a bool; got {spec.significant!r}")
    if spec.significant and spec.restart == "permanent":
        # OTP: {bad_combination, [{restart, permanent}, {significant, true}]}
        raise ChildSpecError("significant", f"child {spec.id!r}: a permanent child cannot be significant")
    if spec.type not in TYPES:
        raise ChildSpecError("type", f"child {spec.id!r}: 'type' must be 'worker' or 'supervisor'; got {spec.type!r}")
    shutdown = spec.shutdown
    if shutdown is not None and shutdown not in ("brutal_kill", "infinity"):
        if isinstance(shutdown, bool) or not isinstance(shutdown, (int, float)) or shutdown < 0:
            raise ChildSpecError(
                "shutdown",
                f"child {spec.id!r}: 'shutdown' must be 'brutal_kill', 'infinity' or milliseconds >= 0; got {shutdown!r}",
            )
    return spec


def validate_children(children: Iterable[Any]) -> list[ChildSpec]:
    """Normalise a list of children, rejecting duplicate ids, before anything starts."""
    if isinstance(children, (str, bytes, dict)) or not isinstance(children, Iterable):
        raise ChildSpecError("children", f"children must be a list of child specs, got {children!r}")
    specs = [child_spec(c) for c in children]
    seen: set[Any] = set()
    for spec in specs:
        if spec.id in seen:
            raise ChildSpecError("id", f"duplicate child id {spec.id!r}")
        seen.add(spec.id)
    return specs


def start_child_process(spec: ChildSpec, extra_args: tuple = ()) -> tuple[str, Any]:
    """Run a child's start function: ``('ok', pid)``, ``('ignore', None)`` or ``('error', reason)``."""
    fn, args = spec.start
    try:
        result = fn(*extra_args, *args)
    except StartError as e:
        return ("error", e.reason)
    except CallExit as e:
        return ("error", e.reason)
    except Exit as e:
        me = rt._current()
        if not me.alive:
            raise
        return ("error", e.reason)
    except Exception as e:  # noqa: BLE001 - a crashing start function is a start error
        return ("error", e)
    if isinstance(result, Pid):
        return ("ok", result)
    if result is None or (isinstance(result, str) and result == "ignore"):
        return ("ignore", None)
    if isinstance(result, tuple) and len(result) in (2, 3) and result[0] == "ok" and isinstance(result[1], Pid):
        return ("ok", result[1])
    if isinstance(result, tuple) and len(result) == 2 and result[0] == "error":
        return ("error", result[1])
    return ("error", ("bad_return_value", result))
