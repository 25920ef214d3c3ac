"""The OTP pieces beyond call/cast: gen_server's asynchronous requests, ``via`` names,
Elixir's Registry, and ``format_status``.

Where the behaviour could differ between implementations, the test runs the same trace on
the real BEAM (``tests/erlang.py``) and asserts both.
"""

from __future__ import annotations

import logging

import gevent
import pytest
from erlang import erl_eval

import actors
from actors import TIMEOUT, CallExit, GenServer, Registry
from actors._registry import UnknownRegistryError


def _wait_down(ref, timeout=2.0):
    msg = actors.receive(lambda m: isinstance(m, tuple) and len(m) == 5 and m[0] == "DOWN" and m[1] == ref, timeout)
    return msg[4]


class Slow(GenServer):
    """Answers ('late', req) after `delay` s for 'slow' requests, else at once."""

    def init(self, delay):
        return ("ok", delay)

    def handle_call(self, request, from_, delay):
        if request[0] == "slow":
            actors.spawn(lambda: (gevent.sleep(delay), actors.reply(from_, ("late", request[1]))))
            return ("noreply", delay)
        return ("reply", ("ok", request[1]), delay)


# gen_server:send_request/2 and friends, OTP 25 (stdlib doc, gen_server): the same trace
# on the BEAM, with a process that speaks the '$gen_call' protocol by hand.
_ERL_ASYNC = """begin
  S = spawn(fun() ->
      receive {'$gen_call', From, R} -> timer:sleep(50), gen_server:reply(From, {late, R}) end,
      receive {'$gen_call', F2, R2} -> gen_server:reply(F2, {ok, R2}) end,
      receive {'$gen_call', F3, R3} -> timer:sleep(50), gen_server:reply(F3, {slow, R3}) end end),
  Id = gen_server:send_request(S, a),
  T = gen_server:receive_response(Id, 10),
  timer:sleep(100),
  Late = receive M -> {got, M} after 0 -> none end,
  Id2 = gen_server:send_request(S, b),
  self() ! hello,
  C = gen_server:check_response(receive hello -> hello end, Id2),
  W = gen_server:wait_response(Id2, 1000),
  Id3 = gen_server:send_request(S, c),
  W1 = gen_server:wait_response(Id3, 10),
  W2 = gen_server:wait_response(Id3, 1000),
  D = spawn(fun() -> ok end), timer:sleep(10),
  E = gen_server:wait_response(gen_server:send_request(D, x), 100),
  {T, Late, C, W, W1, W2, element(1, E), element(1, element(2, E))}
end"""


def test_async_requests_follow_otp_25():
    [erlang] = erl_eval([_ERL_ASYNC])
    assert erlang == "{timeout,none,no_reply,{reply,{ok,b}},timeout,{reply,{slow,c}},error,noproc}"
    server = Slow.start_link(0.05)
    # receive_response: a timeout abandons the request; the late reply is dropped.
    req = actors.send_request(server, ("slow", "a"))
    assert actors.receive_response(req, 0.01) == "timeout"
    gevent.sleep(0.1)
    assert actors.receive(timeout=0, default=TIMEOUT) is TIMEOUT  # no reply, no DOWN
    # check_response: any other message is 'no_reply'; wait_response takes the reply.
    req2 = actors.send_request(server, ("fast", "b"))
    actors.send(actors.self(), "hello")
    assert actors.check_response(actors.receive(lambda m: m == "hello", 1), req2) == "no_reply"
    assert actors.wait_response(req2, 1) == ("reply", ("ok", "b"))
    # wait_response: a timeout leaves the request active.
    req3 = actors.send_request(server, ("slow", "c"))
    assert actors.wait_response(req3, 0.01) == "timeout"
    assert actors.wait_response(req3, 1) == ("reply", ("late", "c"))
    # A dead server: an error naming the reason and the server.
    dead, ref = actors.spawn_monitor(lambda: None)
    _wait_down(ref)
    assert actors.wait_response(actors.send_request(dead, "x"), 0.1) == ("error", ("noproc", dead))
    assert actors.process_info(actors.self())["monitors"] == []  # every request's monitor is gone
    actors.stop(server)


