"""phx-serve as a user runs it: a subprocess on a free port, real clients, signals, errors."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from serverproc import ServerProcess
from websockets.asyncio.client import connect as aconnect
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from transport.client import ConnectError, Socket

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
PHX_SERVE = [sys.executable, os.path.join(REPO, "bin", "phx-serve")]


def start(*args):
    """phx-serve with ``args`` from this folder (so ``serve_target`` imports); running."""
    return ServerProcess([*PHX_SERVE, *args], cwd=Path(HERE), name="phx-serve")


def run(*args, timeout=30):
    return subprocess.run(
        [*PHX_SERVE, *args], cwd=HERE, capture_output=True, text=True, timeout=timeout, env={**os.environ, "PYTHONPATH": REPO}
    )


def test_serves_a_user_endpoint_and_stops_cleanly_on_sigterm():
    server = start("serve_target:endpoint", "--port", "0")
    try:
        with connect(f"{server.ws}/socket/websocket?vsn=2.0.0") as ws:
            ws.send(json.dumps(["1", "1", "lobby:a", "phx_join", {}]))
            assert json.loads(ws.recv(timeout=5)) == ["1", "1", "lobby:a", "phx_reply", {"response": {}, "status": "ok"}]
            ws.send(json.dumps(["1", "2", "lobby:a", "echo", {"x": 1}]))
            assert json.loads(ws.recv(timeout=5))[4] == {"response": {"x": 1}, "status": "ok"}
            assert server.stop() == 0
            with pytest.raises(ConnectionClosed):
                ws.recv(timeout=5)
            assert ws.close_code == 1012
    finally:
        server.stop()
    assert "Traceback" not in server.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["no_such_module_xyz:endpoint"], "cannot import 'no_such_module_xyz'"),
        (["serve_target:missing"], "has no attribute 'missing'"),
        (["serve_target:not_an_endpoint"], "is not an Endpoint"),
        (["serve_target"], "TARGET must look like"),
        (["serve_target:endpoint", "--host", "not-an-address"], "--host must be an IP address"),
        (["serve_target:endpoint", "--debug-shell", "10.1.2.3:5000"], "loopback"),
        (["serve_target:endpoint", "--log-level", "chatty"], "unknown log level"),
    ],
)
def test_bad_invocations_fail_with_one_clear_line(args, message):
    result = run(*args)
    assert result.returncode == 2, result
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_secret_key_base_comes_from_the_environment():
    from transport import token

    secret = "k" * 64
    server = ServerProcess(
        [*PHX_SERVE, "serve_target:endpoint", "--port", "0"], cwd=Path(HERE), name="phx-serve", env={"SECRET_KEY_BASE": secret}
    )
    try:
        good = token.sign(secret, "user socket", "alice")
        with Socket(f"{server.ws}/socket", params={"token": good}) as client:
            assert client.channel("lobby:a").join() == {}
        forged = token.sign("x" * 64, "user socket", "alice")
        with pytest.raises(ConnectError) as refused:
            Socket(f"{server.ws}/socket", params={"token": forged}).connect()
        assert refused.value.status == 403
    finally:
        server.stop()
    assert "SECRET_KEY_BASE is not set" not in server.stderr


def test_without_secret_key_base_a_random_one_is_used_and_said():
    server = ServerProcess(
        [*PHX_SERVE, "serve_target:endpoint", "--port", "0"], cwd=Path(HERE), name="phx-serve", env={"SECRET_KEY_BASE": ""}
    )
    try:
        server.wait_log("SECRET_KEY_BASE is not set")
    finally:
        assert server.stop() == 0


def test_a_short_secret_key_base_is_refused():
    result = subprocess.run(
        [*PHX_SERVE, "serve_target:endpoint", "--port", "0"],
        cwd=HERE,
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "PYTHONPATH": REPO, "SECRET_KEY_BASE": "too short"},
    )
    assert result.returncode == 2
    assert "SECRET_KEY_BASE: secret_key_base must be at least 64 bytes, got 9" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_port_in_use_is_a_clear_error():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run("serve_target:endpoint", "--port", str(port))
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr


def test_shell_to_nowhere_fails_cleanly(tmp_path):
    result = run("shell", f"unix:{tmp_path / 'nothing.sock'}", "-c", "procs()")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and result.stderr.strip()


async def _connect_and_join(port, n, concurrency=100):
    gate = asyncio.Semaphore(concurrency)

    async def one(i):
        async with gate:
            ws = await aconnect(f"ws://127.0.0.1:{port}/socket/websocket?vsn=2.0.0", open_timeout=20)
            await ws.send(json.dumps(["1", "1", f"lobby:{i % 10}", "phx_join", {}]))
            reply = json.loads(await asyncio.wait_for(ws.recv(), 20))
            assert reply[4]["status"] == "ok"
            return ws

    return await asyncio.gather(*(one(i) for i in range(n)))


async def _close_codes(clients, timeout=60):
    async def code(ws):
        try:
            while True:
                await ws.recv()
        except Exception:
            return ws.close_code

    return await asyncio.wait_for(asyncio.gather(*(code(ws) for ws in clients)), timeout)


def test_sigterm_with_1000_clients_drains_every_socket_with_1012_and_exits_0():
    server = start("serve_target:endpoint", "--port", "0", "--log-level", "warning")
    try:

        async def scenario():
            clients = await _connect_and_join(server.port, 1000)
            server.proc.send_signal(signal.SIGTERM)
            return await _close_codes(clients)

        codes = asyncio.run(scenario())
        assert codes == [1012] * 1000
        assert server.proc.wait(60) == 0
    finally:
        server.stop()
    assert "Traceback" not in server.stderr


def shell(addr, expr):
    return run("shell", addr, "-c", expr)


def test_debug_shell_answers_every_question_about_the_live_server(tmp_path):
    addr = f"unix:{tmp_path / 'phx.sock'}"
    server = start("serve_target:endpoint", "--port", "0", "--debug-shell", addr)
    try:
        assert (os.stat(tmp_path / "phx.sock").st_mode & 0o777) == 0o600
        with connect(f"{server.ws}/socket/websocket?vsn=2.0.0") as ws:
            ws.send(json.dumps(["1", "1", "lobby:shell", "phx_join", {}]))
            assert json.loads(ws.recv(timeout=5))[4]["status"] == "ok"
            local_port = ws.socket.getsockname()[1]

            out = shell(addr, "sockets()")
            assert out.returncode == 0, out
            assert f"127.0.0.1:{local_port}" in out.stdout and "/socket/websocket" in out.stdout
            assert "lobby:shell" in out.stdout

            out = shell(addr, "print(sorted(topics()))")
            assert out.returncode == 0 and "lobby:shell" in out.stdout

            out = shell(addr, "print(len(subscribers('lobby:shell')))")
            assert out.returncode == 0 and out.stdout.strip().splitlines()[-1] == "1"

            out = shell(addr, "tree()")
            assert out.returncode == 0 and "Serve.PubSub" in out.stdout and "ChannelPool" in out.stdout

            out = shell(addr, "procs(n=5)")
            assert out.returncode == 0 and "<0." in out.stdout

            transport_pid = shell(addr, "print(sockets()[0]['pid'])").stdout.strip().splitlines()[-1]
            channel_pid = shell(addr, f"print(list(channels('{transport_pid}').values())[0])").stdout.strip().splitlines()[-1]
            out = shell(addr, f"print(state('{channel_pid}').topic)")
            assert out.returncode == 0 and out.stdout.strip().splitlines()[-1] == "lobby:shell"
            out = shell(addr, f"print(info('{channel_pid}')['label'])")
            assert out.returncode == 0 and "lobby:shell" in out.stdout

            out = shell(addr, "broadcast('lobby:shell', 'from_shell', {'n': 1})")
            assert out.returncode == 0
            assert json.loads(ws.recv(timeout=5)) == [None, None, "lobby:shell", "from_shell", {"n": 1}]

            out = shell(addr, f"trace('{transport_pid}', n=1, seconds=1)")
            assert out.returncode == 0

            out = shell(addr, "help()")
            assert out.returncode == 0 and "sockets" in out.stdout and "trace" in out.stdout

            out = shell(addr, "1/0")
            assert out.returncode == 1 and "ZeroDivisionError" in out.stdout + out.stderr

            out = shell(addr, f"kill('{channel_pid}')")
            assert out.returncode == 0
            assert json.loads(ws.recv(timeout=5))[3] == "phx_error"
        assert server.stop() == 0
    finally:
        server.stop()
    assert "Traceback" not in server.stderr


def test_a_tree_that_gives_up_ends_phx_serve_with_an_error():
    result = run("serve_target:crashing", "--port", "0", timeout=30)
    assert result.returncode == 1
    assert "the application stopped by itself: 'shutdown'" in result.stderr


def test_bad_debug_shell_addresses_are_one_line_before_anything_starts(tmp_path):
    regular = tmp_path / "a-file"
    regular.write_text("not a socket")
    live = start("serve_target:endpoint", "--port", "0", "--debug-shell", f"unix:{tmp_path / 'live.sock'}")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        try:
            cases = [
                (f"unix:{tmp_path / 'no' / 'such' / 'dir.sock'}", 2, "does not exist"),
                (f"unix:{regular}", 2, "exists and is not a socket"),
                (f"unix:{tmp_path / 'live.sock'}", 1, "in use by a live server"),
                (f"127.0.0.1:{port}", 1, "in use"),
            ]
            for addr, status, cause in cases:
                result = run("serve_target:endpoint", "--port", "0", "--debug-shell", addr)
                assert result.returncode == status, (addr, result.stderr)
                lines = [line for line in result.stderr.splitlines() if line.startswith("phx-serve:")]
                assert len(lines) == 1 and addr.split(":", 1)[1] in lines[0] and cause in lines[0], result.stderr
                assert "Traceback" not in result.stderr
                assert "application phx-serve started" not in result.stderr  # nothing started
        finally:
            assert live.stop() == 0
