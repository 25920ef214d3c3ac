"""The PubSub server: a supervisor of ``pool_size`` shards and the adapter's processes.

See the package docs (:mod:`transport.pubsub`) for how to put it in a tree and every
option with its default.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import actors
from actors import Pid
from supervision import ChildSpec, Supervisor
from supervision import child_spec as normalise_child_spec

from ._api import _Instance, _instances
from ._local import LocalAdapter
from ._shard import Shard

__all__ = ["PubSub"]

_ADAPTER_CALLBACKS = ("node_name", "child_spec", "broadcast", "direct_broadcast")


@dataclass(frozen=True)
class _Config:
    name: str
    pool_size: int
    adapter: Any
    adapter_name: str
    adapter_spec: ChildSpec


def _config(opts: dict[str, Any] | None, kwargs: dict[str, Any], function: str) -> _Config:
    if opts is not None and not isinstance(opts, dict):
        raise TypeError(f"{function}: options must be given as keywords or one dict, got {type(opts).__name__}")
    merged = dict(opts or {})
    both = set(merged) & set(kwargs)
    if both:
        raise TypeError(f"{function}: option {min(both)!r} given twice")
    merged.update(kwargs)
    name = merged.pop("name", None)
    if name is None:
        raise TypeError(f"{function}: the name option is required (the name to subscribe and broadcast with)")
    if not isinstance(name, str) or not name:
        raise TypeError(f"{function}: name must be a non-empty str, got {name!r}")
    # phoenix_pubsub's default. Partitions buy no parallelism on one hub, and more of
    # them made each delivery 1.4-1.7x dearer (subscribers come out in partition order).
    pool_size = merged.pop("pool_size", 1)
    if pool_size is None:
        pool_size = 1
    elif isinstance(pool_size, bool) or not isinstance(pool_size, int):
        raise TypeError(f"{function}: pool_size must be an int >= 1 or None, got {pool_size!r}")
    elif pool_size < 1:
        raise ValueError(f"{function}: pool_size must be an int >= 1 or None, got {pool_size!r}")
    adapter = merged.pop("adapter", LocalAdapter)
    missing = [cb for cb in _ADAPTER_CALLBACKS if not callable(getattr(adapter, cb, None))]
    if missing:
        raise TypeError(
            f"{function}: adapter must provide {', '.join(_ADAPTER_CALLBACKS)} (see transport.pubsub.Adapter); "
            f"{adapter!r} lacks {', '.join(missing)}"
        )
    adapter_name = f"{name}.Adapter"
    spec = adapter.child_spec(name=name, adapter_name=adapter_name, pool_size=pool_size, **merged)
    return _Config(name, pool_size, adapter, adapter_name, normalise_child_spec(spec))


class PubSub(Supervisor):
    """A named PubSub server; see the package docs. Not instantiated by users."""

    strategy = "one_for_one"

    @classmethod
    def child_spec(cls, opts: dict[str, Any] | None = None, /, **options: Any) -> ChildSpec:
        """The PubSub as a child of your supervisor (type supervisor, id its name).

        Options as keywords or one dict (so ``(PubSub, {"name": ...})`` works in a
        children list). Bad options raise here, before anything starts.
        """
        config = _config(opts, options, "PubSub.child_spec")
        return ChildSpec(id=config.name, start=(cls._start_config, (config,)), type="supervisor")

    @classmethod
    def start_link(cls, opts: dict[str, Any] | None = None, /, **options: Any) -> Pid:
        """Start the PubSub linked to the caller; its supervisor's pid.

        Raises ``actors.StartError`` with ``('already_started', pid)`` if a PubSub (or any
        process) is already registered under the name.
        """
        return cls._start_config(_config(opts, options, "PubSub.start_link"))

    @classmethod
    def _start_config(cls, config: _Config) -> Pid:
        return super().start_link(config, name=config.name)

    # -- server callbacks ---------------------------------------------------------------

    def init(self, config: _Config) -> Any:
        # The supervisor now holds the name, so an instance left under it is a dead
        # predecessor's: replace it. The instance is visible before the shards start, as
        # Elixir's Registry is before the adapter starts; a subscription made meanwhile
        # is picked up by its shard's init.
        instance = _Instance(config.name, config.adapter, config.adapter_name, config.pool_size, actors.self())
        _instances[config.name] = instance
        self._instance = instance
        children: list[Any] = [{"id": ("shard", i), "start": (Shard.start_shard, (instance, i))} for i in range(config.pool_size)]
        children.append(config.adapter_spec)
        result = super().init(children)
        if not (result.__class__ is tuple and result[0] == "ok"):
            self._forget()
        return result

    def terminate(self, reason: Any, state: Any) -> None:
        try:
            super().terminate(reason, state)
        finally:
            self._forget()

    def _forget(self) -> None:
        instance = getattr(self, "_instance", None)
        if instance is not None:
            name = instance.name
            if _instances.get(name) is instance:
                del _instances[name]

    def __repr__(self) -> str:
        instance = getattr(self, "_instance", None)
        name = instance.name if instance is not None else "?"
        return f"<PubSub {name!r} {super().__repr__()}>"
