"""Database isolation: a database's final state holds only changes that were sent to it.

Every change a client writes carries an HLC unique to its site, so a cell (or tombstone) in the
final state of database X whose HLC was sent only to database Y, never to X, came from the
wrong place: a restore that read another database's objects (PROTOCOL.md section 5: `a.b` and
`a_b` share one storage path), an authorization gap, or a store mix-up. Cells whose HLC nobody
in the history wrote are not judged here (state from before the run, or unrecorded writers).
"""

from __future__ import annotations

from typing import Any

from harness.checks.convergence import recorded_replicas
from harness.checks.observations import Observations
from harness.checks.registry import register
from harness.checks.result import CheckResult
from harness.checks.verdict import failed, passed, unknown
from harness.checks.views import applies
from harness.history import History
from harness.model.codec import CodecError, hlc_key
from harness.model.replica import change_cell

Origin = tuple[tuple[str, ...], bytes]  # (cell or row key, HLC)


def _origins(history: History) -> dict[Origin, set[str]]:
    """For each (cell, HLC) a client sent, the databases it was sent to (whatever the outcome:
    a write whose answer was lost may still have been applied)."""
    out: dict[Origin, set[str]] = {}
    for write in applies(history):
        for change_set in write.change_sets:
            for change in change_set.get("changes") or []:
                try:
                    key = (tuple(change_cell(change)), hlc_key(change["hlc"]))
                except (CodecError, KeyError, TypeError):
                    continue
                out.setdefault(key, set()).add(str(write.database_id))
    return out


@register(
    "database-isolation",
    "tenancy",
    "a database's final state holds no change that was sent only to another database (restores included)",
    excuses=(),  # no fault excuses a miss it judges
)
def database_isolation(history: History, obs: Observations, params: dict[str, Any]) -> CheckResult:
    name = "database-isolation"
    origins = _origins(history)
    databases = {db for dbs in origins.values() for db in dbs}
    finals = [r for r in recorded_replicas(history) if r.is_server]
    if len(databases) < 2:
        return unknown(name, "fewer than two databases were written: nothing could leak", params)
    if not finals:
        return unknown(name, "no final server state was read", params)
    violations: list[dict[str, Any]] = []
    judged = 0
    for final in finals:
        if final.database_id not in databases:
            continue
        judged += 1
        held: list[tuple[tuple[str, ...], bytes]] = [
            (tuple(key), hlc) for key, (hlc, _) in final.replica.cells.items()
        ]
        held += [(tuple(key), hlc) for key, hlc in final.replica.tombstones.items()]
        for key, hlc in held:
            sent_to = origins.get((key, hlc))
            if sent_to is None or final.database_id in sent_to:
                continue
            violations.append(
                {
                    "time": final.event.time,
                    "database": final.database_id,
                    "cell": list(key),
                    "hlc": hlc.hex(),
                    "written_to": sorted(sent_to),
                }
            )
    if violations:
        foreign = sorted({db for v in violations for db in v["written_to"]})
        return failed(
            name,
            f"{len(violations)} changes of other databases ({', '.join(foreign)}) found in "
            f"{', '.join(sorted({v['database'] for v in violations}))}",
            params,
            violations,
        )
    if judged == 0:
        return unknown(name, "no final server state of a written database was read", params)
    return passed(
        name, f"{judged} databases' final states hold only their own changes ({len(origins)} sent)", params
    )
