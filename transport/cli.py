"""``phx-serve``: serve an endpoint (the embedded demo by default), or attach to a debug shell.

    phx-serve                                  # the demo at http://127.0.0.1:4000
    phx-serve myapp.web:endpoint --port 8080   # your endpoint
    phx-serve --debug-shell unix:/tmp/phx.sock # ...with a debug shell (off by default)
    phx-serve --pubsub redis://127.0.0.1:6379/0 --node-name web1   # one node of many
    phx-serve --workers auto --pubsub redis://127.0.0.1:6379/0      # every core, one port
    phx-serve shell unix:/tmp/phx.sock         # attach to it
    phx-serve shell 127.0.0.1:5001 -c "procs(n=5)"

TARGET is ``module:attr``. The attribute is an :class:`transport.Endpoint` (phx-serve then
starts ``PubSub.child_spec(name=endpoint.pubsub_server)`` and the endpoint's processes),
or a callable taking the server options ``{"host", "port"}`` and returning the full child
list of the application (as ``transport.demo.children``).

It patches the standard library with gevent's cooperative versions first, so code that
blocks on sockets, files or ``time.sleep`` in your channels yields to other processes
instead of stalling the server. A service that embeds the tree itself must run under
gevent too, and should patch as early as it can.

SIGTERM or SIGINT drain the sockets (close 1012, in batches), stop the tree in order and
exit 0; a second SIGINT exits at once. Errors (unimportable target, not an endpoint, a
port in use, a bad address) print one line and exit non-zero, without a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
from typing import Any

__all__ = ["main"]

EXIT_USAGE = 2
EXIT_FAILURE = 1
_STOP = "$phx-serve-stop"

log = logging.getLogger("transport.cli")


class UsageError(Exception):
    """A problem with what the user asked for: one line, exit 2."""


def main(argv: list[str] | None = None) -> int:
    """The ``phx-serve`` command."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["shell"]:
        return _shell(argv[1:])
    if argv[:1] == ["client"]:
        from .client._cli import main as client_main

        return client_main(argv[1:])
    from gevent import monkey

    monkey.patch_all()
    try:
        return _serve(argv)
    except UsageError as e:
        print(f"phx-serve: {e}", file=sys.stderr)
        return EXIT_USAGE


