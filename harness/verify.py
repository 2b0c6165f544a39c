"""`harness verify`: the detection matrix. Each bug scenario (scenarios/bugs/<bug-id>.yaml)
runs against the bundled coordinator with that bug re-introduced, where some check must fail,
and without it (K times), where none may. Runs are separate `harness run` processes, `--jobs`
at a time: each has its own environment (ports, processes, temp dirs), so they can run in
parallel, and one crashing run cannot take the others down."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.env.coordinator_process import coordinator_command
from harness.report import MatrixRow, write_matrix
from harness.report.journal import journal_path, read_json_file
from harness.report.matrix import matrix_ok

Say = Callable[[str], None]
CHILD_STOP_TIMEOUT_S = 60.0  # a run's environment stops within its components' own deadlines
DEFAULT_JOB_TIMEOUT_S = 600.0  # a bug scenario lasts well under a minute; a hung run is an error


class VerifyError(RuntimeError):
    """The matrix cannot be computed truthfully (coverage of the catalogue, a missing tool)."""


@dataclass
class Job:
    bug: str
    scenario: Path
    with_bug: bool
    attempt: int
    report_dir: Path
    scenario_name: str = ""  # the `name:` of the scenario file (default: its stem)
    catches: tuple[str, ...] = ()  # the checks whose failure is the detection (`catches:`)

    def __post_init__(self) -> None:
        self.scenario_name = self.scenario_name or self.scenario.stem


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


def harness_command() -> list[str]:
    """How a job starts its run: this Python's harness, so a job runs the code under test."""
    return [sys.executable, "-m", "harness.cli"]


def catalogue_ids(command: list[str] | None = None) -> list[str]:
    """The bug ids `coordinator bugs` lists (first column), through the CLI: the harness never
    imports the coordinator."""
    argv = [*(command or coordinator_command()), "bugs"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        raise VerifyError(f"`{' '.join(argv)}` failed ({done.returncode}): {done.stderr.strip()[-300:]}")
    return [line.split()[0] for line in done.stdout.splitlines() if line.strip()]


def check_coverage(found: list[str], catalogue: list[str]) -> None:
    """Every catalogued bug has a scenario and every scenario names a catalogued bug: the matrix
    covers the catalogue, not whatever files happen to be in the folder."""
    missing = sorted(set(catalogue) - set(found))
    unknown = sorted(set(found) - set(catalogue))
    problems = []
    if missing:
        problems.append(f"catalogued bugs without a scenario: {', '.join(missing)}")
    if unknown:
        problems.append(f"scenarios for bugs the coordinator does not know: {', '.join(unknown)}")
    if problems:
        raise VerifyError("; ".join(problems))


def scenario_catches(path: Path) -> tuple[str, tuple[str, ...]]:
    """A bug scenario's name and its `catches:` (required: a detection is only a failure of a
    check the scenario declares it provokes, never whatever else happened to fail)."""
    from harness.scenario.loader import ScenarioError, load_scenario

    try:
        scenario = load_scenario(path)
    except ScenarioError as exc:
        raise VerifyError(str(exc)) from None
    if not scenario.catches:
        raise VerifyError(
            f"{path}: a bug scenario declares `catches: [check, ...]`, the checks that detect it"
        )
    return scenario.name, scenario.catches


def _check_folder(folder: Path, catalogue: list[str] | None) -> None:
    check_coverage(
        [p.stem for p in sorted(folder.glob("*.yaml"))],
        catalogue if catalogue is not None else catalogue_ids(),
    )


def _fresh(path: Path) -> None:
    """A job writes into a directory of its own that holds nothing from an earlier invocation,
    so the journal read back can only be this job's."""
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)


def _own_journal(job: Job) -> tuple[Path, dict[str, Any]] | str:
    """The journal of the one run this job made, or why there is none."""
    runs = [d for d in job.report_dir.iterdir() if d.is_dir() and not d.is_symlink() and d.name != "latest"]
    if len(runs) != 1:
        return f"expected one run directory in {job.report_dir}, found {len(runs)}"
    path = journal_path(runs[0])  # journal.json.gz, or a plain journal.json
    if not path.exists():
        return f"no journal in {runs[0]}"
    try:
        journal = read_json_file(path)
    except (OSError, EOFError, ValueError, zlib.error) as exc:
        return f"{path}: unreadable journal ({exc})"
    if not isinstance(journal, dict):
        return f"{path}: not a journal"
    name = (journal.get("scenario") or {}).get("name")
    if journal.get("run_id") != runs[0].name:
        return f"{path}: run id {journal.get('run_id')!r} is not its directory's"
    if name != job.scenario_name:
        return f"{path}: the journal is of scenario {name!r}, not {job.scenario_name!r}"
    return runs[0], journal


