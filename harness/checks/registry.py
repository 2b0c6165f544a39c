"""The checks by name: their parameters (bounds) with defaults and a one-line description, so
the scenario loader can validate a scenario's `checks:` section and `harness list` can show
them, with what excuses their misses (`ExcusePolicy`, harness/checks/excuses.py). A check is a
function (history, observations, params) -> CheckResult."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.checks.excuses import DEFAULT_POLICY, ExcusePolicy
from harness.checks.observations import Observations
from harness.checks.result import CheckResult
from harness.history import History

CheckFn = Callable[[History, Observations, dict[str, Any]], CheckResult]


@dataclass(frozen=True, slots=True)
class Param:
    default: Any
    description: str


@dataclass(frozen=True, slots=True)
class CheckSpec:
    name: str
    family: str
    description: str
    fn: CheckFn
    params: dict[str, Param] = field(default_factory=dict)
    # What excuses this check's misses; () when no fault excuses anything it judges.
    excuses: tuple[ExcusePolicy, ...] = (DEFAULT_POLICY,)

    def defaults(self) -> dict[str, Any]:
        return {k: p.default for k, p in self.params.items()}

    def bind(self, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Defaults with the scenario's overrides; an unknown parameter is an error."""
        unknown = set(overrides or {}) - set(self.params)
        if unknown:
            raise ValueError(
                f"check {self.name!r} has no parameter {', '.join(sorted(unknown))}; "
                f"known: {', '.join(sorted(self.params)) or 'none'}"
            )
        return self.defaults() | dict(overrides or {})


CHECKS: dict[str, CheckSpec] = {}


def register(
    name: str,
    family: str,
    description: str,
    excuses: Sequence[ExcusePolicy] | None = None,
    **params: Param,
) -> Callable[[CheckFn], CheckFn]:
    """Register a check. `excuses` declares which causes excuse which of its misses (listed by
    `harness list`); a check that declares none is listed with `DEFAULT_POLICY` (network,
    process and failpoint faults; never an object-store fault, nor a delay)."""
    policies = (DEFAULT_POLICY,) if excuses is None else tuple(excuses)

    def decorate(fn: CheckFn) -> CheckFn:
        if name in CHECKS:
            raise ValueError(f"check {name!r} registered twice")
        CHECKS[name] = CheckSpec(name, family, description, fn, dict(params), policies)
        return fn

    return decorate


def run_check(
    name: str, history: History, obs: Observations, params: Mapping[str, Any] | None = None
) -> CheckResult:
    """Run one check by name with the scenario's bounds. A check that raises is reported as
    `unknown` with the exception, so one broken check cannot hide the others' verdicts."""
    load_all()
    if name not in CHECKS:
        raise KeyError(f"unknown check {name!r}; known: {', '.join(sorted(CHECKS))}")
    spec = CHECKS[name]
    bound = spec.bind(params)
    try:
        return spec.fn(history, obs, bound)
    except Exception as exc:  # a checker bug must be visible, not fatal to the run
        return CheckResult(name, "unknown", f"check raised {type(exc).__name__}: {exc}", bounds=bound)


def excuse_table() -> str:
    """Every check's excuse policies as the Markdown table docs/checks.md carries."""
    rows = ["| check | miss | excused by |", "|---|---|---|"]
    for spec in sorted(load_all().values(), key=lambda c: c.name):
        for policy in spec.excuses:
            causes = ", ".join(f"`{c}`" for c in sorted(policy.excused_by))
            rows.append(f"| `{spec.name}` | {policy.what} | {causes} |")
        if not spec.excuses:
            rows.append(f"| `{spec.name}` | — | nothing |")
    return "\n".join(rows)


def load_all() -> dict[str, CheckSpec]:
    """Import every check module (they register themselves) and return the registry."""
    importlib.import_module("harness.checks.families")  # importing registers every check

    return CHECKS
