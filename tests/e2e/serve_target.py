"""A target for the phx-serve tests: an endpoint with default socket options."""

from transport import Channel, Endpoint, SocketHandler


class LobbyChannel(Channel):
    def join(self, topic, payload, socket):
        return ("ok", socket)

    def handle_in(self, event, payload, socket):
        return ("reply", ("ok", payload), socket)


class LobbySocket(SocketHandler):
    channels = [("lobby:*", LobbyChannel)]


endpoint = Endpoint("Serve.Endpoint", pubsub_server="Serve.PubSub", sockets=[("/socket", LobbySocket)])

not_an_endpoint = 42
