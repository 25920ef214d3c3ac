"""The operator's debug shell: observer, recon and ``:sys.get_state`` for a live greenphx server.

Start it inside the server (``phx-serve --debug-shell ADDR`` does this)::

    from transport import debug_shell

    server = debug_shell.serve("unix:/run/myapp/shell.sock", root_pid=app.pid)
    ...
    server.stop()                  # also removes the socket file

and attach from a terminal, interactively or for one command::

    debug_shell.attach("unix:/run/myapp/shell.sock")                # a Python prompt
    debug_shell.attach("unix:/run/myapp/shell.sock", "procs(n=5)")  # print, exit code

``ADDR`` is ``unix:PATH`` (the socket file is created with mode 0600) or a loopback TCP
address: ``127.0.0.1:PORT``, ``localhost:PORT`` or ``[::1]:PORT`` (``PORT`` 0 picks a free
one; ``server.address`` is what was bound, ``server.attach_address`` the string to give
``attach``). Any other host is refused: the shell has no authentication, and whoever can
connect runs code in the server.

The shell is a Python prompt (gevent's backdoor) inside the server, with these commands.
Each prints a table and returns the data, so ``rows = procs()`` works; pids may be given
as Pids, as ``"<0.12.0>"`` strings, as numbers (``12``) or as registered names::

    tree()                    the supervision tree from the application root
    procs(sort="queue", n=20) processes by message queue length ("links", "monitors", ...)
    info(pid)                 process_info: status, name, links, monitors, stack
    state(pid)                :sys.get_state (GenServers, supervisors, channels, sockets)
    pubsubs()                 the running PubSub servers and their sizes
    topics(pubsub=None)       topics with subscribers, and how many
    subscribers(topic)        the subscribers of a topic
    sockets(peer=None)        connected sockets: peer, path, id, channels, traffic
    channels(pid)             the channels a socket (transport process) has joined
    trace(pid, n=20, seconds=10)  the next messages a process receives and sends, bounded
    broadcast(topic, event, payload)  a Phoenix broadcast, through the channel fastlane
    kill(pid, reason="kill")  send an exit signal
    help()                    this list

Bad input (a dead or unknown pid, a malformed pid string, an unknown PubSub) prints one
``error: ...`` line and returns None; it never ends the session.

Everything runs in the server's event loop: a command holds it for as long as it computes
(``procs()`` over 100 000 processes takes about two seconds, yielding between batches).
Use it on a production node with the care you would give ``:observer`` or ``:recon``.
"""

from __future__ import annotations

import codecs
import functools
import ipaddress
import logging
import os
import pprint
import re
import socket
import stat
import sys
import threading
import time
from code import InteractiveConsole
from collections.abc import Callable
from typing import Any

import gevent
import gevent.queue
from gevent import getcurrent
from gevent.backdoor import BackdoorServer

import actors
import supervision
from actors import Pid

from . import pubsub as _pubsub
from .ops import _inspect as ops

log = logging.getLogger("transport.debug_shell")

__all__ = [
    "AddressInUse",
    "DebugShellServer",
    "Shell",
    "ShellError",
    "attach",
    "check_address",
    "namespace",
    "parse_address",
    "preflight",
    "serve",
]

PROMPT = ">>> "
CONTINUATION = "... "
STATE_TIMEOUT = ops.STATE_TIMEOUT  # seconds a socket or a supervisor gets to answer get_state in a listing
# Listings are paced by the inspection layer (transport.ops): a full loop turn every few ms of work.
_Pacer = ops.Pacer


class ShellError(Exception):
    """Bad input to a shell command: printed as one ``error:`` line, never a traceback."""


# --------------------------------------------------------------------------------------
# Addresses
# --------------------------------------------------------------------------------------


def parse_address(addr: str) -> tuple[int, Any, str]:
    """``(family, sockaddr, canonical)`` for ``unix:PATH`` or a loopback ``HOST:PORT``.

    Raises ValueError, naming what is wrong, for anything else (in particular any host
    that is not a loopback address: the shell has no authentication).
    """
    if not isinstance(addr, str) or not addr.strip():
        raise ValueError(f"debug shell address must be 'unix:PATH' or '127.0.0.1:PORT', got {addr!r}")
    addr = addr.strip()
    if addr.startswith("unix:"):
        path = addr[5:]
        if not path:
            raise ValueError("debug shell address 'unix:' needs a path, as in 'unix:/run/app/shell.sock'")
        return socket.AF_UNIX, path, f"unix:{path}"
    m = re.fullmatch(r"\[([^\]]+)\]:(\d+)|([^:\[\]]+):(\d+)", addr)
    if m is None:
        raise ValueError(f"debug shell address {addr!r} is not 'unix:PATH', '127.0.0.1:PORT', 'localhost:PORT' or '[::1]:PORT'")
    host = m.group(1) or m.group(3)
    port = int(m.group(2) or m.group(4))
    if not 0 <= port <= 65535:
        raise ValueError(f"debug shell port must be 0..65535, got {port}")
    if host == "localhost":
        host = "127.0.0.1"  # not resolved: /etc/hosts must not be able to widen the listener
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(
            f"debug shell host {host!r} is not allowed: the shell listens only on a Unix socket "
            "or on loopback (127.0.0.1, localhost, [::1])"
        ) from None
    if not ip.is_loopback:
        raise ValueError(
            f"debug shell host {host} is not a loopback address: the shell has no authentication, "
            "so it listens only on a Unix socket (mode 0600) or on 127.0.0.1 / [::1]"
        )
    if ip.version == 6:
        return socket.AF_INET6, (str(ip), port), f"[{ip}]:{port}"
    return socket.AF_INET, (str(ip), port), f"{ip}:{port}"


def check_address(addr: str) -> str:
    """Validate a debug shell address without binding; its canonical form. ValueError if bad."""
    return parse_address(addr)[2]


