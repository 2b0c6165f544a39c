"""`harness explore` and `harness fuzz` end to end, bounded: with a catalogued bug on, a short
exploration finds a failure and writes a scenario that `harness run` fails again the same way;
without a bug it finds nothing; the fuzzer finds `generic-handler-errors` in seconds. CI runs
the two explorations (`-m explore`, about 80 s together)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harness.scenario.loader import load_scenario

pytestmark = [pytest.mark.slow, pytest.mark.explore]


def _harness(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True, timeout=timeout
    )


def test_explore_with_a_bug_finds_it_and_the_file_replays(tmp_path: Path) -> None:
    found = tmp_path / "found"
    result = _harness(
        "explore", "--bug", "resume-snapshot-unhandled", "--rules", "snapshots", "--steps", "3",
        "--budget", "30", "--seed", "1", "--out", str(found), "--report-dir", str(tmp_path / "reports"),
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    (path,) = found.glob("*.yaml")
    scenario = load_scenario(path)  # a normal scenario file: the existing loader reads it
    assert scenario.seed == 1 and len(scenario.catches) == 1
    assert 1 <= len(scenario.clients) <= 3 and "shrunk to" in result.stdout
    replay = _harness("run", str(path), "--bug", "resume-snapshot-unhandled", "--report-dir", str(tmp_path))
    assert replay.returncode == 1, replay.stdout + replay.stderr
    assert f"fail    {scenario.catches[0]}" in replay.stdout


def test_explore_without_a_bug_finds_nothing(tmp_path: Path) -> None:
    found = tmp_path / "found"
    result = _harness(
        "explore", "--rules", "snapshots", "clients", "--steps", "3", "--budget", "15", "--seed", "1",
        "--out", str(found), "--report-dir", str(tmp_path / "reports"),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "nothing found" in result.stdout and not list(found.glob("*.yaml"))


def test_explore_rejects_bad_input(tmp_path: Path) -> None:
    assert _harness("explore", "--rules", "nope", "--report-dir", str(tmp_path)).returncode == 2
    assert _harness("explore", "--budget", "0", "--report-dir", str(tmp_path)).returncode == 2
    assert _harness("explore", "--bug", "no-such-bug", "--report-dir", str(tmp_path)).returncode == 2


def test_fuzz_finds_generic_handler_errors(tmp_path: Path) -> None:
    found = tmp_path / "found"
    result = _harness(
        "fuzz", "--bug", "generic-handler-errors", "--budget", "20", "--out", str(found),
        "--report-dir", str(tmp_path / "reports"),
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    (path,) = found.glob("*.yaml")
    scenario = load_scenario(path)
    assert scenario.catches == ("error-specificity",)
    assert any(g.behaviour == "bad_input" and g.params.get("probes") for g in scenario.clients)


def test_fuzz_without_a_bug_finds_nothing(tmp_path: Path) -> None:
    result = _harness(
        "fuzz", "--budget", "8", "--out", str(tmp_path / "found"), "--report-dir", str(tmp_path)
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "nothing found" in result.stdout


async def test_sigterm_stops_an_exploration_and_everything_it_started(tmp_path: Path) -> None:
    """A CI timeout sends SIGTERM in the middle of an example: the run in progress stops its
    servers before the harness exits 143, as `harness run` does."""
    import asyncio
    import signal

    from harness.env.resources import processes_in_groups
    from tests.harness.scenario.test_cli_e2e import _children_of

    runner = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "harness.cli", "explore", "--rules", "clients", "--budget", "120",
        "--report-dir", str(tmp_path), "--out", str(tmp_path / "found"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    children: list[int] = []
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 120.0
        while len(children) < 2:  # toxiproxy, moto, the coordinator: the first example is running
            assert loop.time() < deadline and runner.returncode is None, "no example started"
            await asyncio.sleep(0.2)  # polling the process table, with a deadline
            children = _children_of(runner.pid)
        runner.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(runner.communicate(), 90.0)
    finally:
        if runner.returncode is None:
            runner.kill()
            await runner.wait()
    assert runner.returncode == 143, err.decode()
    assert processes_in_groups(set(children)) == []
