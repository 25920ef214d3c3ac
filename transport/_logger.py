"""Phoenix.Logger's socket and channel lines, driven by telemetry.

    CONNECTED TO UserSocket in 45µs
      Transport: websocket
      Serializer: V2JSONSerializer
      Parameters: {'vsn': '2.0.0', 'password': '[FILTERED]'}

    JOINED room:lobby in 60µs
      Parameters: {}

Levels: a socket handler's ``log`` attribute (default ``'info'``, False disables) for
connects; a channel's ``log_join`` (``'info'``) and ``log_handle_in`` (``'debug'``) for
joins and handled messages. Parameters whose key contains one of ``FILTER_PARAMETERS``
are shown as ``[FILTERED]``, as Phoenix's ``filter_parameters`` default does.
"""

from __future__ import annotations

import logging
from typing import Any

from . import _telemetry

__all__ = ["FILTER_PARAMETERS", "install"]

FILTER_PARAMETERS = ["password"]

_socket_log = logging.getLogger("transport.socket")
_channel_log = logging.getLogger("transport.channel")

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def _level(value: Any) -> int | None:
    if value.__class__ is str:
        known = _LEVELS.get(value)  # the usual spelling: no lower() per connect and join
        if known is not None:
            return known
    if value is False or value is None:
        return None
    if isinstance(value, int):
        return value
    return _LEVELS.get(str(value).lower(), logging.INFO)


def _duration(ns: int) -> str:
    us = ns // 1000
    return f"{us}µs" if us < 1000 else f"{us // 1000}ms"


def filter_params(params: Any) -> Any:
    """Params with sensitive values replaced by ``[FILTERED]`` (recursively)."""
    if isinstance(params, dict):
        return {
            k: "[FILTERED]" if isinstance(k, str) and any(f in k for f in FILTER_PARAMETERS) else filter_params(v)
            for k, v in params.items()
        }
    if isinstance(params, list):
        return [filter_params(v) for v in params]
    return params


def _connected(event: tuple, measurements: dict, meta: dict, _config: Any) -> None:
    level = _level(meta.get("log"))
    if level is None or not _socket_log.isEnabledFor(level):
        return
    verb = "CONNECTED TO" if meta.get("result") == "ok" else "REFUSED CONNECTION TO"
    handler = getattr(meta.get("user_socket"), "__qualname__", meta.get("user_socket"))
    serializer = type(meta.get("serializer")).__name__
    _socket_log.log(
        level,
        "%s %s in %s\n  Transport: %s\n  Serializer: %s\n  Parameters: %r",
        verb,
        handler,
        _duration(measurements["duration"]),
        meta.get("transport"),
        serializer,
        filter_params(meta.get("params")),
    )


def _joined(event: tuple, measurements: dict, meta: dict, _config: Any) -> None:
    socket = meta["socket"]
    level = _level(getattr(socket.channel, "log_join", "info"))
    if level is None or not _channel_log.isEnabledFor(level):
        return
    verb = "JOINED" if meta.get("result") == "ok" else "REFUSED JOIN"
    _channel_log.log(
        level,
        "%s %s in %s\n  Parameters: %r",
        verb,
        socket.topic,
        _duration(measurements["duration"]),
        filter_params(meta.get("params")),
    )


def _handled_in(event: tuple, measurements: dict, meta: dict, _config: Any) -> None:
    socket = meta["socket"]
    level = _level(getattr(socket.channel, "log_handle_in", "debug"))
    if level is None or not _channel_log.isEnabledFor(level):
        return
    _channel_log.log(
        level,
        "HANDLED %s INCOMING ON %s (%s) in %s\n  Parameters: %r",
        meta.get("event"),
        socket.topic,
        getattr(socket.channel, "__qualname__", socket.channel),
        _duration(measurements["duration"]),
        filter_params(meta.get("params")),
    )


_HANDLED_IN = ("phoenix", "channel_handled_in")
_HANDLED_IN_ID = "transport.logger.handled_in"


_CONNECTED = ("phoenix", "socket_connected")
_CONNECTED_ID = "transport.logger.connected"
_JOINED = ("phoenix", "channel_joined")
_JOINED_ID = "transport.logger.joined"


def _unobserved(event: tuple, handler_id: str, logger: logging.Logger, level_value: Any) -> bool:
    # Nobody would see the event: no handler, or only this module's, whose line is below
    # the log level. Then the caller skips the clock and the event's dicts altogether.
    handlers = _telemetry._handlers.get(event)
    if not handlers:
        return True
    if len(handlers) != 1 or handler_id not in handlers:
        return False
    level = _level(level_value)
    return level is None or not logger.isEnabledFor(level)


def handled_in_unobserved(channel: Any) -> bool:
    """Whether nobody would see ``channel_handled_in`` for ``channel``: no handler, or only
    this logger's with the channel's HANDLED line below the log level (the default)."""
    return _unobserved(_HANDLED_IN, _HANDLED_IN_ID, _channel_log, getattr(channel, "log_handle_in", "debug"))


def connected_unobserved(handler_cls: Any) -> bool:
    """Whether nobody would see ``socket_connected`` for sockets of ``handler_cls``."""
    return _unobserved(_CONNECTED, _CONNECTED_ID, _socket_log, handler_cls.log)


def joined_unobserved(channel: Any) -> bool:
    """Whether nobody would see ``channel_joined`` for ``channel``."""
    return _unobserved(_JOINED, _JOINED_ID, _channel_log, getattr(channel, "log_join", "info"))


def install() -> None:
    """Attach the log handlers (done on import of ``transport``; idempotent)."""
    for handler_id, event, fn in (
        (_CONNECTED_ID, _CONNECTED, _connected),
        (_JOINED_ID, _JOINED, _joined),
        (_HANDLED_IN_ID, _HANDLED_IN, _handled_in),
    ):
        _telemetry.detach(handler_id)
        _telemetry.attach(handler_id, event, fn)
