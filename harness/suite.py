"""`harness suite --jobs N`: the scenarios of a suite, N at a time, each as a `harness run` in a
process of its own (as `harness verify` runs its jobs). Runs share nothing: each starts its own
environment (ephemeral ports, processes, temp dirs, a run directory of its own), so they can
overlap, and one crashing run cannot take the others down.

The output stays what a sequential suite prints, in the same order: each run's lines are held
until every run before it has been printed. SIGTERM or Ctrl-C stops every child with SIGTERM
(each stops its own environment), then SIGKILL for one that does not exit in time.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

Say = Callable[[str], None]
CHILD_STOP_TIMEOUT_S = 60.0  # a run's environment stops within its components' own deadlines
JOB_TIMEOUT_S = 900.0  # beyond a scenario's own duration; a hung run is an internal error
INTERNAL_ERROR = 3


@dataclass
class SuiteJob:
    """One scenario file of the suite, run as `harness run FILE <forwarded options>`."""

    index: int
    path: Path
    timeout_s: float = JOB_TIMEOUT_S


@dataclass
class SuiteResult:
    job: SuiteJob
    exit_code: int
    output: list[str]  # the child's lines, printed in suite order
    run_dir: Path | None  # the run directory it wrote (None: it wrote none)
    error: str | None = None


def harness_command() -> list[str]:
    """This Python's harness, so a child runs the same code as its parent."""
    return [sys.executable, "-m", "harness.cli"]


async def run_child(
    job: SuiteJob, forwarded: list[str], work: Path, command: list[str] | None = None
) -> SuiteResult:
    """One run in its own process; its output and the run directory it reports come back."""
    run_dir_file = work / f"{job.index}.run-dir"
    log = work / f"{job.index}.log"
    cmd = [
        *(command or harness_command()),
        "run",
        str(job.path),
        *forwarded,
        "--run-dir-file",
        str(run_dir_file),
    ]
    error: str | None = None
    with open(log, "wb") as out:
        proc = await asyncio.create_subprocess_exec(*cmd, stdout=out, stderr=asyncio.subprocess.STDOUT)
        try:
            code = await asyncio.wait_for(asyncio.shield(proc.wait()), job.timeout_s)
        except (asyncio.CancelledError, TimeoutError) as exc:
            await stop_child(proc)
            if not isinstance(exc, TimeoutError):
                raise
            code = INTERNAL_ERROR
            error = f"{job.path}: the run did not end within {job.timeout_s:g} s; stopped"
    output = log.read_text(errors="replace").splitlines()
    run_dir: Path | None = None
    with contextlib.suppress(OSError):
        text = run_dir_file.read_text().strip()
        run_dir = Path(text) if text else None
    return SuiteResult(job, code, output, run_dir, error)


async def stop_child(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM lets the run stop its own environment; SIGKILL only if it does not exit."""
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        await asyncio.wait_for(asyncio.shield(proc.wait()), CHILD_STOP_TIMEOUT_S)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()


async def run_parallel(
    files: list[Path],
    forwarded: list[str],
    jobs: int,
    say: Say,
    timeouts: list[float] | None = None,
    command: list[str] | None = None,
) -> list[SuiteResult]:
    """Run every file, `jobs` at a time; print each run's output in file order as soon as it
    and every run before it have ended. A cancellation stops every running child."""
    gate = asyncio.Semaphore(max(1, jobs))
    with tempfile.TemporaryDirectory(prefix="harness-suite-") as tmp:
        work = Path(tmp)

        async def guarded(job: SuiteJob) -> SuiteResult:
            async with gate:
                return await run_child(job, forwarded, work, command)

        suite_jobs = [
            SuiteJob(i, path, (timeouts[i] if timeouts else JOB_TIMEOUT_S)) for i, path in enumerate(files)
        ]
        tasks = [asyncio.create_task(guarded(job)) for job in suite_jobs]
        results: list[SuiteResult] = []
        try:
            for task in tasks:  # in file order: the output reads as a sequential suite's
                result = await task
                for line in result.output:
                    say(line)
                if result.error:
                    say(result.error)
                results.append(result)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    return results
