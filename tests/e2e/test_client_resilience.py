"""The Python client when things go wrong: server restart, channel crash, a stalled server; and the CLI."""

from __future__ import annotations

import asyncio
import json
import socket as pysocket
import subprocess
import sys
import threading
import time
from pathlib import Path

from serverproc import ROOT, ServerProcess

from transport.client import AsyncSocket, PushTimeout, Socket

APP = Path(__file__).with_name("client_app.py")


def start(port: int = 0) -> ServerProcess:
    return ServerProcess([sys.executable, str(APP), "--port", str(port)], name="client_app.py")


def wait_for(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_server_restart_reconnects_rejoins_and_sends_what_was_pushed_while_down():
    server = start()
    port = server.port
    try:
        sock = Socket(f"{server.ws}/socket", reconnect_after=lambda tries: 0.2)
        sock.connect()
        channel = sock.channel("room:restart")
        joins = []
        channel.on_join(lambda response, rejoin: joins.append(rejoin))
        channel.join()
        closed = threading.Event()
        sock.on_close(lambda code, reason: closed.set())
        server.stop()
        assert closed.wait(10)
        assert channel.state == "errored"
        survivor = channel.push_nowait("echo", {"sent": "while down"}, timeout=30)
        doomed = channel.push_nowait("echo", {"x": 1}, timeout=0.3)
        server = start(port)
        assert survivor.result(20) == {"sent": "while down"}  # sent after the rejoin
        try:
            doomed.result(1)
            raise AssertionError("a push whose timeout passed while down was answered")
        except PushTimeout:
            pass
        wait_for(lambda: joins == [False, True])
        assert channel.state == "joined" and sock.is_connected
        sock.disconnect()
    finally:
        server.stop()


def test_crashed_channel_rejoins_on_the_rejoin_schedule():
    server = start()
    try:

        async def main():
            async with AsyncSocket(f"{server.ws}/socket", rejoin_after=lambda tries: 0.2) as sock:
                channel = sock.channel("room:crash")
                errors, rejoined = [], asyncio.Event()
                channel.on_error(errors.append)
                channel.on_join(lambda response, rejoin: rejoin and rejoined.set())
                await channel.join()
                old_ref = channel.join_ref
                channel.push_nowait("boom")
                await asyncio.wait_for(rejoined.wait(), 10)
                assert errors and channel.join_ref != old_ref
                assert await channel.push("echo", {"after": "crash"}) == {"after": "crash"}

        asyncio.run(main())
    finally:
        server.stop()


class StallingProxy:
    """A TCP proxy on 127.0.0.1; :meth:`stall` stops forwarding on the open connections."""

    def __init__(self, target_port: int) -> None:
        self.target = target_port
        self.listener = pysocket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.stalled: list = []
        self.conns: list = []
        self.accepted = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = pysocket.create_connection(("127.0.0.1", self.target))
            flag = threading.Event()
            self.accepted += 1
            self.conns.append((client, upstream, flag))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b, flag), daemon=True).start()

    def _pipe(self, src, dst, stalled: threading.Event) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if stalled.is_set():
                    continue  # swallowed: the server "stops answering"
                dst.sendall(data)
        except OSError:
            pass

    def stall(self) -> None:
        for _, _, flag in self.conns:
            flag.set()

    def close(self) -> None:
        self.listener.close()
        for client, upstream, _ in self.conns:
            client.close()
            upstream.close()


def test_heartbeat_timeout_against_a_stalled_server_reconnects_and_rejoins():
    server = start()
    proxy = StallingProxy(server.port)
    try:
        sock = Socket(
            f"ws://127.0.0.1:{proxy.port}/socket",
            heartbeat_interval=0.3,
            heartbeat_timeout=0.5,
            close_timeout=0.5,
            reconnect_after=lambda tries: 0.1,
        )
        sock.connect()
        channel = sock.channel("room:hb")
        reasons, rejoins = [], []
        channel.on_error(reasons.append)
        channel.on_join(lambda response, rejoin: rejoins.append(rejoin))
        channel.join()
        time.sleep(0.5)  # a heartbeat or two answered through the proxy: no reconnect
        assert proxy.accepted == 1 and reasons == []
        proxy.stall()
        wait_for(lambda: rejoins == [False, True])
        assert reasons[0] == "heartbeat timeout" and proxy.accepted == 2
        assert channel.push("echo", {"ok": 1}) == {"ok": 1}
        sock.disconnect()
    finally:
        proxy.close()
        server.stop()


def run_cli(*args: str, stdin: str = "", timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "transport.cli", "client", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )


def test_cli_against_the_demo_prints_messages_pushes_and_refuses_clearly():
    demo = ServerProcess([sys.executable, "-m", "transport.cli", "--port", "0", "--log-level", "warning"], name="phx-serve")
    try:
        url = f"{demo.ws}/socket"
        done = run_cli(
            url, "--join", "room:cli", "--payload", '{"name": "cli"}', stdin='new_msg {"body": "hello"}\nnew_msg {"body": ""}\n'
        )
        assert done.returncode == 0, done.stderr
        lines = [json.loads(line) for line in done.stdout.splitlines()]
        replies = [line["payload"] for line in lines if line["event"] == "phx_reply"]
        assert replies == [{"status": "ok", "response": {}}, {"status": "error", "response": {"reason": "invalid body"}}]
        assert {
            "topic": "room:cli",
            "event": "new_msg",
            "payload": {"name": "cli", "body": "hello"},
            "ref": None,
            "join_ref": None,
        } in lines
        assert "joined room:cli" in done.stderr
        proc = subprocess.Popen(
            [sys.executable, "-m", "transport.cli", "client", url, "--join", "numbers:positive"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
            env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        )  # fmt: skip
        first = json.loads(proc.stdout.readline())
        second = json.loads(proc.stdout.readline())
        proc.stdin.close()
        assert proc.wait(15) == 0
        assert [first["event"], second["event"]] == ["update", "update"] and first["payload"]["number"] > 0
        refused = run_cli(url, "--join", "numbers:zero")
        assert refused.returncode == 1
        assert 'refused to join numbers:zero: {"reason": "unknown topic"}' in refused.stderr
        unreachable = run_cli(f"ws://127.0.0.1:{free_port()}/socket", "--join", "x")
        assert unreachable.returncode == 1 and "cannot connect" in unreachable.stderr
    finally:
        demo.stop()


def free_port() -> int:
    with pysocket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
