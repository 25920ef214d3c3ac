"""pykka actors that are processes of this runtime.

Subclass :class:`Actor` exactly as you would subclass ``pykka.ThreadingActor``::

    class Greeter(actors.Actor):
        def on_receive(self, message):
            return f"hello {message}"

    ref = Greeter.start()              # or Greeter.start_link() from a supervisor
    assert ref.ask("bob", timeout=1) == "hello bob"
    ref.tell("ann")                    # fire and forget
    actors.monitor(ref.pid)            # it is a process: link, monitor, exit, register
    ref.stop()                         # DOWN reason 'normal'

Each actor runs as one process of ours (a greenlet with a mailbox), so pykka's
``ActorRef`` / ``ask`` / ``tell`` / ``proxy`` / ``Future`` API and the runtime's links,
monitors, exit signals, names and supervision all apply to the same thing.

Semantics (each has a test in ``tests/actors/test_pykka.py``)

* ``ref.stop()`` (or ``Actor.stop()``): ``on_stop`` runs, queued asks fail with
  ``ActorDeadError``, the process exits ``'normal'``.
* An ``Exception`` raised while handling a ``tell`` (also ``proxy.meth.defer()``,
  ``actors.cast``, a plain ``actors.send``) crashes the process: ``on_failure`` runs,
  queued asks fail with ``ActorDeadError``, and the exit reason is the exception itself
  (monitors see it in ``DOWN``, linked processes die with it, it is logged once by the
  runtime). An exception raised by ``on_start`` or ``on_stop`` does the same (pykka then
  skips ``on_failure``, as it always has).
* An ``Exception`` raised while handling an ``ask`` (or a proxy call) is **returned to the
  caller** (``future.get()`` raises it) and the actor lives on: that is pykka's contract
  and is kept. Use ``tell`` if a failure should take the actor down.
* ``actors.call(pid, req)`` reaches ``on_receive(req)`` and its return value is the
  reply; being OTP's call, an exception there crashes the actor and the caller gets
  ``CallExit`` with it. ``actors.cast(pid, req)`` is a ``tell``.
* Exit signals: ``actors.exit(pid, 'kill')``, an untrapped exit signal or the crash of a
  linked process kills the actor at once, with no hook run (as in Erlang): right after,
  ``ref.is_alive()`` is False and ``ref.tell`` raises ``ActorDeadError``; pending ``ask``
  futures (queued or in progress) fail with ``ActorDeadError`` at the hub's next turn.
  An ``Exit`` raised by the actor's own code (``actors.exit(reason)``, an uncaught
  ``CallExit``) ends it with that reason after ``on_stop``, as a GenServer's terminate.
* ``actors.trap_exit(True)`` in ``on_start`` turns exit signals into
  ``('EXIT', pid, reason)`` messages for ``on_receive`` — except one from the parent
  (the process that started the actor), which stops it (``on_stop`` runs) with the
  parent's reason, as OTP's gen_server does: that is how a supervisor's ``'shutdown'``
  reaches a trapping worker. ``DOWN`` messages and any other raw message also arrive in
  ``on_receive``.
* ``actors.get_state(pid)`` returns the actor object, ``actors.get_status(pid)`` a status
  dict, ``actors.stop(pid, reason)`` stops it with ``reason`` (``on_stop`` runs).
* A ``call`` still queued when the actor stops is dropped; its caller gets ``CallExit``
  with the exit reason from the monitor ``call`` holds, as with a GenServer.

No ``pykka.ActorRegistry``. ``start`` does not register the actor: the registry is a list,
so unregistering is O(N) (stopping the last 5k of 100k registered actors took 12.8 s).
``ActorRegistry.get_all/get_by_class/broadcast/stop_all`` therefore do not see these
actors, and ``stop_all`` (which pykka's own loop calls when a ``BaseException`` — our
``Exit`` is one — escapes a handler) can never reach them; our loop never calls it. Find
actors by passing refs around, or by name: ``actors.register(name, ref.pid)`` /
``actors.whereis(name)`` give the pid; keep a dict of refs if you need the ref back.
pykka's ``_stop`` still calls ``ActorRegistry.unregister``, which is a harmless no-op
for an unregistered ref (tested).

Threads: ``tell``/``ask`` must be called from the hub's thread (any greenlet, or the hub
itself for ``tell`` and ``ask(block=False)``), as for every other function of the runtime.

Pin-worthy internals this module relies on (setup.cfg pins ``pykka>=4.5,<4.6``):

pykka (4.5)
  * ``Actor._create_actor_inbox`` / ``_create_future`` / ``_start_actor_loop`` (the
    runtime seam), and that ``start`` is ``cls(...)`` + ``ActorRegistry.register`` +
    ``_start_actor_loop``: :meth:`Actor.start` replaces it without the register.
  * ``Actor.__init__`` sets exactly ``actor_urn``, ``actor_inbox``, ``actor_stopped``,
    ``_actor_ref``: :meth:`Actor.__init__` sets them itself (our stop flag and ref); an
    actor initialised by ``pykka.Actor.__init__`` directly is re-wired at start.
  * ``Actor._actor_loop`` = ``_actor_loop_setup`` + ``_actor_loop_running`` +
    ``_actor_loop_teardown``; :meth:`Actor._actor_loop_running` is replaced (a copy of
    pykka's minus the ``BaseException`` → ``stop_all()`` branch, plus raw messages).
  * ``Actor._handle_failure(exc_type, exc_value, tb)`` is called by setup, ``_stop`` and
    the loop on an ``Exception``; replaced to record the exit reason.
  * ``Actor._stop`` and ``Actor._handle_receive`` (kept as they are: ``_stop`` sets the
    flag, calls ``ActorRegistry.unregister`` and ``on_stop``), ``Envelope``
    (``pykka._envelope``: ``message``, ``reply_to``; compared by exact class).
  * ``ActorRef.is_alive`` is ``not actor_stopped.is_set()``; ``ActorRef.stop`` builds
    ``future.__class__()`` and uses ``set_get_hook``; ``ActorProxy`` reads
    ``actor_ref._actor_weakref``.
  * ``Future.get`` runs and caches ``Future._get_hook`` (read by ``GeventFuture``).
  * ``tests/actors/test_pykka.py::test_pykkas_own_loop_would_stop_all_actors_on_a_kill``
    fails if pykka's loop stops calling ``stop_all()`` on a ``BaseException``: then
    re-check the copied loop against the new one.
actors runtime (ours)
  * ``_runtime._spawn(initial_call=...)``, ``_current``, ``_current_or_none``,
    ``Pid._proc`` (None once dead), ``_Proc.mailbox`` / ``alive`` / ``trap_exit`` /
    ``system``; ``_gen_server._CALL/_CAST/_SYSTEM`` tags and the system-request shapes.
"""

