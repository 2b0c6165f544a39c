"""Well-formed messages: everything the target sends parses with the harness's own strict codec
(PROTOCOL.md sections 1 and 3): JSON objects, valid site ids and HLCs, values in their wire
forms, transaction ids matching their HLCs, answers with the fields they promise."""

from __future__ import annotations

from typing import Any

from harness.checks.observations import Observations
from harness.checks.registry import register
from harness.checks.result import CheckResult
from harness.checks.verdict import failed, passed, unknown
from harness.history import EventKind, History, OpName
from harness.model.capping import is_capped
from harness.model.changesets import ChangeSet
from harness.model.codec import CodecError, decode_site_id

_COUNTS = ("applied", "skipped", "conflicts", "transactions")


def _problems(kind: str, payload: dict[str, Any]) -> list[str]:
    """What is wrong with one server message, by the protocol's letter."""
    found: list[str] = []
    try:
        if kind in ("changes", "push_changes", "http_changes"):
            change_sets = payload.get("changeSets")
            if not isinstance(change_sets, list):
                return [f"{kind}: changeSets is not a list"]
            for change_set in change_sets:
                if is_capped(change_set):
                    continue  # parsed when recorded: a malformed change set is kept whole
                ChangeSet.from_wire(change_set)
        elif kind == "handshake_ack":
            decode_site_id(payload.get("serverSiteId"))
            if not isinstance(payload.get("connectionId"), str):
                found.append("handshake_ack: connectionId is not a string")
        elif kind == "apply_result":
            for key in _COUNTS:
                value = payload.get(key)
                if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                    found.append(f"apply_result: {key} is {value!r}, not a count")
        elif kind == "error":
            if not isinstance(payload.get("code"), str) or not isinstance(payload.get("fatal"), bool):
                found.append("error: code must be a string and fatal a boolean")
    except CodecError as exc:
        found.append(f"{kind}: {exc}")
    return found


@register(
    "well-formed-messages",
    "wire",
    "every frame the target sends is JSON and parses with the harness's strict codec",
    excuses=(),  # no fault excuses a miss it judges
)
def well_formed_messages(history: History, obs: Observations, params: dict[str, Any]) -> CheckResult:
    name = "well-formed-messages"
    violations: list[dict[str, Any]] = [
        {"time": e.time, "process": e.process, "index": e.index, "problem": str(e.data.get("error"))}
        for e in history.events
        if e.kind == EventKind.BAD_FRAME
    ]
    judged = len(violations)
    for message in history.received():
        judged += 1
        for problem in _problems(message.type, message.payload):
            violations.append(
                {"time": message.time, "process": message.process, "index": message.index, "problem": problem}
            )
    for invoked, completed in history.pairs():
        if invoked.f != OpName.HTTP_GET_CHANGES or completed is None or completed.type != "ok":
            continue
        body = (completed.value or {}).get("body") or {}
        judged += 1
        data = {"changeSets": (body.get("data") or {}).get("changes")}
        for problem in _problems("http_changes", data):
            violations.append(
                {
                    "time": completed.time,
                    "process": invoked.process,
                    "index": completed.index,
                    "problem": problem,
                }
            )
    if violations:
        return failed(name, f"{len(violations)} malformed messages", params, violations)
    if judged == 0:
        return unknown(name, "no message was received", params)
    return passed(name, f"{judged} messages well-formed", params)
