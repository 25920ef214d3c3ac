"""The Redis adapter: many nodes (OS processes, machines) on one Redis, never losing silently.

Put it in your tree (``pip install greenphx[redis]``)::

    from transport.pubsub import PubSub, RedisAdapter

    PubSub.child_spec(name="MyApp.PubSub", adapter=RedisAdapter,
                      url="redis://127.0.0.1:6379/0", node_name="web1")

or run ``phx-serve --pubsub redis://127.0.0.1:6379/0 --node-name web1``. Every node on
the same Redis and channel shares every topic. The wire format is phoenix_pubsub_redis
3.x's (see :mod:`._redis_codec`), so Phoenix nodes using ``Phoenix.PubSub.Redis`` on the
same channel share topics with greenphx nodes: set ``channel`` to
``"phx:Elixir.MyApp.PubSub.Adapter"`` (what Phoenix names it for a PubSub
``MyApp.PubSub``). docs/redis.md is the guide; every option and its default:

``url="redis://127.0.0.1:6379/0"``
    ``redis://[[user]:password@]host[:port][/db]``. Any option below may also be given as
    a query parameter (``?node_timeout=3&channel=phx:x``), which is how ``phx-serve``
    passes them; giving one both ways is an error.
``node_name=None``
    This node's name, unique among the nodes on the channel; default
    :func:`default_node_name` (``greenphx_<os pid>@<host>``). It travels as an atom.
``channel=None``
    The Redis channel; default ``phx:<adapter name>`` (``phx:MyApp.PubSub.Adapter``).
    Heartbeats use ``<channel>:nodes`` and name claims the keys ``<channel>:node:<name>``.
``compression_level=0``
    zlib level 0-9 for published terms (0: none, as Phoenix's default).
``publish_pool_size=5``
    Connections for publishing (Phoenix's ``redis_pool_size``). A broadcast runs its
    PUBLISH in the caller's greenlet on one of them.
``publish_timeout=5.0``
    Seconds a PUBLISH may take, waiting for a free connection included; then an error.
``connect_timeout=2.0``
    Seconds a TCP connect to Redis may take.
``heartbeat_interval=1.0``
    Seconds between a node's heartbeats (and refreshes of its name claim).
``node_timeout=5.0``
    A node not heard from for this long (while we are subscribed) is down. The name claim
    lives this long after a node stops refreshing it.
``reconnect_backoff_initial=0.05``, ``reconnect_backoff_max=2.0``
    The subscriber connection's reconnect delays in seconds: doubling from the first to
    the bound, each with jitter (a random 50-100 % of it).
``dispatchers=()``
    Custom dispatchers (module-level functions) this node delivers when another node
    sends them; the fastlane and the default dispatcher are always known.

What a caller sees, and what can be lost. Redis pub/sub keeps nothing: a message published
while a node is not subscribed never reaches that node. So:

* ``broadcast``/``broadcast_from`` first deliver to this node's subscribers (never waiting
  on Redis, whether it is up or not), then PUBLISH. They return ``'ok'`` only if Redis
  accepted the message **and** reported at least as many receivers as there are nodes
  this node knows to be up (every greenphx node heartbeats; Redis's PUBLISH reply counts
  the subscribed connections). Otherwise ``('error', reason)`` and the ``_or_raise`` forms
  raise: ``('redis', text)`` Redis refused or the connection failed; ``('redis_down',
  text)`` an earlier connect failed and the retry delay has not passed (no wait);
  ``('timeout', seconds)`` no connection freed up in time; ``('undelivered', {'receivers':
  n, 'expected': m})`` a node that is up was not subscribed when Redis handled it (it is
  reconnecting, or died less than ``node_timeout`` ago); ``('unencodable', text)`` the
  message has no Erlang term form. After an error, this node's subscribers have the
  message and some, none or all other nodes may have it: the caller decides whether to
  send again (receivers may then see it twice).
* ``direct_broadcast`` to a node this node has never heard of, or knows to be down, is
  ``('error', ('nodedown', node))``; otherwise as above.
* During an outage a node's subscribers still get what is broadcast on their own node;
  what other nodes broadcast meanwhile is lost for them, and each of those broadcasts was
  an error at its caller. A message in flight when Redis dies (accepted and counted, not
  yet written to a subscriber's socket) can still be lost after ``'ok'``: a window of a
  few microseconds per message that no pub/sub system without acknowledgements closes.
* Phoenix nodes do not heartbeat: they are known once they broadcast, never counted as
  expected receivers, never marked down.

Processes (under the PubSub's supervisor): the adapter's server (claims the node name,
heartbeats, watches the other nodes) and, linked to it, the subscriber, which reads the
channel, reconnects with backoff and delivers each message with ``local_broadcast`` in the
order Redis sent them (so each publisher's order holds). Counters and the node table are
in ``statistics(pubsub)["adapter_statistics"]`` and the debug shell's ``nodes()``; log
lines are written once per change of state (connected, disconnected, node up or down, a
new kind of bad message), never once per message.
"""

