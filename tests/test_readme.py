"""The README's examples run as written."""

from __future__ import annotations

import pathlib
import re

import actors

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


def test_readme_python_blocks_run():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert blocks, "the README has no python example"
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)  # noqa: S102 - our own docs
    assert actors.whereis("counter") is not None
    actors.stop("counter")


def test_readme_test_command_is_what_ci_runs():
    readme = README.read_text()
    ci = (README.parent / ".ci" / "run").read_text()
    command = (
        "npm ci --prefix tests/e2e/js --no-audit --no-fund && python3 -m venv .venv && "
        ".venv/bin/pip install -e '.[test]' && .venv/bin/python -m pytest -ra"
    )
    assert command in readme and command in ci
