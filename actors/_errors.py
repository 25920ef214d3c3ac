"""The exceptions of the process runtime.

The whole tree::

    BaseException
     └── Exit                  a process is exiting with ``.reason`` (raise it to exit)
          └── CallExit          a call() failed: ``.why`` is 'noproc', 'timeout' or the
                                callee's exit reason
    Exception
     ├── ActorsError           base of the runtime's usage errors
     │    ├── NotAProcessError  a process-only API was used from gevent's hub
     │    ├── NoProcError       link() to a process that is not alive (Erlang's error:noproc)
     │    ├── RegistrationError a name is taken, unknown, or the process is dead
     │    ├── StartError        a GenServer's start failed; ``.reason`` says why
     │    └── BadReturnError    a callback returned a value outside its contract
     └── TimeoutError
          └── ReceiveTimeout    receive() saw no matching message in time

``Exit`` derives from ``BaseException`` (like ``GreenletExit`` and ``SystemExit``) so that
``except Exception`` in user code does not swallow an exit signal: in Erlang, ``catch`` of
an error does not catch an exit either unless asked to.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ActorsError",
    "BadReturnError",
    "CallExit",
    "Exit",
    "NoProcError",
    "NotAProcessError",
    "ReceiveTimeout",
    "RegistrationError",
    "StartError",
]


class Exit(BaseException):
    """The current process exits with ``reason``; uncaught, it ends the process."""

    def __init__(self, reason: Any = "normal") -> None:
        super().__init__(reason)
        self.reason = reason

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.reason!r})"


class CallExit(Exit):
    """A call failed. The exit reason is ``(why, ('call', pid, request))``, as OTP's."""

    def __init__(self, why: Any, pid: Any, request: Any) -> None:
        super().__init__((why, ("call", pid, request)))
        self.why = why
        self.pid = pid
        self.request = request

    def __str__(self) -> str:
        return f"call to {self.pid} failed: {self.why!r} (request {self.request!r})"


class ActorsError(Exception):
    """Base class of the runtime's usage errors."""


class NotAProcessError(ActorsError, RuntimeError):
    """A function that needs a calling process was called from gevent's hub greenlet."""


class NoProcError(ActorsError):
    """``link`` to a process that is not alive, by a caller that does not trap exits.

    Erlang raises ``error:noproc`` there, an ordinary error that ``catch`` sees and that,
    uncaught, crashes the caller; so this is an ``Exception``, not an ``Exit``.
    """

    def __init__(self, pid: Any) -> None:
        super().__init__(f"link: {pid} is not alive (noproc)")
        self.pid = pid
        self.reason = "noproc"


class RegistrationError(ActorsError, ValueError):
    """A name is already taken, not registered, or the process is not alive."""


class StartError(ActorsError):
    """Starting a process failed (init stopped, crashed or timed out)."""

    def __init__(self, reason: Any) -> None:
        super().__init__(reason)
        self.reason = reason


class BadReturnError(ActorsError, TypeError):
    """A callback returned something its contract does not allow."""

    def __init__(self, callback: str, value: Any, expected: str) -> None:
        super().__init__(f"{callback} returned {value!r}; expected {expected}")
        self.callback = callback
        self.value = value


class ReceiveTimeout(TimeoutError):
    """receive() found no matching message before its timeout."""
