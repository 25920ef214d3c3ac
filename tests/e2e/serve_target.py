"""A target for the phx-serve tests: an endpoint with default socket options."""

from transport import Channel, Endpoint, SocketHandler


class LobbyChannel(Channel):
    def join(self, topic, payload, socket):
        return ("ok", socket)

    def handle_in(self, event, payload, socket):
        return ("reply", ("ok", payload), socket)


class LobbySocket(SocketHandler):
    channels = [("lobby:*", LobbyChannel)]

    def connect(self, params, socket, connect_info):
        # A client may prove it holds a token signed with the endpoint's secret.
        if "token" in params:
            from transport import token

            if token.verify(socket, "user socket", params["token"]) != ("ok", "alice"):
                return "error"
        return ("ok", socket)


endpoint = Endpoint("Serve.Endpoint", pubsub_server="Serve.PubSub", sockets=[("/socket", LobbySocket)])

not_an_endpoint = 42


def _crash_at_once():
    raise RuntimeError("this worker always crashes")


def _start_crasher():
    import actors

    return actors.spawn_link(_crash_at_once)


def crashing(server):
    """An application whose tree gives up: a permanent worker that always crashes."""
    from transport.pubsub import PubSub

    return [
        PubSub.child_spec(name=endpoint.pubsub_server),
        *endpoint.child_specs(server=server),
        {"id": "crasher", "start": _start_crasher},
    ]
