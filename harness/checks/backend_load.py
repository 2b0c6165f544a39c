"""The target's load on its storage: during an object-store outage it backs off (request rate
under a bound: a circuit breaker, not a retry storm), and it reads storage a bounded number of
times per event (no reload of the whole state on every event)."""

from __future__ import annotations

from typing import Any

from harness.checks import capabilities as cap
from harness.checks.observations import Observations
from harness.checks.prometheus import metric_sum
from harness.checks.registry import Param, register
from harness.checks.result import CheckResult
from harness.checks.verdict import failed, passed, unknown, unsupported
from harness.checks.views import applies, backend_windows
from harness.history import History, OpName


@register(
    "object-store-not-hammered",
    "backend-load",
    "during an S3 outage the target's S3 request rate stays under a bound",
    excuses=(),  # no fault excuses a miss it judges
    max_rate_per_s=Param(5.0, "most S3 requests per second during an outage"),
    min_window_s=Param(2.0, "shorter outages are not judged (too short for a rate)"),
)
def object_store_not_hammered(history: History, obs: Observations, params: dict[str, Any]) -> CheckResult:
    name = "object-store-not-hammered"
    if not obs.s3_owned:
        return unknown(name, "the harness does not own the object store: requests not seen", params)
    windows = backend_windows(history)
    if not windows:
        return unknown(name, "no object-store fault in this run", params)
    bound = float(params["max_rate_per_s"])
    end = history.now()
    judged = 0
    skipped: list[str] = []
    violations: list[dict[str, Any]] = []
    applied_at = [w.ack_time for w in applies(history) if w.acknowledged_changes and w.ack_time is not None]
    for window in windows:
        stop = window.end if window.end is not None else end
        duration = stop - window.start
        if duration < float(params["min_window_s"]):
            continue
        if str(window.params.get("mode", "")) == "refuse":
            skipped.append(f"fault {window.id}: refused connections never reach the layer that counts them")
            continue
        if not any(window.start <= t <= stop for t in applied_at):
            skipped.append(f"fault {window.id}: no write was applied meanwhile, nothing wanted S3")
            continue
        judged += 1
        inside = [r for r in obs.s3_requests if window.start <= r.time <= stop]
        rate = len(inside) / duration
        if rate > bound:
            violations.append(
                {
                    "time": inside[int(bound * duration)].time,
                    "fault": window.id,
                    "requests": len(inside),
                    "rate_per_s": round(rate, 2),
                }
            )
    if violations:
        return failed(name, f"S3 hammered during {len(violations)} outages", params, violations)
    if judged == 0:
        why = "; ".join(skipped) if skipped else "no outage long enough to measure a rate"
        return unknown(name, why, params)
    return passed(name, f"{judged} outages, S3 request rate under {bound}/s", params)


READ_OPS = (
    OpName.GET_CHANGES,
    OpName.SNAPSHOT,
    OpName.RESUME_SNAPSHOT,
    OpName.HTTP_GET_CHANGES,
    OpName.HTTP_SNAPSHOT,
)


@register(
    "storage-reads-bounded",
    "backend-load",
    "storage reads not explained by clients' read requests stay under a bound per client event",
    excuses=(),  # no fault excuses a miss it judges
    read_metric=Param(r"(?i)(storage|store|state).*(read|load)", "regex of counters of storage reads"),
    max_unexplained_per_event=Param(0.5, "most reads per handshake or write beyond one per read request"),
    min_events=Param(20, "fewer events than this give no verdict"),
)
def storage_reads_bounded(history: History, obs: Observations, params: dict[str, Any]) -> CheckResult:
    """A read request (get_changes page, snapshot) may cost a storage read; a write or a join
    should not reload state from storage. So the reads beyond the read requests, per write or
    handshake, stay small, whatever the size of the database."""
    name = "storage-reads-bounded"
    if missing := cap.missing(history, obs, cap.METRICS):
        return unsupported(name, params, missing)
    pattern = str(params["read_metric"])
    samples: list[tuple[float, float]] = []
    for sample in obs.metrics:
        value = metric_sum(sample.data, pattern)
        if value is not None:
            samples.append((sample.time, value))
    if len(samples) < 2:
        return unknown(name, f"fewer than two /metrics samples with a series matching {pattern!r}", params)
    (t0, v0), (t1, v1) = samples[0], samples[-1]
    handshakes = sum(
        1 for o in history.ops if o.f == OpName.HANDSHAKE and o.type == "ok" and t0 <= o.time <= t1
    )
    writes = sum(1 for w in applies(history) if w.answered and t0 <= (w.ack_time or 0.0) <= t1)
    requests = sum(1 for o in history.ops if o.type == "invoke" and o.f in READ_OPS and t0 <= o.time <= t1)
    events = handshakes + writes
    if events < int(params["min_events"]):
        return unknown(
            name, f"only {events} handshakes and writes between the first and last /metrics samples", params
        )
    unexplained = max(0.0, (v1 - v0) - requests)
    per_event = unexplained / events
    evidence = {
        "time": t1,
        "reads": v1 - v0,
        "read_requests": requests,
        "events": events,
        "unexplained_per_event": round(per_event, 3),
    }
    if per_event > float(params["max_unexplained_per_event"]):
        return failed(
            name, f"{per_event:.2f} storage reads per event beyond the read requests", params, [evidence]
        )
    return passed(name, f"{per_event:.2f} unexplained storage reads per event", params, [evidence])
