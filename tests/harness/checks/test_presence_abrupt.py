"""presence-accuracy for sessions that drop without a close frame (client `abort()`: a close
event with no code), announced by either presence form."""

from __future__ import annotations

from typing import Any

from tests.harness.checks.script import WALL0, Script, run


def _entry(s: Script, process: str, joined_t: float) -> dict[str, Any]:
    return {
        "siteId": s.site(process),
        "connectionId": f"{process}-c1",
        "joinedAt": int(WALL0 + joined_t * 1000),
        "lastSeen": int(WALL0 + joined_t * 1000),
    }


def _dropped(announce_at: float | None, form: str = "delta", rejoin_at: float | None = None) -> Script:
    """`b` drops its TCP connection at 3.0 (no close frame); `a` and `c` watch."""
    s = Script()
    s.at(0.0).connect("a").connect("c")
    s.at(1.0).connect("b")
    for to in ("a", "c"):
        s.recv(
            to, {"type": "presence_delta", "databaseId": "db1", "joined": [_entry(s, "b", 1.0)], "left": []}
        )
    s.at(3.0).close("b", code=None, by_client=True)
    if announce_at is not None:
        s.at(announce_at)
        for to in ("a", "c"):
            if form == "delta":
                s.recv(to, {"type": "presence_delta", "databaseId": "db1", "joined": [], "left": ["b-c1"]})
            else:
                sessions = [_entry(s, "a", 0.0), _entry(s, "c", 0.0)]
                s.recv(to, {"type": "presence", "databaseId": "db1", "sessions": sessions})
    if rejoin_at is not None:
        s.at(rejoin_at).recv(
            "a", {"type": "presence_delta", "databaseId": "db1", "joined": [_entry(s, "b", 1.0)], "left": []}
        )
    s.at(10.0)
    return s


def test_an_abrupt_drop_announced_by_a_delta_within_the_bound_passes() -> None:
    result = run(_dropped(4.0), "presence-accuracy", leave_bound_s=2.0)
    assert result.status == "pass", result.evidence


def test_an_abrupt_drop_announced_by_a_full_list_passes() -> None:
    assert run(_dropped(4.0, form="full"), "presence-accuracy", leave_bound_s=2.0).status == "pass"


def test_an_abrupt_drop_never_announced_fails_for_every_observer() -> None:
    result = run(_dropped(None), "presence-accuracy", leave_bound_s=2.0)
    assert result.status == "fail"
    assert {e["observer"] for e in result.evidence} == {"a", "c"}
    assert result.detected_at == 5.0


def test_an_abrupt_drop_announced_after_the_bound_fails() -> None:
    result = run(_dropped(7.0), "presence-accuracy", leave_bound_s=2.0)
    assert result.status == "fail" and "not visible" in result.evidence[0]["problem"]


def test_a_dropped_session_joining_again_in_a_later_delta_fails() -> None:
    result = run(_dropped(4.0, rejoin_at=8.0), "presence-accuracy", leave_bound_s=2.0)
    assert result.status == "fail" and "after its leave bound" in result.evidence[0]["problem"]


def test_deltas_only_make_presence_supported_and_no_leave_is_judged_from_entries() -> None:
    s = Script()
    s.at(0.0).connect("a")
    s.at(1.0).connect("b")
    s.recv("a", {"type": "presence_delta", "databaseId": "db1", "joined": [_entry(s, "b", 1.0)], "left": []})
    assert run(s, "presence-accuracy").status == "pass"


def test_no_presence_evidence_is_unknown() -> None:
    s = Script()
    s.obs.capabilities["presence"] = True
    s.connect("a")
    assert run(s, "presence-accuracy").status == "unknown"
