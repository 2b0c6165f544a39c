from __future__ import annotations

from typing import Any

from harness.history import OpName
from tests.harness.checks.script import Script, run


def _outcome(ended: str, problems: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    return {"ended": ended, "problems": problems or [], "chunks": 3} | extra


def test_complete_streams_pass() -> None:
    s = Script()
    s.op("a", OpName.SNAPSHOT, "ok", result=_outcome("complete"))
    s.op(
        "a",
        OpName.HTTP_SNAPSHOT,
        "fail",
        result=_outcome("error", code="SNAPSHOT_ERROR"),
        error="SNAPSHOT_ERROR",
    )
    assert run(s, "stream-completeness").status == "pass"


def test_http_stream_ending_without_footer_or_error_fails() -> None:
    s = Script()
    s.op("a", OpName.SNAPSHOT, "ok", result=_outcome("complete"))
    s.at(2.0)
    bad = s.op("a", OpName.HTTP_SNAPSHOT, "info", result=_outcome("eof"), error="eof")
    result = run(s, "stream-completeness")
    assert result.status == "fail"
    assert result.detected_at == bad.time
    assert "truncated" in result.evidence[0]["problem"]


def test_footer_counts_disagreeing_with_what_was_sent_fail() -> None:
    s = Script()
    s.op("a", OpName.SNAPSHOT, "ok", result=_outcome("complete", ["footer totalEntries 5 but 3 sent"]))
    assert run(s, "stream-completeness").status == "fail"


def test_latency_alone_does_not_excuse_a_cut_stream() -> None:
    s = Script()
    s.fault("latency", "proxy-a", 0.0, 5.0)  # delays bytes; it never cuts a connection
    s.at(1.0)
    s.op("a", OpName.HTTP_SNAPSHOT, "info", result=_outcome("disconnected"), error="disconnected")
    assert run(s, "stream-completeness").status == "fail"


def test_stream_cut_during_a_network_fault_is_excused_and_gives_unknown_alone() -> None:
    s = Script()
    s.fault("reset_peer", "proxy-a", 0.0, 5.0)
    s.at(1.0)
    s.op("a", OpName.HTTP_SNAPSHOT, "info", result=_outcome("disconnected"), error="disconnected")
    assert run(s, "stream-completeness").status == "unknown"
    assert run(s, "stream-completeness", excuse_faults=False).status == "fail"


def test_no_snapshot_gives_unknown() -> None:
    assert run(Script(), "stream-completeness").status == "unknown"


def test_resume_answered_by_an_error_fails_and_a_complete_resume_passes() -> None:
    good = Script()
    good.op("a", OpName.RESUME_SNAPSHOT, "ok", result=_outcome("complete", resumed=True))
    assert run(good, "snapshot-resume").status == "pass"
    bad = Script()
    bad.op(
        "a",
        OpName.RESUME_SNAPSHOT,
        "fail",
        result=_outcome("error", code="UNKNOWN_MESSAGE"),
        error="UNKNOWN_MESSAGE",
    )
    result = run(bad, "snapshot-resume")
    assert result.status == "fail" and "UNKNOWN_MESSAGE" in result.evidence[0]["problem"]
    assert run(Script(), "snapshot-resume").status == "unknown"


def test_resume_whose_header_does_not_repeat_the_checkpoint_fails() -> None:
    s = Script()
    s.op(
        "a",
        OpName.RESUME_SNAPSHOT,
        "ok",
        result=_outcome("complete", ["resumed header snapshotId 'x' != checkpoint 'y'"]),
    )
    assert run(s, "snapshot-resume").status == "fail"


def test_truncation_under_a_failpoint_is_not_excused() -> None:
    s = Script()
    s.fault("failpoint", "snapshot.read", 0.0, 5.0)
    s.at(1.0).op("a", OpName.HTTP_SNAPSHOT, "info", result=_outcome("eof"), error="eof")
    assert run(s, "stream-completeness").status == "fail"


def test_resume_failing_with_snapshot_error_under_a_failpoint_is_excused_unknown_message_never() -> None:
    s = Script()
    s.fault("failpoint", "snapshot.read", 0.0, 5.0)
    s.at(1.0).op(
        "a",
        OpName.RESUME_SNAPSHOT,
        "fail",
        result=_outcome("error", code="SNAPSHOT_ERROR"),
        error="SNAPSHOT_ERROR",
    )
    assert run(s, "snapshot-resume").status == "unknown"
    s.op(
        "a",
        OpName.RESUME_SNAPSHOT,
        "fail",
        result=_outcome("error", code="UNKNOWN_MESSAGE"),
        error="UNKNOWN_MESSAGE",
    )
    assert run(s, "snapshot-resume").status == "fail"


def test_ws_snapshot_ending_with_a_generic_error_fails_and_its_own_error_passes() -> None:
    good = Script()
    good.op(
        "a", OpName.SNAPSHOT, "fail", result=_outcome("error", code="SNAPSHOT_ERROR"), error="SNAPSHOT_ERROR"
    )
    assert run(good, "stream-completeness").status == "pass"
    for code in ("MESSAGE_ERROR", "GET_CHANGES_ERROR", None):
        bad = Script()
        bad.at(1.0).op("a", OpName.SNAPSHOT, "fail", result=_outcome("error", code=code), error=str(code))
        result = run(bad, "stream-completeness")
        assert result.status == "fail", code
        assert f"failed with {code}" in result.evidence[0]["problem"] and result.detected_at is not None


def test_generic_snapshot_error_under_a_network_fault_is_excused_under_a_failpoint_not() -> None:
    s = Script()
    s.fault("reset_peer", "client", 0.0, 5.0)
    s.at(1.0).op(
        "a", OpName.SNAPSHOT, "fail", result=_outcome("error", code="MESSAGE_ERROR"), error="MESSAGE_ERROR"
    )
    assert run(s, "stream-completeness").status == "unknown"
    s2 = Script()
    s2.fault("failpoint", "snapshot.read", 0.0, 5.0)
    s2.at(1.0).op(
        "a", OpName.SNAPSHOT, "fail", result=_outcome("error", code="MESSAGE_ERROR"), error="MESSAGE_ERROR"
    )
    assert run(s2, "stream-completeness").status == "fail"


def test_http_error_line_without_a_code_is_an_honest_end() -> None:
    s = Script()
    s.op("a", OpName.HTTP_SNAPSHOT, "fail", result=_outcome("error", code=None), error="error")
    assert run(s, "stream-completeness").status == "pass"
