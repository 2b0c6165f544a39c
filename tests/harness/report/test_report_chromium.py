"""The HTML reports render in a real browser (headless Chromium) with no script error.

Chromium is a hard requirement of this test, not an optional extra: if it is missing the test
fails and says how to install it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from harness.history import History
from harness.report import write_matrix, write_run_report, write_suite_report
from harness.report.page import page
from tests.harness.report.builders import ROWS, big_history, make_run

INSTALL = "apt-get update && apt-get install -y chromium"


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    pytest.fail(
        f"headless Chromium is required to test report.html; install it with: {INSTALL}", pytrace=False
    )


def rendered_root(html_file: Path, profile: Path, fragment: str = "") -> tuple[str, str]:
    """The opening <html> tag after the page's scripts ran, and the whole DOM."""
    cmd = [
        chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--dump-dom",
        html_file.as_uri() + fragment,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    match = re.search(r"<html[^>]*>", proc.stdout)
    assert match, f"no <html> in Chromium's DOM dump: {proc.stdout[:500]!r} {proc.stderr[-2000:]}"
    return match.group(0), proc.stdout


def assert_renders_cleanly(html_file: Path, profile: Path) -> str:
    root, dom = rendered_root(html_file, profile)
    assert "data-script-errors" not in root, root
    assert 'data-rendered="ok"' in root, root
    return dom


def test_run_report_renders_without_script_error(reports: Path, tmp_path: Path) -> None:
    run_dir = write_run_report(reports, make_run())
    dom = assert_renders_cleanly(run_dir / "report.html", tmp_path / "profile")
    assert dom.count("<script>") == 2  # nothing injected by the hostile strings in the history
    assert "<svg" in dom and 'class="plot timeline"' in dom


def test_a_link_to_a_checks_evidence_opens_it(reports: Path, tmp_path: Path) -> None:
    run_dir = write_run_report(reports, make_run())
    _, dom = rendered_root(run_dir / "report.html", tmp_path / "profile", "#evidence-heartbeat-continuity")
    assert re.search(r'<details class="fail" id="evidence-heartbeat-continuity" open=""', dom)
    assert re.search(r'<details class="unknown" id="evidence-leaks">', dom)


def test_large_run_report_renders_without_script_error(reports: Path, tmp_path: Path) -> None:
    run_dir = write_run_report(reports, make_run(history=big_history()))
    assert_renders_cleanly(run_dir / "report.html", tmp_path / "profile")


def test_suite_index_and_matrix_render_without_script_error(reports: Path, tmp_path: Path) -> None:
    suite_dir = write_suite_report(reports, [make_run()], matrix_rows=ROWS)
    assert_renders_cleanly(suite_dir / "index.html", tmp_path / "profile")
    assert_renders_cleanly(write_matrix(ROWS, tmp_path / "verify"), tmp_path / "profile")


def test_a_script_error_is_caught_by_the_hook(tmp_path: Path) -> None:
    """The detection itself works: a page that throws is reported as such."""
    broken = tmp_path / "broken.html"
    broken.write_text(page("broken", "", "<script>undefinedFunction();</script>"))
    root, _ = rendered_root(broken, tmp_path / "profile")
    assert "data-script-errors" in root and "undefinedFunction" in root


def test_missing_chromium_fails_with_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(pytest.fail.Exception, match=re.escape(INSTALL)):
        chromium()


def test_empty_run_report_renders_without_script_error(reports: Path, tmp_path: Path) -> None:
    run = make_run(history=History(clock=lambda: 0.0), checks=[], scenario_path=None)
    assert_renders_cleanly(write_run_report(reports, run) / "report.html", tmp_path / "profile")
