"""Where reports go: `reports/<run-id>/` per run, `reports/<suite-id>/` per suite, and
`reports/latest` pointing at the newest.

The journal is written first: if anything after it fails, the run's record is already safe.
"""

from __future__ import annotations

import dataclasses
import json
import os
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness.report.html import run_html, suite_html
from harness.report.journal import atomic_write, load_journal, record_from_journal, write_journal
from harness.report.junit import write_junit
from harness.report.matrix import MatrixRow, matrix_table, write_matrix
from harness.report.record import RunRecord, as_utc, iso_utc, make_run_id, status_counts, verdict_of

REPORT_NAME = "report.html"
INDEX_NAME = "index.html"
SUITE_JSON = "suite.json"
LATEST = "latest"


def _fresh_dir(out_root: Path, name: str) -> Path:
    """A new directory named `name`, or `name-2`, `name-3`... when that second is taken
    (parallel runs of one scenario and seed start in the same second)."""
    out_root.mkdir(parents=True, exist_ok=True)
    for n in range(1, 10_000):
        candidate = out_root / (name if n == 1 else f"{name}-{n}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        return candidate
    raise FileExistsError(f"{out_root}: no free directory name for {name}")


def _latest_name(link: Path) -> str | None:
    try:
        if link.is_symlink():
            return Path(os.readlink(link)).name
        if link.is_file():
            return link.read_text(encoding="utf-8").strip() or None
    except OSError:
        return None
    return None


def update_latest(out_root: Path, run_dir: Path) -> None:
    """Point `out_root/latest` at `run_dir`, unless it already points at a newer one.

    Run ids sort by start time, so a run that finishes after a later-started one (parallel jobs)
    does not move `latest` backwards. The symlink is relative, made beside and renamed over the
    old one (atomic); where symlinks are refused, `latest` is a text file with the name.
    """
    link = out_root / LATEST
    name = run_dir.name
    current = _latest_name(link)
    if current is not None and current > name and (out_root / current).is_dir():
        return
    tmp = out_root / f".{LATEST}.{uuid.uuid4().hex}"
    try:
        os.symlink(name, tmp, target_is_directory=True)
        os.replace(tmp, link)
    except OSError:
        tmp.unlink(missing_ok=True)
        atomic_write(link, name + "\n")


def write_run_report(out_root: Path, run: RunRecord, *, update_latest_link: bool = True) -> Path:
    """Write `journal.json.gz`, `junit.xml` and `report.html` into a new `out_root/<run-id>/`.

    A record with an explicit `run_id` (e.g. rebuilt from a journal) is written to that
    directory, replacing its files; otherwise the id is derived and made unique.
    """
    if run.run_id:
        run_dir = out_root / run.run_id
        run_dir.mkdir(parents=True, exist_ok=True)
    else:
        run_dir = _fresh_dir(out_root, make_run_id(run.scenario_name, run.seed, run.started_at))
        run = dataclasses.replace(run, run_id=run_dir.name)
    write_journal(run_dir, run)
    write_junit(run_dir, [run], name=run.scenario_name)
    atomic_write(run_dir / REPORT_NAME, run_html(run))
    if update_latest_link:
        update_latest(out_root, run_dir)
    return run_dir


def write_suite_report(
    out_root: Path,
    runs: Sequence[RunRecord | Path],
    *,
    name: str = "suite",
    started_at: datetime | None = None,
    ended_at: datetime | None = None,
    matrix_rows: Sequence[MatrixRow | Mapping[str, Any]] | None = None,
) -> Path:
    """Write `out_root/<suite-id>/` with each run's directory, a combined `junit.xml` (one
    testsuite per scenario run), `index.html`, `suite.json`, and the matrix when given.

    `runs` may mix records (written into the suite directory here) and directories of runs
    already written elsewhere (parallel workers), which are linked to, not copied.
    """
    records = [r for r in runs if isinstance(r, RunRecord)]
    loaded = {id(r): record_from_journal(load_journal(r)) for r in runs if isinstance(r, Path)}
    starts = [r.started_at for r in records] + [r.started_at for r in loaded.values()]
    ends = [r.ended_at for r in records] + [r.ended_at for r in loaded.values()]
    now = datetime.now(UTC)
    started = as_utc(started_at or (min(starts, key=as_utc) if starts else now))
    ended = as_utc(ended_at or (max(ends, key=as_utc) if ends else now))
    suite_dir = _fresh_dir(out_root, make_run_id(name, None, started))

    entries: list[tuple[RunRecord, str]] = []
    for item in runs:
        if isinstance(item, RunRecord):
            run_dir = write_run_report(suite_dir, item, update_latest_link=False)
            record = record_from_journal(load_journal(run_dir))
        else:
            run_dir, record = item, loaded[id(item)]
        entries.append((record, Path(os.path.relpath(run_dir.resolve(), suite_dir.resolve())).as_posix()))

    all_records = [record for record, _ in entries]
    write_junit(suite_dir, all_records, name=name)
    matrix_html = ""
    if matrix_rows is not None:
        write_matrix(matrix_rows, suite_dir)
        matrix_html = matrix_table(matrix_rows)
    all_checks = [c for r in all_records for c in r.checks]
    summary = {
        "format": "sync-chaos-harness/suite",
        "format_version": 1,
        "suite_id": suite_dir.name,
        "name": name,
        "started_at": iso_utc(started),
        "ended_at": iso_utc(ended),
        "verdict": verdict_of(all_checks),
        "counts": status_counts(all_checks),
        "exit_code": max((r.effective_exit_code for r in all_records), default=0),
        "fault_steps_all_skipped": [r.scenario_name for r in all_records if r.fault_steps_all_skipped()],
        "runs": [
            {
                "run_id": r.resolved_run_id(),
                "scenario": r.scenario_name,
                "seed": r.seed,
                "verdict": r.verdict,
                "exit_code": r.effective_exit_code,
                "steps_skipped": len(r.skipped_steps()),
                "skipped_steps": r.skipped_steps(),
                "fault_steps_all_skipped": r.fault_steps_all_skipped(),
                "strict_problems": r.strict_problems(),
                "notes": list(r.notes),
                "dir": link,
            }
            for r, link in entries
        ],
    }
    atomic_write(suite_dir / SUITE_JSON, json.dumps(summary, indent=2) + "\n")
    duration = (ended - started).total_seconds()
    atomic_write(suite_dir / INDEX_NAME, suite_html(name, suite_dir.name, entries, matrix_html, duration))
    update_latest(out_root, suite_dir)
    return suite_dir
