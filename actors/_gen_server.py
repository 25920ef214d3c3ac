"""GenServer: OTP's generic server as a base class.

Subclass :class:`GenServer`, override the callbacks, and start it::

    class Counter(GenServer):
        def init(self, start):
            return ("ok", start)

        def handle_call(self, request, from_, count):
            if request == "get":
                return ("reply", count, count)

        def handle_cast(self, request, count):
            return ("noreply", count + request)

    pid = Counter.start_link(0, name="counter")
    cast("counter", 5)
    assert call("counter", "get") == 5

Callback results are OTP's tuples. ``timeout`` elements are milliseconds, as in OTP;
``call``'s own ``timeout`` is seconds, as everywhere in Python.

Every GenServer also answers the system requests of OTP's ``sys`` module (``get_state``,
``replace_state``, ``get_status``, ``terminate``) through its mailbox, so tools can look
inside a live server without private access; ``format_status`` decides what
``get_status`` and crash reports show of the state.

Asynchronous calls, as OTP 25's ``gen_server:send_request``::

    req = send_request("counter", "get")        # monitors the server, does not block
    ...
    receive_response(req, 1.0)    # ('reply', 5) | ('error', (reason, server)) | 'timeout'

``receive_response`` abandons the request on timeout (a late reply is dropped);
``wait_response`` leaves it active; ``check_response(msg, req)`` tests a message the
caller received itself. Names may be ``('via', module, name)`` tuples (the module has
``register_name``/``unregister_name``/``whereis_name``/``send``, e.g. :class:`Registry`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import gevent

from . import _runtime as rt
from ._errors import BadReturnError, CallExit, Exit, StartError
from ._runtime import TIMEOUT, Pid, Ref, _current, _deliver, receive

log = logging.getLogger("actors.gen_server")

# Message tags. Compared by identity on the hot path: only this module builds them.
_CALL = "$gen_call"
_CAST = "$gen_cast"
_SYSTEM = "$system"
_ACK = "$ack"

_INIT_RESULTS = "('ok', state) | ('ok', state, timeout) | 'ignore' | ('stop', reason) | ('error', reason)"
_CALL_RESULTS = (
    "('reply', reply, state[, timeout]) | ('noreply', state[, timeout]) | "
    "('stop', reason, reply, state) | ('stop', reason, state)"
)
_NOREPLY_RESULTS = "('noreply', state[, timeout]) | ('stop', reason, state)"

From = tuple  # (caller pid, call ref)


class GenServer:
    """Base class of a generic server process. Override the callbacks you need."""

    def init(self, init_arg: Any) -> Any:
        """Return ``('ok', state)`` (optionally with a timeout), ``'ignore'`` or ``('stop', reason)``."""
        return ("ok", init_arg)

    def handle_call(self, request: Any, from_: From, state: Any) -> Any:
        """Answer a ``call``; the default crashes, as Elixir's does."""
        raise RuntimeError(f"{type(self).__qualname__} received call {request!r} but defines no handle_call")

    def handle_cast(self, request: Any, state: Any) -> Any:
        """Handle a ``cast``; the default crashes, as Elixir's does."""
        raise RuntimeError(f"{type(self).__qualname__} received cast {request!r} but defines no handle_cast")

    def handle_info(self, msg: Any, state: Any) -> Any:
        """Handle any other message; the default logs it and carries on."""
        log.warning("%s %s received unexpected message in handle_info: %r", type(self).__qualname__, rt.self(), msg)
        return ("noreply", state)

    def handle_continue(self, arg: Any, state: Any) -> Any:
        """Continue work after a callback returned ``('continue', arg)`` as its timeout element."""
        raise RuntimeError(f"{type(self).__qualname__} returned a continue but defines no handle_continue")

    def terminate(self, reason: Any, state: Any) -> None:
        """Clean up before exiting. Called on a stop, a crash, and a parent's shutdown when trapping exits."""

    def format_status(self, status: dict[str, Any]) -> dict[str, Any]:
        """What tools and crash reports show of this server (OTP 25's ``format_status/1``).

        ``status`` has ``'state'`` (and, in a crash report, ``'message'`` and
        ``'reason'``); return it with values replaced, e.g. secrets redacted. Used by
        :func:`get_status` and the crash log; :func:`get_state` stays the raw state, as
        ``sys:get_state`` is. The default shows everything.
        """
        return status

    @classmethod
    def start_link(
        cls, init_arg: Any = None, *, name: str | None = None, timeout: float | None = 5.0, hibernate_after: int | None = None
    ) -> Pid | None:
        """Start an instance linked to the caller; see :func:`start_link`."""
        return start_link(cls, init_arg, name=name, timeout=timeout, hibernate_after=hibernate_after)

    @classmethod
    def start(
        cls, init_arg: Any = None, *, name: str | None = None, timeout: float | None = 5.0, hibernate_after: int | None = None
    ) -> Pid | None:
        """Start an unlinked instance; see :func:`start`."""
        return start(cls, init_arg, name=name, timeout=timeout, hibernate_after=hibernate_after)


