"""End-to-end fixtures: examples/integration_app.py served in a subprocess on a free port."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from serverproc import ServerProcess

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "examples" / "integration_app.py"


class ServedApp(ServerProcess):
    """A running ``examples/integration_app.py``."""

    def __init__(self, log_level: str = "debug") -> None:
        super().__init__([sys.executable, str(APP), "--port", "0", "--log-level", log_level], name=APP.name)


@pytest.fixture(scope="module")
def integration_app():
    """examples/integration_app.py, listening on a free port for the whole module."""
    app = ServedApp()
    try:
        yield app
    finally:
        app.stop()


@pytest.fixture
def fresh_integration_app():
    """A server of its own, for a test that stops it."""
    app = ServedApp()
    try:
        yield app
    finally:
        app.stop()