def test_check_response_takes_the_reply_and_the_servers_death():
    server = Slow.start(0.01)
    req = actors.send_request(server, ("fast", 1))
    msg = actors.receive(timeout=1)
    assert actors.check_response(msg, req) == ("reply", ("ok", 1))
    req2 = actors.send_request(server, ("slow", 2))
    actors.exit(server, "kill")
    msg = actors.receive(timeout=1)
    assert actors.check_response(msg, req2) == ("error", ("killed", server))


def test_send_request_to_a_name_and_bad_request_ids():
    Slow.start_link(0.01, name="async_named")
    req = actors.send_request("async_named", ("fast", 3))
    assert actors.receive_response(req, 1) == ("reply", ("ok", 3))
    req = actors.send_request("async_nobody", "x")
    assert actors.receive_response(req, 1) == ("error", ("noproc", "async_nobody"))
    with pytest.raises(TypeError, match="RequestId"):
        actors.wait_response("nope", 0)
    actors.stop("async_named")


# --------------------------------------------------------------------------------------
# Registry and via names
# --------------------------------------------------------------------------------------


@pytest.fixture
def rooms():
    pid = Registry.start_link("unique", name="test.Rooms")
    yield "test.Rooms"
    actors.unlink(pid)
    actors.exit(pid, "shutdown")


@pytest.fixture
def topics():
    pid = Registry.start_link("duplicate", name="test.Topics", partitions=2)
    yield "test.Topics"
    actors.unlink(pid)
    actors.exit(pid, "shutdown")


def _registered(registry, key, value=None, *, announce):
    def body():
        actors.send(announce, Registry.register(registry, key, value))
        actors.receive()

    return actors.spawn_monitor(body)


def test_unique_registry_register_lookup_and_conflict(rooms):
    me = actors.self()
    pid, ref = _registered(rooms, "lobby", {"n": 1}, announce=me)
    status, owner = actors.receive(timeout=1)
    assert status == "ok" and owner == actors.whereis(rooms)
    assert Registry.lookup(rooms, "lobby") == [(pid, {"n": 1})]
    assert Registry.register(rooms, "lobby", 2) == ("error", ("already_registered", pid))
    assert Registry.keys(rooms, pid) == ["lobby"] and Registry.count(rooms) == 1
    assert Registry.lookup(rooms, "nowhere") == []


def test_keys_go_when_the_owner_dies(rooms):
    me = actors.self()
    pid, ref = _registered(rooms, "k", announce=me)
    actors.receive(timeout=1)
    actors.exit(pid, "kill")
    _wait_down(ref)
    # At once (reads skip dead owners), and from the table once the registry has the EXIT.
    assert Registry.lookup(rooms, "k") == [] and Registry.count(rooms) == 0
    assert Registry.register(rooms, "k", "mine")[0] == "ok"
    assert Registry.lookup(rooms, "k") == [(me, "mine")]
    gevent.sleep(0)
    assert pid not in actors.get_state(rooms).owners


def test_duplicate_registry_dispatch_unregister_and_select(topics):
    me = actors.self()
    a, _ = _registered(topics, "t", "a", announce=me)
    b, _ = _registered(topics, "t", "b", announce=me)
    actors.receive(timeout=1), actors.receive(timeout=1)
    Registry.register(topics, "t", "me1")
    Registry.register(topics, "t", "me2")  # the same key twice: two entries, as Elixir
    assert sorted(v for _p, v in Registry.lookup(topics, "t")) == ["a", "b", "me1", "me2"]
    assert Registry.keys(topics, me) == ["t", "t"] and Registry.values(topics, "t", me) == ["me1", "me2"]
    seen = []
    Registry.dispatch(topics, "t", lambda entries: seen.extend(entries))
    assert len(seen) == 4
    Registry.dispatch(topics, "empty", lambda entries: seen.append("called"))
    assert "called" not in seen  # no entries: the callback is not called
    assert Registry.match(topics, "t", lambda v: v.startswith("me")) == [(me, "me1"), (me, "me2")]
    assert {(k, v) for k, _p, v in Registry.select(topics)} == {("t", "a"), ("t", "b"), ("t", "me1"), ("t", "me2")}
    Registry.unregister(topics, "t")
    assert sorted(v for _p, v in Registry.lookup(topics, "t")) == ["a", "b"]
    assert actors.whereis(topics) not in actors.process_info(me)["links"]  # no keys left: unlinked
    assert Registry.count(topics) == 2


