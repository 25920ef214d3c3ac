"""The operator's debug shell: each command in-process, then over the backdoor (Unix socket, loopback)."""

from __future__ import annotations

import io
import itertools
import logging
import os
import re
import socket
import stat
import struct
import time
from types import SimpleNamespace

import gevent
import gevent.socket
import pytest
from channel_app import UserSocket

import actors
from actors import _runtime
from supervision import Application
from transport import Endpoint, debug_shell
from transport import pubsub as pubsub_api
from transport.pubsub import PubSub
from transport.testing import SocketClient

_ids = itertools.count()


@pytest.fixture
def system():
    n = next(_ids)
    pubsub_name = f"Shell.PubSub.{n}"
    ep = Endpoint(f"Shell.Endpoint.{n}", pubsub_server=pubsub_name, sockets=[("/socket", UserSocket)])
    app = Application([PubSub.child_spec(name=pubsub_name, pool_size=2), *ep.child_specs()])
    app.start()
    yield SimpleNamespace(app=app, endpoint=ep, pubsub=pubsub_name, root=app.pid)
    app.stop()


@pytest.fixture
def shell(system):
    return debug_shell.Shell(system.root, state_timeout=0.3)


_refs = itertools.count(1)


def connect(system):
    return SocketClient(system.endpoint, UserSocket, params={"vsn": "2.0.0"})


def join(client, topic):
    ref = str(next(_refs))
    client.send_json([ref, ref, topic, "phx_join", {}])
    reply = client.receive_json()
    assert reply[3] == "phx_reply" and reply[4]["status"] == "ok", reply
    return ref


def channel_of(client, topic):
    for info in map(actors.process_info, actors.processes()):
        if info and info["label"] == ("channel", topic) and ("process", client.pid) in info["monitors"]:
            return info["pid"]
    raise AssertionError(f"no channel for {topic}")


def stuck_process():
    """A process that never takes a message off its queue (so it never answers get_state)."""
    pid = actors.spawn(actors.receive, lambda m: m == "never sent")
    gevent.sleep(0)  # let it reach its receive
    return pid


def walk(node):
    yield node
    for child in node["children"] or ():
        yield from walk(child)


# -- help, tree --------------------------------------------------------------------------------


def test_help_lists_every_command(shell, capsys):
    assert shell.help() is None
    out = capsys.readouterr().out
    for name in debug_shell.Shell.COMMANDS:
        assert f"  {name}(" in out
    assert "procs(sort='queue', n=20)" in out and "trace(pid, n=20, seconds=10)" in out


def test_tree_shows_supervisors_children_counts_and_restarts(system, shell, capsys):
    client = connect(system)
    join(client, "room:lobby")
    channel = channel_of(client, "room:lobby")

    node = shell.tree()

    assert node["pid"] == system.root and node["supervisor"] == "Supervisor"
    assert node["counts"] == {"specs": 3, "active": 3, "supervisors": 2, "workers": 1}
    assert node["restarts"] == {"recent": 0, "total": 0, "max_restarts": 3, "max_seconds": 5}
    pubsub = next(c for c in node["children"] if c["id"] == system.pubsub)
    assert pubsub["supervisor"] == "PubSub" and pubsub["name"] == system.pubsub
    assert [c["label"] for c in pubsub["children"] if c["pid"] is not None][:2] == [
        ("pubsub_shard", system.pubsub, 0),
        ("pubsub_shard", system.pubsub, 1),
    ]
    partitions = [n for n in walk(node) if n["supervisor"] == "DynamicSupervisor"]
    assert partitions and all(p["counts"]["workers"] == len(p["children"]) for p in partitions)
    channels = [n for n in walk(node) if n["label"] == ("channel", "room:lobby")]
    assert [c["pid"] for c in channels] == [channel]

    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith(f"{system.root}  Supervisor one_for_one  [3/3 active, 2 sup, 1 wrk]")
    assert f"── {pubsub['pid']}  {system.pubsub}" in out
    assert f"{channel}  ('channel', 'room:lobby')  waiting" in out
    assert "restarts 0/3 in 5s, 0 total" in out
    assert "total since the supervisor started" in out


