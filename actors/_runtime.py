"""Processes on greenlets with Erlang's semantics.

A process is a greenlet plus a ``_Proc`` record: a mailbox (a deque scanned by selective
receive), links, monitors, a registered name and a trap-exit flag. Everything here runs on
one gevent hub (one OS thread); the tables are plain dicts because greenlets only switch at
blocking points, so no operation below can be interleaved with another.

Signals. An exit signal that kills a process is applied *synchronously* to the runtime's
tables (the process is dead, its name is free, its links and monitors have fired) and the
greenlet is then unwound asynchronously by throwing ``Exit`` into it from the hub. So
``is_alive(pid)`` right after ``exit(pid, 'kill')`` is already false, as Erlang guarantees,
and a greenlet blocked in ``receive`` or in socket I/O dies at the hub's next turn. A
greenlet cannot be pre-empted: a process busy in a CPU-bound loop is unwound at its next
switch (its entries in the tables are already gone).

A dead process runs no runtime call. Python cannot stop code from catching ``Exit`` (a
bare ``except:``, ``except BaseException:``), so the runtime makes the consequences
Erlang's instead: from the moment a spawned process is dead, every runtime call it makes
(``send``, ``receive``, ``spawn``, ``link``, ``register``, timers, ``self`` ...) raises
``Exit`` again, so it sends nothing and receives nothing. ``finally`` blocks and
``except Exit: ...; raise`` still run on the way out (Erlang runs neither); a runtime call
there raises at once. A process that swallowed its ``Exit`` and calls the runtime again
is parked for good at that call (its greenlet is never switched to again, and is kept, so
no collector resumes it) and logged once, naming where the signal was swallowed; it can
never block the hub. An adopted greenlet (a test, a WSGI handler) is not its process's:
after the process dies it may go on and is adopted afresh at its next call.

Timers (``send_after``, ``start_timer``, ``send_interval``) to a pid are cancelled when that
process dies, as Erlang's, so a dead process's timers hold nothing.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import re
import sys
import traceback
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

import gevent
from gevent import get_hub
from gevent.hub import Waiter
from greenlet import getcurrent, greenlet

from ._errors import Exit, NoProcError, NotAProcessError, ReceiveTimeout, RegistrationError

log = logging.getLogger("actors")

# An adopted gevent.Greenlet ended by an exit signal is an ordinary death, not an error
# for gevent's hub to print a traceback about.
if Exit not in gevent.hub.Hub.NOT_ERROR:
    gevent.hub.Hub.NOT_ERROR = (*gevent.hub.Hub.NOT_ERROR, Exit)

_MISSING: Any = object()


# The mailbox of a hibernated process with nothing queued: one shared empty deque instead of
# a 760-byte one each (a deque allocates a 64-slot block even when empty). Never appended
# to: a delivery replaces it with a fresh deque, and so does a wake-up.
class _NoMail(deque):
    """The type of :data:`_NO_MAIL`: adding to it is a runtime bug, so it fails loudly."""

    def _refuse(self, *_args: Any) -> None:
        raise RuntimeError("a hibernated process's shared empty mailbox was written to")

    append = appendleft = extend = extendleft = insert = _refuse


_NO_MAIL: deque = _NoMail()


class _Timeout:
    __slots__ = ()

    def __repr__(self) -> str:
        return "TIMEOUT"


#: A sentinel to pass as ``receive(..., default=TIMEOUT)`` and compare against.
TIMEOUT: Any = _Timeout()


# --------------------------------------------------------------------------------------
# Identifiers
# --------------------------------------------------------------------------------------

_pid_counter = itertools.count(1)
_ref_counter = itertools.count(1)


class Pid:
    """A process identifier: unique for the life of the OS process, hashable, printable.

    Pids are never reused. ``str(pid)`` is ``<0.N.0>`` as on a BEAM node.
    """

    __slots__ = ("_n", "_proc")

    def __init__(self, n: int, proc: _Proc | None = None) -> None:
        self._n = n
        self._proc = proc

    def __repr__(self) -> str:
        return f"<0.{self._n}.0>"

    __str__ = __repr__

    def __hash__(self) -> int:
        return self._n

    def __eq__(self, other: object) -> bool:
        return other.__class__ is Pid and other._n == self._n

    def __lt__(self, other: Pid) -> bool:
        if other.__class__ is not Pid:
            return NotImplemented
        return self._n < other._n

    def __reduce__(self) -> Any:
        return (_pid_from_number, (self._n,))

    @classmethod
    def parse(cls, text: str | Pid) -> Pid:
        """Turn ``"<0.123.0>"`` (or ``"0.123.0"``) into the Pid it names (dead or alive)."""
        if isinstance(text, Pid):
            return text
        if not isinstance(text, str):
            raise TypeError(f"Pid.parse: expected a str like '<0.12.0>', got {type(text).__name__}")
        m = _PID_RE.fullmatch(text.strip())
        if m is None:
            raise ValueError(f"Pid.parse: {text!r} is not a pid like '<0.12.0>'")
        return _pid_from_number(int(m.group(1)))


_PID_RE = re.compile(r"<?0\.(\d+)\.0>?")


def _pid_from_number(n: int) -> Pid:
    proc = _by_number.get(n)
    return proc.pid if proc is not None else Pid(n)


class Ref:
    """A unique reference (monitor refs, call tags, timer refs): ``#Ref<0.0.0.N>``."""

    __slots__ = ("_n",)

    def __init__(self) -> None:
        self._n = next(_ref_counter)

    def __repr__(self) -> str:
        return f"#Ref<0.0.0.{self._n}>"

    def __hash__(self) -> int:
        return self._n

    def __eq__(self, other: object) -> bool:
        return other.__class__ is self.__class__ and other._n == self._n


def make_ref() -> Ref:
    """A new unique reference."""
    return Ref()


# --------------------------------------------------------------------------------------
# Process records and tables
# --------------------------------------------------------------------------------------


class _Proc:
    """The runtime's record of one process; owned by the runtime, never by user code."""

    __slots__ = (
        "pid",
        "glet",
        "mailbox",
        "waiter",
        "links",
        "monitors",
        "monitored_by",
        "trap_exit",
        "name",
        "alive",
        "reason",
        "tracer",
        "initial_call",
        "label",
        "adopted",
        "system",
        "unwound",
        "abandoned",
        "monitor_names",
        "timers",
        "high_water",
        "exit_hooks",
    )

    def __init__(self, glet: Any, initial_call: Any, adopted: bool = False) -> None:
        self.pid = Pid(next(_pid_counter), self)
        self.glet = glet
        self.mailbox: deque = deque()
        self.waiter: Any = None  # a Waiter while it waits, a _Wakeup while it hibernates
        # Each None, one entry (_OneLink, _OneMonitor), or a set / dict from two entries on.
        self.links: Any = None  # set of _Proc
        self.monitors: Any = None  # Ref -> _Proc: monitors this process holds
        self.monitored_by: Any = None  # Ref -> _Proc: monitors on this process
        self.trap_exit = False
        self.name: str | None = None
        self.alive = True
        self.reason: Any = None
        self.tracer: _Proc | None = None
        # A str, or what names it on demand (the spawned callable, an adopted greenlet):
        # naming costs string work every spawn pays and few ever read (_initial_call).
        self.initial_call = initial_call
        self.label: Any = None
        self.adopted = adopted
        # What the process is, for introspection (e.g. the GenServer instance).
        self.system: Any = None
        # Set once Exit for this process's death has been raised in its greenlet, so a
        # greenlet that caught it and went on (an adopted one) is never hit twice.
        self.unwound = False
        # Tags of calls that timed out: a late reply to one is dropped, as OTP's aliases do.
        self.abandoned: set | None = None
        # ref -> name for monitors made by registered name: their DOWN names the name.
        self.monitor_names: dict | None = None
        # Timers whose destination is this process: cancelled when it dies, as Erlang's.
        self.timers: set[TimerRef] | None = None
        # The longest the mailbox has been, counted only when a message finds others queued
        # (an empty mailbox, the common case, costs nothing).
        self.high_water = 0
        # key -> fn(pid), called as the process dies: tables it owns rows in drop them
        # at once (ETS's owner cleanup), without a watcher process and its DOWN.
        self.exit_hooks: dict | None = None


class _ProcGreenlet(greenlet):
    """The greenlet of a spawned process; ``proc`` links it back to its record.

    Greenlets are pooled: one whose process ended waits in ``_pool`` for the next process
    instead of ending (a new greenlet costs about 7 µs here, nearly all of it the kernel
    mapping and unmapping the frame stack CPython gives every greenlet; a pooled one costs
    a switch). ``running`` is the process whose body it is executing, None between
    processes, so a kill aimed at a process that has ended never reaches its successor.

    A pooled greenlet may also run a body that is no process (:func:`_spawn_plain`, a
    connection's HTTP handler): ``proc`` is None and ``plain`` describes the body; it is
    adopted as a process on its first runtime call, as any greenlet is.
    """

    __slots__ = ("proc", "running", "plain")
    proc: _Proc  # None once the process has ended (assigned with a type: ignore)
    running: _Proc | None
    plain: str | None


