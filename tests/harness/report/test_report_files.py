"""The run directory: journal round trip, JUnit counts and validity, HTML content, `latest`."""

from __future__ import annotations

import gzip
import json
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

from harness.checks.result import CheckResult
from harness.history import History
from harness.report import (
    build_journal,
    load_journal,
    make_run_id,
    record_from_journal,
    verdict_of,
    write_run_report,
)
from harness.report.journal import dumps_journal
from tests.harness.report.builders import EVIL, STARTED, big_history, make_run

ESCAPED_EVIL = "&lt;script&gt;alert(1)&lt;/script&gt;"


def test_run_writes_three_files_and_points_latest(reports: Path) -> None:
    run_dir = write_run_report(reports, make_run())
    assert run_dir.name == "20261122T031500Z-smoke-s42"
    assert sorted(p.name for p in run_dir.iterdir()) == ["journal.json.gz", "junit.xml", "report.html"]
    assert (reports / "latest").is_symlink()
    assert (reports / "latest").resolve() == run_dir.resolve()


def test_same_second_runs_get_distinct_dirs_and_latest_never_moves_back(reports: Path) -> None:
    first = write_run_report(reports, make_run())
    second = write_run_report(reports, make_run())
    assert second.name == first.name + "-2"
    later = write_run_report(reports, make_run(started_at=STARTED + timedelta(minutes=5)))
    assert (reports / "latest").resolve() == later.resolve()
    write_run_report(reports, make_run(started_at=STARTED - timedelta(minutes=5)))
    assert (reports / "latest").resolve() == later.resolve()


