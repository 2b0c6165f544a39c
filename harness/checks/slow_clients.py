"""A client that stops reading: it is told before it is dropped (SLOW_CLIENT, then close 1013),
and the other clients' deliveries stay fast while it stalls."""

from __future__ import annotations

from typing import Any

from harness.checks import capabilities as cap
from harness.checks.delivery import expected_deliveries
from harness.checks.excuses import DEFAULT_EXCUSED, ExcusePolicy, excuses
from harness.checks.observations import Observations
from harness.checks.registry import Param, register
from harness.checks.result import CheckResult
from harness.checks.verdict import failed, passed, unknown, unsupported
from harness.checks.views import connections
from harness.history import History

TRY_AGAIN_LATER = 1013

NOT_STALLED = ExcusePolicy("a paused reader's close counted as a stall", DEFAULT_EXCUSED)
SILENT_READER = ExcusePolicy("a reader that heard nothing while others did", DEFAULT_EXCUSED)
LATE_FAST_CLIENT = ExcusePolicy("a fast client's late delivery", DEFAULT_EXCUSED)


@register(
    "slow-client-notification",
    "slow-clients",
    "a session the server drops for being slow gets a SLOW_CLIENT notice before its 1013 close",
    excuses=(NOT_STALLED, SILENT_READER),
    silence_s=Param(
        5.0, "a stalled session that hears nothing this long after resuming, while others do, was dropped"
    ),
)
def slow_client_notification(history: History, obs: Observations, params: dict[str, Any]) -> CheckResult:
    name = "slow-client-notification"
    if missing := cap.missing(history, obs, cap.NOTICE):
        return unsupported(name, params, missing)
    conns = connections(history)
    silence = float(params["silence_s"])
    end = history.now()
    judged = 0
    violations: list[dict[str, Any]] = []
    for conn in conns:
        if not conn.paused and conn.close_code != TRY_AGAIN_LATER:
            continue
        notices = [m for m in conn.received("notice") if m.payload.get("code") == "SLOW_CLIENT"]
        where = {"process": conn.process, "conn": conn.number, "close_code": conn.close_code}
        if conn.closed_at is not None and not conn.by_client:
            stalled = bool(conn.paused) and not excuses(
                NOT_STALLED, history, obs, conn.paused[0][0], conn.closed_at
            )
            if conn.close_code != TRY_AGAIN_LATER and not stalled:
                continue
            judged += 1
            where["time"] = conn.closed_at
            if not notices:
                violations.append(where | {"problem": "dropped while slow without a SLOW_CLIENT notice"})
            elif conn.close_code != TRY_AGAIN_LATER:
                violations.append(
                    where | {"problem": f"SLOW_CLIENT notice but close code {conn.close_code}, not 1013"}
                )
            continue
        # Still open from the server's side, as far as the client knows: was it abandoned?
        resumed = [p1 for _, p1 in conn.paused if p1 is not None]
        if not resumed or notices:
            continue
        quiet_from = max([resumed[-1], *(m.time for m in conn.messages)])
        quiet_to = conn.closed_at if conn.closed_at is not None else end
        others_heard = any(
            quiet_from < m.time < quiet_to
            for other in conns
            if other is not conn and other.database_id == conn.database_id
            for m in other.messages
        )
        if (
            quiet_to - quiet_from > silence
            and others_heard
            and not excuses(SILENT_READER, history, obs, quiet_from, quiet_to)
        ):
            judged += 1
            violations.append(
                where
                | {
                    "time": quiet_from + silence,
                    "problem": f"silent for {quiet_to - quiet_from:.1f}s after its stall while others heard the server",
                }
            )
    if violations:
        return failed(
            name, f"{len(violations)} of {judged} slow sessions dropped without notice", params, violations
        )
    if judged == 0:
        return unknown(name, "no session was dropped for being slow", params)
    return passed(name, f"{judged} slow sessions were told SLOW_CLIENT before the 1013 close", params)


@register(
    "fast-client-latency",
    "slow-clients",
    "while a client stalls, every other session still receives each write within the latency bound",
    excuses=(LATE_FAST_CLIENT,),
    max_latency_s=Param(2.0, "longest acceptable write-to-push delay for a reading session"),
)
def fast_client_latency(history: History, obs: Observations, params: dict[str, Any]) -> CheckResult:
    name = "fast-client-latency"
    bound = float(params["max_latency_s"])
    stalls = [p for c in connections(history) for p in c.paused]
    if not stalls:
        return unknown(name, "no client stalled", params)
    end = history.now()
    judged = 0
    worst = 0.0
    violations: list[dict[str, Any]] = []
    for delivery in expected_deliveries(history):
        sent = delivery.apply.invoked.time
        if not any(p0 <= sent <= (p1 if p1 is not None else end) for p0, p1 in stalls):
            continue
        conn = delivery.recipient
        if conn.paused_during(sent, sent + bound) or excuses(
            LATE_FAST_CLIENT, history, obs, sent, sent + bound
        ):
            continue
        latency = delivery.latency
        if latency is None and conn.closed_at is not None and conn.closed_at < sent + bound:
            continue  # left before the bound: nothing to hold against the server
        judged += 1
        if latency is not None:
            worst = max(worst, latency)
        if latency is None or latency > bound:
            violations.append(
                {
                    "time": sent + bound if latency is None else sent + latency,
                    "writer": delivery.apply.process,
                    "recipient": conn.process,
                    "transactionId": delivery.transaction_id,
                    "latency_s": latency,
                }
            )
    if violations:
        return failed(
            name,
            f"{len(violations)} of {judged} deliveries late or missing while a client stalled",
            params,
            violations,
        )
    if judged == 0:
        return unknown(name, "no write to a reading session happened while a client stalled", params)
    return passed(name, f"{judged} deliveries during stalls, worst {worst:.3f}s <= {bound}s", params)
