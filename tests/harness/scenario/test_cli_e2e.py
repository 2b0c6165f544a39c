"""The CLI end to end: the smoke scenario through `harness run` writes the three report files
and exits 0; a scenario with a mistake exits 2 naming file and line; `harness list` works."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path


def _harness(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True, timeout=timeout
    )


def test_smoke_run_writes_journal_junit_and_html(tmp_path: Path) -> None:
    result = _harness("run", "scenarios/smoke.yaml", "--report-dir", str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "seed 42" in result.stdout
    run_dir = (tmp_path / "latest").resolve()
    journal = json.loads((run_dir / "journal.json").read_text())
    assert journal["seed"] == 42 and journal["verdict"] == "pass"
    assert {c["name"] for c in journal["checks"]} >= {"convergence", "no-lost-write", "heartbeat-continuity"}
    assert journal["history"]["ops"] and journal["fault_windows"][0]["kind"] == "latency"
    suite = ET.parse(run_dir / "junit.xml").getroot()
    cases = suite.findall(".//testcase")
    assert len(cases) == len(journal["checks"]) and not suite.findall(".//failure")
    html = (run_dir / "report.html").read_text()
    assert "smoke" in html and "latency" in html


def test_a_scenario_mistake_exits_2_with_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("duration_s: 5\nclients:\n  - {behaviour: writer, count: zero}\nchecks: [convergence]\n")
    result = _harness("run", str(bad), "--report-dir", str(tmp_path / "reports"))
    assert result.returncode == 2
    assert f"{bad}:3: clients.0.count: must be an int" in result.stderr
    assert "Traceback" not in result.stderr


def test_list_shows_scenarios_checks_and_faults() -> None:
    result = _harness("list", "--json", timeout=60)
    assert result.returncode == 0
    data = json.loads(result.stdout)
    assert any(s["path"].endswith("smoke.yaml") for s in data["scenarios"])
    assert {c["name"] for c in data["checks"]} >= {"convergence", "durability", "tenant-isolation"}
    assert {f["kind"] for f in data["faults"]} >= {"latency", "s3_outage", "kill", "failpoint"}