# --------------------------------------------------------------------------------------
# Client API
# --------------------------------------------------------------------------------------


def start(
    server: Any, init_arg: Any = None, *, name: str | None = None, timeout: float | None = 5.0, hibernate_after: int | None = None
) -> Pid | None:
    """Start a GenServer and wait for its ``init``: the pid, None for ``'ignore'``.

    Raises :class:`StartError` when ``init`` stops, returns an error, crashes, does not
    answer within ``timeout`` seconds, or ``name`` is taken (reason
    ``('already_started', pid)``). A failed start returns only once the process is dead.
    ``hibernate_after`` (milliseconds, OTP's option): after that long without a message
    the server hibernates (:func:`actors.hibernate`) until the next one.
    """
    return _start(server, init_arg, name, timeout, link=False, hibernate_after=hibernate_after)


def start_link(
    server: Any, init_arg: Any = None, *, name: str | None = None, timeout: float | None = 5.0, hibernate_after: int | None = None
) -> Pid | None:
    """As :func:`start`, linked to the caller.

    As in OTP, if ``init`` fails with an abnormal reason, the link delivers that exit to a
    caller that does not trap exits; a trapping caller gets :class:`StartError` and no
    ``EXIT`` message is left behind.
    """
    return _start(server, init_arg, name, timeout, link=True, hibernate_after=hibernate_after)


def _check_hibernate_after(value: Any, fn: str) -> None:
    if value is not None and (value.__class__ not in (int, float) or value < 0):
        raise TypeError(f"{fn}: hibernate_after must be milliseconds >= 0 or None, got {value!r}")


def _start(
    server: Any, init_arg: Any, name: str | None, timeout: float | None, link: bool, hibernate_after: int | None = None
) -> Pid | None:
    instance = server() if isinstance(server, type) else server
    if not isinstance(instance, GenServer):
        raise TypeError(f"start: server must be a GenServer subclass or instance, got {server!r}")
    if name is not None and not isinstance(name, str) and not rt.is_via(name):
        raise TypeError(f"start: name must be a str or a ('via', module, name) tuple, got {name!r}")
    _check_hibernate_after(hibernate_after, "start")
    me = _current()
    tag = Ref()
    pid, mref = rt._spawn(
        _server_main,
        (instance, init_arg, me.pid, tag, name, link, hibernate_after),
        {},
        link=link,
        monitor=True,
        initial_call=f"{type(instance).__module__}.{type(instance).__qualname__}.init",
    )
    assert mref is not None  # monitor=True

    def is_answer(m: Any) -> bool:
        return m.__class__ is tuple and len(m) >= 2 and (m[1] is tag or m[1] is mref)

    msg = receive(is_answer, timeout, default=TIMEOUT)
    if msg is TIMEOUT:
        rt.exit(pid, "kill")
        reason: Any = "timeout"
    elif msg[0] is _ACK and msg[2] == "ok":
        rt.demonitor(mref, flush=True)
        return pid
    elif msg[0] is _ACK:
        reason = msg[3]
    else:  # DOWN before the ack: killed during init
        reason = msg[4]
    if msg is TIMEOUT or msg[0] is _ACK:
        receive(lambda m: m.__class__ is tuple and len(m) == 5 and m[1] is mref and m[0] == "DOWN")
    if link and me.trap_exit:
        rt._remove_first(me.mailbox, lambda m: m.__class__ is tuple and len(m) == 3 and m[0] == "EXIT" and m[1] == pid)
    if msg is not TIMEOUT and msg[0] is _ACK and msg[2] == "ignore":
        return None
    raise StartError(reason)