def test_tree_counts_restarts_in_the_intensity_window(system, shell):
    shard = pubsub_api.shards(system.pubsub)[0]
    actors.exit(shard, "kill")
    node = shell.tree()
    pubsub = next(c for c in node["children"] if c["id"] == system.pubsub)
    assert pubsub["restarts"]["recent"] == 1
    assert pubsub["restarts"]["total"] == 1
    assert node["restarts"]["recent"] == 0


def test_tree_limits_the_children_it_prints(system, shell, capsys):
    node = shell.tree(limit=1)
    out = capsys.readouterr().out
    assert "... 2 more (tree(limit=...) shows more)" in out
    assert len(node["children"]) == 3  # the data is whole


def test_tree_needs_a_supervisor(system, capsys):
    assert debug_shell.Shell().tree() is None
    assert debug_shell.Shell().tree(actors.whereis(system.pubsub)) is not None
    stuck = stuck_process()
    assert debug_shell.Shell(stuck, state_timeout=0.05).tree() is None
    out = capsys.readouterr().out
    assert "error: tree: no application root known" in out
    assert f"error: tree: {stuck} is not a supervisor" in out
    actors.exit(stuck, "kill")


# -- processes -----------------------------------------------------------------------------------


def test_procs_sorts_by_queue_length(system, shell, capsys):
    stuck = stuck_process()
    queue = 1 + max(i["message_queue_len"] for i in map(actors.process_info, actors.processes()) if i)
    for k in range(queue):
        actors.send(stuck, k)
    rows = shell.procs(n=3)
    assert len(rows) == 3
    assert rows[0]["pid"] == stuck and rows[0]["queue"] == queue
    queues = [r["queue"] for r in rows]
    assert queues == sorted(queues, reverse=True)
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["pid", "name/label", "status", "queue", "links", "mons", "mon_by", "initial", "call"]
    assert out[2].startswith(str(stuck)) and f" {queue} " in out[2]
    assert out[-1] == f"(3 of {len(actors.processes())} processes, sorted by queue)"
    actors.exit(stuck, "kill")


def test_procs_sorts_by_links_and_monitors(system, shell, capsys):
    rows = shell.procs(sort="links", n=None)
    assert [r["links"] for r in rows] == sorted((r["links"] for r in rows), reverse=True)
    assert len(rows) == len(actors.processes())
    rows = shell.procs(sort="monitors", n=5)
    assert [r["monitors"] for r in rows] == sorted((r["monitors"] for r in rows), reverse=True)
    names = {r["pid"]: r["name"] for r in shell.procs(sort="pid", n=None)}
    assert names[actors.whereis(system.pubsub)] == system.pubsub
    capsys.readouterr()
    assert shell.procs(sort="memory") is None
    assert shell.procs(n=-1) is None
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("error: procs: sort must be one of 'queue'")
    assert out[1].startswith("error: procs: n must be")


def test_info_takes_pids_as_objects_strings_numbers_and_names(system, shell, capsys):
    pubsub_pid = actors.whereis(system.pubsub)
    number = int(str(pubsub_pid)[3:-3])
    for ref in (pubsub_pid, str(pubsub_pid), str(pubsub_pid)[1:-1], number, system.pubsub):
        info = shell.info(ref)
        assert info["pid"] == pubsub_pid and info["registered_name"] == system.pubsub
    out = capsys.readouterr().out
    assert re.search(rf"registered_name +{re.escape(system.pubsub)}", out)
    assert "current_stacktrace" in out and "innermost last" in out


def test_info_can_show_the_queue(shell, capsys):
    stuck = stuck_process()
    actors.send(stuck, ("hello", 1))
    info = shell.info(stuck, messages=True)
    assert info["messages"] == [("hello", 1)]
    assert "('hello', 1)" in capsys.readouterr().out
    actors.exit(stuck, "kill")


