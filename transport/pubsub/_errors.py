"""The exceptions of the PubSub layer.

The whole tree::

    Exception
     ├── PubSubError                 base of everything below
     │    ├── UnknownPubSubError     no PubSub is running under that name (never started,
     │    │                          stopped, or its supervisor died); also a LookupError
     │    └── BroadcastError         a ``*_or_raise`` broadcast failed; ``.reason`` is the
     │                               adapter's reason (the non-raising form returns
     │                               ``('error', reason)`` instead)
     └── TypeError                   a bad argument (a topic that is not a str, a
                                     dispatcher that is not callable, ...); the message
                                     names the argument

Failures a caller must expect (a remote node unreachable, a Redis connection down) come
back as ``('error', reason)`` from ``broadcast``, ``broadcast_from`` and
``direct_broadcast``, or as :class:`BroadcastError` from their ``_or_raise`` forms.
Mistakes (an unknown PubSub, a bad argument) always raise.
"""

from __future__ import annotations

from typing import Any

__all__ = ["BroadcastError", "PubSubError", "UnknownPubSubError"]


class PubSubError(Exception):
    """Base class of the PubSub layer's errors."""


class UnknownPubSubError(PubSubError, LookupError):
    """No PubSub is running under the given name."""

    def __init__(self, pubsub: str, function: str) -> None:
        super().__init__(
            f"{function}: no PubSub is running under the name {pubsub!r} (never started, "
            "stopped, or its supervisor exited); start one with PubSub.child_spec(name=...)"
        )
        self.pubsub = pubsub


class BroadcastError(PubSubError):
    """A broadcast failed; ``reason`` is the adapter's reason for it."""

    def __init__(self, reason: Any, function: str = "broadcast") -> None:
        super().__init__(f"{function} failed: {reason!r}")
        self.reason = reason
