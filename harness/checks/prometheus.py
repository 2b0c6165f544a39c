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


def histogram_part(name: str, names: set[str]) -> bool:
    """A `_bucket` series, or the `_sum`/`_count` of a histogram or summary (it has `_bucket`s or
    quantiles beside it): parts of one distribution, never counts of events to add up."""
    if name.endswith("_bucket"):
        return True
    for suffix in ("_sum", "_count"):
        if name.endswith(suffix):
            base = name[: -len(suffix)]
            return f"{base}_bucket" in names or base in names
    return False


def metric_sum(data: Any, name_pattern: str) -> float | None:
    """Sum of every counter or gauge series whose name matches (histogram and summary parts are
    left out: adding buckets, sums and counts together means nothing); None when none does."""
    if not isinstance(data, dict):
        return None
    regex = re.compile(name_pattern)
    names = {series_name(k) for k in data}
    values = [
        v
        for k, v in data.items()
        if regex.search(series_name(k)) and not histogram_part(series_name(k), names)
    ]
    return sum(values) if values else None


def matching_series(data: Any, name_pattern: str) -> dict[str, float]:
    if not isinstance(data, dict):
        return {}
    regex = re.compile(name_pattern)
    return {k: v for k, v in data.items() if regex.search(series_name(k))}
