"""The verify matrix: for each catalogued bug, which check caught it and how fast, or that it was
missed; and any check that failed against the correct coordinator (a false alarm).

`harness verify` computes the rows; this module only renders and stores them, so the same rows
give `matrix.json` (for machines and the README) and `matrix.html` (for people).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.report.journal import atomic_write, jsonable
from harness.report.page import page, pill
from harness.report.svg import esc, fmt_seconds

MATRIX_JSON = "matrix.json"
MATRIX_HTML = "matrix.html"


@dataclass
class MatrixRow:
    """One bug's line. `runs` is how many runs the row summarises, or their report directories
    (relative to the matrix's directory), which the HTML links to."""

    bug: str
    scenario: str
    detected: bool
    caught_by: list[str] = field(default_factory=list)
    time_to_detect_s: float | None = None
    false_alarm: list[str] = field(default_factory=list)
    runs: int | list[str] = 1

    @classmethod
    def from_mapping(cls, row: Mapping[str, Any]) -> MatrixRow:
        runs = row.get("runs", 1)
        return cls(
            bug=str(row["bug"]),
            scenario=str(row["scenario"]),
            detected=bool(row["detected"]),
            caught_by=[str(c) for c in row.get("caught_by") or []],
            time_to_detect_s=row.get("time_to_detect_s"),
            false_alarm=[str(c) for c in row.get("false_alarm") or []],
            runs=[str(r) for r in runs] if isinstance(runs, list | tuple) else int(runs),
        )

    @property
    def outcome(self) -> str:
        """detected / missed, and false-alarm when a check failed on the correct coordinator
        (which outweighs a detection: a check that fails on correct code proves nothing)."""
        if self.false_alarm:
            return "false-alarm"
        return "detected" if self.detected else "missed"

    def to_json(self) -> dict[str, Any]:
        return {
            "bug": self.bug,
            "scenario": self.scenario,
            "detected": self.detected,
            "caught_by": self.caught_by,
            "time_to_detect_s": self.time_to_detect_s,
            "false_alarm": self.false_alarm,
            "runs": self.runs,
            "outcome": self.outcome,
        }


def _rows(rows: Sequence[MatrixRow | Mapping[str, Any]]) -> list[MatrixRow]:
    return [r if isinstance(r, MatrixRow) else MatrixRow.from_mapping(r) for r in rows]


def matrix_ok(rows: Sequence[MatrixRow | Mapping[str, Any]]) -> bool:
    """What `harness verify` exits 0 on: every bug detected, no false alarm anywhere."""
    parsed = _rows(rows)
    return bool(parsed) and all(r.outcome == "detected" for r in parsed)


def matrix_table(rows: Sequence[MatrixRow | Mapping[str, Any]]) -> str:
    """The matrix as an HTML section, also embedded in a suite's index page."""
    parsed = _rows(rows)
    body = []
    for r in parsed:
        caught = ", ".join(r.caught_by) if r.detected and r.caught_by else "—"
        ttd = fmt_seconds(r.time_to_detect_s) if r.detected and r.time_to_detect_s is not None else "—"
        if isinstance(r.runs, list):
            runs = " ".join(f'<a href="{esc(link)}/report.html">{i + 1}</a>' for i, link in enumerate(r.runs))
        else:
            runs = esc(r.runs)
        body.append(
            f'<tr class="row-{"fail" if r.outcome != "detected" else "pass"}" '
            f'data-status="{"fail" if r.outcome != "detected" else "pass"}">'
            f"<td><b>{esc(r.bug)}</b></td><td>{esc(r.scenario)}</td><td>{pill(r.outcome)}</td>"
            f'<td>{esc(caught)}</td><td class="num">{esc(ttd)}</td>'
            f"<td>{esc(', '.join(r.false_alarm)) or '—'}</td><td>{runs}</td></tr>"
        )
    detected = sum(1 for r in parsed if r.detected)
    alarms = sum(1 for r in parsed if r.false_alarm)
    summary = (
        f"{detected} of {len(parsed)} bugs detected; {len(parsed) - detected} missed; "
        f"false alarms on the correct coordinator: {alarms}."
    )
    return (
        '<section class="card" id="matrix"><h2>Verify matrix</h2>'
        f"<p>{pill('pass' if matrix_ok(parsed) else 'fail')} {esc(summary)}</p>"
        "<table><thead><tr><th>bug</th><th>scenario</th><th>result</th><th>caught by</th>"
        "<th>time to detect</th><th>false alarm (correct coordinator)</th><th>runs</th></tr></thead>"
        f"<tbody>{''.join(body) or '<tr><td colspan=7>No rows.</td></tr>'}</tbody></table></section>"
    )


def write_matrix(rows: Sequence[MatrixRow | Mapping[str, Any]], out_dir: Path) -> Path:
    """Write `matrix.json` and `matrix.html` into `out_dir` (created); returns the HTML path."""
    parsed = _rows(rows)
    out_dir.mkdir(parents=True, exist_ok=True)
    doc = {"ok": matrix_ok(parsed), "rows": [r.to_json() for r in parsed]}
    atomic_write(out_dir / MATRIX_JSON, json.dumps(jsonable(doc), indent=2, allow_nan=False) + "\n")
    ok = matrix_ok(parsed)
    banner = (
        f'<header class="banner {"pass" if ok else "fail"}"><div class="verdict">{"PASS" if ok else "FAIL"}</div>'
        '<div><h1>harness verify</h1><div class="meta">each catalogued bug against the checks</div></div></header>'
    )
    html_path = out_dir / MATRIX_HTML
    atomic_write(html_path, page("verify matrix", banner, matrix_table(parsed)))
    return html_path
