"""Broadcast: every live session receives every write of the other sites (delivery), in `seq`
order with no number skipped or repeated (ordered-seq). seq is per database: a session misses
exactly the numbers of its own site's writes on its database, and a heartbeat's seq (the
database's latest) is never behind what was pushed, nor ahead of a number never pushed."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from harness.checks import capabilities as cap
from harness.checks.delivery import expected_deliveries
from harness.checks.excuses import DEFAULT_EXCUSED, WITHOUT_FAILPOINTS, ExcusePolicy, excuses
from harness.checks.observations import Observations
from harness.checks.registry import Param, register
from harness.checks.result import CheckResult
from harness.checks.verdict import failed, passed, unknown, unsupported
from harness.checks.views import Apply, Connection, applies, connections, fault_delay_s
from harness.history import History, Message

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


@dataclass(slots=True)
class OwnWrites:
    """The excuse of ordered-seq, in one place: the session's own site's applies on its own
    database are broadcast to the others only, so their seq numbers are missing here. A write
    whose apply_result carries its seq ([ext]) explains exactly that number, whenever it was
    answered (seq numbers are unique per database, and a session's pushes may lag its site's
    HTTP writes by seconds under load); one without it (applied > 0, or unanswered: it may have
    applied) explains one number in its window."""

    writes: list[Apply]

    def explain(self, missing: set[int], lower: float, upper: float) -> set[int]:
        """The numbers of `missing` left unexplained by own writes in (lower - slack, upper)."""
        left = set(missing)
        unexplained = 0
        for w in self.writes:
            own_seq = (w.result or {}).get("seq")
            if isinstance(own_seq, int) and not isinstance(own_seq, bool):
                left.discard(own_seq)
                continue
            if not (w.invoked.time < upper and (w.ack_time is None or w.ack_time > lower - HTTP_SLACK_S)):
                continue
            if w.applied > 0 or not w.answered:
                unexplained += 1
        return set(sorted(left)[unexplained:]) if unexplained < len(left) else set()


def own_writes(conn: Connection, writes: list[Apply]) -> OwnWrites:
    """Applies of the connection's site on the connection's database (seq is per database: a
    write of the same site on another database consumes none of this database's numbers)."""
    return OwnWrites(
        [
            w
            for w in writes
            if (w.site_id == conn.site_id if conn.site_id is not None else w.process == conn.process)
            and (w.database_id is None or conn.database_id is None or w.database_id == conn.database_id)
        ]
    )


def _numbered(messages: list[Message]) -> list[Message]:
    return [
        m
        for m in messages
        if isinstance(m.payload.get("seq"), int) and not isinstance(m.payload["seq"], bool)
    ]


@register(
    "ordered-seq",
    "broadcast",
    "per connection, push seq goes +1 each time: no repeat; a gap only for the own site's writes on "
    "its database; heartbeat seq never behind what was pushed, and no number up to it never pushed",
    excuses=(),  # no fault excuses a miss it judges
)
def ordered_seq(history: History, obs: Observations, params: dict[str, Any]) -> CheckResult:
    name = "ordered-seq"
    if lacking := cap.missing(history, obs, cap.SEQ):
        return unsupported(name, params, lacking)
    writes = applies(history)
    end_of_run = history.now()
    judged = 0
    violations: list[dict[str, Any]] = []
    for conn in connections(history):
        pushes = _numbered(conn.received("push_changes"))
        beats = _numbered(conn.received("heartbeat"))
        told = [m.index for m in conn.received("notice") if m.payload.get("code") == "SLOW_CLIENT"]
        if told:  # a session told it is being dropped may miss what follows
            pushes = [m for m in pushes if m.index < told[0]]
            beats = [m for m in beats if m.index < told[0]]
        if len(pushes) < 2 and not (beats and (pushes or len(beats) >= 2)):
            continue
        judged += 1
        own = own_writes(conn, writes)

        def where(message: Message, conn: Connection = conn) -> dict[str, Any]:
            return {
                "time": message.time,
                "process": conn.process,
                "conn": conn.number,
                "index": message.index,
            }

        for before, after in itertools.pairwise(pushes):
            a, b = int(before.payload["seq"]), int(after.payload["seq"])
            if b <= a:
                violations.append(where(after) | {"problem": f"seq {b} after {a}: repeated or out of order"})
                continue
            unexplained = own.explain(set(range(a + 1, b)), before.time, after.time)
            if unexplained:
                violations.append(
                    where(after)
                    | {
                        "problem": f"seq jumped {a} -> {b}",
                        "unexplained_numbers": sorted(unexplained)[:20],
                    }
                )
        # heartbeats: `seq` is the latest broadcast seq of the session's database (PROTOCOL 3.2)
        numbered = sorted([*pushes, *beats], key=lambda m: m.index)
        if not beats:
            continue
        first = numbered[0]
        base = int(first.payload["seq"]) - (1 if first.type == "push_changes" else 0)
        highest_pushed: int | None = None
        highest_beat: int | None = None
        for message in numbered:
            seq = int(message.payload["seq"])
            if message.type == "push_changes":
                highest_pushed = seq if highest_pushed is None else max(highest_pushed, seq)
                continue
            if highest_pushed is not None and seq < highest_pushed:
                violations.append(
                    where(message)
                    | {"problem": f"heartbeat seq {seq} behind seq {highest_pushed} already pushed"}
                )
            if highest_beat is not None and seq < highest_beat:
                violations.append(
                    where(message) | {"problem": f"heartbeat seq {seq} after heartbeat seq {highest_beat}"}
                )
            highest_beat = seq if highest_beat is None else max(highest_beat, seq)
        # every number up to a heartbeat's seq reaches the session, unless it is its own write
        stop = conn.closed_at if conn.closed_at is not None else end_of_run
        settled = [m for m in beats if m.time + HTTP_SLACK_S <= stop]
        if not settled:
            continue
        last = max(settled, key=lambda m: int(m.payload["seq"]))
        pushed = {int(m.payload["seq"]) for m in pushes}
        never = {n for n in range(base + 1, int(last.payload["seq"]) + 1) if n not in pushed}
        unexplained = own.explain(never, first.time, stop)
        if unexplained:
            violations.append(
                where(last)
                | {
                    "problem": f"heartbeat seq {last.payload['seq']}: numbers never pushed to this session",
                    "unexplained_numbers": sorted(unexplained)[:20],
                }
            )
    if violations:
        return failed(
            name, f"{len(violations)} seq gaps, repeats or heartbeat seq mismatches", params, violations
        )
    if judged == 0:
        return unknown(name, "no connection received two numbered pushes or heartbeats", params)
    return passed(name, f"{judged} connections received pushes in seq order", params)
