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
from harness.client.recorder import EventKind
from harness.client.replica import Replica
from harness.history import Event, History

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


def diff(a: RecordedReplica, b: RecordedReplica, limit: int = 10) -> list[dict[str, Any]]:
    exclude = a.uncertain | b.uncertain
    va, vb = a.replica.visible(exclude), b.replica.visible(exclude)
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
    return out


@register(
    "convergence",
    "convergence",
    "caught-up replicas agree with each other and with the server's final state",
    after_quiescence=Param(True, "only judge replicas recorded after the last write of their database ended"),
)
def convergence(history: History, obs: Observations, params: dict[str, Any]) -> CheckResult:
    name = "convergence"
    last_write: dict[str, float] = {}
    for w in applies(history):
        end = w.ack_time if w.ack_time is not None else w.invoked.time
        last_write[str(w.database_id)] = max(last_write.get(str(w.database_id), 0.0), end)
    by_db: dict[str, list[RecordedReplica]] = {}
    for rec in recorded_replicas(history):
        if params["after_quiescence"] and rec.event.time < last_write.get(rec.database_id, float("-inf")):
            continue
        by_db.setdefault(rec.database_id, []).append(rec)
    compared = 0
    violations: list[dict[str, Any]] = []
    for database, recs in by_db.items():
        if len(recs) < 2:
            continue
        reference = next((r for r in recs if r.is_server), recs[0])
        for other in recs:
            if other is reference:
                continue
            compared += 1
            differences = diff(reference, other)
            if differences:
                violations.append(
                    {
                        "time": other.event.time,
                        "database": database,
                        "reference": reference.event.process,
                        "replica": other.event.process,
                        "differences": differences,
                    }
                )
    if violations:
        return failed(name, f"{len(violations)} of {compared} replicas disagree", params, violations)
    if compared == 0:
        return unknown(name, "fewer than two caught-up replicas of any database to compare", params)
    return passed(name, f"{compared} replica comparisons agree", params)
