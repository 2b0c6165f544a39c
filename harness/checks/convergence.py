"""Convergence: clients that have caught up agree with each other and with the server's state
(read at the end through get_changes or a snapshot). Cells whose own-write outcome a client
does not know are left out of its comparison."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.checks.observations import Observations
from harness.checks.registry import Param, register
from harness.checks.result import CheckResult
from harness.checks.verdict import failed, passed, unknown
from harness.checks.views import applies
from harness.history import Event, EventKind, History
from harness.model.codec import hlc_key
from harness.model.replica import CellKey, Replica, change_cell

SERVER_SOURCES = ("server", "snapshot")


@dataclass(slots=True)
class RecordedReplica:
    event: Event
    replica: Replica
    uncertain: set[tuple[str, ...]]

    @property
    def database_id(self) -> str:
        return str(self.event.data.get("databaseId"))

    @property
    def is_server(self) -> bool:
        return self.event.data.get("source") in SERVER_SOURCES


def recorded_replicas(history: History, after: float = float("-inf")) -> list[RecordedReplica]:
    """The last caught-up replica of each process (and each server read), recorded after `after`."""
    latest: dict[tuple[str, bool], Event] = {}
    for event in history.events:
        if event.kind != EventKind.REPLICA or not event.data.get("caught_up") or event.time < after:
            continue
        latest[(event.process, event.data.get("source") in SERVER_SOURCES)] = event
    return [
        RecordedReplica(
            e,
            Replica.from_json(e.data.get("state") or {}),
            {tuple(k) for k in e.data.get("uncertain") or []},
        )
        for e in sorted(latest.values(), key=lambda e: e.index)
    ]


TOMBSTONE_POLICIES = ("revive", "delete-wins")
POLICY_PARAM = Param(
    None,
    "the target's tombstone policy, revive or delete-wins (the runner fills it from the target "
    "profile); unset: deleted rows are not judged",
)


def check_policy(params: dict[str, Any]) -> str | None:
    policy = params.get("tombstone_policy")
    if policy is not None and policy not in TOMBSTONE_POLICIES:
        raise ValueError(f"tombstone_policy must be revive or delete-wins, not {policy!r}")
    return policy


def acknowledged_cells(history: History) -> dict[str, dict[CellKey, bytes]]:
    """Per database, the newest HLC of each cell that a column change proven applied wrote:
    what a delete-wins judgement needs to see order-dependent rows."""
    out: dict[str, dict[CellKey, bytes]] = {}
    for write in applies(history):
        for _, change in write.acknowledged_changes:
            if change.get("type") == "delete":
                continue
            key = change_cell(change)
            hlc = hlc_key(change["hlc"])
            cells = out.setdefault(str(write.database_id), {})
            if len(key) == 4 and cells.get(key, b"") < hlc:
                cells[key] = hlc
    return out


@dataclass(slots=True)
class Comparison:
    differences: list[dict[str, Any]]
    cells: int  # visible cells compared
    rows_left_out: int  # deleted rows the policy could not decide


def final_states(history: History) -> dict[str, RecordedReplica]:
    """Each database's final server state: a snapshot read where there is one (it shows the
    cells as the server holds them), else the get_changes read. A change log replays every
    applied change, so a reader that merges it by HLC looks right even when the server's cells
    ended with an older value; only the snapshot shows what the cells hold."""
    out: dict[str, RecordedReplica] = {}
    for rec in recorded_replicas(history):
        if not rec.is_server:
            continue
        held = out.get(rec.database_id)
        if (
            held is None
            or rec.event.data.get("source") == "snapshot"
            or held.event.data.get("source") != "snapshot"
        ):
            out[rec.database_id] = rec
    return out


def diff(
    a: RecordedReplica,
    b: RecordedReplica,
    limit: int = 10,
    policy: str | None = "revive",
    known_applied: dict[CellKey, bytes] | None = None,
) -> list[dict[str, Any]]:
    return compare(a, b, limit, policy, known_applied).differences


def compare(
    a: RecordedReplica,
    b: RecordedReplica,
    limit: int = 10,
    policy: str | None = "revive",
    known_applied: dict[CellKey, bytes] | None = None,
) -> Comparison:
    """The visible states of two replicas under the policy; rows either replica cannot
    decide (and uncertain cells) are left out of both."""
    undecided = a.replica.undecidable_rows(policy, known_applied) | b.replica.undecidable_rows(
        policy, known_applied
    )
    exclude: set[tuple[str, ...]] = a.uncertain | b.uncertain | set(undecided)
    va = a.replica.visible(exclude, policy, known_applied)
    vb = b.replica.visible(exclude, policy, known_applied)
    out = []
    for key in sorted(set(va) | set(vb)):
        if va.get(key, "<absent>") != vb.get(key, "<absent>"):
            out.append(
                {
                    "cell": list(key),
                    a.event.process: va.get(key, "<absent>"),
                    b.event.process: vb.get(key, "<absent>"),
                }
            )
            if len(out) >= limit:
                break
    return Comparison(out, len(set(va) | set(vb)), len(undecided))


@register(
    "convergence",
    "convergence",
    "caught-up replicas agree with each other and with the server's final state",
    excuses=(),  # no fault excuses a miss it judges
    after_quiescence=Param(True, "only judge replicas recorded after the last write of their database ended"),
    tombstone_policy=POLICY_PARAM,
)
def convergence(history: History, obs: Observations, params: dict[str, Any]) -> CheckResult:
    name = "convergence"
    policy = check_policy(params)
    last_write: dict[str, float] = {}
    for w in applies(history):
        end = w.ack_time if w.ack_time is not None else w.invoked.time
        last_write[str(w.database_id)] = max(last_write.get(str(w.database_id), 0.0), end)
    known = acknowledged_cells(history) if policy == "delete-wins" else {}
    by_db: dict[str, list[RecordedReplica]] = {}
    for rec in recorded_replicas(history):
        if params["after_quiescence"] and rec.event.time < last_write.get(rec.database_id, float("-inf")):
            continue
        by_db.setdefault(rec.database_id, []).append(rec)
    compared = cells = left_out = 0
    violations: list[dict[str, Any]] = []
    for database, recs in by_db.items():
        if len(recs) < 2:
            continue
        reference = next((r for r in recs if r.is_server), recs[0])
        for other in recs:
            if other is reference:
                continue
            compared += 1
            result = compare(reference, other, 10, policy, known.get(database))
            cells += result.cells
            left_out = max(left_out, result.rows_left_out)
            if result.differences:
                violations.append(
                    {
                        "time": other.event.time,
                        "database": database,
                        "reference": reference.event.process,
                        "replica": other.event.process,
                        "differences": result.differences,
                    }
                )
    note = ""
    if left_out:
        why = "tombstone policy not set" if policy is None else "order-dependent under delete-wins"
        note = f"; {left_out} deleted rows not compared ({why})"
    if violations:
        return failed(name, f"{len(violations)} of {compared} replicas disagree{note}", params, violations)
    if compared == 0:
        return unknown(name, "fewer than two caught-up replicas of any database to compare", params)
    if cells == 0:
        return unknown(name, f"{compared} replica comparisons, but no visible cell to compare{note}", params)
    return passed(name, f"{compared} replica comparisons agree ({cells} cells){note}", params)
