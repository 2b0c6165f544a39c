"""Mutation testing of the reference coordinator, judged by the harness (`make mutation`).

Why cosmic-ray: it mutates the source file on disk and runs any command, so a mutant can be
judged by what users run — `harness run` of the default scenarios, which start the coordinator
as a process — rather than by in-process tests (mutmut 3's trampolines switch mutants inside
the test process, which a coordinator started by a scenario does not share). It keeps its
session in SQLite, so a run can be sampled, split over workers and read back.

The whole coordinator has thousands of mutants and each costs one to several scenario runs, so a
seeded sample is judged: `--sample N --seed S` draws N of them (the same N for the same source
and seed). Each of `--jobs J` workers gets its own git worktree of `--rev`, mutated and restored
in place by cosmic-ray, never the checkout you work in. Results: a JSON file and a Markdown
table under `--out`, with the kill rate and, per mutant, the scenario and checks that killed it.

Runs in `.venv-mutation` (cosmic-ray and its dependencies, apart from the project's);
`mutation/judge.py` uses the project's `.venv/bin/harness`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import toml
from cosmic_ray.work_db import use_db
from cosmic_ray.work_item import TestOutcome, WorkerOutcome, WorkResult

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
COSMIC_RAY = str(Path(sys.executable).parent / "cosmic-ray")


@dataclass
class Judged:
    module: str
    line: int
    operator: str
    occurrence: int
    outcome: str  # killed | survived | judge-error | no-mutation | exception
    detail: str
    diff: str


def git(*args: str, cwd: Path = REPO) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()


@contextmanager
def worktrees(rev: str, count: int, coordinator_rev: str) -> Iterator[list[Path]]:
    """`count` detached worktrees of `rev` with `coordinator/` as of `coordinator_rev`, removed at
    the end, also on Ctrl-C or SIGTERM."""
    base = Path(tempfile.mkdtemp(prefix="mutation-"))
    copies: list[Path] = []

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        for i in range(count):
            copy = base / f"copy-{i}"
            git("worktree", "add", "--detach", "--quiet", str(copy), rev)
            copies.append(copy)
            if coordinator_rev != rev:  # index and tree both: `git diff` then shows only the mutant
                git("checkout", coordinator_rev, "--", "coordinator", cwd=copy)
        yield copies
    finally:
        for copy in copies:
            subprocess.run(["git", "worktree", "remove", "--force", str(copy)], cwd=REPO, check=False)
        shutil.rmtree(base, ignore_errors=True)
        subprocess.run(["git", "worktree", "prune"], cwd=REPO, check=False)
        signal.signal(signal.SIGTERM, previous)


def write_config(path: Path, harness: str, timeout_s: float) -> None:
    judge = f"{sys.executable} {HERE / 'judge.py'} --harness {harness} --map {HERE / 'modules.toml'}"
    config = {
        "module-path": "coordinator",
        "timeout": timeout_s,
        "excluded-modules": [],
        "test-command": judge,
        "distributor": {"name": "local"},
    }
    path.write_text(toml.dumps({"cosmic-ray": config}))


def key(item: Any) -> tuple[str, int, str, int]:
    m = item.mutations[0]
    return (str(m.module_path), m.start_pos[0], m.operator_name, m.occurrence)


def mutated_line(diff: str) -> str | None:
    """The source line a mutant's diff removes (what it changed), stripped."""
    removed = [ln[1:].strip() for ln in diff.splitlines() if ln.startswith("-") and not ln.startswith("---")]
    return removed[0] if removed else None


def same_mutants(
    every: list[tuple[str, int, str, int]], previous: Path, copy: Path
) -> list[tuple[str, int, str, int]]:
    """The mutants of an earlier result file, found again in this revision by module, operator
    and occurrence, kept only where the line they mutate reads the same (so the same defect is
    judged by two versions of the harness); a mutant that moved or changed is left out, and said."""
    rows = json.loads(previous.read_text())["mutants"]
    by_site = {(m, op, occ): (m, line, op, occ) for m, line, op, occ in every}
    chosen: list[tuple[str, int, str, int]] = []
    for row in rows:
        found = by_site.get((row["module"], row["operator"], row["occurrence"]))
        text = mutated_line(row["diff"])
        source = (copy / row["module"]).read_text().splitlines() if found else []
        if (
            found is None
            or text is None
            or not 0 < found[1] <= len(source)
            or source[found[1] - 1].strip() != text
        ):
            print(f"  not comparable: {row['module']}:{row['line']} {row['operator']} #{row['occurrence']}")
            continue
        chosen.append(found)
    return chosen


