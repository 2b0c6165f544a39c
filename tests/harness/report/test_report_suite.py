"""Suite reports (several scenario runs in one directory) and the verify matrix."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from datetime import timedelta
from pathlib import Path

from harness.checks.result import CheckResult
from harness.report import (
    MatrixRow,
    load_journal,
    matrix_ok,
    write_matrix,
    write_run_report,
    write_suite_report,
)
from tests.harness.report.builders import EVIL, ROWS, STARTED, make_run


def test_suite_combines_runs_written_here_and_elsewhere(reports: Path, tmp_path: Path) -> None:
    elsewhere = write_run_report(
        tmp_path / "worker",
        make_run(scenario_name="s3-outage", seed=7, checks=[CheckResult("no-lost-write", "pass", "ok")]),
    )
    passing = make_run(
        scenario_name="broadcast",
        started_at=STARTED + timedelta(seconds=40),
        ended_at=STARTED + timedelta(seconds=70),
        checks=[CheckResult("broadcast-delivery", "pass", "ok"), CheckResult("leaks", "unknown", "n/a")],
    )
    suite_dir = write_suite_report(reports, [make_run(), passing, elsewhere], name="default suite")
    assert suite_dir.name == "20261122T031500Z-default_suite"
    assert (reports / "latest").resolve() == suite_dir.resolve()
    assert {p.name for p in suite_dir.iterdir()} == {
        "20261122T031500Z-smoke-s42",
        "20261122T031540Z-broadcast-s42",
        "index.html",
        "junit.xml",
        "suite.json",
    }
    assert load_journal(suite_dir / "20261122T031540Z-broadcast-s42")["verdict"] == "pass"

    root = ET.parse(suite_dir / "junit.xml").getroot()
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == ["smoke", "broadcast", "s3-outage"]
    assert (root.get("tests"), root.get("failures"), root.get("skipped")) == ("6", "1", "2")

    summary = json.loads((suite_dir / "suite.json").read_text())
    assert summary["verdict"] == "fail" and summary["exit_code"] == 1
    assert [r["verdict"] for r in summary["runs"]] == ["fail", "pass", "pass"]
    link = summary["runs"][2]["dir"]
    assert (suite_dir / link).resolve() == elsewhere.resolve()

    index = (suite_dir / "index.html").read_text()
    assert f'href="{link}/report.html"' in index
    assert 'href="20261122T031500Z-smoke-s42/report.html"' in index
    assert "heartbeat-continuity" in index  # the failing check is named on the index
    assert "harness run scenarios/smoke.yaml --seed 42" in index


def test_suite_with_matrix_embeds_it(reports: Path) -> None:
    suite_dir = write_suite_report(reports, [make_run()], name="verify", matrix_rows=ROWS)
    assert (suite_dir / "matrix.json").is_file() and (suite_dir / "matrix.html").is_file()
    index = (suite_dir / "index.html").read_text()
    assert 'id="matrix"' in index and "leak-store" in index


def test_matrix_files_and_outcomes(tmp_path: Path) -> None:
    out = tmp_path / "verify"
    html_path = write_matrix(ROWS, out)
    assert html_path == out / "matrix.html"
    doc = json.loads((out / "matrix.json").read_text())
    assert doc["ok"] is False
    assert [r["outcome"] for r in doc["rows"]] == ["detected", "missed", "false-alarm"]
    assert doc["rows"][2]["runs"] == ROWS[2]["runs"]
    html = html_path.read_text()
    assert "<b>heartbeat-stall</b></td><td>scenarios/bugs/heartbeat-stall.yaml</td>" in html
    assert '<span class="pill detected">detected</span></td><td>heartbeat-continuity</td>' in html
    assert '<td class="num">12.50 s</td>' in html
    assert '<span class="pill missed">missed</span>' in html
    assert '<span class="pill false-alarm">false alarm</span>' in html
    assert 'href="../20261122T031600Z-noisy-s1/report.html"' in html
    assert "2 of 3 bugs detected; 1 missed; false alarms on the correct coordinator: 1." in html
    assert EVIL not in html and "&lt;script&gt;" in html


def test_matrix_ok_only_when_every_bug_is_caught_without_false_alarm() -> None:
    caught = MatrixRow("b1", "s1", True, ["c"], 1.0)
    assert matrix_ok([caught])
    assert not matrix_ok([caught, MatrixRow("b2", "s2", False)])
    assert not matrix_ok([caught, MatrixRow("b3", "s3", True, ["c"], 2.0, false_alarm=["c"])])
    assert not matrix_ok([])


def test_suite_summary_names_every_failed_check_and_its_replay() -> None:
    """The closing lines of `harness suite`: what a CI log shows at its tail."""
    from harness.cli import _summary_lines

    passed = make_run(scenario_name="quiet", checks=[CheckResult("convergence", "pass", "agree")])
    failed = make_run()
    lines = _summary_lines([("reports/a", passed), ("reports/b", failed)])
    assert lines[0] == "summary: 2 scenarios: 1 fail, 1 pass"
    text = "\n".join(lines)
    assert "quiet" not in text
    assert "fail  smoke (exit 1) -> reports/b" in text
    assert "fail  heartbeat-continuity: c2 went 7.0 s without a heartbeat" in text
    assert "unknown  leaks: target does not expose /debug/resources" in text
    assert "replay: harness run scenarios/smoke.yaml --seed 42" in text


def test_suite_summary_counts_a_pass_that_strict_fails_apart() -> None:
    """Under --strict a run whose checks passed or said unknown for want of evidence fails; its
    tally must not read like a green one."""
    from harness.cli import _summary_lines

    thin = make_run(scenario_name="thin", checks=[CheckResult("convergence", "unknown", "no replica")])
    thin.strict = True
    lines = _summary_lines([("reports/a", thin)])
    assert lines[0] == f"summary: 1 scenarios: 1 {thin.verdict} (strict: fail)"
    assert "strict: an unknown check or a skipped step fails the run" in "\n".join(lines)