def test_bad_pids_print_one_line_and_return_none(system, shell, capsys):
    dead = actors.spawn(lambda: None)
    gevent.sleep(0)
    bad = ["<0.99999999.0>", "not a name", "<1.2.3>", -1, 3.5, None, dead]
    for value in bad:
        for command in (shell.info, shell.state, shell.kill, shell.trace, shell.channels):
            assert command(value) is None
    out = capsys.readouterr().out.splitlines()
    assert len(out) == len(bad) * 5
    assert all(line.startswith("error: ") for line in out)
    assert "error: info: <0.99999999.0> is not alive" in out
    assert "error: state: 'not a name' is neither a pid like '<0.12.0>' nor a registered name" in out
    assert f"error: kill: {dead} is not alive" in out
    assert any(line.startswith("error: trace: expected a pid") for line in out)


def test_state_of_a_supervisor_and_of_a_channel(system, shell, capsys):
    client = connect(system)
    join(client, "room:lobby")
    channel = channel_of(client, "room:lobby")
    sock = shell.state(channel)
    assert sock.topic == "room:lobby" and sock.transport_pid == client.pid and sock.channel_pid == channel
    assert "topic='room:lobby'" in capsys.readouterr().out
    sup = shell.state(system.root)
    assert type(sup).__name__ == "Supervisor"


def test_state_of_a_process_that_does_not_answer(shell, capsys):
    stuck = stuck_process()
    started = time.monotonic()
    assert shell.state(stuck, timeout=0.1) is None
    assert time.monotonic() - started < 1
    assert f"error: state: {stuck} did not answer get_status within 0.1s" in capsys.readouterr().out
    actors.exit(stuck, "kill")


def test_kill(system, shell, capsys):
    client = connect(system)
    jr = join(client, "room:lobby")
    channel = channel_of(client, "room:lobby")
    assert shell.kill(str(channel)) == {"pid": channel, "alive": False, "reason": "killed"}
    assert client.receive_json() == [jr, jr, "room:lobby", "phx_error", {}]
    assert f"{channel} exited: 'killed'" in capsys.readouterr().out

    stuck = stuck_process()
    assert shell.kill(stuck, "normal", timeout=0.05) == {"pid": stuck, "alive": True, "reason": None}
    assert shell.kill(stuck, "shutdown") == {"pid": stuck, "alive": False, "reason": "shutdown"}
    assert shell.kill(actors.self()) is None
    assert "this shell's own process; refusing" in capsys.readouterr().out


# -- PubSub --------------------------------------------------------------------------------------


def test_pubsubs_topics_and_subscribers(system, shell, capsys):
    a, b = connect(system), connect(system)
    join(a, "room:lobby")
    join(a, "room:other")
    join(b, "room:other")

    stats = shell.pubsubs()
    mine = next(s for s in stats if s["name"] == system.pubsub)
    assert mine["pool_size"] == 2 and mine["subscriptions"] == 3 and mine["topics"] == 2

    assert shell.topics(system.pubsub) == {"room:other": 2, "room:lobby": 1}
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[lines.index(f"PubSub {system.pubsub}") + 3].split() == ["room:other", "2", "2"]
    assert "(2 of 2 topics)" in out

    pids = shell.subscribers("room:other", pubsub=system.pubsub)
    assert sorted(pids) == sorted([channel_of(a, "room:other"), channel_of(b, "room:other")])
    out = capsys.readouterr().out
    assert "('channel', 'room:other')" in out and str(a.pid) in out and str(b.pid) in out
    assert shell.subscribers("room:nobody", pubsub=system.pubsub) == []