def sample_sessions(
    copies: list[Path], config: Path, size: int, seed: int, sample_from: Path | None = None
) -> tuple[int, int]:
    """Initialise one session per worktree and leave pending only that worker's share of the
    seeded sample (the others are marked skipped). Returns how many mutants exist in all, and
    how many are to be judged."""
    sessions = [copy / "session.sqlite" for copy in copies]
    for copy, session in zip(copies, sessions, strict=True):
        subprocess.run([COSMIC_RAY, "init", str(config), str(session)], cwd=copy, check=True)
    with use_db(str(sessions[0])) as db:
        every = sorted((key(item) for item in db.work_items), key=lambda k: k)
    if sample_from is not None:
        chosen = same_mutants(every, sample_from, copies[0])
    else:
        chosen = random.Random(seed).sample(every, min(size, len(every)))
    share = {k: i % len(copies) for i, k in enumerate(chosen)}
    skipped = WorkResult(worker_outcome=WorkerOutcome.SKIPPED, output="not in the sample")
    for worker, session in enumerate(sessions):
        with use_db(str(session)) as db:
            others = [item.job_id for item in db.work_items if share.get(key(item)) != worker]
            db.set_multiple_results(others, skipped)
    return len(every), len(chosen)


def judged(session: Path) -> list[Judged]:
    out: list[Judged] = []
    with use_db(str(session)) as db:
        items = {item.job_id: item for item in db.work_items}
        for job_id, result in db.results:
            if result.worker_outcome == WorkerOutcome.SKIPPED:
                continue
            module, line, operator, occurrence = key(items[job_id])
            text = result.output or ""
            verdict = [ln for ln in text.splitlines() if ln.startswith(("KILLED", "SURVIVED", "JUDGE-ERROR"))]
            if result.worker_outcome == WorkerOutcome.NO_TEST:
                outcome = "no-mutation"
            elif result.worker_outcome != WorkerOutcome.NORMAL:
                outcome = "exception"
            elif any(v.startswith("JUDGE-ERROR") for v in verdict):
                outcome = "judge-error"  # cosmic-ray counted it as killed; it is not
            elif text == "timeout":
                outcome = "killed"
                verdict = ["KILLED by cosmic-ray's timeout"]
            elif result.test_outcome == TestOutcome.KILLED:
                outcome = "killed"
            elif result.test_outcome == TestOutcome.SURVIVED:
                outcome = "survived"
            else:
                outcome = "exception"
            out.append(
                Judged(
                    module, line, operator, occurrence, outcome, " ".join(verdict)[:500], result.diff or ""
                )
            )
    return out


def write_results(
    out_dir: Path, rev: str, coordinator_rev: str, seed: int, total: int, rows: list[Judged], elapsed_s: float
) -> Path:
    rows.sort(key=lambda r: (r.module, r.line, r.operator, r.occurrence))
    killed = sum(r.outcome == "killed" for r in rows)
    survived = sum(r.outcome == "survived" for r in rows)
    rate = killed / (killed + survived) if killed + survived else None
    stem = f"harness-{rev[:10]}-coordinator-{coordinator_rev[:10]}-seed{seed}-n{len(rows)}"
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = {
        "harness_revision": rev,
        "coordinator_revision": coordinator_rev,
        "seed": seed,
        "mutants_in_coordinator": total,
        "judged": len(rows),
        "killed": killed,
        "survived": survived,
        "not_judged": len(rows) - killed - survived,
        "kill_rate": rate,
        "elapsed_s": round(elapsed_s),
        "mutants": [asdict(r) for r in rows],
    }
    (out_dir / f"{stem}.json").write_text(json.dumps(summary, indent=2))
    lines = [
        f"# Mutants of coordinator/ at {coordinator_rev[:10]} judged by the harness at {rev[:10]} (seed {seed})",
        "",
        f"{len(rows)} of {total} mutants sampled; killed {killed}, survived {survived}, "
        f"not judged {len(rows) - killed - survived}; kill rate "
        + (f"{rate:.0%}" if rate is not None else "n/a")
        + f"; {elapsed_s / 60:.0f} min.",
        "",
        "| module:line | operator | outcome | by |",
        "|---|---|---|---|",
    ]
    for r in rows:
        detail = r.detail.replace("|", "/")
        lines.append(f"| {r.module}:{r.line} | {r.operator} #{r.occurrence} | {r.outcome} | {detail} |")
    (out_dir / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines[:3]))
    return out_dir / f"{stem}.md"


