"""Leaked resources: once every client has left and the idle timeout has passed, the target's
counts of stores, references, sessions and background tasks are back to their baseline (a
count leaks when it stays above baseline in every sample of the quiet time, not when one sample
meets a task in flight).

The baseline is the first sample, taken before any client connected (not zero: a shared server
has other users' stores and sessions). The idle timeout is the target's (profile key
`idle_store_timeout_ms`); when it is not known, or longer than the run waits, the check says
unknown rather than judge a store that is still allowed to be open."""

from __future__ import annotations

import re
from typing import Any

from harness.checks import capabilities as cap
from harness.checks.observations import Observations, Sample
from harness.checks.registry import Param, register
from harness.checks.result import CheckResult
from harness.checks.verdict import failed, passed, unknown
from harness.checks.views import connections
from harness.history import History

# Numbers that grow by nature, not leaks.
DEFAULT_IGNORE = r"(uptime|[Tt]ime|(^|\.)ts$|At$|Ms$|[Bb]ytes|memory|rss|heap|pid|port|version|[Tt]otal|seq)"


def flatten(data: Any, prefix: str = "") -> dict[str, float]:
    """Numbers in a JSON document by dotted path; a list also counts as its length."""
    out: dict[str, float] = {}
    if isinstance(data, bool):
        return out
    if isinstance(data, int | float):
        out[prefix or "value"] = float(data)
    elif isinstance(data, dict):
        for key, value in data.items():
            out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    elif isinstance(data, list):
        out[f"{prefix}.length" if prefix else "length"] = float(len(data))
        for i, value in enumerate(data):
            if isinstance(value, dict):
                for key, number in flatten(value).items():
                    out[f"{prefix}[].{key}#{i}"] = number
    return out


def _aggregate(flat: dict[str, float]) -> dict[str, float]:
    """Per-item numbers of lists (`x[].refs#3`) summed per field (`x[].refs`), since list items
    come and go and only their totals compare across samples."""
    out: dict[str, float] = {}
    for key, value in flat.items():
        base = key.split("#", 1)[0]
        out[base] = out.get(base, 0.0) + value
    return out


def _series(
    samples: list[Sample], ignore: re.Pattern[str], since: float
) -> list[tuple[float, dict[str, float]]]:
    out = []
    for sample in samples:
        if sample.time < since or sample.http_status != 200 or not isinstance(sample.data, dict):
            continue
        data = sample.data.get("data", sample.data) if "ok" in sample.data else sample.data
        flat = {k: v for k, v in _aggregate(flatten(data)).items() if not ignore.search(k)}
        out.append((sample.time, flat))
    return out


@register(
    "leaked-resources",
    "resources",
    "after clients leave and the idle timeout passes, stores/sessions/tasks return to baseline",
    excuses=(),  # no fault excuses a miss it judges
    settle_s=Param(
        None, "time after the last client left (idle timeout + margin) before counts must be back"
    ),
    max_settle_s=Param(60.0, "longest settle the run waits for; a longer idle timeout gives unknown"),
    ignore=Param(DEFAULT_IGNORE, "regex of resource paths that are not counts of live things"),
    tolerance=Param(0, "how far above baseline a count may end"),
)
def leaked_resources(history: History, obs: Observations, params: dict[str, Any]) -> CheckResult:
    name = "leaked-resources"
    conns = connections(history)
    if any(c.closed_at is None for c in conns):
        still = [c.process for c in conns if c.closed_at is None]
        return unknown(
            name, f"clients still connected at the end: {', '.join(sorted(set(still)))[:200]}", params
        )
    if params["settle_s"] is None:
        return unknown(name, "idle-store timeout not known (profile key idle_store_timeout_ms)", params)
    settle = float(params["settle_s"])
    if settle > float(params["max_settle_s"]):
        return unknown(
            name,
            f"settle time {settle:g}s (idle-store timeout + margin) is longer than the run waits "
            f"(max_settle_s {float(params['max_settle_s']):g})",
            params,
        )
    first_client = min([c.opened_at for c in conns] + [o.time for o in history.ops], default=float("inf"))
    left_at = max((c.closed_at or 0.0 for c in conns), default=0.0)
    ops_end = max((o.time for o in history.ops), default=0.0)
    quiet_from = max(left_at, ops_end) + settle
    starts = obs.process_times("start", "restart")
    since = max(starts) if starts else float("-inf")
    ignore = re.compile(str(params["ignore"]))
    sources: list[tuple[str, list[Sample]]] = [("/status", obs.status)]
    if cap.has(history, obs, cap.DEBUG_RESOURCES):
        sources.append(("/debug/resources", obs.resources))
    violations: list[dict[str, Any]] = []
    judged: list[str] = []
    no_baseline: list[str] = []
    for label, samples in sources:
        before = [s for s in _series(samples, ignore, float("-inf")) if s[0] <= first_client]
        finals = [s for s in _series(samples, ignore, since) if s[0] >= quiet_from]
        if not finals:
            continue
        if not before:
            no_baseline.append(label)
            continue
        base = before[0][1]
        final_time, final = finals[-1]
        for path, value in final.items():
            # A path missing from a sample counts as zero there (an empty list has no items).
            baseline = base.get(path, 0.0)
            judged.append(f"{label}:{path}")
            # A leak stays: a count above baseline in only some quiet samples is a live thing
            # that came and went (a heartbeat's request in flight), not one left behind.
            lowest = min(sample.get(path, 0.0) for _, sample in finals)
            if lowest > baseline + float(params["tolerance"]):
                violations.append(
                    {"time": final_time, "source": label, "path": path, "final": value, "baseline": baseline}
                )
    if violations:
        return failed(
            name, f"{len(violations)} resource counts above baseline after clients left", params, violations
        )
    if not judged:
        if no_baseline:
            return unknown(
                name, f"no {' or '.join(no_baseline)} sample before the clients connected (baseline)", params
            )
        return unknown(name, f"no /status or /debug/resources sample at or after t={quiet_from:.1f}s", params)
    return passed(name, f"{len(judged)} resource counts back to baseline", params, [{"paths": judged[:50]}])