def call(dest: Pid | str, request: Any, timeout: float | None = 5.0) -> Any:
    """Send ``request`` to a GenServer and wait up to ``timeout`` seconds for its reply.

    Raises :class:`CallExit` with ``why`` ``'noproc'`` (no such process), ``'timeout'``,
    or the server's exit reason if it dies before replying. Uncaught, that ends the caller
    as it would in Erlang.
    """
    return _call(dest, _CALL, request, timeout)


def _call(dest: Any, tag: str, request: Any, timeout: float | None) -> Any:
    if timeout is not None and not isinstance(timeout, (int, float)):
        raise TypeError(f"call: timeout must be a number of seconds or None, got {type(timeout).__name__}")
    me = _current()
    target = rt._lookup(dest, "call")
    if target is None:
        raise CallExit("noproc", dest, request)
    if target is me:
        raise CallExit("calling_self", dest, request)
    ref = Ref()
    rt._add_monitor(me, target, ref)
    if rt._tracing:
        rt.send(target.pid, (tag, (me.pid, ref), request))
    else:
        _deliver(target, (tag, (me.pid, ref), request))

    def is_answer(m: Any) -> bool:
        return m.__class__ is tuple and len(m) >= 2 and (m[0] is ref or (m[1] is ref and m[0] == "DOWN"))

    msg = receive(is_answer, timeout, default=TIMEOUT)
    if msg is TIMEOUT:
        _drop_monitor(me, target, ref)
        # Like OTP's call aliases: a reply that comes after we gave up is dropped.
        if me.abandoned is None:
            me.abandoned = set()
        me.abandoned.add(ref)
        raise CallExit("timeout", dest, request)
    if msg[0] is ref:
        _drop_monitor(me, target, ref)
        return msg[1]
    raise CallExit(msg[4], dest, request)


class RequestId:
    """An asynchronous request made with :func:`send_request` (OTP's request id)."""

    __slots__ = ("ref", "dest")

    def __init__(self, ref: Ref, dest: Any) -> None:
        self.ref = ref
        self.dest = dest

    def __repr__(self) -> str:
        return f"RequestId({self.ref!r}, {self.dest!r})"


def send_request(dest: Pid | str | tuple, request: Any) -> RequestId:
    """Send a call to a GenServer without waiting (``gen_server:send_request/2``).

    The caller monitors the server until the answer is taken with :func:`wait_response`,
    :func:`receive_response` or :func:`check_response`. Never raises for a dead server:
    the answer is then ``('error', ('noproc', dest))``.
    """
    me = _current()
    target = rt._lookup(dest, "send_request")
    ref = Ref()
    if target is None:
        _deliver(me, ("DOWN", ref, "process", dest, "noproc"))
    else:
        rt._add_monitor(me, target, ref)
        if rt._tracing:
            rt.send(target.pid, (_CALL, (me.pid, ref), request))
        else:
            _deliver(target, (_CALL, (me.pid, ref), request))
    return RequestId(ref, dest)


def _check_request_id(req_id: Any, fn: str) -> Ref:
    if req_id.__class__ is not RequestId:
        raise TypeError(f"{fn}: expected the RequestId from send_request, got {type(req_id).__name__}")
    return req_id.ref


def _answer(req_id: RequestId, msg: Any) -> Any:
    rt.demonitor(req_id.ref, flush=True)
    if msg[0] is req_id.ref:
        return ("reply", msg[1])
    return ("error", (msg[4], req_id.dest))


def _is_answer_to(ref: Ref) -> Callable[[Any], bool]:
    return lambda m: m.__class__ is tuple and len(m) >= 2 and (m[0] is ref or (len(m) == 5 and m[1] is ref and m[0] == "DOWN"))


def wait_response(req_id: RequestId, timeout: float | None = None) -> Any:
    """Wait up to ``timeout`` seconds (None: forever) for the answer to ``req_id``.

    ``('reply', value)``, ``('error', (reason, dest))`` if the server died first, or
    ``'timeout'``; after a timeout the request stays active and may be waited for again
    (``gen_server:wait_response/2``).
    """
    ref = _check_request_id(req_id, "wait_response")
    msg = receive(_is_answer_to(ref), timeout, default=TIMEOUT)
    return "timeout" if msg is TIMEOUT else _answer(req_id, msg)