class AddressInUse(OSError):
    """The debug shell's address is held by a live server or another program."""


def preflight(addr: str) -> str:
    """Check that the shell could listen at ``addr`` now, before anything starts; its
    canonical form. ValueError for an address that can never work (bad form, a missing
    directory, a path that is not a socket), :class:`AddressInUse` for one that is taken."""
    family, sockaddr, canonical = parse_address(addr)
    if family == socket.AF_UNIX:
        directory = os.path.dirname(os.path.abspath(sockaddr))
        if not os.path.isdir(directory):
            raise ValueError(f"{canonical}: the directory {directory} does not exist")
        try:
            st = os.lstat(sockaddr)
        except FileNotFoundError:
            return canonical
        if not stat.S_ISSOCK(st.st_mode):
            raise ValueError(f"{canonical}: {sockaddr} exists and is not a socket (refusing to replace it)")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(1.0)
        try:
            probe.connect(sockaddr)
        except OSError:
            return canonical  # a stale socket: serve() removes it
        else:
            raise AddressInUse(f"{canonical}: in use by a live server")
        finally:
            probe.close()
    probe = socket.socket(family, socket.SOCK_STREAM)
    try:
        probe.bind(sockaddr)
    except OSError as e:
        raise AddressInUse(f"{canonical}: {e.strerror or e}") from None
    finally:
        probe.close()
    return canonical


# --------------------------------------------------------------------------------------
# Formatting
# --------------------------------------------------------------------------------------


def _out() -> Any:
    return sys.stdout  # inside the backdoor, the client's connection


def _emit(text: str = "") -> None:
    _out().write(text + "\n")


def _short(value: Any, width: int = 48, keep: str = "start") -> str:
    text = value if isinstance(value, str) else repr(value)
    text = text.replace("\n", " ")
    if len(text) <= width:
        return text
    if keep == "end":
        return "..." + text[-(width - 3) :]
    if keep == "middle":
        # Dotted names differ at both ends (Demo.Endpoint...DemoSocket.ChannelPool.partition.1):
        # keep the first part and as much of the end as fits.
        parts = text.split(".")
        head = ".".join(parts[:2]) if len(".".join(parts[:2])) <= width // 3 else parts[0][: width // 3]
        return head + "..." + text[-(width - len(head) - 3) :]
    return text[: width - 3] + "..."


def _cell(value: Any) -> str:
    if value is None:
        return "?"
    if isinstance(value, str):
        return value
    return repr(value)


