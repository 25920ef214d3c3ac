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

Units: blocking timeouts (``receive``, ``call``) are seconds, as in Python; OTP settings
(``send_after``, GenServer timeout results) are milliseconds, as in OTP.
"""

from ._errors import (
    ActorsError,
    BadReturnError,
    CallExit,
    Exit,
    NotAProcessError,
    ReceiveTimeout,
    RegistrationError,
    StartError,
)
from ._pykka import Actor, ActorRef, GeventFuture, actor_child_spec
from ._gen_server import (
    GenServer,
    call,
    cast,
    enter_loop,
    get_state,
    get_status,
    replace_state,
    reply,
    start,
    start_link,
    stop,
)
from ._runtime import (
    TIMEOUT,
    Pid,
    Ref,
    TimerRef,
    cancel_timer,
    demonitor,
    exit,
    flush,
    hibernate,
    is_alive,
    link,
    make_ref,
    monitor,
    process_info,
    processes,
    receive,
    register,
    registered,
    self,
    send,
    send_after,
    set_label,
    spawn,
    spawn_link,
    spawn_monitor,
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
    "NotAProcessError",
    "Pid",
    "ReceiveTimeout",
    "Ref",
    "RegistrationError",
    "StartError",
    "TimerRef",
    "call",
    "cancel_timer",
    "cast",
    "demonitor",
    "enter_loop",
    "exit",
    "flush",
    "hibernate",
    "get_state",
    "get_status",
    "is_alive",
    "link",
    "make_ref",
    "monitor",
    "process_info",
    "processes",
    "receive",
    "register",
    "registered",
    "replace_state",
    "reply",
    "self",
    "send",
    "send_after",
    "set_label",
    "spawn",
    "spawn_link",
    "spawn_monitor",
    "start",
    "start_link",
    "stop",
    "trace",
    "trap_exit",
    "unlink",
    "unregister",
    "whereis",
]