from __future__ import annotations

import logging
import os
import random
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

import gevent
import gevent.lock
import gevent.socket

import actors
from actors import TIMEOUT, GenServer, Pid

from ._adapter import BroadcastResult, Dispatcher, default_node_name
from ._api import OK, local_broadcast
from ._errors import UnknownPubSubError
from ._redis_codec import EXCEPT, ONLY, MessageError, WireCodec, builtin_dispatchers, dispatcher_name, heartbeat, read_heartbeat

__all__ = ["RedisAdapter"]

log = logging.getLogger("transport.pubsub.redis")

_DEFAULTS: dict[str, Any] = {
    "url": "redis://127.0.0.1:6379/0",
    "node_name": None,
    "channel": None,
    "compression_level": 0,
    "publish_pool_size": 5,
    "publish_timeout": 5.0,
    "connect_timeout": 2.0,
    "heartbeat_interval": 1.0,
    "node_timeout": 5.0,
    "reconnect_backoff_initial": 0.05,
    "reconnect_backoff_max": 2.0,
    "dispatchers": (),
}
_FLOATS = (
    "publish_timeout",
    "connect_timeout",
    "heartbeat_interval",
    "node_timeout",
    "reconnect_backoff_initial",
    "reconnect_backoff_max",
)
_INTS = ("compression_level", "publish_pool_size")
_STRS = ("node_name", "channel")
# Idle publisher connections are checked with a PING before reuse after this long, so a
# connection the server (or a proxy) closed meanwhile is replaced before the PUBLISH,
# never after it (when a retry could deliver twice).
_IDLE_CHECK = 30.0

