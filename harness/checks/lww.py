"""A model check of last-writer-wins: the server's final state (read by a fresh site after
catch-up) must be what PROTOCOL.md section 2 requires of the writes in the history.

Convergence only compares replicas with each other and with the server: a server that lets an
older value win (applies to one database not serialised: read versions, await, write) still
converges, on the wrong value. This check compares the server's final state with the model.

What the history can prove, and nothing more: for every cell, the final HLC is at least the
largest HLC the server acknowledged as applied (else an older value won); writes with an
unknown outcome, or refused ones with a larger HLC, may legitimately be what the server holds;
a final HLC that some change of the history carries must hold that change's value; a final HLC
no client wrote is a value from nowhere. Equal (wallTime, counter) with different site ids are
decided by the HLC's byte order (the site id), as the protocol says.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from harness.checks.convergence import (
    POLICY_PARAM,
    RecordedReplica,
    check_policy,
    final_states,
)
from harness.checks.observations import Observations
from harness.checks.registry import Param, register
from harness.checks.result import CheckResult
from harness.checks.verdict import failed, passed, unknown
from harness.checks.views import applies
from harness.history import EventKind, History
from harness.model.codec import CodecError, decode_site_id, hlc_key
from harness.model.replica import CellKey, RowKey, change_cell

EVIDENCE_LIMIT = 20


@dataclass(slots=True)
class CellModel:
    """What the history says about one cell (or one row's tombstone)."""

    acknowledged: bytes | None = None  # largest HLC proven applied
    acknowledged_at: float = 0.0
    values: dict[bytes, list[Any]] = field(default_factory=dict)  # every HLC written -> values

    def wrote(self, hlc: bytes, value: Any) -> None:
        self.values.setdefault(hlc, []).append(value)

    def ack(self, hlc: bytes, at: float) -> None:
        if self.acknowledged is None or hlc > self.acknowledged:
            self.acknowledged = hlc
        self.acknowledged_at = max(self.acknowledged_at, at)


@dataclass(slots=True)
class DatabaseModel:
    cells: dict[CellKey, CellModel] = field(default_factory=dict)
    rows: dict[RowKey, CellModel] = field(default_factory=dict)  # deletes
    acknowledged: int = 0

    def model(self, key: CellKey | RowKey) -> CellModel:
        if len(key) == 3:
            return self.rows.setdefault(key, CellModel())
        return self.cells.setdefault(key, CellModel())


def build_models(history: History) -> dict[str, DatabaseModel]:
    """Per database: every HLC written to every cell (any outcome), and the largest HLC of each
    cell proven applied."""
    models: dict[str, DatabaseModel] = {}
    for write in applies(history):
        db = models.setdefault(str(write.database_id), DatabaseModel())
        acked = write.acknowledged
        for _, change in write.all_changes():
            try:
                key, hlc = change_cell(change), hlc_key(change["hlc"])
            except (CodecError, KeyError, TypeError):
                continue
            cell = db.model(key)
            cell.wrote(hlc, change.get("value"))
            if acked:
                db.acknowledged += 1
                cell.ack(hlc, write.ack_time or write.invoked.time)
    return models


def _text(hlc: bytes | None) -> str | None:
    if hlc is None:
        return None
    wall, counter, site = int.from_bytes(hlc[:8]), int.from_bytes(hlc[8:10]), hlc[10:26].hex()
    return f"{wall}:{counter}:{site}:{int.from_bytes(hlc[26:30])}"


def run_sites(history: History) -> set[bytes]:
    """The site ids of the run's clients (from their clock and session events)."""
    sites: set[bytes] = set()
    for event in history.events:
        if event.kind in (EventKind.CLOCK, EventKind.SESSION) and event.data.get("siteId"):
            try:
                sites.add(decode_site_id(event.data["siteId"]))
            except CodecError:
                continue
    return sites


def judge_database(
    database: str,
    model: DatabaseModel,
    final: RecordedReplica,
    policy: str | None,
    other_writers: bool,
    sites: set[bytes] | None = None,
) -> tuple[list[dict[str, Any]], int, int, int]:
    """(violations, cells judged, cells left out, final values of unrecorded writers) for one
    database. A final HLC no change of the
    history carries is a value from nowhere when its site is one of the run's (`sites`); from
    another site it is a write the history did not record, allowed (its origin is not judged)."""

    foreign = 0

    def unrecorded(hlc: bytes) -> bool:
        nonlocal foreign
        if other_writers or (sites is not None and hlc[10:26] not in sites):
            foreign += 1
            return True
        return False

    server = final.replica
    at = final.event.time
    violations: list[dict[str, Any]] = []
    judged = left_out = 0

    def violation(key: tuple[str, ...], problem: str, **detail: Any) -> None:
        violations.append({"time": at, "database": database, "cell": list(key), "problem": problem} | detail)

    # tombstones: a delete proven applied leaves a tombstone at least that new
    for row, m in model.rows.items():
        if m.acknowledged is None or m.acknowledged_at > at:
            continue
        judged += 1
        kept = server.tombstones.get(row)
        if kept is None or kept < m.acknowledged:
            violation(row, "older tombstone", expected_hlc=_text(m.acknowledged), found_hlc=_text(kept))
    for row, tomb_hlc in server.tombstones.items():
        if tomb_hlc not in model.rows.get(row, CellModel()).values and not unrecorded(tomb_hlc):
            violation(row, "tombstone from nowhere", found_hlc=_text(tomb_hlc))
    # cells
    acked_cells = {k: m.acknowledged for k, m in model.cells.items() if m.acknowledged is not None}
    for key, m in model.cells.items():
        if m.acknowledged is None or m.acknowledged_at > at:
            continue
        tomb = server.tombstones.get(key[:3])
        if tomb is not None:
            if policy is None:
                left_out += 1  # a deleted row without a known policy: not judgeable
                continue
            if policy == "delete-wins":
                # the row's final visible state is "deleted" unless a column write newer than
                # the tombstone was applied, in which case it depends on the order: not judged
                if any(h > tomb for k, h in acked_cells.items() if k[:3] == key[:3]):
                    left_out += 1
                continue
            if tomb >= m.acknowledged:  # revive: covered by a newer delete
                judged += 1
                continue
        judged += 1
        held = server.cells.get(key)
        if held is None or held[0] < m.acknowledged:
            expected = m.values.get(m.acknowledged, [None])[0]
            violation(
                key,
                "older value won" if held is not None else "acknowledged value missing",
                expected_hlc=_text(m.acknowledged),
                expected=expected,
                found_hlc=_text(held[0]) if held else None,
                found=held[1] if held else "<absent>",
            )
    for key, (hlc, value) in server.cells.items():
        written = model.cells.get(key, CellModel()).values.get(hlc)
        if written is None:
            if not unrecorded(hlc):
                violation(key, "value from nowhere", found_hlc=_text(hlc), found=value)
        elif value not in written:
            violation(key, "wrong value for its HLC", found_hlc=_text(hlc), expected=written[0], found=value)
    return violations, judged, left_out, foreign


@register(
    "lww-final-state",
    "convergence",
    "the server's final state holds, per cell, the largest-HLC value it acknowledged (last writer wins)",
    excuses=(),  # no fault excuses a miss it judges
    tombstone_policy=POLICY_PARAM,
    other_writers=Param(
        False,
        "the databases may hold writes the harness did not make: a value no client wrote is then allowed",
    ),
)
def lww_final_state(history: History, obs: Observations, params: dict[str, Any]) -> CheckResult:
    name = "lww-final-state"
    policy = check_policy(params)
    models = build_models(history)
    if not any(m.acknowledged for m in models.values()):
        return unknown(name, "no change was proven applied", params)
    # Only a snapshot shows the cells as the server holds them (see final_states).
    servers = {db: r for db, r in final_states(history).items() if r.event.data.get("source") == "snapshot"}
    sites = run_sites(history)
    violations: list[dict[str, Any]] = []
    judged = left_out = dbs = foreign = 0
    for database, model in sorted(models.items()):
        final = servers.get(database)
        if final is None or not model.acknowledged:
            continue
        dbs += 1
        found, n, skipped, unrecorded = judge_database(
            database, model, final, policy, bool(params["other_writers"]), sites
        )
        violations += found
        judged += n
        left_out += skipped
        foreign += unrecorded
    note = f"; {foreign} final values from writers the history did not record" if foreign else ""
    if left_out:
        why = "tombstone policy not set" if policy is None else "order-dependent under delete-wins"
        note += f"; {left_out} cells of deleted rows not judged ({why})"
    if violations:
        return failed(
            name,
            f"{len(violations)} cells break last-writer-wins in the final state{note}",
            params,
            violations[:EVIDENCE_LIMIT],
        )
    if dbs == 0:
        return unknown(name, "no snapshot of the final state of a database with acknowledged writes", params)
    if judged == 0:
        return unknown(name, f"no acknowledged cell could be judged{note}", params)
    return passed(name, f"{judged} cells hold the last writer's value in {dbs} databases{note}", params)
