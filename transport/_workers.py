"""``phx-serve --workers N``: every core, as N OS processes serving one port.

A Python process runs on one core; Phoenix uses all of them. With ``--workers N`` (``auto``:
one per core) phx-serve becomes a launcher: it starts N workers, each a full phx-serve of
the same target listening on the same port with ``SO_REUSEPORT`` (the kernel spreads new
connections over them), each its own node on the Redis PubSub given with ``--pubsub`` (a
broadcast on one worker reaches the clients of all; without a shared PubSub, workers would
be islands, so ``--workers`` above 1 needs ``--pubsub``).

The launcher supervises its workers as an OTP supervisor would, because it is one: each
worker is a process of this runtime that owns the OS process (:func:`_run_worker`),
permanent children of a ``one_for_one`` :class:`~supervision.Supervisor` with the usual
intensity (3 restarts in 5 s). A worker that dies is restarted; one that keeps dying brings
the launcher down with exit status 1, as an application whose tree gives up. SIGTERM or
SIGINT: every worker is told at once (each drains its sockets with 1012, in parallel),
then the tree stops in order, waiting for each; exit 0.

What each worker gets: ``--port`` (the port, chosen by the launcher when ``--port 0``), its
index (``--worker-index``: node name ``NAME-wI`` when ``--node-name`` is given, else the
default unique per OS process; a debug shell at ``unix:PATH.I`` or ``HOST:PORT+I``), and one
``SECRET_KEY_BASE`` for all (the launcher's environment's, or one it generates), so
tokens and LongPoll sessions made by one worker are good on every other. Workers share the
launcher's stderr; their ``listening on`` lines are read by the launcher, which prints its
own once every worker is up.
"""

from __future__ import annotations

import logging
import os
import signal
import socket as stdsocket
import sys

import gevent
from gevent import subprocess

import actors
from supervision import Application, ChildSpec, start_link

__all__ = ["WORKER_SHUTDOWN_MS", "run_workers", "worker_args"]

log = logging.getLogger("transport.workers")

#: How long a worker may take to drain and stop once told (its drainer's default 30 s
#: shutdown, plus the tree).
WORKER_SHUTDOWN_MS = 40_000
#: How long the first start of every worker may take before the launcher gives up.
START_TIMEOUT_S = 60.0

_EXITED = "$worker_exited"
_READY = "$worker_ready"


def worker_args(argv: list[str], index: int, port: int, node_name: str | None, debug_shell: str | None) -> list[str]:
    """The phx-serve arguments of worker ``index``: the launcher's, minus ``--workers``,
    with the port fixed and the per-worker node name and debug shell address."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0]
        if name in ("--workers", "--port", "--node-name", "--debug-shell"):
            skip = "=" not in arg
            continue
        out.append(arg)
    out += ["--port", str(port), "--worker-index", str(index)]
    if node_name is not None:
        out += ["--node-name", f"{node_name}-w{index}"]
    if debug_shell is not None:
        out += ["--debug-shell", _worker_shell_address(debug_shell, index)]
    return out


def _worker_shell_address(addr: str, index: int) -> str:
    if addr.startswith("unix:"):
        return f"{addr}.{index}"
    host, _, port = addr.rpartition(":")
    return f"{host}:{int(port) + index}"


def _reserve_port(host: str, port: int) -> stdsocket.socket:
    """Bind (not listen) with SO_REUSEPORT: picks the port for ``--port 0`` and fails early
    if another program holds it; workers bind the same port beside it."""
    family = stdsocket.AF_INET6 if ":" in host else stdsocket.AF_INET
    sock = stdsocket.socket(family, stdsocket.SOCK_STREAM)
    try:
        sock.setsockopt(stdsocket.SOL_SOCKET, stdsocket.SO_REUSEADDR, 1)
        sock.setsockopt(stdsocket.SOL_SOCKET, stdsocket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def _run_worker(index: int, cmd: list[str], env: dict[str, str], launcher: actors.Pid) -> None:
    """The process that owns worker ``index``'s OS process (see the module docs)."""
    actors.trap_exit(True)
    actors.set_label(("worker", index))
    me = actors.self()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, env=env)
    stdout = proc.stdout
    assert stdout is not None  # stdout=PIPE

    def read_stdout() -> None:
        for raw in stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            if line.startswith("listening on "):
                actors.send(launcher, (_READY, index, proc.pid, line[len("listening on ") :]))
            else:
                print(line, flush=True)  # a worker's own stdout output, passed through

    def wait() -> None:
        actors.send(me, (_EXITED, proc.wait()))

    reader = gevent.spawn(read_stdout)
    waiter = gevent.spawn(wait)
    stopping = False
    try:
        while True:
            msg = actors.receive()
            if msg.__class__ is tuple and len(msg) == 2 and msg[0] == "$signal":
                # The launcher is stopping: the worker drains now, and this process waits
                # for the supervisor's shutdown rather than reporting the exit as a crash.
                stopping = True
                if proc.poll() is None:
                    proc.send_signal(msg[1])
                continue
            if msg.__class__ is tuple and msg[0] == _EXITED:
                if stopping:
                    continue
                code = msg[1]
                log.error("worker %d (OS pid %d) exited with status %s", index, proc.pid, code)
                actors.exit(("worker_exited", index, code))  # permanent: the supervisor restarts it
            if msg.__class__ is tuple and len(msg) == 3 and msg[0] == "EXIT":
                _stop(proc, index)
                actors.exit(msg[2])
    finally:
        if proc.poll() is None:
            proc.kill()  # killed ourselves (brutal_kill, or a crash): never leave an orphan
        reader.kill(block=False)
        waiter.kill(block=False)


