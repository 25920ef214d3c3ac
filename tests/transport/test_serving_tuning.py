"""What a served node tunes once started (``transport.http.tune_gevent``): gevent's
greenlet-tree tracking goes off, so the HTTP server's greenlet per connection records no
spawning stack, unless the operator asked for it in the environment."""

from __future__ import annotations

import gevent
import pytest

from transport.http import tune_gevent


@pytest.fixture
def tracking():
    saved = gevent.config.track_greenlet_tree
    try:
        yield
    finally:
        gevent.config.track_greenlet_tree = saved


def test_tracking_goes_off_and_new_greenlets_record_no_stack(tracking, monkeypatch):
    monkeypatch.delenv("GEVENT_TRACK_GREENLET_TREE", raising=False)
    gevent.config.track_greenlet_tree = True
    assert gevent.Greenlet(lambda: None).spawning_stack is not None
    tune_gevent()
    assert gevent.config.track_greenlet_tree is False
    assert gevent.Greenlet(lambda: None).spawning_stack is None


def test_the_environment_keeps_it_on(tracking, monkeypatch):
    monkeypatch.setenv("GEVENT_TRACK_GREENLET_TREE", "1")
    gevent.config.track_greenlet_tree = True
    tune_gevent()
    assert gevent.config.track_greenlet_tree is True
