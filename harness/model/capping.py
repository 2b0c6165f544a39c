"""Bounded frames: what of a large frame the history keeps, so journals stay small.

A frame whose raw text is over the cap (`History.payload_cap`, default
`harness.history.DEFAULT_PAYLOAD_CAP` = 4 KiB; `--full-payloads` turns capping off) is recorded
as a stub: its `type`, `{"$capped": {"bytes", "sha256"}}` (sha256 of the raw text) and the
fields the checks read. What each check reads of a *recorded message* (everything else they
read comes from ops, events and observations, which are not capped):

- ordered-seq, capabilities: `push_changes.seq`; broadcast-delivery, fast-client-latency and
  failure-visibility (through `checks.delivery`): `changeSets[].transactionId` of pushes;
  tenant-isolation: whether `changes`/`push_changes` carry change sets, `snapshot_chunk.chunk.type`,
  `apply_result.applied`; presence-accuracy: `presence.sessions[]` (connectionId, joinedAt,
  lastSeen), kept whole, as are `presence_delta.joined`/`left`; degradation, shutdown,
  slow-client: `notice.code`, `heartbeat.backend` (small scalars, kept); error-specificity:
  `error.fatal`; heartbeat-continuity: message times only.
- snapshot-exactness: per `snapshot_chunk` of type `column-versions`, `$cells`: one
  `[column, hlc, pk, value digest]` per entry (`value_digest`), and of type `tombstone`,
  `$tombs`: one `[pk, hlc]` per entry (schema, table and the small chunk fields are kept).
- well-formed-messages parses every change set with the strict codec, also those of HTTP
  `get_changes` answers (an op's value, capped the same way by `cap_http_changes`). A change set is
  therefore parsed here, when recorded: a well-formed one becomes
  `{siteId, transactionId, hlc, "$capped": {"changes": n, "migrations": m, "maxHlc": h}}`
  (values dropped; `maxHlc`, the largest change HLC, is what changes-paging follows pages by),
  a malformed one is kept whole, so the check judges exactly what it would judge uncapped.

Top-level fields of any capped frame are kept when their JSON is at most `SMALL_FIELD_BYTES`
(type, seq, code, requestId, counts...); larger ones are dropped and named in
`$capped.dropped`. Sent frames keep no more than that: no check reads them, and the request is
in its op's value (an apply's change sets, which the write checks need whole, are there).
REPLICA events are not capped (convergence and lww compare their values); the journal stores a
state that repeats an earlier one by reference instead (`harness.report.journal`).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from typing import Any

import orjson

from harness.history import DEFAULT_PAYLOAD_CAP, History, Op, OpName
from harness.model.changesets import ChangeSet
from harness.model.codec import CodecError, hlc_key

CAPPED = "$capped"
SMALL_FIELD_BYTES = 256


def _json(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError:
        return repr(value).encode("utf-8")


def value_digest(value: Any) -> str:
    """A short digest of a wire SQL value: what a capped snapshot entry keeps of its value, so
    snapshot-exactness compares values by digest on capped and whole histories alike."""
    return hashlib.sha256(orjson.dumps(value, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


def is_capped(payload: Any) -> bool:
    """True when `payload` (a message or one of its change sets) is a stub of a larger frame."""
    return isinstance(payload, dict) and isinstance(payload.get(CAPPED), dict)


def _change_set_stub(change_set: Any) -> Any:
    if not isinstance(change_set, dict):
        return change_set
    try:
        ChangeSet.from_wire(change_set)
    except (CodecError, KeyError, TypeError, ValueError, AttributeError):
        return change_set  # the evidence well-formed-messages reports: kept whole
    changes = change_set.get("changes")
    migrations = change_set.get("schemaMigrations")
    info: dict[str, Any] = {
        "changes": len(changes) if isinstance(changes, list) else 0,
        "migrations": len(migrations) if isinstance(migrations, list) else 0,
    }
    top = max(((hlc_key(c["hlc"]), c["hlc"]) for c in changes or [] if isinstance(c, dict)), default=None)
    if top is not None:
        info["maxHlc"] = top[1]  # where the next page starts: changes-paging follows sequences
    return {
        "siteId": change_set.get("siteId"),
        "transactionId": change_set.get("transactionId"),
        "hlc": change_set.get("hlc"),
        CAPPED: info,
    }


def _change_sets(payload: dict[str, Any]) -> dict[str, Any]:
    change_sets = payload.get("changeSets")
    if not isinstance(change_sets, list):
        return {"changeSets": change_sets} if "changeSets" in payload else {}
    return {"changeSets": [_change_set_stub(cs) for cs in change_sets]}


def _chunk(payload: dict[str, Any]) -> dict[str, Any]:
    chunk = payload.get("chunk")
    if not isinstance(chunk, dict):
        return {"chunk": chunk} if "chunk" in payload else {}
    kept, dropped = _small_fields(chunk)
    entries = chunk.get("entries")
    if isinstance(entries, list):
        kept["$entries"] = len(entries)
        dropped = [d for d in dropped if d != "entries"]
        rows = [e for e in entries if isinstance(e, dict)]
        if rows and chunk.get("type") == "column-versions":
            kept["$cells"] = [
                [e.get("column"), e.get("hlc"), e.get("pk"), value_digest(e.get("value"))] for e in rows
            ]
        elif rows and chunk.get("type") == "tombstone":
            kept["$tombs"] = [[e.get("pk"), e.get("hlc")] for e in rows]
    if dropped:
        kept["$dropped"] = dropped
    return {"chunk": kept}


def _keep(*names: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def keep(payload: dict[str, Any]) -> dict[str, Any]:
        return {name: payload[name] for name in names if name in payload}

    return keep


# Fields of received frames the checks need beyond the small ones (see the module docstring).
_RECEIVED: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "push_changes": _change_sets,
    "changes": _change_sets,
    "snapshot_chunk": _chunk,
    "presence": _keep("sessions"),
    "presence_delta": _keep("joined", "left"),
}


def _small_fields(payload: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    kept: dict[str, Any] = {}
    dropped: list[str] = []
    for key, value in payload.items():
        if len(_json(value)) <= SMALL_FIELD_BYTES:
            kept[key] = value
        else:
            dropped.append(key)
    return kept, dropped


def cap_payload(
    payload: dict[str, Any],
    cap: int | None,
    raw: str | bytes | None = None,
    direction: str = "recv",
) -> dict[str, Any]:
    """The payload to record: itself when its raw text (or, without it, its compact JSON) is at
    most `cap` bytes or `cap` is None, else a stub with what the checks need."""
    if cap is None:
        return payload
    if isinstance(raw, str) and len(raw) * 4 <= cap:
        return payload  # at most 4 bytes a character: small without encoding it (the common frame)
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    if data is None:
        data = _json(payload)
    if len(data) <= cap:
        return payload
    kept, dropped = _small_fields(payload)
    extra = _RECEIVED.get(str(payload.get("type"))) if direction == "recv" else None
    if extra is not None:
        needed = extra(payload)
        kept.update(needed)
        dropped = [d for d in dropped if d not in needed]
    info: dict[str, Any] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    if dropped:
        info["dropped"] = dropped
    kept[CAPPED] = info
    return kept


def cap_http_changes(
    outcome: dict[str, Any], cap: int | None, raw: str | bytes | None = None
) -> dict[str, Any]:
    """The recorded outcome of an HTTP `GET /:db/changes` (`{status, body}`): over `cap`, its
    change sets become stubs as in a `changes` frame (well-formed-messages parses them)."""
    body = outcome.get("body")
    if cap is None or not isinstance(body, dict):
        return outcome
    data = body.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("changes"), list):
        return outcome
    text = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    if text is None:
        text = _json(body)
    if len(text) <= cap:
        return outcome
    stubs = _change_sets({"changeSets": data["changes"]})["changeSets"]
    info = {"bytes": len(text), "sha256": hashlib.sha256(text).hexdigest()}
    return outcome | {"body": body | {"data": data | {"changes": stubs}}, CAPPED: info}


def cap_history(history: History, cap: int | None = DEFAULT_PAYLOAD_CAP) -> History:
    """A copy of `history` as it would have been recorded with `cap`: its messages, and the
    `get_changes` answers its ops repeat, capped; everything else shared. For shrinking a full
    history after the fact, and for proving that capping changes no check's verdict."""
    out = History(payload_cap=cap)
    out._clock, out._t0 = history._clock, history._t0  # the same run clock: checks read now()

    def capped_op(op: Op) -> Op:
        if op.type != "ok" or not isinstance(op.value, dict):
            return op
        if op.f == OpName.GET_CHANGES:
            return dataclasses.replace(op, value=cap_payload(op.value, cap))
        if op.f == OpName.HTTP_GET_CHANGES:
            return dataclasses.replace(op, value=cap_http_changes(op.value, cap))
        return op

    out.ops = [capped_op(op) for op in history.ops]
    out.messages = [
        dataclasses.replace(m, payload=cap_payload(m.payload, cap, direction=m.direction))
        for m in history.messages
    ]
    out.events = list(history.events)
    out.faults = list(history.faults)
    return out
