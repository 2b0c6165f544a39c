"""What a Locust run left behind, read back by the harness (no Locust import).

Final numbers come from Locust's JSON stats (`--json-file`), written once the run is over; its
CSV history (`--csv-full-history`) gives the series over time, and its failures CSV the
failures by error (our users make that the protocol code). The CSV lags the final summary by
about a second, so totals are never taken from it.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.history import Event, History, Message, Op

PERCENTILES = (0.5, 0.95, 0.99)


@dataclass
class RequestStats:
    """One request name, all methods merged (WS and HTTP `apply->ack` together) or one method."""

    name: str
    method: str
    requests: int = 0
    failures: int = 0
    total_ms: float = 0.0
    max_ms: float = 0.0
    min_ms: float | None = None
    start: float | None = None
    last: float | None = None
    response_times: dict[float, int] = field(default_factory=dict)

    def add(self, entry: dict[str, Any]) -> None:
        self.requests += int(entry.get("num_requests", 0))
        self.failures += int(entry.get("num_failures", 0))
        self.total_ms += float(entry.get("total_response_time", 0.0))
        self.max_ms = max(self.max_ms, float(entry.get("max_response_time") or 0.0))
        low = entry.get("min_response_time")
        if low is not None:
            self.min_ms = float(low) if self.min_ms is None else min(self.min_ms, float(low))
        for key, count in (entry.get("response_times") or {}).items():
            self.response_times[float(key)] = self.response_times.get(float(key), 0) + int(count)
        start, last = entry.get("start_time"), entry.get("last_request_timestamp")
        if start:
            self.start = float(start) if self.start is None else min(self.start, float(start))
        if last:
            self.last = float(last) if self.last is None else max(self.last, float(last))

    def percentile(self, q: float) -> float | None:
        """Locust's own rule: the smallest recorded time with at least q of the requests at or
        below it (times are bucketed as Locust rounds them)."""
        total = sum(self.response_times.values())
        if total == 0:
            return None
        need = math.ceil(q * total)
        seen = 0
        for value in sorted(self.response_times):
            seen += self.response_times[value]
            if seen >= need:
                return value
        return max(self.response_times)

    @property
    def avg_ms(self) -> float | None:
        return self.total_ms / self.requests if self.requests else None

    @property
    def error_share(self) -> float:
        return self.failures / self.requests if self.requests else 0.0

    @property
    def rps(self) -> float:
        if not self.requests or self.start is None or self.last is None or self.last <= self.start:
            return 0.0
        return self.requests / (self.last - self.start)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "method": self.method,
            "requests": self.requests,
            "failures": self.failures,
            "rps": round(self.rps, 3),
            "avg_ms": self.avg_ms,
            "min_ms": self.min_ms,
            "max_ms": self.max_ms,
            **{f"p{round(q * 100)}_ms": self.percentile(q) for q in PERCENTILES},
        }


def read_stats(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    data = json.loads(path.read_text() or "[]")
    return data if isinstance(data, list) else []


def by_name(entries: list[dict[str, Any]]) -> dict[str, RequestStats]:
    """Final stats per request name, methods merged; "all" is every request together."""
    out: dict[str, RequestStats] = {}
    for entry in entries:
        name = str(entry.get("name"))
        out.setdefault(name, RequestStats(name, "*")).add(entry)
        out.setdefault("all", RequestStats("all", "*")).add(entry)
    return out


def by_method(entries: list[dict[str, Any]]) -> list[RequestStats]:
    out = []
    for entry in entries:
        stats = RequestStats(str(entry.get("name")), str(entry.get("method")))
        stats.add(entry)
        out.append(stats)
    return out


def read_failures(path: Path) -> list[dict[str, Any]]:
    """[{method, name, error, count}] from Locust's failures CSV (error = protocol code)."""
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return [
            {"method": r["Method"], "name": r["Name"], "error": r["Error"], "count": int(r["Occurrences"])}
            for r in csv.DictReader(f)
        ]


def read_history_csv(path: Path) -> list[dict[str, Any]]:
    """The per-second rows of `<prefix>_stats_history.csv`, numbers parsed (N/A -> None)."""
    if not path.is_file():
        return []
    rows = []
    with path.open(newline="") as f:
        for r in csv.DictReader(f):
            row: dict[str, Any] = {"timestamp": float(r["Timestamp"]), "users": int(r["User Count"] or 0)}
            row["method"], row["name"] = r["Type"], r["Name"]
            for key in ("Requests/s", "Failures/s", "50%", "95%", "99%"):
                text = r.get(key, "N/A")
                row[key] = None if text in ("N/A", "", None) else float(text)
            rows.append(row)
    return rows


def merge_sample(history: History, directory: Path) -> int:
    """Appends the Locust processes' sample lines to `history`, in time order; returns how many
    operations (invocations) it held. Op ids are made unique across processes."""
    records: list[dict[str, Any]] = []
    for index, file in enumerate(sorted(directory.glob("history-*.jsonl"))):
        for line in file.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a killed process: the rest still counts
            if isinstance(record, dict):
                record["_file"] = index
                records.append(record)
    records.sort(key=lambda r: float(r.get("time", 0.0)))
    invoked = 0
    next_index = len(history.ops) + len(history.messages) + len(history.events)
    for record in records:
        kind = record.pop("record", None)
        file_index = record.pop("_file")
        if kind == "op":
            if record["type"] == "invoke":
                invoked += 1
            record["op_id"] = 1_000_000 * (file_index + 1) + int(record["op_id"])
            history.ops.append(Op(index=next_index, **record))
        elif kind == "message":
            history.messages.append(Message(index=next_index, **record))
        elif kind == "event":
            history.events.append(Event(index=next_index, **record))
        else:
            continue
        next_index += 1
    return invoked
