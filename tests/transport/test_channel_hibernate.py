"""Channel processes hibernate after ``hibernate_after`` ms idle, and behave the same after."""

from __future__ import annotations

import itertools

import pytest

import actors
from supervision import Application
from transport import Channel, Endpoint, SocketHandler, broadcast, push
from transport.pubsub import PubSub
from transport.testing import SocketClient

_ids = itertools.count()


class SleepyChannel(Channel):
    hibernate_after = 20

    def join(self, topic, payload, socket):
        return ("ok", {"pid": str(actors.self())}, socket)

    def handle_in(self, event, payload, socket):
        if event == "ping":
            return ("reply", ("ok", payload), socket)
        if event == "shout":
            broadcast(socket, "shout", payload)
            return ("noreply", socket)
        raise ValueError(event)

    def handle_info(self, msg, socket):
        push(socket, "info", {"msg": msg})
        return ("noreply", socket)

    def terminate(self, reason, socket):
        to = socket.assigns.get("watcher")
        if to is not None:
            actors.send(to, ("terminated", reason))


class NeverSleeps(SleepyChannel):
    hibernate_after = None


class LongSleeper(SleepyChannel):
    """Idle for a minute before hibernate_after: asleep sooner only through its join."""

    hibernate_after = 60_000


class AwakeAfterJoin(LongSleeper):
    hibernate_after_join = False


class AfterJoin(LongSleeper):
    """Phoenix's after_join idiom: the join sends the channel a message of its own."""

    def join(self, topic, payload, socket):
        actors.send(actors.self(), "after_join")
        return super().join(topic, payload, socket)


class SleepySocket(SocketHandler):
    channels = [
        ("sleepy:*", SleepyChannel),
        ("awake:*", NeverSleeps),
        ("long:*", LongSleeper),
        ("joinawake:*", AwakeAfterJoin),
        ("afterjoin:*", AfterJoin),
    ]

    def connect(self, params, socket, connect_info):
        return ("ok", socket.assign(watcher=actors.Pid.parse(params["watcher"])))


@pytest.fixture
def endpoint():
    n = next(_ids)
    pubsub = f"Hibernate.PubSub.{n}"
    ep = Endpoint(f"Hibernate.Endpoint.{n}", pubsub_server=pubsub, sockets=[("/socket", SleepySocket)])
    app = Application([PubSub.child_spec(name=pubsub), *ep.child_specs()])
    app.start()
    yield ep
    app.stop()


def _join(client, topic):
    client.send_json(["1", "1", topic, "phx_join", {}])
    join_ref, ref, got_topic, event, payload = client.receive_json()
    assert (event, payload["status"]) == ("phx_reply", "ok")
    return actors.Pid.parse(payload["response"]["pid"])


def _wait_until_hibernating(pid, timeout=2.0):
    for _ in range(int(timeout / 0.01)):
        if actors.process_info(pid)["hibernating"]:
            return
        actors.receive(lambda m: False, timeout=0.01, default=None)
    raise AssertionError(f"channel {pid} never hibernated: {actors.process_info(pid)}")


def test_an_idle_channel_hibernates_and_still_serves_everything(endpoint):
    client = SocketClient(endpoint, SleepySocket, params={"vsn": "2.0.0", "watcher": str(actors.self())})
    pid = _join(client, "sleepy:1")
    _wait_until_hibernating(pid)
    # handle_in with a reply wakes it, with its socket state intact.
    client.send_json(["1", "2", "sleepy:1", "ping", {"n": 1}])
    assert client.receive_json() == ["1", "2", "sleepy:1", "phx_reply", {"status": "ok", "response": {"n": 1}}]
    _wait_until_hibernating(pid)
    # handle_info from anyone wakes it.
    actors.send(pid, "hello")
    assert client.receive_json() == ["1", None, "sleepy:1", "info", {"msg": "hello"}]
    # A broadcast reaches the subscriber through the fastlane whether or not it sleeps.
    _wait_until_hibernating(pid)
    client.send_json(["1", "3", "sleepy:1", "shout", {"x": 1}])
    assert client.receive_json() == [None, None, "sleepy:1", "shout", {"x": 1}]
    # A hibernating channel still sees its transport go: normal -> {shutdown, closed}.
    _wait_until_hibernating(pid)
    ref = actors.monitor(pid)
    client.close()
    assert actors.receive(lambda m: isinstance(m, tuple) and m[0] == "terminated", 2) == ("terminated", ("shutdown", "closed"))
    down = actors.receive(lambda m: isinstance(m, tuple) and m[:2] == ("DOWN", ref), 2)
    assert down[4] == ("shutdown", "closed")


