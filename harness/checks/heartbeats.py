"""Heartbeat continuity: every authenticated session hears a heartbeat at least every
k x interval, whatever the backend does (an S3 outage excuses nothing; a network fault on the
client path, a stopped process or a client that stopped reading does)."""

from __future__ import annotations

import itertools
from typing import Any

from harness.checks import capabilities as cap
from harness.checks.excuses import WITHOUT_FAILPOINTS, ExcusePolicy, excuses
from harness.checks.observations import Observations
from harness.checks.registry import Param, register
from harness.checks.result import CheckResult
from harness.checks.verdict import failed, passed, unknown, unsupported
from harness.checks.views import connections, fault_delay_s
from harness.history import History

# Heartbeats touch only memory: neither the object store nor a failpoint excuses a gap; a
# delay widens the bound instead (fault_delay_s).
HEARTBEAT_GAP = ExcusePolicy("a heartbeat gap over the bound", WITHOUT_FAILPOINTS)


@register(
    "heartbeat-continuity",
    "heartbeats",
    "no gap between heartbeats longer than factor x interval in any session, also during S3 faults",
    excuses=(HEARTBEAT_GAP,),
    interval_s=Param(None, "the target's heartbeat interval (from its profile when not given)"),
    factor=Param(2.0, "a gap over factor x interval is a violation"),
)
def heartbeat_continuity(history: History, obs: Observations, params: dict[str, Any]) -> CheckResult:
    name = "heartbeat-continuity"
    if missing := cap.missing(history, obs, cap.HEARTBEAT):
        return unsupported(name, params, missing)
    if params["interval_s"] is None:
        return unknown(name, "heartbeat interval not known (profile key heartbeat_interval_ms)", params)
    limit = float(params["interval_s"]) * float(params["factor"])
    end_of_run = history.now()
    judged = 0
    worst = 0.0
    violations: list[dict[str, Any]] = []
    for conn in connections(history):
        if conn.session_at is None:
            continue
        stop = conn.closed_at if conn.closed_at is not None else end_of_run
        beats = [m.time for m in conn.received("heartbeat")]
        marks = [conn.session_at, *beats]
        if stop - marks[-1] > limit:
            marks.append(stop)  # silence until the end counts as a gap too
        for before, after in itertools.pairwise(marks):
            gap = after - before
            if gap <= limit + fault_delay_s(history, before, after):
                worst = max(worst, gap)
                continue
            if conn.paused_during(before, after) or excuses(
                HEARTBEAT_GAP, history, obs, before, after, processes=(conn.process,)
            ):
                continue
            violations.append(
                {
                    "time": before + limit,
                    "process": conn.process,
                    "conn": conn.number,
                    "gap_s": round(gap, 3),
                    "from": before,
                }
            )
        judged += 1
    if violations:
        return failed(name, f"{len(violations)} heartbeat gaps over {limit}s", params, violations)
    if judged == 0:
        return unknown(name, "no authenticated session", params)
    return passed(name, f"{judged} sessions, longest gap {worst:.2f}s <= {limit}s", params)
