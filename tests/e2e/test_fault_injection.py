"""Faults while broadcasts flow: random channel, transport and PubSub shard processes are
killed; afterwards nothing is left behind.

The server runs in this hub (``inproc_server``) with 16 raw clients, each joined to two
topics and reading everything it is sent; a broadcaster sends 400 broadcasts while a
chaos process kills a random channel, transport or shard every few milliseconds. Once
every client is closed: no process outlived them (checked by ``serve_in_hub``), no
subscription, name, outbound queue or idle-transport entry remains, the event loop holds
no more active watchers (timers, sockets) than before, and the hub printed no error.
Bounded: a fixed number of broadcasts and kills, every wait with a deadline.
"""

from __future__ import annotations

import random
import time

import gevent
from inproc_server import RawV2Client, serve_in_hub

import actors
from supervision import which_children
from transport import Broadcast, Channel, SocketHandler, _transport, dispatch
from transport import pubsub as ps

TOPICS = ("room:fault", "room:fault2")


class FaultChannel(Channel):
    def join(self, topic, payload, socket):
        return ("ok", socket)


class FaultSocket(SocketHandler):
    channels = [("room:*", FaultChannel)]  # noqa: RUF012 - SocketHandler's own API


class DrainingClient(RawV2Client):
    """Joins, then reads (and drops) whatever comes until the server closes the socket."""

    def _read_response(self) -> bytes:
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            assert chunk, head
            head += chunk
        return head.split(b"\r\n", 1)[0]

    def drain(self) -> None:
        self.sock.settimeout(None)
        try:
            while self.sock.recv(65536):
                pass
        except OSError:
            pass


def _channel_pids(pool_name: str) -> list:
    pool = actors.whereis(pool_name)
    if pool is None:
        return []
    return [c.pid for part in which_children(pool) if isinstance(part.pid, actors.Pid) for c in which_children(part.pid)]


def test_random_kills_while_broadcasting_leave_nothing_behind(monkeypatch):
    rng = random.Random(20261205)
    names_before = set(actors.registered())
    watchers_before = gevent.get_hub().loop.activecnt
    with serve_in_hub(monkeypatch, FaultSocket, "Fault", 10_000) as (port, baseline):
        new_names = set(actors.registered()) - names_before
        [pubsub_name] = [n for n in new_names if n.startswith("Fault.PubSub.") and n.count(".") == 2]
        [pool_name] = [n for n in new_names if n.endswith("FaultSocket.ChannelPool")]
        clients = []
        for _ in range(16):
            c = DrainingClient(port)
            for topic in TOPICS:
                c.join(topic)
            clients.append(c)
        readers = [gevent.spawn(c.drain) for c in clients]
        kills = {"channel": 0, "transport": 0, "shard": 0}

        def broadcaster():
            for i in range(400):
                topic = TOPICS[i % 2]
                ps.broadcast(pubsub_name, topic, Broadcast(topic=topic, event="tick", payload={"i": i}), dispatcher=dispatch)
                gevent.sleep(0.002)

        def chaos():
            for _ in range(60):
                kind = rng.choice(("channel", "transport", "shard"))
                if kind == "shard" and kills["shard"] >= 2:
                    kind = "channel"  # a third shard kill in 5 s would exceed the PubSub's restart intensity
                if kind == "channel":
                    victims = _channel_pids(pool_name)
                elif kind == "transport":
                    victims = _transport.stream_transports(FaultSocket)
                else:
                    victims = [p for p in ps.shards(pubsub_name) if p is not None]
                if victims:
                    actors.exit(rng.choice(victims), "kill")
                    kills[kind] += 1
                gevent.sleep(0.01)

        workers = [gevent.spawn(broadcaster), gevent.spawn(chaos)]
        gevent.joinall(workers, timeout=30, raise_error=True)
        assert all(w.dead for w in workers)
        assert all(kills.values()), kills  # each kind of fault happened
        # Restarted shards are the PubSub's own, not something the connections left.
        baseline |= {p for p in ps.shards(pubsub_name) if p is not None}
        for c in clients:
            c.sock.close()
        gevent.joinall(readers, timeout=10)
        deadline = time.monotonic() + 5
        while (ps.topics(pubsub_name) or _transport._outbound) and time.monotonic() < deadline:
            gevent.sleep(0.01)
        assert ps.topics(pubsub_name) == []
        assert _transport._outbound == {} and _transport._idle_transports == {}
    assert set(actors.registered()) == names_before
    gevent.sleep(0.05)  # closed sockets' watchers are released on the next loop turn
    assert gevent.get_hub().loop.activecnt <= watchers_before
