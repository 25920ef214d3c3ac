"""Significant children and ``auto_shutdown`` (OTP 24+, stdlib doc "supervisor":
"Automatic Shutdown"), checked against the same scenarios run on OTP's supervisor.

OTP's rules, as asserted here: a significant child must be transient or temporary, and
needs ``auto_shutdown`` other than ``never``; with ``any_significant`` the supervisor shuts
down (reason ``shutdown``) when a significant child ends by itself and is not restarted;
with ``all_significant`` when the last such child does; a child the supervisor itself
terminates (``terminate_child``, a group restart) never triggers it.
"""

from __future__ import annotations

import pytest
from erl_trace import escript_trace
from sup_helpers import expect_started, worker_spec

import actors
import supervision
from actors import TIMEOUT, Pid
from supervision import ChildSpecError

_ESCRIPT = r"""#!/usr/bin/env escript
%%! -noshell
-mode(compile).
-export([init/1, worker/0]).
init(A) -> {ok, A}.
worker() -> {ok, spawn_link(fun() -> receive {stop, R} -> exit(R) end end)}.
spec(Id, Restart, Sig) -> #{id => Id, start => {?MODULE, worker, []}, restart => Restart, significant => Sig}.
pid_of(Sup, Id) -> {Id, P, _, _} = lists:keyfind(Id, 1, supervisor:which_children(Sup)), P.
start(Flags, Specs) -> supervisor:start_link(?MODULE, {Flags, Specs}).
down(S) -> receive {'EXIT', S, R} -> R after 150 -> alive end.
main(_) ->
    process_flag(trap_exit, true),
    {ok, S1} = start(#{auto_shutdown => any_significant}, [spec(a, temporary, true), spec(b, permanent, false)]),
    pid_of(S1, a) ! {stop, normal}, io:format("any_temporary_normal ~p~n", [down(S1)]),
    {ok, S2} = start(#{auto_shutdown => any_significant}, [spec(a, transient, true)]),
    pid_of(S2, a) ! {stop, boom}, io:format("any_transient_abnormal ~p~n", [down(S2)]),
    pid_of(S2, a) ! {stop, shutdown}, io:format("any_transient_shutdown ~p~n", [down(S2)]),
    {ok, S3} = start(#{auto_shutdown => all_significant},
                     [spec(a, temporary, true), spec(b, temporary, true), spec(c, permanent, false)]),
    pid_of(S3, a) ! {stop, normal}, io:format("all_first ~p~n", [down(S3)]),
    pid_of(S3, b) ! {stop, crash}, io:format("all_second ~p~n", [down(S3)]),
    {ok, S4} = start(#{auto_shutdown => any_significant}, [spec(a, temporary, true), spec(b, permanent, false)]),
    ok = supervisor:terminate_child(S4, a), io:format("terminate_child ~p~n", [down(S4)]),
    {ok, S5} = start(#{auto_shutdown => any_significant, strategy => one_for_all},
                     [spec(a, temporary, true), spec(b, permanent, false)]),
    pid_of(S5, b) ! {stop, crash}, io:format("one_for_all_sibling ~p~n", [down(S5)]),
    {error, {start_spec, {bad_combination, B1}}} = start(#{auto_shutdown => any_significant}, [spec(a, permanent, true)]),
    down(any),
    {error, {start_spec, {bad_combination, B2}}} = start(#{}, [spec(a, temporary, true)]),
    io:format("bad_permanent ~w~n", [B1]),
    io:format("bad_never ~w~n", [B2]).
"""
_KEYS = [
    "any_temporary_normal",
    "any_transient_abnormal",
    "any_transient_shutdown",
    "all_first",
    "all_second",
    "terminate_child",
    "one_for_all_sibling",
    "bad_permanent",
    "bad_never",
]


@pytest.fixture(scope="module")
def otp():
    return escript_trace(_ESCRIPT, _KEYS)


@pytest.fixture
def me():
    actors.trap_exit(True)
    yield actors.self()
    actors.trap_exit(False)


def _down(sup, timeout=0.15):
    msg = actors.receive(
        lambda m: isinstance(m, tuple) and len(m) == 3 and m[0] == "EXIT" and m[1] == sup, timeout, default=TIMEOUT
    )
    return "alive" if msg is TIMEOUT else msg[2]


