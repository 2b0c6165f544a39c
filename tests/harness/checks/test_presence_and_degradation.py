from __future__ import annotations

from typing import Any

from tests.harness.checks.script import WALL0, Script, run


def _entry(s: Script, process: str, joined_t: float, seen_t: float) -> dict[str, Any]:
    return {
        "siteId": s.site(process),
        "connectionId": f"{process}-c1",
        "joinedAt": int(WALL0 + joined_t * 1000),
        "lastSeen": int(WALL0 + seen_t * 1000),
    }


def _presence(s: Script, to: str, entries: list[dict[str, Any]]) -> None:
    s.recv(to, {"type": "presence", "databaseId": "db1", "sessions": entries})


def _two_sessions(joined_b: float = 1.0, stale: bool = False, announce_leave: bool = True) -> Script:
    s = Script()
    s.at(0.0).connect("a")
    _presence(s, "a", [_entry(s, "a", 0.0, 0.0)])
    s.at(1.0).connect("b")
    for to in ("a", "b"):
        _presence(s, to, [_entry(s, "a", 0.0, 0.5), _entry(s, "b", joined_b, 1.0)])
    s.at(3.0).close("b", by_client=True)
    if announce_leave:
        s.at(3.1)
        _presence(s, "a", [_entry(s, "a", 0.0, 2.0)] + ([_entry(s, "b", joined_b, 1.0)] if stale else []))
    if stale:
        s.at(8.0)
        _presence(s, "a", [_entry(s, "a", 0.0, 2.0), _entry(s, "b", joined_b, 1.0)])
    s.at(10.0)
    return s


def test_truthful_presence_passes() -> None:
    assert run(_two_sessions(), "presence-accuracy", leave_bound_s=2.0).status == "pass"


def test_joined_at_far_from_the_real_join_fails() -> None:
    result = run(_two_sessions(joined_b=6.0), "presence-accuracy")
    assert result.status == "fail" and "joinedAt" in result.evidence[0]["problem"]


def test_departed_session_still_listed_fails() -> None:
    result = run(_two_sessions(stale=True), "presence-accuracy", leave_bound_s=2.0)
    assert result.status == "fail"
    problems = " ".join(e["problem"] for e in result.evidence)
    assert "not visible" in problems and "after its leave bound" in problems


def test_leave_never_announced_fails() -> None:
    assert run(_two_sessions(announce_leave=False), "presence-accuracy", leave_bound_s=2.0).status == "fail"


def test_no_presence_is_unsupported() -> None:
    s = Script()
    s.connect("a").connect("b").at(1.0).close("b", by_client=True)
    assert "not supported" in run(s, "presence-accuracy").summary


def _outage(unavailable_at: float | None, recovered_at: float | None, degraded_beats: bool = True) -> Script:
    s = Script()
    s.obs.capabilities["notice"] = True
    s.at(0.0).connect("a")
    s.fault("s3_outage", "s3", 2.0, 8.0)
    for t in range(1, 15):
        s.at(float(t))
        if unavailable_at is not None and t == unavailable_at:
            s.notice("a", "BACKEND_UNAVAILABLE")
        if recovered_at is not None and t == recovered_at:
            s.notice("a", "BACKEND_RECOVERED")
        inside = unavailable_at is not None and unavailable_at < t < (recovered_at or 99)
        s.heartbeat("a", backend="degraded" if inside and degraded_beats else "ok")
    s.at(30.0).close("a", by_client=True)
    return s


def test_outage_announced_and_recovery_announced_passes() -> None:
    assert run(_outage(3, 9), "degradation-announced", heartbeat_interval_s=1.0).status == "pass"


def test_outage_never_announced_fails() -> None:
    result = run(_outage(None, None), "degradation-announced")
    assert result.status == "fail" and result.detected_at == 2.0 + 10.0


def test_announced_late_fails() -> None:
    assert run(_outage(13, None), "degradation-announced", announce_bound_s=5.0).status == "fail"


def test_heartbeats_saying_ok_during_the_outage_fail() -> None:
    result = run(_outage(3, 9, degraded_beats=False), "degradation-announced", heartbeat_interval_s=1.0)
    assert result.status == "fail" and "heartbeat" in result.evidence[0]["problem"]


def test_no_outage_unknown_and_no_notice_unsupported() -> None:
    s = Script()
    s.connect("a")
    assert run(s, "degradation-announced").status == "unknown"
    s2 = _outage(None, None)
    s2.obs.capabilities["notice"] = False
    assert "not supported" in run(s2, "degradation-announced").summary


def test_unknown_heartbeat_interval_leaves_beats_unjudged_and_says_which_key() -> None:
    result = run(_outage(3, 9, degraded_beats=False), "degradation-announced")
    assert result.status == "pass" and "heartbeat_interval_ms" in result.summary


def test_an_outage_the_target_never_touched_is_not_judged_one_it_touched_is() -> None:
    """A server learns of an outage from a failing request: with the harness owning S3, an outage
    during which no request reached the store (the server idle or paused) cannot be demanded an
    announcement; one with requests in it still is."""
    from harness.checks.observations import S3Request

    idle = _outage(None, None)
    idle.obs.s3_owned = True
    idle.obs.s3_requests = [S3Request(1.0, "PutObject"), S3Request(9.5, "PutObject")]
    result = run(idle, "degradation-announced")
    assert result.status == "unknown" and "could not have noticed" in result.summary
    busy = _outage(None, None)
    busy.obs.s3_owned = True
    busy.obs.s3_requests = [S3Request(3.0, "PutObject", status=503)]
    assert run(busy, "degradation-announced").status == "fail"


def test_a_missing_announcement_while_the_sessions_link_held_messages_back_is_excused() -> None:
    # A slicer on the shared client proxy across the announcement window: the notice may be
    # in flight (the explorer saw pushes arrive 7 s late behind one). A latency does not excuse.
    s = _outage(None, 9)
    s.fault("slicer", "client", 1.5, 13.0, average_size=64, delay_us=200)
    assert run(s, "degradation-announced").status == "pass"
    s2 = _outage(None, 9)
    s2.fault("latency", "client", 1.5, 13.0, latency_ms=150)
    assert run(s2, "degradation-announced").status == "fail"


def test_a_held_back_link_of_another_client_excuses_nothing() -> None:
    s = _outage(None, 9)
    s.fault("slicer", "client:b", 1.5, 13.0, average_size=64, delay_us=200)
    result = run(s, "degradation-announced")
    assert result.status == "fail" and result.evidence[0]["process"] == "a"
