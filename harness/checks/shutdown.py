"""Graceful shutdown, as the clients see it (every connected session is told SERVER_SHUTDOWN
before its 1001 close) and as the operator sees it (exit 0 within the deadline, nothing logged
as an error)."""

from __future__ import annotations

import json
import re
from typing import Any

from harness.checks import capabilities as cap
from harness.checks.observations import Observations
from harness.checks.registry import Param, register
from harness.checks.result import CheckResult
from harness.checks.verdict import failed, passed, unknown, unsupported
from harness.checks.views import connections
from harness.history import History

GOING_AWAY = 1001


def graceful_stops(history: History, obs: Observations) -> list[float]:
    """Times the harness asked the target to stop gracefully: its SIGTERMs, as the process
    observations record them (the `terminate` and `restart` faults send one each)."""
    return sorted(set(obs.process_times("sigterm")))


@register(
    "shutdown-notification",
    "shutdown",
    "every session connected at a graceful shutdown gets SERVER_SHUTDOWN before its 1001 close",
    excuses=(),  # no fault excuses a miss it judges
)
def shutdown_notification(history: History, obs: Observations, params: dict[str, Any]) -> CheckResult:
    name = "shutdown-notification"
    stops = graceful_stops(history, obs)
    if not stops:
        return unknown(name, "no graceful shutdown in this run", params)
    if missing := cap.missing(history, obs, cap.NOTICE):
        return unsupported(name, params, missing)
    judged = 0
    violations: list[dict[str, Any]] = []
    for stop in stops:
        for conn in connections(history):
            if conn.session_at is None or conn.session_at > stop:
                continue
            if conn.closed_at is not None and conn.closed_at < stop:
                continue
            if conn.by_client:
                continue  # the client left on its own
            judged += 1
            told = [
                m
                for m in conn.received("notice")
                if m.payload.get("code") == "SERVER_SHUTDOWN" and m.time >= stop - 0.001
            ]
            where = {
                "process": conn.process,
                "conn": conn.number,
                "time": conn.closed_at or stop,
                "shutdown_at": stop,
            }
            if not told:
                violations.append(where | {"problem": f"closed ({conn.close_code}) without SERVER_SHUTDOWN"})
            elif conn.close_code != GOING_AWAY:
                violations.append(
                    where | {"problem": f"told SERVER_SHUTDOWN but closed with {conn.close_code}, not 1001"}
                )
    if violations:
        return failed(
            name, f"{len(violations)} of {judged} sessions not told of the shutdown", params, violations
        )
    if judged == 0:
        return unknown(name, "no session was connected at the shutdown", params)
    return passed(name, f"{judged} sessions told SERVER_SHUTDOWN before the 1001 close", params)


ERROR_LEVELS = frozenset({"error", "err", "critical", "crit", "fatal", "panic", "alert", "emergency"})


def is_error_line(text: str, pattern: re.Pattern[str]) -> bool:
    """A structured (JSON) log line is an error by its level, and otherwise by its message: a
    key named "error" in an info line is no error. A plain text line is judged by the pattern."""
    if text.startswith("{"):
        try:
            record = json.loads(text)
        except ValueError:
            record = None
        if isinstance(record, dict):
            level = next((record[k] for k in ("level", "severity", "levelname", "lvl") if k in record), None)
            if isinstance(level, str):
                return level.lower() in ERROR_LEVELS
            message = next((record[k] for k in ("msg", "message", "event") if k in record), None)
            return isinstance(message, str) and bool(pattern.search(message))
    return bool(pattern.search(text))


@register(
    "clean-shutdown",
    "shutdown",
    "after SIGTERM the process exits 0 within the deadline and logs no error meanwhile",
    excuses=(),  # no fault excuses a miss it judges
    deadline_s=Param(10.0, "longest time from SIGTERM to exit"),
    error_pattern=Param(
        r"(?i)(\berror\b|\bcritical\b|traceback|exception)", "a log line matching this is an error"
    ),
)
def clean_shutdown(history: History, obs: Observations, params: dict[str, Any]) -> CheckResult:
    name = "clean-shutdown"
    stops = graceful_stops(history, obs)
    if not stops:
        return unknown(name, "no graceful shutdown in this run", params)
    deadline = float(params["deadline_s"])
    pattern = re.compile(str(params["error_pattern"]))
    violations: list[dict[str, Any]] = []
    for stop in stops:
        exits = [e for e in obs.process if e.kind == "exit" and e.time >= stop]
        if not exits:
            return unknown(name, f"no exit of the process observed after the shutdown at {stop:.2f}s", params)
        exit_event = exits[0]
        if exit_event.time - stop > deadline:
            violations.append(
                {"time": stop + deadline, "problem": f"exit {exit_event.time - stop:.2f}s after SIGTERM"}
            )
        if exit_event.exit_code != 0:
            violations.append({"time": exit_event.time, "problem": f"exit code {exit_event.exit_code}"})
        for line in obs.logs:
            if stop <= line.time <= exit_event.time + 0.5 and is_error_line(line.text, pattern):
                violations.append(
                    {"time": line.time, "problem": "error logged during shutdown", "line": line.text[:300]}
                )
    if violations:
        return failed(name, f"{len(violations)} shutdown problems", params, violations)
    return passed(
        name, f"{len(stops)} graceful shutdowns exited 0 within {deadline}s, no error logged", params
    )
