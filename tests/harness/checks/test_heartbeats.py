from __future__ import annotations

from tests.harness.checks.script import Script, run


def _beats(times: list[float], end: float) -> Script:
    s = Script()
    s.at(0.0).connect("a")
    for t in times:
        s.at(t).heartbeat("a")
    s.at(end).close("a", by_client=True)
    return s


def test_regular_heartbeats_pass() -> None:
    result = run(_beats([1.0, 2.0, 3.0, 4.0], 4.5), "heartbeat-continuity", interval_s=1.0)
    assert result.status == "pass"


def test_heartbeats_stopping_during_an_s3_outage_fail() -> None:
    s = _beats([1.0, 2.0, 6.0, 7.0], 7.5)
    s.fault("s3_outage", "s3", 2.5, 5.5)
    result = run(s, "heartbeat-continuity", interval_s=1.0, factor=2.0)
    assert result.status == "fail"
    assert result.evidence[0]["gap_s"] == 4.0 and result.detected_at == 4.0


def test_gap_during_a_network_partition_is_excused() -> None:
    s = _beats([1.0, 2.0, 6.0, 7.0], 7.5)
    s.fault("timeout", "proxy-a", 2.5, 5.5)
    assert run(s, "heartbeat-continuity", interval_s=1.0).status == "pass"


def test_silence_until_the_session_ends_is_a_gap() -> None:
    assert run(_beats([1.0], 9.0), "heartbeat-continuity", interval_s=1.0).status == "fail"


def test_no_heartbeat_ever_and_not_declared_is_unknown() -> None:
    s = Script()
    s.connect("a").at(20.0).close("a", by_client=True)
    result = run(s, "heartbeat-continuity", interval_s=1.0)
    assert result.status == "unknown" and "not supported" in result.summary


def test_no_heartbeat_ever_when_declared_fails() -> None:
    s = Script()
    s.obs.capabilities["heartbeat"] = True
    s.connect("a").at(20.0).close("a", by_client=True)
    assert run(s, "heartbeat-continuity", interval_s=1.0).status == "fail"


def test_unknown_interval_gives_unknown_naming_the_profile_key() -> None:
    result = run(_beats([1.0], 9.0), "heartbeat-continuity")
    assert result.status == "unknown" and "heartbeat_interval_ms" in result.summary


def _busy(skip_busy_after_push: bool) -> Script:
    """`busy` receives a push every 0.4 s, `idle` none; heartbeats every 1 s to both, except
    that a server skipping the heartbeat of a session that just got a push starves `busy`."""
    s = Script()
    s.at(0.0).connect("idle").connect("busy")
    t = 0.0
    for step in range(1, 26):
        t = step * 0.4
        s.at(t).push("busy", [s.change_set("w", value=step)], seq=step)
        if step % 5 == 0:
            s.at(t + 0.01).heartbeat("idle")
            if not skip_busy_after_push:
                s.heartbeat("busy")
    s.at(t + 0.5).close("idle", by_client=True).close("busy", by_client=True)
    return s


def test_busy_sessions_hear_heartbeats_like_idle_ones() -> None:
    assert run(_busy(False), "heartbeat-continuity", interval_s=2.0).status == "pass"


def test_a_server_skipping_heartbeats_to_busy_sessions_fails() -> None:
    result = run(_busy(True), "heartbeat-continuity", interval_s=2.0)
    assert result.status == "fail"
    assert {e["process"] for e in result.evidence} == {"busy"}
