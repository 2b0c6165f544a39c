"""`journal.json`: the complete, machine-readable record of a run.

It holds everything needed to re-run the scenario (resolved scenario data and seed) and to
re-render every other report file, so a failure found once is never lost. History entries are
written one per line: the file stays greppable and diffable at 50k entries.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import math
import os
import tempfile
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from harness.checks.result import CheckResult
from harness.history import Event, FaultWindow, History, Message, Op
from harness.report.record import RunRecord, iso_utc, parse_iso_utc, status_counts

FORMAT = "sync-chaos-harness/journal"
FORMAT_VERSION = 1
JOURNAL_NAME = "journal.json"


def jsonable(value: Any) -> Any:
    """Turn anything a history may hold into strict JSON: bytes, sets, dataclasses, NaN.

    Server-sent values are untrusted; the journal must be writable whatever they contain.
    """
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted((jsonable(v) for v in value), key=repr)
    if isinstance(value, bytes | bytearray | memoryview):
        return {"$base64": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, datetime):
        return iso_utc(value)
    if isinstance(value, Path):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return jsonable(dataclasses.asdict(value))
    return repr(value)


def build_journal(run: RunRecord) -> dict[str, Any]:
    """The journal as a JSON-ready dict (what `load_journal` gives back)."""
    history = jsonable(run.history.to_json())
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "run_id": run.resolved_run_id(),
        "scenario": {
            "name": run.scenario_name,
            "path": run.scenario_path,
            "data": jsonable(run.scenario_data),
        },
        "seed": run.seed,
        "versions": jsonable(run.resolved_versions()),
        "started_at": iso_utc(run.started_at),
        "ended_at": iso_utc(run.ended_at),
        "duration_s": round(run.duration_s, 6),
        "verdict": run.verdict,
        "exit_code": run.effective_exit_code,
        "strict": run.strict,
        "strict_problems": run.strict_problems(),
        "counts": status_counts(run.checks),
        "rerun": {"command": run.rerun_command(), "scenario_path": run.scenario_path, "seed": run.seed},
        "notes": list(run.notes),
        "checks": [jsonable(c.to_json()) for c in run.checks],
        "check_seconds": jsonable(run.check_seconds),
        "fault_windows": history["faults"],
        "observations": jsonable(run.observations),
        "history": history,
    }


def dumps_journal(journal: Mapping[str, Any]) -> str:
    """Indented at the top, one line per history entry below: readable and compact."""
    lines = ["{"]
    keys = list(journal)
    for i, key in enumerate(keys):
        comma = "," if i < len(keys) - 1 else ""
        value = journal[key]
        if key == "history" and isinstance(value, Mapping):
            lines.append(f"  {json.dumps(key)}: {{")
            parts = list(value)
            for j, part in enumerate(parts):
                entries = value[part]
                inner_comma = "," if j < len(parts) - 1 else ""
                if not entries:
                    lines.append(f"    {json.dumps(part)}: []{inner_comma}")
                    continue
                lines.append(f"    {json.dumps(part)}: [")
                rendered = [json.dumps(e, allow_nan=False, separators=(",", ":")) for e in entries]
                lines.append(",\n".join(f"      {r}" for r in rendered))
                lines.append(f"    ]{inner_comma}")
            lines.append(f"  }}{comma}")
        else:
            text = json.dumps(value, indent=2, allow_nan=False).replace("\n", "\n  ")
            lines.append(f"  {json.dumps(key)}: {text}{comma}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def atomic_write(path: Path, data: str | bytes) -> None:
    """Write beside the target and rename, so a crash never leaves half a report file."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o644)  # mkstemp's 0600 would hide reports from CI artifact uploaders
        with os.fdopen(fd, "wb") as fh:
            fh.write(raw)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_journal(run_dir: Path, run: RunRecord) -> Path:
    path = run_dir / JOURNAL_NAME
    atomic_write(path, dumps_journal(build_journal(run)))
    return path


def load_journal(path: str | Path) -> dict[str, Any]:
    """Read a journal back (from the file or its run directory) and check it is one."""
    target = Path(path)
    if target.is_dir():
        target = target / JOURNAL_NAME
    with target.open(encoding="utf-8") as fh:
        data = json.load(fh)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"{target}: not a sync-chaos-harness journal (no format {FORMAT!r})")
    version = data.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ValueError(f"{target}: journal format version {version!r}, this harness reads {FORMAT_VERSION}")
    return data


def history_from_json(data: Mapping[str, Any]) -> History:
    """A History holding the recorded entries, for reading (checks, reports), not for appending."""
    history = History(clock=lambda: 0.0)
    history.ops = [Op(**o) for o in data.get("ops", [])]
    history.messages = [Message(**m) for m in data.get("messages", [])]
    history.events = [Event(**e) for e in data.get("events", [])]
    history.faults = [FaultWindow(**w) for w in data.get("faults", [])]
    return history


def record_from_journal(journal: Mapping[str, Any]) -> RunRecord:
    """Rebuild the run from its journal: re-render its reports, or hand it to a suite report."""
    scenario = journal["scenario"]
    return RunRecord(
        scenario_name=scenario["name"],
        seed=journal["seed"],
        history=history_from_json(journal["history"]),
        checks=[CheckResult(**c) for c in journal["checks"]],
        started_at=parse_iso_utc(journal["started_at"]),
        ended_at=parse_iso_utc(journal["ended_at"]),
        scenario_path=scenario.get("path"),
        scenario_data=scenario.get("data"),
        versions=dict(journal.get("versions", {})),
        exit_code=journal.get("exit_code"),
        notes=list(journal.get("notes", [])),
        run_id=journal.get("run_id"),
        check_seconds=dict(journal.get("check_seconds", {})),
        rerun=journal.get("rerun", {}).get("command"),
        observations=journal.get("observations"),
    )
