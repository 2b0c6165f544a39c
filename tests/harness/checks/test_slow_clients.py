from __future__ import annotations

from tests.harness.checks.script import Script, run


def _slow_drop(notice: bool, code: int | None = 1013) -> Script:
    s = Script()
    s.obs.capabilities["notice"] = True
    s.at(0.0).connect("slow")
    s.at(1.0).pause("slow")
    s.at(5.0).resume("slow")
    if notice:
        s.notice("slow", "SLOW_CLIENT")
    s.at(5.1).close("slow", code=code)
    return s


def test_slow_client_told_before_1013_passes() -> None:
    assert run(_slow_drop(notice=True), "slow-client-notification").status == "pass"


def test_slow_client_dropped_silently_fails() -> None:
    result = run(_slow_drop(notice=False), "slow-client-notification")
    assert result.status == "fail" and result.detected_at == 5.1


def test_slow_client_dropped_with_abnormal_close_and_no_notice_fails() -> None:
    assert run(_slow_drop(notice=False, code=None), "slow-client-notification").status == "fail"


def test_slow_client_notification_without_notice_capability_is_unknown() -> None:
    s = _slow_drop(notice=False)
    s.obs.capabilities["notice"] = False
    result = run(s, "slow-client-notification")
    assert result.status == "unknown" and "not supported by target" in result.summary


def test_no_slow_drop_gives_unknown() -> None:
    s = Script()
    s.obs.capabilities["notice"] = True
    s.connect("a").at(1.0).close("a", by_client=True)
    assert run(s, "slow-client-notification").status == "unknown"


def _stall_with_fast_reader(latency: float | None) -> Script:
    s = Script()
    s.at(0.0).connect("slow").connect("fast").connect("writer")
    s.at(1.0).pause("slow")
    for i in range(3):
        s.at(2.0 + i)
        cs = s.change_set("writer", value=i)
        s.apply("writer", [cs])
        if latency is not None:
            s.at(2.0 + i + latency).push("fast", [cs])
    s.at(10.0).resume("slow")
    return s


def test_fast_reader_served_promptly_while_one_stalls_passes() -> None:
    assert run(_stall_with_fast_reader(0.05), "fast-client-latency", max_latency_s=1.0).status == "pass"


def test_fast_reader_held_up_by_a_stalled_one_fails() -> None:
    result = run(_stall_with_fast_reader(3.0), "fast-client-latency", max_latency_s=1.0)
    assert result.status == "fail" and result.evidence[0]["recipient"] == "fast"


def test_fast_reader_never_served_fails() -> None:
    assert run(_stall_with_fast_reader(None), "fast-client-latency", max_latency_s=1.0).status == "fail"


def test_no_stall_gives_unknown_latency() -> None:
    s = Script()
    s.connect("a")
    assert run(s, "fast-client-latency").status == "unknown"


def test_stalled_session_abandoned_in_silence_fails() -> None:
    s = Script()
    s.obs.capabilities["notice"] = True
    s.at(0.0).connect("slow").connect("other")
    s.at(1.0).pause("slow")
    s.at(4.0).resume("slow")
    for t in range(5, 15):
        s.at(float(t)).heartbeat("other")
    s.at(15.0).close("slow", code=None, by_client=True)
    result = run(s, "slow-client-notification", silence_s=5.0)
    assert result.status == "fail" and "silent" in result.evidence[0]["problem"]
    assert result.detected_at == 9.0


def test_stalled_session_that_keeps_hearing_the_server_is_not_abandoned() -> None:
    s = Script()
    s.obs.capabilities["notice"] = True
    s.at(0.0).connect("slow").connect("other")
    s.at(1.0).pause("slow")
    s.at(4.0).resume("slow")
    for t in range(5, 15):
        s.at(float(t)).heartbeat("other").heartbeat("slow")
    s.at(15.0).close("slow", by_client=True)
    assert run(s, "slow-client-notification", silence_s=5.0).status == "unknown"