# Every live process by pid number, oldest first. Keyed by the int, not the Pid: a Pid's
# hash is a Python-level __hash__ call, and every spawn and exit touches this table.
_by_number: dict[int, _Proc] = {}
_names: dict[str, _Proc] = {}
# Greenlets that are not ours but used the API (a test, a WSGI handler, the main greenlet).
_adopted: dict[Any, _Proc] = {}
# Adopted greenlets killed while switched out whose Exit has not been raised in them yet
# (it is, at their next API call or when the hub throws it); cleared within a hub turn.
_dying: dict[Any, _Proc] = {}

_tracing = 0  # number of processes being traced; lets send() skip the sender lookup
# Spawned processes that are dead while their greenlet still runs: killed and not yet
# unwound, or unwinding (finally blocks) after Exit was raised in them. Value: [the last
# Exit raised in it or None, how many runtime calls it made since]. While this is empty,
# send() need not look at its caller at all.
_unwinding: dict[_Proc, list] = {}
# Greenlets of processes that swallowed their exit signal and went on: parked for good,
# never switched to again; held here so that no collector ever resumes them.
_zombies: list[Any] = []
# Runtime calls a dead process may make while unwinding (each raises Exit again) before
# it counts as one that swallows its Exit in a loop.
_UNWIND_CALLS = 100
# tracer -> the processes it traces, so a tracer's death ends their tracing at once.
_traced_by: dict[_Proc, set[_Proc]] = {}


def _register_proc(proc: _Proc) -> None:
    _by_number[proc.pid._n] = proc


def _current() -> _Proc:
    g = getcurrent()
    if g.__class__ is _ProcGreenlet:
        proc = g.proc
        if proc is not None:
            if not proc.alive:
                _dead_call(proc)  # a dead process runs no runtime call: see _dead_call
            return proc
    adopted = _adopted.get(g)
    if adopted is not None and adopted.alive:
        return adopted
    _check_dying(g)
    return _adopt(g)


def _current_or_none() -> _Proc | None:
    g = getcurrent()
    if g.__class__ is _ProcGreenlet:
        proc = g.proc
        if proc is not None:
            if not proc.alive:
                _dead_call(proc)
            return proc
    adopted = _adopted.get(g)
    if adopted is not None and adopted.alive:
        return adopted
    if g is get_hub():
        return None
    _check_dying(g)
    return _adopt(g)


def _check_dying(g: Any) -> None:
    # An adopted greenlet whose process was killed while it was switched out must not be
    # adopted afresh (and hit later by the stale Exit): it dies now.
    if _dying:
        dead = _dying.get(g)
        if dead is not None:
            _raise_death(dead)


def _adopt(g: Any) -> _Proc:
    if g is get_hub():
        raise NotAProcessError(
            "this function needs a calling process; it was called from gevent's hub (a timer or I/O callback), which is not one"
        )
    proc = _Proc(g, g, adopted=True)
    _adopted[g] = proc
    _register_proc(proc)
    if g.__class__ is _ProcGreenlet:
        g.running = proc  # a plain body's greenlet (_spawn_plain): signals aimed at it land
    elif isinstance(g, gevent.Greenlet):
        g.rawlink(_adopted_greenlet_ended)
    return proc


def _adopted_greenlet_ended(g: gevent.Greenlet) -> None:
    proc = _adopted.get(g)
    if proc is None:
        return
    exc = g.exception
    if exc is None or isinstance(exc, gevent.GreenletExit):
        reason: Any = "normal"
    elif isinstance(exc, Exit):
        reason = exc.reason
    else:
        reason = exc
    _terminate(proc, reason)


def _describe_greenlet(g: Any) -> str:
    if g.__class__ is _ProcGreenlet and g.plain is not None:
        return g.plain
    if g.parent is None:
        return "main greenlet"
    run = getattr(g, "_run", None) or getattr(g, "run", None)
    return f"adopted greenlet {_callable_name(run)}" if run is not None else "adopted greenlet"


def _initial_call(proc: _Proc) -> Any:
    """``proc``'s initial call as shown to people: named here, once, when first asked."""
    call = proc.initial_call
    if call.__class__ is str:
        return call
    name = _describe_greenlet(call) if isinstance(call, greenlet) else _callable_name(call)
    proc.initial_call = name
    return name


def _callable_name(fn: Any) -> str:
    mod = getattr(fn, "__module__", None)
    qual = getattr(fn, "__qualname__", None) or getattr(type(fn), "__qualname__", repr(fn))
    return f"{mod}.{qual}" if mod else str(qual)


def _reap_dead_adopted() -> None:
    # Raw greenlets give no death notice; notice them when someone looks.
    for g, proc in list(_adopted.items()):
        if g.dead:
            _terminate(proc, "normal")


def _adopt_current(initial_call: Any) -> _Proc:
    """Make the calling greenlet a process (it may be one already), started as ``initial_call``.

    For a transport's own greenlet (a WSGI handler's) that becomes the connection's
    process, as Cowboy's connection process becomes Phoenix's transport.
    """
    proc = _current()
    proc.initial_call = initial_call
    return proc


def _release_current(reason: Any = "normal") -> None:
    """End the calling greenlet's adopted process, if it has one, with ``reason``; the
    greenlet runs on as a plain greenlet (test isolation; a transport finishing its TCP
    close after its process has exited)."""
    g = getcurrent()
    proc = _adopted.get(g)
    if proc is not None:
        _terminate(proc, reason)
    dead = _dying.pop(g, None)
    if dead is not None:
        dead.unwound = True  # its death is applied; do not throw it into what runs next


# --------------------------------------------------------------------------------------
# Spawning
# --------------------------------------------------------------------------------------


# Idle process greenlets, most recently used last. Each holds its frame-stack pages and a
# saved C stack slice (about 8 KiB resident), so the pool is bounded twice: never more
# than _POOL_MAX (a burst of ended processes frees the rest at once; at 1,024, 10,000
# connections hibernating together cost 0.8 KiB each for the next second), and every
# _POOL_TRIM_INTERVAL, half of the greenlets beyond _POOL_KEEP that stayed idle the whole
# interval end, oldest first. Churn keeps its working set (at a bound of 64, 50 concurrent
# connections churning still made 0.47 greenlets per cycle; at 256, none).
_pool: list[_ProcGreenlet] = []
# Bodies handed on by _handoff from a plain body's greenlet, to run there next as the
# process: proc -> (fn, args).
_handed_on: dict[_Proc, tuple] = {}
_POOL_MAX = 256
_POOL_KEEP = 32
_POOL_TRIM_INTERVAL = 0.2
_pool_trimmer: Any = None
_pool_low = 0  # the fewest idle greenlets since the last trim