def test_the_pubsub_is_found_when_not_named(system, shell, capsys, monkeypatch):
    client = connect(system)
    join(client, "room:lobby")
    registered = actors.registered
    # only this test's names, whatever other tests may have left running
    monkeypatch.setattr(actors, "registered", lambda: [n for n in registered() if n.startswith("Shell.")])
    assert debug_shell._pubsub_names() == [system.pubsub]
    assert shell.topics() == {"room:lobby": 1}
    assert shell.subscribers("room:lobby") == [channel_of(client, "room:lobby")]
    assert "PubSubs running" not in capsys.readouterr().out

    with Application([PubSub.child_spec(name="Shell.Other.PubSub")]):
        assert debug_shell._pubsub_names() == [system.pubsub, "Shell.Other.PubSub"]
        assert shell.topics() == {"room:lobby": 1}
        assert shell.topics("Shell.Other.PubSub") == {}
        out = capsys.readouterr().out
        assert f"(PubSubs running: {system.pubsub}, Shell.Other.PubSub; using '{system.pubsub}'" in out


def test_an_unknown_pubsub_is_one_error_line(system, shell, capsys):
    assert shell.topics("No.Such.PubSub") is None
    assert shell.subscribers("t", pubsub="No.Such.PubSub") is None
    assert shell.broadcast("t", "e", {}, pubsub="No.Such.PubSub") is None
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"error: topics: no PubSub named 'No.Such.PubSub' is running (running: {system.pubsub})"
    assert len(out) == 3


def test_broadcast_reaches_sockets_through_the_channel_dispatcher(system, shell, capsys):
    client = connect(system)
    join(client, "room:lobby")
    assert shell.broadcast("room:lobby", "new_msg", {"body": "hi"}) == "ok"
    assert client.receive_json() == [None, None, "room:lobby", "new_msg", {"body": "hi"}]
    # an intercepted event goes to the channel process, whose handle_out pushes it
    assert shell.broadcast("room:lobby", "intercepted", {"n": 1}) == "ok"
    frame = client.receive_json()
    assert frame[2:] == ["room:lobby", "intercepted", {"n": 1, "intercepted": True}]
    assert "broadcast 'new_msg' to 'room:lobby'" in capsys.readouterr().out


# -- sockets and channels --------------------------------------------------------------------------


def test_sockets_lists_transports_with_their_channels(system, shell, capsys):
    a, b = connect(system), connect(system)
    join(a, "room:lobby")
    join(a, "room:other")
    join(b, "room:other")
    rows = {r["pid"]: r for r in shell.sockets()}
    assert rows[a.pid]["channels"] == {"room:lobby": channel_of(a, "room:lobby"), "room:other": channel_of(a, "room:other")}
    assert rows[b.pid]["channels"] == {"room:other": channel_of(b, "room:other")}
    assert rows[a.pid]["handler"] == "UserSocket" and rows[a.pid]["id"] is None
    out = capsys.readouterr().out
    assert "room:lobby, room:other" in out
    if rows[a.pid]["answered"]:  # the transport answers get_state with its snapshot
        assert rows[a.pid]["transport"] == "memory" and rows[a.pid]["serializer"] == "V2JSONSerializer"
    assert shell.sockets(peer="10.0.") == []


def test_a_transport_that_does_not_answer_shows_question_marks(shell, capsys):
    def fake_transport():
        actors.set_label(("socket", "FakeSocket", "user:7"))
        actors.receive(lambda m: m == "stop")

    def fake_channel(transport):
        actors.set_label(("channel", "room:fake"))
        actors.monitor(transport)
        actors.receive(lambda m: m == "stop")

    transport = actors.spawn(fake_transport)
    gevent.sleep(0)
    channel = actors.spawn(fake_channel, transport)
    gevent.sleep(0)
    quick = debug_shell.Shell(state_timeout=0.05)
    rows = [r for r in quick.sockets() if r["pid"] == transport]
    assert rows == [
        {
            "pid": transport,
            "handler": "FakeSocket",
            "id": "user:7",
            "transport": None,
            "serializer": None,
            "peer": None,
            "path": None,
            "channels": {"room:fake": channel},
            "bytes_in": None,
            "bytes_out": None,
            "frames_in": None,
            "frames_out": None,
            "outbound": None,
            "answered": False,
        }
    ]
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.startswith(str(transport)))
    assert line.split() == [str(transport), "FakeSocket", "user:7", "?", "?", "?", "room:fake", "-", "?/?", "?/?"]
    assert "did not answer get_state within 0.05s" in out
    assert quick.channels(transport) == {"room:fake": channel}
    for pid in (transport, channel):
        actors.exit(pid, "kill")


