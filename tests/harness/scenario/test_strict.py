"""--strict: a run that could not test what it says (an unknown check, a skipped step) fails."""

from __future__ import annotations

from datetime import UTC, datetime

from harness.checks.result import CheckResult
from harness.history import History
from harness.report.record import RunRecord


def _record(statuses: list[str], skipped: bool = False, strict: bool = True) -> RunRecord:
    history = History()
    if skipped:
        history.event("nemesis", "step_skipped", step="crash", line=17, reason="external target")
    now = datetime.now(UTC)
    checks = [CheckResult(f"c{i}", status, "why") for i, status in enumerate(statuses)]  # type: ignore[arg-type]
    return RunRecord("s", 1, history, checks, now, now, strict=strict)


def test_without_strict_unknown_and_skipped_steps_do_not_fail() -> None:
    assert _record(["pass", "unknown"], skipped=True, strict=False).effective_exit_code == 0


def test_strict_fails_on_an_unknown_check() -> None:
    record = _record(["pass", "unknown"])
    assert record.effective_exit_code == 1 and record.strict_problems() == ["unknown c1: why"]


def test_strict_fails_on_a_skipped_step() -> None:
    record = _record(["pass"], skipped=True)
    assert record.effective_exit_code == 1
    assert record.strict_problems() == ["step crash (line 17) skipped: external target"]


def test_strict_passes_a_run_that_tested_everything() -> None:
    assert _record(["pass", "pass"]).effective_exit_code == 0


def test_strict_does_not_fail_a_check_the_target_cannot_support() -> None:
    from harness.checks.verdict import unsupported

    record = _record(["pass"])
    record.checks.append(unsupported("ordered-seq", {}, ["seq"]))
    assert record.effective_exit_code == 0 and record.strict_problems() == []