def _pid(sup, cid):
    return next(c.pid for c in supervision.which_children(sup) if c.id == cid)


def _start(me, flags, *children):
    sup = supervision.start_link([worker_spec(cid, me, restart=r, significant=sig) for cid, r, sig in children], **flags)
    for cid, _r, _sig in children:
        expect_started(cid)
    return sup


def test_any_significant(otp, me):
    sup = _start(me, {"auto_shutdown": "any_significant"}, ("a", "temporary", True), ("b", "permanent", False))
    b = _pid(sup, "b")
    actors.send(_pid(sup, "a"), "stop")
    assert (_down(sup, 2), otp["any_temporary_normal"]) == ("shutdown", "shutdown")
    assert not actors.is_alive(b)  # its children are shut down with it

    sup = _start(me, {"auto_shutdown": "any_significant"}, ("a", "transient", True))
    actors.send(_pid(sup, "a"), ("crash",))  # abnormal: a transient child is restarted
    expect_started("a")
    assert (_down(sup), otp["any_transient_abnormal"]) == ("alive", "alive")
    actors.send(_pid(sup, "a"), ("exit", "shutdown"))
    assert (_down(sup, 2), otp["any_transient_shutdown"]) == ("shutdown", "shutdown")


def test_all_significant(otp, me):
    sup = _start(
        me,
        {"auto_shutdown": "all_significant"},
        ("a", "temporary", True),
        ("b", "temporary", True),
        ("c", "permanent", False),
    )
    actors.send(_pid(sup, "a"), "stop")
    assert (_down(sup), otp["all_first"]) == ("alive", "alive")
    actors.send(_pid(sup, "b"), ("crash",))  # a temporary child's crash ends it too
    assert (_down(sup, 2), otp["all_second"]) == ("shutdown", "shutdown")


def test_ends_the_supervisor_causes_do_not_count(otp, me):
    sup = _start(me, {"auto_shutdown": "any_significant"}, ("a", "temporary", True), ("b", "permanent", False))
    supervision.terminate_child(sup, "a")
    assert (_down(sup), otp["terminate_child"]) == ("alive", "alive")
    actors.exit(sup, "shutdown")
    _down(sup, 2)

    sup = _start(
        me, {"auto_shutdown": "any_significant", "strategy": "one_for_all"}, ("a", "temporary", True), ("b", "permanent", False)
    )
    actors.send(_pid(sup, "b"), ("crash",))
    expect_started("b")
    assert (_down(sup), otp["one_for_all_sibling"]) == ("alive", "alive")
    assert [c.id for c in supervision.which_children(sup)] == ["b"]  # the temporary sibling is gone
    actors.exit(sup, "shutdown")
    _down(sup, 2)


def test_bad_combinations_are_refused_before_anything_starts(otp, me):
    assert otp["bad_permanent"] == "[{restart,permanent},{significant,true}]"
    assert otp["bad_never"] == "[{auto_shutdown,never},{significant,true}]"
    with pytest.raises(ChildSpecError) as err:
        supervision.start_link([worker_spec("a", me, restart="permanent", significant=True)], auto_shutdown="any_significant")
    assert err.value.field == "significant"
    with pytest.raises(ChildSpecError) as err:
        supervision.start_link([worker_spec("a", me, restart="temporary", significant=True)])
    assert err.value.field == "significant"
    with pytest.raises(ChildSpecError) as err:
        supervision.start_link([], auto_shutdown="sometimes")
    assert err.value.field == "auto_shutdown"
    sup = supervision.start_link([])
    with pytest.raises(ChildSpecError):
        supervision.start_child(sup, worker_spec("z", me, restart="temporary", significant=True))
    dyn = supervision.DynamicSupervisor.start_link()
    with pytest.raises(ChildSpecError):
        supervision.start_child(dyn, worker_spec("z", me, restart="temporary", significant=True))
    assert not any(isinstance(m, tuple) and m[:1] == ("started",) for m in actors.flush())
    for pid in (sup, dyn):
        actors.exit(pid, "shutdown")
        _down(pid, 2)
    assert isinstance(sup, Pid)
