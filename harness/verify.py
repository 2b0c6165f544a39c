"""`harness verify`: the detection matrix. Each bug scenario (scenarios/bugs/<bug-id>.yaml)
runs against the bundled coordinator with that bug re-introduced, where some check must fail,
and without it (K times), where none may. Runs are separate `harness run` processes, `--jobs`
at a time: each has its own environment (ports, processes, temp dirs), so they can run in
parallel, and one crashing run cannot take the others down."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from harness.report import MatrixRow, write_matrix
from harness.report.matrix import matrix_ok

Say = Callable[[str], None]
CHILD_STOP_TIMEOUT_S = 60.0  # a run's environment stops within its components' own deadlines


@dataclass
class Job:
    bug: str
    scenario: Path
    with_bug: bool
    attempt: int
    report_dir: Path


@dataclass
class JobResult:
    job: Job
    exit_code: int
    failed_checks: list[str]
    detected_at: float | None
    run_dir: str | None
    error: str | None = None
    summaries: dict[str, str] = field(default_factory=dict)  # failed check -> its one-line summary


def bug_scenarios(folder: Path, only: list[str]) -> list[tuple[str, Path]]:
    found = {p.stem: p for p in sorted(folder.glob("*.yaml"))}
    if only:
        missing = [b for b in only if b not in found]
        if missing:
            raise FileNotFoundError(f"no scenario {folder}/<id>.yaml for: {', '.join(missing)}")
        return [(b, found[b]) for b in only]
    return list(found.items())


async def _run_job(job: Job, seed: int | None) -> JobResult:
    cmd = [sys.executable, "-m", "harness.cli", "run", str(job.scenario), "--report-dir", str(job.report_dir)]
    if job.with_bug:
        cmd += ["--bug", job.bug]
    if seed is not None:
        cmd += ["--seed", str(seed)]
    job.report_dir.mkdir(parents=True, exist_ok=True)
    log = job.report_dir / "harness.log"
    with open(log, "wb") as out:
        proc = await asyncio.create_subprocess_exec(*cmd, stdout=out, stderr=asyncio.subprocess.STDOUT)
        try:
            code = await proc.wait()
        except asyncio.CancelledError:
            # SIGTERM lets the run stop its own environment; SIGKILL only if it does not exit.
            proc.terminate()
            try:
                await asyncio.wait_for(asyncio.shield(proc.wait()), CHILD_STOP_TIMEOUT_S)
            except TimeoutError:
                proc.kill()
                await proc.wait()
            raise
    journal_path = job.report_dir / "latest" / "journal.json"
    if code not in (0, 1) or not journal_path.exists():
        tail = log.read_text(errors="replace")[-600:]
        return JobResult(job, code, [], None, None, f"run ended with exit code {code}: {tail}")
    journal = json.loads(journal_path.read_text())
    failed = [c for c in journal["checks"] if c["status"] == "fail"]
    times = [c["detected_at"] for c in failed if c.get("detected_at") is not None]
    run_dir = (job.report_dir / "latest").resolve()
    return JobResult(
        job,
        code,
        [c["name"] for c in failed],
        min(times) if times else None,
        str(run_dir),
        summaries={c["name"]: c.get("summary", "") for c in failed},
    )


async def verify(
    folder: Path, only: list[str], jobs: int, repeat: int, report_dir: Path, say: Say, seed: int | None = None
) -> tuple[bool, list[MatrixRow]]:
    pairs = bug_scenarios(folder, only)
    out = report_dir / "verify"
    work = [Job(bug, path, True, 0, out / "runs" / f"{bug}-with-bug") for bug, path in pairs]
    work += [
        Job(bug, path, False, k, out / "runs" / f"{bug}-without-{k}")
        for bug, path in pairs
        for k in range(repeat)
    ]
    gate = asyncio.Semaphore(max(1, jobs))
    say(f"verify: {len(pairs)} bugs, {len(work)} runs, {jobs} at a time")

    async def guarded(job: Job) -> JobResult:
        async with gate:
            result = await _run_job(job, seed)
        label = "with bug" if job.with_bug else f"without bug #{job.attempt + 1}"
        verdict = result.error or (", ".join(result.failed_checks) or "all checks held")
        say(f"  {job.bug} ({label}): {verdict}")
        return result

    results = await asyncio.gather(*(guarded(j) for j in work))
    rows: list[MatrixRow] = []
    for bug, path in pairs:
        mine = [r for r in results if r.job.bug == bug]
        with_bug = next(r for r in mine if r.job.with_bug)
        without = [r for r in mine if not r.job.with_bug]
        false_alarm = sorted(
            {c for r in without for c in r.failed_checks}
            | {f"run error: {r.error[:80]}" for r in without if r.error}
        )
        runs = [str(Path(r.run_dir).relative_to(out.resolve())) for r in mine if r.run_dir]
        rows.append(
            MatrixRow(
                bug=bug,
                scenario=str(path),
                detected=bool(with_bug.failed_checks) and with_bug.error is None,
                caught_by=with_bug.failed_checks,
                time_to_detect_s=with_bug.detected_at,
                false_alarm=false_alarm,
                runs=runs,
            )
        )
    write_matrix(rows, out)
    rate = _false_alarm_rate(results)
    say("")
    width = max([len(r.bug) for r in rows] + [3])
    for r in rows:
        if r.false_alarm:
            outcome = f"FALSE ALARM: {', '.join(r.false_alarm)}"
        elif r.detected:
            when = f" at {r.time_to_detect_s:.1f} s" if r.time_to_detect_s is not None else ""
            outcome = f"caught by {', '.join(r.caught_by)}{when}"
        else:
            outcome = "MISSED"
        say(f"{r.bug:<{width}}  {outcome}")
    for alarm in results:
        if alarm.job.with_bug or not (alarm.failed_checks or alarm.error):
            continue
        say(
            f"false alarm in {alarm.job.bug} (without the bug, run #{alarm.job.attempt + 1}): {alarm.run_dir or ''}"
        )
        if alarm.error:
            say(f"    {alarm.error}")
        for name in alarm.failed_checks:
            say(f"    {name}: {alarm.summaries.get(name, '')}")
    say(f"\nfalse-alarm rate without bugs: {rate[0]}/{rate[1]} runs; matrix: {out / 'matrix.html'}")
    return matrix_ok(rows), rows


def _false_alarm_rate(results: list[JobResult]) -> tuple[int, int]:
    clean = [r for r in results if not r.job.with_bug]
    return sum(1 for r in clean if r.failed_checks or r.error), len(clean)
