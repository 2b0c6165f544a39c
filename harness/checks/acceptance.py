"""Valid requests and what became of them: which requests a client sent meaning to be refused
(so a refusal of them is no failure), which answers are errors, and `writes-accepted`: a run
whose valid writes the server mostly refused cannot pass, whatever the other checks found.

Why a request was sent is read from the history, never guessed from the answer's code: a probe
records its `intent` (send_raw, or any request value carrying `intent`), a token used on a
database outside its grants records `authorizedFor` without that database, and a handshake
with another protocol version than 1 is invalid by the contract. WS requests on a session
opened by such a handshake share its intent.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import orjson

from harness.checks.excuses import CAUSES, S3, ExcusePolicy, excuses, window_causes
from harness.checks.observations import Observations
from harness.checks.registry import Param, register
from harness.checks.result import CheckResult
from harness.checks.verdict import failed, passed, unknown
from harness.checks.views import Apply, applies, connections
from harness.history import History, Op, OpName
from harness.model.codec import CodecError, hlc_key

HTTP_OPS = frozenset({OpName.HTTP_APPLY, OpName.HTTP_GET_CHANGES, OpName.HTTP_SNAPSHOT})
SNAPSHOT_OPS = frozenset({OpName.SNAPSHOT, OpName.RESUME_SNAPSHOT, OpName.HTTP_SNAPSHOT})
# An error code as a server writes it (the client records exception names and lower-case
# reasons such as connection_closed for outcomes that were no answer at all).
_CODE = re.compile(r"^[A-Z][A-Z0-9_]*$")
# Outcomes the harness itself caused: no verdict on the server.
HARNESS_ENDED = frozenset({"cancelled", "abandoned", "cut_by_client"})

# Writes near any fault or process action are not judged (the share is of writes outside faults).
UNACCEPTED_WRITE = ExcusePolicy("a write not accepted near a fault (not judged)", CAUSES)


def foreign(value: Any) -> bool:
    """The request used a token on a database outside the grants the client recorded."""
    if not isinstance(value, dict):
        return False
    granted = value.get("authorizedFor")
    return isinstance(granted, list) and value.get("databaseId") not in granted


def meant_to_fail(invoked: Op) -> bool:
    """The invocation itself says it was sent to be refused."""
    value = invoked.value
    if invoked.f == OpName.SEND_RAW:
        return True
    if not isinstance(value, dict):
        return False
    if value.get("intent"):
        return True
    if invoked.f == OpName.HANDSHAKE and value.get("protocolVersion", 1) != 1:
        return True
    return foreign(value)


def deliberate(history: History) -> set[int]:
    """Op ids of the requests sent to be refused: probes, intruders, and every WS request on a
    connection whose handshake was one of them."""
    out: set[int] = set()
    tainted: set[tuple[str, int]] = set()  # (process, open index) of deliberate sessions
    opens: dict[str, list[int]] = {}
    for connection in connections(history):
        opens.setdefault(connection.process, []).append(connection.open_index)

    def conn_of(op: Op) -> tuple[str, int] | None:
        before = [i for i in opens.get(op.process, []) if i < op.index]
        return (op.process, before[-1]) if before else None

    for invoked, _ in sorted(history.pairs(), key=lambda p: p[0].index):
        conn = conn_of(invoked) if invoked.f not in HTTP_OPS else None
        if meant_to_fail(invoked):
            out.add(invoked.op_id)
            if invoked.f == OpName.HANDSHAKE and conn is not None:
                tainted.add(conn)
        elif conn is not None and conn in tainted:
            out.add(invoked.op_id)
    return out


def error_answer(completed: Op) -> dict[str, Any] | None:
    """The error the server answered with (code, HTTP status), or None when the answer was no
    error or there was no answer (timeout, lost connection)."""
    value: dict[str, Any] = completed.value if isinstance(completed.value, dict) else {}
    if completed.type == "ok":
        body = value["body"] if isinstance(value.get("body"), dict) else value
        data = body["data"] if isinstance(body.get("data"), dict) else body
        rejected = data.get("rejected")
        if rejected:
            first = rejected[0] if isinstance(rejected, list) and isinstance(rejected[0], dict) else {}
            return {"code": first.get("code") or "REJECTED", "status": value.get("status"), "rejected": True}
        return None
    if completed.type != "fail" or completed.error in HARNESS_ENDED:
        return None
    status = value.get("status") if isinstance(value.get("status"), int) else None
    ended = value.get("ended")
    if ended is not None and ended not in ("error", "http_error"):
        return None  # a snapshot stream that stopped without an answer: stream-completeness
    code = value.get("code") if value.get("type") == "error" or ended else None
    code = code or completed.error
    if status is not None and status >= 400:
        return {"code": code, "status": status}
    if value.get("type") == "error" or ended in ("error", "http_error"):
        return {"code": code, "status": status}
    if isinstance(code, str) and _CODE.match(code):
        return {"code": code, "status": status}
    return None


# writes-accepted -------------------------------------------------------------------------------

_UNAVAILABLE = re.compile(r"UNAVAILABLE")


def recovering(history: History, write: Apply, bound_s: float) -> bool:
    """The write was refused as "store unavailable" within `bound_s` after an object-store fault
    ended: a server may stay degraded that long after the store is back (its breaker stays open,
    its retries back off; degradation-announced allows BACKEND_RECOVERED as late), so such a
    refusal is recovery, not a refused write."""
    answer = error_answer(write.completed) if write.completed is not None else None
    if answer is None or not (answer.get("status") == 503 or _UNAVAILABLE.search(str(answer.get("code")))):
        return False
    start = write.invoked.time
    return any(
        w.end is not None and S3 in window_causes(w) and w.end <= start <= w.end + bound_s
        for w in history.faults
    )


def _key(change: dict[str, Any]) -> bytes | None:
    try:
        return hlc_key(change.get("hlc"))
    except (CodecError, ValueError, TypeError):
        return None


def _row(change: dict[str, Any]) -> tuple[Any, ...]:
    return (change.get("schema"), change.get("table"), orjson.dumps(change.get("pk")))


def _cell(change: dict[str, Any]) -> tuple[Any, ...]:
    return (*_row(change), change.get("column"))


# A change sent: when its request was sent, its HLC, and which change it is (op id, position).
_Entry = tuple[float, bytes, tuple[int, int]]


def _changes(write: Apply) -> list[dict[str, Any]]:
    return [change for change_set in write.change_sets for change in change_set.get("changes") or []]


class _Sent:
    """Every change sent to a database, by cell and by row tombstone, with the time its request
    was sent: what can explain a refusal (another request's change, or a later change of the
    same change set)."""

    def __init__(self, writes: list[Apply]) -> None:
        self.cells: dict[tuple[Any, ...], list[_Entry]] = {}
        self.tombstones: dict[tuple[Any, ...], list[_Entry]] = {}
        for write in writes:
            if not _may_have_applied(write):
                continue  # a refused change cannot be why another was refused
            for position, change in enumerate(_changes(write)):
                key = _key(change)
                if key is None:
                    continue
                entry = (write.invoked.time, key, (write.invoked.op_id, position))
                if change.get("type") == "delete":
                    self.tombstones.setdefault((write.database_id, *_row(change)), []).append(entry)
                else:
                    self.cells.setdefault((write.database_id, *_cell(change)), []).append(entry)

    def explains(
        self, write: Apply, position: int, change: dict[str, Any], before: float, policy: str | None
    ) -> bool:
        """Another change sent before `before` makes this one lose: a same-cell change (or row
        tombstone) with an HLC at least its own, or, unless the policy is known to be revive,
        any tombstone of its row (delete-wins refuses those; with the policy unknown the check
        may not assume either)."""
        key = _key(change)
        if key is None:
            return False
        own = (write.invoked.op_id, position)

        def beaten(entries: list[_Entry], any_hlc: bool = False) -> bool:
            return any(t <= before and which != own and (any_hlc or k >= key) for t, k, which in entries)

        row = (write.database_id, *_row(change))
        if change.get("type") == "delete":
            return beaten(self.tombstones.get(row, []))
        if beaten(self.cells.get((write.database_id, *_cell(change)), [])):
            return True
        return beaten(self.tombstones.get(row, []), any_hlc=policy != "revive")


def _may_have_applied(write: Apply) -> bool:
    """The server may hold this request's changes: it said it applied some, or its answer never
    came. A request refused whole (applied 0) or answered with an error explains nothing: else a
    server that refused every write would see half of each race "explained" by the other half."""
    completed = write.completed
    if completed is None or completed.type == "info":
        return True
    if completed.type != "ok" or error_answer(completed) is not None:
        return False
    applied = (write.result or {}).get("applied")
    return isinstance(applied, int) and not isinstance(applied, bool) and applied > 0


def _outcome(write: Apply, sent: _Sent, policy: str | None) -> str:
    """applied, explained, or what counts against: error:<code>, rejected:<code>, refused,
    no-answer:<reason>."""
    completed = write.completed
    assert completed is not None
    error = error_answer(completed)
    if error is not None:
        prefix = "rejected" if error.get("rejected") else "error"
        return f"{prefix}:{error.get('code') or error.get('status')}"
    if completed.type != "ok":
        return f"no-answer:{completed.error}"
    result = write.result or {}
    applied = result.get("applied")
    if not isinstance(applied, int) or isinstance(applied, bool):
        return "error:NO_APPLIED_COUNT"
    count = write.change_count
    if applied >= count:
        return "applied"
    explained = sum(
        1
        for position, change in enumerate(_changes(write))
        if sent.explains(write, position, change, completed.time, policy)
    )
    # Which changes were applied is not said: when none was, every change needs its reason;
    # else at least as many reasons as refusals (a change that was applied may have one too).
    needed = count if applied == 0 else count - applied
    return "explained" if explained >= needed else "refused"


@register(
    "writes-accepted",
    "writes",
    "writers got at least min_share of their valid writes outside faults applied, or refused for a reason the history shows",
    excuses=(UNACCEPTED_WRITE,),
    min_share=Param(0.9, "least share of valid writes outside faults that must be accepted"),
    grace_s=Param(1.0, "writes this close to a fault or process action are not judged"),
    recover_bound_s=Param(
        15.0,
        "after an object-store fault ends, a refusal as unavailable this long is recovery, not judged "
        "(degradation-announced's bound for BACKEND_RECOVERED)",
    ),
    tombstone_policy=Param(
        None,
        "the target's policy (revive or delete-wins, from its profile): unless revive, a tombstone explains a later write to its row",
    ),
)
def writes_accepted(history: History, obs: Observations, params: dict[str, Any]) -> CheckResult:
    name = "writes-accepted"
    policy = params["tombstone_policy"]
    grace = float(params["grace_s"])
    skip = deliberate(history)
    writes = applies(history)
    sent = _Sent(writes)
    outcomes: Counter[str] = Counter()
    examples: dict[str, dict[str, Any]] = {}
    for write in writes:
        completed = write.completed
        if write.invoked.op_id in skip or completed is None or completed.error in HARNESS_ENDED:
            continue
        if excuses(UNACCEPTED_WRITE, history, obs, write.invoked.time - grace, completed.time + grace):
            continue
        if recovering(history, write, float(params["recover_bound_s"])):
            continue
        outcome = _outcome(write, sent, policy)
        outcomes[outcome] += 1
        examples.setdefault(
            outcome,
            {
                "time": completed.time,
                "process": write.process,
                "op": write.invoked.f,
                "index": completed.index,
                "outcome": outcome,
                "changes": write.change_count,
                "answer": completed.value if outcome != "applied" else None,
            },
        )
    total = sum(outcomes.values())
    policy_note = {"tombstone_policy": policy if policy is not None else "unknown (either allowed)"}
    if total == 0:
        return unknown(name, "no valid write was made outside faults", params)
    accepted = outcomes["applied"] + outcomes["explained"]
    share = accepted / total
    counts = {
        "time": history.now(),
        "outcomes": dict(outcomes),
        "accepted": accepted,
        "judged": total,
    } | policy_note
    against = [e for o, e in examples.items() if o not in ("applied", "explained")]
    summary = f"{accepted} of {total} valid writes outside faults accepted ({share:.0%})"
    if share < float(params["min_share"]):
        return failed(name, summary + f", below {float(params['min_share']):.0%}", params, [*against, counts])
    return passed(name, summary, params, [counts, *against])
