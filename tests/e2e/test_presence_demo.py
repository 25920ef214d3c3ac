"""The demo's "who is in the room" list, in headless Chromium and on the wire.

The demo (``phx-serve``, in a subprocess) tracks every chat channel in ``Demo.Presence``;
the page keeps the list with its own client's ``Phx.Presence``. Checked: a Python client's
``transport.client.Presence`` lists itself after its join (from ``presence_state``) and sees
others join and leave (from ``presence_diff``); two
pages see each other appear and leave; a name open in two tabs is listed once with a count
of 2. Chromium and selenium as in test_demo_page.py (skips locally without them, fails
under CI=true).
"""

from __future__ import annotations

import time

import pytest
from test_demo_page import ROOM, DemoServer, browser, connect, join_as, sockets, unique, wait_for  # noqa: F401 - fixtures

from transport.client import Presence

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def server():
    s = DemoServer()
    try:
        yield s
    finally:
        s.stop()


def shown_presence(driver) -> dict[str, int]:
    """The page's "In the room" list: {name: count}."""
    return driver.execute_script(
        "return Object.fromEntries([...document.querySelectorAll('#present li')]"
        ".map(li => [li.dataset.name, Number(li.dataset.count)]))"
    )


def until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_wire_presence_state_and_diffs(server, sockets):
    ann, bob = unique("ann"), unique("bob")
    a = connect(server, sockets).channel(ROOM, {"name": ann})
    seen_by_ann = Presence(a)
    a.join()
    until(lambda: ann in seen_by_ann.state)
    assert [set(m) for m in seen_by_ann.state[ann]["metas"]] == [{"online_at", "phx_ref"}]

    bob_socket = connect(server, sockets)
    b = bob_socket.channel(ROOM, {"name": bob})
    seen_by_bob = Presence(b)
    b.join()
    until(lambda: {ann, bob} <= set(seen_by_bob.state))
    until(lambda: bob in seen_by_ann.state)

    bob_socket.disconnect()
    until(lambda: bob not in seen_by_ann.state)
    assert ann in seen_by_ann.state


def test_two_pages_see_each_other_appear_and_leave(server, browser):
    driver = browser
    ann, bob = unique("ann"), unique("bob")
    driver.get(server.http + "/")
    first = driver.current_window_handle
    join_as(driver, ann)
    wait_for(driver, lambda d: shown_presence(d).get(ann) == 1, 10, "the page does not list itself")

    driver.switch_to.new_window("tab")
    second = driver.current_window_handle
    driver.get(server.http + "/")
    join_as(driver, bob)
    wait_for(driver, lambda d: {ann, bob} <= set(shown_presence(d)), 10, "the second page does not list both")

    driver.switch_to.window(first)
    wait_for(driver, lambda d: {ann, bob} <= set(shown_presence(d)), 10, "the first page does not see the second appear")
    # the guest name each page had before joining under its own name is gone
    assert all(not name.startswith("guest-") for name in shown_presence(driver) if name in (ann, bob))

    # ann in a third tab: listed once, with a count of 2
    driver.switch_to.new_window("tab")
    third = driver.current_window_handle
    driver.get(server.http + "/")
    join_as(driver, ann)
    wait_for(driver, lambda d: shown_presence(d).get(ann) == 2, 10, "two tabs of one name are not counted")
    assert (
        driver.execute_script("return document.querySelectorAll('#present li[data-name=\"' + arguments[0] + '\"]').length", ann)
        == 1
    )
    driver.close()
    driver.switch_to.window(first)
    wait_for(driver, lambda d: shown_presence(d).get(ann) == 1, 10, "the closed tab's count does not drop")

    # bob's page goes away: ann's page sees him leave
    driver.switch_to.window(second)
    driver.close()
    driver.switch_to.window(first)
    wait_for(driver, lambda d: bob not in shown_presence(d), 10, "the first page does not see the second leave")
    assert shown_presence(driver).get(ann) == 1
    assert third not in driver.window_handles