def receive_response(req_id: RequestId, timeout: float | None = None) -> Any:
    """As :func:`wait_response`, but a timeout abandons the request: its monitor is gone
    and a reply that comes later is dropped, never queued (``gen_server:receive_response/2``)."""
    ref = _check_request_id(req_id, "receive_response")
    msg = receive(_is_answer_to(ref), timeout, default=TIMEOUT)
    if msg is not TIMEOUT:
        return _answer(req_id, msg)
    rt.demonitor(ref, flush=True)
    me = _current()
    if me.abandoned is None:
        me.abandoned = set()
    me.abandoned.add(ref)
    return "timeout"


def check_response(msg: Any, req_id: RequestId) -> Any:
    """Whether a message the caller received answers ``req_id`` (``gen_server:check_response/2``):
    ``('reply', value)``, ``('error', (reason, dest))``, or ``'no_reply'`` for any other message."""
    ref = _check_request_id(req_id, "check_response")
    if not _is_answer_to(ref)(msg):
        return "no_reply"
    return _answer(req_id, msg)


def formatted_status(server: Any, status: dict[str, Any]) -> dict[str, Any]:
    """``status`` as ``server.format_status`` shows it, for any object with that callback
    (a GenServer, a socket handler answering ``get_status``). Without one, ``status``.

    A callback that raises or returns something other than a dict does not reveal the raw
    values: the state becomes a note saying so (logged once per call, as a warning).
    """
    fn = getattr(server, "format_status", None)
    if fn is None or getattr(fn, "__func__", None) is GenServer.format_status:
        return status
    try:
        out = fn(dict(status))
        if not isinstance(out, dict):
            raise BadReturnError(f"{type(server).__qualname__}.format_status", out, "a dict")
    except Exception as e:  # noqa: BLE001 - a broken formatter must not break sys requests or crash logs
        log.warning("%s.format_status failed: %r; the state is not shown", type(server).__qualname__, e)
        return {**status, "state": f"<format_status failed: {type(e).__name__}>"}
    return {**status, **out}


def _drop_monitor(me: Any, target: Any, ref: Ref) -> None:
    """demonitor(ref, flush=True) for call's own monitor, without looking anything up again."""
    if me.monitors is not None:
        me.monitors.pop(ref, None)
    if target.monitored_by is not None:
        target.monitored_by.pop(ref, None)
    if me.mailbox:
        rt._remove_first(me.mailbox, lambda m: m.__class__ is tuple and len(m) == 5 and m[1] is ref and m[0] == "DOWN")


def cast(dest: Pid | str, request: Any) -> None:
    """Send ``request`` to a GenServer without waiting. Never fails, as OTP's cast."""
    proc = rt._lookup(dest, "cast")
    if proc is not None:
        rt.send(proc.pid, (_CAST, request))


def reply(from_: From, value: Any) -> None:
    """Answer a call whose handle_call returned ``noreply``; ``from_`` is its second argument."""
    if from_.__class__ is not tuple or len(from_) != 2 or from_[0].__class__ is not Pid:
        raise TypeError(f"reply: from_ must be the (pid, ref) given to handle_call, got {from_!r}")
    caller = from_[0]._proc
    if caller is not None and caller.abandoned and from_[1] in caller.abandoned:
        caller.abandoned.discard(from_[1])  # the caller timed out: drop the late reply
        return
    rt.send(from_[0], (from_[1], value))


def stop(dest: Pid | str, reason: Any = "normal", timeout: float | None = None) -> None:
    """Stop a GenServer with ``reason`` (its ``terminate`` runs) and wait until it is dead.

    Raises :class:`CallExit` with ``'noproc'`` if it is not alive, ``'timeout'`` if it is
    not dead in time, or its actual exit reason if that differs from ``reason``.
    """
    me = _current()
    target = rt._lookup(dest, "stop")
    if target is None:
        raise CallExit("noproc", dest, ("stop", reason))
    ref = Ref()
    rt._add_monitor(me, target, ref)
    _deliver(target, (_SYSTEM, (me.pid, ref), ("terminate", reason)))
    msg = receive(
        lambda m: m.__class__ is tuple and len(m) == 5 and m[1] is ref and m[0] == "DOWN",
        timeout,
        default=TIMEOUT,
    )
    if msg is TIMEOUT:
        rt.demonitor(ref, flush=True)
        raise CallExit("timeout", dest, ("stop", reason))
    actual = msg[4]
    if not (actual is reason or actual == reason):
        raise CallExit(actual, dest, ("stop", reason))