from __future__ import annotations

import logging
import queue
import sys
import uuid
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import pykka
from gevent import get_hub
from gevent.event import Event
from pykka import ActorDeadError, Timeout
from pykka._envelope import Envelope

from . import _runtime as rt
from ._errors import Exit
from ._gen_server import _CALL, _CAST, _SYSTEM, reply
from ._runtime import Pid, receive, send

__all__ = ["Actor", "ActorRef", "GeventFuture", "actor_child_spec"]

log = logging.getLogger("actors.pykka")
pykka_log = logging.getLogger("pykka")

A = TypeVar("A", bound="Actor")
T = TypeVar("T")

_NOTHING: Any = object()


# --------------------------------------------------------------------------------------
# Future
# --------------------------------------------------------------------------------------


class GeventFuture(pykka.Future[T]):
    """A ``pykka.Future`` for greenlets: ``get`` blocks only the calling greenlet.

    Holds the value or the ``exc_info`` itself and raises the original exception object
    with its real traceback (``gevent.event.AsyncResult`` pickles tracebacks through
    tblib: ~30 us per failed ask and synthetic frames). A ``gevent.event.Event`` to wait
    on is made only when someone has to wait. ``map``/``filter``/``join``/``reduce`` and
    ``pykka.get_all`` come from ``pykka.Future``. Setting twice raises ``queue.Full``, as
    pykka's ``ThreadingFuture`` does.
    """

    def __init__(self) -> None:
        super().__init__()
        self._value: Any = _NOTHING
        self._exc_info: Any = None
        self._event: Event | None = None

    def __repr__(self) -> str:
        if self._exc_info is not None:
            return f"<GeventFuture exception={self._exc_info[1]!r}>"
        if self._value is not _NOTHING:
            return f"<GeventFuture value={self._value!r}>"
        return "<GeventFuture pending>"

    def ready(self) -> bool:
        """Whether a value or an exception has been set (a get hook does not count)."""
        return self._value is not _NOTHING or self._exc_info is not None

    def get(self, *, timeout: float | None = None) -> T:
        """The value (raising the exception if one was set); ``pykka.Timeout`` on timeout."""
        if self._get_hook is not None:
            return super().get(timeout=timeout)
        if self._value is _NOTHING and self._exc_info is None:
            event = self._event
            if event is None:
                event = self._event = Event()
            event.wait(timeout)
            if self._value is _NOTHING and self._exc_info is None:
                raise Timeout(f"{timeout} seconds")
        if self._exc_info is not None:
            exc_type, exc_value, tb = self._exc_info
            if exc_value is None:
                exc_value = exc_type()
            if exc_value.__traceback__ is not tb:
                raise exc_value.with_traceback(tb)
            raise exc_value
        return self._value

    def set(self, value: Any = None) -> None:
        if self.ready() or self._get_hook is not None:
            raise queue.Full
        self._value = value
        if self._event is not None:
            self._event.set()

    def set_exception(self, exc_info: Any = None) -> None:
        assert exc_info is None or len(exc_info) == 3
        if exc_info is None:
            exc_info = sys.exc_info()
        if self.ready() or self._get_hook is not None:
            raise queue.Full
        self._exc_info = exc_info
        if self._event is not None:
            self._event.set()

    def set_get_hook(self, func: Callable[[float | None], T]) -> None:
        if self.ready():
            raise queue.Full
        super().set_get_hook(func)
        if self._event is not None:
            self._event.set()


