"""Invariant checks: each reads a history and the target's observations and says pass, fail or
unknown with evidence. `run_check(name, history, observations, params)` runs one by name."""

from harness.checks.observations import (
    LogLine,
    Observations,
    ProcessEvent,
    S3Object,
    S3Request,
    Sample,
)
from harness.checks.registry import CHECKS, CheckSpec, Param, load_all, run_check
from harness.checks.result import CheckResult

__all__ = [
    "CHECKS",
    "CheckResult",
    "CheckSpec",
    "LogLine",
    "Observations",
    "Param",
    "ProcessEvent",
    "S3Object",
    "S3Request",
    "Sample",
    "load_all",
    "run_check",
]
