"""What the target exposes, gathered by the runner beside the history: /status, /metrics,
/debug/resources, /health, /ready samples over time, the object store's contents and request
log when the harness owns S3, the coordinator process's lifecycle and log lines, and the
capabilities the target is declared to have. Checks read it; they never fetch anything."""

from __future__ import annotations

import gzip
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from harness.checks.prometheus import parse_prometheus

ProcessEventKind = Literal["start", "sigterm", "sigkill", "sigstop", "sigcont", "restart", "exit"]


@dataclass(slots=True)
class Sample:
    """One probe of an endpoint at run time `time` (seconds, the history's clock)."""

    time: float
    data: Any
    http_status: int | None = 200


@dataclass(slots=True)
class ProcessEvent:
    """A lifecycle event of the target process: what the harness did to it (start, signals)
    and what it did by itself (exit, with its code)."""

    time: float
    kind: ProcessEventKind
    exit_code: int | None = None
    by_harness: bool = True  # False for an exit nobody asked for


@dataclass(slots=True)
class LogLine:
    time: float
    text: str
    stream: str = "stderr"


@dataclass(slots=True)
class S3Request:
    time: float
    operation: str  # PutObject, GetObject, ListObjectsV2, ...
    key: str | None = None
    status: int | None = None


@dataclass(slots=True)
class S3Object:
    key: str
    body: bytes

    def document(self) -> Any:
        """The JSON inside (snapshots are gzip); None when unreadable."""
        raw = self.body
        if raw[:2] == b"\x1f\x8b":
            try:
                raw = gzip.decompress(raw)
            except OSError:
                return None
        try:
            return json.loads(raw)
        except ValueError:
            return None


@dataclass(slots=True)
class Observations:
    status: list[Sample] = field(default_factory=list)
    metrics: list[Sample] = field(default_factory=list)  # data: {series: value}, see prometheus
    resources: list[Sample] = field(default_factory=list)  # /debug/resources bodies
    health: list[Sample] = field(default_factory=list)
    ready: list[Sample] = field(default_factory=list)
    s3_owned: bool = False
    s3_objects: list[S3Object] | None = None  # final listing with contents, when owned
    s3_listed_at: float | None = None  # run time of that listing (None: the end of the run)
    s3_requests: list[S3Request] = field(default_factory=list)
    process: list[ProcessEvent] = field(default_factory=list)
    logs: list[LogLine] = field(default_factory=list)
    capabilities: dict[str, bool] = field(default_factory=dict)  # declared; see capabilities.py

    def add_metrics_text(self, time: float, text: str) -> None:
        self.metrics.append(Sample(time, parse_prometheus(text)))

    def to_json(self) -> dict[str, Any]:
        """JSON-safe form for the journal; S3 object bodies are summarised by their size."""
        data = asdict(self)
        if self.s3_objects is not None:
            data["s3_objects"] = [{"key": o.key, "size": len(o.body)} for o in self.s3_objects]
        return data

    def process_times(self, *kinds: str) -> list[float]:
        return [e.time for e in self.process if e.kind in kinds]