def test_latest_is_a_text_file_where_symlinks_are_refused(
    reports: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError("symlinks not supported here")

    monkeypatch.setattr(os, "symlink", refuse)
    run_dir = write_run_report(reports, make_run())
    latest = reports / "latest"
    assert latest.is_file() and not latest.is_symlink()
    assert latest.read_text().strip() == run_dir.name
    assert not [p for p in reports.iterdir() if p.name.startswith(".latest")]


def test_run_id_is_sortable_and_filesystem_safe() -> None:
    assert make_run_id("a b/../c", 7, STARTED) == "20261122T031500Z-a_b_.._c-s7"
    assert make_run_id("x", 1, STARTED) < make_run_id("x", 1, STARTED + timedelta(seconds=1))


def test_journal_round_trips_and_holds_what_a_rerun_needs(reports: Path) -> None:
    run = make_run()
    run_dir = write_run_report(reports, run)
    journal = load_journal(run_dir / "journal.json.gz")
    assert load_journal(run_dir) == journal
    assert journal["scenario"] == {
        "name": "smoke",
        "path": "scenarios/smoke.yaml",
        "data": {"name": "smoke", "duration": 30, "clients": [{"count": 3, "behaviour": "writer"}]},
    }
    assert journal["seed"] == 42
    assert journal["rerun"]["command"] == "harness run scenarios/smoke.yaml --seed 42"
    assert journal["verdict"] == "fail" and journal["exit_code"] == 1
    assert journal["counts"] == {"pass": 1, "fail": 1, "unknown": 1}
    assert journal["versions"]["toxiproxy"] == "2.12.0" and journal["versions"]["harness"]
    assert journal["started_at"] == "2026-11-22T03:15:00.000000Z"
    assert len(journal["history"]["ops"]) == len(run.history.ops)
    assert journal["fault_windows"][0]["end"] == 20.0 and journal["fault_windows"][1]["end"] is None
    failing = next(c for c in journal["checks"] if c["status"] == "fail")
    assert failing["detected_at"] == 19.01 and failing["evidence"][0]["payload"] == EVIL

    rebuilt = record_from_journal(journal)
    assert [c.to_json() for c in rebuilt.checks] == [c.to_json() for c in run.checks]
    assert rebuilt.history.to_json() == run.history.to_json()
    assert build_journal(rebuilt) == journal
    # re-rendering from the journal alone reproduces it byte for byte
    before = (run_dir / "journal.json.gz").read_bytes()
    assert write_run_report(reports, rebuilt) == run_dir
    assert (run_dir / "journal.json.gz").read_bytes() == before


@dataclass
class ScenarioModel:
    name: str
    steps: tuple[str, ...]
    path: Path


def test_journal_is_strict_json_whatever_the_history_holds(reports: Path) -> None:
    run = make_run(scenario_data=ScenarioModel("smoke", ("kill", "restart"), Path("scenarios/smoke.yaml")))
    run.history.message(
        "c1", "recv", {"type": "weird", "raw": b"\x00\xff", "tags": {"b", "a"}, "x": float("nan")}
    )
    run_dir = write_run_report(reports, run)

    def reject(token: str) -> None:
        raise AssertionError(f"non-standard JSON constant {token}")

    text = gzip.decompress((run_dir / "journal.json.gz").read_bytes()).decode("utf-8")
    strict = json.loads(text, parse_constant=reject)
    weird = strict["history"]["messages"][-1]["payload"]
    assert weird == {"type": "weird", "raw": {"$base64": "AP8="}, "tags": ["a", "b"], "x": "nan"}
    assert strict["scenario"]["data"] == {
        "name": "smoke",
        "steps": ["kill", "restart"],
        "path": "scenarios/smoke.yaml",
    }


def test_load_journal_refuses_other_files(tmp_path: Path) -> None:
    other = tmp_path / "other.json"
    other.write_text('{"hello": 1}')
    with pytest.raises(ValueError, match="not a sync-chaos-harness journal"):
        load_journal(other)
    newer = tmp_path / "newer.json"
    newer.write_text(dumps_journal({"format": "sync-chaos-harness/journal", "format_version": 99}))
    with pytest.raises(ValueError, match="format version 99"):
        load_journal(newer)


def test_the_clis_own_rerun_command_wins(reports: Path) -> None:
    command = "harness run scenarios/smoke.yaml --seed 42 --target ws://10.0.0.5:8080/sync"
    run_dir = write_run_report(reports, make_run(rerun=command))
    assert load_journal(run_dir)["rerun"]["command"] == command
    assert command in (run_dir / "report.html").read_text()
    assert make_run().rerun_command() == "harness run scenarios/smoke.yaml --seed 42"
    assert make_run(scenario_path="my dir/x.yaml").rerun_command() == "harness run 'my dir/x.yaml' --seed 42"


def test_verdict_unknown_only_is_neither_pass_nor_fail() -> None:
    unknown = CheckResult("leaks", "unknown", "no /debug/resources")
    assert verdict_of([unknown]) == "unknown"
    assert verdict_of([]) == "unknown"
    assert verdict_of([unknown, CheckResult("x", "pass", "ok")]) == "pass"
    run = make_run(checks=[unknown])
    assert run.effective_exit_code == 0 and run.verdict == "unknown"
    assert make_run(checks=[unknown], exit_code=2).effective_exit_code == 2


def test_junit_counts_and_mapping(reports: Path) -> None:
    run_dir = write_run_report(reports, make_run())
    root = ET.parse(run_dir / "junit.xml").getroot()
    assert root.tag == "testsuites"
    (suite,) = root.findall("testsuite")
    assert suite.get("name") == "smoke"
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped"), suite.get("errors")) == (
        "3",
        "1",
        "1",
        "0",
    )
    assert suite.get("time") == "31.500" and suite.get("timestamp") == "2026-11-22T03:15:00"
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["seed"] == "42" and props["rerun"] == "harness run scenarios/smoke.yaml --seed 42"
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert set(cases) == {"broadcast-delivery", "heartbeat-continuity", "leaks"}
    assert all(c.get("classname") == "smoke" for c in cases.values())
    assert cases["heartbeat-continuity"].get("time") == "0.012"
    failure = cases["heartbeat-continuity"].find("failure")
    assert failure is not None and failure.get("message") == f"c2 went 7.0 s without a heartbeat {EVIL}"
    assert failure.text is not None and "gap_s" in failure.text and "\\u001b" in failure.text
    skipped = cases["leaks"].find("skipped")
    assert (
        skipped is not None and skipped.get("message") == "unknown: target does not expose /debug/resources"
    )
    assert cases["leaks"].find("failure") is None
    passing = cases["broadcast-delivery"]
    assert passing.find("failure") is None and passing.find("skipped") is None
    # an unknown is never counted as passed
    passed = int(suite.get("tests", "0")) - int(suite.get("failures", "0")) - int(suite.get("skipped", "0"))
    assert passed == 1


