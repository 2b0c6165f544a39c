"""`--fail-on` thresholds: `[NAME ]METRIC OP VALUE[UNIT]`, judged on Locust's final stats.

Examples: `apply->push p99>250ms`, `errors>1%`, `handshake errors>0`, `apply->ack rps<50`,
`snapshot max>2s`. METRIC is p50, p95, p99 (any pNN or pNN.N), avg, min, max (milliseconds),
errors (a share with %, else a count), rps, requests. A threshold is *crossed* when its
condition holds; without NAME it is judged on every request together.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from harness.load.results import RequestStats

_SPEC = re.compile(
    r"^\s*(?:(?P<name>\S+)\s+)?(?P<metric>p\d+(?:\.\d+)?|avg|min|max|errors|rps|requests)\s*"
    r"(?P<op>>=|<=|>|<)\s*(?P<value>\d+(?:\.\d+)?)\s*(?P<unit>ms|s|%)?\s*$"
)
_OPS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    "<": operator.lt,
    ">=": operator.ge,
    "<=": operator.le,
}


class ThresholdError(ValueError):
    """A --fail-on text that does not parse (exit code 2)."""


@dataclass(frozen=True)
class Threshold:
    text: str
    name: str  # request name or "all"
    metric: str
    op: str
    limit: float  # in ms for times, a fraction for errors with %, else as given
    share: bool = False

    @classmethod
    def parse(cls, text: str) -> Threshold:
        m = _SPEC.match(text)
        if m is None:
            raise ThresholdError(
                f"--fail-on {text!r}: expected '[NAME ]METRIC OP VALUE[UNIT]', e.g. 'apply->push p99>250ms' or 'errors>1%'"
            )
        metric, unit, value = m["metric"], m["unit"], float(m["value"])
        timed = metric.startswith("p") or metric in ("avg", "min", "max")
        if timed:
            if unit == "%":
                raise ThresholdError(f"--fail-on {text!r}: a time is in ms or s, not %")
            value = value * 1000.0 if unit == "s" else value
            if metric.startswith("p") and not 0 < float(metric[1:]) <= 100:
                raise ThresholdError(f"--fail-on {text!r}: a percentile is between p0 and p100")
        elif unit in ("ms", "s"):
            raise ThresholdError(f"--fail-on {text!r}: {metric} is not a time")
        share = metric == "errors" and unit == "%"
        return cls(
            text.strip(), m["name"] or "all", metric, m["op"], value / 100.0 if share else value, share
        )

    def measure(self, stats: RequestStats) -> float | None:
        if self.metric.startswith("p"):
            return stats.percentile(float(self.metric[1:]) / 100.0)
        values: dict[str, float | None] = {
            "avg": stats.avg_ms,
            "min": stats.min_ms,
            "max": stats.max_ms if stats.requests else None,
            "errors": stats.error_share if self.share else float(stats.failures),
            "rps": stats.rps,
            "requests": float(stats.requests),
        }
        return values[self.metric]

    def judge(self, stats: dict[str, RequestStats]) -> ThresholdResult:
        entry = stats.get(self.name)
        if entry is None or entry.requests == 0:
            # Nothing measured is not a pass for a lower bound (rps<, requests<), nor for a time.
            lower_bound = self.op in ("<", "<=") and self.metric in ("rps", "requests")
            status = "crossed" if lower_bound else "unknown"
            return ThresholdResult(self, None, status, f"no {self.name!r} request was made")
        value = self.measure(entry)
        if value is None:
            return ThresholdResult(self, None, "unknown", f"{self.metric} of {self.name!r} not measured")
        crossed = _OPS[self.op](value, self.limit)
        shown = f"{value * 100:.2f}%" if self.share else f"{value:g}"
        return ThresholdResult(
            self,
            value,
            "crossed" if crossed else "held",
            f"{self.name} {self.metric} = {shown} ({entry.requests} requests)",
        )


@dataclass(frozen=True)
class ThresholdResult:
    threshold: Threshold
    value: float | None
    status: str  # "held", "crossed", "unknown"
    summary: str

    def to_json(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold.text,
            "status": self.status,
            "value": self.value,
            "summary": self.summary,
        }