def _print_table(
    headers: list[str], rows: list[list[Any]], *, width: int = 48, keep_end: tuple = (), keep_middle: tuple = ()
) -> None:
    cells = [
        [
            _short(_cell(v), width, "end" if i in keep_end else "middle" if i in keep_middle else "start")
            for i, v in enumerate(row)
        ]
        for row in rows
    ]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    _emit("  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip())
    _emit("  ".join("-" * w for w in widths))
    for r in cells:
        _emit("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())


_name_or_label = ops.name_or_label


def _fastlane_hint(pid: Pid) -> None:
    """After tracing a channel: its broadcasts never pass through it, say where they go."""
    info = actors.process_info(pid, stack=False)
    label = info["label"] if info else None
    if not (label.__class__ is tuple and len(label) == 2 and label[0] == "channel"):
        return
    try:
        transport = getattr(actors.get_state(pid, timeout=0.5), "transport_pid", None)
    except actors.CallExit:
        transport = None
    target = f"trace({transport})" if transport is not None else "trace() on its socket's transport (sockets())"
    _emit(
        f"note: broadcasts on {label[1]!r} go straight to the socket's transport process (Phoenix's fastlane), "
        f"not through this channel, unless the channel intercepts the event; {target} shows them"
    )


# --------------------------------------------------------------------------------------
# Sessions (one per backdoor connection): counts failures for attach's exit code
# --------------------------------------------------------------------------------------


class _Session:
    """What one connection's console knows about itself; ``__shell__`` in its namespace."""

    __slots__ = ("errors", "failures", "last_result")

    def __init__(self) -> None:
        self.errors = 0  # evaluations that raised (tracebacks shown)
        self.failures = 0  # shell commands that reported an error line
        self.last_result: Any = None  # what the statement's command returned (already printed)

    def status(self) -> None:
        """Print a machine-readable status line (attach reads it to choose its exit code)."""
        _emit(f"[[greenphx-shell errors={self.errors} failures={self.failures}]]")

    def __repr__(self) -> str:
        return f"<shell session errors={self.errors} failures={self.failures}>"


_sessions: dict[Any, _Session] = {}
_STATUS_RE = re.compile(r"\[\[greenphx-shell errors=(\d+) failures=(\d+)\]\]")


def _fail(message: str) -> None:
    session = _sessions.get(getcurrent())
    if session is not None:
        session.failures += 1
    _emit(message)


def _command(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A shell command: bad input becomes one ``error:`` line and a None result."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            result = fn(*args, **kwargs)
            session = _sessions.get(getcurrent())
            if session is not None:
                session.last_result = result
            return result
        except ShellError as e:
            _fail(f"error: {fn.__name__}: {e}")
        except actors.CallExit as e:
            _fail(f"error: {fn.__name__}: {_describe_call_exit(e)}")
        except (gevent.GreenletExit, KeyboardInterrupt):
            raise
        except actors.Exit as e:
            _fail(f"error: {fn.__name__}: the shell's process got exit signal {e.reason!r}")
        except Exception as e:  # noqa: BLE001 - a shell command never kills the shell
            _fail(f"error: {fn.__name__}: {type(e).__name__}: {e}")
        return None

    return wrapper


def _describe_call_exit(e: actors.CallExit) -> str:
    if e.why == "noproc":
        return f"{e.pid} is not alive"
    if e.why == "timeout":
        return f"{e.pid} did not answer in time"
    return f"{e.pid} exited while answering: {e.why!r}"


# --------------------------------------------------------------------------------------
# The commands
# --------------------------------------------------------------------------------------


_PROCS_SORTS = ops.PROCESS_SORTS


class Shell:
    """The shell's commands, bound to one application root (``root_pid``, for ``tree()``).

    ``state_timeout`` is how long a socket or supervisor gets to answer ``get_state``
    while a listing is built; one that does not answer shows ``?``.
    """

    def __init__(self, root_pid: Any = None, *, state_timeout: float = STATE_TIMEOUT) -> None:
        self.root_pid = root_pid
        self.state_timeout = state_timeout
        for name in self.COMMANDS:
            setattr(self, name, _command(getattr(self, name)))

    COMMANDS = (
        "tree",
        "procs",
        "info",
        "state",
        "pubsubs",
        "nodes",
        "topics",
        "subscribers",
        "sockets",
        "channels",
        "trace",
        "broadcast",
        "kill",
        "help",
    )

    def namespace(self) -> dict[str, Any]:
        """The names a shell session starts with: the commands, the packages, ``pid()``."""
        import transport

        ns: dict[str, Any] = {name: getattr(self, name) for name in self.COMMANDS}
        ns.update(
            shell=self,
            pid=as_pid,
            root=self.root_pid,
            actors=actors,
            supervision=supervision,
            transport=transport,
            pubsub=_pubsub,
            Pid=Pid,
        )
        return ns

    # -- processes ---------------------------------------------------------------------

    def help(self) -> None:
        """List the commands."""
        _emit("greenphx debug shell. Pids: Pid objects, '<0.12.0>', 12, or a registered name.")
        _emit("")
        for name in self.COMMANDS:
            fn = getattr(self, name)
            sig = _signature(fn)
            doc = (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else ""
            _emit(f"  {(name + sig):<44} {doc}")
        _emit("")
        _emit("  pid('<0.12.0>')  a Pid;  root  the application root;  actors, supervision, transport, pubsub")
        _emit("  Commands return their data: rows = procs(); rows[0]['pid'].  quit() or Ctrl-D leaves.")

    def procs(self, sort: str = "queue", n: int | None = 20) -> list[dict[str, Any]]:
        """Processes, biggest message queue first (sort='links', 'monitors', 'monitored_by', 'pid')."""
        if sort not in _PROCS_SORTS:
            raise ShellError(f"sort must be one of {', '.join(repr(k) for k in _PROCS_SORTS)}; got {sort!r}")
        if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 0):
            raise ShellError(f"n must be an int >= 0 or None; got {n!r}")
        infos, total = ops.top_processes(sort, n)
        rows = [
            {
                "pid": i["pid"],
                "name": i["registered_name"],
                "label": i["label"],
                "status": i["status"],
                "queue": i["message_queue_len"],
                "links": len(i["links"]),
                "monitors": len(i["monitors"]),
                "monitored_by": len(i["monitored_by"]),
                "initial_call": i["initial_call"],
            }
            for i in infos
        ]
        _print_table(
            ["pid", "name/label", "status", "queue", "links", "mons", "mon_by", "initial call"],
            [
                [
                    r["pid"],
                    _name_or_label(i),
                    r["status"],
                    r["queue"],
                    r["links"],
                    r["monitors"],
                    r["monitored_by"],
                    _cell(r["initial_call"]),
                ]
                for r, i in zip(rows, infos)
            ],
            keep_end=(7,),
            keep_middle=(1,),
        )
        _emit(f"({len(rows)} of {total} processes, sorted by {sort})")
        return rows

    def info(self, pid: Any, messages: bool = False) -> dict[str, Any]:
        """process_info: status, name, label, queue, links, monitors, current stack."""
        p = as_pid(pid)
        info = actors.process_info(p, messages=bool(messages))
        if info is None:
            raise ShellError(f"{p} is not alive")
        width = max(len(k) for k in info)
        for key, value in info.items():
            if key == "current_stacktrace":
                continue
            if key == "messages":
                _emit(f"{key.ljust(width)}  {len(value)} queued")
                for m in value[:20]:
                    _emit(f"{'':{width}}    {_short(m, 100)}")
                continue
            _emit(f"{key.ljust(width)}  {_short(value if isinstance(value, str) else repr(value), 100)}")
        stack = info.get("current_stacktrace") or []
        _emit(f"{'current_stacktrace'.ljust(width)}  ({len(stack)} frames, innermost last)")
        for frame in stack[-6:]:
            for line in frame.splitlines():
                _emit(f"    {line.strip()}")
        return info

    def state(self, pid: Any, timeout: float = 2.0) -> Any:
        """A GenServer's state, a channel's Socket, a socket's snapshot, as the process's
        ``format_status`` shows it (``sys:get_status``; secrets a process redacts stay hidden)."""
        p = as_pid(pid)
        _require_alive(p)
        try:
            value = actors.get_status(p, timeout=timeout)["state"]
        except actors.CallExit as e:
            if e.why == "timeout":
                raise ShellError(
                    f"{p} did not answer get_status within {timeout}s (not a GenServer or sys-aware process, or busy)"
                ) from None
            raise
        _emit(pprint.pformat(value, width=100, sort_dicts=False))
        return value

    def kill(self, pid: Any, reason: Any = "kill", timeout: float = 1.0) -> dict[str, Any]:
        """Send an exit signal (default 'kill', which cannot be trapped); report how it died."""
        p = as_pid(pid)
        _require_alive(p)
        if p == actors.self():
            raise ShellError(f"{p} is this shell's own process; refusing to kill it")
        ref = actors.monitor(p)
        actors.exit(p, reason)
        down = actors.receive(
            lambda m: m.__class__ is tuple and len(m) == 5 and m[0] == "DOWN" and m[1] == ref,
            timeout,
            default=None,
        )
        if down is None:
            actors.demonitor(ref, flush=True)
            _emit(f"sent exit signal {reason!r} to {p}; it is still alive after {timeout}s (traps exits?)")
            return {"pid": p, "alive": True, "reason": None}
        _emit(f"{p} exited: {down[4]!r}")
        return {"pid": p, "alive": False, "reason": down[4]}

    def trace(self, pid: Any, n: int = 20, seconds: float = 10) -> list[tuple]:
        """Print the next n messages pid receives or sends (for at most `seconds`), then stop."""
        p = as_pid(pid)
        _require_alive(p)
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ShellError(f"n must be an int >= 1; got {n!r}")
        if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or seconds <= 0:
            raise ShellError(f"seconds must be a number > 0; got {seconds!r}")
        events: list[tuple] = []
        queue: gevent.queue.Queue = gevent.queue.Queue()
        helper = actors.spawn(_trace_helper, p, queue)
        try:
            if not actors.trace(p, True, tracer=helper):
                raise ShellError(f"{p} is not alive")
            _emit(f"tracing {p} for at most {n} messages or {seconds}s")
            deadline = time.monotonic() + seconds
            ended = f"{seconds}s passed"
            while len(events) < n:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    event = queue.get(timeout=remaining)
                except gevent.queue.Empty:
                    break
                if event[0] == "DOWN":
                    ended = f"{p} exited: {event[1]!r}"
                    break
                events.append(event)
                _emit(_format_trace(event))
            else:
                ended = f"n={n} reached"
        finally:
            if actors.is_alive(p):
                actors.trace(p, False)
            actors.exit(helper, "kill")
        _emit(f"tracing stopped: {ended}; {len(events)} message(s)")
        _fastlane_hint(p)
        return events

    # -- supervision -------------------------------------------------------------------

    def tree(self, pid: Any = None, limit: int = 25) -> dict[str, Any]:
        """The supervision tree: pids, names, ids, child counts, recent restarts."""
        root = pid if pid is not None else self.root_pid
        if root is None:
            raise ShellError("no application root known: start the shell with serve(addr, root_pid=...) or call tree(pid)")
        p = as_pid(root)
        _require_alive(p)
        node = ops.tree(p, limit=limit, timeout=self.state_timeout)
        if node is None:
            raise ShellError(f"{p} is not a supervisor (tree needs the root supervisor's pid)")
        _print_tree(node, "", "", limit, top=True)
        _emit(
            "restarts = restarts within the supervisor's intensity window (max_restarts in max_seconds), "
            "then the total since the supervisor started"
        )
        _emit(
            "no process = the child's start returned ignore (e.g. the local PubSub adapter, which needs none) "
            "or it was terminated; [a/b active] counts the children with a process"
        )
        _emit(
            "sockets are not in the tree: as in Phoenix, each connection's transport process belongs to the "
            "HTTP listener's connection, not to a supervisor (their channels are under the ChannelPool); "
            "list them with sockets()"
        )
        return node

    # -- PubSub ------------------------------------------------------------------------

    def pubsubs(self) -> list[dict[str, Any]]:
        """The running PubSub servers: adapter, pool size, subscriptions, topics."""
        rows = ops.pubsub_statistics()
        _print_table(
            ["name", "adapter", "node", "pool_size", "subscriptions", "subscribers", "topics"],
            [
                [r["name"], r["adapter"], r["node_name"], r["pool_size"], r["subscriptions"], r["subscribers"], r["topics"]]
                for r in rows
            ],
        )
        return rows

    def nodes(self, pubsub: str | None = None) -> dict[str, Any]:
        """The other nodes this node hears (Redis adapter), its connections and counters."""
        name = _resolve_pubsub(pubsub)
        stats = _pubsub.statistics(name)
        remote = stats.get("adapter_statistics")
        if not remote:
            _emit(f"PubSub {name}: adapter {stats['adapter']} has no other nodes (node {stats['node_name']})")
            return {}
        _emit(
            f"PubSub {name}, node {remote['node_name']} on {remote['url']} {remote['channel']}: "
            f"subscriber {remote['subscriber']}, publisher {remote['publisher']}, name {remote['name_claim']}"
        )
        _print_table(
            ["node", "status", "heartbeats", "seconds since last message"],
            [
                [node, row["status"], row["heartbeats"], row["seconds_since_last_message"]]
                for node, row in remote["nodes"].items()
            ],
        )
        counters = (
            "published",
            "publish_errors",
            "undelivered",
            "received",
            "ignored",
            "decode_errors",
            "unknown_dispatchers",
            "dispatch_errors",
            "reconnects",
        )
        _emit("  ".join(f"{key}={remote[key]}" for key in counters))
        return remote

    def topics(self, pubsub: str | None = None, n: int | None = 50) -> dict[str, int]:
        """Topics with subscribers on this node and how many (pubsub=None: the only/first one)."""
        name = _resolve_pubsub(pubsub)
        counts, distinct = ops.topic_counts(name)
        ordered = sorted(counts, key=lambda t: (-counts[t], t))
        shown = ordered if n is None else ordered[:n]
        _emit(f"PubSub {name}")
        _print_table(["topic", "subscriptions", "processes"], [[t, counts[t], distinct[t]] for t in shown], width=64)
        _emit(f"({len(shown)} of {len(counts)} topics)")
        return counts

    def subscribers(self, topic: str, pubsub: str | None = None) -> list[Pid]:
        """The processes subscribed to a topic (channels show their socket's transport)."""
        if not isinstance(topic, str):
            raise ShellError(f"topic must be a str, got {type(topic).__name__}")
        name = _resolve_pubsub(pubsub)
        entries = ops.subscriber_rows(name, topic)
        rows = []
        for entry in entries:
            info = entry["info"]
            rows.append(
                [
                    entry["pid"],
                    _name_or_label(info) if info else "(dead)",
                    info["status"] if info else "dead",
                    info["message_queue_len"] if info else "-",
                    entry["transport"] or "-",
                ]
            )
        _emit(f"PubSub {name}, topic {topic!r}")
        _print_table(["pid", "name/label", "status", "queue", "transport"], rows)
        _emit(f"({len(entries)} subscriptions)")
        return [entry["pid"] for entry in entries]

    def broadcast(self, topic: str, event: str, payload: Any = None, pubsub: str | None = None) -> Any:
        """A Phoenix broadcast (event + payload) to every socket joined to topic."""
        from . import Broadcast, dispatch

        if not isinstance(topic, str) or not isinstance(event, str):
            raise ShellError("topic and event must be strings")
        payload = {} if payload is None else payload
        name = _resolve_pubsub(pubsub)
        count = len(_pubsub.subscribers(name, topic))
        result = _pubsub.broadcast(name, topic, Broadcast(topic=topic, event=event, payload=payload), dispatcher=dispatch)
        _emit(f"broadcast {event!r} to {topic!r} on {name}: {result!r} ({count} local subscriptions)")
        return result

    # -- sockets -----------------------------------------------------------------------

    def sockets(self, peer: str | None = None) -> list[dict[str, Any]]:
        """Connected sockets, the largest outbound queue first: peer, path, id, joined
        channels, bytes queued for the client, bytes/frames in and out."""
        if peer is not None and not isinstance(peer, str):
            raise ShellError(f"peer must be a str (a substring of 'ip:port'), got {type(peer).__name__}")
        rows = []
        table = []
        for row in ops.sockets(peer, timeout=self.state_timeout):  # the largest outbound queue first
            snap = row.pop("snapshot")
            rows.append(row)
            table.append(
                [
                    row["pid"],
                    row["handler"],
                    "-" if row["id"] is None else row["id"],
                    _known(snap, "transport"),
                    _known(snap, "peer"),
                    _known(snap, "path"),
                    ", ".join(row["channels"]) or "-",
                    "-" if row["outbound"] is None else row["outbound"]["bytes"],
                    _known(snap, "bytes_in", "bytes_out"),
                    _known(snap, "frames_in", "frames_out"),
                ]
            )
        _print_table(
            ["pid", "handler", "id", "transport", "peer", "path", "channels", "queued", "bytes in/out", "frames in/out"],
            table,
            width=40,
        )
        unanswered = sum(1 for r in rows if not r["answered"])
        _emit(f"({len(rows)} sockets" + (f", filtered by peer {peer!r}" if peer is not None else "") + ")")
        if unanswered:
            _emit(
                f"? = not known: {unanswered} transport process(es) did not answer get_state within "
                f"{self.state_timeout}s (channels were found through their monitors)"
            )
        return rows

    def channels(self, pid: Any) -> dict[str, Pid]:
        """The channels a socket's transport process has joined: topic, channel pid, state."""
        p = as_pid(pid)
        info = actors.process_info(p)
        if info is None:
            raise ShellError(f"{p} is not alive")
        label = info["label"]
        if not _is_socket_label(label):
            hint = ""
            if label.__class__ is tuple and label and label[0] == "channel":
                hint = f"; it is the channel of {label[1]!r} (its socket: state({p}).transport_pid)"
            raise ShellError(f"{p} is not a socket's transport process{hint}")
        chans = ops.socket_channels(p, timeout=self.state_timeout) or {}
        rows = []
        for topic, cpid in chans.items():
            cinfo = actors.process_info(cpid)
            sock = _try_state(cpid, self.state_timeout)
            rows.append(
                [
                    topic,
                    cpid,
                    cinfo["status"] if cinfo else "dead",
                    cinfo["message_queue_len"] if cinfo else "-",
                    getattr(sock, "join_ref", None),
                    getattr(sock, "assigns", None),
                ]
            )
        _emit(f"socket {p} ({label[1]}, id {label[2]!r})")
        _print_table(["topic", "channel", "status", "queue", "join_ref", "assigns"], rows)
        return chans


# -- helpers for the commands ------------------------------------------------------------


def as_pid(value: Any) -> Pid:
    """A Pid from a Pid, ``'<0.12.0>'``, ``'0.12.0'``, ``12`` or a registered name."""
    if isinstance(value, Pid):
        return value
    if isinstance(value, bool):
        raise ShellError(f"not a pid: {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ShellError(f"not a pid: {value!r}")
        return Pid.parse(f"<0.{value}.0>")
    if isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"<?0\.\d+\.0>?", text):
            return Pid.parse(text)
        named = actors.whereis(text) if text else None
        if named is not None:
            return named
        raise ShellError(f"{value!r} is neither a pid like '<0.12.0>' nor a registered name")
    raise ShellError(f"expected a pid ('<0.12.0>', a Pid, a number or a registered name), got {type(value).__name__}")


def _require_alive(pid: Pid) -> None:
    if not actors.is_alive(pid):
        raise ShellError(f"{pid} is not alive")


def _signature(fn: Any) -> str:
    import inspect

    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return "()"
    shown = [p.name if p.default is p.empty else f"{p.name}={p.default!r}" for p in params if p.name != "timeout"]
    return "(" + ", ".join(shown) + ")"


# The data comes from the inspection layer the metrics and the dashboard share.
_all_infos = ops.all_infos
_supervisor_state = ops.supervisor_state


def _print_tree(node: dict[str, Any], lead: str, branch: str, limit: int, top: bool = False) -> None:
    parts = [str(node["pid"]) if isinstance(node["pid"], Pid) else "-"]
    if node["name"]:
        parts.append(str(node["name"]))
    if not top and node["id"] != "undefined":
        parts.append(f"id={_short(node['id'], 60)}")
    if node["supervisor"]:
        parts.append(f"{node['supervisor']} {node['strategy'] or ''}".rstrip())
        counts = node["counts"]
        if counts is not None:
            parts.append(f"[{counts['active']}/{counts['specs']} active, {counts['supervisors']} sup, {counts['workers']} wrk]")
        r = node["restarts"]
        parts.append(
            f"restarts {r['recent']}/{r['max_restarts']} in {r['max_seconds']}s, {r['total']} total" if r else "restarts n/a"
        )
    else:
        if node["type"] == "supervisor":
            parts.append("supervisor (did not answer get_state)")
        if node["label"] is not None:
            parts.append(_short(node["label"], 60))
        parts.append(node["status"] or "?")
        if node["queue"]:
            parts.append(f"queue={node['queue']}")
    _emit(lead + branch + "  ".join(parts))
    children = node["children"]
    if children is None:
        _emit(lead + ("" if top else ("│   " if branch == "├── " else "    ")) + "(did not answer which_children)")
        return
    sub = "" if top else lead + ("│   " if branch == "├── " else "    ")
    shown = children[:limit]
    for k, child in enumerate(shown):
        last = k == len(shown) - 1 and len(children) <= limit
        _print_tree(child, sub, "└── " if last else "├── ", limit)
    if len(children) > limit:
        _emit(sub + f"└── ... {len(children) - limit} more (tree(limit=...) shows more)")


_pubsub_names = ops.pubsub_names


def _resolve_pubsub(pubsub: str | None) -> str:
    if pubsub is not None:
        if not isinstance(pubsub, str):
            raise ShellError(f"pubsub must be a PubSub's name (a str), got {type(pubsub).__name__}")
        try:
            _pubsub.shards(pubsub)
        except _pubsub.UnknownPubSubError:
            known = ", ".join(_pubsub_names()) or "none"
            raise ShellError(f"no PubSub named {pubsub!r} is running (running: {known})") from None
        return pubsub
    names = _pubsub_names()
    if not names:
        raise ShellError("no PubSub is running")
    if len(names) > 1:
        _emit(f"(PubSubs running: {', '.join(names)}; using {names[0]!r} — pass pubsub=... for another)")
    return names[0]


_is_socket_label = ops.is_socket_label
_try_state = ops.try_state


def _known(snap: dict[str, Any], *keys: str) -> str:
    """A snapshot's values for a table: '?' = not known (no answer, or not counted), '-' = none."""
    return "/".join(("-" if snap[k] is None else str(snap[k])) if k in snap else "?" for k in keys)


def _trace_helper(target: Pid, queue: gevent.queue.Queue) -> None:
    """The tracer: hands trace events (and the target's death) to the shell, in order."""
    ref = actors.monitor(target)
    while True:
        msg = actors.receive()
        if msg.__class__ is tuple and msg:
            if msg[0] == "trace":
                queue.put(msg)
            elif msg[0] == "DOWN" and len(msg) == 5 and msg[1] == ref:
                queue.put(("DOWN", msg[4]))
                return


def _format_trace(event: tuple) -> str:
    now = time.time()
    stamp = time.strftime("%H:%M:%S", time.localtime(now)) + f".{int(now % 1 * 1e6):06d}"
    if len(event) >= 4 and event[2] == "receive":
        return f"{stamp} {event[1]} << {_short(event[3], 200)}"
    if len(event) >= 5 and event[2] == "send":
        return f"{stamp} {event[1]} -> {event[4]}: {_short(event[3], 200)}"
    return f"{stamp} {_short(event, 200)}"


def namespace(root_pid: Any = None) -> dict[str, Any]:
    """The names a debug shell session starts with (see the module docs)."""
    return Shell(root_pid).namespace()


# --------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------


class _ConnIn:
    """The session's stdin: whole lines from the connection; a half line at EOF is dropped."""

    encoding = "utf-8"

    def __init__(self, conn: Any, fobj: Any) -> None:
        self._conn = conn
        self._fobj = fobj

    def readline(self, *args: Any) -> str:
        line = self._fobj.readline()
        if not line.endswith("\n"):
            return ""  # EOF, or a client that went away mid-line: run nothing of it
        return line

    def fileno(self) -> int:
        return self._conn.fileno()

    def isatty(self) -> bool:
        return False

    def close(self) -> None:
        pass


class _ConnOut:
    """The session's stdout and stderr: written straight to the connection."""

    encoding = "utf-8"
    errors = "replace"

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def write(self, data: Any) -> int:
        if not isinstance(data, bytes):
            data = str(data).encode("utf-8", "replace")
        self._conn.sendall(data)
        return len(data)

    def flush(self) -> None:
        pass

    def fileno(self) -> int:
        return self._conn.fileno()

    def isatty(self) -> bool:
        return False

    def writable(self) -> bool:
        return True


class _Console(InteractiveConsole):
    """InteractiveConsole that counts the evaluations that raised (for attach's exit code)."""

    def __init__(self, locals: dict[str, Any], session: _Session) -> None:
        super().__init__(locals)
        self.session = session

    def runcode(self, code: Any) -> None:
        previous = sys.displayhook
        sys.displayhook = _displayhook
        try:
            super().runcode(code)
        finally:
            sys.displayhook = previous
            self.session.last_result = None

    def showtraceback(self) -> None:
        self.session.errors += 1
        super().showtraceback()

    def showsyntaxerror(self, *args: Any, **kwargs: Any) -> None:
        self.session.errors += 1
        super().showsyntaxerror(*args, **kwargs)


def _displayhook(value: Any) -> None:
    """Echo a statement's value, except the data a shell command just printed as a table.

    One module-level function (not one per session), so a session that yields mid-statement
    and restores the hook late leaves nothing stale behind for anyone else.
    """
    session = _sessions.get(getcurrent())
    if session is not None and value is not None and value is session.last_result:
        import builtins

        builtins._ = value  # type: ignore[attr-defined]
        return
    sys.__displayhook__(value)


class DebugShellServer(BackdoorServer):
    """gevent's backdoor with the shell's namespace, quiet about clients that go away.

    ``attach_address`` is the bound address in the form :func:`attach` takes. Stopping the
    server removes its Unix socket file.
    """

    def __init__(
        self, listener: Any, *, locals: dict[str, Any], banner: str, attach_address: str, unix_path: str | None = None
    ) -> None:
        super().__init__(listener, locals=locals, banner=banner)
        self.attach_address = attach_address
        self.unix_path = unix_path
        self._unix_ino = os.stat(unix_path).st_ino if unix_path else None

    def handle(self, conn: Any, address: Any) -> None:
        g = getcurrent()
        session = _Session()
        _sessions[g] = session
        fobj = None
        try:
            try:
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, True)
            except OSError:
                pass  # a Unix socket
            fobj = conn.makefile("r", encoding="utf-8", errors="replace", newline=None)
            # gevent's backdoor protocol: the greenlet carries its own stdin/stdout.
            g.stdin = _ConnIn(conn, fobj)  # type: ignore[attr-defined]
            g.stdout = _ConnOut(conn)  # type: ignore[attr-defined]
            g.switch_in()  # type: ignore[attr-defined]
            ns = self._create_interactive_locals()  # type: ignore[attr-defined]
            ns["__shell__"] = session
            console = _Console(ns, session)
            console.interact(banner=self.banner, exitmsg="")
        except SystemExit:
            pass  # quit()
        except (OSError, EOFError, ValueError) as e:
            log.debug("debug shell client %r went away: %r", address, e)
        except actors.Exit as e:
            log.debug("debug shell session %r ended by exit signal %r", address, e.reason)
            try:
                conn.sendall(f"\nthe shell's process got exit signal {e.reason!r}; closing\n".encode())
            except OSError:
                pass
        except gevent.GreenletExit:
            raise  # the server is stopping
        except Exception as e:  # noqa: BLE001 - one line, never a traceback on the server's stderr
            log.warning("debug shell session %r ended: %s: %s", address, type(e).__name__, e)
        finally:
            _sessions.pop(g, None)
            for closeable in (fobj, conn):
                try:
                    if closeable is not None:
                        closeable.close()
                except OSError:
                    pass

    def close(self) -> None:
        try:
            super().close()
        finally:
            path = self.unix_path
            if path and self._unix_ino is not None:
                try:
                    st = os.stat(path)
                    if stat.S_ISSOCK(st.st_mode) and st.st_ino == self._unix_ino:
                        os.unlink(path)
                except OSError:
                    pass
                self._unix_ino = None


def _bind_unix(path: str) -> Any:
    import gevent.socket as gsocket

    try:
        st = os.lstat(path)
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISSOCK(st.st_mode):
            raise FileExistsError(f"debug shell: {path} exists and is not a socket; refusing to replace it")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(1.0)
        try:
            probe.connect(path)
        except OSError:
            os.unlink(path)  # a stale socket left by a process that is gone
        else:
            raise OSError(f"debug shell: {path} is in use by a live server; refusing to take it over")
        finally:
            probe.close()
    sock = gsocket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(path)
    except BaseException:
        sock.close()
        raise
    finally:
        os.umask(old)
    os.chmod(path, 0o600)  # before listen: nobody else can ever connect
    sock.listen(16)
    return sock


def serve(addr: str, root_pid: Any = None, *, banner: str | None = None) -> DebugShellServer:
    """Start the debug shell on ``unix:PATH`` (mode 0600) or a loopback ``HOST:PORT``.

    Returns the started server (``.address``: what was bound; ``.attach_address``: the
    string for :func:`attach`; ``.stop()``). ``root_pid`` is the application root, shown
    by ``tree()``. Raises ValueError for an address that is not a Unix socket or loopback,
    FileExistsError if ``PATH`` exists and is not a socket.
    """
    family, sockaddr, canonical = parse_address(addr)
    ns = Shell(root_pid).namespace()
    if banner is None:
        banner = (
            f"greenphx debug shell (OS process {os.getpid()}); help() lists the commands.\n"
            "Everything typed here runs inside the server."
        )
    if family == socket.AF_UNIX:
        listener = _bind_unix(sockaddr)
        server = DebugShellServer(listener, locals=ns, banner=banner, attach_address=canonical, unix_path=sockaddr)
    else:
        server = DebugShellServer(sockaddr, locals=ns, banner=banner, attach_address=canonical)
    try:
        server.start()
    except BaseException:
        server.close()
        raise
    if family != socket.AF_UNIX:
        host, port = server.address[0], server.address[1]
        server.attach_address = f"[{host}]:{port}" if family == socket.AF_INET6 else f"{host}:{port}"
    log.info("debug shell listening on %s", server.attach_address)
    return server


# --------------------------------------------------------------------------------------
# attach: the client
# --------------------------------------------------------------------------------------


class _Timeout(Exception):
    pass


class _Reader:
    """Text from the shell, read until its next prompt."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = ""
        self.decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self.eof = False

    def until_prompt(self, deadline: float) -> tuple[str, str | None]:
        """(text before the prompt, the prompt) — prompt None if the connection closed."""
        while True:
            for prompt in (PROMPT, CONTINUATION):
                if self.buf.endswith(prompt):
                    text, self.buf = self.buf[: -len(prompt)], ""
                    return text, prompt
            if self.eof:
                text, self.buf = self.buf, ""
                return text, None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _Timeout()
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                raise _Timeout() from None
            if not data:
                self.eof = True
                self.buf += self.decoder.decode(b"", final=True)
            else:
                self.buf += self.decoder.decode(data)


def attach(
    addr: str,
    command: str | None = None,
    *,
    timeout: float = 60.0,
    connect_timeout: float = 5.0,
    stdin: Any = None,
    stdout: Any = None,
    stderr: Any = None,
) -> int:
    """Connect to a debug shell: interactive (``command=None``) or run one command.

    With a command: prints its output and returns 0, or 1 if the evaluation raised, a
    shell command reported an error, no prompt came back within ``timeout`` seconds, or
    the connection failed (a message goes to stderr). Interactive: copies stdin to the
    shell and the shell to stdout until stdin ends or the shell closes; returns 0, or 1
    if it could not connect.
    """
    out = stdout if stdout is not None else sys.stdout
    err = stderr if stderr is not None else sys.stderr
    try:
        family, sockaddr, canonical = parse_address(addr)
    except ValueError as e:
        print(f"attach: {e}", file=err)
        return 1
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.settimeout(connect_timeout)
        try:
            sock.connect(sockaddr)
        except OSError as e:
            print(f"attach: cannot connect to the debug shell at {canonical}: {e.strerror or e}", file=err)
            return 1
        if command is None:
            return _interactive(sock, stdin if stdin is not None else sys.stdin, out, err, canonical)
        return _run_command(sock, command, timeout, connect_timeout, out, err, canonical)
    finally:
        sock.close()


def _run_command(
    sock: socket.socket, command: str, timeout: float, connect_timeout: float, out: Any, err: Any, where: str
) -> int:
    reader = _Reader(sock)
    try:
        _banner, prompt = reader.until_prompt(time.monotonic() + connect_timeout)
    except _Timeout:
        print(f"attach: no prompt from {where} within {connect_timeout}s (is it a greenphx debug shell?)", file=err)
        return 1
    except OSError as e:
        print(f"attach: connection to {where} failed: {e}", file=err)
        return 1
    if prompt is None:
        print(f"attach: {where} closed the connection before its prompt", file=err)
        return 1
    text = command.strip("\n")
    if "\n" in text:
        line = f"exec(compile({text!r}, '<attach>', 'exec'))"
    else:
        line = text
    output: list[str] = []
    try:
        sock.sendall((line + "\n").encode("utf-8"))
        deadline = time.monotonic() + timeout
        blank_lines = 0
        while True:
            chunk, prompt = reader.until_prompt(deadline)
            output.append(chunk)
            if prompt == CONTINUATION and blank_lines < 2:
                blank_lines += 1  # a compound statement on one line: end it
                sock.sendall(b"\n")
                continue
            break
        result = "".join(output)
        out.write(result)
        if result and not result.endswith("\n"):
            out.write("\n")
        out.flush()
        if prompt is None:
            print(f"attach: {where} closed the connection", file=err)
            return 1
        if prompt == CONTINUATION:
            print("attach: the command is incomplete", file=err)
            return 1
        sock.sendall(b"__shell__.status()\n")
        status_text, _ = reader.until_prompt(time.monotonic() + connect_timeout)
    except _Timeout:
        out.write("".join(output))
        out.flush()
        print(f"\nattach: no prompt within {timeout}s; the command may still be running in the server", file=err)
        return 1
    except OSError as e:
        print(f"attach: connection to {where} failed: {e}", file=err)
        return 1
    finally:
        _goodbye(sock)
    m = _STATUS_RE.search(status_text)
    if m is not None:
        return 1 if int(m.group(1)) or int(m.group(2)) else 0
    return 1 if _looks_like_error(result) else 0  # not our shell: read the traceback


def _looks_like_error(output: str) -> bool:
    if re.search(r"^Traceback \(most recent call last\):$", output, re.MULTILINE):
        return True
    return bool(re.search(r'^\s*File "<[^>]+>", line \d+.*\n(?:.*\n)*?\w*(Error|Exception)\b.*$', output, re.MULTILINE))


def _goodbye(sock: socket.socket) -> None:
    """End the session cleanly: EOF to the console, then read until it closes (briefly)."""
    try:
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(1.0)
        while sock.recv(65536):
            pass
    except OSError:
        pass


def _interactive(sock: socket.socket, stdin: Any, out: Any, err: Any, where: str) -> int:
    sock.settimeout(None)
    decoder = codecs.getincrementaldecoder("utf-8")("replace")

    def show(data: bytes) -> None:
        out.write(decoder.decode(data))
        out.flush()

    try:
        fd = stdin.fileno()
    except (AttributeError, OSError, ValueError):
        fd = None
    try:
        if fd is None:
            return _interactive_lines(sock, stdin, show)
        return _interactive_fd(sock, fd, show)
    except KeyboardInterrupt:
        out.write("\n")
        return 130
    except OSError as e:
        print(f"\nattach: connection to {where} lost: {e}", file=err)
        return 1


def _interactive_fd(sock: socket.socket, fd: int, show: Callable[[bytes], None]) -> int:
    import selectors

    sel = selectors.SelectSelector()  # select() also takes regular files (stdin < script.py)
    sel.register(sock, selectors.EVENT_READ, "sock")
    sel.register(fd, selectors.EVENT_READ, "stdin")
    try:
        while True:
            for key, _ in sel.select():
                if key.data == "sock":
                    data = sock.recv(65536)
                    if not data:
                        return 0
                    show(data)
                else:
                    data = os.read(fd, 65536)
                    if data:
                        sock.sendall(data)
                    else:
                        sel.unregister(fd)
                        sock.shutdown(socket.SHUT_WR)  # the console sees EOF and ends the session
    finally:
        sel.close()


def _interactive_lines(sock: socket.socket, stdin: Any, show: Callable[[bytes], None]) -> int:
    done = threading.Event()

    def pump() -> None:
        try:
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                show(data)
        except OSError:
            pass
        finally:
            done.set()

    reader = threading.Thread(target=pump, name="debug-shell-attach", daemon=True)
    reader.start()
    for line in iter(stdin.readline, ""):
        if done.is_set():
            break
        sock.sendall(line.encode("utf-8") if isinstance(line, str) else line)
    try:
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    done.wait()
    reader.join()
    return 0
