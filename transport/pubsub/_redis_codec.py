"""The Redis adapter's wire format: phoenix_pubsub_redis 3.x messages, pure (no sockets).

Every node publishes to one Redis channel and reads every message on it. A message is the
Erlang External Term Format (:mod:`transport.terms`, the project's one codec) of::

    {3, mode, node_name, topic, message, dispatcher}

``3`` is phoenix_pubsub_redis's message version; ``mode`` is the atom ``except`` (a
broadcast: every node but ``node_name``, the sender, delivers it) or ``only`` (a direct
broadcast: only ``node_name`` delivers it); ``node_name`` an atom, ``topic`` a binary,
``dispatcher`` an atom naming the function that delivers ``message`` on the receiving node.
The term may be zlib-compressed (``compression_level`` 1-9, as Elixir's
``term_to_binary(t, compressed: n)``); Phoenix's default is 0, uncompressed.

How Python values cross (see :mod:`transport.terms` for the plain mapping: ``str`` is a
UTF-8 binary, ``dict`` a map, ``tuple`` a tuple, ``None``/``True``/``False`` the atoms
``nil``/``true``/``false``):

* :class:`~transport._message.Broadcast` is Phoenix's ``%Phoenix.Socket.Broadcast{}``: a
  map with the atom keys ``__struct__`` (``Phoenix.Socket.Broadcast``), ``topic``,
  ``event`` and ``payload``. A Phoenix node's struct arrives as a ``Broadcast``.
* :class:`~transport._message.Binary` is ``{:binary, data}``, Phoenix's binary payload.
* A :class:`~actors.Pid` or :class:`~actors.Ref` is an Erlang pid or reference of this
  node (its name, and a ``creation`` number unique to the OS process); it comes back as
  the same ``Pid``/``Ref`` on this node, and as an opaque
  :class:`~transport.terms.OpaqueTerm` anywhere else.
* Dispatchers: :func:`transport._channel.dispatch` (the fastlane) is
  ``Phoenix.Channel.Server``, :func:`transport.pubsub.dispatch` is ``Phoenix.PubSub``, as
  in Elixir; any other is named ``module.qualname`` and is delivered only by a node that
  lists it in its ``dispatchers`` (a name read from Redis never imports or calls anything
  else).

What does not survive a round trip, so an app knows what another node sees: ``bytes``
holding valid UTF-8 arrive as ``str``; a ``list`` of small ints (0-255) is a charlist and
arrives as a list of ints (fine); a subclass of ``dict``/``list``/``tuple``/``str``
arrives as the plain type; an atom a Phoenix node put in a Broadcast's payload (keys of
``%{body: "hi"}``, values such as ``:ok``) arrives as ``str``, as a JSON client would see
it. Objects with no term form (sets, dataclasses other than the two above, arbitrary
instances, NaN) cannot be broadcast to other nodes: :func:`encode` raises
:class:`~transport.terms.TermEncodeError` and the adapter returns an error.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from actors import Pid, Ref
from transport._message import Binary, Broadcast
from transport.terms import Atom, OpaqueTerm, TermDecodeError, TermEncodeError, binary_to_term, term_to_binary

__all__ = [
    "CHANNEL_SERVER",
    "EXCEPT",
    "ONLY",
    "PUBSUB",
    "VERSION",
    "Envelope",
    "MessageError",
    "WireCodec",
    "dispatcher_name",
    "heartbeat",
    "read_heartbeat",
]

VERSION = 3
EXCEPT = Atom("except")
ONLY = Atom("only")
BROADCAST_STRUCT = Atom("Elixir.Phoenix.Socket.Broadcast")
CHANNEL_SERVER = Atom("Elixir.Phoenix.Channel.Server")
PUBSUB = Atom("Elixir.Phoenix.PubSub")
_BINARY_TAG = Atom("binary")
_STRUCT = Atom("__struct__")
_TOPIC = Atom("topic")
_EVENT = Atom("event")
_PAYLOAD = Atom("payload")
_HEARTBEAT = Atom("greenphx_node")
_MAX_ATOM = 255

# Tags of the external format this module writes and reads itself (pids and refs).
_NEW_PID = 88
_NEWER_REFERENCE = 90
_SMALL_ATOM_UTF8 = 119
_ATOM_UTF8 = 118
_ATOM = 100
_SMALL_ATOM = 115
_u32 = struct.Struct(">I")
_u16 = struct.Struct(">H")


class MessageError(ValueError):
    """A message read from Redis that this node cannot deliver; ``kind`` names why.

    Kinds: ``undecodable`` (not an external term, or a hostile one), ``not_a_message``
    (a term of another shape), ``unknown_version`` (a tuple whose first element is not 3),
    ``bad_mode``, ``bad_topic``, ``bad_node``, ``bad_dispatcher``.
    """

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Envelope:
    """One decoded message: who sent it (or whom it is for), where, what, and how to deliver it."""

    mode: str  # "except" or "only"
    node: str
    topic: str
    message: Any
    dispatcher: str  # the dispatcher's atom, as a str


def dispatcher_name(dispatcher: Callable[..., Any]) -> str:
    """The name a dispatcher travels under (see the module docs)."""
    from transport import _channel
    from transport.pubsub import _api

    if dispatcher is _channel.dispatch:
        return str(CHANNEL_SERVER)
    if dispatcher is _api.dispatch:
        return str(PUBSUB)
    module = getattr(dispatcher, "__module__", None) or "?"
    qualname = getattr(dispatcher, "__qualname__", None) or type(dispatcher).__qualname__
    return f"{module}.{qualname}"


def builtin_dispatchers() -> dict[str, Callable[..., Any]]:
    """The two dispatchers every node knows: the fastlane and the default."""
    from transport import _channel
    from transport.pubsub import _api

    return {str(CHANNEL_SERVER): _channel.dispatch, str(PUBSUB): _api.dispatch}


class WireCodec:
    """Encodes and decodes one node's messages (see the module docs).

    ``node_name`` is this node's name; ``creation`` tells this OS process's pids and refs
    from those of an earlier process with the same node name (default: random).
    """

    def __init__(self, node_name: str, *, compression_level: int = 0, creation: int | None = None) -> None:
        if not isinstance(node_name, str) or not node_name:
            raise TypeError(f"node_name must be a non-empty str, got {node_name!r}")
        if len(node_name) > _MAX_ATOM:
            raise ValueError(f"node_name is an atom on the wire: at most {_MAX_ATOM} characters, got {len(node_name)}")
        if isinstance(compression_level, bool) or not isinstance(compression_level, int) or not 0 <= compression_level <= 9:
            raise ValueError(f"compression_level must be an int 0-9, got {compression_level!r}")
        self.node_name = node_name
        self.node_atom = Atom(node_name)
        self.compression_level = compression_level
        self.creation = creation if creation is not None else (int.from_bytes(os.urandom(4), "big") or 1)
        self._atom_bytes = term_to_binary(self.node_atom)[1:]

    # -- encoding ---------------------------------------------------------------------

    def encode(self, mode: Atom, node: str, topic: str, message: Any, dispatcher: str) -> bytes:
        """The bytes to PUBLISH. Raises ``TermEncodeError`` for a message with no term form."""
        term = (VERSION, mode, Atom(node), topic, self._message_term(message), Atom(dispatcher))
        try:
            return term_to_binary(term, compressed=self.compression_level)
        except TermEncodeError:
            # Something below the top level is one of ours (a Binary, a Pid...): walk it.
            term = (VERSION, mode, Atom(node), topic, self._walk_out(message), Atom(dispatcher))
            return term_to_binary(term, compressed=self.compression_level)

    def _message_term(self, message: Any) -> Any:
        # The hot path: a channel broadcast with a JSON payload needs no walk.
        if message.__class__ is Broadcast:
            payload = message.payload
            if payload.__class__ is Binary:
                payload = (_BINARY_TAG, payload.data)
            return {_STRUCT: BROADCAST_STRUCT, _TOPIC: message.topic, _EVENT: message.event, _PAYLOAD: payload}
        if message.__class__ is Binary:
            return (_BINARY_TAG, message.data)
        return message

    def _walk_out(self, value: Any) -> Any:
        cls = value.__class__
        if cls is Broadcast:
            return {
                _STRUCT: BROADCAST_STRUCT,
                _TOPIC: value.topic,
                _EVENT: value.event,
                _PAYLOAD: self._walk_out(value.payload),
            }
        if cls is Binary:
            return (_BINARY_TAG, value.data)
        if cls is Pid:
            return self._pid_term(value)
        if cls is Ref:
            return self._ref_term(value)
        if isinstance(value, dict):
            return {self._walk_out(k): self._walk_out(v) for k, v in value.items()}
        if isinstance(value, tuple):
            return tuple(self._walk_out(v) for v in value)
        if isinstance(value, list):
            return [self._walk_out(v) for v in value]
        return value  # the codec decides (and raises for what has no term form)

    def _pid_term(self, pid: Pid) -> OpaqueTerm:
        n = hash(pid)  # a Pid hashes to its number
        raw = bytes((_NEW_PID,)) + self._atom_bytes + _u32.pack(n & 0xFFFFFFFF) + _u32.pack((n >> 32) & 0xFFFFFFFF)
        return OpaqueTerm("pid", self.node_name, raw + _u32.pack(self.creation))

    def _ref_term(self, ref: Ref) -> OpaqueTerm:
        n = hash(ref)  # a Ref hashes to its number
        raw = (
            bytes((_NEWER_REFERENCE,))
            + _u16.pack(3)
            + self._atom_bytes
            + _u32.pack(self.creation)
            + _u32.pack(n & 0xFFFFFFFF)
            + _u32.pack((n >> 32) & 0xFFFFFFFF)
            + _u32.pack(0)
        )
        return OpaqueTerm("reference", self.node_name, raw)

    # -- decoding ---------------------------------------------------------------------

    def decode(self, data: bytes) -> Envelope:
        """The envelope of a message read from Redis; raises :class:`MessageError`.

        The message inside is converted back (Broadcast, Binary, this node's pids and
        refs); a Broadcast's payload gets atoms as ``str`` (what a JSON client sees).
        """
        try:
            term = binary_to_term(data)
        except TermDecodeError as e:
            raise MessageError("undecodable", str(e)) from None
        if term.__class__ is not tuple or len(term) != 6:
            if term.__class__ is tuple and term and term[0] != VERSION:
                raise MessageError("unknown_version", f"version {term[0]!r:.40}")
            raise MessageError("not_a_message", f"a {type(term).__name__}, not a 6-tuple")
        vsn, mode, node, topic, message, dispatcher = term
        if vsn != VERSION or vsn.__class__ is not int:
            raise MessageError("unknown_version", f"version {vsn!r:.40}")
        if mode != EXCEPT and mode != ONLY:
            raise MessageError("bad_mode", f"mode {mode!r:.40}")
        if not isinstance(node, str):  # an atom (as Elixir sends it), or a binary
            raise MessageError("bad_node", f"node {node!r:.40}")
        if topic.__class__ is not str:
            raise MessageError("bad_topic", f"topic {topic!r:.40}")
        if not isinstance(dispatcher, Atom):
            raise MessageError("bad_dispatcher", f"dispatcher {dispatcher!r:.40}")
        return Envelope(str(mode), str(node), topic, self.message_in(message), str(dispatcher))

    def message_in(self, message: Any) -> Any:
        """Convert a decoded message back into this node's values."""
        if message.__class__ is dict and message.get(_STRUCT) == BROADCAST_STRUCT:
            broadcast = self._broadcast_in(message)
            if broadcast is not None:
                return broadcast
        return self._walk_in(message)

    def _broadcast_in(self, struct_map: dict) -> Broadcast | None:
        topic = struct_map.get(_TOPIC)
        event = struct_map.get(_EVENT)
        if topic.__class__ is not str or event.__class__ is not str or _PAYLOAD not in struct_map:
            return None
        payload = struct_map[_PAYLOAD]
        if payload.__class__ is tuple and len(payload) == 2 and payload[0] == _BINARY_TAG:
            data = payload[1]
            payload = Binary(data.encode("utf-8") if data.__class__ is str else data)
        else:
            payload = self._json_view(payload)
        return Broadcast(topic=topic, event=event, payload=payload)

    def _json_view(self, value: Any) -> Any:
        """A payload as a JSON client would see it: atoms (keys and values) as ``str``."""
        cls = value.__class__
        if cls is dict:
            return {(str(k) if k.__class__ is Atom else k): self._json_view(v) for k, v in value.items()}
        if cls is list:
            return [self._json_view(v) for v in value]
        if cls is Atom:
            return str(value)
        if cls is tuple:
            return tuple(self._json_view(v) for v in value)
        if cls is OpaqueTerm:
            return self._opaque_in(value)
        return value

    def _walk_in(self, value: Any) -> Any:
        cls = value.__class__
        if cls is dict:
            if value.get(_STRUCT) == BROADCAST_STRUCT:
                broadcast = self._broadcast_in(value)
                if broadcast is not None:
                    return broadcast
            return {self._walk_in(k): self._walk_in(v) for k, v in value.items()}
        if cls is tuple:
            if len(value) == 2 and value[0] == _BINARY_TAG and value[1].__class__ in (bytes, str):
                data = value[1]
                return Binary(data.encode("utf-8") if isinstance(data, str) else data)
            return tuple(self._walk_in(v) for v in value)
        if cls is list:
            return [self._walk_in(v) for v in value]
        if cls is OpaqueTerm:
            return self._opaque_in(value)
        return value

    def _opaque_in(self, term: OpaqueTerm) -> Any:
        if term.node != self.node_name:
            return term
        raw = term.raw
        try:
            if raw[0] == _NEW_PID:
                pos = _skip_atom(raw, 1)
                low, high, creation = (
                    _u32.unpack_from(raw, pos)[0],
                    _u32.unpack_from(raw, pos + 4)[0],
                    _u32.unpack_from(raw, pos + 8)[0],
                )
                if creation == self.creation:
                    return Pid.parse(f"<0.{low | (high << 32)}.0>")
            elif raw[0] == _NEWER_REFERENCE:
                count = _u16.unpack_from(raw, 1)[0]
                pos = _skip_atom(raw, 3)
                creation = _u32.unpack_from(raw, pos)[0]
                words = [_u32.unpack_from(raw, pos + 4 + 4 * i)[0] for i in range(count)]
                if creation == self.creation and count == 3 and words[2] == 0:
                    return _ref_from_number(words[0] | (words[1] << 32))
        except (IndexError, struct.error):
            pass
        return term