def test_junit_stays_valid_xml_with_characters_xml_forbids(reports: Path) -> None:
    check = CheckResult("error-specificity", "unknown", "server said \x1b[31m\x00\ud800 <&>\"'")
    run_dir = write_run_report(reports, make_run(checks=[check], notes=["bell \x07"]))
    suite = ET.parse(run_dir / "junit.xml").getroot().find("testsuite")
    assert suite is not None
    skipped = suite.find("testcase/skipped")
    assert skipped is not None
    assert skipped.get("message") == "unknown: server said \\x1b[31m\\x00\\xd800 <&>\"'"
    out = suite.find("system-out")
    assert out is not None and out.text == "bell \\x07"


def test_html_has_summary_faults_rerun_and_escapes_server_strings(reports: Path) -> None:
    html = (write_run_report(reports, make_run()) / "report.html").read_text()
    for name, status in (
        ("heartbeat-continuity", "fail"),
        ("leaks", "unknown"),
        ("broadcast-delivery", "pass"),
    ):
        assert f'data-status="{status}"><td><a href="#evidence-{name}"><b>{name}</b></a></td>' in html
    assert "#1 latency @ client-path" in html and "#2 s3-outage @ s3" in html
    assert html.count('class="fault-shade"') == 3 * 2  # both windows, in all three plots
    assert "still in force" in html
    assert "harness run scenarios/smoke.yaml --seed 42" in html
    assert '<details class="fail" id="evidence-heartbeat-continuity">' in html
    assert "✗ heartbeat-continuity" in html  # where the failing check first saw a violation
    assert html.count('<circle class="evidence"') == 2  # its evidence, ringed on c2's lane
    assert '<a href="#evidence-heartbeat-continuity"><b>heartbeat-continuity</b></a>' in html
    assert EVIL not in html and ESCAPED_EVIL in html
    assert html.count("<script>") == 2  # the page's own two, nothing injected
    assert "\x1b" not in html and "\x00" not in html


def test_html_is_self_contained(reports: Path) -> None:
    html = (write_run_report(reports, make_run()) / "report.html").read_text()
    assert html.count("http") == html.count('xmlns="http://www.w3.org/2000/svg"')
    assert "src=" not in html and "<link" not in html and "@import" not in html


def test_big_history_report_stays_small_and_says_what_it_left_out(reports: Path) -> None:
    history = big_history()
    assert len(history.ops) + len(history.messages) + len(history.events) >= 49_000
    run_dir = write_run_report(reports, make_run(history=history))
    html = (run_dir / "report.html").read_text()
    assert len(html.encode()) < 2_500_000
    assert "drawn per pixel column" in html
    assert "Capped at 5000 ticks" in html
    assert "min-max line with a dot at the median" in html
    assert html.count('<rect class="op ') < 20 * 1060  # at most one bar per lane and pixel


def test_an_empty_run_still_leaves_all_three_files(reports: Path) -> None:
    """A run that crashed before any client connected must still be reported, as unknown."""
    run = make_run(history=History(clock=lambda: 0.0), checks=[], scenario_path=None, notes=["setup failed"])
    run_dir = write_run_report(reports, run)
    journal = load_journal(run_dir)
    assert journal["verdict"] == "unknown" and journal["rerun"]["command"] is None
    html = (run_dir / "report.html").read_text()
    assert "No checks ran." in html and "The history has no client entries." in html
    assert "save it as YAML and run" in html
    assert ET.parse(run_dir / "junit.xml").getroot().get("tests") == "0"
