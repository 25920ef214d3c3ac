"""Client Presence: phoenix.js's presence_test.js, ported."""

from __future__ import annotations

import copy

from transport._message import Message
from transport.client import Presence, PresenceSync, list_presences, sync_diff, sync_state


def fixtures():
    return {
        "joins": {"u1": {"metas": [{"id": 1, "phx_ref": "1.2"}]}},
        "leaves": {"u2": {"metas": [{"id": 2, "phx_ref": "2"}]}},
        "state": {
            "u1": {"metas": [{"id": 1, "phx_ref": "1"}]},
            "u2": {"metas": [{"id": 2, "phx_ref": "2"}]},
            "u3": {"metas": [{"id": 3, "phx_ref": "3"}]},
        },
    }


def test_sync_state_from_empty_and_does_not_mutate():
    new = {"u1": {"metas": [{"id": 1, "phx_ref": "1"}]}}
    before = copy.deepcopy(new)
    assert sync_state({}, new) == new
    assert new == before


def test_sync_state_calls_on_join_and_on_leave():
    joined, left = {}, {}
    state = {"u4": {"metas": [{"id": 4, "phx_ref": "4"}]}}
    new = fixtures()["state"]
    result = sync_state(
        state,
        new,
        lambda key, cur, newp: joined.__setitem__(key, (cur, newp)),
        lambda key, cur, leftp: left.__setitem__(key, (cur, leftp)),
    )
    assert result == new
    assert joined == {k: (None, v) for k, v in new.items()}
    assert left == {"u4": ({"metas": []}, {"metas": [{"id": 4, "phx_ref": "4"}]})}


def test_sync_state_only_joins_new_metas_on_an_existing_key():
    state = {"u3": {"metas": [{"id": 3, "phx_ref": "3"}]}}
    new = {"u3": {"metas": [{"id": 3, "phx_ref": "3"}, {"id": 3, "phx_ref": "3.new"}]}}
    joins = []
    result = sync_state(state, new, lambda key, cur, newp: joins.append((key, newp)))
    assert result == new
    assert joins == [("u3", {"metas": [{"id": 3, "phx_ref": "3.new"}]})]


def test_sync_diff_from_empty_and_removes_emptied_presences():
    f = fixtures()
    assert sync_diff({}, {"joins": f["joins"], "leaves": {}}) == f["joins"]
    state = sync_diff(f["state"], {"joins": f["joins"], "leaves": f["leaves"]})
    assert state == {
        "u1": {"metas": [{"id": 1, "phx_ref": "1"}, {"id": 1, "phx_ref": "1.2"}]},
        "u3": {"metas": [{"id": 3, "phx_ref": "3"}]},
    }
    assert f["state"] == fixtures()["state"]


def test_sync_diff_an_update_replaces_the_meta_by_ref():
    state = {"u1": {"metas": [{"id": 1, "phx_ref": "1", "status": "away"}]}}
    diff = {
        "joins": {"u1": {"metas": [{"id": 1, "phx_ref": "1.2", "phx_ref_prev": "1", "status": "here"}]}},
        "leaves": {"u1": {"metas": [{"id": 1, "phx_ref": "1", "status": "away"}]}},
    }
    assert sync_diff(state, diff) == {"u1": {"metas": [{"id": 1, "phx_ref": "1.2", "phx_ref_prev": "1", "status": "here"}]}}


def test_list_with_and_without_chooser():
    state = {
        "u1": {"metas": [{"id": 1, "phx_ref": "1"}, {"id": 1, "phx_ref": "1.2"}]},
        "u2": {"metas": [{"id": 2, "phx_ref": "2"}]},
    }
    assert list_presences(state) == list(state.values())
    assert list_presences(state, lambda key, p: (key, p["metas"][0]["phx_ref"])) == [("u1", "1"), ("u2", "2")]


def test_presence_sync_holds_diffs_until_the_state_of_the_current_join():
    sync = PresenceSync()
    synced = []
    sync.on_sync = lambda: synced.append(sync.list(lambda k, p: k))
    sync.handle_diff({"joins": {"u2": {"metas": [{"phx_ref": "2"}]}}, "leaves": {}}, "1")
    assert sync.state == {} and synced == []
    sync.handle_state({"u1": {"metas": [{"phx_ref": "1"}]}}, "1")
    assert synced == [["u1", "u2"]]
    # a rejoin: diffs wait again until the new join's state arrives
    sync.handle_diff({"joins": {}, "leaves": {"u1": {"metas": [{"phx_ref": "1"}]}}}, "5")
    assert synced == [["u1", "u2"]] and sync.pending_diffs
    sync.handle_state({"u1": {"metas": [{"phx_ref": "1"}]}, "u3": {"metas": [{"phx_ref": "3"}]}}, "5")
    assert synced[-1] == ["u3"]  # u2 left with the new state, u1 with the held diff


class FakeChannel:
    def __init__(self):
        self.join_ref = "1"
        self.handlers = {}

    def on(self, event, callback):
        self.handlers[event] = callback

    def deliver(self, event, payload, join_ref=None):
        self.handlers[event](Message("room", event, payload, None, join_ref))


def test_presence_binds_to_a_channel_and_custom_events():
    channel = FakeChannel()
    presence = Presence(channel, events={"state": "s", "diff": "d"})
    joins = []
    presence.on_join = lambda key, cur, new: joins.append(key)
    channel.deliver("d", {"joins": {"b": {"metas": [{"phx_ref": "b"}]}}, "leaves": {}})
    channel.deliver("s", {"a": {"metas": [{"phx_ref": "a"}]}}, "1")
    assert joins == ["a", "b"] and sorted(presence.state) == ["a", "b"]