async def _run_job(
    job: Job, seed: int | None, timeout_s: float = DEFAULT_JOB_TIMEOUT_S, command: list[str] | None = None
) -> JobResult:
    """One `harness run` in a process of its own. Only exit 0 (held) and 1 (a check failed) are
    verdicts; anything else, a missing or foreign journal, or the time bound, is an error of the
    run, which is never counted as a detection."""
    cmd = [*(command or harness_command()), "run", str(job.scenario), "--report-dir", str(job.report_dir)]
    if job.with_bug:
        cmd += ["--bug", job.bug]
    if seed is not None:
        cmd += ["--seed", str(seed)]
    _fresh(job.report_dir)
    log = job.report_dir / "harness.log"
    timed_out = False
    with open(log, "wb") as out:
        proc = await asyncio.create_subprocess_exec(*cmd, stdout=out, stderr=asyncio.subprocess.STDOUT)
        try:
            code = await asyncio.wait_for(asyncio.shield(proc.wait()), timeout_s)
        except (asyncio.CancelledError, TimeoutError) as exc:
            timed_out = isinstance(exc, TimeoutError)
            # SIGTERM lets the run stop its own environment; SIGKILL only if it does not exit.
            proc.terminate()
            try:
                await asyncio.wait_for(asyncio.shield(proc.wait()), CHILD_STOP_TIMEOUT_S)
            except TimeoutError:
                proc.kill()
                await proc.wait()
            if not timed_out:
                raise
            code = proc.returncode if proc.returncode is not None else -9
    tail = log.read_text(errors="replace")[-600:]
    if timed_out:
        return JobResult(job, code, [], None, None, f"run did not end within {timeout_s:g} s: {tail}")
    if code not in (0, 1):
        return JobResult(job, code, [], None, None, f"run ended with exit code {code}: {tail}")
    own = _own_journal(job)
    if isinstance(own, str):
        return JobResult(job, code, [], None, None, own)
    run_dir, journal = own
    failed = [c for c in journal["checks"] if c["status"] == "fail"]
    if (code == 1) != bool(failed):
        return JobResult(
            job, code, [], None, str(run_dir), f"exit code {code} does not match {len(failed)} failed checks"
        )
    times = [c["detected_at"] for c in failed if c.get("detected_at") is not None]
    return JobResult(
        job,
        code,
        [c["name"] for c in failed],
        min(times) if times else None,
        str(run_dir.resolve()),
        summaries={c["name"]: c.get("summary", "") for c in failed},
    )


async def verify(
    folder: Path,
    only: list[str],
    jobs: int,
    repeat: int,
    report_dir: Path,
    say: Say,
    seed: int | None = None,
    job_timeout_s: float = DEFAULT_JOB_TIMEOUT_S,
    harness_cmd: list[str] | None = None,
    catalogue: list[str] | None = None,
) -> tuple[bool, list[MatrixRow]]:
    """Run the matrix. `catalogue` (default: `coordinator bugs`) must match the scenario files
    when every bug is verified; `harness_cmd` replaces `python -m harness.cli` (tests)."""
    if not only:
        await asyncio.to_thread(_check_folder, folder, catalogue)
    pairs = bug_scenarios(folder, only)
    declared = {bug: await asyncio.to_thread(scenario_catches, path) for bug, path in pairs}
    out = report_dir / "verify"
    work = [Job(bug, path, True, 0, out / "runs" / f"{bug}-with-bug", *declared[bug]) for bug, path in pairs]
    work += [
        Job(bug, path, False, k, out / "runs" / f"{bug}-without-{k}", *declared[bug])
        for bug, path in pairs
        for k in range(repeat)
    ]
    gate = asyncio.Semaphore(max(1, jobs))
    say(f"verify: {len(pairs)} bugs, {len(work)} runs, {jobs} at a time")

    async def guarded(job: Job) -> JobResult:
        async with gate:
            result = await _run_job(job, seed, job_timeout_s, harness_cmd)
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
        caught_by = [c for c in with_bug.failed_checks if c in with_bug.job.catches]
        rows.append(
            MatrixRow(
                bug=bug,
                scenario=str(path),
                detected=bool(caught_by) and with_bug.error is None,
                caught_by=caught_by,
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
