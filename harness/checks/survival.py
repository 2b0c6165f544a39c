"""Survival: the process stays alive through faults unless the harness kills it, and once a
fault is over the next attempts work; outside faults, requests do not fail on the server."""

from __future__ import annotations

from typing import Any

from harness.checks.observations import Observations
from harness.checks.registry import Param, register
from harness.checks.result import CheckResult
from harness.checks.verdict import failed, passed, unknown
from harness.checks.views import disturbed
from harness.client.recorder import OpName
from harness.history import History, Op

SERVER_FAULT_CODES = {
    "GET_CHANGES_ERROR",
    "APPLY_CHANGES_ERROR",
    "SNAPSHOT_ERROR",
    "GET_CHANGES_FAILED",
    "APPLY_CHANGES_FAILED",
}
WORK_OPS = (
    OpName.HANDSHAKE,
    OpName.APPLY,
    OpName.GET_CHANGES,
    OpName.HTTP_APPLY,
    OpName.HTTP_GET_CHANGES,
    OpName.PING,
)


def _served(completed: Op) -> bool:
    """The server answered sensibly: ok, or a refusal of the client's request (bad token,
    bad input, rate limit), as opposed to no answer or a server-side failure."""
    if completed.type == "ok":
        return True
    code = completed.error or ""
    return completed.type == "fail" and code.isupper() and code not in SERVER_FAULT_CODES


@register(
    "survival",
    "survival",
    "the process never dies on its own, and the first attempts after each fault ends succeed",
    recovery_s=Param(5.0, "time after a fault ends within which some attempt must succeed"),
)
def survival(history: History, obs: Observations, params: dict[str, Any]) -> CheckResult:
    name = "survival"
    violations: list[dict[str, Any]] = []
    harness_stops = obs.process_times("sigterm", "sigkill")
    for event in obs.process:
        if (
            event.kind == "exit"
            and not event.by_harness
            and not any(abs(event.time - t) < 30 and t <= event.time for t in harness_stops)
        ):
            violations.append(
                {"time": event.time, "problem": f"process exited by itself (code {event.exit_code})"}
            )
    recovery = float(params["recovery_s"])
    judged_windows = 0
    pairs = history.pairs()
    for window in history.faults:
        if window.end is None:
            continue
        after = [
            (i, c)
            for i, c in pairs
            if i.f in WORK_OPS
            and window.end + recovery <= i.time
            and c is not None
            and not disturbed(history, obs, i.time, c.time, include_backend=True)
        ]
        if not after:
            continue
        judged_windows += 1
        first_attempts = after[: max(1, len({i.process for i, _ in after}))]
        if not any(c is not None and _served(c) for _, c in first_attempts):
            violations.append(
                {
                    "time": first_attempts[-1][1].time if first_attempts[-1][1] else window.end,
                    "fault": window.id,
                    "problem": "attempts after the fault ended all failed",
                    "errors": [c.error for _, c in first_attempts if c],
                }
            )
    if violations:
        return failed(name, f"{len(violations)} survival problems", params, violations)
    if not obs.process and judged_windows == 0:
        return unknown(name, "no process lifecycle observed and no fault ended", params)
    return passed(name, f"process alive unless killed; {judged_windows} faults recovered from", params)


@register(
    "no-spurious-failures",
    "survival",
    "outside faults (and a grace after them), no request fails with a server-side error",
    grace_s=Param(1.0, "requests this close to a fault or process action are excused"),
)
def no_spurious_failures(history: History, obs: Observations, params: dict[str, Any]) -> CheckResult:
    name = "no-spurious-failures"
    grace = float(params["grace_s"])
    judged = 0
    violations: list[dict[str, Any]] = []
    for invoked, completed in history.pairs():
        if completed is None or invoked.f == OpName.SEND_RAW:
            continue
        judged += 1
        code = completed.error
        status = completed.value.get("status") if isinstance(completed.value, dict) else None
        server_fault = completed.type == "fail" and (
            code in SERVER_FAULT_CODES or (isinstance(status, int) and status >= 500)
        )
        if server_fault and not disturbed(
            history,
            obs,
            invoked.time - grace,
            completed.time + grace,
            include_backend=True,
            include_failpoint_delays=False,  # a slowed code path is no reason to fail a request
        ):
            violations.append(
                {
                    "time": completed.time,
                    "process": invoked.process,
                    "op": invoked.f,
                    "error": code,
                    "status": status,
                }
            )
    if violations:
        return failed(
            name,
            f"{len(violations)} requests failed on the server with no fault in force",
            params,
            violations,
        )
    if judged == 0:
        return unknown(name, "no request was made", params)
    return passed(name, f"{judged} requests, none failed on the server outside faults", params)
