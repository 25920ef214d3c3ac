"""Run an escript on the real BEAM and read back its ``key value`` trace lines.

For behaviour that needs an Erlang callback module (a supervisor's ``init/1``), which
``tests/erlang.py``'s expression evaluator cannot define: the escript is compiled
(``-mode(compile)``), so it can name itself as the callback module with ``?MODULE``.
Lines the BEAM prints for other reasons (supervisor and crash reports) are ignored: only
``key value`` lines whose key was asked for come back. Skips without ``escript`` (CI
counts the skip as a failure).
"""

from __future__ import annotations

import os
import subprocess
import tempfile

from erlang import require_erl

__all__ = ["escript_trace"]


def escript_trace(source: str, keys: list[str], timeout: float = 60.0) -> dict[str, str]:
    """Run ``source`` (a whole escript) and return ``{key: rest of its line}``."""
    escript = require_erl()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "trace.escript")
        with open(path, "w") as f:
            f.write(source)
        done = subprocess.run([escript, path], capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise AssertionError(f"escript failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    found: dict[str, str] = {}
    for line in done.stdout.splitlines():
        key, _, value = line.partition(" ")
        if key in keys:
            found[key] = value
    missing = set(keys) - set(found)
    assert not missing, f"the escript printed no {sorted(missing)}:\n{done.stdout}"
    return found