def test_channels_of_a_socket(system, shell, capsys):
    client = connect(system)
    jr = join(client, "room:lobby")
    channel = channel_of(client, "room:lobby")
    assert shell.channels(client.pid) == {"room:lobby": channel}
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("room:lobby"))
    assert row.split()[:5] == ["room:lobby", str(channel), "waiting", "0", jr]
    assert "'user_id'" in row
    assert shell.channels(channel) is None
    assert "is not a socket's transport process; it is the channel of 'room:lobby'" in capsys.readouterr().out


# -- trace -----------------------------------------------------------------------------------------


def test_trace_prints_messages_then_stops_and_turns_tracing_off(system, shell, capsys):
    client = connect(system)
    jr = join(client, "room:lobby")
    procs_before = set(actors.processes())
    tracing_before = _runtime._tracing
    gevent.spawn_later(0.02, client.send_json, [jr, "9", "room:lobby", "ping", {"a": 1}])

    events = shell.trace(client.pid, n=3, seconds=5)

    assert [e[2] for e in events] == ["receive", "send", "receive"]
    assert events[0][3][2] == '["' + jr + '","9","room:lobby","ping",{"a":1}]'
    assert events[1][4] == channel_of(client, "room:lobby")
    assert _runtime._tracing == tracing_before
    gevent.sleep(0)
    assert set(actors.processes()) <= procs_before | {client.pid}  # the helper is gone
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"tracing {client.pid} for at most 3 messages or 5s"
    assert f"{client.pid} << ('$frame', 'text'" in out[1]
    assert f"{client.pid} -> {events[1][4]}: Message(topic='room:lobby', event='ping'" in out[2]
    assert out[-1] == "tracing stopped: n=3 reached; 3 message(s)"
    client.receive_json()  # the pong


def test_trace_is_bounded_in_time(system, shell, capsys):
    stuck = stuck_process()
    tracing_before = _runtime._tracing
    started = time.monotonic()
    assert shell.trace(stuck, n=5, seconds=0.1) == []
    assert time.monotonic() - started < 1
    assert capsys.readouterr().out.splitlines()[-1] == "tracing stopped: 0.1s passed; 0 message(s)"
    actors.send(stuck, "after")  # no tracer is left to receive it
    assert _runtime._tracing == tracing_before
    actors.exit(stuck, "kill")


def test_trace_ends_when_the_process_exits(shell, capsys):
    stuck = stuck_process()
    gevent.spawn_later(0.02, actors.send, stuck, "last words")
    gevent.spawn_later(0.04, actors.exit, stuck, "kill")
    events = shell.trace(stuck, n=5, seconds=5)
    assert events == [("trace", stuck, "receive", "last words")]
    assert capsys.readouterr().out.splitlines()[-1] == f"tracing stopped: {stuck} exited: 'killed'; 1 message(s)"


def test_trace_rejects_bad_bounds(shell, capsys):
    stuck = stuck_process()
    assert shell.trace(stuck, n=0) is None
    assert shell.trace(stuck, seconds=-1) is None
    out = capsys.readouterr().out.splitlines()
    assert out == ["error: trace: n must be an int >= 1; got 0", "error: trace: seconds must be a number > 0; got -1"]
    actors.exit(stuck, "kill")