def test_leave_from_a_hibernating_channel(endpoint):
    client = SocketClient(endpoint, SleepySocket, params={"vsn": "2.0.0", "watcher": str(actors.self())})
    pid = _join(client, "sleepy:2")
    _wait_until_hibernating(pid)
    client.send_json(["1", "9", "sleepy:2", "phx_leave", {}])
    assert client.receive_json() == ["1", "9", "sleepy:2", "phx_reply", {"status": "ok", "response": {}}]
    assert client.receive_json() == ["1", "1", "sleepy:2", "phx_close", {}]
    assert actors.receive(lambda m: isinstance(m, tuple) and m[0] == "terminated", 2) == ("terminated", ("shutdown", "left"))
    client.close()


def test_hibernate_after_none_keeps_the_channel_awake(endpoint):
    client = SocketClient(endpoint, SleepySocket, params={"vsn": "2.0.0", "watcher": str(actors.self())})
    awake = _join(client, "awake:1")
    sleepy_ref = "2"
    client.send_json([sleepy_ref, sleepy_ref, "sleepy:3", "phx_join", {}])
    sleepy = actors.Pid.parse(client.receive_json()[4]["response"]["pid"])
    _wait_until_hibernating(sleepy)  # the other one had as long to fall asleep
    assert actors.process_info(awake)["hibernating"] is False
    assert Channel.hibernate_after == 15_000  # Phoenix's default
    client.close()


def test_a_channel_hibernates_as_soon_as_its_join_is_answered(endpoint):
    """Nothing to do after the join: the greenlet goes back at once, not after
    hibernate_after; the first message wakes it, and it then stays awake."""
    client = SocketClient(endpoint, SleepySocket, params={"vsn": "2.0.0", "watcher": str(actors.self())})
    pid = _join(client, "long:1")
    assert actors.process_info(pid)["hibernating"] is True
    client.send_json(["1", "2", "long:1", "ping", {"n": 1}])
    assert client.receive_json() == ["1", "2", "long:1", "phx_reply", {"status": "ok", "response": {"n": 1}}]
    assert actors.process_info(pid)["hibernating"] is False  # awake until hibernate_after
    client.send_json(["1", "3", "long:1", "phx_leave", {}])
    assert client.receive_json() == ["1", "3", "long:1", "phx_reply", {"status": "ok", "response": {}}]
    assert actors.receive(lambda m: isinstance(m, tuple) and m[0] == "terminated", 2) == ("terminated", ("shutdown", "left"))
    client.close()


def test_hibernate_after_join_false_and_hibernate_after_none_keep_it_awake(endpoint):
    client = SocketClient(endpoint, SleepySocket, params={"vsn": "2.0.0", "watcher": str(actors.self())})
    stays = _join(client, "joinawake:1")
    never = _join(client, "awake:2")
    asleep = _join(client, "long:2")  # joined last: the others had as long
    assert actors.process_info(asleep)["hibernating"] is True
    assert actors.process_info(stays)["hibernating"] is False
    assert actors.process_info(never)["hibernating"] is False
    assert Channel.hibernate_after_join is True
    client.close()


def test_a_join_that_messages_itself_is_served_before_any_sleep(endpoint):
    """A join that leaves a message waiting (after_join) still has it handled, and the
    channel serves the client afterwards."""
    client = SocketClient(endpoint, SleepySocket, params={"vsn": "2.0.0", "watcher": str(actors.self())})
    pid = _join(client, "afterjoin:1")
    assert client.receive_json() == ["1", None, "afterjoin:1", "info", {"msg": "after_join"}]
    client.send_json(["1", "2", "afterjoin:1", "ping", {"n": 2}])
    assert client.receive_json() == ["1", "2", "afterjoin:1", "phx_reply", {"status": "ok", "response": {"n": 2}}]
    assert actors.is_alive(pid)
    client.close()