# System requests (OTP's sys module), answered by every GenServer-based process.


def get_state(dest: Pid | str, timeout: float | None = 5.0) -> Any:
    """The state of a GenServer-based process, as ``sys:get_state``."""
    return _call(dest, _SYSTEM, "get_state", timeout)


class _ReplaceFailed:
    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


def replace_state(dest: Pid | str, fn: Callable[[Any], Any], timeout: float | None = 5.0) -> Any:
    """Replace a GenServer's state with ``fn(state)`` inside the server; returns the new state.

    If ``fn`` raises, the server keeps its state and runs on, and the caller gets
    :class:`CallExit` with ``why`` ``('callback_failed', exception)``, as OTP's sys does.
    """
    if not callable(fn):
        raise TypeError("replace_state: fn must be callable")
    result = _call(dest, _SYSTEM, ("replace_state", fn), timeout)
    if result.__class__ is _ReplaceFailed:
        raise CallExit(("callback_failed", result.error), dest, "replace_state")
    return result


def get_status(dest: Pid | str, timeout: float | None = 5.0) -> dict[str, Any]:
    """Status of a GenServer-based process: module, state, parent, name, queue length."""
    return _call(dest, _SYSTEM, "get_status", timeout)


# --------------------------------------------------------------------------------------
# Server loop
# --------------------------------------------------------------------------------------


class _Stop(Exception):
    """Internal: a callback asked to stop; carries the reason and the final state."""

    def __init__(self, reason: Any, state: Any) -> None:
        self.reason = reason
        self.state = state


def _server_main(
    server: GenServer, init_arg: Any, parent: Pid, tag: Ref, name: str | None, linked: bool, hibernate_after: Any
) -> None:
    me = _current()
    me.system = server
    if name is not None and not _register_name(name, me, parent, tag):
        return
    try:
        result = server.init(init_arg)
    except Exit as e:
        if me.alive:
            _unregister_via(name)
            rt.send(parent, (_ACK, tag, "error", e.reason))
        raise
    except Exception as e:  # noqa: BLE001 - init crashed: report once, then exit with it
        _log_crash(server, me.pid, e, "init", None)
        _unregister_via(name)
        rt.send(parent, (_ACK, tag, "error", e))
        raise Exit(e) from None
    ok = result.__class__ is tuple and len(result) in (2, 3) and result[0] == "ok"
    ok = ok and (len(result) == 2 or _valid_timeout(result[2]))
    if not ok:
        _unregister_via(name)  # as OTP's gen: a failed or ignored start leaves no via name
    if ok:
        rt.send(parent, (_ACK, tag, "ok", None))
        # As OTP's gen: an unlinked server is its own parent, so an exit signal from
        # whoever called start() is an ordinary handle_info message, not a shutdown.
        _loop(server, me, result[1], result[2] if len(result) == 3 else None, parent if linked else me.pid, hibernate_after)
    elif result == "ignore":
        rt.send(parent, (_ACK, tag, "ignore", None))
    elif result.__class__ is tuple and len(result) == 2 and result[0] == "stop":
        rt.send(parent, (_ACK, tag, "error", result[1]))
        raise Exit(result[1])
    elif result.__class__ is tuple and len(result) == 2 and result[0] == "error":
        rt.send(parent, (_ACK, tag, "error", result[1]))
    else:
        error = BadReturnError(f"{type(server).__qualname__}.init", result, _INIT_RESULTS)
        _log_crash(server, me.pid, error, "init", None)
        rt.send(parent, (_ACK, tag, "error", error))
        raise Exit(error)


def _register_name(name: Any, me: Any, parent: Pid, tag: Ref) -> bool:
    if name.__class__ is str:
        holder = rt._names.get(name)
        if holder is not None:
            rt.send(parent, (_ACK, tag, "error", ("already_started", holder.pid)))
            return False
        rt.register(name)
        return True
    module, key = name[1], name[2]
    if module.register_name(key, me.pid) in ("yes", True):
        return True
    holder = module.whereis_name(key)
    rt.send(parent, (_ACK, tag, "error", ("already_started", holder if holder.__class__ is Pid else None)))
    return False


def _unregister_via(name: Any) -> None:
    if name is not None and name.__class__ is tuple:
        try:
            name[1].unregister_name(name[2])
        except Exception:  # noqa: BLE001 - the start failed already; that is the error to report
            log.debug("unregister_name(%r) failed after a failed start", name, exc_info=True)


