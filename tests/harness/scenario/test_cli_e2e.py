"""The CLI end to end: the smoke scenario through `harness run` writes the three report files
and exits 0; a scenario with a mistake exits 2 naming file and line; `harness list` works."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from harness.env.resources import processes_in_groups
from harness.report import load_journal


def _harness(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True, timeout=timeout
    )


def test_smoke_run_writes_journal_junit_and_html(tmp_path: Path) -> None:
    result = _harness("run", "scenarios/smoke.yaml", "--report-dir", str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "seed 42" in result.stdout
    run_dir = (tmp_path / "latest").resolve()
    journal = load_journal(run_dir / "journal.json.gz")
    assert journal["seed"] == 42 and journal["verdict"] == "pass"
    assert {c["name"] for c in journal["checks"]} >= {"convergence", "no-lost-write", "heartbeat-continuity"}
    assert journal["history"]["ops"] and journal["fault_windows"][0]["kind"] == "latency"
    namespace = journal["scenario"]["data"]["namespace"]  # run isolation, recorded for replay
    assert namespace["prefix"] == f"smoke-42-{namespace['nonce']}"
    assert f"--namespace {namespace['nonce']}" in journal["rerun"]["command"]
    assert journal["options"]["bugs"] == [] and journal["options"]["token"] is None  # what shaped the run
    handshakes = [op for op in journal["history"]["ops"] if op["f"] == "handshake" and op["type"] == "invoke"]
    assert handshakes and all(
        op["value"]["databaseId"].startswith(namespace["prefix"] + ".") for op in handshakes
    )
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


def _children_of(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        if int(text[text.rfind(")") + 2 :].split()[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _exists(path: str) -> bool:
    return Path(path).exists()


def _temp_dirs_in_cmdline(pid: int) -> list[str]:
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    except OSError:
        return []
    return [str(Path(a).parent if a.endswith(".json") else Path(a)) for a in args if "/sync-harness-" in a]


async def test_sigterm_stops_a_run_and_everything_it_started(tmp_path: Path) -> None:
    """A CI timeout or `kill` sends SIGTERM: the harness must stop its servers and remove its
    temp dirs as on Ctrl-C, not die and leave them running."""
    import asyncio
    import signal

    runner = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "harness.cli",
        "run",
        "scenarios/smoke.yaml",
        "--report-dir",
        str(tmp_path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert runner.stdout is not None and runner.stderr is not None
        seen = b""
        while b"timeline steps" not in seen:  # printed once the environment is up and clients run
            line = await asyncio.wait_for(runner.stdout.readline(), 120.0)
            assert line, f"harness ended before the run started: {seen!r}"
            seen += line
        children = _children_of(runner.pid)
        dirs = sorted({d for pid in children for d in _temp_dirs_in_cmdline(pid)})
        assert len(children) >= 2 and dirs  # toxiproxy and the coordinator (and moto if S3); their dirs
        runner.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(runner.communicate(), 90.0)
    finally:
        if runner.returncode is None:  # the test failed early: still let the run clean up
            runner.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(runner.wait(), 90.0)
            except TimeoutError:
                runner.kill()
                await runner.wait()
    assert runner.returncode == 143, err.decode()
    assert "terminated; everything it started has been stopped" in err.decode()
    assert processes_in_groups(set(children)) == []  # each server leads its own process group
    assert [d for d in dirs if _exists(d)] == []


def test_a_failing_bug_run_replays_from_its_printed_line(tmp_path: Path) -> None:
    """The replay line keeps what shaped the run (here --bug): run as printed, it fails the same way."""
    first = _harness(
        "run", "scenarios/bugs/generic-handler-errors.yaml", "--bug", "generic-handler-errors",
        "--report-dir", str(tmp_path / "first"),
    )  # fmt: skip
    assert first.returncode == 1, first.stdout + first.stderr
    replay = next(line.split("replay: ", 1)[1] for line in first.stdout.splitlines() if "replay: " in line)
    assert "--bug generic-handler-errors" in replay
    words = shlex.split(replay)
    assert words[:2] == ["harness", "run"]
    again = _harness(*words[1:], "--report-dir", str(tmp_path / "again"))
    assert again.returncode == 1, again.stdout + again.stderr
    failed = [
        c["name"]
        for c in load_journal((tmp_path / "again" / "latest").resolve() / "journal.json.gz")["checks"]
        if c["status"] == "fail"
    ]
    assert "error-specificity" in failed
