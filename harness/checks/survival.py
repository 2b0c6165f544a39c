"""Survival: the process stays alive through faults unless the harness kills it, and once a
fault is over the next attempts work; outside faults, requests do not fail on the server."""

from __future__ import annotations

from typing import Any

from harness.checks.acceptance import HARNESS_ENDED, deliberate, error_answer
from harness.checks.excuses import (
    DEFAULT_EXCUSED,
    FAILPOINT,
    NETWORK,
    PROCESS,
    S3,
    UNKNOWN,
    ExcusePolicy,
    excuses,
)
from harness.checks.observations import Observations
from harness.checks.registry import Param, register
from harness.checks.result import CheckResult
from harness.checks.verdict import failed, passed, unknown
from harness.history import History, Op, OpName

WORK_OPS = (
    OpName.HANDSHAKE,
    OpName.APPLY,
    OpName.GET_CHANGES,
    OpName.HTTP_APPLY,
    OpName.HTTP_GET_CHANGES,
    OpName.PING,
)

# A request overlapping another fault proves nothing about recovery from this one.
DISTURBED_PROOF = ExcusePolicy(
    "a request after a fault's recovery that another fault overlaps (not judged)", DEFAULT_EXCUSED | {S3}
)
# A slowed code path (failpoint in delay mode, latency) is no reason to fail a request.
FAILED_REQUEST = ExcusePolicy(
    "a request answered with an error", frozenset({NETWORK, PROCESS, UNKNOWN, FAILPOINT, S3})
)


def _served(completed: Op) -> bool:
    """The server did the work: an ok answer carrying no rejection. A refusal of a valid
    request (any error code, a 4xx or 5xx) is no proof the server works: a server that refuses
    everything would otherwise survive every fault."""
    return completed.type == "ok" and error_answer(completed) is None


@register(
    "survival",
    "survival",
    "the process never dies on its own, and the first attempts after each fault ends succeed",
    excuses=(DISTURBED_PROOF,),
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
    skip = deliberate(history)  # probes meant to be refused say nothing about recovery
    pairs = [(i, c) for i, c in history.pairs() if i.op_id not in skip]
    for window in history.faults:
        if window.end is None:
            continue
        after = [
            (i, c)
            for i, c in pairs
            if i.f in WORK_OPS
            and window.end + recovery <= i.time
            and c is not None
            and c.error not in HARNESS_ENDED  # the client left on purpose: no attempt
            and not excuses(DISTURBED_PROOF, history, obs, i.time, c.time)
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
    "outside faults (and a grace after them), no valid request is answered with an error, whatever its code",
    excuses=(FAILED_REQUEST,),
    grace_s=Param(1.0, "requests this close to a fault or process action are excused"),
)
def no_spurious_failures(history: History, obs: Observations, params: dict[str, Any]) -> CheckResult:
    name = "no-spurious-failures"
    grace = float(params["grace_s"])
    judged = 0
    violations: list[dict[str, Any]] = []
    skip = deliberate(history)
    for invoked, completed in history.pairs():
        if completed is None or invoked.op_id in skip:
            continue
        judged += 1
        error = error_answer(completed)
        if error is not None and not excuses(
            FAILED_REQUEST, history, obs, invoked.time - grace, completed.time + grace
        ):
            violations.append(
                {
                    "time": completed.time,
                    "process": invoked.process,
                    "op": invoked.f,
                    "error": error["code"],
                    "status": error["status"],
                }
            )
    if violations:
        return failed(
            name,
            f"{len(violations)} valid requests answered with an error with no fault in force",
            params,
            violations,
        )
    if judged == 0:
        return unknown(name, "no valid request was made", params)
    return passed(name, f"{judged} valid requests, none answered with an error outside faults", params)
