"""The bounded history sample a Locust process writes, one JSON object a line.

Each line is one of `harness.history`'s records with a `record` key ("op", "message", "event")
and the fields of `Op`, `Message` or `Event` (without `index`: the harness numbers the merged
lines). Times are seconds since the harness's run start (HARNESS_LOAD_T0 on the same monotonic
clock), so the sample lines up with the fault windows. At most `max_ops` operations are started
per process; an operation started is always completed, so the checks see whole pairs.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from pathlib import Path
from typing import IO, Any

from harness.history import OpType

MAX_MESSAGES_PER_OP = 4  # pushes kept per started operation: the sample stays small


class Sample:
    def __init__(self, directory: str, max_ops: int, t0: float) -> None:
        self.max_ops = max_ops
        self.t0 = t0 or time.monotonic()
        self._file: IO[str] | None = None
        self._ops = 0
        self._messages = 0
        self._ids = itertools.count(1)
        if directory and max_ops > 0:
            Path(directory).mkdir(parents=True, exist_ok=True)
            self._file = open(Path(directory) / f"history-{os.getpid()}.jsonl", "a", encoding="utf-8")

    def now(self) -> float:
        return time.monotonic() - self.t0

    def _write(self, record: dict[str, Any]) -> None:
        if self._file is not None:
            self._file.write(json.dumps(record, separators=(",", ":")) + "\n")

    def invoke(self, process: str, f: str, value: Any = None) -> int | None:
        """Starts an operation when the budget allows; its id, or None (then nothing is kept)."""
        if self._file is None or self._ops >= self.max_ops:
            return None
        self._ops += 1
        op_id = next(self._ids)
        self._write(
            {
                "record": "op",
                "process": process,
                "type": "invoke",
                "f": f,
                "time": self.now(),
                "value": value,
                "error": None,
                "op_id": op_id,
            }
        )
        return op_id

    def complete(
        self,
        op_id: int | None,
        process: str,
        f: str,
        type: OpType,
        value: Any = None,
        error: str | None = None,
    ) -> None:
        if op_id is not None:
            self._write(
                {
                    "record": "op",
                    "process": process,
                    "type": type,
                    "f": f,
                    "time": self.now(),
                    "value": value,
                    "error": error,
                    "op_id": op_id,
                }
            )

    def message(self, process: str, payload: dict[str, Any]) -> None:
        if self._file is None or self._messages >= self.max_ops * MAX_MESSAGES_PER_OP:
            return
        self._messages += 1
        self._write(
            {
                "record": "message",
                "process": process,
                "direction": "recv",
                "type": str(payload.get("type", "?")),
                "time": self.now(),
                "payload": payload,
            }
        )

    def event(self, process: str, kind: str, **data: Any) -> None:
        if self._file is not None and self._ops < self.max_ops:
            self._write(
                {"record": "event", "process": process, "kind": kind, "time": self.now(), "data": data}
            )

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()
