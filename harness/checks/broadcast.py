"""Broadcast: every live session receives every write of the other sites (delivery), in `seq`
order with no number skipped or repeated (ordered-seq)."""

from __future__ import annotations

import itertools
from typing import Any

from harness.checks import capabilities as cap
from harness.checks.delivery import expected_deliveries
from harness.checks.excuses import DEFAULT_EXCUSED, WITHOUT_FAILPOINTS, ExcusePolicy, excuses
from harness.checks.observations import Observations
from harness.checks.registry import Param, register
from harness.checks.result import CheckResult
from harness.checks.verdict import failed, passed, unknown, unsupported
from harness.checks.views import applies, connections, fault_delay_s
from harness.history import History

# A fault on one client's own proxy excuses only that client's deliveries (per_client).
LATE_DELIVERY = ExcusePolicy("a late or missing delivery (with excuse_faults)", WITHOUT_FAILPOINTS)
FAILPOINT_MISS = ExcusePolicy(
    "a miss while a failpoint is on, up to failpoint_misses_per_write per write", DEFAULT_EXCUSED
)


@register(
    "broadcast-delivery",
    "broadcast",
    "every session live during a write of another site receives it within the bound",
    excuses=(LATE_DELIVERY, FAILPOINT_MISS),
    delivery_bound_s=Param(5.0, "longest write-to-push delay before a push counts as missing"),
    excuse_faults=Param(True, "pairs overlapping a non-S3 fault or process action are excused"),
    failpoint_misses_per_write=Param(
        1, "recipients a write may miss while a failpoint is on (one failed send, not the rest)"
    ),
)
def broadcast_delivery(history: History, obs: Observations, params: dict[str, Any]) -> CheckResult:
    name = "broadcast-delivery"
    bound = float(params["delivery_bound_s"])
    end = history.now()
    judged = 0
    violations: list[dict[str, Any]] = []
    excused_misses: dict[int, int] = {}  # per write (op id): misses excused by a failpoint
    for delivery in expected_deliveries(history):
        sent = delivery.apply.invoked.time
        conn = delivery.recipient
        bound = float(params["delivery_bound_s"]) + fault_delay_s(
            history, sent, sent + float(params["delivery_bound_s"])
        )
        if sent + bound > end:
            continue  # the run ended before the bound: no verdict on this one
        if conn.closed_at is not None and conn.closed_at < sent + bound and delivery.received_at is None:
            continue  # it left (or was dropped) before the bound
        if conn.paused_during(sent, sent + bound):
            continue
        involved = (delivery.apply.process, conn.process)
        if params["excuse_faults"] and excuses(
            LATE_DELIVERY, history, obs, sent, sent + bound, processes=involved
        ):
            continue
        judged += 1
        latency = delivery.latency
        if latency is None or latency > bound:
            op_id = delivery.apply.invoked.op_id
            failpoint_on = (
                excuses(FAILPOINT_MISS, history, obs, sent, sent + bound, processes=involved)
                and params["excuse_faults"]
            )
            if failpoint_on and excused_misses.get(op_id, 0) < int(params["failpoint_misses_per_write"]):
                excused_misses[op_id] = excused_misses.get(op_id, 0) + 1
                continue
            violations.append(
                {
                    "time": sent + bound,
                    "writer": delivery.apply.process,
                    "recipient": conn.process,
                    "conn": conn.number,
                    "transactionId": delivery.transaction_id,
                    "latency_s": latency,
                }
            )
    if violations:
        return failed(
            name, f"{len(violations)} of {judged} expected pushes missing or late", params, violations
        )
    if judged == 0:
        return unknown(name, "no write had another live session to reach", params)
    return passed(name, f"{judged} pushes delivered within {bound}s", params)


# An HTTP write's answer does not queue behind the session's pushes: allow it to come early.
HTTP_SLACK_S = 1.0


@register(
    "ordered-seq",
    "broadcast",
    "per connection, push seq goes +1 each time: no repeat; a gap only for the session's own writes",
    excuses=(),  # no fault excuses a miss it judges
)
def ordered_seq(history: History, obs: Observations, params: dict[str, Any]) -> CheckResult:
    name = "ordered-seq"
    if lacking := cap.missing(history, obs, cap.SEQ):
        return unsupported(name, params, lacking)
    writes = applies(history)
    judged = 0
    violations: list[dict[str, Any]] = []
    for conn in connections(history):
        pushes = [m for m in conn.received("push_changes") if isinstance(m.payload.get("seq"), int)]
        told = [m.index for m in conn.received("notice") if m.payload.get("code") == "SLOW_CLIENT"]
        if told:  # a session told it is being dropped may miss what follows
            pushes = [m for m in pushes if m.index < told[0]]
        if len(pushes) < 2:
            continue
        judged += 1
        own = [w for w in writes if w.process == conn.process]
        for before, after in itertools.pairwise(pushes):
            a, b = int(before.payload["seq"]), int(after.payload["seq"])
            where = {"time": after.time, "process": conn.process, "conn": conn.number, "index": after.index}
            if b <= a:
                violations.append(where | {"problem": f"seq {b} after {a}: repeated or out of order"})
                continue
            skipped = b - a - 1
            if skipped == 0:
                continue
            # Own writes are not pushed back to their site, so their numbers are missing here:
            # exactly known when the apply_result carries its seq ([ext]), else counted.
            missing = set(range(a + 1, b))
            unexplained = 0
            for w in own:
                if not (
                    w.invoked.time < after.time
                    and (w.ack_time is None or w.ack_time > before.time - HTTP_SLACK_S)
                ):
                    continue
                own_seq = (w.result or {}).get("seq")
                if isinstance(own_seq, int) and not isinstance(own_seq, bool):
                    missing.discard(own_seq)
                elif w.applied > 0 or not w.answered:
                    unexplained += 1
            if len(missing) > unexplained:
                violations.append(
                    where
                    | {
                        "problem": f"seq jumped {a} -> {b}",
                        "unexplained_numbers": sorted(missing)[:20],
                        "own_writes_without_seq": unexplained,
                    }
                )
    if violations:
        return failed(name, f"{len(violations)} seq gaps or repeats", params, violations)
    if judged == 0:
        return unknown(name, "no connection received two numbered pushes", params)
    return passed(name, f"{judged} connections received pushes in seq order", params)