def _fail_dead(future: Any, text: str) -> None:
    """Fail ``future`` with ActorDeadError unless it is already answered (the actor died)."""
    try:
        future.set_exception((ActorDeadError, ActorDeadError(text), None))
    except queue.Full:
        pass


# --------------------------------------------------------------------------------------
# Inbox, stop flag, ref
# --------------------------------------------------------------------------------------


class _Inbox:
    """pykka's inbox protocol over a process mailbox: ``put`` is :func:`actors.send`.

    Mailbox entries are pykka ``Envelope`` objects (from ``tell``/``ask``) or any raw
    message a process may receive (EXIT, DOWN, sends, calls). Futures of queued and
    in-progress asks are also kept in ``pending`` because the runtime drops a dead
    process's mailbox: whoever notices the death fails them with ``ActorDeadError``.
    """

    __slots__ = ("pid", "pending", "early", "started", "armed", "cls_name", "urn")

    def __init__(self) -> None:
        self.pid: Pid | None = None
        self.pending: set[Any] | None = None  # futures; made on the first ask
        self.early: list[Any] | None = []  # envelopes put before the process exists
        self.started = False  # the process's body has begun to run
        self.armed = False  # a check for "killed before it ever ran" is scheduled
        self.cls_name = "Actor"  # for error messages (shared strings, set at start)
        self.urn = ""

    def __str__(self) -> str:
        return f"{self.cls_name} ({self.urn})"

    def put(self, envelope: Any, /) -> None:
        fut = getattr(envelope, "reply_to", None)
        pid = self.pid
        if pid is None:
            if fut is not None:
                self._track(fut)
            self.early.append(envelope)  # type: ignore[union-attr]
            return
        if fut is not None:
            if pid._proc is None:
                _fail_dead(fut, f"{self} not found")
                return
            self._track(fut)
            if not self.started and not self.armed:
                self.arm()
        send(pid, envelope)

    def _track(self, fut: Any) -> None:
        pending = self.pending
        if pending is None:
            self.pending = {fut}
        else:
            pending.add(fut)

    def answered(self, fut: Any) -> None:
        pending = self.pending
        if pending is not None:
            pending.discard(fut)

    def get(self) -> Any:
        msg = receive()
        return msg if msg.__class__ is Envelope else Envelope(msg)

    def empty(self) -> bool:
        if self.pid is None:
            return not self.early
        proc = self.pid._proc
        return proc is None or not proc.mailbox

    def arm(self) -> None:
        # The process was spawned with a hub callback that runs its body; this callback
        # is queued after it (callbacks run in order), so when it runs the body has
        # either started (and will fail the pending asks itself when it ends) or was
        # skipped because the process was killed before it ever ran.
        self.armed = True
        get_hub().loop.run_callback(self._check_unstarted)

    def _check_unstarted(self) -> None:
        self.armed = False
        if self.started:
            return
        if self.pid is not None and self.pid._proc is None:
            self.fail_pending()
        elif self.pending:
            self.arm()  # defensive only: the body cannot still be unstarted and alive here

    def fail_pending(self) -> None:
        pending, self.pending = self.pending, None
        for fut in pending or ():
            _fail_dead(fut, f"{self} stopped before handling the message")


