"""Parameter schemas of faults: types, defaults, bounds and a sentence for `harness list`.

The scenario loader validates a fault entry against these before anything starts, so a typo in
a scenario is a clear error at load time, not a failure halfway through a run.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()

_TYPE_NAMES = {int: "integer", float: "number", str: "string", bool: "boolean", list: "list of strings"}


@dataclass(frozen=True)
class Param:
    """One parameter of a fault kind."""

    name: str
    type: type
    description: str
    default: Any = REQUIRED
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    nullable: bool = False
    pattern: str | None = None  # regex a string must match in full

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def type_name(self) -> str:
        name = _TYPE_NAMES.get(self.type, self.type.__name__)
        return f"{name} or null" if self.nullable else name

    def describe(self) -> str:
        parts = [self.type_name()]
        if self.choices:
            parts.append("one of " + ", ".join(map(str, self.choices)))
        if self.minimum is not None or self.maximum is not None:
            lo = "" if self.minimum is None else f"{self.minimum:g} <= "
            hi = "" if self.maximum is None else f" <= {self.maximum:g}"
            parts.append(f"{lo}{self.name}{hi}")
        parts.append("required" if self.required else f"default {self.default!r}")
        return f"{self.name} ({'; '.join(parts)}): {self.description}"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type_name(),
            "required": self.required,
            "default": None if self.required else self.default,
            "choices": list(self.choices) if self.choices else None,
            "minimum": self.minimum,
            "maximum": self.maximum,
            "description": self.description,
        }

    def check(self, value: Any) -> tuple[Any, str | None]:
        """(normalised value, None) or (value, error message)."""
        if value is None:
            return (None, None) if self.nullable else (value, f"{self.name} must be a {self.type_name()}")
        if self.type is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if self.type is list:
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                return value, f"{self.name} must be a list of strings, got {value!r}"
        elif not isinstance(value, self.type) or (self.type is int and isinstance(value, bool)):
            return value, f"{self.name} must be a {self.type_name()}, got {type(value).__name__} {value!r}"
        if self.choices is not None:
            items = value if isinstance(value, list) else [value]
            bad = [v for v in items if v not in self.choices]
            if bad:
                return value, f"{self.name}: {bad[0]!r} is not one of {', '.join(map(str, self.choices))}"
        if isinstance(value, int | float) and not isinstance(value, bool):
            if self.minimum is not None and value < self.minimum:
                return value, f"{self.name} must be >= {self.minimum:g}, got {value}"
            if self.maximum is not None and value > self.maximum:
                return value, f"{self.name} must be <= {self.maximum:g}, got {value}"
        if self.pattern is not None and isinstance(value, str) and not re.fullmatch(self.pattern, value):
            return value, f"{self.name} {value!r} is not valid ({self.description})"
        return value, None


def validate_params(
    kind: str, schema: Sequence[Param], given: Mapping[str, Any]
) -> tuple[dict[str, Any], list[str]]:
    """Fill defaults and check every given value; (params, errors)."""
    known = {p.name: p for p in schema}
    out: dict[str, Any] = {}
    errors: list[str] = []
    for name in given:
        if name not in known:
            hint = difflib.get_close_matches(name, list(known), n=1)
            suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
            errors.append(
                f"{kind}: unknown parameter {name!r}{suggestion}; it takes {', '.join(known) or 'none'}"
            )
    for param in schema:
        if param.name in given:
            value, error = param.check(given[param.name])
            if error:
                errors.append(f"{kind}: {error}")
            out[param.name] = value
        elif param.required:
            errors.append(f"{kind}: missing required parameter {param.name!r} ({param.description})")
        else:
            out[param.name] = param.default
    return out, errors
