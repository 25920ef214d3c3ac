"""Headless Chromium for the page tests (selenium with Debian's chromium and chromedriver).

    from browser import headless_chromium

    @pytest.fixture(scope="module")
    def browser():
        with headless_chromium() as driver:
            yield driver

Without selenium, chromium or chromedriver the calling test is skipped locally and fails
under ``CI=true``, where .ci/run must have installed them.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

__all__ = ["CHROMEDRIVER", "CHROMIUM", "headless_chromium", "unavailable"]

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def unavailable(reason: str) -> None:
    """Skip locally; under CI=true a missing tool is a failure, never a skip."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}. Under CI=true nothing may be skipped: .ci/run installs what these tests need.", pytrace=False)
    pytest.skip(reason)


@contextmanager
def headless_chromium() -> Iterator[Any]:
    """A Chrome WebDriver on a fresh profile, with the page's console log kept; quit after."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.options import Options
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        unavailable("selenium is not installed (pip install selenium)")
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not os.access(path, os.X_OK):
            unavailable(f"{path} not found (apt-get install -y {package})")
    profile = tempfile.mkdtemp(prefix="greenphx-chromium-")
    options = Options()
    options.binary_location = CHROMIUM
    # Pages in other windows must not have their timers throttled as background pages.
    for arg in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=900,900",
        "--disable-background-timer-throttling",
        "--disable-renderer-backgrounding",
        "--disable-backgrounding-occluded-windows",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        driver.set_page_load_timeout(20)
        driver.set_script_timeout(20)
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
