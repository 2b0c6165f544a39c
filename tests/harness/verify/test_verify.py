"""`harness verify` with a fake child: only a run that ended with a verdict of its own counts."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from harness.verify import Job, VerifyError, _run_job, check_coverage, verify

FAKE = [sys.executable, str(Path(__file__).with_name("fake_harness.py"))]


def _bugs(tmp_path: Path, *ids: str, catches: str = "convergence") -> Path:
    folder = tmp_path / "bugs"
    folder.mkdir()
    for bug in ids:
        (folder / f"{bug}.yaml").write_text(
            f"name: {bug}\nduration_s: 1\nclients: [{{name: r, behaviour: reader}}]\n"
            f"checks: {{convergence: {{}}, survival: {{}}}}\ncatches: [{catches}]\n"
        )
    return folder


async def _matrix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str, catches: str = "convergence", **kw: object
) -> tuple[bool, list]:
    monkeypatch.setenv("FAKE_HARNESS_MODE", mode)
    folder = _bugs(tmp_path, "bug-a", catches=catches)
    return await verify(
        folder, [], 1, 1, tmp_path / "reports", lambda line: None, harness_cmd=FAKE, catalogue=["bug-a"], **kw
    )


async def test_a_bug_caught_and_no_false_alarm_passes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ok, [row] = await _matrix(tmp_path, monkeypatch, "detect")
    assert ok and row.detected and row.caught_by == ["convergence"] and not row.false_alarm


async def test_a_crash_is_an_error_never_a_detection(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ok, [row] = await _matrix(tmp_path, monkeypatch, "crash")
    assert not ok and not row.detected


async def test_a_journal_left_by_an_earlier_invocation_is_not_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ok, _ = await _matrix(tmp_path, monkeypatch, "detect")
    assert ok and (tmp_path / "reports" / "verify" / "runs" / "bug-a-with-bug" / "latest").exists()
    monkeypatch.setenv("FAKE_HARNESS_MODE", "crash")  # same report dir, now the child leaves nothing
    ok, [row] = await verify(
        tmp_path / "bugs",
        [],
        1,
        1,
        tmp_path / "reports",
        lambda line: None,
        harness_cmd=FAKE,
        catalogue=["bug-a"],
    )
    assert not ok and not row.detected


async def test_a_journal_of_another_scenario_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ok, [row] = await _matrix(tmp_path, monkeypatch, "foreign")
    assert not ok and not row.detected


async def test_an_exit_code_that_contradicts_the_journal_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ok, [row] = await _matrix(tmp_path, monkeypatch, "mismatch")
    assert not ok and not row.detected


async def test_a_false_alarm_fails_the_matrix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ok, [row] = await _matrix(tmp_path, monkeypatch, "false-alarm")
    assert not ok and row.false_alarm == ["convergence"]
    matrix = json.loads((tmp_path / "reports" / "verify" / "matrix.json").read_text())
    assert "convergence" in json.dumps(matrix)


async def test_a_hung_run_is_stopped_and_counted_as_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_HARNESS_MODE", "hang")
    folder = _bugs(tmp_path, "bug-a")
    job = Job("bug-a", folder / "bug-a.yaml", True, 0, tmp_path / "job")
    result = await _run_job(job, None, timeout_s=1.0, command=FAKE)
    assert result.error is not None and "did not end within" in result.error and not result.failed_checks


def test_the_scenarios_must_cover_the_catalogue_exactly() -> None:
    check_coverage(["a", "b"], ["b", "a"])
    with pytest.raises(VerifyError, match="without a scenario: c"):
        check_coverage(["a", "b"], ["a", "b", "c"])
    with pytest.raises(VerifyError, match="does not know: z"):
        check_coverage(["a", "z"], ["a"])


async def test_a_failure_of_a_check_the_scenario_does_not_declare_is_no_detection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ok, [row] = await _matrix(tmp_path, monkeypatch, "detect", catches="survival")  # convergence failed
    assert not ok and not row.detected and row.caught_by == []


async def test_a_bug_scenario_without_catches_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "bugs"
    folder.mkdir()
    (folder / "bug-a.yaml").write_text(
        "name: bug-a\nduration_s: 1\nclients: [{name: r, behaviour: reader}]\nchecks: {convergence: {}}\n"
    )
    with pytest.raises(VerifyError, match="catches"):
        await verify(
            folder, [], 1, 1, tmp_path / "r", lambda line: None, harness_cmd=FAKE, catalogue=["bug-a"]
        )