# A name claim: take it if free, refresh it if ours, else answer the holder.
_CLAIM = """
local v = redis.call('GET', KEYS[1])
if v == false then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end
if v == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
return {v, redis.call('PTTL', KEYS[1])}
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# adapter_name -> the running node's state; instance ids outlive restarts of the PubSub
# in this OS process, so a restarted adapter re-claims its own name.
_nodes: dict[str, _Node] = {}
_instances: dict[str, str] = {}


def _redis() -> Any:
    try:
        import redis
        import redis.connection
    except ImportError:
        raise ImportError("RedisAdapter needs the redis package: pip install 'greenphx[redis]'") from None
    return redis


_connection_class: Any = None


def _connection() -> Any:
    """redis-py's Connection on gevent's socket, so it yields whether or not the stdlib is patched."""
    global _connection_class
    if _connection_class is None:
        redis = _redis()

        class GeventConnection(redis.connection.Connection):  # type: ignore[name-defined]
            def _connect(self) -> Any:
                sock = gevent.socket.create_connection((self.host, self.port), timeout=self.socket_connect_timeout)
                sock.setsockopt(gevent.socket.IPPROTO_TCP, gevent.socket.TCP_NODELAY, 1)
                sock.setsockopt(gevent.socket.SOL_SOCKET, gevent.socket.SO_KEEPALIVE, 1)
                sock.settimeout(self.socket_timeout)
                return sock

        _connection_class = GeventConnection
    return _connection_class


# ------------------------------------------------------------------------------------------
# Options
# ------------------------------------------------------------------------------------------


def _options(adapter_name: str, given: dict[str, Any]) -> dict[str, Any]:
    unknown = set(given) - set(_DEFAULTS)
    if unknown:
        raise TypeError(f"RedisAdapter: unknown option {min(unknown)!r} (it accepts {', '.join(sorted(_DEFAULTS))})")
    opts = {**_DEFAULTS, **given}
    url = opts["url"]
    if not isinstance(url, str):
        raise TypeError(f"RedisAdapter: url must be a str, got {type(url).__name__}")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "redis":
        raise ValueError(f"RedisAdapter: url must start with redis:// (TLS and unix sockets are not supported yet), got {url!r}")
    for key, values in urllib.parse.parse_qs(parts.query, keep_blank_values=True).items():
        if key not in _DEFAULTS or key in ("url", "dispatchers"):
            raise TypeError(f"RedisAdapter: unknown option {key!r} in the url's query")
        if key in given:
            raise TypeError(f"RedisAdapter: option {key!r} given twice (keyword and url query)")
        opts[key] = values[-1]
    opts["url"] = urllib.parse.urlunsplit(parts._replace(query=""))
    for key in _FLOATS:
        opts[key] = _number(key, opts[key], float)
        if opts[key] <= 0:
            raise ValueError(f"RedisAdapter: {key} must be > 0 seconds, got {opts[key]!r}")
    for key in _INTS:
        opts[key] = _number(key, opts[key], int)
    if not 0 <= opts["compression_level"] <= 9:
        raise ValueError(f"RedisAdapter: compression_level must be 0-9, got {opts['compression_level']!r}")
    if opts["publish_pool_size"] < 1:
        raise ValueError(f"RedisAdapter: publish_pool_size must be >= 1, got {opts['publish_pool_size']!r}")
    if opts["reconnect_backoff_max"] < opts["reconnect_backoff_initial"]:
        raise ValueError("RedisAdapter: reconnect_backoff_max must be >= reconnect_backoff_initial")
    if opts["node_timeout"] <= opts["heartbeat_interval"]:
        raise ValueError("RedisAdapter: node_timeout must be longer than heartbeat_interval")
    for key in _STRS:
        value = opts[key]
        if value is not None and (not isinstance(value, str) or not value):
            raise TypeError(f"RedisAdapter: {key} must be a non-empty str, got {value!r}")
    if opts["node_name"] is None:
        opts["node_name"] = default_node_name()
    if len(opts["node_name"]) > 255:
        raise ValueError("RedisAdapter: node_name travels as an atom: at most 255 characters")
    if opts["channel"] is None:
        opts["channel"] = f"phx:{adapter_name}"
    dispatchers = opts["dispatchers"]
    if not isinstance(dispatchers, (list, tuple)) or not all(callable(d) for d in dispatchers):
        raise TypeError("RedisAdapter: dispatchers must be a list of dispatcher functions")
    return opts


def _number(key: str, value: Any, kind: type) -> Any:
    if isinstance(value, str):
        try:
            return kind(value)
        except ValueError:
            raise ValueError(f"RedisAdapter: {key} must be a number, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not isinstance(value, int)):
        raise TypeError(f"RedisAdapter: {key} must be {'an int' if kind is int else 'a number'}, got {value!r}")
    return kind(value)


def _redacted(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    user = parts.username or ""
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:***@{host}{port}"))


# ------------------------------------------------------------------------------------------
# The publisher pool
# ------------------------------------------------------------------------------------------


class _ConnectFailed(Exception):
    """Redis could not be reached (as opposed to a command failing on a live connection)."""


class _Pool:
    """At most ``size`` connections, each used by one greenlet at a time."""

    def __init__(self, make: Callable[[], Any], size: int, timeout: float) -> None:
        self._make = make
        self._idle: list[Any] = []
        self._slots = gevent.lock.BoundedSemaphore(size)
        self.timeout = timeout
        self._last_used: dict[int, float] = {}

    def run(self, fn: Callable[[Any], Any]) -> Any:
        """``fn(connection)`` on a connected connection. Raises ``_ConnectFailed``,
        ``gevent.Timeout`` (no free connection), or what ``fn`` raised."""
        if not self._slots.acquire(timeout=self.timeout):
            raise gevent.Timeout(self.timeout)
        conn = None
        try:
            conn = self._idle.pop() if self._idle else self._make()
            if conn._sock is not None and _stale(conn):
                conn.disconnect()
            if conn._sock is None:
                self._connect(conn)
            elif time.monotonic() - self._last_used.get(id(conn), 0.0) > _IDLE_CHECK:
                try:
                    conn.send_command("PING", check_health=False)
                    conn.read_response()
                except Exception:  # noqa: BLE001 - any failure: a fresh connection
                    conn.disconnect()
                    self._connect(conn)
            result = fn(conn)
        except BaseException:
            # Killed or failed mid-command: the reply may still come; never reuse it.
            if conn is not None:
                conn.disconnect()
            raise
        finally:
            if conn is not None:
                self._last_used[id(conn)] = time.monotonic()
                self._idle.append(conn)
            self._slots.release()
        return result

    @staticmethod
    def _connect(conn: Any) -> None:
        try:
            conn.connect()
        except Exception as e:  # noqa: BLE001 - redis-py wraps OSErrors in ConnectionError
            conn.disconnect()
            raise _ConnectFailed(_describe(e)) from None

    def close(self) -> None:
        for conn in self._idle:
            conn.disconnect()
        self._idle.clear()


def _stale(conn: Any) -> bool:
    """An idle connection with something to read is closed (EOF) or out of step: replace it.

    This is how a connection to a Redis that restarted is noticed before the PUBLISH is
    written to it (one non-blocking read, a few microseconds)."""
    try:
        return bool(conn.can_read(timeout=0))
    except Exception:  # noqa: BLE001 - "Connection closed by server" and friends
        return True


def _describe(e: BaseException) -> str:
    text = str(e) or type(e).__name__
    return text if len(text) <= 200 else text[:200] + "..."


def _publish_on(channel: str, data: bytes) -> Callable[[Any], Any]:
    redis = _redis()

    def publish(conn: Any) -> Any:
        conn.send_packed_command(conn.pack_command("PUBLISH", channel, data), check_health=False)
        try:
            return conn.read_response()
        except redis.ResponseError as e:  # Redis answered with an error: the connection is fine
            return e

    return publish


# ------------------------------------------------------------------------------------------
# One node's state
# ------------------------------------------------------------------------------------------


class _Peer:
    """Another node as this one sees it."""

    __slots__ = ("heartbeats", "instance", "last_heartbeat", "last_message", "status")

    def __init__(self) -> None:
        self.heartbeats = False  # a greenphx node (it heartbeats); False: only its messages seen
        self.instance: str | None = None
        self.last_heartbeat = 0.0
        self.last_message = 0.0
        self.status = "seen"  # up | down | left | seen (a node that does not heartbeat)


class _Node:
    """Everything one running adapter knows: options, connections, counters, other nodes."""

    reader: actors.Pid  # the subscriber process, set once it is spawned

    def __init__(self, pubsub: str, adapter_name: str, opts: dict[str, Any]) -> None:
        self.pubsub = pubsub
        self.adapter_name = adapter_name
        self.opts = opts
        self.node_name: str = opts["node_name"]
        self.channel: str = opts["channel"]
        self.nodes_channel = f"{self.channel}:nodes"
        self.key = f"{self.channel}:node:{self.node_name}"
        self.instance = _instances.setdefault(adapter_name, os.urandom(8).hex())
        self.codec = WireCodec(self.node_name, compression_level=opts["compression_level"])
        self.dispatchers = builtin_dispatchers()
        for fn in opts["dispatchers"]:
            self.dispatchers[dispatcher_name(fn)] = fn
        redis = _redis()
        self.conn_kwargs = redis.connection.parse_url(opts["url"])
        self.conn_kwargs.update(
            socket_connect_timeout=opts["connect_timeout"],
            protocol=2,
            retry=redis.retry.Retry(redis.backoff.NoBackoff(), 0),
            client_name=_client_name(self.node_name),
        )
        self.pool = _Pool(self._make_connection(opts["publish_timeout"]), opts["publish_pool_size"], opts["publish_timeout"])
        self.counters = {
            "published": 0,
            "publish_errors": 0,
            "undelivered": 0,
            "received": 0,
            "ignored": 0,
            "decode_errors": 0,
            "unknown_dispatchers": 0,
            "dispatch_errors": 0,
            "reconnects": 0,
        }
        self.peers: dict[str, _Peer] = {}
        self.subscribed_since: float | None = None  # monotonic time, None while not subscribed
        self.unsubscribed_at = time.monotonic()
        # This node's own subscriber connections that Redis may count as receivers: from
        # just before SUBSCRIBE is written until the connection is closed. ``subscribes``
        # only grows; see send().
        self.own_subscriptions = 0
        self.subscribes = 0
        self.subscriber_state = "connecting"
        self.publisher_state = "up"
        self.publisher_error = ""
        self.pub_down_until = 0.0
        self.pub_backoff = opts["reconnect_backoff_initial"]
        self.name_state = "unclaimed"  # claimed | unclaimed | conflict
        self.conflict: str | None = None
        self.last_self_heartbeat = 0.0
        self._logged: set[Any] = set()
        self.stopped = False

    def _make_connection(self, socket_timeout: float | None) -> Callable[[], Any]:
        cls = _connection()
        kwargs = dict(self.conn_kwargs, socket_timeout=socket_timeout)
        return lambda: cls(**kwargs)

    # -- logging, once per change or per kind -----------------------------------------

    def log_once(self, key: Any, level: int, msg: str, *args: Any) -> None:
        if key not in self._logged:
            self._logged.add(key)
            log.log(level, msg, *args)

    # -- publishing -------------------------------------------------------------------

    def publish(self, channel: str, data: bytes) -> Any:
        """Receivers (int), or ``('error', reason)``. Never raises for Redis trouble."""
        now = time.monotonic()
        if now < self.pub_down_until:
            return ("error", ("redis_down", self.publisher_error))
        try:
            result = self.pool.run(_publish_on(channel, data))
        except _ConnectFailed as e:
            self._publisher_down(str(e))
            return ("error", ("redis", str(e)))
        except gevent.Timeout:
            return ("error", ("timeout", self.pool.timeout))
        except Exception as e:  # noqa: BLE001 - a connection error mid-command, a timeout reading
            self._publisher_down(_describe(e), fast_fail=False)
            return ("error", ("redis", _describe(e)))
        if isinstance(result, Exception):
            return ("error", ("redis", _describe(result)))
        self._publisher_up()
        return result

    def _publisher_down(self, reason: str, fast_fail: bool = True) -> None:
        self.publisher_error = reason
        if fast_fail:
            self.pub_down_until = time.monotonic() + _jitter(self.pub_backoff)
            self.pub_backoff = min(self.pub_backoff * 2, self.opts["reconnect_backoff_max"])
        if self.publisher_state != "down":
            self.publisher_state = "down"
            log.error("%s: cannot publish to Redis at %s: %s", self.node_name, _redacted(self.opts["url"]), reason)

    def _publisher_up(self) -> None:
        if self.publisher_state != "up":
            self.publisher_state = "up"
            self.pub_backoff = self.opts["reconnect_backoff_initial"]
            log.info("%s: publishing to Redis again", self.node_name)

    def expected_receivers(self) -> int:
        """Subscribed connections a PUBLISH must reach: the nodes up, this one if subscribed."""
        return self.peers_up() + (1 if self.subscribed_since is not None else 0)

    def peers_up(self) -> int:
        """The other greenphx nodes up, each one subscribed connection a PUBLISH must reach."""
        now = time.monotonic()
        since = self.subscribed_since
        # While we are not subscribed we hear nobody: judge the others as of then.
        reference = now if since is not None else self.unsubscribed_at
        floor = since if since is not None else 0.0
        timeout = self.opts["node_timeout"]
        count = 0
        for name, peer in self.peers.items():
            if peer.heartbeats and peer.status == "up" and reference - max(peer.last_heartbeat, floor) <= timeout:
                if name != self.node_name:
                    count += 1
        return count

    def send(self, mode: Any, node: str, topic: str, message: Any, dispatcher: Dispatcher) -> BroadcastResult:
        name = dispatcher_name(dispatcher)
        if name not in self.dispatchers:
            self.log_once(
                ("unportable", name),
                logging.WARNING,
                "%s: dispatcher %s is not in this node's dispatchers=: other nodes deliver it only if they list it",
                self.node_name,
                name,
            )
        try:
            data = self.codec.encode(mode, node, topic, message, name)
        except (TypeError, ValueError) as e:
            self.counters["publish_errors"] += 1
            return ("error", ("unencodable", _describe(e)))
        peers = self.peers_up()
        own, subscribes = self.own_subscriptions, self.subscribes
        result = self.publish(self.channel, data)
        if result.__class__ is tuple:
            self.counters["publish_errors"] += 1
            return result
        # Redis's count includes this node's own subscriber connection(s) if they were
        # subscribed when it ran the PUBLISH, which can change while we wait for the reply
        # (a resubscribe racing the PUBLISH). Count every own connection that may have been
        # subscribed meanwhile (those open before, plus those that began subscribing since),
        # so that our own subscription is never taken for another node's.
        expected = peers + own + (self.subscribes - subscribes)
        if result < expected:
            self.counters["publish_errors"] += 1
            self.counters["undelivered"] += 1
            self.log_once(
                ("undelivered", expected),
                logging.WARNING,
                "%s: Redis delivered a broadcast to %d subscribed node(s), %d expected (reported as an error)",
                self.node_name,
                result,
                expected,
            )
            return ("error", ("undelivered", {"receivers": result, "expected": expected}))
        self.counters["published"] += 1
        return OK

    # -- the name claim ---------------------------------------------------------------

    def claim(self) -> Any:
        """``'ok'``, ``('in_use', holder, ttl_ms)`` or ``('unreachable', reason)``."""
        ttl = int(self.opts["node_timeout"] * 1000)

        def run(conn: Any) -> Any:
            conn.send_command("EVAL", _CLAIM, 1, self.key, self.instance, ttl, check_health=False)
            return conn.read_response()

        try:
            result = self.pool.run(run)
        except (_ConnectFailed, gevent.Timeout) as e:
            return ("unreachable", _describe(e) if isinstance(e, _ConnectFailed) else "timeout")
        except Exception as e:  # noqa: BLE001
            return ("unreachable", _describe(e))
        if result == 1:
            return OK
        holder, pttl = result
        return ("in_use", holder.decode() if isinstance(holder, bytes) else str(holder), int(pttl))

    def release(self) -> None:
        def run(conn: Any) -> Any:
            conn.send_command("EVAL", _RELEASE, 1, self.key, self.instance, check_health=False)
            return conn.read_response()

        try:
            self.pool.run(run)
        except Exception:  # noqa: BLE001 - it expires by itself
            pass

    def set_conflict(self, holder: str) -> None:
        if self.name_state != "conflict":
            self.name_state = "conflict"
            self.conflict = holder
            log.error(
                "%s: another node uses this node name on %s (instance %s; this one is %s): "
                "broadcasts between the two are lost; give each node a unique --node-name",
                self.node_name,
                self.channel,
                holder,
                self.instance,
            )

    # -- what the subscriber reads ----------------------------------------------------

    def on_message(self, data: bytes) -> None:
        try:
            env = self.codec.decode(data)
        except MessageError as e:
            self.counters["decode_errors"] += 1
            self.log_once(
                ("decode", e.kind),
                logging.WARNING,
                "%s: a message on %s could not be read (%s); this kind is logged once",
                self.node_name,
                self.channel,
                e,
            )
            return
        now = time.monotonic()
        if env.mode == "except":
            if env.node == self.node_name:
                self.counters["ignored"] += 1  # our own broadcast, already delivered here
                return
            peer = self.peers.get(env.node)
            if peer is None:
                peer = self.peers[env.node] = _Peer()
                log.info("%s: node %s seen on %s", self.node_name, env.node, self.channel)
            peer.last_message = now
        elif env.node != self.node_name:
            self.counters["ignored"] += 1  # a direct broadcast to another node
            return
        dispatcher = self.dispatchers.get(env.dispatcher)
        if dispatcher is None:
            self.counters["unknown_dispatchers"] += 1
            self.log_once(
                ("dispatcher", env.dispatcher),
                logging.WARNING,
                "%s: dropped a message for %s: unknown dispatcher %s (list it in dispatchers=); logged once",
                self.node_name,
                env.topic,
                env.dispatcher,
            )
            return
        self.counters["received"] += 1
        try:
            local_broadcast(self.pubsub, env.topic, env.message, dispatcher)
        except UnknownPubSubError:
            pass  # the PubSub is stopping
        except Exception as e:  # noqa: BLE001 - a dispatcher's bug must not stop the reader
            self.counters["dispatch_errors"] += 1
            self.log_once(
                ("dispatch", env.dispatcher, type(e)),
                logging.ERROR,
                "%s: dispatcher %s raised %r delivering to %s; logged once per kind",
                self.node_name,
                env.dispatcher,
                e,
                env.topic,
            )

    def on_heartbeat(self, data: bytes) -> None:
        try:
            node, instance, status = read_heartbeat(data)
        except MessageError as e:
            self.counters["decode_errors"] += 1
            self.log_once(
                ("heartbeat", e.kind),
                logging.WARNING,
                "%s: a message on %s could not be read (%s)",
                self.node_name,
                self.nodes_channel,
                e,
            )
            return
        now = time.monotonic()
        if node == self.node_name:
            if instance == self.instance:
                self.last_self_heartbeat = now
            elif status == "up":
                self.set_conflict(instance)
            return
        peer = self.peers.get(node)
        if peer is None:
            peer = self.peers[node] = _Peer()
        peer.heartbeats = True
        peer.last_heartbeat = now
        if status == "bye":
            if peer.status != "left":
                peer.status = "left"
                log.info("%s: node %s left", self.node_name, node)
            return
        if peer.instance is not None and peer.instance != instance and peer.status == "up":
            log.info("%s: node %s restarted (instance %s)", self.node_name, node, instance)
        peer.instance = instance
        if peer.status != "up":
            was = peer.status
            peer.status = "up"
            log.info("%s: node %s up%s", self.node_name, node, " again" if was in ("down", "left") else "")

    def check_peers(self) -> None:
        """Mark down the greenphx nodes not heard from within node_timeout (while subscribed)."""
        since = self.subscribed_since
        if since is None:
            return
        now = time.monotonic()
        timeout = self.opts["node_timeout"]
        for name, peer in self.peers.items():
            if peer.heartbeats and peer.status == "up" and now - max(peer.last_heartbeat, since) > timeout:
                peer.status = "down"
                log.warning("%s: node %s down: no heartbeat for %.1f s", self.node_name, name, now - peer.last_heartbeat)

    def subscribed(self) -> None:
        self.subscribed_since = time.monotonic()
        self.pub_down_until = 0.0  # Redis is back: let the next publish try at once
        if self.subscriber_state != "subscribed":
            if self.subscriber_state == "reconnecting":
                self.counters["reconnects"] += 1
                log.info("%s: subscribed to %s again", self.node_name, self.channel)
            else:
                log.info("%s: subscribed to %s at %s", self.node_name, self.channel, _redacted(self.opts["url"]))
            self.subscriber_state = "subscribed"

    def unsubscribed(self, reason: str) -> None:
        if self.subscribed_since is not None:
            self.unsubscribed_at = time.monotonic()
        self.subscribed_since = None
        if self.subscriber_state != "reconnecting":
            log.error("%s: lost the subscription to %s (%s); reconnecting", self.node_name, self.channel, reason)
            self.subscriber_state = "reconnecting"

    # -- introspection ----------------------------------------------------------------

    def statistics(self) -> dict[str, Any]:
        now = time.monotonic()
        nodes = {}
        for name, peer in sorted(self.peers.items()):
            last = max(peer.last_heartbeat, peer.last_message)
            nodes[name] = {
                "status": peer.status,
                "heartbeats": peer.heartbeats,
                "seconds_since_last_message": round(now - last, 3) if last else None,
            }
        return {
            "url": _redacted(self.opts["url"]),
            "channel": self.channel,
            "node_name": self.node_name,
            "instance": self.instance,
            "subscriber": self.subscriber_state,
            "publisher": self.publisher_state,
            "name_claim": self.name_state,
            "name_conflict": self.conflict,
            **self.counters,
            "expected_receivers": self.expected_receivers(),
            "nodes": nodes,
        }


def _client_name(node: str) -> str:
    # CLIENT SETNAME refuses spaces and newlines; the name is only for CLIENT LIST.
    return "greenphx:" + "".join(c if c.isprintable() and not c.isspace() else "_" for c in node)[:100]


def _jitter(delay: float) -> float:
    return delay * random.uniform(0.5, 1.0)


# ------------------------------------------------------------------------------------------
# Processes
# ------------------------------------------------------------------------------------------


def _subscriber_main(node: _Node, server: Pid, token: Any) -> None:
    """Read the channel forever: connect, subscribe, deliver; on any failure back off and retry."""
    redis = _redis()
    actors.set_label(("pubsub_redis_subscriber", node.pubsub))
    make = node._make_connection(None)
    delay = node.opts["reconnect_backoff_initial"]
    idle = max(node.opts["heartbeat_interval"] * 2, 0.2)
    channel = node.channel.encode()
    nodes_channel = node.nodes_channel.encode()
    first = True
    while not node.stopped:
        conn = make()
        counted = False
        try:
            conn.connect()
            # Redis counts this connection as a receiver from the moment it runs the
            # SUBSCRIBE, before the confirmation reaches us: count it from here on.
            node.own_subscriptions += 1
            node.subscribes += 1
            counted = True
            conn.send_command("SUBSCRIBE", node.channel, node.nodes_channel, check_health=False)
            for _ in range(2):
                if not conn.can_read(timeout=node.opts["connect_timeout"]):
                    raise redis.TimeoutError("no answer to SUBSCRIBE")
                conn.read_response(disable_decoding=True)
            node.subscribed()
            if first:
                actors.send(server, ("$subscribed", token))
                first = False
            delay = node.opts["reconnect_backoff_initial"]
            pinged = False
            while True:
                # Silence longer than two heartbeats: ask Redis whether it is still there.
                if not conn.can_read(timeout=idle):
                    if pinged:
                        raise redis.TimeoutError(f"no answer to PING within {idle:.1f} s")
                    conn.send_command("PING", check_health=False)
                    pinged = True
                    continue
                reply = conn.read_response(disable_decoding=True)
                pinged = False
                if reply.__class__ is list and len(reply) == 3 and reply[0] == b"message":
                    if reply[1] == channel:
                        node.on_message(reply[2])
                    elif reply[1] == nodes_channel:
                        node.on_heartbeat(reply[2])
        except Exception as e:  # noqa: BLE001 - every failure is a reason to retry
            node.unsubscribed(_describe(e))
            if first:
                actors.send(server, ("$subscribe_failed", token))
                first = False
        finally:
            conn.disconnect()
            if counted:
                node.own_subscriptions -= 1
        gevent.sleep(_jitter(delay))
        delay = min(delay * 2, node.opts["reconnect_backoff_max"])


class _Server(GenServer):
    """The adapter's process: claims the node name, heartbeats, watches the other nodes."""

    def init(self, node: _Node) -> Any:
        actors.trap_exit(True)
        actors.set_label(("pubsub_redis", node.pubsub))
        claim = node.claim()
        if claim[0] == "in_use":
            _, holder, ttl = claim
            node.pool.close()
            _instances.pop(node.adapter_name, None)
            return (
                "stop",
                (
                    "node_name_in_use",
                    f"node name {node.node_name!r} is already in use on {_redacted(node.opts['url'])} {node.channel} "
                    f"(held by instance {holder}; free within {max(ttl, 0) / 1000:.1f} s if that node is gone)",
                ),
            )
        if claim == OK:
            node.name_state = "claimed"
        else:
            log.warning(
                "%s: Redis at %s unreachable at start (%s); the node name is claimed once it is up",
                node.node_name,
                _redacted(node.opts["url"]),
                claim[1],
            )
        _nodes[node.adapter_name] = node
        token = actors.make_ref()
        node.reader = actors.spawn_link(_subscriber_main, node, actors.self(), token)
        # Usable at once when Redis is up: wait (bounded) for the first subscription.
        actors.receive(
            lambda m: m.__class__ is tuple and len(m) == 2 and m[1] is token and m[0] in ("$subscribed", "$subscribe_failed"),
            node.opts["connect_timeout"] * 2,
            default=TIMEOUT,
        )
        self._beat(node)
        actors.send_after(actors.self(), "beat", node.opts["heartbeat_interval"] * 1000)
        return ("ok", node)

    def handle_info(self, msg: Any, node: _Node) -> Any:
        if msg == "beat":
            actors.send_after(actors.self(), "beat", node.opts["heartbeat_interval"] * 1000)
            self._beat(node)
            return ("noreply", node)
        if msg.__class__ is tuple and len(msg) == 3 and msg[0] == "EXIT" and msg[1] == getattr(node, "reader", None):
            return ("stop", msg[2], node)
        if msg.__class__ is tuple and len(msg) == 2 and msg[0] in ("$subscribed", "$subscribe_failed"):
            return ("noreply", node)
        return super().handle_info(msg, node)

    @staticmethod
    def _beat(node: _Node) -> None:
        node.check_peers()
        if time.monotonic() < node.pub_down_until:
            return
        result = node.publish(node.nodes_channel, heartbeat(node.node_name, node.instance, "up"))
        if result.__class__ is tuple:
            return
        claim = node.claim()
        if claim == OK:
            if node.name_state == "unclaimed":
                log.info("%s: node name claimed on %s", node.node_name, node.channel)
            if node.name_state != "conflict":
                node.name_state = "claimed"
        elif claim[0] == "in_use":
            node.set_conflict(claim[1])

    def terminate(self, reason: Any, node: _Node) -> None:
        node.stopped = True
        reader = getattr(node, "reader", None)
        if reader is not None and actors.is_alive(reader):
            actors.unlink(reader)
            actors.exit(reader, "kill")
        if node.subscriber_state == "subscribed" and time.monotonic() >= node.pub_down_until:
            node.publish(node.nodes_channel, heartbeat(node.node_name, node.instance, "bye"))
            if node.name_state == "claimed":
                node.release()
        node.pool.close()
        if _nodes.get(node.adapter_name) is node:
            del _nodes[node.adapter_name]


