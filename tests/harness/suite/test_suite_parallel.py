"""`harness suite --jobs N`: runs overlap, their output keeps the suite's file order, and a
cancelled suite (SIGTERM, Ctrl-C) stops every child it started. Children are a fake `harness run`
(fake_run.py); one end-to-end test runs two real scenarios both ways and compares the output."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.suite import run_parallel

FAKE = [sys.executable, str(Path(__file__).with_name("fake_run.py"))]


def _spec(tmp_path: Path, name: str, **extra: object) -> Path:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps({"name": name, "marker": str(tmp_path / f"{name}.started"), **extra}))
    return path


async def test_runs_overlap_and_print_in_file_order(tmp_path: Path) -> None:
    # `first` can only end once `second` has started: with one job at a time it would give up.
    first = _spec(tmp_path, "first", wait_for=str(tmp_path / "second.started"))
    second = _spec(tmp_path, "second")
    lines: list[str] = []
    results = await run_parallel([first, second], [], 2, lines.append, command=FAKE)
    assert [r.exit_code for r in results] == [0, 0]
    assert lines == [
        "first: started",
        "first: pass -> reports/first",
        "second: started",
        "second: pass -> reports/second",
    ]
    assert [r.run_dir for r in results] == [Path("reports/first"), Path("reports/second")]


async def test_one_job_at_a_time_runs_them_in_turn(tmp_path: Path) -> None:
    first = _spec(tmp_path, "first", wait_for=str(tmp_path / "never"))
    second = _spec(tmp_path, "second")
    results = await run_parallel(
        [first, second], [], 1, lambda line: None, timeouts=[1.0, 30.0], command=FAKE
    )
    assert results[0].exit_code == 3 and results[0].error and "did not end within" in results[0].error
    assert results[0].run_dir is None
    assert results[1].exit_code == 0  # the second started only after the first was stopped


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def _wait_for(path: Path, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await asyncio.to_thread(path.exists):
        assert time.monotonic() < deadline, f"{path} never appeared"
        await asyncio.sleep(0.02)


async def test_cancelling_the_suite_terminates_every_running_child(tmp_path: Path) -> None:
    specs = [_spec(tmp_path, name, hang=True) for name in ("a", "b")]
    task = asyncio.create_task(run_parallel(specs, [], 2, lambda line: None, command=FAKE))
    for name in ("a", "b"):
        await _wait_for(tmp_path / f"{name}.started.pid")
    pids = [int((tmp_path / f"{name}.started.pid").read_text()) for name in ("a", "b")]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    for name, pid in zip(("a", "b"), pids, strict=True):
        assert (tmp_path / f"{name}.started.terminated").read_text() == "SIGTERM"
        assert not _alive(pid)


SCENARIO = """\
name: {name}
seed: 3
duration_s: 2
settle_s: 0.5
clients:
  - {{name: w, behaviour: writer, params: {{count: 5, interval_s: 0.1}}}}
  - {{name: p, behaviour: pager, params: {{rounds: 3, interval_s: 0.2}}}}
checks: [convergence, no-lost-write]
"""


def _suite(folder: Path, reports: Path, jobs: int) -> tuple[int, list[str]]:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness.cli",
            "suite",
            "--dir",
            str(folder),
            "--report-dir",
            str(reports),
            "--jobs",
            str(jobs),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    # What differs between two runs of one suite: nonces, run ids (timestamps), counts of a
    # timed load. What is compared: every line, its order and its words.
    text = done.stdout.replace(str(reports), "<reports>")
    text = re.sub(r"[0-9a-f]{8}\b", "<nonce>", text)
    text = re.sub(r"\d+(\.\d+)?", "N", text)
    return done.returncode, text.splitlines()


def test_suite_jobs_prints_what_a_sequential_suite_prints(tmp_path: Path) -> None:
    folder = tmp_path / "scenarios"
    folder.mkdir()
    for name in ("one", "two"):
        (folder / f"{name}.yaml").write_text(SCENARIO.format(name=name))
    code_seq, sequential = _suite(folder, tmp_path / "seq", 1)
    code_par, parallel = _suite(folder, tmp_path / "par", 2)
    assert code_seq == code_par == 0
    assert [line for line in parallel if not line.startswith("suite report:")] == [
        line for line in sequential if not line.startswith("suite report:")
    ]
    assert "summary: N scenarios: N pass" in parallel
    assert (tmp_path / "par").is_dir() and len(list((tmp_path / "par").glob("*-suite/index.html"))) == 1


def test_child_runs_get_the_managed_target_whether_command_or_image() -> None:
    """`suite --jobs` once forwarded --target-command but dropped --target-image: every child
    then ran against the bundled coordinator instead of the container."""
    from harness.cli import _forwarded_options, _parser

    image = _parser().parse_args(
        ["suite", "--jobs", "2", "--target-image", "reference", "--target-env", "A=1", "--target-ready", "/r"]
    )
    words = _forwarded_options(image)
    assert words[words.index("--target-image") + 1] == "reference"
    assert (
        "--target-command" not in words
        and ["--target-env", "A=1"] == words[words.index("--target-env") :][:2]
    )
    command = _parser().parse_args(["suite", "--target-command", "srv --port {port}"])
    words = _forwarded_options(command)
    assert words[words.index("--target-command") + 1] == "srv --port {port}" and "--target-image" not in words
