"""A small telemetry API (as Erlang's :telemetry): attach handlers to events, execute events.

Events carry a name (a tuple of strings), measurements (``duration`` in native
nanoseconds) and metadata. The transport layer emits ``('phoenix', 'socket_connected')``,
``('phoenix', 'channel_joined')``, ``('phoenix', 'channel_handled_in')`` and
``('phoenix', 'socket_drain')``. A handler that raises is detached and logged once, as
:telemetry does, so a broken handler cannot break sockets.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

log = logging.getLogger("transport.telemetry")

__all__ = ["attach", "attach_many", "detach", "execute", "list_handlers"]

Handler = Callable[[tuple, dict, dict, Any], None]

_handlers: dict[tuple, dict[str, tuple[Handler, Any]]] = {}
_ids: dict[str, list[tuple]] = {}


def attach(handler_id: str, event: tuple, fn: Handler, config: Any = None) -> None:
    """Call ``fn(event, measurements, metadata, config)`` on every ``event``."""
    attach_many(handler_id, [event], fn, config)


def attach_many(handler_id: str, events: Iterable[tuple], fn: Handler, config: Any = None) -> None:
    """Attach one handler to several events; the id must be unused."""
    if not isinstance(handler_id, str):
        raise TypeError(f"attach: handler_id must be a str, got {type(handler_id).__name__}")
    if not callable(fn):
        raise TypeError("attach: fn must be callable")
    if handler_id in _ids:
        raise ValueError(f"attach: a handler with id {handler_id!r} is already attached")
    events = [tuple(e) for e in events]
    _ids[handler_id] = events
    for event in events:
        _handlers.setdefault(event, {})[handler_id] = (fn, config)


def detach(handler_id: str) -> bool:
    """Remove a handler; False if no handler has that id."""
    events = _ids.pop(handler_id, None)
    if events is None:
        return False
    for event in events:
        _handlers.get(event, {}).pop(handler_id, None)
    return True


def list_handlers(event: tuple) -> list[str]:
    """The ids of the handlers attached to ``event``."""
    return list(_handlers.get(tuple(event), {}))


def execute(event: tuple, measurements: dict, metadata: dict) -> None:
    """Call every handler attached to ``event``."""
    handlers = _handlers.get(event)
    if not handlers:
        return
    for handler_id, (fn, config) in list(handlers.items()):
        try:
            fn(event, measurements, metadata, config)
        except Exception:  # noqa: BLE001 - a failing handler is detached, not fatal
            log.exception("telemetry handler %r failed on %r and was detached", handler_id, event)
            detach(handler_id)
