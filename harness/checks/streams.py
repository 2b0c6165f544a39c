"""Snapshot streams: complete or honestly failed (stream completeness), and resumable.

A stream is complete when it ends with its footer / snapshot_complete and its counts agree with
what was sent. One that stops with neither and without an error is truncated; a WS one that
ends with a generic error (MESSAGE_ERROR) instead of SNAPSHOT_ERROR ended no more honestly. A stream cut by a
fault or a harness action proves nothing either way.
"""

from __future__ import annotations

from typing import Any

from harness.checks.excuses import DEFAULT_EXCUSED, WITHOUT_FAILPOINTS, ExcusePolicy, excuses
from harness.checks.observations import Observations
from harness.checks.registry import Param, register
from harness.checks.result import CheckResult
from harness.checks.verdict import failed, passed, unknown
from harness.history import History, OpName

SNAPSHOT_OPS = (OpName.SNAPSHOT, OpName.RESUME_SNAPSHOT, OpName.HTTP_SNAPSHOT)
# Endings that mean the stream stopped without footer and without error.
SILENT_ENDINGS = ("eof", "stalled", "connection_closed", "disconnected")
# A WS snapshot that fails must end with the snapshot's own error (PROTOCOL.md 3.4), or with a
# refusal any request may get. Anything else (MESSAGE_ERROR, another request's code, no code)
# tells the client nothing about its stream: it is no honest end, like a silent one.
HONEST_WS_ERRORS = frozenset(
    {"SNAPSHOT_ERROR", "INVALID_PAYLOAD", "RATE_LIMITED", "NOT_AUTHENTICATED", "NOT_AUTHORIZED"}
)
WS_SNAPSHOT_OPS = (OpName.SNAPSHOT, OpName.RESUME_SNAPSHOT)

# How the server ends a stream is what this judges, so its own failures (failpoints) excuse nothing.
CUT_STREAM = ExcusePolicy(
    "a stream ended with neither footer nor error, or a generic error (with excuse_faults)",
    WITHOUT_FAILPOINTS,
)
FAILED_RESUME = ExcusePolicy("a resume that failed with its snapshot's own error", DEFAULT_EXCUSED)


@register(
    "stream-completeness",
    "streams",
    "every snapshot stream ends with footer/snapshot_complete (counts agreeing) or with an error (SNAPSHOT_ERROR on WS)",
    excuses=(CUT_STREAM,),
    excuse_faults=Param(True, "a stream cut while a non-S3 fault or process action was in force is excused"),
)
def stream_completeness(history: History, obs: Observations, params: dict[str, Any]) -> CheckResult:
    name = "stream-completeness"
    judged = 0
    violations: list[dict[str, Any]] = []
    for invoked, completed in history.pairs():
        if invoked.f not in SNAPSHOT_OPS or completed is None or not isinstance(completed.value, dict):
            continue
        outcome = completed.value
        ended = outcome.get("ended")
        if ended in ("cut", "cancelled"):
            continue  # the client stopped reading on purpose
        where = {
            "process": invoked.process,
            "op": invoked.f,
            "op_id": invoked.op_id,
            "index": completed.index,
        }
        generic = (
            invoked.f in WS_SNAPSHOT_OPS and ended == "error" and outcome.get("code") not in HONEST_WS_ERRORS
        )
        if ended in SILENT_ENDINGS or generic:
            excused = (
                excuses(CUT_STREAM, history, obs, invoked.time, completed.time)
                if params["excuse_faults"]
                else []
            )
            if excused:
                continue
            judged += 1
            problem = (
                f"failed with {outcome.get('code')}, not the snapshot's own SNAPSHOT_ERROR"
                if generic
                else f"truncated: stream ended ({ended}) with neither footer nor error"
            )
            violations.append(
                where | {"time": completed.time, "problem": problem, "chunks": outcome.get("chunks")}
            )
            continue
        judged += 1
        problems = list(outcome.get("problems") or [])
        if problems:
            violations.append(where | {"time": completed.time, "problem": "; ".join(problems[:5])})
    if violations:
        return failed(
            name,
            f"{len(violations)} of {judged} snapshot streams incomplete or inconsistent",
            params,
            violations,
        )
    if judged == 0:
        return unknown(name, "no snapshot stream was read", params)
    return passed(name, f"{judged} snapshot streams complete or ended with an error", params)


@register(
    "snapshot-resume",
    "streams",
    "resume_snapshot continues a cut snapshot: answered with the rest, header repeating the checkpoint",
    excuses=(FAILED_RESUME,),
)
def snapshot_resume(history: History, obs: Observations, params: dict[str, Any]) -> CheckResult:
    name = "snapshot-resume"
    judged = 0
    violations: list[dict[str, Any]] = []
    for invoked, completed in history.pairs():
        if invoked.f != OpName.RESUME_SNAPSHOT or completed is None or not isinstance(completed.value, dict):
            continue
        outcome = completed.value
        # A fault may make a resume fail, but only with the snapshot's own error (or cut it).
        honest = outcome.get("ended") != "error" or outcome.get("code") in ("SNAPSHOT_ERROR", "RATE_LIMITED")
        if honest and excuses(FAILED_RESUME, history, obs, invoked.time, completed.time):
            continue
        judged += 1
        where = {
            "process": invoked.process,
            "op_id": invoked.op_id,
            "index": completed.index,
            "time": completed.time,
        }
        if outcome.get("ended") == "error":
            violations.append(where | {"problem": f"resume answered with error {outcome.get('code')}"})
        elif outcome.get("ended") != "complete":
            violations.append(where | {"problem": f"resumed stream ended {outcome.get('ended')}"})
        elif outcome.get("problems"):
            violations.append(where | {"problem": "; ".join(outcome["problems"][:5])})
    if violations:
        return failed(
            name, f"{len(violations)} of {judged} resumed snapshots did not resume", params, violations
        )
    if judged == 0:
        return unknown(name, "no snapshot was resumed", params)
    return passed(name, f"{judged} resumed snapshots completed from their checkpoints", params)
