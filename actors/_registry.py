"""Registry: Elixir's local key-value process registry, and ``via`` names through it.

Start one in your tree (it is an ordinary child)::

    children = [(Registry, {"keys": "unique", "name": "Rooms"}), ...]

    Registry.register("Rooms", "lobby", {"topic": "lobby"})     # the caller, under a key
    Registry.lookup("Rooms", "lobby")                           # [(pid, value)]
    GenServer.start_link(Room, arg, name=("via", Registry, ("Rooms", "lobby")))
    actors.call(("via", Registry, ("Rooms", "lobby")), "members")

A ``unique`` registry holds at most one process per key; a ``duplicate`` one any number
(a process may register the same key several times, as in Elixir), which is what a
PubSub's subscriber table is. A process's keys go when it dies: the registering process
is linked to the registry process, which traps exits and drops a dead owner's entries (as
Elixir's partitions do). Reads (``lookup``, ``dispatch``, ``count``, ...) look at the
tables directly, without a message round trip, as Elixir's reads ETS; they never return a
process that is already dead, even before the registry has handled its exit (Elixir may).

Differences from Elixir: ``partitions`` is accepted and validated but has no effect (one
OS thread: there is no lock contention to spread); no listeners, no metadata, and
``match``/``select`` take Python predicates instead of match specs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import _runtime as rt
from ._errors import ActorsError, RegistrationError
from ._gen_server import GenServer, start_link
from ._runtime import Pid

__all__ = ["Registry", "UnknownRegistryError"]

KINDS = ("unique", "duplicate")


class UnknownRegistryError(ActorsError, ValueError):
    """No registry of that name is running (Elixir raises ArgumentError)."""


class _Table:
    __slots__ = ("name", "kind", "pid", "keys", "owners", "partitions")

    def __init__(self, name: str, kind: str, pid: Pid, partitions: int) -> None:
        self.name = name
        self.kind = kind
        self.pid = pid
        self.partitions = partitions
        # unique: key -> (pid, value); duplicate: key -> {pid: [value, ...]}
        self.keys: dict[Any, Any] = {}
        # owner pid -> {key: how many entries it holds under key}
        self.owners: dict[Pid, dict[Any, int]] = {}

    def drop(self, pid: Pid, key: Any) -> None:
        """Remove every entry ``pid`` holds under ``key``."""
        if self.kind == "unique":
            held = self.keys.get(key)
            if held is not None and held[0] == pid:
                del self.keys[key]
        else:
            by_pid = self.keys.get(key)
            if by_pid is not None:
                by_pid.pop(pid, None)
                if not by_pid:
                    del self.keys[key]
        owned = self.owners.get(pid)
        if owned is not None:
            owned.pop(key, None)
            if not owned:
                del self.owners[pid]

    def drop_owner(self, pid: Pid) -> None:
        for key in list(self.owners.get(pid, ())):
            self.drop(pid, key)


_tables: dict[str, _Table] = {}


def _table(registry: Any) -> _Table:
    table = _tables.get(registry) if isinstance(registry, str) else None
    if table is None or not rt.is_alive(table.pid):
        if table is not None:
            del _tables[registry]  # killed: its terminate never ran
        raise UnknownRegistryError(f"unknown registry: {registry!r} (start it with Registry.start_link)")
    return table


def _alive(pid: Pid) -> bool:
    return pid._proc is not None


class Registry(GenServer):
    """A registry process and, as static methods, Elixir's ``Registry`` API."""

    @classmethod
    def child_spec(cls, opts: Any = None) -> dict[str, Any]:
        """``(Registry, {"keys": ..., "name": ...})`` in a supervisor's children."""
        opts = dict(opts or {})
        return {"id": opts.get("id", opts.get("name", cls)), "start": (_start_from_opts, (opts,))}

    @classmethod
    def start_link(  # type: ignore[override]
        cls, keys: str = "unique", *, name: str, partitions: int = 1, timeout: float | None = 5.0
    ) -> Pid:
        """Start a registry linked to the caller, registered as ``name``."""
        if keys not in KINDS:
            raise ValueError(f"Registry: keys must be 'unique' or 'duplicate', got {keys!r}")
        if not isinstance(name, str) or not name:
            raise TypeError(f"Registry: name must be a non-empty str, got {name!r}")
        if partitions.__class__ is not int or partitions < 1:
            raise ValueError(f"Registry: partitions must be an int >= 1, got {partitions!r}")
        pid = start_link(cls, (keys, name, partitions), name=name, timeout=timeout)
        assert pid is not None
        return pid

    # -- the registry process -------------------------------------------------------

    def init(self, arg: tuple) -> Any:
        keys, name, partitions = arg
        rt.trap_exit(True)
        self.table = _tables[name] = _Table(name, keys, rt.self(), partitions)
        return ("ok", self.table)

    def handle_info(self, msg: Any, table: Any) -> Any:
        if msg.__class__ is tuple and len(msg) == 3 and msg[0] == "EXIT" and msg[1].__class__ is Pid:
            table.drop_owner(msg[1])
            return ("noreply", table)
        return super().handle_info(msg, table)

    def terminate(self, reason: Any, table: Any) -> None:
        name = table.name
        if _tables.get(name) is table:
            del _tables[name]

    # -- Elixir's API -----------------------------------------------------------------

    @staticmethod
    def register(registry: str, key: Any, value: Any = None) -> tuple:
        """Register the caller under ``key``: ``('ok', registry_pid)`` or, in a unique
        registry whose key is held by a live process, ``('error', ('already_registered', pid))``."""
        table = _table(registry)
        me = rt._current()
        pid = me.pid
        try:
            hash(key)
        except TypeError:
            raise TypeError(f"Registry.register: key must be hashable, got {key!r}") from None
        if table.kind == "unique":
            held = table.keys.get(key)
            if held is not None:
                if _alive(held[0]):
                    return ("error", ("already_registered", held[0]))
                table.drop(held[0], key)  # a dead owner whose exit is not handled yet
            table.keys[key] = (pid, value)
        else:
            table.keys.setdefault(key, {}).setdefault(pid, []).append(value)
        owned = table.owners.get(pid)
        if owned is None:
            owned = table.owners[pid] = {}
            rt.link(table.pid)  # its death drops its keys; the registry's kills it, as Elixir's
        owned[key] = owned.get(key, 0) + 1
        return ("ok", table.pid)

    @staticmethod
    def unregister(registry: str, key: Any) -> None:
        """Remove every entry the caller holds under ``key``."""
        table = _table(registry)
        pid = rt.self()
        table.drop(pid, key)
        if pid not in table.owners:
            rt.unlink(table.pid)

    @staticmethod
    def lookup(registry: str, key: Any) -> list[tuple[Pid, Any]]:
        """``[(pid, value)]`` of the live processes registered under ``key``."""
        table = _table(registry)
        held = table.keys.get(key)
        if held is None:
            return []
        if table.kind == "unique":
            return [held] if _alive(held[0]) else []
        return [(pid, value) for pid, values in held.items() if _alive(pid) for value in values]

    @staticmethod
    def dispatch(registry: str, key: Any, fn: Callable[[list[tuple[Pid, Any]]], Any]) -> None:
        """Call ``fn(entries)`` with the entries under ``key``, unless there are none."""
        entries = Registry.lookup(registry, key)
        if entries:
            fn(entries)

    @staticmethod
    def match(registry: str, key: Any, pred: Callable[[Any], bool]) -> list[tuple[Pid, Any]]:
        """The entries under ``key`` whose value satisfies ``pred``."""
        return [e for e in Registry.lookup(registry, key) if pred(e[1])]

    @staticmethod
    def keys(registry: str, pid: Pid) -> list[Any]:
        """The keys ``pid`` is registered under (repeated per entry in a duplicate registry)."""
        table = _table(registry)
        owned = table.owners.get(pid)
        if not owned or not _alive(pid):
            return []
        if table.kind == "unique":
            return list(owned)
        return [key for key, n in owned.items() for _ in range(n)]

    @staticmethod
    def values(registry: str, key: Any, pid: Pid) -> list[Any]:
        """The values ``pid`` registered under ``key``."""
        return [value for owner, value in Registry.lookup(registry, key) if owner == pid]

    @staticmethod
    def count(registry: str) -> int:
        """How many entries the registry holds (live owners only)."""
        table = _table(registry)
        if table.kind == "unique":
            return sum(1 for pid, _value in table.keys.values() if _alive(pid))
        return sum(len(values) for by_pid in table.keys.values() for pid, values in by_pid.items() if _alive(pid))

    @staticmethod
    def select(registry: str, pred: Callable[[Any, Pid, Any], bool] | None = None) -> list[tuple[Any, Pid, Any]]:
        """``[(key, pid, value)]`` of every live entry, filtered by ``pred(key, pid, value)``."""
        table = _table(registry)
        rows: list[tuple[Any, Pid, Any]] = []
        for key, held in list(table.keys.items()):
            entries = [held] if table.kind == "unique" else [(p, v) for p, vs in held.items() for v in vs]
            rows.extend((key, p, v) for p, v in entries if _alive(p) and (pred is None or pred(key, p, v)))
        return rows

    @staticmethod
    def update_value(registry: str, key: Any, fn: Callable[[Any], Any]) -> Any:
        """Replace the caller's value under ``key`` in a unique registry with ``fn(old)``:
        ``(new, old)``, or ``'error'`` if the caller does not hold the key."""
        table = _table(registry)
        if table.kind != "unique":
            raise ValueError("Registry.update_value needs a unique registry")
        held = table.keys.get(key)
        me = rt.self()
        if held is None or held[0] != me:
            return "error"
        new = fn(held[1])
        table.keys[key] = (me, new)
        return (new, held[1])

    # -- via (OTP's {via, Module, Name}: name is (registry, key) or (registry, key, value))

    @staticmethod
    def register_name(name: tuple, pid: Pid) -> str:
        """``'yes'`` or ``'no'``; only the caller itself can be registered, as in Elixir."""
        registry, key, value = _via_parts(name)
        if pid != rt.self():
            raise ValueError("Registry.register_name: a process can only register itself")
        return "yes" if Registry.register(registry, key, value)[0] == "ok" else "no"

    @staticmethod
    def unregister_name(name: tuple) -> None:
        registry, key, _value = _via_parts(name)
        Registry.unregister(registry, key)

    @staticmethod
    def whereis_name(name: tuple) -> Pid | None:
        registry, key, _value = _via_parts(name)
        table = _table(registry)
        if table.kind != "unique":
            raise ValueError("a via name needs a unique registry")
        entries = Registry.lookup(registry, key)
        return entries[0][0] if entries else None

    @staticmethod
    def send(name: tuple, msg: Any) -> Pid:
        pid = Registry.whereis_name(name)
        if pid is None:
            raise RegistrationError(f"no process is registered as {name!r}")
        rt.send(pid, msg)
        return pid


def _via_parts(name: Any) -> tuple[Any, Any, Any]:
    if name.__class__ is tuple and len(name) in (2, 3):
        return name[0], name[1], (name[2] if len(name) == 3 else None)
    raise TypeError(f"a Registry via name is (registry, key) or (registry, key, value), got {name!r}")


def _start_from_opts(opts: dict[str, Any]) -> Pid:
    unknown = set(opts) - {"keys", "name", "partitions", "id"}
    if unknown:
        raise ValueError(f"Registry: unknown option(s) {sorted(unknown)}")
    return Registry.start_link(opts.get("keys", "unique"), name=opts.get("name"), partitions=opts.get("partitions", 1))  # type: ignore[arg-type]