# -- addresses -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "addr, family, sockaddr, canonical",
    [
        ("unix:/run/app/shell.sock", socket.AF_UNIX, "/run/app/shell.sock", "unix:/run/app/shell.sock"),
        ("127.0.0.1:0", socket.AF_INET, ("127.0.0.1", 0), "127.0.0.1:0"),
        ("localhost:4001", socket.AF_INET, ("127.0.0.1", 4001), "127.0.0.1:4001"),
        ("[::1]:4001", socket.AF_INET6, ("::1", 4001), "[::1]:4001"),
    ],
)
def test_addresses(addr, family, sockaddr, canonical):
    assert debug_shell.parse_address(addr) == (family, sockaddr, canonical)
    assert debug_shell.check_address(addr) == canonical


@pytest.mark.parametrize(
    "addr, message",
    [
        ("0.0.0.0:4001", "not a loopback address"),
        ("10.1.2.3:4001", "not a loopback address"),
        ("192.168.1.1:0", "not a loopback address"),
        ("[::]:0", "not a loopback address"),
        ("example.com:4001", "listens only on a Unix socket or on loopback"),
        ("4001", "is not 'unix:PATH'"),
        ("unix:", "needs a path"),
        ("127.0.0.1:70000", "port must be 0..65535"),
        ("", "must be 'unix:PATH'"),
    ],
)
def test_other_addresses_are_refused(addr, message):
    with pytest.raises(ValueError, match=message):
        debug_shell.serve(addr)
    with pytest.raises(ValueError, match=message):
        debug_shell.check_address(addr)
    err = io.StringIO()
    assert debug_shell.attach(addr, "1", stderr=err) == 1
    assert message in err.getvalue()


# -- over the backdoor -----------------------------------------------------------------------------


def attach(addr, command=None, **kwargs):
    """Run attach in a real thread (the backdoor is served by this thread's hub)."""
    out, err = io.StringIO(), io.StringIO()
    rc = gevent.get_hub().threadpool.spawn(debug_shell.attach, addr, command, stdout=out, stderr=err, **kwargs).get(timeout=20)
    return rc, out.getvalue(), err.getvalue()


def wait_idle(server):
    deadline = time.monotonic() + 3
    while len(server.pool) and time.monotonic() < deadline:
        gevent.sleep(0.01)
    assert not len(server.pool)
    gevent.sleep(0)


def test_unix_socket_is_private_and_runs_commands(system, tmp_path):
    path = tmp_path / "shell.sock"
    server = debug_shell.serve(f"unix:{path}", root_pid=system.root)
    try:
        mode = os.stat(path).st_mode
        assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
        assert server.address == str(path) and server.attach_address == f"unix:{path}"
        before = set(actors.processes())

        rc, out, err = attach(server.attach_address, "procs(n=3)")

        assert (rc, err) == (0, "")
        lines = out.splitlines()
        assert lines[0].split()[:4] == ["pid", "name/label", "status", "queue"]
        assert len(lines) == 6 and lines[-1].startswith("(3 of ")
        assert ">>>" not in out and "'initial_call'" not in out  # the returned rows are not echoed
        wait_idle(server)
        assert set(actors.processes()) <= before  # the session's process ended with it
    finally:
        server.stop()
    assert not path.exists()


def test_loopback_tcp_with_port_0(system):
    client = connect(system)
    join(client, "room:lobby")
    server = debug_shell.serve("127.0.0.1:0", root_pid=system.root)
    try:
        host, port = server.address[:2]
        assert host == "127.0.0.1" and port > 0 and server.attach_address == f"127.0.0.1:{port}"
        rc, out, _ = attach(server.attach_address, "tree()")
        assert rc == 0 and out.startswith(f"{system.root}  Supervisor one_for_one")
        rc, out, _ = attach(server.attach_address, "x = topics(); sorted(x), type(root).__name__")
        assert rc == 0 and out.splitlines()[-1] == "(['room:lobby'], 'Pid')"
        rc, out, _ = attach(server.attach_address, f"channels('{client.pid}')")
        assert rc == 0 and "room:lobby" in out
    finally:
        server.stop()
    local = debug_shell.serve("localhost:0")
    try:
        assert local.address[0] == "127.0.0.1"
    finally:
        local.stop()


