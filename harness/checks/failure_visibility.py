"""Failure visibility: when the run shows the server failed to deliver (a live session missed a
push) or dropped sessions nobody asked it to drop, an error metric or an error log line says so.
Silence about a failure is itself the failure."""

from __future__ import annotations

import re
from typing import Any

from harness.checks import capabilities as cap
from harness.checks.delivery import expected_deliveries
from harness.checks.excuses import WITHOUT_FAILPOINTS, ExcusePolicy, excuses
from harness.checks.observations import Observations
from harness.checks.prometheus import matching_series
from harness.checks.registry import Param, register
from harness.checks.result import CheckResult
from harness.checks.verdict import failed, passed, unknown, unsupported
from harness.checks.views import connections
from harness.history import History

ABNORMAL_CLOSES = (None, 1006, 1011)

# A failed send is what this judges: failpoints excuse nothing.
MISSED_PUSH = ExcusePolicy("a push missing after its bound", WITHOUT_FAILPOINTS)
DROPPED_SESSION = ExcusePolicy("a session closed abnormally", WITHOUT_FAILPOINTS)


@register(
    "failure-visibility",
    "failure-visibility",
    "when delivery visibly failed, an error metric moved (or an error was logged) afterwards",
    excuses=(MISSED_PUSH, DROPPED_SESSION),
    metric_pattern=Param(r"(?i)(error|fail)", "regex of metric names that count failures"),
    log_pattern=Param(r"(?i)(\berror\b|\bfailed\b|exception)", "regex of log lines that report a failure"),
    delivery_bound_s=Param(5.0, "a push not received within this bound counts as a failed delivery"),
    visibility_bound_s=Param(
        10.0, "the error metric must move (or the log say so) within this long of the first failure"
    ),
    injection_pattern=Param(
        r"(?i)failpoint",
        "metric series and log lines matching this record a fault being injected, not the server "
        "reporting a failure of its own: they never count as making a failure visible",
    ),
)
def failure_visibility(history: History, obs: Observations, params: dict[str, Any]) -> CheckResult:
    name = "failure-visibility"
    if missing := cap.missing(history, obs, cap.METRICS):
        return unsupported(name, params, missing)
    bound = float(params["delivery_bound_s"])
    end = history.now()
    failures: list[dict[str, Any]] = []
    for d in expected_deliveries(history):
        sent = d.apply.invoked.time
        conn = d.recipient
        if sent + bound > end or d.received_at is not None:
            continue
        if conn.closed_at is not None and conn.closed_at < sent + bound:
            continue
        if conn.paused_during(sent, sent + bound) or excuses(MISSED_PUSH, history, obs, sent, sent + bound):
            continue
        failures.append(
            {
                "time": sent,
                "kind": "missed push",
                "recipient": conn.process,
                "transactionId": d.transaction_id,
            }
        )
    for conn in connections(history):
        if conn.closed_at is None or conn.by_client or conn.close_code not in ABNORMAL_CLOSES:
            continue
        if excuses(DROPPED_SESSION, history, obs, conn.closed_at - 1.0, conn.closed_at):
            continue
        failures.append(
            {"time": conn.closed_at, "kind": f"session dropped ({conn.close_code})", "process": conn.process}
        )
    if not failures:
        return unknown(name, "no delivery failure happened, nothing had to be made visible", params)
    first_failure = min(f["time"] for f in failures)
    window_end = first_failure + float(params["delivery_bound_s"]) + float(params["visibility_bound_s"])
    pattern = str(params["metric_pattern"])
    before = [s for s in obs.metrics if s.time <= first_failure and isinstance(s.data, dict)]
    after = [s for s in obs.metrics if first_failure < s.time <= window_end and isinstance(s.data, dict)]
    if not after:
        return unknown(
            name, "no /metrics sample within the visibility bound of the first failure", params, failures
        )
    baseline = matching_series(before[-1].data, pattern) if before else {}
    final = matching_series(after[-1].data, pattern)
    injection = re.compile(str(params["injection_pattern"]))
    # A series that was already moving before any failure counts something else (bad input,
    # refused requests): its moving on proves nothing about these failures.
    earliest = matching_series(before[0].data, pattern) if before else {}
    noisy = {k for k, v in baseline.items() if v > earliest.get(k, 0.0)}
    moved = {
        k: v
        for k, v in final.items()
        if v > baseline.get(k, 0.0) and k not in noisy and not injection.search(k)
    }
    log_regex = re.compile(str(params["log_pattern"]))
    logged = [
        line.text[:200]
        for line in obs.logs
        if first_failure <= line.time <= window_end
        and log_regex.search(line.text)
        and not injection.search(line.text)
    ]
    if moved or logged:
        return passed(
            name,
            f"{len(failures)} failures, made visible ({len(moved)} error series moved, {len(logged)} log lines)",
            params,
            [{"moved": moved, "logged": logged[:5]}],
        )
    return failed(
        name, f"{len(failures)} delivery failures and no error metric moved, nothing logged", params, failures
    )