class _StopFlag:
    """Stands in for pykka's ``actor_stopped`` ``threading.Event``.

    Set when the actor stops itself (pykka's meaning), and also true as soon as the
    process is dead, which the runtime decides synchronously on a kill: so
    ``ref.is_alive()`` is False right after ``actors.exit(pid, 'kill')``.
    """

    __slots__ = ("_set", "_pid")

    def __init__(self) -> None:
        self._set = False
        self._pid: Pid | None = None

    def is_set(self) -> bool:
        return self._set or (self._pid is not None and self._pid._proc is None)

    isSet = is_set  # noqa: N815 - threading.Event's alias

    def set(self) -> None:
        self._set = True

    def clear(self) -> None:
        raise RuntimeError("a stopped actor cannot be restarted")

    def wait(self, timeout: float | None = None) -> bool:
        """Block the calling greenlet until the actor is stopped or dead; False on timeout.

        Waits for the process's death with a monitor (so the caller must be a greenlet
        that may become a process, not the hub).
        """
        if self.is_set():
            return True
        if self._pid is None:
            raise RuntimeError("the actor has not been started")
        ref = rt.monitor(self._pid)
        msg = receive(
            lambda m: m.__class__ is tuple and len(m) == 5 and m[1] is ref and m[0] == "DOWN",
            timeout,
            default=rt.TIMEOUT,
        )
        if msg is rt.TIMEOUT:
            rt.demonitor(ref, flush=True)
            return self.is_set()
        return True


class ActorRef(pykka.ActorRef[A], Generic[A]):
    """pykka's ``ActorRef`` plus ``pid``: the actor's process (None until started)."""

    pid: Pid | None

    def __init__(self, actor: A) -> None:
        super().__init__(actor)
        self.pid = actor.pid


# --------------------------------------------------------------------------------------
# Actor
# --------------------------------------------------------------------------------------


def _quiet(reason: Any) -> bool:
    return reason is None or (reason.__class__ is str and reason == "normal")