def _trim_pool() -> None:
    global _pool_trimmer, _pool_low
    excess = min(_pool_low, len(_pool)) - _POOL_KEEP
    if excess > 0:
        drop = max(1, excess // 2)
        victims = _pool[:drop]
        del _pool[:drop]
        # Ended, not just dropped: a suspended greenlet's own frame refers to it, so only
        # the cyclic collector (rare in a server) would ever free it.
        for g in victims:
            g.throw(gevent.GreenletExit)
    _pool_low = len(_pool)
    if _pool_low <= _POOL_KEEP:
        _pool_trimmer.close()
        _pool_trimmer = None


def _pool_append(g: _ProcGreenlet) -> None:
    global _pool_trimmer, _pool_low
    _pool.append(g)
    if _pool_trimmer is None and len(_pool) > _POOL_KEEP:
        _pool_low = len(_pool)
        # Unreferenced: housekeeping must not keep the hub (gevent.wait(), a test's loop) alive.
        _pool_trimmer = get_hub().loop.timer(_POOL_TRIM_INTERVAL, _POOL_TRIM_INTERVAL, ref=False)
        _pool_trimmer.start(_trim_pool)


def _new_greenlet(proc: _Proc | None) -> _ProcGreenlet:
    """A greenlet for ``proc``, from the pool if one is idle; start it with
    ``g.switch(main, fn, args, kwargs)`` (``main`` is ``_process_main`` or ``_handoff_main``)."""
    global _pool_low
    if _pool:
        g = _pool.pop()
        if len(_pool) < _pool_low:
            _pool_low = len(_pool)
    else:
        g = _ProcGreenlet(_pooled_main, get_hub())
        g.running = None
        g.plain = None
        _pool_low = 0
    g.proc = proc  # type: ignore[assignment]
    if proc is not None:
        proc.glet = g
    return g


def _pooled_main(main: Callable[..., None], fn: Any, args: Any, kwargs: Any) -> None:
    g: Any = getcurrent()
    hub = g.parent
    while True:
        g.running = g.proc
        try:
            # A plain call, not main(*star_args): CPython 3.11 runs a plain Python-to-Python
            # call in the same C frame, and every C frame is saved with the greenlet each
            # time it switches out (0.8 KiB per held connection with the star call).
            main(fn, args, kwargs)
        finally:
            g.running = None
        main = fn = args = kwargs = None  # type: ignore[assignment]  # hold nothing of the process while idle
        # A greenlet with attributes (a gevent.local's values, threading.local's once the
        # stdlib is patched, anything set on it) ends instead: gevent keys those by the
        # greenlet's identity and frees them only when it goes, so a reused one would
        # hand them to the next process.
        if len(_pool) >= _POOL_MAX or g.__dict__:
            return
        g.gr_context = None  # the next process starts in an empty contextvars context
        _pool_append(g)
        try:
            resumed = hub.switch()
        except BaseException:  # noqa: BLE001 - trimmed, or GreenletExit at shutdown: end
            if g in _pool:
                _pool.remove(g)
            return
        main, fn, args, kwargs = resumed


def _process_main(fn: Callable[..., Any], args: tuple, kwargs: dict) -> None:
    g = getcurrent()
    try:
        _run_process(g.proc, fn, args, kwargs)  # type: ignore[attr-defined]
    finally:
        if _unwinding:
            _unwinding.pop(g.proc, None)  # type: ignore[attr-defined]
        # Record and greenlet point at each other: left linked, every dead process (and
        # all its state) would wait for a cyclic collection, which a server tunes to be
        # rare. Unlinked, it is freed as it ends.
        g.proc = None  # type: ignore[attr-defined]


def _spawn_plain(fn: Callable[..., Any], args: tuple, description: str) -> None:
    """Run ``fn(*args)`` at the hub's next turn in a pooled greenlet, as no process (as
    ``gevent.spawn`` would, without a new greenlet): it is adopted as one on its first
    runtime call, and that process ends when ``fn`` returns, unless it was handed on
    (:func:`_handoff`), which then runs in this same greenlet. For a server's connection
    handler: ``description`` names it to introspection."""
    g = _new_greenlet(None)
    # In a list the body empties: _pooled_main's frame, below the transport's for the
    # connection's life, must not keep the handler's arguments (socket, address) alive.
    get_hub().loop.run_callback(g.switch, _plain_main, [fn, args], None, description)


def _plain_main(call: list, _args: None, description: str) -> None:
    g: Any = getcurrent()
    g.plain = description
    fn, args = call
    call.clear()
    try:
        _call(fn, args, {})
        reason: Any = "normal"
    except Exit as e:
        reason = e.reason
    except gevent.GreenletExit:
        reason = "killed"
    except BaseException as e:  # noqa: BLE001 - reported once, as gevent reports a greenlet's
        reason = e
        log.error("%s crashed: %r", description, e, exc_info=e)
    finally:
        g.plain = None
        # The body's adopted process, if it used the runtime and was not handed on, ends
        # with it (as an adopted gevent greenlet's does); no signal meant for it may reach
        # what this greenlet runs next.
        adopted = _adopted.get(g)
        if adopted is not None:
            _terminate(adopted, reason)
        if _dying:
            _dying.pop(g, None)
        g.running = None
    if g.proc is not None:  # handed on: the process's next body runs here, its stack gone
        fn, args = _handed_on.pop(g.proc)
        g.running = g.proc
        _handoff_main(fn, args)


def _call(fn: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
    """``fn(*args, **kwargs)``, as a plain call for the usual few positional arguments:
    CPython 3.11 runs a plain Python-to-Python call in the caller's C frame, and a star
    call in a new one, which every process greenlet then saves and restores with its stack
    at each switch."""
    if kwargs:
        return fn(*args, **kwargs)
    n = len(args)
    if n == 0:
        return fn()
    if n == 1:
        return fn(args[0])
    if n == 2:
        return fn(args[0], args[1])
    if n == 3:
        return fn(args[0], args[1], args[2])
    if n == 6:  # a GenServer woken from hibernation re-enters its loop with six
        return fn(args[0], args[1], args[2], args[3], args[4], args[5])
    return fn(*args)


def _run_process(proc: _Proc, fn: Callable[..., Any], args: tuple, kwargs: dict) -> None:
    if not proc.alive:  # killed before it ever ran
        return
    try:
        _call(fn, args, kwargs)
        reason: Any = "normal"
    except _Hibernate as h:
        if proc.alive:
            _park(proc, h.fn, h.args, h.kwargs, h.on_exit)
            return
        reason = proc.reason
    except Exit as e:
        reason = e.reason
    except gevent.GreenletExit:
        reason = "killed"
    except BaseException as e:  # noqa: BLE001 - a crash is any uncaught exception
        reason = e
        if proc.alive:
            log.error(
                "Process %s (%s) crashed: %r",
                proc.pid,
                _initial_call(proc),
                e,
                exc_info=e,
                extra={"pid": str(proc.pid), "reason": e},
            )
    if proc.alive:  # a body that applied its own death (a transport's) is done with it
        _terminate(proc, reason)


def _spawn(
    fn: Callable[..., Any],
    args: tuple,
    kwargs: dict,
    *,
    link: bool = False,
    monitor: bool = False,
    trap_exit: bool = False,
    initial_call: Any = None,
    link_to: _Proc | None = None,
) -> tuple[Pid, Ref | None]:
    # link_to: link the child to that process instead of the caller, from birth. Only a
    # supervisor's own module uses it, to start a child on the supervisor's behalf.
    if not callable(fn):
        raise TypeError(f"spawn: fn must be callable, got {type(fn).__name__}")
    if _unwinding:
        _check_caller()
    hub = get_hub()
    proc = _Proc(None, initial_call or fn)
    g = _new_greenlet(proc)
    proc.trap_exit = trap_exit
    _register_proc(proc)
    ref = None
    if link_to is not None:
        if not link_to.alive:
            raise ValueError(f"spawn: cannot link a new process to dead {link_to.pid}")
        _add_link(link_to, proc)
    if link or monitor:
        parent = _current()
        if link:
            _add_link(parent, proc)
        if monitor:
            ref = Ref()
            _add_monitor(parent, proc, ref)
    hub.loop.run_callback(g.switch, _process_main, fn, args, kwargs)
    return proc.pid, ref


class _Hibernate(BaseException):
    """Internal: unwinds a hibernating process's greenlet to _process_main."""

    def __init__(self, fn: Callable[..., Any], args: tuple, kwargs: dict, on_exit: Any = None) -> None:
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.on_exit = on_exit


def _finished() -> None:
    pass


# What a hibernating process's record points at instead of its (finished) greenlet.
_HIBERNATED = greenlet(_finished)
_HIBERNATED.switch()


class _Wakeup:
    """A hibernating process's waiter: the first message starts a fresh greenlet that
    calls the continuation (``send`` wakes it exactly as it wakes a receive)."""

    __slots__ = ("proc", "fn", "args", "kwargs", "on_exit")

    def __init__(self, proc: _Proc, fn: Callable[..., Any], args: tuple, kwargs: dict, on_exit: Any = None) -> None:
        self.proc = proc
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        # Called from the hub as on_exit(*args, reason) if the process dies while
        # hibernating (it has no greenlet to unwind): what owns resources, a socket, releases them.
        self.on_exit = on_exit

    def switch(self, _value: Any = True) -> None:
        proc = self.proc
        if not proc.alive:
            return
        if proc.mailbox is _NO_MAIL:
            proc.mailbox = deque()  # a wake-up without a message (a watcher's): loops keep it
        _new_greenlet(proc).switch(_process_main, self.fn, self.args, self.kwargs)


def _park(proc: _Proc, fn: Callable[..., Any], args: tuple, kwargs: dict, on_exit: Any = None) -> None:
    proc.glet = _HIBERNATED
    wakeup = _Wakeup(proc, fn, args, kwargs, on_exit)
    if proc.mailbox:  # a message is already there: wake at once, as Erlang does
        get_hub().loop.run_callback(wakeup.switch, True)
    else:
        proc.mailbox = _NO_MAIL
        proc.waiter = wakeup


def _hibernate(fn: Callable[..., Any], args: tuple, on_exit: Any = None) -> Any:
    """:func:`hibernate` for the runtime's own processes: ``on_exit(*args, reason)`` is
    called from the hub if the process dies while it hibernates (a transport closes its
    socket)."""
    raise _Hibernate(fn, args, {}, on_exit)


def _handoff(initial_call: Any, fn: Callable[..., Any], args: tuple, proc: _Proc | None = None) -> _Proc:
    """Make ``fn(*args)`` the calling process's next body, started as ``initial_call``
    (``proc``: the caller's process, if the caller has it at hand).

    The process keeps its pid, mailbox, links, monitors and name: what the caller did as it
    (a socket's ``connect``) stays done by it. For a connection's handler about to become
    its transport (as Cowboy's connection process becomes a WebSocket handler):

    * in a plain body's greenlet (:func:`_spawn_plain`, our HTTP server's connections) the
      process stays in that greenlet, and ``fn`` runs there once the plain body has
      returned, with its stack gone: no second greenlet;
    * any other greenlet (adopted first if need be: another server's handler) gives the
      process to a new greenlet that runs ``fn`` at the hub's next turn, and runs on as a
      plain greenlet.

    Either way ``fn`` runs as a spawned process's body, so it may hibernate.
    """
    g0 = getcurrent()
    if proc is None:
        proc = _current()
    if proc.adopted and g0.__class__ is _ProcGreenlet and _adopted.get(g0) is proc:
        # A plain body's greenlet (_spawn_plain): the process stays here, and fn runs as its
        # body once the plain body has returned (no second greenlet).
        del _adopted[g0]
        proc.adopted = False
        proc.initial_call = initial_call
        g0.proc = proc
        _handed_on[proc] = (fn, args)
        return proc
    if proc.adopted:
        if _adopted.get(g0) is proc:
            del _adopted[g0]
        proc.adopted = False
    elif proc.glet is not g0:  # pragma: no cover - only an adopted greenlet hands off
        raise NotAProcessError("_handoff: the caller's process is not its own greenlet's")
    g = _new_greenlet(proc)
    proc.initial_call = initial_call
    get_hub().loop.run_callback(g.switch, _handoff_main, fn, args, None)
    return proc


def _handoff_main(fn: Callable[..., Any], args: tuple, _kwargs: None = None) -> None:
    g = getcurrent()
    proc = g.proc  # type: ignore[attr-defined]
    if proc.alive:
        _process_main(fn, args, {})
        return
    # Killed before its greenlet ran: unlike a spawned function, fn owns what the old
    # greenlet handed it (a socket), so it runs anyway and meets its death at its first
    # runtime call (afresh: an Exit the old body got was that body's to handle).
    proc.unwound = False
    if _unwinding:
        _unwinding.pop(proc, None)
    try:
        fn(*args)
    except BaseException:  # noqa: BLE001, S110 - the process is dead already
        pass
    finally:
        if _unwinding:
            _unwinding.pop(proc, None)
        g.proc = None  # type: ignore[attr-defined]


def hibernate(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Drop the calling process's stack until a message arrives, then run ``fn(*args, **kwargs)``
    as the process's new body (Erlang's ``erlang:hibernate/3``). Does not return.

    The process keeps its pid, mailbox, links, monitors, name and trap_exit flag; only its
    greenlet (stack, frames, locals) goes, so an idle process costs a few hundred bytes
    instead of several KiB. Only spawned processes can hibernate (an adopted greenlet's
    stack belongs to someone else). ``try``/``finally`` blocks on the way out do run.
    """
    proc = _current()
    if proc.adopted:
        raise NotAProcessError("hibernate: only a spawned process can hibernate, not an adopted greenlet")
    if not callable(fn):
        raise TypeError(f"hibernate: fn must be callable, got {type(fn).__name__}")
    raise _Hibernate(fn, args, kwargs)


def spawn(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Pid:
    """Start ``fn(*args, **kwargs)`` as a new process; it runs at the hub's next turn."""
    return _spawn(fn, args, kwargs)[0]


def spawn_link(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Pid:
    """Spawn and link to the caller atomically (the link exists before the child runs)."""
    return _spawn(fn, args, kwargs, link=True)[0]


def spawn_monitor(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Pid, Ref]:
    """Spawn and monitor atomically; returns ``(pid, monitor_ref)``."""
    pid, ref = _spawn(fn, args, kwargs, monitor=True)
    return pid, ref  # type: ignore[return-value]


def self() -> Pid:  # noqa: A001 - Erlang's name, deliberately
    """The calling process's pid (a plain greenlet is adopted as a process)."""
    g = getcurrent()
    if g.__class__ is _ProcGreenlet:  # _current's first case, inlined: the common caller
        proc = g.proc
        if proc is not None and proc.alive:
            return proc.pid
    return _current().pid


# --------------------------------------------------------------------------------------
# Messages
# --------------------------------------------------------------------------------------


def _deliver(proc: _Proc, msg: Any) -> None:
    mailbox = proc.mailbox
    if mailbox:
        queued = len(mailbox) + 1
        if queued > proc.high_water:
            proc.high_water = queued
    elif mailbox is _NO_MAIL:
        mailbox = proc.mailbox = deque()
    mailbox.append(msg)
    waiter = proc.waiter
    if waiter is not None:
        proc.waiter = None
        get_hub().loop.run_callback(waiter.switch, True)
    tracer = proc.tracer
    if tracer is not None:
        _trace_event(proc, tracer, ("trace", proc.pid, "receive", msg))


def _lookup(dest: Any, fn: str) -> _Proc | None:
    """The live process ``dest`` names (a Pid, a registered name or a ``via`` tuple), or None."""
    if dest.__class__ is Pid:
        return dest._proc
    if isinstance(dest, str):
        return _names.get(dest)
    if dest.__class__ is tuple:
        return _via_lookup(dest, fn)
    raise TypeError(f"{fn}: dest must be a Pid, a registered name or a via tuple, got {type(dest).__name__}")


def _resolve(dest: Any, fn: str) -> _Proc | None:
    if dest.__class__ is Pid:
        return dest._proc
    if isinstance(dest, str):
        proc = _names.get(dest)
        if proc is None:
            raise RegistrationError(f"{fn}: no process is registered as {dest!r}")
        return proc
    if dest.__class__ is tuple:
        proc = _via_lookup(dest, fn)
        if proc is None:
            raise RegistrationError(f"{fn}: no process is registered as {dest!r}")
        return proc
    raise TypeError(f"{fn}: dest must be a Pid, a registered name or a via tuple, got {type(dest).__name__}")


def is_via(name: Any) -> bool:
    """Whether ``name`` is a ``('via', module, term)`` name (OTP's ``{via, Module, Name}``)."""
    return (
        name.__class__ is tuple
        and len(name) == 3
        and name[0].__class__ is str
        and name[0] == "via"
        and callable(getattr(name[1], "whereis_name", None))
        and callable(getattr(name[1], "register_name", None))
    )


def _via_lookup(dest: tuple, fn: str) -> _Proc | None:
    if not is_via(dest):
        raise TypeError(
            f"{fn}: a tuple dest must be ('via', module, name) with a module that has "
            f"register_name/whereis_name/unregister_name, got {dest!r}"
        )
    pid = dest[1].whereis_name(dest[2])
    return pid._proc if pid.__class__ is Pid else None  # None or 'undefined': not registered


def send(dest: Pid | str, msg: Any) -> None:
    """Queue ``msg`` for ``dest``. Never blocks; a message to a dead pid is dropped.

    ``dest`` may be a registered name, which must be registered (as Erlang's ``!``).
    Messages from one process to another arrive in the order they were sent.
    """
    if _unwinding:
        _check_caller()
    if dest.__class__ is Pid:
        proc = dest._proc
        if proc is None:
            return
    else:
        proc = _resolve(dest, "send")
        if proc is None:
            return
    if _tracing:
        sender = _current_or_none()
        if sender is not None and sender.tracer is not None:
            _trace_event(sender, sender.tracer, ("trace", sender.pid, "send", msg, proc.pid))
    # _deliver, inlined: this is the hottest path of the runtime.
    mailbox = proc.mailbox
    if mailbox:
        queued = len(mailbox) + 1
        if queued > proc.high_water:
            proc.high_water = queued
    elif mailbox is _NO_MAIL:
        mailbox = proc.mailbox = deque()
    mailbox.append(msg)
    waiter = proc.waiter
    if waiter is not None:
        proc.waiter = None
        get_hub().loop.run_callback(waiter.switch, True)
    if proc.tracer is not None:
        _trace_event(proc, proc.tracer, ("trace", proc.pid, "receive", msg))


def _check_caller() -> None:
    # For calls that need no caller otherwise (send, spawn, register, timers); only made
    # while some spawned process is dead with its greenlet still running.
    g = getcurrent()
    if g.__class__ is _ProcGreenlet:
        proc = g.proc
        if proc is not None and not proc.alive:
            _dead_call(proc)


def _wait(proc: _Proc, timeout: float | None) -> bool:
    """Block until a message arrives (True) or ``timeout`` seconds pass (False)."""
    if timeout is None:
        waiter: Any = Waiter(get_hub())
        proc.waiter = waiter
        try:
            waiter.get()
            return True
        finally:
            proc.waiter = None
    timer = get_hub().loop.timer(timeout)
    try:
        return _wait_watcher(proc, timer) is not WATCHER_FIRED
    finally:
        timer.close()


#: What :func:`_wait_watcher` returns when the watcher fired.
WATCHER_FIRED = "watcher_fired"


def _wait_watcher(proc: _Proc, watcher: Any) -> Any:
    """Block until a message arrives (True) or the gevent ``watcher`` fires (WATCHER_FIRED).

    For a process that waits on its mailbox and one event source at once: a transport on
    its socket's read watcher (as an Erlang process gets socket data as messages), a
    GenServer on its reusable hibernate_after timer (no timer allocated per wait).
    """
    waiter: Any = Waiter(get_hub())
    proc.waiter = waiter
    watcher.start(waiter.switch, WATCHER_FIRED)
    try:
        return waiter.get()
    finally:
        proc.waiter = None
        watcher.stop()


def receive(
    match: Callable[[Any], bool] | None = None,
    timeout: float | None = None,
    *,
    default: Any = _MISSING,
) -> Any:
    """Take the first queued message for which ``match(msg)`` is true (any message if None).

    Messages that do not match stay queued, in order. ``timeout`` is in seconds (None waits
    forever, 0 polls). On timeout, returns ``default`` if given, else raises
    ``ReceiveTimeout``. Only messages that arrive while waiting are scanned again.
    """
    if match is None and timeout is None:
        # Fast path: a live process taking the head of a non-empty mailbox.
        g = getcurrent()
        if g.__class__ is _ProcGreenlet:
            proc = g.proc
            if proc is not None and proc.alive and proc.mailbox:
                return proc.mailbox.popleft()
    proc = _current()
    if timeout is not None:
        if timeout.__class__ is bool or not isinstance(timeout, (int, float)):
            raise TypeError(f"receive: timeout must be a number of seconds or None, got {type(timeout).__name__}")
        loop = get_hub().loop
        loop.update_now()  # the cached loop time lags after CPU work; count from the call
        deadline = loop.now() + timeout
    mailbox = proc.mailbox
    scanned = 0
    while True:
        found, scanned = _take(mailbox, match, scanned)
        if found is not _MISSING:
            return found
        if timeout is None:
            _wait(proc, None)
        else:
            remaining = deadline - get_hub().loop.now()
            if remaining <= 0 or not _wait(proc, remaining):
                # One last look: a message may have arrived with the timer.
                found, scanned = _take(mailbox, match, scanned)
                if found is not _MISSING:
                    return found
                if default is _MISSING:
                    raise ReceiveTimeout(f"no matching message within {timeout} s")
                return default
        if not proc.alive:
            _dead_call(proc)


def _take(mailbox: deque, match: Callable[[Any], bool] | None, scanned: int) -> tuple[Any, int]:
    """Remove the first message at or after ``scanned`` that matches: (message or
    _MISSING, how far the scan got). Messages before ``scanned`` were looked at already."""
    if match is None:
        return (mailbox.popleft() if mailbox else _MISSING), 0
    index = scanned
    for msg in itertools.islice(mailbox, scanned, None):
        if match(msg):
            del mailbox[index]
            return msg, index
        index += 1
    return _MISSING, index


def _raise_death(proc: _Proc) -> None:
    proc.unwound = True
    exc = Exit(proc.reason)
    if proc.adopted:
        if _dying.get(proc.glet) is proc:
            del _dying[proc.glet]
    else:
        _unwinding[proc] = [exc, 0]
    raise exc


def _dead_call(proc: _Proc) -> None:
    """A runtime call made by a dead process: it never returns.

    A process that Python still runs after its death is either unwinding (``finally``
    blocks, an ``except`` that re-raises: the exit signal is the exception being handled)
    or it caught its ``Exit`` and went on. The first gets ``Exit`` again, so the call has
    no effect and the unwinding goes on; the second is parked for good: Erlang's
    ``catch`` never sees a signal, so no code of a dead process may run on.
    """
    if proc.adopted or not proc.unwound:
        _raise_death(proc)  # first notice of its death: the exit signal surfaces here
    entry = _unwinding.get(proc)
    if entry is None:  # pragma: no cover - every unwound spawned process has an entry
        entry = _unwinding[proc] = [None, 0]
    if isinstance(sys.exc_info()[1], Exit) and entry[1] < _UNWIND_CALLS:
        entry[1] += 1
        exc = entry[0] = Exit(proc.reason)
        raise exc
    _bury(proc, entry[0])


_HERE = os.path.dirname(os.path.abspath(__file__))


def _swallowed_at(exc: BaseException | None) -> str:
    # A caught exception's traceback starts at the frame that caught it.
    tb = exc.__traceback__ if exc is not None else None
    if tb is None:
        return "somewhere (no traceback kept)"
    code = tb.tb_frame.f_code
    return f"in {code.co_name} at {code.co_filename}:{tb.tb_lineno}"


def _caller_outside_runtime() -> str:
    frame: Any = sys._getframe(1)
    while frame is not None and os.path.dirname(os.path.abspath(frame.f_code.co_filename)) == _HERE:
        frame = frame.f_back
    if frame is None:
        return "?"
    return f"{frame.f_code.co_name} at {frame.f_code.co_filename}:{frame.f_lineno}"


def _bury(proc: _Proc, exc: BaseException | None) -> None:
    """Park the calling greenlet, a dead process that swallowed its Exit, forever."""
    _unwinding.pop(proc, None)
    g = getcurrent()
    _zombies.append(g)
    log.error(
        "Process %s (%s) was killed (reason %r) but went on running: its exit signal was "
        "swallowed %s (an `except:` or `except BaseException:` that does not re-raise). "
        "It is stopped for good at its runtime call from %s; its greenlet stays parked.",
        proc.pid,
        _initial_call(proc),
        proc.reason,
        _swallowed_at(exc),
        _caller_outside_runtime(),
        extra={"pid": str(proc.pid), "reason": proc.reason},
    )
    hub = get_hub()
    while True:
        try:
            hub.switch()
        except BaseException:  # noqa: BLE001, S112 - nothing may resume a parked zombie
            continue


def flush() -> list[Any]:
    """Remove and return every message queued for the calling process."""
    proc = _current()
    msgs = list(proc.mailbox)
    proc.mailbox.clear()
    return msgs


# --------------------------------------------------------------------------------------
# Links, monitors, exit signals
# --------------------------------------------------------------------------------------


# Link and monitor tables hold one entry in most processes (a channel: its supervisor, its
# transport): that one entry is a two-slot object with the set's or dict's methods the
# runtime uses, 48 bytes instead of a 216-byte set or a 224-byte dict. A second entry turns
# the table into a set or dict.


class _OneLink:
    """A link table with at most one process in it (set-like: iter, len, discard)."""

    __slots__ = ("proc",)

    def __init__(self, proc: _Proc) -> None:
        self.proc: _Proc | None = proc

    def __bool__(self) -> bool:
        return self.proc is not None

    def __len__(self) -> int:
        return 0 if self.proc is None else 1

    def __iter__(self) -> Any:
        return iter(() if self.proc is None else (self.proc,))

    def __contains__(self, proc: Any) -> bool:
        return proc is self.proc and proc is not None

    def discard(self, proc: Any) -> None:
        if proc is self.proc:
            self.proc = None


class _OneMonitor:
    """A monitor table with at most one monitor in it (dict-like: pop, get, items, values)."""

    __slots__ = ("ref", "proc")

    def __init__(self, ref: Ref, proc: _Proc) -> None:
        self.ref: Ref | None = ref
        self.proc: _Proc | None = proc

    def __bool__(self) -> bool:
        return self.ref is not None

    def __len__(self) -> int:
        return 0 if self.ref is None else 1

    def __iter__(self) -> Any:
        return iter(() if self.ref is None else (self.ref,))

    def __contains__(self, ref: Any) -> bool:
        return self.ref is not None and self.ref == ref

    def get(self, ref: Any, default: Any = None) -> Any:
        return self.proc if self.ref is not None and self.ref == ref else default

    def __getitem__(self, ref: Any) -> Any:
        if self.ref is not None and self.ref == ref:
            return self.proc
        raise KeyError(ref)

    def pop(self, ref: Any, default: Any = None) -> Any:
        if self.ref is not None and self.ref == ref:
            proc = self.proc
            self.ref = self.proc = None
            return proc
        return default

    def items(self) -> Any:
        return () if self.ref is None else ((self.ref, self.proc),)

    def values(self) -> Any:
        return () if self.ref is None else (self.proc,)


def _with_link(links: Any, other: _Proc) -> Any:
    if links is None:
        return _OneLink(other)
    if links.__class__ is _OneLink:
        if links.proc is None or links.proc is other:
            links.proc = other
            return links
        return {links.proc, other}
    links.add(other)
    return links


def _with_monitor(table: Any, ref: Ref, proc: _Proc) -> Any:
    if table is None:
        return _OneMonitor(ref, proc)
    if table.__class__ is _OneMonitor:
        if table.ref is None:
            table.ref = ref
            table.proc = proc
            return table
        return {table.ref: table.proc, ref: proc}
    table[ref] = proc
    return table


def _add_link(a: _Proc, b: _Proc) -> None:
    if a is b:
        return
    a.links = _with_link(a.links, b)
    b.links = _with_link(b.links, a)


def _add_monitor(watcher: _Proc, target: _Proc, ref: Ref) -> None:
    watcher.monitors = _with_monitor(watcher.monitors, ref, target)
    target.monitored_by = _with_monitor(target.monitored_by, ref, watcher)


def _check_pid(pid: Any, fn: str) -> None:
    if pid.__class__ is not Pid:
        raise TypeError(f"{fn}: pid must be a Pid, got {type(pid).__name__}")


def link(pid: Pid) -> None:
    """Link the caller and ``pid`` (bidirectional; idempotent).

    Linking to a dead process, as Erlang's ``link/1``: a caller that traps exits gets an
    ``('EXIT', pid, 'noproc')`` message; any other gets :class:`NoProcError` (Erlang's
    ``error:noproc``: an ordinary exception, which crashes the caller unless caught).
    """
    _check_pid(pid, "link")
    me = _current()
    other = pid._proc
    if other is None:
        if me.trap_exit:
            _deliver(me, ("EXIT", pid, "noproc"))
            return
        raise NoProcError(pid)
    _add_link(me, other)


def unlink(pid: Pid) -> None:
    """Remove the link between the caller and ``pid``, if any."""
    _check_pid(pid, "unlink")
    me = _current()
    other = pid._proc
    if other is None or me.links is None:
        return
    me.links.discard(other)
    if other.links is not None:
        other.links.discard(me)


def monitor(pid: Pid | str) -> Ref:
    """Watch ``pid``: when it dies the caller gets ``('DOWN', ref, 'process', pid, reason)``.

    Monitoring a dead process (or an unregistered name) delivers ``DOWN`` with reason
    ``'noproc'`` at once. Monitors are one-way and stack: each call makes a new one.
    """
    me = _current()
    ref = Ref()
    if pid.__class__ is Pid:
        target = pid._proc
    elif isinstance(pid, str):
        target = _names.get(pid)
    else:
        raise TypeError(f"monitor: pid must be a Pid or a registered name, got {type(pid).__name__}")
    if target is None:
        _deliver(me, ("DOWN", ref, "process", pid, "noproc"))
    else:
        _add_monitor(me, target, ref)
        if pid.__class__ is not Pid:  # by name: the DOWN names the name, as Erlang's
            if target.monitor_names is None:
                target.monitor_names = {}
            target.monitor_names[ref] = pid
    return ref


def demonitor(ref: Ref, flush: bool = False) -> bool:
    """Remove a monitor; with ``flush=True`` also drop its ``DOWN`` if already queued.

    Returns True if the monitor was still active.
    """
    if ref.__class__ is not Ref:
        raise TypeError(f"demonitor: ref must be a Ref, got {type(ref).__name__}")
    me = _current()
    target = me.monitors.pop(ref, None) if me.monitors else None
    if target is not None and target.monitored_by is not None:
        target.monitored_by.pop(ref, None)
        if target.monitor_names:
            target.monitor_names.pop(ref, None)
    if flush and me.mailbox:
        _remove_first(me.mailbox, lambda m: m.__class__ is tuple and len(m) == 5 and m[1] is ref and m[0] == "DOWN")
    return target is not None


def _remove_first(mailbox: deque, pred: Callable[[Any], bool]) -> bool:
    for i, m in enumerate(mailbox):
        if pred(m):
            del mailbox[i]
            return True
    return False


def trap_exit(flag: bool) -> bool:
    """Set whether the caller turns exit signals into ``('EXIT', pid, reason)`` messages.

    Returns the previous value. ``'kill'`` sent by ``exit(pid, 'kill')`` is never trapped.
    """
    if not isinstance(flag, bool):
        raise TypeError(f"trap_exit: flag must be a bool, got {type(flag).__name__}")
    me = _current()
    old = me.trap_exit
    me.trap_exit = flag
    return old


def _is(reason: Any, atom: str) -> bool:
    return reason.__class__ is str and reason == atom


def exit(pid_or_reason: Any, reason: Any = _MISSING) -> None:  # noqa: A001 - Erlang's name
    """``exit(reason)`` ends the caller; ``exit(pid, reason)`` sends ``pid`` an exit signal.

    Signal rules (Erlang's): ``'kill'`` kills unconditionally and propagates to links as
    ``'killed'``; a process that traps exits gets ``('EXIT', sender, reason)`` instead of
    dying; ``'normal'`` is ignored by a process that does not trap exits, unless it is
    the caller itself.
    """
    if reason is _MISSING:
        raise Exit(pid_or_reason)
    _check_pid(pid_or_reason, "exit")
    target = pid_or_reason._proc
    sender = _current_or_none()
    if target is None:
        return
    _exit_signal(target, reason, sender.pid if sender is not None else None, from_link=False)
    if sender is not None and not sender.alive:
        _raise_death(sender)


def _exit_signal(target: _Proc, reason: Any, sender: Pid | None, *, from_link: bool) -> None:
    if not from_link and _is(reason, "kill"):
        _kill(target, "killed")
        return
    if target.trap_exit:
        _deliver(target, ("EXIT", sender, reason))
        return
    if _is(reason, "normal") and (from_link or target.pid != sender):
        return
    _kill(target, reason)


def _kill(target: _Proc, reason: Any) -> None:
    _terminate(target, reason)
    _unwind(target)


def _unwind(proc: _Proc) -> None:
    g = proc.glet
    if g is getcurrent() or g.dead:
        return
    if g.__class__ is _ProcGreenlet and g.running is not proc:
        return  # not started; _process_main will see it is dead and return
    if proc.adopted:
        _dying[g] = proc
    elif proc not in _unwinding:
        _unwinding[proc] = [None, 0]  # dead, still switched out: it may send nothing more
    get_hub().loop.run_callback(_throw_into, g, proc)


def _throw_into(g: greenlet, proc: _Proc) -> None:
    if proc.adopted and _dying.get(g) is proc:
        del _dying[g]
    if g.dead or proc.unwound or (g.__class__ is _ProcGreenlet and g.running is not proc):
        return  # ended already (its greenlet may be running another process by now)
    proc.unwound = True
    exc = Exit(proc.reason)
    if not proc.adopted:
        _unwinding[proc] = [exc, 0]
    g.throw(exc)


def _terminate(proc: _Proc, reason: Any) -> None:
    """Apply a process's death to the tables and fire its links and monitors.

    Iterative rather than recursive: a chain of 10,000 linked processes dies without
    touching Python's recursion limit.
    """
    pending = [(proc, reason)]
    while pending:
        p, why = pending.pop()
        if not p.alive:
            continue
        p.alive = False
        p.reason = why
        if _exit_counts is not None:
            _count_exit(why)
        pid = p.pid
        pid._proc = None
        _by_number.pop(pid._n, None)
        if p.name is not None:
            if _names.get(p.name) is p:
                del _names[p.name]
        if p.adopted:
            if _adopted.get(p.glet) is p:
                del _adopted[p.glet]
        if p.tracer is not None:
            _stop_tracing(p)
        if _traced_by:
            for traced in list(_traced_by.get(p, ())):
                if traced.tracer is p:
                    _stop_tracing(traced)
        p.mailbox.clear()
        if p.exit_hooks is not None:
            _run_exit_hooks(p)
        if p.glet is _HIBERNATED:
            # No greenlet to unwind; the wake-up and the record point at each other, so
            # drop the link (the record is freed at once) and tell the owner of resources.
            wakeup = p.waiter
            p.waiter = None
            if wakeup is not None and wakeup.on_exit is not None:
                get_hub().loop.run_callback(wakeup.on_exit, *wakeup.args, why)
        if p.timers:
            _cancel_timers(p)
        if p.monitors:
            for ref, target in p.monitors.items():
                if target.monitored_by is not None:
                    target.monitored_by.pop(ref, None)
            p.monitors = None
        if p.monitored_by:
            watchers = p.monitored_by
            p.monitored_by = None
            names = p.monitor_names
            for ref, watcher in watchers.items():
                if watcher.monitors is not None:
                    watcher.monitors.pop(ref, None)
                item = names.get(ref, pid) if names else pid
                _deliver(watcher, ("DOWN", ref, "process", item, why))
        if p.links:
            links = p.links
            p.links = None
            for other in links:
                if other.links is not None:
                    other.links.discard(p)
                if not other.alive:
                    continue
                if other.trap_exit:
                    _deliver(other, ("EXIT", pid, why))
                elif not _is(why, "normal"):
                    pending.append((other, why))
                    _unwind(other)


def _run_exit_hooks(proc: _Proc) -> None:
    hooks = proc.exit_hooks
    proc.exit_hooks = None
    for fn in hooks.values():  # type: ignore[union-attr]
        try:
            fn(proc.pid)
        except Exception:  # noqa: BLE001 - one failing table must not stop the death
            log.exception("exit hook %r of %s failed", fn, proc.pid)


def add_exit_hook(key: Any, fn: Callable[[Pid], Any]) -> None:
    """Call ``fn(pid)`` as the calling process dies, before its links and monitors fire;
    one hook per ``key`` (adding again replaces it).

    For tables the process owns rows in (a PubSub partition, a registry): they drop the
    rows synchronously, as ETS does for a table owner, instead of a watcher process
    monitoring every writer and being woken by each ``DOWN``. ``fn`` must not block; an
    exception it raises is logged.
    """
    proc = _current()
    hooks = proc.exit_hooks
    if hooks is None:
        proc.exit_hooks = {key: fn}
    else:
        hooks[key] = fn


def remove_exit_hook(key: Any) -> None:
    """Drop the calling process's exit hook under ``key`` (none: no-op)."""
    proc = _current()
    hooks = proc.exit_hooks
    if hooks is not None:
        hooks.pop(key, None)
        if not hooks:
            proc.exit_hooks = None


def is_alive(pid: Pid) -> bool:
    """Whether ``pid`` names a live process."""
    _check_pid(pid, "is_alive")
    return pid._proc is not None


# --------------------------------------------------------------------------------------
# Names
# --------------------------------------------------------------------------------------


def register(name: str, pid: Pid | None = None) -> None:
    """Register ``pid`` (default: the caller) under ``name``; freed when it dies."""
    if not isinstance(name, str):
        raise TypeError(f"register: name must be a str, got {type(name).__name__}")
    if _unwinding:
        _check_caller()
    if pid is None:
        proc: _Proc | None = _current()
    else:
        _check_pid(pid, "register")
        proc = pid._proc
    if proc is None:
        raise RegistrationError(f"register: {pid} is not alive")
    holder = _names.get(name)
    if holder is not None:
        raise RegistrationError(f"register: {name!r} is already registered to {holder.pid}")
    if proc.name is not None:
        raise RegistrationError(f"register: {proc.pid} is already registered as {proc.name!r}")
    _names[name] = proc
    proc.name = name


def unregister(name: str) -> None:
    """Remove a registered name."""
    if not isinstance(name, str):
        raise TypeError(f"unregister: name must be a str, got {type(name).__name__}")
    if _unwinding:
        _check_caller()
    proc = _names.pop(name, None)
    if proc is None:
        raise RegistrationError(f"unregister: {name!r} is not registered")
    proc.name = None


def whereis(name: Any) -> Pid | None:
    """The pid registered as ``name`` (a str or a ``via`` tuple), or None."""
    if name.__class__ is str:
        proc = _names.get(name)
        return proc.pid if proc is not None else None
    if name.__class__ is tuple:
        via = _via_lookup(name, "whereis")
        return via.pid if via is not None else None
    if not isinstance(name, str):
        raise TypeError(f"whereis: name must be a str or a via tuple, got {type(name).__name__}")
    proc = _names.get(name)
    return proc.pid if proc is not None else None


def registered() -> list[str]:
    """All registered names."""
    return list(_names)


# --------------------------------------------------------------------------------------
# Timers
# --------------------------------------------------------------------------------------


class TimerRef:
    """A pending timer (``send_after``, ``start_timer``, ``send_interval``).

    Pass it to :func:`cancel_timer` or :func:`read_timer`. A ``start_timer`` message is
    ``('timeout', tref, msg)`` with this very object, so a receive can match it by identity.
    """

    __slots__ = ("_watcher", "_due", "_interval", "_owner", "_wrap")

    def __init__(self, due: float, interval: float | None, wrap: bool) -> None:
        self._watcher: Any = None
        self._due = due  # loop time (s) of the next firing
        self._interval = interval  # seconds between firings; None for a one-shot timer
        self._owner: _Proc | None = None  # the destination process it is cancelled with
        self._wrap = wrap  # start_timer: deliver ('timeout', self, msg)

    def __repr__(self) -> str:
        return f"#TimerRef<{id(self):x}>"


def _check_timer_args(fn: str, dest: Any, ms: Any, interval: bool = False) -> None:
    if ms.__class__ is bool or not isinstance(ms, (int, float)) or ms < 0 or (interval and ms <= 0):
        bound = "a positive" if interval else "a non-negative"
        raise TypeError(f"{fn}: ms must be {bound} number of milliseconds, got {ms!r}")
    if dest.__class__ is not Pid and not isinstance(dest, str):
        raise TypeError(f"{fn}: dest must be a Pid or a registered name, got {type(dest).__name__}")


def _new_timer(dest: Any, msg: Any, ms: float, wrap: bool, owner: _Proc | None, interval: bool) -> TimerRef:
    if _unwinding:
        _check_caller()  # a timer is a deferred send: a dead process sets none
    loop = get_hub().loop
    loop.update_now()  # as gevent.sleep: the delay counts from now, not the cached loop time
    seconds = ms / 1000.0
    tref = TimerRef(loop.now() + seconds, seconds if interval else None, wrap)
    if owner is None and dest.__class__ is Pid:
        # Erlang: a timer whose destination pid is not alive is cancelled at once.
        return tref
    # libev re-arms a repeating timer from its due time, not from when it ran: no drift.
    watcher = loop.timer(seconds, seconds if interval else 0.0)
    tref._watcher = watcher
    if owner is not None:
        tref._owner = owner
        if owner.timers is None:
            owner.timers = set()
        owner.timers.add(tref)
    watcher.start(_timer_fired, tref, dest, msg)
    return tref


def send_after(dest: Pid | str, msg: Any, ms: float) -> TimerRef:
    """Send ``msg`` to ``dest`` after ``ms`` milliseconds (Erlang's ``erlang:send_after/3``).

    A timer to a pid is cancelled when that process dies (or at once if it is dead). A
    timer to a registered name resolves the name when it fires; a name unregistered by
    then drops the message.
    """
    _check_timer_args("send_after", dest, ms)
    return _new_timer(dest, msg, ms, False, dest._proc if dest.__class__ is Pid else None, False)


def start_timer(dest: Pid | str, msg: Any, ms: float) -> TimerRef:
    """As :func:`send_after`, but the message is ``('timeout', tref, msg)`` (``erlang:start_timer/3``)."""
    _check_timer_args("start_timer", dest, ms)
    return _new_timer(dest, msg, ms, True, dest._proc if dest.__class__ is Pid else None, False)


def send_interval(dest: Pid | str, msg: Any, ms: float) -> TimerRef:
    """Send ``msg`` to ``dest`` every ``ms`` milliseconds until cancelled (``timer:send_interval/3``).

    As OTP's, the interval is tied to the destination process: it stops when that process
    dies (for a registered name, the process holding the name now; a name nobody holds
    gives a timer that never fires), not when the caller dies. Ticks are due at fixed
    multiples of ``ms`` from now, so a late tick does not shift the next ones. Stop it
    with :func:`cancel_timer`.
    """
    _check_timer_args("send_interval", dest, ms, interval=True)
    owner = dest._proc if dest.__class__ is Pid else _names.get(dest)  # type: ignore[arg-type]
    if owner is None:
        return TimerRef(0.0, ms / 1000.0, False)  # cancelled from the start
    return _new_timer(dest, msg, ms, False, owner, True)


def _timer_fired(tref: TimerRef, dest: Any, msg: Any) -> None:
    if tref._interval is None:
        watcher = tref._watcher
        tref._watcher = None
        if watcher is not None:
            watcher.close()
        owner = tref._owner
        if owner is not None:
            tref._owner = None
            if owner.timers is not None:
                owner.timers.discard(tref)
    else:
        now = get_hub().loop.now()
        tref._due = max(tref._due + tref._interval, now)
    if tref._wrap:
        msg = ("timeout", tref, msg)
    if dest.__class__ is Pid:
        send(dest, msg)
    else:
        proc = _names.get(dest)  # a name that went away: dropped, as Erlang does
        if proc is not None:
            _deliver(proc, msg)


def _cancel_timers(proc: _Proc) -> None:
    timers = proc.timers
    proc.timers = None
    for tref in timers:  # type: ignore[union-attr]
        watcher = tref._watcher
        tref._watcher = None
        tref._owner = None
        if watcher is not None:
            watcher.stop()
            watcher.close()


def _time_left(tref: TimerRef) -> int:
    loop = get_hub().loop
    loop.update_now()
    # Whole milliseconds, rounded up: a timer cancelled at once reports its full time, as
    # Erlang's does (which counts in clock ticks of 1 ms).
    return max(0, math.ceil((tref._due - loop.now()) * 1000.0 - 1e-6))


def cancel_timer(tref: TimerRef) -> int | bool:
    """Cancel a timer: the whole milliseconds it had left, or False if it is no longer
    pending (fired, cancelled, or its destination process died), as ``erlang:cancel_timer/1``.

    For an interval timer, the milliseconds until its next tick.
    """
    if not isinstance(tref, TimerRef):
        raise TypeError(f"cancel_timer: expected a TimerRef, got {type(tref).__name__}")
    watcher = tref._watcher
    if watcher is None:
        return False
    tref._watcher = None
    watcher.stop()
    watcher.close()
    owner = tref._owner
    if owner is not None:
        tref._owner = None
        if owner.timers is not None:
            owner.timers.discard(tref)
    return _time_left(tref)


def read_timer(tref: TimerRef) -> int | bool:
    """The whole milliseconds a pending timer has left, or False (``erlang:read_timer/1``)."""
    if not isinstance(tref, TimerRef):
        raise TypeError(f"read_timer: expected a TimerRef, got {type(tref).__name__}")
    if tref._watcher is None:
        return False
    return _time_left(tref)


# --------------------------------------------------------------------------------------
# Introspection (answered by the runtime, as the BEAM answers process_info)
# --------------------------------------------------------------------------------------


def processes() -> list[Pid]:
    """Every live process, oldest first."""
    _reap_dead_adopted()
    return [proc.pid for proc in _by_number.values()]


# Exits counted by reason class while someone asked for it (count_exits): None costs one
# check per death, which is all a server without metrics pays.
_exit_counts: dict[str, int] | None = None
_count_base = 0  # live processes when counting started: spawned = live - base + exits


def exit_reason_class(reason: Any) -> str:
    """``'normal'``, ``'shutdown'`` (also ``('shutdown', term)``), ``'killed'`` or
    ``'error'`` (a crash, or any other reason): the classes operators count exits by."""
    if reason.__class__ is str:
        if reason in ("normal", "shutdown", "killed"):
            return reason
        return "killed" if reason == "kill" else "error"
    if reason.__class__ is tuple and len(reason) == 2 and reason[0] == "shutdown":
        return "shutdown"
    return "error"


def _count_exit(reason: Any) -> None:
    counts = _exit_counts
    if counts is not None:
        key = exit_reason_class(reason)
        counts[key] = counts.get(key, 0) + 1


def count_exits(on: bool) -> None:
    """Start (from zero) or stop counting spawns and exits for :func:`statistics`."""
    global _exit_counts, _count_base
    if on:
        _reap_dead_adopted()
        _count_base = len(_by_number)
        _exit_counts = {"normal": 0, "shutdown": 0, "killed": 0, "error": 0}
    else:
        _exit_counts = None


def statistics(pace: Callable[[], None] | None = None) -> dict[str, Any]:
    """The runtime's own figures, as ``erlang:statistics``/``system_info`` give them.

    ``process_count``; ``message_queue_total`` (messages queued in all mailboxes),
    ``longest_message_queue`` and ``longest_message_queue_pid`` (None when every mailbox
    is empty); and while :func:`count_exits` is on, ``spawned`` and ``exits`` (by
    :func:`exit_reason_class`) since it was turned on, else None. One pass over the
    process table (15-20 ms per 30,000 processes), calling ``pace()`` every 64 processes
    if given: a caller that must not hold the loop that long yields there.
    """
    _reap_dead_adopted()
    longest = 0
    longest_proc = None
    total = 0
    for i, proc in enumerate(list(_by_number.values())):
        if pace is not None and not i & 63:
            pace()
        n = len(proc.mailbox)
        if n:
            total += n
            if n > longest:
                longest, longest_proc = n, proc
    counts = _exit_counts
    exits = dict(counts) if counts is not None else None
    return {
        "process_count": len(_by_number),
        "message_queue_total": total,
        "longest_message_queue": longest,
        "longest_message_queue_pid": longest_proc.pid if longest_proc is not None else None,
        "spawned": len(_by_number) - _count_base + sum(exits.values()) if exits is not None else None,
        "exits": exits,
    }


def set_label(label: Any) -> None:
    """Attach a descriptive label to the caller, shown by ``process_info`` (OTP 27's)."""
    _current().label = label


def _status(proc: _Proc) -> str:
    g = proc.glet
    if g is getcurrent():
        return "running"
    if proc.waiter is not None:
        return "waiting"
    if g.__class__ is _ProcGreenlet and g.running is not proc:
        return "runnable"
    return "suspended"


def _stack(proc: _Proc) -> list[str]:
    g = proc.glet
    frame = None
    if g is getcurrent():
        return [line.rstrip() for line in traceback.format_stack()[:-2]]
    if g.__class__ is _ProcGreenlet and g.running is not proc:
        return []  # not started yet
    frame = g.gr_frame if not g.dead else None
    if frame is None:
        return []
    return [line.rstrip() for line in traceback.format_stack(frame)]


def process_info(pid: Pid, *, messages: bool = False, stack: bool = True) -> dict[str, Any] | None:
    """What the runtime knows of ``pid``, or None if it is dead.

    Keys: pid, registered_name, status ('running', 'waiting' in receive, 'runnable',
    'suspended' in other I/O), message_queue_len, message_queue_high_water (the longest
    the queue has been), links, monitors, monitored_by, trap_exit, initial_call, label,
    current_stacktrace (only with ``stack=True``, the default: building it is the costly
    part, so listings of many processes leave it out), hibernating (no greenlet until its
    next message: :func:`hibernate`), and with ``messages=True`` a copy of the queue.
    """
    _check_pid(pid, "process_info")
    proc = pid._proc
    if proc is None:
        return None
    queued = len(proc.mailbox)
    info = {
        "pid": pid,
        "registered_name": proc.name,
        "status": _status(proc),
        "message_queue_len": queued,
        "message_queue_high_water": max(proc.high_water, queued),
        "links": sorted(p.pid for p in proc.links or ()),
        "monitors": [("process", p.pid) for p in (proc.monitors or {}).values()],
        "monitored_by": [p.pid for p in (proc.monitored_by or {}).values()],
        "trap_exit": proc.trap_exit,
        "initial_call": _initial_call(proc),
        "label": proc.label,
        "hibernating": proc.glet is _HIBERNATED,
    }
    if stack:
        info["current_stacktrace"] = _stack(proc)
    if messages:
        info["messages"] = list(proc.mailbox)
    return info


def _system_of(pid: Pid) -> Any:
    proc = pid._proc
    return proc.system if proc is not None else None


# --------------------------------------------------------------------------------------
# Tracing (bounded use is the caller's business; the debug shell bounds it)
# --------------------------------------------------------------------------------------


def trace(pid: Pid, on: bool = True, tracer: Pid | None = None) -> bool:
    """Start (or stop) tracing ``pid``'s messages to ``tracer`` (default: the caller).

    The tracer receives ``('trace', pid, 'receive', msg)`` for every message delivered to
    ``pid`` and ``('trace', pid, 'send', msg, to)`` for every message it sends. Tracing
    stops by itself when either process dies. Returns False if ``pid`` is not alive.
    """
    global _tracing
    _check_pid(pid, "trace")
    proc = pid._proc
    if proc is None:
        return False
    if not on:
        if proc.tracer is not None:
            _stop_tracing(proc)
        return True
    if tracer is not None:
        _check_pid(tracer, "trace")
    tracer_proc = _current() if tracer is None else tracer._proc
    if tracer_proc is None:
        return False
    if proc.tracer is None:
        _tracing += 1
    else:
        _untrace_entry(proc)
    proc.tracer = tracer_proc
    _traced_by.setdefault(tracer_proc, set()).add(proc)
    return True


def _untrace_entry(proc: _Proc) -> None:
    traced = _traced_by.get(proc.tracer)  # type: ignore[arg-type]
    if traced is not None:
        traced.discard(proc)
        if not traced:
            del _traced_by[proc.tracer]  # type: ignore[arg-type]


def _stop_tracing(proc: _Proc) -> None:
    global _tracing
    _untrace_entry(proc)
    proc.tracer = None
    _tracing -= 1


def _trace_event(proc: _Proc, tracer: _Proc, event: tuple) -> None:
    if not tracer.alive:
        _stop_tracing(proc)
        return
    if tracer is proc:
        return  # a process tracing itself would trace its own trace messages forever
    if tracer.mailbox is _NO_MAIL:
        tracer.mailbox = deque()
    tracer.mailbox.append(event)
    waiter = tracer.waiter
    if waiter is not None:
        tracer.waiter = None
        get_hub().loop.run_callback(waiter.switch, True)


def _all_procs() -> Iterable[_Proc]:
    return list(_by_number.values())