def _stop(proc: subprocess.Popen, index: int) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=WORKER_SHUTDOWN_MS / 1000.0)
        except subprocess.TimeoutExpired:
            log.error("worker %d (OS pid %d) did not stop in %d ms: killed", index, proc.pid, WORKER_SHUTDOWN_MS)
            proc.kill()
            proc.wait()


def _worker_spec(index: int, cmd: list[str], env: dict[str, str], launcher: actors.Pid) -> ChildSpec:
    return ChildSpec(
        id=("worker", index),
        start=(actors.spawn_link, (_run_worker, index, cmd, env, launcher)),
        restart="permanent",
        shutdown=WORKER_SHUTDOWN_MS + 5_000,
    )


def _start_workers(specs: list[ChildSpec]) -> actors.Pid:
    return start_link(specs, strategy="one_for_one", name="phx-serve.Workers")


def run_workers(count: int, argv: list[str], host: str, port: int, node_name: str | None, debug_shell: str | None) -> int:
    """Run the launcher until SIGTERM/SIGINT (exit 0) or until its workers keep dying (1)."""
    import secrets

    try:
        reserved = _reserve_port(host, port)
    except OSError as e:
        print(f"phx-serve: cannot listen on {host}:{port}: {e}", file=sys.stderr)
        return 1
    port = reserved.getsockname()[1]
    env = dict(os.environ)
    if not env.get("SECRET_KEY_BASE"):
        # One secret for all workers, so a token one worker signed verifies on the others.
        env["SECRET_KEY_BASE"] = secrets.token_urlsafe(48)
        log.warning("SECRET_KEY_BASE is not set: the workers share a random secret that will not survive a restart")
    base = [sys.executable, "-c", "import sys; from transport.cli import main; sys.exit(main())"]
    me = actors.self()
    specs = [_worker_spec(i, [*base, *worker_args(argv, i, port, node_name, debug_shell)], env, me) for i in range(count)]
    tree = ChildSpec(id="phx-serve.Workers", start=(_start_workers, (specs,)), type="supervisor", shutdown="infinity")
    app = Application([tree], name="phx-serve launcher")
    app.start()
    stop_requested: list[bool] = []

    def on_signal() -> None:
        if stop_requested:
            os._exit(1)
        stop_requested.append(True)
        actors.send(me, "$stop")

    gevent.signal_handler(signal.SIGTERM, on_signal)
    gevent.signal_handler(signal.SIGINT, on_signal)
    ready: dict[int, int] = {}
    while len(ready) < count:
        msg = actors.receive(
            lambda m: m == "$stop" or app.is_down(m) or (m.__class__ is tuple and m[0] == _READY),
            timeout=START_TIMEOUT_S,
            default=None,
        )
        if msg is None or msg == "$stop" or app.is_down(msg):
            reserved.close()
            if msg is None:
                log.error("not every worker was up within %.0f s", START_TIMEOUT_S)
            elif msg != "$stop":
                log.error("the workers keep dying (restart intensity exceeded): giving up")
            _signal_workers(signal.SIGTERM)
            app.stop()
            return 0 if msg == "$stop" else 1
        ready[msg[1]] = msg[2]
    reserved.close()
    log.info("%d workers serving %s:%d (OS pids %s)", count, host, port, ", ".join(str(ready[i]) for i in sorted(ready)))
    print(f"listening on {_scheme_of(argv)}://{host}:{port}", flush=True)
    while True:
        msg = actors.receive(lambda m: m == "$stop" or app.is_down(m) or (m.__class__ is tuple and m[0] == _READY))
        if msg.__class__ is tuple and msg[0] == _READY:
            log.info("worker %d is serving again (OS pid %d)", msg[1], msg[2])
            continue
        break
    if msg != "$stop":
        log.error("the workers keep dying (restart intensity exceeded): giving up")
        return 1
    log.info("shutting down: every worker drains its sockets")
    _signal_workers(signal.SIGTERM)
    app.stop()
    return 0


def _signal_workers(sig: int) -> None:
    """Tell every worker at once, so they drain in parallel rather than one after another."""
    for pid in actors.processes():
        info = actors.process_info(pid, stack=False)
        if info is not None and info["label"].__class__ is tuple and info["label"][:1] == ("worker",):
            actors.send(pid, ("$signal", sig))


def _scheme_of(argv: list[str]) -> str:
    return "https" if any(a == "--certfile" or a.startswith("--certfile=") for a in argv) else "http"
