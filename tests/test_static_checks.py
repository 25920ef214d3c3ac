"""The repository passes its own static checks, with the settings in pyproject.toml.

``ruff check`` (lint), ``ruff format --check`` (layout) and ``mypy`` on the three packages
run here as subprocesses, so CI fails on a change that breaks any of them. Each tool comes
with the ``test`` extra; without it the test skips, which CI counts as a failure.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("actors", "supervision", "transport")


def _run(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed: python3 -m pip install -e '.[test]'")
    # The interpreter running the tests, so mypy sees the same installed packages and stubs.
    return subprocess.run(
        [sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True, timeout=110, check=False
    )


def _explain(proc: subprocess.CompletedProcess[str], command: str) -> str:
    return f"`{command}` exited {proc.returncode}:\n{proc.stdout}{proc.stderr}"


def test_ruff_lint_passes() -> None:
    proc = _run("ruff", "check", "--no-cache", ".")
    assert proc.returncode == 0, _explain(proc, "ruff check .")


def test_ruff_format_leaves_every_file_unchanged() -> None:
    proc = _run("ruff", "format", "--check", "--no-cache", ".")
    assert proc.returncode == 0, _explain(proc, "ruff format --check .")


def test_mypy_passes_on_the_three_packages(tmp_path: Path) -> None:
    # A fresh cache directory: a stale .mypy_cache cannot hide an error, and the tree stays clean.
    proc = _run("mypy", "--cache-dir", str(tmp_path / "mypy_cache"), *PACKAGES)
    assert proc.returncode == 0, _explain(proc, "mypy " + " ".join(PACKAGES))
    assert "Success: no issues found" in proc.stdout, proc.stdout