def test_ipv6_loopback_when_the_host_has_it():
    try:
        server = debug_shell.serve("[::1]:0")
    except OSError:
        return  # no IPv6 on this host: parse_address is covered by test_addresses
    try:
        assert server.attach_address == f"[::1]:{server.address[1]}"
        assert attach(server.attach_address, "1 + 1")[:2] == (0, "2\n")
    finally:
        server.stop()


@pytest.fixture
def tcp_server(system):
    server = debug_shell.serve("127.0.0.1:0", root_pid=system.root)
    yield server
    server.stop()


@pytest.mark.parametrize(
    "command, rc, expected",
    [
        ("print('ok')", 0, "ok\n"),
        ("1/0", 1, "ZeroDivisionError: division by zero"),
        ("1 +", 1, "SyntaxError"),
        ("info('<0.99999999.0>')", 1, "error: info: <0.99999999.0> is not alive\n"),
        ("raise actors.Exit('boom')", 1, "Exit: boom"),
        ("for i in range(2): print(i)", 0, "0\n1\n"),
        ("total = 0\nfor i in range(4):\n    total += i\nprint(total)", 0, "6\n"),
        ("x = procs(n=2); len(x)", 0, "\n2\n"),
        ("print('Traceback (most recent call last):')", 0, "Traceback"),
    ],
)
def test_attach_exit_codes(tcp_server, command, rc, expected):
    got_rc, out, err = attach(tcp_server.attach_address, command)
    assert (got_rc, err) == (rc, "")
    assert expected in out


def test_attach_reports_a_connection_that_fails(tmp_path):
    err = io.StringIO()
    assert debug_shell.attach(f"unix:{tmp_path}/none.sock", "1", stderr=err) == 1
    assert err.getvalue().startswith(f"attach: cannot connect to the debug shell at unix:{tmp_path}/none.sock: ")

    listener = socket.socket()  # accepts connections but never says anything
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    try:
        err = io.StringIO()
        port = listener.getsockname()[1]
        assert debug_shell.attach(f"127.0.0.1:{port}", "1", connect_timeout=0.1, stderr=err) == 1
        assert "no prompt from 127.0.0.1:" in err.getvalue()
    finally:
        listener.close()


def test_attach_times_out_on_a_command_that_runs_too_long(tcp_server):
    rc, _out, err = attach(tcp_server.attach_address, "import gevent; gevent.sleep(0.2)", timeout=0.05)
    assert rc == 1 and "no prompt within 0.05s" in err
    wait_idle(tcp_server)  # the server side ends quietly once the sleep is over


def test_attach_interactive_from_a_file_object(tcp_server):
    rc, out, err = attach(tcp_server.attach_address, stdin=io.StringIO("6 * 7\nprint('hi')\n"))
    assert (rc, err) == (0, "")
    assert out.startswith("greenphx debug shell")
    assert ">>> 42\n>>> hi\n>>> " in out


def test_attach_interactive_from_a_pipe(tcp_server):
    r, w = os.pipe()
    os.write(w, b"x = 5\nx * 3\n")
    os.close(w)
    with os.fdopen(r) as stdin:
        rc, out, err = attach(tcp_server.attach_address, stdin=stdin)
    assert (rc, err) == (0, "")
    assert ">>> >>> 15\n>>> " in out


def test_a_unix_path_that_is_not_a_socket_is_left_alone(tmp_path):
    path = tmp_path / "shell.sock"
    path.write_text("data")
    with pytest.raises(FileExistsError, match="exists and is not a socket"):
        debug_shell.serve(f"unix:{path}")
    assert path.read_text() == "data"


