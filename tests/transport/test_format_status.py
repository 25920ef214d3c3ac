"""format_status on sockets and channels: what the debug shell and crash logs show.

A socket handler or a channel that defines ``format_status(status)`` decides what
``get_status`` (and so the shell's ``state()``) shows of it, as a GenServer's callback does
in OTP; ``get_state`` stays the raw state, as ``sys:get_state`` is.
"""

from __future__ import annotations

import itertools

import pytest

import actors
from supervision import Application
from transport import Channel, Endpoint, SocketHandler, debug_shell
from transport.pubsub import PubSub
from transport.testing import SocketClient

_ids = itertools.count()


def _redact(status):
    return {**status, "state": "<redacted>"}


class SecretChannel(Channel):
    def join(self, topic, payload, socket):
        return ("ok", socket.assign(api_key="s3cr3t"))

    def handle_in(self, event, payload, socket):
        return ("reply", ("ok", {"pid": str(actors.self())}), socket)

    def format_status(self, status):
        socket = status["state"]
        return {**status, "state": socket.assign(api_key="[FILTERED]")}


class SecretSocket(SocketHandler):
    channels = [("room:*", SecretChannel)]  # noqa: RUF012 - SocketHandler's own API

    def connect(self, params, socket, connect_info):
        return ("ok", socket.assign(token=params["token"]))

    def format_status(self, status):
        state = dict(status["state"])
        state["handler"] = state["handler"] + " (redacted)"
        return {**status, "state": state}


@pytest.fixture
def endpoint():
    n = next(_ids)
    ep = Endpoint(f"Fmt.Endpoint.{n}", pubsub_server=f"Fmt.PubSub.{n}", sockets=[("/socket", SecretSocket)])
    app = Application([PubSub.child_spec(name=ep.pubsub_server), *ep.child_specs()])
    app.start()
    yield ep
    app.stop()


def test_a_channels_format_status_hides_its_assigns_from_tools_not_from_get_state(endpoint):
    client = SocketClient(endpoint, SecretSocket, params={"vsn": "2.0.0", "token": "t0k3n"})
    client.send_json(["1", "1", "room:a", "phx_join", {}])
    assert client.receive_json()[4]["status"] == "ok"
    client.send_json(["1", "2", "room:a", "whoami", {}])
    channel = actors.Pid.parse(client.receive_json()[4]["response"]["pid"])
    shell = debug_shell.Shell(actors.whereis(endpoint.pool_name(SecretSocket)), state_timeout=1)
    shown = shell.state(channel)
    assert shown.assigns["api_key"] == "[FILTERED]"
    assert actors.get_state(channel).assigns["api_key"] == "s3cr3t"


def test_a_socket_handlers_format_status_shapes_the_transports_status(endpoint):
    client = SocketClient(endpoint, SecretSocket, params={"vsn": "2.0.0", "token": "t0k3n"})
    assert actors.get_status(client.pid)["state"]["handler"] == "SecretSocket (redacted)"
    assert actors.get_state(client.pid)["handler"] == "SecretSocket"