def _serve(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="phx-serve",
        description="Serve a greenphx endpoint (the embedded demo by default). "
        "'phx-serve shell ADDR [-c EXPR]' attaches to a debug shell.",
    )
    parser.add_argument("target", nargs="?", help="module:attr of an Endpoint (default: the embedded demo)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=4000, help="port (default 4000; 0 picks a free one)")
    parser.add_argument("--log-level", default="info", help="debug, info, warning, error (default info)")
    parser.add_argument("--debug-shell", metavar="ADDR", help="unix:PATH or 127.0.0.1:PORT (off by default)")
    parser.add_argument(
        "--metrics",
        metavar="ADDR",
        nargs="?",
        const="127.0.0.1:9568",
        help="serve Prometheus metrics at http://ADDR/metrics (default ADDR 127.0.0.1:9568; off by default)",
    )
    parser.add_argument(
        "--metrics-path", metavar="PATH", help="serve the metrics on the endpoint at PATH (e.g. /metrics) instead"
    )
    parser.add_argument("--metrics-prefix", metavar="PREFIX", default="greenphx", help="metric names' prefix (default greenphx)")
    parser.add_argument(
        "--dashboard",
        metavar="ADDR",
        nargs="?",
        const="127.0.0.1:4001",
        help="serve the live dashboard at http://ADDR/ (default ADDR 127.0.0.1:4001; loopback only "
        "unless --dashboard-token; off by default)",
    )
    parser.add_argument("--dashboard-token", metavar="TOKEN", help="require ?token=TOKEN (16+ characters) for the dashboard")
    parser.add_argument("--dashboard-allow-kill", action="store_true", help="let the dashboard kill processes (off by default)")
    parser.add_argument("--certfile", metavar="PEM", help="serve HTTPS/wss with this certificate (and --keyfile)")
    parser.add_argument("--keyfile", metavar="PEM", help="the certificate's private key")
    parser.add_argument("--cacertfile", metavar="PEM", help="ask clients for a certificate signed by these CAs")
    parser.add_argument(
        "--trusted-proxy",
        metavar="CIDR",
        action="append",
        default=[],
        help="take the client's address from X-Forwarded-For/Forwarded when the peer is in CIDR (repeatable; none by default)",
    )
    parser.add_argument(
        "--workers",
        metavar="N",
        help="serve with N OS processes on one port (SO_REUSEPORT), one node each on the --pubsub Redis; "
        "'auto': one per core (default 1)",
    )
    parser.add_argument("--worker-index", type=int, help=argparse.SUPPRESS)  # set by the launcher
    parser.add_argument("--pubsub", metavar="URL", help="redis://HOST:PORT/DB: share topics with other nodes on that Redis")
    parser.add_argument(
        "--node-name", metavar="NAME", help="this node's name, unique among the nodes (default greenphx_<pid>@<host>)"
    )
    args = parser.parse_args(argv)
    workers = _worker_count(args.workers)

    level = logging.getLevelName(args.log_level.upper())
    if not isinstance(level, int):
        raise UsageError(f"unknown log level {args.log_level!r}")
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    _check_host(args.host)
    if not 0 <= args.port <= 65535:
        raise UsageError(f"port must be 0-65535, got {args.port}")
    if args.debug_shell and workers == 1:
        from . import debug_shell

        # Checked before anything starts: a bad or taken address is one line, not a
        # traceback after "application started".
        try:
            debug_shell.preflight(args.debug_shell)
        except ValueError as e:
            raise UsageError(f"--debug-shell {e}") from None
        except OSError as e:
            print(f"phx-serve: --debug-shell {e}", file=sys.stderr)
            return EXIT_FAILURE
    elif args.debug_shell:
        from . import debug_shell

        try:
            debug_shell.check_address(args.debug_shell)
        except ValueError as e:
            raise UsageError(f"--debug-shell {e}") from None
    _check_ops_options(args, workers)

    if workers > 1:
        if not args.pubsub:
            raise UsageError(
                f"--workers {args.workers} needs --pubsub redis://HOST:PORT/DB: each worker is a node, and "
                "without a shared PubSub a broadcast would reach one worker's clients only"
            )
        from ._workers import run_workers

        return run_workers(workers, argv, args.host, args.port, args.node_name, args.debug_shell)
    server: dict[str, Any] = {"host": args.host, "port": args.port}
    if args.worker_index is not None:
        server["reuse_port"] = True
    for option in ("certfile", "keyfile", "cacertfile"):
        path = getattr(args, option)
        if path is not None:
            if not os.path.isfile(path):
                raise UsageError(f"--{option} {path}: no such file")
            server[option] = path
    if args.trusted_proxy:
        from .http import trusted_networks

        try:
            trusted_networks(args.trusted_proxy)
        except ValueError as e:
            raise UsageError(str(e)) from None
        server["trusted_proxies"] = args.trusted_proxy
    children, endpoint = _load(args.target, server)
    if args.pubsub or args.node_name:
        children = _configure_pubsub(children, args.pubsub, args.node_name)
    _ensure_secret_key_base(endpoint)

    import gevent

    import actors
    from supervision import Application

    metrics = None
    if args.metrics or args.metrics_path:
        from .ops import Metrics, mount_wsgi

        # Attached before the tree starts: the first connect is counted too.
        metrics = Metrics(root="phx-serve", prefix=args.metrics_prefix).start()
        if args.metrics_path:
            endpoint.http_app = mount_wsgi(endpoint.http_app, args.metrics_path, metrics.wsgi_app)
    app = Application(children, name="phx-serve")
    try:
        app.start()
    except actors.StartError as e:
        print(f"phx-serve: could not start: {_start_failure(e.reason)}", file=sys.stderr)
        return EXIT_FAILURE
    from ._memory import start_memory_reclaimer
    from .http import tune_gc

    tune_gc()
    start_memory_reclaimer()
    shell = None
    if args.debug_shell:
        from . import debug_shell

        banner = None
        if args.worker_index is not None:
            banner = (
                f"greenphx debug shell: worker {args.worker_index} (OS process {os.getpid()}, node "
                f"{_node_name(endpoint)}); help() lists the commands.\nEverything typed here runs inside this worker."
            )
        try:
            shell = debug_shell.serve(args.debug_shell, root_pid=app.pid, banner=banner)  # logs its real address
        except (OSError, ValueError) as e:  # taken since the preflight: still one line
            print(f"phx-serve: --debug-shell {args.debug_shell}: {e}", file=sys.stderr)
            app.stop()
            return EXIT_FAILURE
    try:
        ops_servers = _start_ops(args, metrics, app.pid)
    except (OSError, actors.StartError) as e:
        print(f"phx-serve: could not start the metrics or the dashboard: {e}", file=sys.stderr)
        app.stop()
        return EXIT_FAILURE
    me = actors.self()
    signalled: list[bool] = []

    def on_signal() -> None:
        if signalled:
            os._exit(EXIT_FAILURE)  # a second signal: the user wants out now
        signalled.append(True)
        actors.send(me, _STOP)

    gevent.signal_handler(signal.SIGTERM, on_signal)
    gevent.signal_handler(signal.SIGINT, on_signal)
    # Printed last, once signals drain the tree: whoever reads it (a supervisor, a test)
    # may stop this process from then on. Phoenix's "Running ... at" line is already logged.
    host, port = endpoint.bound[:2] if endpoint.bound else (args.host, args.port)
    print(f"listening on {endpoint.scheme}://{host}:{port}", flush=True)
    # Wake on a signal, or when the tree gives up on its own (restart intensity exceeded).
    actors.receive(lambda m: m is _STOP or app.is_down(m))
    if shell is not None:
        shell.stop()
    for ops_server in ops_servers:
        ops_server.stop()
    if not app.running:
        log.error("the application stopped by itself: %r", app.exit_reason)
        return EXIT_FAILURE
    log.info("shutting down: draining sockets, stopping the tree")
    app.stop()
    return 0


def _worker_count(value: str | None) -> int:
    if value is None:
        return 1
    if value == "auto":
        return os.cpu_count() or 1
    try:
        count = int(value)
    except ValueError:
        count = 0
    if count < 1:
        raise UsageError(f"--workers must be a positive number or 'auto', got {value!r}")
    return count


def _node_name(endpoint: Any) -> str:
    """This node's name on the endpoint's PubSub, for the shell's banner."""
    from . import pubsub

    try:
        return pubsub.node_name(endpoint.pubsub_server)
    except Exception:  # noqa: BLE001 - a banner must not stop the server
        return "?"


def _check_ops_options(args: Any, workers: int) -> None:
    """--metrics and --dashboard: well-formed, and the dashboard on loopback unless it has a token."""
    from .ops import parse_listen_address
    from .ops._metrics import is_loopback

    if (args.metrics or args.metrics_path or args.dashboard) and workers > 1:
        raise UsageError("--metrics and --dashboard serve one process: not with --workers (yet)")
    if args.metrics:
        try:
            parse_listen_address(args.metrics)
        except ValueError as e:
            raise UsageError(f"--metrics: {e}") from None
    if args.metrics_path is not None and not args.metrics_path.startswith("/"):
        raise UsageError(f"--metrics-path must start with /, got {args.metrics_path!r}")
    if args.dashboard_token is not None and len(args.dashboard_token) < 16:
        raise UsageError("--dashboard-token must be at least 16 characters")
    if args.dashboard:
        try:
            host, _port = parse_listen_address(args.dashboard)
        except ValueError as e:
            raise UsageError(f"--dashboard: {e}") from None
        if not is_loopback(host) and not args.dashboard_token:
            raise UsageError(
                f"--dashboard {args.dashboard}: the dashboard shows socket params, assigns and process state, so it "
                "listens on loopback only unless --dashboard-token is given"
            )
    elif args.dashboard_token or args.dashboard_allow_kill:
        raise UsageError("--dashboard-token and --dashboard-allow-kill need --dashboard")


def _start_ops(args: Any, metrics: Any, root: Any) -> list:
    """Start the metrics' listener and the dashboard asked for; each prints its URL."""
    started: list = []
    try:
        if metrics is not None and args.metrics:
            server = metrics.serve(args.metrics)
            started.append(server)
            print(f"metrics on {server.url}", flush=True)
        if args.dashboard:
            from .ops import Dashboard

            dashboard = Dashboard(root=root, token=args.dashboard_token, allow_kill=args.dashboard_allow_kill)
            dashboard.start(args.dashboard)
            started.append(dashboard)
            print(f"dashboard on {dashboard.url}", flush=True)
    except BaseException:
        for server in started:
            server.stop()
        raise
    return started


def _ensure_secret_key_base(endpoint: Any) -> None:
    """Give the endpoint a secret: its own, else $SECRET_KEY_BASE, else a fresh random one."""
    from ._endpoint import check_secret_key_base

    if endpoint.secret_key_base is not None:
        return
    from_env = os.environ.get("SECRET_KEY_BASE")
    if from_env:
        try:
            endpoint.secret_key_base = check_secret_key_base(from_env)
        except ValueError as e:
            raise UsageError(f"SECRET_KEY_BASE: {e}") from None
        return
    import secrets

    endpoint.secret_key_base = secrets.token_urlsafe(48)  # 64 characters
    log.warning(
        "SECRET_KEY_BASE is not set: using a random secret, so tokens, LongPoll sessions and "
        "cookie sessions will not survive a restart or be shared with other nodes"
    )


def _check_host(host: str) -> None:
    import ipaddress

    if host in ("localhost",):
        return
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise UsageError(f"--host must be an IP address (or localhost), got {host!r}") from None


def _load(target: str | None, server: dict) -> tuple[list, Any]:
    """The application's children and the endpoint, from TARGET (or the demo)."""
    from ._endpoint import Endpoint
    from .pubsub import PubSub

    if target is None:
        target = "transport.demo:children"
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise UsageError(f"TARGET must look like package.module:attr, got {target!r}")
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # as uvicorn and gunicorn: the project you run it in
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise UsageError(f"cannot import {module_name!r}: {e}") from None
    try:
        obj = getattr(module, attr)
    except AttributeError:
        raise UsageError(f"{module_name!r} has no attribute {attr!r}") from None
    if isinstance(obj, Endpoint):
        if obj.pubsub_server is None:
            raise UsageError(f"{target} has no pubsub_server")
        return [PubSub.child_spec(name=obj.pubsub_server), *obj.child_specs(server=server)], obj
    if callable(obj) and not isinstance(obj, type):
        children = obj(server)
        endpoint = _endpoint_of(module, children)
        if endpoint is None:
            raise UsageError(f"{target}() did not produce an endpoint's HTTP server among its children")
        return children, endpoint
    raise UsageError(f"{target} is not an Endpoint (or a function returning an application's children); got {type(obj).__name__}")


def _configure_pubsub(children: list, url: str | None, node_name: str | None) -> list:
    """The children with every top-level PubSub on the Redis adapter (``--pubsub``) and/or
    named ``node_name``; its name and pool_size are kept, its other adapter options not."""
    from supervision import ChildSpec

    from .pubsub import PubSub

    opts: dict[str, Any] = {}
    if node_name is not None:
        opts["node_name"] = node_name
    if url is not None:
        if not url.startswith("redis://"):
            raise UsageError(f"--pubsub must be a redis:// URL, got {url!r}")
        try:
            from .pubsub import RedisAdapter

            RedisAdapter.child_spec(name="x", adapter_name="x.Adapter", pool_size=1, url=url, **opts)
        except ImportError as e:
            raise UsageError(str(e)) from None
        except (TypeError, ValueError) as e:
            raise UsageError(f"--pubsub: {e}") from None
        opts.update(adapter=RedisAdapter, url=url)
    found = False
    result = []
    for child in children:
        if isinstance(child, ChildSpec) and child.start[0] == PubSub._start_config:
            config = child.start[1][0]
            try:
                child = PubSub.child_spec(name=config.name, pool_size=config.pool_size, **opts)
            except (TypeError, ValueError) as e:
                raise UsageError(str(e)) from None
            found = True
        result.append(child)
    if not found:
        raise UsageError("--pubsub/--node-name: the application's children include no PubSub")
    return result


def _endpoint_of(module: Any, children: list) -> Any:
    from supervision import ChildSpec

    from .http import HttpServer

    for child in children:
        if isinstance(child, ChildSpec) and child.start[0] == HttpServer.start_link:
            return child.start[1][0][0]
    return None


def _start_failure(reason: Any) -> str:
    # ('shutdown', ('failed_to_start_child', id, why)) down to the innermost why.
    while isinstance(reason, tuple) and len(reason) >= 2 and reason[0] in ("shutdown", "failed_to_start_child"):
        reason = reason[-1]
    if isinstance(reason, tuple) and len(reason) == 2 and reason[0] == "node_name_in_use":
        return str(reason[1])
    if isinstance(reason, tuple) and reason and reason[0] == "listen_failed":
        _tag, host, port, why = reason
        return f"cannot listen on {host}:{port}: {why}"
    if isinstance(reason, tuple) and len(reason) == 2 and reason[0] == "bad_option":
        return reason[1]
    return repr(reason)


def _shell(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="phx-serve shell", description="Attach to a running server's debug shell.")
    parser.add_argument("addr", help="unix:PATH or 127.0.0.1:PORT")
    parser.add_argument("-c", dest="command", help="evaluate EXPR, print the result and exit")
    args = parser.parse_args(argv)
    from . import debug_shell

    try:
        debug_shell.check_address(args.addr)
    except ValueError as e:
        print(f"phx-serve shell: {e}", file=sys.stderr)
        return EXIT_USAGE
    return debug_shell.attach(args.addr, args.command)


if __name__ == "__main__":
    sys.exit(main())
