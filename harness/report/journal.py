"""`journal.json.gz`: the complete, machine-readable record of a run.

It holds everything needed to re-run the scenario (resolved scenario data and seed) and to
re-render every other report file, so a failure found once is never lost. History entries are
written one per line (`zcat journal.json.gz | grep ...` stays useful at 50k entries), and the
file is gzip-compressed: a CI artifact, not hundreds of MB. Large frames are already stubs in
the history (harness/model/capping.py); a REPLICA state equal to an earlier one is written as
`{"$same_as": <index of that event>}` and restored on load (replicas that converged hold the
same state, and each is recorded more than once). A plain `journal.json` is still read.
"""

from __future__ import annotations

import base64
import dataclasses
import gzip
import json
import math
import os
import tempfile
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from harness.checks.result import CheckResult
from harness.history import DEFAULT_PAYLOAD_CAP, Event, FaultWindow, History, Message, Op
from harness.report.record import RunRecord, iso_utc, parse_iso_utc, status_counts

FORMAT = "sync-chaos-harness/journal"
FORMAT_VERSION = 1
JOURNAL_NAME = "journal.json.gz"
PLAIN_JOURNAL_NAME = "journal.json"  # written by earlier versions; still read
SAME_AS = "$same_as"
REPLICA_KIND = "replica"  # harness.client.recorder.EventKind.REPLICA


def journal_path(run_dir: str | Path) -> Path:
    """The journal of a run directory: the gzip one, else a plain one of an older run."""
    base = Path(run_dir)
    gz = base / JOURNAL_NAME
    return gz if gz.exists() or not (base / PLAIN_JOURNAL_NAME).exists() else base / PLAIN_JOURNAL_NAME


def _dedup_replica_states(events: list[Any]) -> list[Any]:
    """Replace each REPLICA state equal to an earlier one by a reference to that event."""
    seen: dict[str, int] = {}
    out: list[Any] = []
    for event in events:
        data = event.get("data") if isinstance(event, dict) else None
        if not isinstance(data, dict) or event.get("kind") != REPLICA_KIND or "state" not in data:
            out.append(event)
            continue
        key = json.dumps(data["state"], sort_keys=True, separators=(",", ":"))
        if key in seen:
            event = event | {"data": data | {"state": {SAME_AS: seen[key]}}}
        else:
            seen[key] = event["index"]
        out.append(event)
    return out


def _restore_replica_states(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    states: dict[int, Any] = {}
    out: list[dict[str, Any]] = []
    for event in events:
        data = event.get("data")
        if event.get("kind") == REPLICA_KIND and isinstance(data, dict) and "state" in data:
            state = data["state"]
            if isinstance(state, dict) and set(state) == {SAME_AS}:
                event = event | {"data": data | {"state": states[state[SAME_AS]]}}
            else:
                states[event["index"]] = state
        out.append(event)
    return out


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
    """The journal as a JSON-ready dict, as written: a repeated REPLICA state is a reference
    (`load_journal` gives it back whole)."""
    history = jsonable(run.history.to_json())
    history["events"] = _dedup_replica_states(history["events"])
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
        "options": jsonable(run.options),
        "strict_problems": run.strict_problems(),
        "counts": status_counts(run.checks),
        "rerun": {"command": run.rerun_command(), "scenario_path": run.scenario_path, "seed": run.seed},
        "notes": list(run.notes),
        "checks": [jsonable(c.to_json()) for c in run.checks],
        "check_seconds": jsonable(run.check_seconds),
        "fault_windows": history["faults"],
        "observations": jsonable(run.observations),
        "payload_cap": run.history.payload_cap,
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
    # mtime 0: the same run gives the same bytes (re-rendering a report leaves it unchanged)
    atomic_write(path, gzip.compress(dumps_journal(build_journal(run)).encode("utf-8"), 6, mtime=0))
    return path


def read_json_file(path: Path) -> Any:
    """The JSON in `path`, gzip-compressed (by its magic bytes, whatever its name) or plain."""
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    return json.loads(raw.decode("utf-8"))


def load_journal(path: str | Path) -> dict[str, Any]:
    """Read a journal back (from the file, gzip or plain, or its run directory) and check it
    is one. REPLICA states written by reference come back whole."""
    target = Path(path)
    if target.is_dir():
        target = journal_path(target)
    data = read_json_file(target)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"{target}: not a sync-chaos-harness journal (no format {FORMAT!r})")
    version = data.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ValueError(f"{target}: journal format version {version!r}, this harness reads {FORMAT_VERSION}")
    history = data.get("history")
    if isinstance(history, dict) and isinstance(history.get("events"), list):
        history["events"] = _restore_replica_states(history["events"])
    return data


def history_from_json(data: Mapping[str, Any]) -> History:
    """A History holding the recorded entries, for reading (checks, reports), not for appending."""
    history = History(clock=lambda: 0.0, payload_cap=None)
    history.ops = [Op(**o) for o in data.get("ops", [])]
    history.messages = [Message(**m) for m in data.get("messages", [])]
    history.events = [Event(**e) for e in _restore_replica_states(list(data.get("events", [])))]
    history.faults = [FaultWindow(**w) for w in data.get("faults", [])]
    return history


def record_from_journal(journal: Mapping[str, Any]) -> RunRecord:
    """Rebuild the run from its journal: re-render its reports, or hand it to a suite report."""
    scenario = journal["scenario"]
    history = history_from_json(journal["history"])
    history.payload_cap = journal.get("payload_cap", DEFAULT_PAYLOAD_CAP)
    return RunRecord(
        scenario_name=scenario["name"],
        seed=journal["seed"],
        history=history,
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
        strict=bool(journal.get("strict", False)),
        options=dict(journal.get("options") or {}),
    )
