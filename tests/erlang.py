"""Golden vectors from a real BEAM: evaluate Erlang expressions with Debian's ``erl``.

Anything that must match the BEAM's bytes (external terms, Phoenix.Token, Plug's session
cookie, phoenix_pubsub_redis messages) is checked against what Erlang itself computes::

    from erlang import erl_eval
    [hexbin, flag] = erl_eval(['term_to_binary({ok, <<"x">>})', '1 + 1 =:= 2'])
    # -> [b"\\x83h\\x02w\\x02okm\\x00\\x00\\x00\\x01x", "true"]

Each expression is evaluated in one ``escript`` run (one VM start for the whole list); a
binary result comes back as ``bytes``, any other as its ``~w`` text. Bytes produced by
Python go into an expression with :func:`erl_binary`. Without ``erl`` the calling test is
skipped, which the suite's CI rule turns into a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

import pytest

__all__ = ["erl_binary", "erl_eval", "erl_string", "require_erl"]

_SCRIPT = r"""#!/usr/bin/env escript
%%! -noshell
-mode(compile).
main([Path]) ->
    {ok, Text} = file:read_file(Path),
    Exprs = binary:split(Text, <<"\n%%--\n">>, [global, trim_all]),
    lists:foreach(fun run/1, Exprs).

run(Source) ->
    {ok, Tokens, _} = erl_scan:string(unicode:characters_to_list(Source) ++ "."),
    {ok, Parsed} = erl_parse:parse_exprs(Tokens),
    {value, Value, _} = erl_eval:exprs(Parsed, erl_eval:new_bindings()),
    case is_binary(Value) of
        true -> io:format("B ~s~n", [binary:encode_hex(Value)]);
        false -> io:format("T ~w~n", [Value])
    end.
"""


def require_erl() -> str:
    """The path of ``escript``, or skip the test (CI counts the skip as a failure)."""
    path = shutil.which("escript")
    if path is None:
        pytest.skip("Erlang is not installed (apt-get install erlang-base)")
    return path


def erl_binary(data: bytes) -> str:
    """An Erlang binary literal holding ``data``."""
    return "<<" + ",".join(str(b) for b in data) + ">>"


def erl_string(text: str) -> str:
    """An Erlang UTF-8 binary literal holding ``text``."""
    return erl_binary(text.encode("utf-8"))


def erl_eval(expressions: list[str], timeout: float = 60.0) -> list[bytes | str]:
    """Evaluate each Erlang expression on a real BEAM; binaries as bytes, others as text."""
    escript = require_erl()
    with tempfile.TemporaryDirectory() as tmp:
        script = os.path.join(tmp, "golden.escript")
        source = os.path.join(tmp, "exprs.erl.txt")
        with open(script, "w") as f:
            f.write(_SCRIPT)
        with open(source, "w") as f:
            f.write("\n%%--\n".join(expressions) + "\n%%--\n")
        done = subprocess.run([escript, script, source], capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise AssertionError(f"erl failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    results: list[bytes | str] = []
    for line in done.stdout.splitlines():
        kind, _, value = line.partition(" ")
        results.append(bytes.fromhex(value) if kind == "B" else value)
    assert len(results) == len(expressions), done.stdout
    return results
