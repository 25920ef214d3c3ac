"""A real ``redis-server`` for the tests: on a free port of 127.0.0.1, in a temporary directory.

    server = RedisServer.start()      # waits until it answers PING
    server.url                        # "redis://127.0.0.1:PORT/0"
    server.kill()                     # SIGKILL, as a crash would
    server.restart()                  # same port, empty (nothing is saved)
    server.stop()

The session fixture ``redis_server`` (in tests/conftest.py) shares one for the whole run;
a test that kills Redis starts its own. Without ``redis-server`` the test is skipped, which
the CI rule turns into a failure.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest

__all__ = ["RedisServer", "free_port", "require_redis"]

START_TIMEOUT = 10.0


def require_redis() -> str:
    """The path of ``redis-server``, or skip the test (CI counts the skip as a failure)."""
    path = shutil.which("redis-server")
    if path is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ping(port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One redis-server process (see the module docs)."""

    def __init__(self, binary: str, port: int, directory: str) -> None:
        self.binary = binary
        self.port = port
        self.dir = directory
        self.url = f"redis://127.0.0.1:{port}/0"
        self.proc: subprocess.Popen | None = None

    @classmethod
    def start(cls) -> RedisServer:
        server = cls(require_redis(), free_port(), tempfile.mkdtemp(prefix="greenphx-redis-"))
        server._launch()
        return server

    def _launch(self) -> None:
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.dir,
                "--loglevel",
                "warning",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while not _ping(self.port):
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited at start ({self.proc.returncode}) on port {self.port}")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"redis-server did not answer PING on port {self.port} within {START_TIMEOUT}s")
            time.sleep(0.02)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL, and wait for the process to be gone."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def restart(self) -> None:
        """Start again on the same port (after :meth:`kill`); empty, as nothing is saved."""
        self.kill()
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                self._launch()
                return
            except RuntimeError:
                # The port may linger for a moment after a kill.
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def stop(self) -> None:
        """SIGTERM (SIGKILL after a bound) and remove the directory."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)
