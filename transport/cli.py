"""``phx-serve``: serve an endpoint (the embedded demo by default), or attach to a debug shell.

    phx-serve                                  # the demo at http://127.0.0.1:4000
    phx-serve myapp.web:endpoint --port 8080   # your endpoint
    phx-serve --debug-shell unix:/tmp/phx.sock # ...with a debug shell (off by default)
    phx-serve --pubsub redis://127.0.0.1:6379/0 --node-name web1   # one node of many
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
    parser.add_argument("--pubsub", metavar="URL", help="redis://HOST:PORT/DB: share topics with other nodes on that Redis")
    parser.add_argument("--node-name", metavar="NAME", help="this node's name, unique among the nodes (default greenphx_<pid>@<host>)")
    args = parser.parse_args(argv)

    level = logging.getLevelName(args.log_level.upper())
    if not isinstance(level, int):
        raise UsageError(f"unknown log level {args.log_level!r}")
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    _check_host(args.host)
    if not 0 <= args.port <= 65535:
        raise UsageError(f"port must be 0-65535, got {args.port}")
    if args.debug_shell:
        from . import debug_shell

        try:
            debug_shell.check_address(args.debug_shell)
        except ValueError as e:
            raise UsageError(str(e)) from None

    server = {"host": args.host, "port": args.port}
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

        shell = debug_shell.serve(args.debug_shell, root_pid=app.pid)  # logs its real address
    me = actors.self()
    signalled = []

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
    if not app.running:
        log.error("the application stopped by itself: %r", app.exit_reason)
        return EXIT_FAILURE
    log.info("shutting down: draining sockets, stopping the tree")
    app.stop()
    return 0


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
