"""No echo to the sender (PROTOCOL.md section 2): a session never receives, in a push or in a
get_changes answer, a change set that originated at its own siteId. The server excludes the
requester's own changes from the log it serves and broadcasts to the *other* sites only; an echo
makes a client re-apply its own writes and hides a broken filter."""

from __future__ import annotations

from typing import Any

from harness.checks.observations import Observations
from harness.checks.registry import register
from harness.checks.result import CheckResult
from harness.checks.verdict import failed, passed, unknown
from harness.checks.views import connections
from harness.history import History

# Received frames that carry change sets, and where.
CARRIERS = ("push_changes", "changes")


@register(
    "no-echo-to-sender",
    "broadcast",
    "no push_changes or changes answer a session receives carries a change set of its own siteId",
    excuses=(),  # no fault makes a server send a session its own changes
)
def no_echo_to_sender(history: History, obs: Observations, params: dict[str, Any]) -> CheckResult:
    name = "no-echo-to-sender"
    judged = 0
    violations: list[dict[str, Any]] = []
    for conn in connections(history):
        if conn.site_id is None:
            continue
        for message in conn.messages:
            if message.type not in CARRIERS:
                continue
            for change_set in message.payload.get("changeSets") or []:
                if not isinstance(change_set, dict):
                    continue
                judged += 1
                if change_set.get("siteId") == conn.site_id:
                    violations.append(
                        {
                            "time": message.time,
                            "process": conn.process,
                            "conn": conn.number,
                            "index": message.index,
                            "type": message.type,
                            "transactionId": change_set.get("transactionId"),
                            "problem": f"{message.type} carried the session's own change set",
                        }
                    )
    if violations:
        return failed(name, f"{len(violations)} change sets echoed to their own site", params, violations)
    if judged == 0:
        return unknown(name, "no session received a change set", params)
    return passed(name, f"{judged} received change sets, none from the receiver's own site", params)
