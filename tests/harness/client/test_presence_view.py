"""The client's presence view from both forms of PROTOCOL.md 3.2."""

from __future__ import annotations

from harness.client.presence import PresenceView


def _entry(cid: str) -> dict[str, object]:
    return {"siteId": "s" * 22, "connectionId": cid, "joinedAt": 1, "lastSeen": 1}


def test_a_full_list_replaces_and_deltas_join_then_leave() -> None:
    view = PresenceView()
    assert view.apply({"type": "presence", "databaseId": "d", "sessions": [_entry("a"), _entry("b")]})
    assert view.connection_ids() == {"a", "b"}
    delta = {
        "type": "presence_delta",
        "databaseId": "d",
        "joined": [_entry("c"), _entry("x")],
        "left": ["b", "x"],
    }
    assert view.apply(delta)
    assert view.connection_ids() == {"a", "c"}  # x joined and left within one delta: gone
    assert view.apply({"type": "presence", "databaseId": "d", "sessions": [_entry("c")]})
    assert view.connection_ids() == {"c"} and view.updates == 3


def test_other_messages_and_bad_shapes_leave_it_alone() -> None:
    view = PresenceView()
    view.apply({"type": "presence", "sessions": [_entry("a")]})
    assert not view.apply({"type": "heartbeat", "ts": 1})
    assert not view.apply({"type": "presence_delta", "joined": "nope", "left": []})
    assert not view.apply({"type": "presence", "sessions": None})
    assert view.connection_ids() == {"a"} and view.updates == 1
