"""Shared fixtures and the CI rule that a skipped test is a failure."""

from __future__ import annotations

import os

import pytest

import actors
from actors import _runtime


@pytest.fixture(autouse=True)
def fresh_test_process():
    """Each test starts as a fresh adopted process and ends with it released.

    The main greenlet is adopted as a process on first use; without this, one test's
    leftover messages, links or trap_exit flag would leak into the next test.
    """
    _runtime._release_current()
    yield
    _runtime._release_current()


@pytest.fixture
def no_leaks():
    """Fail the test if it leaves processes or names behind (checked after a hub turn)."""
    import gevent

    before_procs = set(actors.processes())
    before_names = set(actors.registered())
    yield
    _runtime._release_current()
    gevent.sleep(0)
    leaked = set(actors.processes()) - before_procs
    assert not leaked, f"processes left behind: {sorted(leaked)}"
    assert set(actors.registered()) == before_names


@pytest.fixture(scope="session")
def redis_server():
    """A real redis-server on a free port for the whole run (tests/redis_server.py); skips without one."""
    from redis_server import RedisServer

    server = RedisServer.start()
    try:
        yield server
    finally:
        server.stop()


_skipped: list[str] = []


def pytest_runtest_logreport(report):
    if report.skipped and not hasattr(report, "wasxfail"):
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session, exitstatus):
    # In CI a skip hides a missing tool: make it a failure, as the project's rules require.
    if os.environ.get("CI") == "true" and _skipped:
        print(f"\nCI=true: {len(_skipped)} skipped test(s) count as failures: {_skipped}")
        session.exitstatus = 1
