"""The application root: start a whole tree inside a host service, stop it in order.

Put it in your service::

    from supervision import Application

    app = Application([Cache, Endpoint], name="myapp")
    app.start()
    ...
    app.stop()          # blocks until every child is stopped, in reverse order

or ``with Application([...]) as app: ...``. Stopping twice is harmless.

The root supervisor is started unlinked from the caller and watched with a monitor, so
the host is not killed when the tree gives up (restart intensity exceeded); ``app.wait()``
returns the tree's exit reason when that happens.
"""

from __future__ import annotations

import logging
from typing import Any

import actors
from actors import TIMEOUT, Pid

from ._child_spec import validate_children
from ._supervisor import Supervisor, validate_flags

log = logging.getLogger("supervision")

__all__ = ["Application"]


class Application:
    """An embeddable supervision tree root. Options: those of ``supervision.start_link``."""

    def __init__(
        self,
        children: list[Any],
        *,
        name: str | None = None,
        strategy: str = "one_for_one",
        max_restarts: int = 3,
        max_seconds: float = 5,
        auto_shutdown: str = "never",
    ) -> None:
        validate_flags(strategy, max_restarts, max_seconds, auto_shutdown=auto_shutdown)
        self._specs = validate_children(children)
        self._flags = (strategy, max_restarts, max_seconds, auto_shutdown)
        self.name = name
        self.pid: Pid | None = None
        self._ref: Any = None
        self.exit_reason: Any = None

    def start(self, timeout: float | None = None) -> Pid:
        """Start the tree; returns the root supervisor's pid. Raises StartError on failure."""
        if self.pid is not None and actors.is_alive(self.pid):
            return self.pid
        root = Supervisor()
        root._flags = self._flags  # type: ignore[attr-defined]
        pid = actors.start(root, self._specs, name=self.name, timeout=timeout)
        assert pid is not None
        self.pid = pid
        self._ref = actors.monitor(pid)
        self.exit_reason = None
        log.info("application %s started (root %s)", self.name or "", pid)
        return pid

    @property
    def running(self) -> bool:
        """Whether the root supervisor is alive."""
        return self.pid is not None and actors.is_alive(self.pid)

    def stop(self, timeout: float | None = None) -> None:
        """Stop the tree in order and wait for it; harmless if already stopped."""
        pid = self.pid
        if pid is None:
            return
        if actors.is_alive(pid):
            try:
                actors.stop(pid, "shutdown", timeout)
            except actors.CallExit as e:
                if e.why != "noproc":
                    raise
        self.wait(timeout)
        log.info("application %s stopped (root %s): %r", self.name or "", pid, self.exit_reason)

    def wait(self, timeout: float | None = None) -> Any:
        """Block until the tree has stopped; its exit reason (TIMEOUT if still running)."""
        if self._ref is None:
            return self.exit_reason
        ref = self._ref
        msg = actors.receive(
            lambda m: m.__class__ is tuple and len(m) == 5 and m[1] is ref and m[0] == "DOWN", timeout, default=TIMEOUT
        )
        if msg is TIMEOUT:
            return TIMEOUT
        self._ref = None
        self.exit_reason = msg[4]
        return self.exit_reason

    def is_down(self, msg: Any) -> bool:
        """Whether ``msg`` is this tree's DOWN, for a caller that waits on several things
        with its own ``receive`` (then ``stop``/``wait`` see the tree as already stopped)."""
        ref = self._ref
        if ref is None or not (msg.__class__ is tuple and len(msg) == 5 and msg[1] is ref and msg[0] == "DOWN"):
            return False
        self._ref = None
        self.exit_reason = msg[4]
        return True

    def __enter__(self) -> Application:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()
