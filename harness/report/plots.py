"""The report's plots of latency and heartbeat gaps, and what the timeline shares with them.

Each plot says in its caption what it aggregated or left out. Detail (one bar, one tooltip per
operation) is kept while it is cheap; past that, drawing is per pixel column, which is all a
screen can show anyway, so a 50k-entry history stays a page of a few hundred kilobytes.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.checks.result import CheckResult
from harness.history import History
from harness.report.svg import (
    SERIES_COLOURS,
    TimeAxis,
    esc,
    fault_layer,
    fmt_seconds,
    nice_ticks,
    x_axis,
)

WIDTH = 1200
POINT_CAP = 4000  # latency points drawn one by one; past it, per-column min/median/max
TITLE_CAP = 1500  # tooltips on points, which cost bytes


@dataclass
class Plot:
    """An SVG with the legend and caption lines the page shows beneath it."""

    svg: str
    legend: list[tuple[str, str, str]] = field(default_factory=list)  # (label, colour, shape)
    caption: list[str] = field(default_factory=list)


def natural_key(name: str) -> list[Any]:
    """c2 before c10."""
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)]


def span_of(history: History, checks: Sequence[CheckResult]) -> float:
    """The run time the plots cover: everything recorded, with a little room on the right."""
    last = 0.0
    for seq in (history.ops, history.messages, history.events):
        if seq:
            last = max(last, max(item.time for item in seq))
    for w in history.faults:
        last = max(last, w.start, w.end or 0.0)
    for c in checks:
        if c.detected_at is not None:
            last = max(last, c.detected_at)
    return max(1.0, last * 1.02)


def short(value: object, limit: int = 160) -> str:
    if value is None:
        return ""
    text = value if isinstance(value, str) else json.dumps(value, default=repr, sort_keys=True)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def svg_open(height: float, kind: str, axis: TimeAxis, label: str) -> str:
    return (
        f'<svg class="plot {kind}" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height:.0f}" '
        f'role="img" aria-label="{esc(label)}" data-x0="{axis.left:.1f}" '
        f'data-x1="{axis.left + axis.width:.1f}" data-t1="{axis.t_end:.6f}">'
    )


# latency -------------------------------------------------------------------------------------
def _y_scale(values: Sequence[float], top: float, bottom: float) -> tuple[Any, list[tuple[float, str]], bool]:
    """Log scale when latencies span more than 50 times, else linear from zero; with labelled ticks."""
    hi = max(values)
    positive = [v for v in values if v > 0]
    lo = min(positive) if positive else hi
    if positive and hi / lo > 50:
        # below 100 µs a latency is noise for a network service: that is the floor
        l0, l1 = max(-4, math.floor(math.log10(lo))), math.ceil(math.log10(hi))
        l1 = max(l1, l0 + 1)

        def ylog(v: float) -> float:
            lv = math.log10(max(v, 10.0**l0))
            return bottom - (lv - l0) / (l1 - l0) * (bottom - top)

        return ylog, [(10.0**e, fmt_seconds(10.0**e)) for e in range(l0, l1 + 1)], True
    ticks = nice_ticks(0.0, hi * 1.05 if hi > 0 else 1.0, 5)
    if len(ticks) > 1 and ticks[-1] < hi * 1.05:  # the top tick must be above every point
        ticks.append(round(ticks[-1] + ticks[1] - ticks[0], 10))
    y_max = ticks[-1] if ticks[-1] > 0 else 1.0

    def ylin(v: float) -> float:
        return bottom - v / y_max * (bottom - top)

    return ylin, [(t, fmt_seconds(t) if t else "0") for t in ticks], False


def _y_axis(y: Any, ticks: Sequence[tuple[float, str]], axis: TimeAxis, label: str) -> list[str]:
    out = []
    for value, text in ticks:
        yy = y(value)
        out.append(
            f'<line class="grid" x1="{axis.left:.1f}" y1="{yy:.1f}" x2="{axis.left + axis.width:.1f}" y2="{yy:.1f}"/>'
        )
        out.append(
            f'<text class="tick" x="{axis.left - 6:.1f}" y="{yy + 4:.1f}" text-anchor="end">{esc(text)}</text>'
        )
    out.append(
        f'<text class="axis-label" x="{axis.left - 6:.1f}" y="12" text-anchor="end">{esc(label)}</text>'
    )
    return out


def _marker(shape: str, x: float, y: float, colour: str, title: str | None) -> str:
    tip = f"<title>{title}</title>" if title else ""
    if shape == "fail":
        return (
            f'<path class="pt-fail" d="M{x - 3:.1f} {y - 3:.1f}l6 6M{x - 3:.1f} {y + 3:.1f}l6 -6" '
            f'stroke="{colour}">{tip}</path>'
        )
    if shape == "info":
        return f'<rect class="pt-info" x="{x - 2.5:.1f}" y="{y - 2.5:.1f}" width="5" height="5" stroke="{colour}">{tip}</rect>'
    return f'<circle class="pt-ok" cx="{x:.1f}" cy="{y:.1f}" r="2.2" fill="{colour}">{tip}</circle>'


def latency(history: History, t_end: float) -> Plot:
    """Latency of each completed operation at its invocation time, one colour per operation."""
    axis = TimeAxis(left=80.0, width=WIDTH - 100.0, t_end=t_end)
    pairs = history.pairs()
    points = [(s.time, max(0.0, e.time - s.time), s.f, e.type) for s, e in pairs if e is not None]
    pending = len(pairs) - len(points)
    caption = [f"{len(points)} completed operations; {pending} never completed (not plotted)."]
    return _scatter(history, axis, points, caption, "latency", "operation latency")


def _scatter(
    history: History,
    axis: TimeAxis,
    points: Sequence[tuple[float, float, str, str]],
    caption: list[str],
    kind: str,
    label: str,
) -> Plot:
    top0 = 18.0
    _, header_h = fault_layer(history.faults, axis, top0, top0, max_rows=2)
    top = top0 + header_h + 4
    bottom = top + 220.0
    faults, _ = fault_layer(history.faults, axis, top0, bottom, max_rows=2)
    shading = [p for p in faults if 'class="fault-shade"' in p]
    bars = [p for p in faults if 'class="fault-shade"' not in p]
    height = bottom + 40
    if not points:
        caption.append("Nothing to plot.")
        parts = [svg_open(height, kind, axis, label), *shading, *bars, *x_axis(axis, bottom), "</svg>"]
        return Plot("".join(parts), [], caption)
    y, ticks, log = _y_scale([p[1] for p in points], top, bottom)
    if log:
        caption.append("Log scale: the latencies span more than a factor of 50.")
    by_f: dict[str, list[tuple[float, float, str, str]]] = defaultdict(list)
    for p in points:
        by_f[p[2]].append(p)
    names = sorted(by_f, key=lambda f: (-len(by_f[f]), f))
    colour = {f: SERIES_COLOURS[i % len(SERIES_COLOURS)] for i, f in enumerate(names)}
    body: list[str] = []
    titled = len(points) <= TITLE_CAP
    if len(points) <= POINT_CAP:
        for t, v, f, status in points:
            title = esc(f"{f} {status} {fmt_seconds(v)} at {t:.3f}s") if titled else None
            body.append(_marker(status, axis.x(t), y(v), colour[f], title))
    else:
        caption.append(
            f"More than {POINT_CAP} points: successful operations drawn per pixel pair as a min-max "
            "line with a dot at the median; failed and unknown outcomes drawn one by one."
        )
        for f in names:
            bins: dict[int, list[float]] = defaultdict(list)
            for t, v, _, status in by_f[f]:
                if status == "ok":
                    bins[axis.column(t) // 2].append(v)
            lines, dots = [], []
            for b, vals in sorted(bins.items()):
                x = axis.left + b * 2 + 1
                lines.append(f"M{x:.1f} {y(max(vals)):.1f}V{y(min(vals)):.1f}")
                dots.append(f"M{x - 1:.1f} {y(statistics.median(vals)) - 1:.1f}h2v2h-2z")
            body.append(f'<path class="range" stroke="{colour[f]}" d="{"".join(lines)}"/>')
            body.append(f'<path class="median" fill="{colour[f]}" d="{"".join(dots)}"/>')
        bad = [p for p in points if p[3] != "ok"]
        stride = max(1, math.ceil(len(bad) / TITLE_CAP))
        if stride > 1:
            caption.append(f"{len(bad)} failed or unknown outcomes, {len(bad[::stride])} drawn (sampled).")
        for t, v, f, status in bad[::stride]:
            body.append(
                _marker(status, axis.x(t), y(v), colour[f], esc(f"{f} {status} {fmt_seconds(v)} at {t:.3f}s"))
            )
    parts = [
        svg_open(height, kind, axis, label),
        *shading,
        *_y_axis(y, ticks, axis, "latency"),
        *body,
        *bars,
        *x_axis(axis, bottom),
        f'<line class="cursor" x1="0" y1="{top:.1f}" x2="0" y2="{bottom:.1f}" visibility="hidden"/>',
        f'<text class="cursor-label" x="0" y="{top - 2:.1f}" visibility="hidden"></text>',
        "</svg>",
    ]
    legend = [(f, colour[f], "dot") for f in names]
    legend += [
        ("ok", "#495057", "dot"),
        ("fail", "#495057", "cross"),
        ("info (outcome unknown)", "#495057", "square"),
    ]
    return Plot("".join(parts), legend, caption)


# heartbeat gaps ------------------------------------------------------------------------------
def heartbeat_gaps(history: History, t_end: float) -> Plot:
    """Gap between consecutive heartbeats each client received, at the later heartbeat's time."""
    axis = TimeAxis(left=80.0, width=WIDTH - 100.0, t_end=t_end)
    times: dict[str, list[float]] = defaultdict(list)
    for m in history.received("heartbeat"):
        times[m.process].append(m.time)
    series: dict[str, list[tuple[float, float]]] = {}
    for proc, ts in times.items():
        ts.sort()
        series[proc] = [(b, b - a) for a, b in itertools.pairwise(ts)]
    series = {p: s for p, s in series.items() if s}
    top0 = 18.0
    _, header_h = fault_layer(history.faults, axis, top0, top0, max_rows=2)
    top = top0 + header_h + 4
    bottom = top + 200.0
    faults, _ = fault_layer(history.faults, axis, top0, bottom, max_rows=2)
    shading = [p for p in faults if 'class="fault-shade"' in p]
    bars = [p for p in faults if 'class="fault-shade"' not in p]
    height = bottom + 40
    caption = [f"{sum(len(t) for t in times.values())} heartbeats received by {len(times)} clients."]
    if not series:
        caption.append("Fewer than two heartbeats per client: no gap to plot.")
        parts = [
            svg_open(height, "heartbeat", axis, "heartbeat gaps"),
            *shading,
            *bars,
            *x_axis(axis, bottom),
            "</svg>",
        ]
        return Plot("".join(parts), [], caption)
    gaps = [g for s in series.values() for _, g in s]
    y, ticks, _ = _y_scale([max(gaps), 0.0], top, bottom)  # linear: a stall must stand out
    median = statistics.median(gaps)
    body: list[str] = []
    procs = sorted(series, key=natural_key)
    colour = {p: SERIES_COLOURS[i % len(SERIES_COLOURS)] for i, p in enumerate(procs)}
    titled = len(gaps) <= TITLE_CAP
    binned = False
    for p in procs:
        pts = series[p]
        if len(pts) > axis.width / 2:
            binned = True
            best: dict[int, tuple[float, float]] = {}
            for t, g in pts:
                b = axis.column(t) // 2
                if b not in best or g > best[b][1]:
                    best[b] = (t, g)
            pts = [best[b] for b in sorted(best)]
        # a gap is a step from the previous heartbeat to this one: a stall shows as a plateau
        coords = " ".join(f"{axis.x(t - g):.1f},{y(g):.1f} {axis.x(t):.1f},{y(g):.1f}" for t, g in pts)
        body.append(
            f'<polyline class="series" stroke="{colour[p]}" points="{coords}"><title>{esc(p)}</title></polyline>'
        )
        if titled:
            body += [
                f'<circle class="pt-ok" cx="{axis.x(t):.1f}" cy="{y(g):.1f}" r="2" fill="{colour[p]}">'
                f"<title>{esc(p)}: gap {fmt_seconds(g)} ending at {t:.3f}s</title></circle>"
                for t, g in pts
            ]
    my = y(median)
    body.append(
        f'<line class="median-line" x1="{axis.left:.1f}" y1="{my:.1f}" x2="{axis.left + axis.width:.1f}" y2="{my:.1f}"/>'
        f'<text class="tick" x="{axis.left + axis.width - 4:.1f}" y="{my - 4:.1f}" text-anchor="end">'
        f"median {fmt_seconds(median)}</text>"
    )
    if binned:
        caption.append("Clients with many heartbeats: the largest gap per pixel pair is drawn.")
    caption.append(f"Largest gap {fmt_seconds(max(gaps))}; median {fmt_seconds(median)}.")
    parts = [
        svg_open(height, "heartbeat", axis, "heartbeat gaps"),
        *shading,
        *_y_axis(y, ticks, axis, "gap"),
        *body,
        *bars,
        *x_axis(axis, bottom),
        f'<line class="cursor" x1="0" y1="{top:.1f}" x2="0" y2="{bottom:.1f}" visibility="hidden"/>',
        f'<text class="cursor-label" x="0" y="{top - 2:.1f}" visibility="hidden"></text>',
        "</svg>",
    ]
    shown = procs[:20]
    legend = [(p, colour[p], "line") for p in shown]
    if len(procs) > len(shown):
        legend.append((f"+{len(procs) - len(shown)} more clients (colours repeat)", "#adb5bd", "line"))
    return Plot("".join(parts), legend, caption)


__all__ = ["Plot", "heartbeat_gaps", "latency", "span_of"]