class Actor(pykka.Actor):
    """A pykka actor that is a process of this runtime (see the module docstring).

    ``start(*args, **kwargs)`` and ``start_link(*args, **kwargs)`` construct the actor
    with those arguments, spawn its process (``start_link`` links it to the caller) and
    return an :class:`ActorRef` whose ``pid`` is the process. ``self.pid`` is the same
    pid inside the actor. Neither registers in ``pykka.ActorRegistry``.
    """

    #: The actor's process; None until started.
    pid: Pid | None = None

    # Internal state, named so as not to collide with a subclass's attributes.
    _actors_parent: Pid | None = None
    _actors_exit: Any = None  # None (normal), an Exit, or the exception that crashed it

    _actor_ref: ActorRef[Any]
    actor_inbox: _Inbox
    actor_stopped: _StopFlag  # type: ignore[assignment]

    def __init__(self, *_args: Any, **_kwargs: Any) -> None:
        # pykka.Actor.__init__ sets these four fields; we set them with our own objects
        # instead of building a threading.Event and a plain ActorRef to replace.
        self.actor_urn = uuid.uuid4().urn
        self.actor_inbox = self._create_actor_inbox()
        self.actor_stopped = _StopFlag()
        self._actor_ref = ActorRef(self)

    # -- starting ---------------------------------------------------------------------

    @classmethod
    def start(cls: type[A], *args: Any, **kwargs: Any) -> ActorRef[A]:
        """Start an actor (unlinked). Unlike pykka's, it is not put in ``ActorRegistry``."""
        obj = cls(*args, **kwargs)
        obj._actors_start(link=False)
        return obj._actor_ref

    @classmethod
    def start_link(cls: type[A], *args: Any, **kwargs: Any) -> ActorRef[A]:
        """Start an actor linked to the caller (atomically: linked before it runs)."""
        obj = cls(*args, **kwargs)
        obj._actors_start(link=True)
        return obj._actor_ref

    @classmethod
    def child_spec(cls, arg: Any = None) -> dict[str, Any]:
        """Elixir's convention, read by supervisors given the class: ``cls()`` or ``cls(arg)``."""
        return actor_child_spec(cls) if arg is None else actor_child_spec(cls, arg)

    @staticmethod
    def _create_actor_inbox() -> _Inbox:
        return _Inbox()

    @staticmethod
    def _create_future() -> GeventFuture[Any]:
        return GeventFuture()

    def _start_actor_loop(self) -> None:
        self._actors_start(link=False)

    def _actors_start(self, *, link: bool) -> None:
        if getattr(self, "_actor_ref", None) is None:
            raise AssertionError("Actor.__init__() has not been called. Did you forget to call super() in your override?")
        if self.pid is not None:
            raise RuntimeError(f"{self} has already been started")
        inbox = self.actor_inbox
        if not isinstance(inbox, _Inbox):
            raise TypeError(f"{type(self).__qualname__}._create_actor_inbox must return actors' inbox")
        if not isinstance(self.actor_stopped, _StopFlag) or not isinstance(self._actor_ref, ActorRef):
            # Initialised by pykka.Actor.__init__ directly: wire in our flag and ref.
            self.actor_stopped = _StopFlag()
            self._actor_ref = ActorRef(self)
        parent = rt._current_or_none()
        cls = type(self)
        pid, _ = rt._spawn(
            _actor_main,
            (self,),
            {},
            link=link,
            initial_call=f"{cls.__module__}.{cls.__qualname__}",
        )
        self.pid = pid
        self._actors_parent = parent.pid if parent is not None else None
        self._actor_ref.pid = pid
        self.actor_stopped._pid = pid
        inbox.cls_name = cls.__name__
        inbox.urn = self.actor_urn
        early, inbox.early = inbox.early, None
        inbox.pid = pid
        if early:
            for envelope in early:
                send(pid, envelope)
        if inbox.pending:
            inbox.arm()

    # -- the loop ---------------------------------------------------------------------

    def _actor_loop_running(self) -> None:
        # pykka 4.5's loop, except: an Exit/BaseException is not caught here (pykka
        # would call _stop() and ActorRegistry.stop_all()); raw process messages are
        # dispatched; answered futures leave inbox.pending.
        inbox = self.actor_inbox
        answered = inbox.answered
        flag = self.actor_stopped
        me = rt._current()
        handle = self._handle_receive
        while not flag._set:
            msg = receive()
            if msg.__class__ is Envelope:
                message = msg.message
                reply_to = msg.reply_to
            elif msg.__class__ is tuple and msg:
                kind = msg[0]
                if kind is _CALL and len(msg) == 3:
                    self._actors_call(msg[1], msg[2])
                    continue
                if kind is _CAST and len(msg) == 2:
                    message, reply_to = msg[1], None
                elif kind is _SYSTEM and len(msg) == 3:
                    self._actors_system(me, msg[1], msg[2])
                    continue
                elif (
                    kind.__class__ is str
                    and kind == "EXIT"
                    and len(msg) == 3
                    and me.trap_exit
                    and self._actors_parent is not None
                    and self._actors_parent == msg[1]  # Pid.__eq__: safe with any term
                ):
                    self._actors_stop_with(msg[2])
                    continue
                else:
                    message, reply_to = msg, None
            else:
                message, reply_to = msg, None
            try:
                response = handle(message)
            except Exception:
                if reply_to is not None:
                    answered(reply_to)
                    pykka_log.info(f"Exception returned from {self} to caller:", exc_info=sys.exc_info())
                    reply_to.set_exception()
                else:
                    self._actors_crash()
            else:
                if reply_to is not None:
                    answered(reply_to)
                    reply_to.set(response)

    def _actors_crash(self) -> None:
        self._handle_failure(*sys.exc_info())
        try:
            self.on_failure(*sys.exc_info())
        except Exception:  # noqa: BLE001 - pykka's rule: a failing on_failure is logged
            self._handle_failure(*sys.exc_info())

    def _actors_call(self, from_: Any, request: Any) -> None:
        try:
            response = self._handle_receive(request)
        except Exception:  # noqa: BLE001 - OTP's call: the server crashes, the caller gets CallExit
            self._actors_crash()
        else:
            reply(from_, response)

    def _actors_system(self, me: Any, from_: Any, request: Any) -> None:
        # Compare only str/tuple requests: a hostile term's == may raise.
        if request.__class__ is str and request == "get_state":
            reply(from_, self)
        elif request.__class__ is str and request == "get_status":
            cls = type(self)
            reply(
                from_,
                {
                    "pid": me.pid,
                    "module": f"{cls.__module__}.{cls.__qualname__}",
                    "status": "running",
                    "parent": self._actors_parent,
                    "name": me.name,
                    "message_queue_len": len(me.mailbox),
                    "state": self,
                },
            )
        elif request.__class__ is tuple and len(request) == 2 and request[0].__class__ is str and request[0] == "terminate":
            self._actors_stop_with(request[1])
        else:
            reply(from_, ("error", ("unknown_system_msg", request)))

    def _actors_stop_with(self, reason: Any) -> None:
        """Stop as ``ref.stop()`` does (on_stop runs) and exit with ``reason``."""
        if self._actors_exit is None and not _quiet(reason):
            self._actors_exit = Exit(reason)
        self._stop()

    def _handle_failure(self, exception_type: Any, exception_value: Any, traceback: Any) -> None:
        """Record the first failure as the exit reason and stop the loop.

        pykka's version logs, unregisters and sets the flag; the runtime logs the crash
        once when the process exits with the exception, and nothing was registered.
        """
        self.actor_stopped.set()
        if exception_value is None and exception_type is not None:
            exception_value = exception_type()
        if self._actors_exit is None:
            self._actors_exit = exception_value
        else:
            log.error(
                "%s (%s) raised again while stopping with %r",
                self.pid,
                self,
                self._actors_exit,
                exc_info=(exception_type, exception_value, traceback),
            )


