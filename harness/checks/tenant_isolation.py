"""Tenant isolation: a token granted database A is refused on database B (AUTH_FAILED or
NOT_AUTHORIZED, HTTP 401/403) and never receives B's data."""

from __future__ import annotations

from typing import Any

from harness.checks.observations import Observations
from harness.checks.registry import register
from harness.checks.result import CheckResult
from harness.checks.verdict import failed, passed, unknown
from harness.checks.views import connections
from harness.history import History, Message, OpName

REFUSALS = {"AUTH_FAILED", "NOT_AUTHORIZED"}
HTTP_OPS = (OpName.HTTP_GET_CHANGES, OpName.HTTP_APPLY, OpName.HTTP_SNAPSHOT)


def _leaks(message: Message) -> bool:
    """True when a message carries database contents or confirms a write."""
    payload = message.payload
    if message.type in ("changes", "push_changes"):
        return bool(payload.get("changeSets"))
    if message.type == "snapshot_chunk":
        chunk = payload.get("chunk") or {}
        return chunk.get("type") in ("column-versions", "tombstone", "schema-migration")
    if message.type == "apply_result":
        return int(payload.get("applied") or 0) > 0
    return False


def _foreign(value: Any) -> bool:
    if not isinstance(value, dict):
        return False
    granted = value.get("authorizedFor")
    return isinstance(granted, list) and value.get("databaseId") not in granted


@register(
    "tenant-isolation",
    "tenancy",
    "a token for one database is refused on another and never sees or changes its data",
    excuses=(),  # no fault excuses a miss it judges
)
def tenant_isolation(history: History, obs: Observations, params: dict[str, Any]) -> CheckResult:
    name = "tenant-isolation"
    conns = connections(history)
    judged = 0
    violations: list[dict[str, Any]] = []
    for invoked, completed in history.pairs():
        if completed is None or not _foreign(invoked.value):
            continue
        target = invoked.value["databaseId"]
        where = {"time": completed.time, "process": invoked.process, "database": target, "op": invoked.f}
        if invoked.f == OpName.HANDSHAKE:
            judged += 1
            if completed.type == "fail" and completed.error in REFUSALS:
                continue
            if completed.type == "ok":
                conn = next(
                    (
                        c
                        for c in reversed(conns)
                        if c.process == invoked.process and c.open_index < invoked.index
                    ),
                    None,
                )
                leaked = [m for m in (conn.messages if conn else []) if _leaks(m)]
                problem = f"handshake on {target} accepted"
                if leaked:
                    problem += f", then {len(leaked)} messages carried its data"
                    where["time"] = leaked[0].time
                    where["first_leak"] = leaked[0].index
                violations.append(where | {"problem": problem})
            elif completed.type == "fail":
                violations.append(
                    where
                    | {"problem": f"refused with {completed.error}, expected AUTH_FAILED or NOT_AUTHORIZED"}
                )
        elif invoked.f in HTTP_OPS:
            judged += 1
            status = (completed.value or {}).get("status") if isinstance(completed.value, dict) else None
            if status in (401, 403):
                continue
            if completed.type == "ok" or status == 200:
                violations.append(where | {"problem": f"HTTP {invoked.f} on {target} answered {status}"})
            elif status is not None:
                violations.append(where | {"problem": f"HTTP status {status}, expected 401 or 403"})
    if violations:
        return failed(name, f"{len(violations)} cross-tenant requests not refused", params, violations)
    if judged == 0:
        return unknown(name, "no request used a token on a database it is not granted", params)
    return passed(name, f"{judged} cross-tenant requests refused", params)
