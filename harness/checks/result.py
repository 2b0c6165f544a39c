"""What a check concludes: pass, fail, or unknown, always with the evidence behind it.

`unknown` is a verdict of its own: the target lacks the capability the check needs (an
extension of PROTOCOL.md it does not implement), or the run produced no evidence either way.
It is never folded into pass.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Status = Literal["pass", "fail", "unknown"]


@dataclass(slots=True)
class CheckResult:
    name: str  # the check's registered name, e.g. "heartbeat-continuity"
    status: Status
    summary: str  # one line a person reads first
    evidence: list[dict[str, Any]] = field(default_factory=list)  # history indices, times, values
    bounds: dict[str, Any] = field(default_factory=dict)  # the bounds it judged against
    detected_at: float | None = None  # run time (s) of the first violating event, on fail
    # unknown because the target lacks an [ext] capability the check needs: a fact about the
    # target, not missing evidence (--strict does not fail a run for it)
    unsupported: bool = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)