def _actor_main(actor: Actor) -> None:
    """The body of an actor's process."""
    inbox = actor.actor_inbox
    inbox.started = True
    me = rt._current()
    me.system = actor
    try:
        try:
            actor._actor_loop()
        except Exit as e:
            if not me.alive:
                raise  # killed from outside: no hook runs, as an Erlang process
            # Raised by the actor's own code: stop (on_stop runs) with that reason.
            if actor._actors_exit is None:
                actor._actors_exit = e
            if not actor.actor_stopped._set:
                actor._stop()
            actor._actor_loop_teardown()
    finally:
        actor.actor_stopped._set = True
        if inbox.pending:
            inbox.fail_pending()
    reason = actor._actors_exit
    if reason is not None:
        actor._actors_exit = None  # do not keep the traceback alive via the actor
        raise reason


# --------------------------------------------------------------------------------------
# Supervision
# --------------------------------------------------------------------------------------


def _start_child(actor_cls: type[Actor], args: tuple, kwargs: dict) -> Pid:
    pid = actor_cls.start_link(*args, **kwargs).pid
    assert pid is not None
    return pid


def actor_child_spec(actor_cls: type[Actor], *args: Any, id: Any = None, **kwargs: Any) -> dict[str, Any]:  # noqa: A002
    """A supervisor child spec that starts ``actor_cls(*args, **kwargs)`` linked to the supervisor.

    ``id`` defaults to the class. The start function returns the actor's pid. The actor
    starts asynchronously, as pykka's ``start`` does: an ``on_start`` that fails crashes
    the fresh process, which the supervisor sees as an exit right after the start.
    """
    if not (isinstance(actor_cls, type) and issubclass(actor_cls, Actor)):
        raise TypeError(f"actor_child_spec: expected a subclass of actors.Actor, got {actor_cls!r}")
    return {
        "id": actor_cls if id is None else id,
        "start": (_start_child, (actor_cls, args, kwargs)),
        "restart": "permanent",
        "type": "worker",
    }
