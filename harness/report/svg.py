"""Small SVG helpers shared by the plots: escaping, scales, axes, fault shading.

Hand-written SVG keeps the report self-contained (no plotting library, no CDN) and lets the
writer decide what to aggregate so that a 50k-entry history still renders quickly.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from harness.history import FaultWindow

_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")

FAULT_COLOURS = ["#7048e8", "#e8590c", "#1c7ed6", "#d6336c", "#0ca678", "#a0522d"]
SERIES_COLOURS = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
]  # fmt: skip
OUTCOME_COLOURS = {"ok": "#37b24d", "fail": "#e03131", "info": "#f59f00", "pending": "#adb5bd"}
CHAR_W = 6.2  # average glyph width at 11px, to keep labels from colliding


def esc(value: object, limit: int | None = None) -> str:
    """Text safe inside HTML/SVG text and attributes: untrusted server strings go through here."""
    text = str(value)
    if limit is not None and len(text) > limit:
        text = text[: limit - 1] + "…"
    return html.escape(_CONTROL.sub("\ufffd", text), quote=True)


def fmt_num(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".") if value != int(value) else str(int(value))


def fmt_seconds(value: float) -> str:
    """A duration for people: 850 µs, 12.3 ms, 4.21 s, 3 min 5 s."""
    if value < 0.001:
        return f"{value * 1e6:.0f} µs"
    if value < 1:
        return f"{value * 1e3:.1f} ms"
    if value < 120:
        return f"{value:.2f} s"
    return f"{int(value // 60)} min {value % 60:.0f} s"


def nice_ticks(lo: float, hi: float, count: int = 8) -> list[float]:
    """Round tick values (1, 2, 5 times 10^k steps) covering [lo, hi]."""
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / max(1, count)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step) * step
    ticks: list[float] = []
    value = first
    while value <= hi + step * 1e-9:
        ticks.append(round(value, 10))
        value += step
    return ticks


@dataclass(frozen=True)
class TimeAxis:
    """Maps run time (s) to x pixels inside [left, left + width]."""

    left: float
    width: float
    t_end: float

    def x(self, t: float) -> float:
        clamped = min(max(t, 0.0), self.t_end)
        return self.left + clamped / self.t_end * self.width

    def column(self, t: float) -> int:
        """The 1-pixel column a time falls in, for per-pixel aggregation."""
        return min(int(self.width) - 1, max(0, int(self.x(t) - self.left)))

    def t_of_column(self, col: int) -> float:
        return col / self.width * self.t_end


def x_axis(axis: TimeAxis, y: float, label: str = "time since run start (s)") -> list[str]:
    out = [
        f'<line class="axis" x1="{axis.left:.1f}" y1="{y:.1f}" x2="{axis.left + axis.width:.1f}" y2="{y:.1f}"/>'
    ]
    for t in nice_ticks(0.0, axis.t_end, 10):
        x = axis.x(t)
        out.append(f'<line class="axis" x1="{x:.1f}" y1="{y:.1f}" x2="{x:.1f}" y2="{y + 4:.1f}"/>')
        out.append(
            f'<text class="tick" x="{x:.1f}" y="{y + 15:.1f}" text-anchor="middle">{fmt_num(t)}</text>'
        )
    out.append(
        f'<text class="axis-label" x="{axis.left + axis.width:.1f}" y="{y + 28:.1f}" '
        f'text-anchor="end">{esc(label)}</text>'
    )
    return out


def fault_label(window: FaultWindow) -> str:
    params = ", ".join(f"{k}={v}" for k, v in list(window.params.items())[:3])
    return f"#{window.id} {window.kind} @ {window.target}" + (f" ({params})" if params else "")


def pack_rows(spans: Sequence[tuple[float, float]], max_rows: int) -> list[int]:
    """Greedy interval packing: the row each span goes in so that labels do not overlap."""
    ends: list[float] = []
    rows: list[int] = []
    for start, end in spans:
        for i, row_end in enumerate(ends):
            if row_end + 4 <= start:
                ends[i] = end
                rows.append(i)
                break
        else:
            if len(ends) < max_rows:
                ends.append(end)
                rows.append(len(ends) - 1)
            else:
                i = min(range(len(ends)), key=ends.__getitem__)
                ends[i] = max(ends[i], end)
                rows.append(i)
    return rows


def fault_layer(
    faults: Sequence[FaultWindow], axis: TimeAxis, header_top: float, bottom: float, max_rows: int = 4
) -> tuple[list[str], float]:
    """Fault windows as labelled bars in a header and shading down to `bottom`.

    Returns the SVG parts and the header height, so the caller can place what goes below.
    The caller draws the shading over its backgrounds and under its data, so data stays on top.
    """
    if not faults:
        return [], 0.0
    ordered = sorted(faults, key=lambda w: w.start)
    spans = []
    for w in ordered:
        x0 = axis.x(w.start)
        x1 = axis.x(w.end if w.end is not None else axis.t_end)
        spans.append((x0, max(x1, x0 + len(fault_label(w)) * CHAR_W * 0.9 + 6)))
    rows = pack_rows(spans, max_rows)
    row_h = 16.0
    header_h = (max(rows) + 1) * row_h + 4
    shade: list[str] = []
    bars: list[str] = []
    for w, row in zip(ordered, rows, strict=True):
        colour = FAULT_COLOURS[(w.id - 1) % len(FAULT_COLOURS)]
        x0 = axis.x(w.start)
        x1 = axis.x(w.end if w.end is not None else axis.t_end)
        width = max(x1 - x0, 2.0)
        ongoing = " (still in force at the end)" if w.end is None else ""
        end_text = f"{w.end:.3f}" if w.end is not None else "end"
        title = esc(f"fault {fault_label(w)}: {w.start:.3f}s - {end_text}{ongoing}")
        top = header_top + header_h
        shade.append(
            f'<rect class="fault-shade" x="{x0:.1f}" y="{top:.1f}" width="{width:.1f}" '
            f'height="{max(bottom - top, 0):.1f}" fill="{colour}"><title>{title}</title></rect>'
        )
        y = header_top + row * row_h
        bars.append(
            f'<g class="fault"><rect x="{x0:.1f}" y="{y:.1f}" width="{width:.1f}" height="{row_h - 3:.1f}" '
            f'rx="2" fill="{colour}" fill-opacity="0.18" stroke="{colour}"/>'
            f'<text class="fault-label" x="{x0 + 3:.1f}" y="{y + 10:.1f}" fill="{colour}">'
            f"{esc(fault_label(w), 80)}</text><title>{title}</title></g>"
        )
        # edges on top of the data, so a window stays visible through a dense plot
        edges = [x0] if w.end is None else [x0, x1]
        bars += [
            f'<line class="fault-edge" x1="{x:.1f}" y1="{top:.1f}" x2="{x:.1f}" y2="{bottom:.1f}" '
            f'stroke="{colour}"/>'
            for x in edges
        ]
    return shade + bars, header_h