def _skip_atom(raw: bytes, pos: int) -> int:
    tag = raw[pos]
    if tag in (_SMALL_ATOM_UTF8, _SMALL_ATOM):
        return pos + 2 + raw[pos + 1]
    if tag in (_ATOM_UTF8, _ATOM):
        return pos + 3 + _u16.unpack_from(raw, pos + 1)[0]
    raise IndexError("not an atom")


def _ref_from_number(n: int) -> Ref:
    # Ref has no public constructor from a number; a Ref is its number (eq and hash).
    ref = Ref.__new__(Ref)
    ref._n = n
    return ref


# ------------------------------------------------------------------------------------------
# Heartbeats: greenphx nodes only, on a channel of their own (Phoenix nodes never see them)
# ------------------------------------------------------------------------------------------


def heartbeat(node: str, instance: str, status: str) -> bytes:
    """A node's heartbeat: ``{greenphx_node, 1, node, instance, status}``; status up or bye."""
    return term_to_binary((_HEARTBEAT, 1, Atom(node), instance, Atom(status)))


def read_heartbeat(data: bytes) -> tuple[str, str, str]:
    """``(node, instance, status)`` of a heartbeat; raises :class:`MessageError`."""
    try:
        term = binary_to_term(data)
    except TermDecodeError as e:
        raise MessageError("undecodable", str(e)) from None
    if (
        term.__class__ is not tuple
        or len(term) != 5
        or term[0] != _HEARTBEAT
        or term[1] != 1
        or not isinstance(term[2], Atom)
        or term[3].__class__ is not str
        or term[4] not in (Atom("up"), Atom("bye"))
    ):
        raise MessageError("not_a_message", f"not a heartbeat: {term!r:.60}")
    return str(term[2]), term[3], str(term[4])