def _start(pubsub: str, adapter_name: str, opts: dict[str, Any]) -> Pid | None:
    return _Server.start_link(_Node(pubsub, adapter_name, opts), timeout=opts["connect_timeout"] * 4 + 5)


# ------------------------------------------------------------------------------------------
# The adapter
# ------------------------------------------------------------------------------------------


class RedisAdapter:
    """The Redis adapter (see the module docs). Use the class itself as ``adapter``."""

    @staticmethod
    def child_spec(*, name: str, adapter_name: str, pool_size: int, **opts: Any) -> dict[str, Any]:
        """The adapter's server; options are checked here, before anything starts."""
        _redis()
        checked = _options(adapter_name, opts)
        return {"id": adapter_name, "start": (_start, (name, adapter_name, checked)), "shutdown": 5000}

    @staticmethod
    def node_name(adapter_name: str) -> str:
        """This node's name."""
        return _node(adapter_name).node_name

    @staticmethod
    def broadcast(adapter_name: str, topic: str, message: Any, dispatcher: Dispatcher) -> BroadcastResult:
        """PUBLISH to every other node; see the module docs for what ``'ok'`` promises."""
        node = _node(adapter_name)
        return node.send(EXCEPT, node.node_name, topic, message, dispatcher)

    @staticmethod
    def direct_broadcast(adapter_name: str, node_name: str, topic: str, message: Any, dispatcher: Dispatcher) -> BroadcastResult:
        """PUBLISH for one node (this one included); an unknown or down node is an error."""
        node = _node(adapter_name)
        if node_name != node.node_name:
            peer = node.peers.get(node_name)
            if peer is None or peer.status in ("down", "left"):
                return ("error", ("nodedown", node_name))
        return node.send(ONLY, node_name, topic, message, dispatcher)

    @staticmethod
    def statistics(adapter_name: str) -> dict[str, Any]:
        """Counters, connection states and the other nodes (see the module docs)."""
        return _node(adapter_name).statistics()


def _node(adapter_name: str) -> _Node:
    node = _nodes.get(adapter_name)
    if node is None:
        raise UnknownPubSubError(adapter_name.removesuffix(".Adapter"), "RedisAdapter")
    return node
