"""Small constructors for CheckResult, so every check words its verdicts the same way."""

from __future__ import annotations

from typing import Any

from harness.checks.result import CheckResult

MAX_EVIDENCE = 25


def passed(
    name: str, summary: str, params: dict[str, Any], evidence: list[dict[str, Any]] | None = None
) -> CheckResult:
    return CheckResult(name, "pass", summary, (evidence or [])[:MAX_EVIDENCE], dict(params))


def failed(name: str, summary: str, params: dict[str, Any], violations: list[dict[str, Any]]) -> CheckResult:
    """`violations` each carry a `time`; the earliest becomes `detected_at`."""
    ordered = sorted(violations, key=lambda v: float(v.get("time", 0.0)))
    detected = float(ordered[0]["time"]) if ordered and "time" in ordered[0] else None
    return CheckResult(name, "fail", summary, ordered[:MAX_EVIDENCE], dict(params), detected)


def unknown(
    name: str, summary: str, params: dict[str, Any], evidence: list[dict[str, Any]] | None = None
) -> CheckResult:
    return CheckResult(name, "unknown", summary, (evidence or [])[:MAX_EVIDENCE], dict(params))


def unsupported(name: str, params: dict[str, Any], capabilities: list[str]) -> CheckResult:
    result = unknown(name, f"not supported by target ({', '.join(capabilities)})", params)
    result.unsupported = True
    return result
