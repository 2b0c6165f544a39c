"""Acknowledged writes survive: every change the server acknowledged is visible afterwards in
the server's state (final get_changes / snapshot, after restarts) and, when the harness owns
the object store, in S3 (no-lost-write); and in S3 after a graceful shutdown or once an
outage is over (durability)."""

from __future__ import annotations

from typing import Any

from harness.checks.convergence import POLICY_PARAM, check_policy, recorded_replicas
from harness.checks.observations import Observations
from harness.checks.registry import Param, register
from harness.checks.result import CheckResult
from harness.checks.s3_contents import replicas_from_objects
from harness.checks.shutdown import graceful_stops
from harness.checks.verdict import failed, passed, unknown
from harness.checks.views import Apply, applies, backend_windows
from harness.history import History
from harness.model.replica import Replica, change_cell


def owed_to_s3(history: History, obs: Observations, flush_bound_s: float) -> list[Apply]:
    """The acknowledged writes the S3 listing must hold: after a graceful shutdown that came
    before the listing, every one acknowledged before it; otherwise those whose flush bound
    has passed at the listing, counted from the end of any S3 outage that held them back."""
    listed_at = obs.s3_listed_at if obs.s3_listed_at is not None else history.now()
    stops = [t for t in graceful_stops(history, obs) if t <= listed_at]
    outages = backend_windows(history)
    owed = []
    for write in applies(history):
        if not write.acknowledged or write.ack_time is None:
            continue
        if stops and write.ack_time <= max(stops):
            owed.append(write)
            continue
        held_until = max(
            [write.ack_time]
            + [
                w.end if w.end is not None else float("inf")
                for w in outages
                if w.start <= write.ack_time + flush_bound_s
            ]
        )
        if held_until + flush_bound_s <= listed_at:
            owed.append(write)
    return owed


def _missing(
    write: Apply, replica: Replica, policy: str | None = "revive", tally: dict[str, int] | None = None
) -> list[dict[str, Any]]:
    """The changes proven applied that `replica` lacks. A column change whose row holds a
    tombstone is judged only under revive: with delete-wins the delete may have removed it
    (the outcome depends on the order), and with no policy nothing is known; those are
    counted in `tally["skipped"]`, the changes looked at in `tally["examined"]`."""
    out = []
    counts = tally if tally is not None else {}
    for change_set, change in write.acknowledged_changes:
        counts["examined"] = counts.get("examined", 0) + 1
        if replica.covers(change):
            continue
        key = change_cell(change)
        if len(key) == 4 and key[:3] in replica.tombstones and policy != "revive":
            counts["skipped"] = counts.get("skipped", 0) + 1
            continue
        out.append(
            {
                "time": write.ack_time or write.invoked.time,
                "writer": write.process,
                "transactionId": change_set.get("transactionId"),
                "change": {k: change.get(k) for k in ("type", "table", "pk", "column", "hlc")},
            }
        )
    return out


@register(
    "no-lost-write",
    "writes",
    "every acknowledged change is visible in the server's final state (and in S3 when owned)",
    excuses=(),  # no fault excuses a miss it judges
    check_s3=Param(
        True, "also look for each acknowledged change in the object store when the harness owns it"
    ),
    flush_bound_s=Param(10.0, "S3 may lag an acknowledgement (or an outage's end) by this much"),
    tombstone_policy=POLICY_PARAM,
)
def no_lost_write(history: History, obs: Observations, params: dict[str, Any]) -> CheckResult:
    name = "no-lost-write"
    policy = check_policy(params)
    writes = [w for w in applies(history) if w.acknowledged]
    refused = sum(len(w.refused) for w in applies(history))
    if not writes:
        extra = f" ({refused} changes refused: skipped or conflicting)" if refused else ""
        return unknown(name, f"no write was proven applied{extra}", params)
    tally = {"examined": 0, "skipped": 0}
    servers = {r.database_id: r for r in recorded_replicas(history) if r.is_server}
    s3: dict[str, Replica] = {}
    owed: set[int] = set()
    if params["check_s3"] and obs.s3_owned and obs.s3_objects is not None:
        s3, _ = replicas_from_objects(obs.s3_objects)
        owed = {w.invoked.op_id for w in owed_to_s3(history, obs, float(params["flush_bound_s"]))}
    judged = 0
    violations: list[dict[str, Any]] = []
    for write in writes:
        final = servers.get(str(write.database_id))
        if final is not None and final.event.time >= (write.ack_time or 0.0):
            judged += 1
            violations += [
                v | {"where": "server state"} for v in _missing(write, final.replica, policy, tally)
            ]
        if s3 and write.invoked.op_id in owed:
            judged += 1
            violations += [
                v | {"where": "s3"}
                for v in _missing(write, s3.get(str(write.database_id), Replica()), policy, tally)
            ]
    notes = f"; {refused} refused changes not owed" if refused else ""
    if tally["skipped"]:
        why = "tombstone policy not set" if policy is None else "order-dependent under delete-wins"
        notes += f"; {tally['skipped']} changes under a tombstone not judged ({why})"
    if violations:
        return failed(name, f"{len(violations)} acknowledged changes lost{notes}", params, violations)
    if judged == 0:
        return unknown(name, "no final server state (nor S3 listing) to look for the writes in", params)
    if tally["examined"] == tally["skipped"]:
        return unknown(name, f"no acknowledged change could be judged{notes}", params)
    return passed(name, f"{len(writes)} acknowledged writes all visible afterwards{notes}", params)


@register(
    "durability",
    "writes",
    "acknowledged changes reach S3: all of them after a graceful shutdown or once an S3 outage is over",
    excuses=(),  # no fault excuses a miss it judges
    flush_bound_s=Param(
        10.0, "S3 may lag an acknowledgement (or the end of the outage that held it) by this much"
    ),
    tombstone_policy=POLICY_PARAM,
)
def durability(history: History, obs: Observations, params: dict[str, Any]) -> CheckResult:
    name = "durability"
    if not obs.s3_owned or obs.s3_objects is None:
        return unknown(name, "the harness does not own the object store: contents unknown", params)
    if any(w.end is None for w in backend_windows(history)):
        return unknown(name, "an S3 outage was still in force at the end", params)
    writes = owed_to_s3(history, obs, float(params["flush_bound_s"]))
    if not writes:
        return unknown(name, "no acknowledged write old enough to be judged", params)
    s3, unreadable = replicas_from_objects(obs.s3_objects)
    violations: list[dict[str, Any]] = []
    for write in writes:
        violations += _missing(write, s3.get(str(write.database_id), Replica()), check_policy(params))
    evidence_extra = [{"unreadable_objects": unreadable[:20]}] if unreadable else []
    if violations:
        return failed(
            name,
            f"{len(violations)} acknowledged changes missing from S3",
            params,
            violations + [{"time": history.now(), **e} for e in evidence_extra],
        )
    return passed(
        name,
        f"{len(writes)} acknowledged writes all in S3 ({len(obs.s3_objects)} objects)",
        params,
        evidence_extra,
    )
