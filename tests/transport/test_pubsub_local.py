"""The shared PubSub suite on the local adapter, and what only the local adapter does."""

from __future__ import annotations

from typing import Any

import pytest
from pubsub_shared import *
from pubsub_shared import PS, nothing_received, received, settle

import actors
from transport import pubsub
from transport.pubsub import BroadcastError, LocalAdapter, PubSub


@pytest.fixture
def pubsub_adapter() -> tuple[Any, dict[str, Any]]:
    return LocalAdapter, {}


def test_local_direct_broadcast_to_another_node_is_an_error(ps: PS) -> None:
    pubsub.subscribe(ps.name, ps.topic)
    assert pubsub.direct_broadcast("elsewhere@host", ps.name, ps.topic, "x") == ("error", ("nodedown", "elsewhere@host"))
    with pytest.raises(BroadcastError, match="nodedown") as info:
        pubsub.direct_broadcast_or_raise("elsewhere@host", ps.name, ps.topic, "x")
    assert info.value.reason == ("nodedown", "elsewhere@host")
    settle(ps)
    assert nothing_received("x")


def test_local_adapter_takes_a_node_name() -> None:
    sup = PubSub.start_link(name="test.LocalNamed", pool_size=1, node_name="alpha@here")
    try:
        assert pubsub.node_name("test.LocalNamed") == "alpha@here"
        pubsub.subscribe("test.LocalNamed", "t")
        assert pubsub.direct_broadcast("alpha@here", "test.LocalNamed", "t", "hello") == "ok"
        assert received("hello") == "hello"
        assert pubsub.statistics("test.LocalNamed")["node_name"] == "alpha@here"
    finally:
        actors.unlink(sup)
        actors.stop(sup)


def test_local_adapter_default_node_name_is_unique_to_the_os_process() -> None:
    import os

    sup = PubSub.start_link(name="test.LocalDefault", pool_size=1)
    try:
        name = pubsub.node_name("test.LocalDefault")
        assert name == pubsub.default_node_name()
        assert str(os.getpid()) in name and "@" in name
    finally:
        actors.unlink(sup)
        actors.stop(sup)


@pytest.mark.parametrize(
    "opts, argument", [({"colour": "red"}, "colour"), ({"node_name": 7}, "node_name"), ({"node_name": ""}, "node_name")]
)
def test_local_adapter_rejects_bad_options_before_starting(opts: dict, argument: str) -> None:
    with pytest.raises(TypeError, match=argument):
        PubSub.child_spec(name="test.LocalBad", **opts)
    assert actors.whereis("test.LocalBad") is None


def test_local_adapter_broadcast_sends_nothing_anywhere() -> None:
    calls: list = []
    assert LocalAdapter.broadcast("x.Adapter", "t", "m", lambda *a: calls.append(a)) == "ok"
    assert calls == []


def test_local_adapter_satisfies_the_adapter_protocol() -> None:
    assert isinstance(LocalAdapter, pubsub.Adapter)
