from __future__ import annotations

from harness.checks.observations import LogLine, ProcessEvent
from tests.harness.checks.script import Script, run


def _shutdown(tell_b: bool, code_b: int | None = 1001) -> Script:
    s = Script()
    s.obs.capabilities["notice"] = True
    s.at(0.0).connect("a").connect("b")
    s.at(0.5).connect("gone").at(1.0).close("gone", by_client=True)
    s.obs.process.append(ProcessEvent(2.0, "sigterm"))
    s.at(2.1).notice("a", "SERVER_SHUTDOWN", retryAfterMs=1000)
    if tell_b:
        s.notice("b", "SERVER_SHUTDOWN", retryAfterMs=1000)
    s.at(2.2).close("a", code=1001).close("b", code=code_b)
    s.obs.process.append(ProcessEvent(2.5, "exit", exit_code=0))
    return s


def test_every_session_told_before_1001_passes() -> None:
    assert run(_shutdown(tell_b=True), "shutdown-notification").status == "pass"


def test_session_closed_without_server_shutdown_fails() -> None:
    result = run(_shutdown(tell_b=False), "shutdown-notification")
    assert result.status == "fail" and result.evidence[0]["process"] == "b"


def test_told_but_closed_with_another_code_fails() -> None:
    assert run(_shutdown(tell_b=True, code_b=1006), "shutdown-notification").status == "fail"


def test_no_shutdown_gives_unknown_and_no_notice_capability_gives_unsupported() -> None:
    s = Script()
    s.connect("a")
    assert run(s, "shutdown-notification").status == "unknown"
    s2 = _shutdown(tell_b=False)
    s2.obs.capabilities["notice"] = False
    assert "not supported" in run(s2, "shutdown-notification").summary


def test_clean_exit_passes_and_bad_exits_fail() -> None:
    assert run(_shutdown(True), "clean-shutdown").status == "pass"
    s = _shutdown(True)
    s.obs.logs.append(LogLine(2.3, "error   store_cleanup_failed store closed"))
    result = run(s, "clean-shutdown")
    assert result.status == "fail" and result.detected_at == 2.3
    s = _shutdown(True)
    s.obs.process[-1] = ProcessEvent(2.5, "exit", exit_code=1)
    assert run(s, "clean-shutdown").status == "fail"
    s = _shutdown(True)
    s.obs.process[-1] = ProcessEvent(30.0, "exit", exit_code=0)
    assert run(s, "clean-shutdown", deadline_s=10.0).status == "fail"


def test_a_json_log_line_is_an_error_by_its_level_not_by_a_key_named_error() -> None:
    s = _shutdown(True)
    s.obs.logs.append(LogLine(2.3, '{"level": "info", "event": "drained", "error": null, "failed": 0}'))
    assert run(s, "clean-shutdown").status == "pass"
    s.obs.logs.append(LogLine(2.4, '{"level": "error", "event": "store_cleanup_failed"}'))
    result = run(s, "clean-shutdown")
    assert result.status == "fail" and result.detected_at == 2.4
    s = _shutdown(True)
    s.obs.logs.append(LogLine(2.3, '{"msg": "Traceback in cleanup"}'))  # no level: the message decides
    assert run(s, "clean-shutdown").status == "fail"


def test_clean_shutdown_without_sigterm_is_unknown() -> None:
    assert run(Script(), "clean-shutdown").status == "unknown"
