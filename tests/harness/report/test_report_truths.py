"""The report tells what a run could not do where it is seen first (issue 10): skipped steps
and notes in the banner, the suite index flags a scenario whose fault steps were all skipped,
and fault shading stays visible across every lane of the timeline."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path

from harness.checks.result import CheckResult
from harness.history import History
from harness.report import load_journal, record_from_journal, write_run_report, write_suite_report
from harness.report.plots import span_of
from harness.report.svg import esc
from harness.report.timeline import timeline
from tests.harness.report.builders import EVIL, STARTED, Clock, make_run, small_checks, small_history

PAUSE = "pause cannot be caused here: external target: the harness has no control over its process"
KILL = "kill cannot be caused here: external target: the harness has no control over its process"
TIMELINE = [
    {"id": "pause", "fault": {"kind": "pause"}, "clear": None, "line": 16},
    {"id": "crash", "fault": {"kind": "kill"}, "clear": None, "line": 17},
    {"id": "heal", "fault": None, "clear": "crash", "line": 18},
]
SCENARIO = {"name": "process-faults", "timeline": TIMELINE}
PASSING = [CheckResult("convergence", "pass", "agree"), CheckResult("durability", "unknown", "no S3")]


def steps_history(fired: tuple[str, ...] = (), skipped: tuple[str, ...] = ("pause", "crash")) -> History:
    """A short run whose timeline steps fired or were skipped, as the timeline runner notes them."""
    clock = Clock()
    h = History(clock=clock)
    op = h.invoke("c1", "apply", {"changes": 1})
    clock.t = 0.5
    h.complete(op, "ok", {"applied": 1})
    reasons = {"pause": PAUSE, "crash": KILL}
    for step in fired:
        clock.t = 1.0
        h.event("nemesis", "step_fired", step=step, line=16, fault=f"{step} @ coordinator")
    for step in skipped:
        clock.t = 1.0
        h.event(
            "nemesis", "step_skipped", step=step, line=16 if step == "pause" else 17, reason=reasons[step]
        )
    clock.t = 2.0
    h.event("nemesis", "step_fired", step="heal", line=18, cleared="crash")
    return h


def banner_of(html: str) -> str:
    match = re.search(r"<header .*?</header>", html, re.S)
    assert match is not None
    return match.group(0)


def test_banner_shows_skipped_steps_strict_and_notes(reports: Path) -> None:
    run = make_run(
        history=steps_history(),
        checks=PASSING,
        scenario_name="process-faults",
        scenario_data=SCENARIO,
        notes=[f"cannot cause kill here {EVIL}"],
        strict=True,
    )
    banner = banner_of((write_run_report(reports, run) / "report.html").read_text())
    assert banner.startswith('<header class="banner pass caveat">')  # not a plain green PASS
    assert '<span class="flag skipped">2 steps skipped</span>' in banner
    assert '<span class="flag strict-fail">strict: fail</span>' in banner
    assert '<span class="flag untested">no fault applied</span>' in banner
    assert f"step pause (line 16) skipped: {PAUSE}" in banner
    assert f"step crash (line 17) skipped: {KILL}" in banner
    assert "unknown durability: no S3" in banner  # the other reason --strict fails the run
    assert f"cannot cause kill here {esc(EVIL)}" in banner and EVIL not in banner


def test_banner_of_a_run_whose_steps_all_fired_is_plain(reports: Path) -> None:
    run = make_run(
        history=steps_history(fired=("pause", "crash"), skipped=()),
        checks=PASSING[:1],
        scenario_data=SCENARIO,
        notes=[],
        strict=True,
    )
    banner = banner_of((write_run_report(reports, run) / "report.html").read_text())
    assert banner.startswith('<header class="banner pass">')
    assert '<span class="flag strict">strict: pass</span>' in banner
    assert "skipped" not in banner and "no fault applied" not in banner and "Notes" not in banner


def test_banner_of_an_empty_run_says_unknown_and_nothing_else(reports: Path) -> None:
    run = make_run(history=History(), checks=[], scenario_data={}, notes=[])
    banner = banner_of((write_run_report(reports, run) / "report.html").read_text())
    assert banner.startswith('<header class="banner unknown">')
    assert 'class="flag ' not in banner and "banner-list" not in banner


def test_one_step_skipped_flags_it_without_saying_no_fault_applied(reports: Path) -> None:
    run = make_run(history=steps_history(fired=("pause",), skipped=("crash",)), scenario_data=SCENARIO)
    assert run.fault_steps() == ["pause", "crash"] and not run.fault_steps_all_skipped()
    banner = banner_of((write_run_report(reports, run) / "report.html").read_text())
    assert '<span class="flag skipped">1 step skipped</span>' in banner
    assert "no fault applied" not in banner and "strict:" not in banner


def test_fault_steps_fall_back_on_the_history_without_scenario_data() -> None:
    run = make_run(history=steps_history(), scenario_data=None)
    assert run.fault_steps() == ["pause", "crash"]  # `heal` cleared a fault: not a fault step
    assert run.fault_steps_all_skipped()
    assert not make_run(scenario_data=None).fault_steps_all_skipped()  # no steps at all


def test_suite_index_flags_a_scenario_whose_fault_steps_were_all_skipped(reports: Path) -> None:
    untested = make_run(
        history=steps_history(), checks=PASSING, scenario_name="process-faults", scenario_data=SCENARIO
    )
    partly = make_run(
        history=steps_history(fired=("pause",), skipped=("crash",)),
        checks=PASSING,
        scenario_name="partly",
        scenario_data=SCENARIO,
        started_at=STARTED + timedelta(seconds=40),
    )
    plain = make_run(checks=PASSING, scenario_name="plain", started_at=STARTED + timedelta(seconds=80))
    suite_dir = write_suite_report(reports, [untested, partly, plain], name="suite")

    summary = json.loads((suite_dir / "suite.json").read_text())
    assert summary["fault_steps_all_skipped"] == ["process-faults"]
    rows = {r["scenario"]: r for r in summary["runs"]}
    assert [rows[n]["fault_steps_all_skipped"] for n in ("process-faults", "partly", "plain")] == [
        True,
        False,
        False,
    ]
    assert [rows[n]["steps_skipped"] for n in ("process-faults", "partly", "plain")] == [2, 1, 0]
    assert rows["process-faults"]["skipped_steps"][1] == f"step crash (line 17) skipped: {KILL}"

    index = (suite_dir / "index.html").read_text()
    assert "<th>steps skipped</th>" in index
    untested_row = re.search(
        r'<tr class="row-pass row-untested"[^>]*><td><b>process-faults</b>.*?</tr>', index, re.S
    )
    assert untested_row is not None
    assert '<span class="pill no-fault-applied">no fault applied</span>' in untested_row.group(0)
    assert '<td class="num steps-skipped"><span title="' in untested_row.group(0)
    for name, count in (("partly", 1), ("plain", 0)):
        row = re.search(rf'<tr class="row-pass" [^>]*><td><b>{name}</b>.*?</tr>', index, re.S)
        assert row is not None and "no fault applied" not in row.group(0)
        assert re.search(rf'<td class="num steps-skipped">(<span [^>]*>)?{count}<', row.group(0))
    assert '<span class="flag untested">1 with no fault applied</span>' in banner_of(index)


def test_strict_survives_the_journal(reports: Path) -> None:
    """A suite index is built from journals: a strict run read back must still be strict."""
    run = make_run(history=steps_history(), checks=PASSING, scenario_data=SCENARIO, strict=True)
    back = record_from_journal(load_journal(write_run_report(reports, run)))
    assert back.strict and back.strict_problems() == run.strict_problems()


def test_fault_shading_is_drawn_over_the_lane_backgrounds_and_under_the_marks() -> None:
    history = small_history()
    svg = timeline(history, small_checks(), span_of(history, small_checks())).svg
    lanes = [m.start() for m in re.finditer(r'<rect class="lane"', svg)]
    shades = [m.start() for m in re.finditer(r'<rect class="fault-shade"', svg)]
    marks = [m.start() for m in re.finditer(r'class="(op op-|tick |event )', svg)]
    assert len(lanes) == 2 and len(shades) == 2 and marks  # c1 and c10 have a background
    assert max(lanes) < min(shades)  # else the grey lanes hide the window
    assert max(shades) < min(marks)  # and the data stays on top of it