def test_unknown_registry_and_bad_options():
    with pytest.raises(UnknownRegistryError):
        Registry.lookup("no.such.registry", "k")
    with pytest.raises(ValueError, match="keys"):
        Registry.start_link("sometimes", name="x")
    with pytest.raises(ValueError, match="partitions"):
        Registry.start_link("unique", name="x", partitions=0)


class Room(GenServer):
    def handle_call(self, request, from_, state):
        return ("reply", (request, state), state)

    def handle_cast(self, request, state):
        return ("noreply", state)

    def handle_info(self, msg, state):
        return ("noreply", state)


def test_genserver_named_via_registry(rooms):
    name = ("via", Registry, (rooms, "room:1"))
    pid = Room.start_link("state1", name=name)
    assert actors.whereis(name) == pid
    assert Registry.lookup(rooms, "room:1") == [(pid, None)]
    assert actors.call(name, "hi") == ("hi", "state1")
    actors.cast(name, "ignored")
    with pytest.raises(actors.StartError) as info:
        Room.start_link("state2", name=name)
    assert info.value.reason == ("already_started", pid)
    actors.send(name, "a message")  # send accepts via names too
    actors.stop(name)
    assert actors.whereis(name) is None
    with pytest.raises(CallExit) as info:
        actors.call(name, "hi")
    assert info.value.why == "noproc"
    with pytest.raises(actors.RegistrationError):
        actors.send(name, "nobody")


def test_registry_in_a_supervision_tree():
    import supervision

    sup = supervision.start_link([(Registry, {"keys": "duplicate", "name": "test.TreeReg"})])
    assert Registry.register("test.TreeReg", "k", 1)[0] == "ok"
    assert Registry.lookup("test.TreeReg", "k") == [(actors.self(), 1)]
    Registry.unregister("test.TreeReg", "k")
    actors.unlink(sup)
    actors.stop(sup, "shutdown")
    with pytest.raises(UnknownRegistryError):
        Registry.lookup("test.TreeReg", "k")


# --------------------------------------------------------------------------------------
# format_status
# --------------------------------------------------------------------------------------


class Vault(GenServer):
    def init(self, secret):
        return ("ok", {"user": "ann", "token": secret})

    def handle_cast(self, msg, state):
        raise RuntimeError("crash with a secret in the state")

    def format_status(self, status):
        state = dict(status["state"])
        state["token"] = "[redacted]"
        return {**status, "state": state}


def test_format_status_redacts_get_status_and_crash_reports_but_not_get_state(caplog):
    pid = Vault.start("s3cr3t")
    assert actors.get_status(pid)["state"] == {"user": "ann", "token": "[redacted]"}
    assert actors.get_state(pid) == {"user": "ann", "token": "s3cr3t"}  # sys:get_state is raw
    ref = actors.monitor(pid)
    with caplog.at_level(logging.ERROR, logger="actors.gen_server"):
        actors.cast(pid, "boom")
        _wait_down(ref)
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "[redacted]" in text and "s3cr3t" not in text


class BrokenFormat(GenServer):
    def format_status(self, status):
        raise KeyError("oops")


def test_a_failing_format_status_hides_the_state(caplog):
    pid = BrokenFormat.start({"password": "hunter2"})
    status = actors.get_status(pid)
    assert "hunter2" not in repr(status) and "format_status failed" in status["state"]
    actors.stop(pid)


def test_formatted_status_is_a_hook_for_any_object():
    class SocketHandler:
        def format_status(self, status):
            return {**status, "state": {k: ("***" if k == "token" else v) for k, v in status["state"].items()}}

    shown = actors.formatted_status(SocketHandler(), {"state": {"token": "t", "room": "r"}})
    assert shown == {"state": {"token": "***", "room": "r"}}
    assert actors.formatted_status(object(), {"state": 1}) == {"state": 1}
