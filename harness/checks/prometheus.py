"""A small reader of the Prometheus text format: enough to sum counters by name."""

from __future__ import annotations

import math
import re
from typing import Any

_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")


def parse_prometheus(text: str) -> dict[str, float]:
    """`name{labels} value` lines to {"name{labels}": value}; comments and junk are skipped."""
    series: dict[str, float] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = _LINE.match(line)
        if match is None:
            continue
        try:
            value = float(match.group(3))
        except ValueError:
            continue
        if math.isnan(value):
            continue
        series[match.group(1) + (match.group(2) or "")] = value
    return series


def series_name(series: str) -> str:
    return series.split("{", 1)[0]


def metric_sum(data: Any, name_pattern: str) -> float | None:
    """Sum of every series whose name matches; None when none does."""
    if not isinstance(data, dict):
        return None
    regex = re.compile(name_pattern)
    values = [v for k, v in data.items() if regex.search(series_name(k))]
    return sum(values) if values else None


def matching_series(data: Any, name_pattern: str) -> dict[str, float]:
    if not isinstance(data, dict):
        return {}
    regex = re.compile(name_pattern)
    return {k: v for k, v in data.items() if regex.search(series_name(k))}
