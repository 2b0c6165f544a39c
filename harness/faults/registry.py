"""Fault kinds by name, with their parameter schemas: what scenarios may say and `harness list`
prints.

`validate_fault_spec({"kind": "latency", "target": "client", "latency_ms": 200})` checks an entry
without an environment (the scenario loader calls it at load time); `create_fault(spec, env)`
builds the fault for a running environment and refuses kinds the environment cannot cause.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from harness.faults.base import Fault, FaultSpecError, UnsupportedFault
from harness.faults.container import CONTAINER_FAULTS
from harness.faults.failpoint import Failpoint
from harness.faults.network import NETWORK_FAULTS
from harness.faults.params import Param, validate_params
from harness.faults.process import PROCESS_FAULTS
from harness.faults.s3 import S3_FAULTS

if TYPE_CHECKING:
    from harness.env.environment import Environment

_ALL_FAULTS: tuple[type[Fault], ...] = (
    *NETWORK_FAULTS,
    *S3_FAULTS,
    *PROCESS_FAULTS,
    *CONTAINER_FAULTS,
    Failpoint,
)
FAULT_KINDS: dict[str, type[Fault]] = {cls.kind: cls for cls in _ALL_FAULTS}


@dataclass(frozen=True)
class FaultSpec:
    """A validated fault entry: kind, target and every parameter (defaults filled in)."""

    kind: str
    target: str
    params: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "target": self.target, **self.params}


def fault_class(kind: str) -> type[Fault]:
    cls = FAULT_KINDS.get(kind)
    if cls is None:
        hint = difflib.get_close_matches(kind, list(FAULT_KINDS), n=1)
        suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise FaultSpecError([f"unknown fault kind {kind!r}{suggestion}; known: {', '.join(FAULT_KINDS)}"])
    return cls


def schema(kind: str) -> tuple[Param, ...]:
    cls = fault_class(kind)
    return (cls.target_param, *cls.params)


def validate_fault_spec(spec: Mapping[str, Any], ignore: Collection[str] = ()) -> FaultSpec:
    """Check one entry; `ignore` names keys that belong to the caller (e.g. "at", "duration").
    Raises FaultSpecError listing every problem."""
    if not isinstance(spec, Mapping):
        raise FaultSpecError([f"a fault must be a mapping with a 'kind', got {type(spec).__name__}"])
    kind = spec.get("kind")
    if not isinstance(kind, str):
        raise FaultSpecError([f"a fault needs a 'kind' (one of {', '.join(FAULT_KINDS)})"])
    cls = fault_class(kind)
    given = {k: v for k, v in spec.items() if k != "kind" and k not in ignore}
    values, errors = validate_params(kind, (cls.target_param, *cls.params), given)
    if not errors:
        errors = cls.cross_check(values)
    if errors:
        raise FaultSpecError(errors)
    target = values.pop(cls.target_param.name)
    return FaultSpec(kind, target, values)


def unsupported_reason(kind: str, env: Environment) -> str | None:
    """Why `env` cannot cause `kind`, or None when it can."""
    unsupported = env.unsupported_faults()
    family = fault_class(kind).family
    return unsupported.get(kind) or (unsupported.get("network") if family == "network" else None)


def create_fault(spec: FaultSpec | Mapping[str, Any], env: Environment) -> Fault:
    """The fault object for a running environment."""
    valid = spec if isinstance(spec, FaultSpec) else validate_fault_spec(spec)
    reason = unsupported_reason(valid.kind, env)
    if reason is not None:
        raise UnsupportedFault(f"{valid.kind} cannot be caused here: {reason}")
    cls = fault_class(valid.kind)
    return cls(env, {cls.target_param.name: valid.target, **valid.params})


def fault_catalog() -> list[dict[str, Any]]:
    """Every kind with its family, summary and parameters, as data (for `harness list --json`)."""
    return [
        {
            "kind": kind,
            "family": cls.family,
            "summary": cls.summary,
            "params": [p.to_json() for p in (cls.target_param, *cls.params)],
        }
        for kind, cls in FAULT_KINDS.items()
    ]


def format_fault_catalog() -> str:
    """The catalogue as text for `harness list`."""
    lines: list[str] = []
    for kind, cls in FAULT_KINDS.items():
        lines.append(f"{kind} [{cls.family}]: {cls.summary}")
        for param in (cls.target_param, *cls.params):
            lines.append(f"    {param.describe()}")
    return "\n".join(lines)
