"""Degradation announced: an object-store outage is told to the sessions (BACKEND_UNAVAILABLE
within its bound of the outage's start, BACKEND_RECOVERED within its bound of its end), and
heartbeats say `degraded` in between."""

from __future__ import annotations

from typing import Any

from harness.checks import capabilities as cap
from harness.checks.excuses import NETWORK, ExcusePolicy, excuses
from harness.checks.observations import Observations
from harness.checks.registry import Param, register
from harness.checks.result import CheckResult
from harness.checks.verdict import failed, passed, unknown, unsupported
from harness.checks.views import backend_windows, connections
from harness.history import FaultWindow, History

# A notice can be late only on the way: a fault on the session's own link that holds messages
# back (slicer, bandwidth, a reset; not a plain latency, which delays by a known amount, nor
# one on the S3 path, which is the outage itself) may keep an announcement in flight past its
# bound. Only that session's miss is excused; sessions on clean links are still judged.
LINK_HELD_BACK = ExcusePolicy(
    "a notice missing while the session's own link held messages back", frozenset({NETWORK})
)


def _could_notice(window: FaultWindow, obs: Observations, announce_s: float) -> bool:
    """A server learns of an outage from a request that fails: when the harness's S3 fault layer
    (which sees every request that reaches the store) recorded none from the target within the
    announcement bound — it was idle, or paused — nothing could have told it, and demanding an
    announcement would be a false alarm. Only for faults of that layer: a network fault on the
    S3 path stops requests before the layer, so none recorded proves nothing there."""
    if window.family != "s3" or not obs.s3_owned:
        return True
    horizon = window.start + announce_s
    if window.end is not None:
        horizon = min(horizon, window.end)
    return any(window.start <= r.time <= horizon for r in obs.s3_requests)


@register(
    "degradation-announced",
    "degradation",
    "BACKEND_UNAVAILABLE within its bound of an S3 outage, BACKEND_RECOVERED after, heartbeats degraded between",
    excuses=(LINK_HELD_BACK,),
    announce_bound_s=Param(10.0, "longest time from the outage's start to BACKEND_UNAVAILABLE"),
    recover_bound_s=Param(15.0, "longest time from the outage's end to BACKEND_RECOVERED"),
    heartbeat_interval_s=Param(
        None, "heartbeats may lag a transition by this much (the target's interval, from its profile)"
    ),
)
def degradation_announced(history: History, obs: Observations, params: dict[str, Any]) -> CheckResult:
    name = "degradation-announced"
    windows = backend_windows(history)
    if not windows:
        return unknown(name, "no object-store fault in this run", params)
    if missing := cap.missing(history, obs, cap.NOTICE):
        return unsupported(name, params, missing)
    announce, recover = float(params["announce_bound_s"]), float(params["recover_bound_s"])
    # Without the target's interval the heartbeats' `backend` field is not judged (a beat may
    # lag the transition by one interval); the announcements still are.
    lag = None if params["heartbeat_interval_s"] is None else float(params["heartbeat_interval_s"])
    end = history.now()
    judged = 0
    violations: list[dict[str, Any]] = []
    unnoticeable: list[int] = []
    for window in windows:
        if not _could_notice(window, obs, announce):
            unnoticeable.append(window.id)
            continue
        for conn in connections(history):
            notices = conn.received("notice")
            down = [
                m
                for m in notices
                if m.payload.get("code") == "BACKEND_UNAVAILABLE" and m.time >= window.start
            ]
            if window.start + announce <= end and conn.live_over(window.start, window.start + announce):
                judged += 1
                told = [m for m in down if m.time <= window.start + announce]
                held_back = excuses(
                    LINK_HELD_BACK, history, obs, window.start, window.start + announce, [conn.process]
                )
                if not told and not held_back:
                    violations.append(
                        {
                            "time": window.start + announce,
                            "process": conn.process,
                            "fault": window.id,
                            "problem": f"no BACKEND_UNAVAILABLE within {announce}s",
                        }
                    )
            if (
                window.end is None
                or window.end + recover > end
                or not conn.live_over(window.end, window.end + recover)
            ):
                continue
            judged += 1
            back = [
                m
                for m in notices
                if m.payload.get("code") == "BACKEND_RECOVERED"
                and window.end <= m.time <= window.end + recover
            ]
            if not back and not excuses(
                LINK_HELD_BACK, history, obs, window.end, window.end + recover, [conn.process]
            ):
                violations.append(
                    {
                        "time": window.end + recover,
                        "process": conn.process,
                        "fault": window.id,
                        "problem": f"no BACKEND_RECOVERED within {recover}s",
                    }
                )
            if down and back and lag is not None and cap.has(history, obs, cap.HEARTBEAT):
                for beat in conn.received("heartbeat"):
                    if (
                        down[0].time + lag < beat.time < back[0].time
                        and beat.payload.get("backend") != "degraded"
                    ):
                        violations.append(
                            {
                                "time": beat.time,
                                "process": conn.process,
                                "fault": window.id,
                                "problem": f"heartbeat says backend {beat.payload.get('backend')!r} during the outage",
                            }
                        )
                        break
    if violations:
        return failed(name, f"{len(violations)} outage announcements missing or wrong", params, violations)
    blind = (
        f"; {len(unnoticeable)} outage(s) not judged: the target sent the object store no request "
        f"within {announce}s of their start (it could not have noticed)"
        if unnoticeable
        else ""
    )
    if judged == 0:
        return unknown(name, "no session was connected across an outage's start or end" + blind, params)
    note = (
        ""
        if lag is not None
        else "; heartbeats not judged: heartbeat interval not known (profile key heartbeat_interval_ms)"
    ) + blind
    return passed(name, f"{judged} outage transitions announced within bounds{note}", params)