def test_a_stale_unix_socket_is_replaced_and_a_live_one_is_not(tmp_path):
    path = tmp_path / "shell.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()  # the file stays, nobody listens
    server = debug_shell.serve(f"unix:{path}")
    try:
        with pytest.raises(OSError, match="in use by a live server"):
            debug_shell.serve(f"unix:{path}")
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    finally:
        server.stop()


def _disconnect(address, data, reset, read_banner):
    conn = gevent.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.connect(address)
    if read_banner:
        conn.recv(4096)
    conn.sendall(data)
    if reset:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


@pytest.mark.parametrize("reset", [False, True], ids=["close", "reset"])
def test_an_abrupt_disconnect_leaves_no_traceback(system, tmp_path, capfd, caplog, reset):
    caplog.set_level(logging.INFO)
    tracing_before = _runtime._tracing
    server = debug_shell.serve(f"unix:{tmp_path}/s.sock", root_pid=system.root)
    key = "GREENPHX_SHELL_HALF_LINE"
    try:
        # half a line, then gone: nothing of it runs
        _disconnect(server.address, f"import os; os.environ['{key}'] = '1'".encode(), reset, read_banner=False)
        wait_idle(server)
        # gone while a command is still running: its output has nowhere to go
        _disconnect(server.address, b"import gevent; gevent.sleep(0.05); procs()\n", reset, read_banner=True)
        wait_idle(server)
        # gone in the middle of a bounded trace
        _disconnect(server.address, f"trace({system.root}, seconds=0.05)\n".encode(), reset, read_banner=True)
        wait_idle(server)
    finally:
        server.stop()
    assert key not in os.environ
    captured = capfd.readouterr()
    assert "Traceback" not in captured.err and "Traceback" not in captured.out
    assert "Error" not in captured.err
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert _runtime._tracing == tracing_before  # the trace cut short by the disconnect was turned off


@pytest.mark.parametrize("command, rc", [("print(1)", 0), ("1/0", 1), ("1 +", 1)])
def test_attach_reads_tracebacks_from_a_plain_gevent_backdoor(command, rc):
    from gevent.backdoor import BackdoorServer

    server = BackdoorServer(("127.0.0.1", 0))
    server.start()
    try:
        assert attach(f"127.0.0.1:{server.address[1]}", command)[0] == rc
    finally:
        server.stop()


def test_tree_says_what_a_child_without_a_process_is_and_where_sockets_are(system, shell, capsys):
    node = shell.tree()
    pubsub = next(c for c in node["children"] if c["id"] == system.pubsub)
    adapter = next(c for c in pubsub["children"] if c["pid"] is None)
    assert adapter["status"] == "no process"  # the local adapter's start returns ignore
    out = capsys.readouterr().out
    assert "not running" not in out
    assert "no process = the child's start returned ignore" in out
    assert "list them with sockets()" in out


def test_tracing_a_channel_points_at_its_socket_for_broadcasts(system, shell, capsys):
    client = connect(system)
    join(client, "room:lobby")
    channel = channel_of(client, "room:lobby")
    shell.trace(channel, n=1, seconds=0.2)
    out = capsys.readouterr().out
    assert f"trace({client.pid}) shows them" in out and "fastlane" in out
    shell.trace(client.pid, n=1, seconds=0.1)  # a socket: no such note
    assert "fastlane" not in capsys.readouterr().out


def test_long_names_keep_both_ends_in_procs(system, shell, capsys):
    name = "Demo.Endpoint.transport.demo.DemoSocket.ChannelPool.partition.1"
    assert debug_shell._short(name, 48, "middle") == "Demo.Endpoint...moSocket.ChannelPool.partition.1"
    pid = actors.spawn(lambda: actors.receive(lambda m: m == "stop"))
    actors.register(name, pid)
    actors.send(pid, "a")  # left queued, so it sorts first
    try:
        shell.procs(n=40)
        assert "Demo.Endpoint...moSocket.ChannelPool.partition.1" in capsys.readouterr().out
    finally:
        actors.exit(pid, "kill")
