"""A test endpoint: sockets and channels exercising every rule of the protocol layer."""

from __future__ import annotations

import actors
from transport import Channel, SocketHandler, broadcast, broadcast_from, push, reply, socket_ref


class RoomChannel(Channel):
    intercept = ["intercepted"]

    def join(self, topic, payload, socket):
        name = topic.split(":", 1)[1]
        if name == "private":
            return ("error", {"reason": "unauthorized"})
        if name == "crash":
            raise RuntimeError("join crashed on purpose")
        if name == "bad":
            return ("okay", socket)
        if name == "reply":
            return ("ok", {"welcome": payload.get("name", "anon")}, socket)
        if payload.get("terminate_push"):
            socket = socket.assign(terminate_push=True)
        if payload.get("observer"):
            socket = socket.assign(observer=actors.Pid.parse(payload["observer"]))
        return ("ok", socket)

    def handle_in(self, event, payload, socket):
        if event == "ping":
            return ("reply", ("ok", {"pong": payload}), socket)
        if event == "status_only":
            return ("reply", "ok", socket)
        if event == "noreply":
            return ("noreply", socket)
        if event == "broadcast":
            broadcast(socket, "new_msg", payload)
            return ("noreply", socket)
        if event == "broadcast_or_raise":
            from transport import broadcast_or_raise

            broadcast_or_raise(socket, "new_msg", payload)
            return ("reply", "ok", socket)
        if event == "broadcast_from":
            broadcast_from(socket, "new_msg", payload)
            return ("noreply", socket)
        if event == "push":
            push(socket, "pushed", payload)
            return ("noreply", socket)
        if event == "crash":
            raise RuntimeError("handle_in crashed on purpose")
        if event == "stop":
            return ("stop", ("shutdown", "bye"), socket)
        if event == "stop_reply":
            return ("stop", ("shutdown", "bye"), ("ok", {"bye": True}), socket)
        if event == "stop_abnormal":
            return ("stop", "boom", socket)
        if event == "async":
            ref = socket_ref(socket)
            actors.spawn(lambda: reply(ref, ("ok", {"async": payload})))
            return ("noreply", socket)
        if event == "bad_return":
            return 42
        if event == "whoami":
            return ("reply", ("ok", {"pid": str(actors.self()), "transport": str(socket.transport_pid)}), socket)
        return ("noreply", socket)

    def handle_out(self, event, payload, socket):
        push(socket, event, {**payload, "intercepted": True})
        return ("noreply", socket)

    def handle_call(self, request, from_, socket):
        if request == "topic":
            return ("reply", socket.topic, socket)
        return ("reply", None, socket)

    def handle_cast(self, request, socket):
        push(socket, "cast", {"request": request})
        return ("noreply", socket)

    def handle_info(self, msg, socket):
        if msg == "push_me":
            push(socket, "pushed", {"from": "info"})
        return ("noreply", socket)

    def terminate(self, reason, socket):
        if socket.assigns.get("terminate_push"):
            push(socket, "goodbye", {})
        observer = socket.assigns.get("observer")
        if observer is not None:
            actors.send(observer, ("channel_terminated", socket.topic, reason))


class CustomChannel:
    """A channel that is not a Channel subclass: it speaks the join message protocol."""

    @classmethod
    def child_spec(cls, arg):
        return {"id": cls, "start": (cls._start_link, ()), "restart": "temporary"}

    @staticmethod
    def _start_link():
        def run():
            tag, payload, from_, socket = actors.receive(lambda m: isinstance(m, tuple) and m[0] == "Phoenix.Channel")
            actors.reply(from_, ("ok", {"custom": True, "payload": payload}))
            while True:
                actors.receive()

        return actors.spawn_link(run)


class UserSocket(SocketHandler):
    channels = [
        ("room:*", RoomChannel),
        ("custom:channel", CustomChannel),
        ("assigns:room", RoomChannel, {"assigns": {"extra": 1}}),
    ]

    def connect(self, params, socket, connect_info):
        if params.get("reject"):
            return "error"
        if params.get("ratelimit"):
            return ("error", "rate_limit")
        if params.get("garbage"):
            return 42
        return ("ok", socket.assign(user_id=params.get("user_id")))

    def id(self, socket):
        user = socket.assigns.get("user_id")
        return f"user_socket:{user}" if user else None


class LimitedSocket(SocketHandler):
    channels = [("room:*", RoomChannel)]
    max_channels_per_transport = 2


class TwoArgSocket(SocketHandler):
    channels = [("room:*", RoomChannel)]

    def connect(self, params, socket):
        return ("ok", socket.assign(two_arg=True))