def _loop(server: GenServer, me: Any, state: Any, timeout: Any, parent: Pid, hibernate_after: Any = None) -> None:
    msg: Any = None
    # An adopted greenlet cannot hibernate (its stack is not ours): it waits as usual.
    idle_timer = None
    if hibernate_after is not None and not me.adopted:
        # One timer, re-armed per wait (OTP waits with `after hibernate_after` each time).
        idle_timer = gevent.get_hub().loop.timer(hibernate_after / 1000.0)
    try:
        while True:
            if timeout is None or timeout == "infinity" or (timeout == "hibernate" and me.adopted):
                if idle_timer is not None:
                    mailbox = me.mailbox
                    while not mailbox:
                        if rt._wait_watcher(me, idle_timer) is rt.WATCHER_FIRED and not mailbox:
                            idle_timer.close()
                            rt.hibernate(_loop, server, me, state, None, parent, hibernate_after)
                    # receive()'s fast path, inlined: a message is queued (a dead process
                    # that swallowed its Exit goes to receive(), which stops it for good).
                    msg = mailbox.popleft() if me.alive else receive()
                else:
                    msg = receive()
            elif timeout == "hibernate":
                # hibernate()'s checks are settled here (a spawned process, a callable):
                # the runtime's own entry point skips them.
                if idle_timer is not None:
                    idle_timer.close()
                rt._hibernate(_loop, (server, me, state, None, parent, hibernate_after))
            elif timeout.__class__ is tuple and timeout[0] == "continue":
                msg = None
                state, timeout = _noreply_result(server, "handle_continue", server.handle_continue(timeout[1], state))
                continue
            else:
                if timeout == 0:
                    gevent.sleep(0)  # a loop of zero timeouts must still let other processes run
                msg = receive(timeout=timeout / 1000.0, default=TIMEOUT)
                if msg is TIMEOUT:
                    msg = "timeout"
            if msg.__class__ is tuple and msg:
                kind = msg[0]
                if kind is _CALL:
                    from_ = msg[1]
                    result = server.handle_call(msg[2], from_, state)
                    state, timeout = _call_result(server, from_, result)
                    continue
                if kind is _CAST:
                    state, timeout = _noreply_result(server, "handle_cast", server.handle_cast(msg[1], state))
                    continue
                if kind is _SYSTEM:
                    state = _system(server, me, msg[1], msg[2], state, parent)
                    continue
                # Messages may hold any object: compare only known types (a term whose
                # __eq__ raises must reach handle_info, not crash the server).
                if len(msg) == 3 and me.trap_exit and kind.__class__ is str and kind == "EXIT" and parent == msg[1]:
                    raise _Stop(msg[2], state)
            result = server.handle_info(msg, state)
            if result.__class__ is tuple and result and result[0] == "noreply":
                # The usual answers, without the general check.
                n = len(result)
                if n == 2:
                    state, timeout = result[1], None
                    continue
                if n == 3 and result[2].__class__ is str and result[2] == "hibernate":
                    state, timeout = result[1], "hibernate"
                    continue
            state, timeout = _noreply_result(server, "handle_info", result)
    except _Stop as stop:
        _terminate(server, me, stop.reason, stop.state, msg, None)
    except Exit as e:
        if not me.alive:
            raise  # killed from outside: an untrapped exit runs no terminate, as in Erlang
        _terminate(server, me, e.reason, state, msg, None)
    except Exception as e:  # noqa: BLE001 - a callback crashed
        _terminate(server, me, e, state, msg, e)


def _call_result(server: GenServer, from_: From, result: Any) -> tuple[Any, Any]:
    if result.__class__ is tuple:
        n = len(result)
        kind = result[0] if n else None
        if kind == "reply" and (n == 3 or (n == 4 and _valid_timeout(result[3]))):
            reply(from_, result[1])
            return result[2], (result[3] if n == 4 else None)
        if kind == "noreply" and (n == 2 or (n == 3 and _valid_timeout(result[2]))):
            return result[1], (result[2] if n == 3 else None)
        if kind == "stop" and n == 4:
            reply(from_, result[2])
            raise _Stop(result[1], result[3])
        if kind == "stop" and n == 3:
            raise _Stop(result[1], result[2])
    raise BadReturnError(f"{type(server).__qualname__}.handle_call", result, _CALL_RESULTS)


