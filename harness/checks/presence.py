"""Presence accuracy: joinedAt is when the session joined, lastSeen is between joinedAt and
the message, a leave is visible to every other session within its bound, and a departed session
is never listed after that bound. A session that drops without a close frame (client `abort()`:
a `close` event with no code) leaves like one that closed. A leave is seen in either form of
PROTOCOL.md 3.2: a full `presence` list without it, or a `presence_delta` naming it in `left`."""

from __future__ import annotations

from typing import Any

from harness.checks import capabilities as cap
from harness.checks.excuses import DEFAULT_EXCUSED, ExcusePolicy, excuses
from harness.checks.observations import Observations
from harness.checks.registry import Param, register
from harness.checks.result import CheckResult
from harness.checks.verdict import failed, passed, unknown, unsupported
from harness.checks.views import connections, wall_offset_ms
from harness.history import History

LATE_LEAVE = ExcusePolicy("a leave not seen by every other session within its bound", DEFAULT_EXCUSED)
PRESENCE_TYPES = ("presence", "presence_delta")


def _ids(payload: dict[str, Any]) -> set[str]:
    return {str(s.get("connectionId")) for s in payload.get("sessions") or [] if isinstance(s, dict)}


def _entries(payload: dict[str, Any]) -> list[Any]:
    """Session entries of either form: the full list, or a delta's joins."""
    return list(payload.get("sessions") or []) + list(payload.get("joined") or [])


def announces_gone(payload: dict[str, Any], gone: str) -> bool:
    """A full `presence` list without the session, or a `presence_delta` whose `left` names it
    (PROTOCOL.md 3.2: a server may send either form; both count everywhere in this check)."""
    if payload.get("type") == "presence_delta":
        return gone in {str(c) for c in payload.get("left") or []}
    return gone not in _ids(payload)


def lists(payload: dict[str, Any], gone: str) -> bool:
    """The message says the session is there: in a full list, or joining in a delta."""
    if payload.get("type") == "presence_delta":
        return gone in {
            str(e.get("connectionId")) for e in payload.get("joined") or [] if isinstance(e, dict)
        }
    return gone in _ids(payload)


def _presence(observer: Any) -> list[Any]:
    return [m for m in observer.messages if m.type in PRESENCE_TYPES]


@register(
    "presence-accuracy",
    "presence",
    "presence timestamps are truthful and a leave reaches every other session within its bound",
    excuses=(LATE_LEAVE,),
    leave_bound_s=Param(2.0, "longest time from a session's close to a presence without it"),
    clock_tolerance_s=Param(1.0, "allowed difference between joinedAt/lastSeen and what the clients saw"),
)
def presence_accuracy(history: History, obs: Observations, params: dict[str, Any]) -> CheckResult:
    name = "presence-accuracy"
    if missing := cap.missing(history, obs, cap.PRESENCE):
        return unsupported(name, params, missing)
    conns = [c for c in connections(history) if c.connection_id is not None]
    by_id = {str(c.connection_id): c for c in conns}
    offset = wall_offset_ms(history)
    tol = float(params["clock_tolerance_s"])
    bound = float(params["leave_bound_s"])
    end = history.now()
    judged = 0
    violations: list[dict[str, Any]] = []
    # timestamps
    for observer in conns:
        for message in _presence(observer):
            for entry in _entries(message.payload):
                subject = by_id.get(str(entry.get("connectionId")))
                joined, seen = entry.get("joinedAt"), entry.get("lastSeen")
                if (
                    not isinstance(entry, dict)
                    or subject is None
                    or not isinstance(joined, int | float)
                    or not isinstance(seen, int | float)
                ):
                    continue
                judged += 1
                where = {
                    "time": message.time,
                    "observer": observer.process,
                    "subject": subject.process,
                    "index": message.index,
                }
                if seen + tol * 1000 < joined:
                    violations.append(where | {"problem": f"lastSeen {seen} before joinedAt {joined}"})
                if offset is None:
                    continue
                joined_t, seen_t = (joined - offset) / 1000.0, (seen - offset) / 1000.0
                session_at = subject.session_at if subject.session_at is not None else subject.opened_at
                if not subject.opened_at - tol <= joined_t <= session_at + tol:
                    violations.append(
                        where
                        | {"problem": f"joinedAt is {joined_t - session_at:+.2f}s from the session's join"}
                    )
                if seen_t > message.time + tol:
                    violations.append(
                        where | {"problem": f"lastSeen {seen_t - message.time:+.2f}s after the message"}
                    )
    # leaves
    for leaver in conns:
        if leaver.closed_at is None or leaver.session_at is None:
            continue
        gone = str(leaver.connection_id)
        deadline = leaver.closed_at + bound
        if deadline > end or excuses(LATE_LEAVE, history, obs, leaver.closed_at, deadline):
            continue
        for observer in conns:
            if observer is leaver or observer.database_id != leaver.database_id:
                continue
            if not observer.live_over(leaver.closed_at, deadline) or observer.paused_during(
                leaver.closed_at, deadline
            ):
                continue
            judged += 1
            where = {"leaver": leaver.process, "observer": observer.process, "left_at": leaver.closed_at}
            # The server may announce the leave before the leaver's own client has finished its
            # closing handshake: look from a little before the close the client recorded.
            since = max(leaver.session_at, leaver.closed_at - tol)
            after = [m for m in _presence(observer) if m.time >= since]
            if not any(m.time <= deadline and announces_gone(m.payload, gone) for m in after):
                violations.append(where | {"time": deadline, "problem": f"leave not visible within {bound}s"})
            stale = [m for m in after if m.time > deadline and lists(m.payload, gone)]
            if stale:
                violations.append(
                    where
                    | {"time": stale[0].time, "problem": "departed session listed after its leave bound"}
                )
    if violations:
        return failed(name, f"{len(violations)} presence inaccuracies", params, violations)
    if judged == 0:
        return unknown(name, "no presence entry or leave to judge", params)
    return passed(name, f"{judged} presence facts truthful", params)
