"""Error specificity: bad input gets a specific, non-fatal code and the session survives it;
a request that fails on the server gets that request's own code (SNAPSHOT_ERROR for a snapshot),
never the generic MESSAGE_ERROR of a frame that was not JSON."""

from __future__ import annotations

from typing import Any

from harness.checks import capabilities as cap
from harness.checks.excuses import WITHOUT_FAILPOINTS, ExcusePolicy, excuses
from harness.checks.observations import Observations
from harness.checks.registry import Param, register
from harness.checks.result import CheckResult
from harness.checks.verdict import failed, passed, unknown
from harness.checks.views import Connection, connections
from harness.history import History, Op, OpName

# Codes any request may get whatever it asked.
ANY_REQUEST = {"RATE_LIMITED", "NOT_AUTHENTICATED", "NOT_AUTHORIZED"}
# The codes that are specific to each request (PROTOCOL.md 3.4).
SPECIFIC = {
    "get_changes": {"GET_CHANGES_ERROR", "INVALID_PAYLOAD"},
    "apply_changes": {"APPLY_CHANGES_ERROR", "INVALID_PAYLOAD", "MESSAGE_TOO_LARGE"},
    "get_snapshot": {"SNAPSHOT_ERROR", "INVALID_PAYLOAD"},
    "resume_snapshot": {"SNAPSHOT_ERROR", "INVALID_PAYLOAD"},
    "ping": set(),
}
OP_REQUEST = {
    OpName.GET_CHANGES: "get_changes",
    OpName.APPLY: "apply_changes",
    OpName.SNAPSHOT: "get_snapshot",
    OpName.RESUME_SNAPSHOT: "resume_snapshot",
    OpName.PING: "ping",
}

CLOSED_AFTER_ERROR = ExcusePolicy("a session closed after an error answer", WITHOUT_FAILPOINTS)


def _conn_of(conns: list[Connection], op: Op) -> Connection | None:
    mine = [c for c in conns if c.process == op.process and c.open_index < op.index]
    return mine[-1] if mine else None


def _explained(conn: Connection, after_index: int) -> bool:
    """The server gave the close another reason: a notice or a fatal error came after the answer
    (e.g. DELIVERY_FAILED, SLOW_CLIENT, SERVER_SHUTDOWN)."""
    return any(
        m.index > after_index and (m.type == "notice" or (m.type == "error" and m.payload.get("fatal")))
        for m in conn.messages
    )


def _answer(completed: Op) -> dict[str, Any]:
    value = completed.value
    if not isinstance(value, dict):
        return {}
    if completed.f in (OpName.SNAPSHOT, OpName.RESUME_SNAPSHOT):
        return (
            {"type": "error", "code": value.get("code"), "fatal": value.get("fatal")}
            if value.get("ended") == "error"
            else {}
        )
    return value


@register(
    "error-specificity",
    "errors",
    "bad input gets a specific non-fatal code and the session survives; server failures get the request's code",
    excuses=(CLOSED_AFTER_ERROR,),
    survive_s=Param(1.0, "the session must still be open this long after a non-fatal error"),
)
def error_specificity(history: History, obs: Observations, params: dict[str, Any]) -> CheckResult:
    name = "error-specificity"
    conns = connections(history)
    strict_payload = cap.has(history, obs, cap.INVALID_PAYLOAD)
    survive = float(params["survive_s"])
    judged = 0
    violations: list[dict[str, Any]] = []
    for invoked, completed in history.pairs():
        if completed is None or completed.type not in ("ok", "fail"):
            continue
        answer = _answer(completed)
        where = {
            "time": completed.time,
            "process": invoked.process,
            "op": invoked.f,
            "index": completed.index,
        }
        if invoked.f == OpName.SEND_RAW:
            value = invoked.value or {}
            intent, request = value.get("intent"), value.get("request")
            judged += 1
            code = answer.get("code") if answer.get("type") == "error" else None
            if intent == "not_json":
                allowed = {"MESSAGE_ERROR"}
            elif intent == "unknown_type":
                allowed = {"UNKNOWN_MESSAGE"}
            else:
                allowed = (
                    {"INVALID_PAYLOAD"} if strict_payload else SPECIFIC.get(str(request), {"INVALID_PAYLOAD"})
                )
            if code is None:
                violations.append(
                    where | {"problem": f"{intent} input answered {answer.get('type')!r}, not an error"}
                )
                continue
            if code not in allowed:
                violations.append(
                    where
                    | {
                        "problem": f"{intent} {request or ''} input got {code}, expected one of {sorted(allowed)}"
                    }
                )
            if answer.get("fatal"):
                violations.append(where | {"problem": f"{code} for bad input was fatal"})
        elif invoked.f in OP_REQUEST and answer.get("type") == "error":
            judged += 1
            code = str(answer.get("code"))
            allowed = SPECIFIC[OP_REQUEST[invoked.f]] | ANY_REQUEST
            if code not in allowed:
                violations.append(
                    where
                    | {
                        "problem": f"{OP_REQUEST[invoked.f]} failed with {code}, expected one of {sorted(allowed)}"
                    }
                )
        else:
            continue
        if answer.get("type") == "error" and not answer.get("fatal"):
            conn = _conn_of(conns, completed)
            if (
                conn is not None
                and conn.closed_at is not None
                and not conn.by_client
                and conn.closed_at <= completed.time + survive
                and not _explained(conn, completed.index)
                and not excuses(CLOSED_AFTER_ERROR, history, obs, completed.time, conn.closed_at)
            ):
                violations.append(
                    where
                    | {
                        "problem": f"session closed ({conn.close_code}) right after a non-fatal {answer.get('code')}"
                    }
                )
    if violations:
        return failed(name, f"{len(violations)} unspecific or session-ending errors", params, violations)
    if judged == 0:
        return unknown(name, "no bad input was sent and no request failed", params)
    return passed(name, f"{judged} errors all specific and non-fatal where they should be", params)
