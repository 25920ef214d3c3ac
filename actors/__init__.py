"""actors: Erlang/OTP-style processes on gevent greenlets.

Processes are greenlets with a mailbox, links, monitors and exit signals that follow
Erlang's rules. Any greenlet may use this API: one that is not a process yet (the main
greenlet, a test, a WSGI handler) is adopted as one on first use.

Quick tour::

    import actors

    def echo():
        while True:
            sender, msg = actors.receive()
            actors.send(sender, msg)

    pid = actors.spawn_link(echo)
    actors.send(pid, (actors.self(), "hi"))
    assert actors.receive(timeout=1) == "hi"

pykka-style actors (``actors.Actor``: tell/ask/proxy) are full processes too: linked,
monitored, supervised and killable like any other.

Also as in OTP: timers (``send_after``, ``start_timer``, ``send_interval``, ``read_timer``,
``cancel_timer``), asynchronous GenServer requests (``send_request`` with
``wait_response``/``receive_response``/``check_response``), ``('via', module, name)``
names wherever a name is accepted, Elixir's :class:`Registry` (unique and duplicate
keys, dropped when their owner dies), and ``GenServer.format_status`` to redact what
``get_status`` and crash reports show.

Units: blocking timeouts (``receive``, ``call``, ``wait_response``) are seconds, as in
Python; OTP settings (``send_after`` and the other timers, GenServer timeout results) are
milliseconds, as in OTP.
"""

from ._errors import (
    ActorsError,
    BadReturnError,
    CallExit,
    Exit,
    NoProcError,
    NotAProcessError,
    ReceiveTimeout,
    RegistrationError,
    StartError,
)
from ._gen_server import (
    GenServer,
    RequestId,
    call,
    cast,
    check_response,
    enter_loop,
    formatted_status,
    get_state,
    get_status,
    receive_response,
    replace_state,
    reply,
    send_request,
    start,
    start_link,
    stop,
    wait_response,
)
from ._pykka import Actor, ActorRef, GeventFuture, actor_child_spec
from ._registry import Registry
from ._runtime import (
    TIMEOUT,
    Pid,
    Ref,
    TimerRef,
    cancel_timer,
    count_exits,
    demonitor,
    exit,
    exit_reason_class,
    flush,
    hibernate,
    is_alive,
    link,
    make_ref,
    monitor,
    process_info,
    processes,
    read_timer,
    receive,
    register,
    registered,
    self,
    send,
    send_after,
    send_interval,
    set_label,
    spawn,
    spawn_link,
    spawn_monitor,
    start_timer,
    statistics,
    trace,
    trap_exit,
    unlink,
    unregister,
    whereis,
)

__all__ = [
    "TIMEOUT",
    "Actor",
    "ActorRef",
    "GeventFuture",
    "actor_child_spec",
    "ActorsError",
    "BadReturnError",
    "CallExit",
    "Exit",
    "GenServer",
    "NoProcError",
    "NotAProcessError",
    "Pid",
    "ReceiveTimeout",
    "Ref",
    "RegistrationError",
    "Registry",
    "RequestId",
    "StartError",
    "TimerRef",
    "call",
    "cancel_timer",
    "cast",
    "check_response",
    "demonitor",
    "enter_loop",
    "exit",
    "flush",
    "formatted_status",
    "hibernate",
    "get_state",
    "get_status",
    "is_alive",
    "link",
    "make_ref",
    "monitor",
    "process_info",
    "processes",
    "count_exits",
    "exit_reason_class",
    "statistics",
    "read_timer",
    "receive",
    "receive_response",
    "register",
    "registered",
    "replace_state",
    "reply",
    "self",
    "send",
    "send_after",
    "send_interval",
    "send_request",
    "set_label",
    "spawn",
    "spawn_link",
    "spawn_monitor",
    "start",
    "start_link",
    "start_timer",
    "stop",
    "trace",
    "trap_exit",
    "unlink",
    "unregister",
    "wait_response",
    "whereis",
]