def _noreply_result(server: GenServer, callback: str, result: Any) -> tuple[Any, Any]:
    if result.__class__ is tuple:
        n = len(result)
        kind = result[0] if n else None
        if kind == "noreply" and (n == 2 or (n == 3 and _valid_timeout(result[2]))):
            return result[1], (result[2] if n == 3 else None)
        if kind == "stop" and n == 3:
            raise _Stop(result[1], result[2])
    raise BadReturnError(f"{type(server).__qualname__}.{callback}", result, _NOREPLY_RESULTS)


def _valid_timeout(t: Any) -> bool:
    """A callback's timeout element: ms >= 0, 'hibernate', 'infinity' or ('continue', arg)."""
    if t is None:
        return True
    cls = t.__class__
    if cls is int or cls is float:
        return t >= 0
    if cls is str:
        return t == "hibernate" or t == "infinity"
    return cls is tuple and len(t) == 2 and t[0].__class__ is str and t[0] == "continue"


def _system(server: GenServer, me: Any, from_: From, request: Any, state: Any, parent: Pid) -> Any:
    if request == "get_state":
        reply(from_, state)
    elif request == "get_status":
        reply(
            from_,
            {
                "pid": me.pid,
                "module": f"{type(server).__module__}.{type(server).__qualname__}",
                "status": "running",
                "parent": parent,
                "name": me.name,
                "message_queue_len": len(me.mailbox),
                "state": formatted_status(server, {"state": state})["state"],
            },
        )
    elif request.__class__ is tuple and len(request) == 2 and request[0] == "replace_state":
        try:
            new_state = request[1](state)
        except Exception as e:  # noqa: BLE001 - the caller's function failed, not the server
            reply(from_, _ReplaceFailed(e))
        else:
            state = new_state
            reply(from_, state)
    elif request.__class__ is tuple and len(request) == 2 and request[0] == "terminate":
        raise _Stop(request[1], state)
    else:
        reply(from_, ("error", ("unknown_system_msg", request)))
    return state


def _is_quiet(reason: Any) -> bool:
    """normal, shutdown and ('shutdown', term) are ordinary ends, not errors."""
    if reason.__class__ is str:
        return reason in ("normal", "shutdown")
    return reason.__class__ is tuple and len(reason) == 2 and reason[0].__class__ is str and reason[0] == "shutdown"


def _terminate(server: GenServer, me: Any, reason: Any, state: Any, last_msg: Any, error: BaseException | None) -> None:
    try:
        server.terminate(reason, state)
    except Exit as e:
        if not me.alive:
            raise
        reason, error = e.reason, None
    except Exception as e:  # noqa: BLE001 - terminate itself crashed: that is the reason now
        reason, error = e, e
    if not _is_quiet(reason):
        _log_crash(server, me.pid, error if error is not None else reason, "terminate", last_msg, state)
    raise Exit(reason)


def _log_crash(server: GenServer, pid: Pid, reason: Any, where: str, last_msg: Any, state: Any = None) -> None:
    exc_info = reason if isinstance(reason, BaseException) else None
    shown = formatted_status(server, {"state": state, "message": last_msg, "reason": reason})
    state, last_msg = shown.get("state"), shown.get("message")
    log.error(
        "GenServer %s (%s) terminating: %r; last message: %r; state: %r",
        pid,
        type(server).__qualname__,
        reason,
        last_msg,
        state,
        exc_info=exc_info,
        extra={"pid": str(pid), "reason": reason, "where": where},
    )


def enter_loop(
    server: GenServer, state: Any, *, parent: Pid | None = None, timeout: Any = None, hibernate_after: int | None = None
) -> None:
    """Make the calling process a GenServer running ``server`` from ``state`` (OTP's enter_loop).

    For processes started some other way (e.g. ``spawn_child``) that want the GenServer
    loop, its call/cast/system handling and its terminate rules. ``parent`` is the
    process whose exit stops a trapping server (default: the caller itself, so none).
    ``hibernate_after``: as for :func:`start`. Does not return: the process ends when the
    server stops.
    """
    if not isinstance(server, GenServer):
        raise TypeError(f"enter_loop: server must be a GenServer instance, got {server!r}")
    _check_hibernate_after(hibernate_after, "enter_loop")
    me = _current()
    me.system = server
    _loop(server, me, state, timeout, parent if parent is not None else me.pid, hibernate_after)
