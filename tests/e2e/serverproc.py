"""A server subprocess for the end-to-end tests, shared by every e2e test module."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 20.0
STOP_TIMEOUT = 15.0


class ServerProcess:
    """A server in a subprocess that prints ``listening on http(s)://HOST:PORT`` when ready:
    its address, its stderr (with bounded waits for log lines), and how to stop it."""

    def __init__(self, cmd: list[str], *, cwd: Path = ROOT, name: str = "the server", env: dict | None = None) -> None:
        self.name = name
        env = {**os.environ, **(env or {})}
        # This checkout, not whatever greenphx happens to be installed.
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
        env["PYTHONUNBUFFERED"] = "1"
        self.proc = subprocess.Popen(
            cmd,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            errors="replace",
        )
        self._stdout: queue.Queue = queue.Queue()
        self._stderr: list[str] = []
        self._stderr_changed = threading.Condition()
        threading.Thread(target=self._pump_stdout, daemon=True).start()
        threading.Thread(target=self._pump_stderr, daemon=True).start()
        self.returncode: int | None = None
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                line = self._stdout.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self.stop()
                raise RuntimeError(f"{self.name} printed no 'listening on' line in {START_TIMEOUT}s:\n{self.stderr}") from None
            if line is None:
                self.stop()
                raise RuntimeError(f"{self.name} exited before listening ({self.proc.returncode}):\n{self.stderr}")
            found = re.fullmatch(r"listening on (https?)://([^:]+):(\d+)", line.strip())
            if found:
                self.scheme, self.host, self.port = found.group(1), found.group(2), int(found.group(3))
                break
        secure = "s" if self.scheme == "https" else ""
        self.http = f"http{secure}://{self.host}:{self.port}"
        self.ws = f"ws{secure}://{self.host}:{self.port}"

    def _pump_stdout(self) -> None:
        for line in self.proc.stdout:
            self._stdout.put(line)
        self._stdout.put(None)

    def _pump_stderr(self) -> None:
        for line in self.proc.stderr:
            with self._stderr_changed:
                self._stderr.append(line)
                self._stderr_changed.notify_all()

    @property
    def stderr(self) -> str:
        with self._stderr_changed:
            return "".join(self._stderr)

    def log_mark(self) -> int:
        """A position in stderr; :meth:`wait_log` and :meth:`log_since` read from there."""
        with self._stderr_changed:
            return len(self._stderr)

    def log_since(self, mark: int) -> str:
        with self._stderr_changed:
            return "".join(self._stderr[mark:])

    def wait_log(self, pattern: str, mark: int = 0, timeout: float = 2.0) -> str:
        """Wait (bounded) until stderr after ``mark`` matches the regex; the text after ``mark``."""
        deadline = time.monotonic() + timeout
        with self._stderr_changed:
            while True:
                text = "".join(self._stderr[mark:])
                if re.search(pattern, text):
                    return text
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no log line matching {pattern!r} within {timeout}s; got:\n{text}")
                self._stderr_changed.wait(remaining)

    def stop(self) -> int:
        """SIGTERM, then SIGKILL after a bound; the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_TIMEOUT)
        self.returncode = self.proc.returncode
        return self.returncode