def report_progress(copies: list[Path], size: int, started: float) -> None:
    done = 0
    for copy in copies:
        with use_db(str(copy / "session.sqlite")) as db:
            done += sum(r.worker_outcome != WorkerOutcome.SKIPPED for _, r in db.results)
    print(f"  {done}/{size} judged, {(time.monotonic() - started) / 60:.0f} min", flush=True)


def stop(workers: list[subprocess.Popen[bytes]], copies: list[Path]) -> None:
    """Stop what is still running (Ctrl-C, SIGTERM): cosmic-ray, and the judge it started in a
    session of its own, which passes SIGTERM on to its `harness run` and waits for its teardown."""
    for w in workers:
        if w.poll() is None:
            w.terminate()
    for copy in copies:
        pid_file = copy / ".judge.pid"
        if pid_file.is_file():
            pid = int(pid_file.read_text())
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
                deadline = time.monotonic() + 90
                while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
                    time.sleep(0.2)  # waiting for another process's exit, which no event announces
    for w in workers:
        w.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rev", default="HEAD", help="revision to mutate (committed code only)")
    parser.add_argument(
        "--coordinator-rev",
        help="mutate coordinator/ as of this revision, judged by the harness and scenarios of --rev "
        "(the same mutants judged by two versions of the harness: its kill rate before and after)",
    )
    parser.add_argument(
        "--sample-from",
        type=Path,
        help="judge the mutants of an earlier result JSON again (same module, operator and occurrence, "
        "on an unchanged line), instead of drawing a sample",
    )
    parser.add_argument("--sample", type=int, default=40, help="how many mutants to judge")
    parser.add_argument("--seed", type=int, default=1, help="seed of the sample")
    parser.add_argument("--jobs", type=int, default=2, help="workers, each in its own worktree")
    parser.add_argument("--timeout", type=float, default=3600.0, help="cosmic-ray's limit per mutant (s)")
    parser.add_argument("--harness", default=str(REPO / ".venv" / "bin" / "harness"))
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument(
        "--no-baseline", action="store_true", help="skip the unmutated run of every mapped scenario"
    )
    args = parser.parse_args(argv)
    if not Path(args.harness).is_file():
        print(f"mutation: no harness at {args.harness}; run `make setup` first", file=sys.stderr)
        return 2
    rev = git("rev-parse", args.rev)
    coordinator_rev = git("rev-parse", args.coordinator_rev or args.rev)
    started = time.monotonic()
    with worktrees(rev, args.jobs, coordinator_rev) as copies:
        config = copies[0].parent / "cosmic-ray.toml"
        write_config(config, args.harness, args.timeout)
        if not args.no_baseline:
            print(f"baseline: every mapped scenario on unmutated {rev[:10]}", flush=True)
            judge = [sys.executable, str(HERE / "judge.py"), "--harness", args.harness]
            base = subprocess.run(
                [*judge, "--map", str(HERE / "modules.toml"), "--baseline"], cwd=copies[0], check=False
            )
            if base.returncode != 0:
                print(
                    "mutation: the unmutated code fails a scenario: mutants cannot be judged", file=sys.stderr
                )
                return 1
        total, size = sample_sessions(copies, config, args.sample, args.seed, args.sample_from)
        print(
            f"{total} mutants in coordinator/; judging {size} on {len(copies)} workers",
            flush=True,
        )
        workers = [
            subprocess.Popen([COSMIC_RAY, "exec", str(config), "session.sqlite"], cwd=copy) for copy in copies
        ]
        try:
            for w in workers:
                while True:
                    try:
                        w.wait(timeout=60)
                        break
                    except subprocess.TimeoutExpired:
                        report_progress(copies, size, started)
        finally:
            stop(workers, copies)
        rows = [row for copy in copies for row in judged(copy / "session.sqlite")]
        write_results(args.out, rev, coordinator_rev, args.seed, total, rows, time.monotonic() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
