"""The report's three pictures: the Jepsen-style timeline, latency, and heartbeat gaps.

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
from harness.history import History, Message, Op
from harness.report.svg import (
    CHAR_W,
    OUTCOME_COLOURS,
    SERIES_COLOURS,
    TimeAxis,
    esc,
    fault_layer,
    fmt_num,
    fmt_seconds,
    nice_ticks,
    pack_rows,
    x_axis,
)

WIDTH = 1200
OP_DETAIL_CAP = 2000  # operations drawn one by one with a tooltip; past it, per pixel column
TICK_CAP = 5000  # message ticks drawn (after de-duplication per lane, type and pixel)
EVENT_CAP = 1500
POINT_CAP = 4000  # latency points drawn one by one; past it, per-column min/median/max
TITLE_CAP = 1500  # tooltips on points, which cost bytes
RARE_TYPES = ("error", "notice")  # always drawn one by one, with their content as tooltip
MESSAGE_COLOURS = {
    "push_changes": "#1c7ed6",
    "heartbeat": "#868e96",
    "notice": "#9c36b5",
    "error": "#c92a2a",
    "presence": "#0c8599",
    "changes": "#5c940d",
    "apply_result": "#2f9e44",
    "snapshot_chunk": "#e67700",
    "snapshot_complete": "#d9480f",
    "handshake_ack": "#495057",
    "pong": "#ced4da",
}
OTHER_MESSAGE_COLOUR = "#adb5bd"
PRIORITY = {"ok": 1, "pending": 2, "info": 3, "fail": 4}  # worst shown when aggregated
STATUS_OF = {v: k for k, v in PRIORITY.items()}


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


def op_pairs(history: History) -> list[tuple[Op, Op | None]]:
    return history.pairs()


def _short(value: object, limit: int = 160) -> str:
    if value is None:
        return ""
    text = value if isinstance(value, str) else json.dumps(value, default=repr, sort_keys=True)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _message_title(m: Message) -> str:
    p = m.payload
    keys = ("code", "severity", "component", "message", "fatal", "seq", "backend")
    shown = {k: p[k] for k in keys if k in p}
    return f"{m.process} {m.type} at {m.time:.3f}s {_short(shown or p)}"


def _svg_open(height: float, kind: str, axis: TimeAxis, label: str) -> str:
    return (
        f'<svg class="plot {kind}" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height:.0f}" '
        f'role="img" aria-label="{esc(label)}" data-x0="{axis.left:.1f}" '
        f'data-x1="{axis.left + axis.width:.1f}" data-t1="{axis.t_end:.6f}">'
    )


# timeline ------------------------------------------------------------------------------------
def timeline(history: History, checks: Sequence[CheckResult], t_end: float) -> Plot:
    """One lane per client: operations as bars, received messages as ticks, connection events,
    fault windows shaded across all lanes, and where each failing check first saw a violation."""
    axis = TimeAxis(left=130.0, width=WIDTH - 150.0, t_end=t_end)
    procs = sorted(history.processes(), key=natural_key)
    lane_of = {p: i for i, p in enumerate(procs)}
    lane_h = 30.0 if len(procs) <= 30 else max(10.0, 900.0 / len(procs))
    top = 6.0
    caption: list[str] = []

    # the header height depends on the fault labels, so lay them out first
    _, header_h = fault_layer(history.faults, axis, top, top)
    lanes_top = top + header_h
    lanes_bottom = lanes_top + lane_h * max(1, len(procs))
    faults, _ = fault_layer(history.faults, axis, top, lanes_bottom)

    body: list[str] = []
    for i, p in enumerate(procs):
        y = lanes_top + i * lane_h
        if i % 2 == 0:
            body.append(
                f'<rect class="lane" x="{axis.left:.1f}" y="{y:.1f}" width="{axis.width:.1f}" height="{lane_h:.1f}"/>'
            )
        body.append(
            f'<text class="lane-label" x="{axis.left - 8:.1f}" y="{y + lane_h * 0.62:.1f}" '
            f'text-anchor="end">{esc(p, 18)}<title>{esc(p)}</title></text>'
        )
    shading = [part for part in faults if 'class="fault-shade"' in part]
    bars = [part for part in faults if 'class="fault-shade"' not in part]

    pairs = op_pairs(history)
    band = (lane_h * 0.42, lane_h * 0.48)  # offset and height of the operation band in a lane
    if len(pairs) <= OP_DETAIL_CAP:
        body += _op_bars(pairs, lane_of, lanes_top, lane_h, band, axis)
    else:
        body += _op_columns(pairs, lane_of, lanes_top, lane_h, band, axis)
        caption.append(
            f"{len(pairs)} operations, more than {OP_DETAIL_CAP}: drawn per pixel column, each column "
            "showing the worst outcome in progress (fail > info > no completion > ok)."
        )
    ticks, tick_note = _message_ticks(history.received(), lane_of, lanes_top, lane_h, axis)
    body += ticks
    caption.append(tick_note)
    body += _event_marks(history, lane_of, lanes_top, lane_h, band, axis, caption)

    # where each failing check first saw a violation, labelled beneath the axis
    detections = sorted(
        (c for c in checks if c.status == "fail" and c.detected_at is not None),
        key=lambda c: c.detected_at or 0.0,
    )
    axis_y = lanes_bottom + 4
    marks: list[str] = []
    spans = [
        (axis.x(c.detected_at or 0.0), axis.x(c.detected_at or 0.0) + len(c.name) * CHAR_W + 14)
        for c in detections
    ]
    rows = pack_rows(spans, 4)
    for c, row in zip(detections, rows, strict=True):
        x = axis.x(c.detected_at or 0.0)
        label_y = axis_y + 44 + row * 15
        title = esc(f"{c.name} failed; first violation at {c.detected_at:.3f}s: {c.summary}")
        marks.append(
            f'<g class="detection"><line x1="{x:.1f}" y1="{lanes_top:.1f}" x2="{x:.1f}" y2="{label_y - 10:.1f}"/>'
            f'<text x="{x + 3:.1f}" y="{label_y:.1f}">✗ {esc(c.name, 60)}</text><title>{title}</title></g>'
        )
    height = axis_y + 36 + (max(rows) + 1) * 15 + 8 if detections else axis_y + 40
    parts = [
        _svg_open(height, "timeline", axis, "timeline of clients, messages and fault windows"),
        *shading,
        *body,
        *bars,
        *x_axis(axis, axis_y),
        *marks,
        f'<line class="cursor" x1="0" y1="{lanes_top:.1f}" x2="0" y2="{axis_y:.1f}" visibility="hidden"/>',
        f'<text class="cursor-label" x="0" y="{lanes_top - 2:.1f}" visibility="hidden"></text>',
        "</svg>",
    ]
    legend = [(f"op {k}", v, "bar") for k, v in OUTCOME_COLOURS.items() if k != "pending"]
    legend.append(("op without completion", OUTCOME_COLOURS["pending"], "bar"))
    seen_types = {m.type for m in history.received()}
    legend += [(t, c, "tick") for t, c in MESSAGE_COLOURS.items() if t in seen_types]
    if seen_types - MESSAGE_COLOURS.keys():
        legend.append(("other message", OTHER_MESSAGE_COLOUR, "tick"))
    legend += [("connection open", "#2b8a3e", "up"), ("connection close", "#a61e4d", "down")]
    if not procs:
        caption.append("The history has no client entries.")
    return Plot("".join(parts), legend, caption)


def _op_title(start: Op, end: Op | None) -> str:
    if end is None:
        return f"{start.process} {start.f} invoked at {start.time:.3f}s, no completion recorded {_short(start.value)}"
    took = fmt_seconds(max(0.0, end.time - start.time))
    text = f"{start.process} {start.f} {end.type} {start.time:.3f}s → {end.time:.3f}s ({took})"
    if end.error:
        text += f" error={end.error}"
    detail = _short(end.value if end.value is not None else start.value)
    return f"{text} {detail}" if detail else text


def _op_bars(
    pairs: Sequence[tuple[Op, Op | None]],
    lane_of: dict[str, int],
    lanes_top: float,
    lane_h: float,
    band: tuple[float, float],
    axis: TimeAxis,
) -> list[str]:
    """Each operation its own bar; concurrent operations of one client share the band in tracks."""
    by_lane: dict[int, list[tuple[Op, Op | None]]] = defaultdict(list)
    for pair in pairs:
        by_lane[lane_of[pair[0].process]].append(pair)
    out: list[str] = []
    for lane, items in by_lane.items():
        items.sort(key=lambda pr: pr[0].time)
        ends = [(pr[1].time if pr[1] else axis.t_end) for pr in items]
        tracks = pack_rows([(axis.x(s.time), axis.x(e)) for (s, _), e in zip(items, ends, strict=True)], 3)
        n_tracks = max(tracks) + 1 if tracks else 1
        track_h = band[1] / n_tracks
        for (start, end), stop, track in zip(items, ends, tracks, strict=True):
            status = end.type if end is not None else "pending"
            x0 = axis.x(start.time)
            width = max(1.5, axis.x(stop) - x0)
            y = lanes_top + lane * lane_h + band[0] + track * track_h
            out.append(
                f'<rect class="op op-{status}" x="{x0:.1f}" y="{y:.1f}" width="{width:.1f}" '
                f'height="{max(track_h - 1, 1):.1f}" fill="{OUTCOME_COLOURS[status]}">'
                f"<title>{esc(_op_title(start, end), 400)}</title></rect>"
            )
    return out


def _op_columns(
    pairs: Sequence[tuple[Op, Op | None]],
    lane_of: dict[str, int],
    lanes_top: float,
    lane_h: float,
    band: tuple[float, float],
    axis: TimeAxis,
) -> list[str]:
    """Per lane and pixel column, the worst outcome in progress, run-length encoded into bars."""
    cols = int(axis.width)
    diff: dict[tuple[int, int], list[int]] = defaultdict(lambda: [0] * (cols + 1))
    for start, end in pairs:
        status = end.type if end is not None else "pending"
        c0 = axis.column(start.time)
        c1 = axis.column(end.time if end is not None else axis.t_end)
        row = diff[(lane_of[start.process], PRIORITY[status])]
        row[c0] += 1
        row[max(c0, c1) + 1] -= 1
    out: list[str] = []
    for lane in sorted({lane for lane, _ in diff}):
        worst = [0] * cols
        for prio in PRIORITY.values():
            row = diff.get((lane, prio))
            if row is None:
                continue
            running = 0
            for c in range(cols):
                running += row[c]
                if running > 0 and prio > worst[c]:
                    worst[c] = prio
        y = lanes_top + lane * lane_h + band[0]
        c = 0
        while c < cols:
            prio = worst[c]
            stop = c
            while stop + 1 < cols and worst[stop + 1] == prio:
                stop += 1
            if prio:
                status = STATUS_OF[prio]
                t0, t1 = axis.t_of_column(c), axis.t_of_column(stop + 1)
                out.append(
                    f'<rect class="op op-{status}" x="{axis.left + c:.1f}" y="{y:.1f}" '
                    f'width="{stop + 1 - c}" height="{band[1]:.1f}" fill="{OUTCOME_COLOURS[status]}">'
                    f"<title>{status} {t0:.2f}s - {t1:.2f}s</title></rect>"
                )
            c = stop + 1
    return out


def _message_ticks(
    received: Sequence[Message], lane_of: dict[str, int], lanes_top: float, lane_h: float, axis: TimeAxis
) -> tuple[list[str], str]:
    """One tick per (client, type, pixel column); rare types individually with their content."""
    first: dict[tuple[int, str, int], Message] = {}
    for m in received:
        first.setdefault((lane_of[m.process], m.type, axis.column(m.time)), m)
    keys = list(first)
    rare = [k for k in keys if k[1] in RARE_TYPES]
    common = [k for k in keys if k[1] not in RARE_TYPES]
    capped = len(keys) > TICK_CAP
    if capped:
        rare = rare[:TICK_CAP]
        room = TICK_CAP - len(rare)
        stride = max(1, math.ceil(len(common) / room)) if room > 0 else 0
        common = common[::stride] if stride else []
    tick_h = lane_h * 0.3
    out: list[str] = []
    paths: dict[tuple[int, str], list[str]] = defaultdict(list)
    for lane, mtype, col in common:
        y = lanes_top + lane * lane_h + lane_h * 0.06
        paths[(lane, mtype)].append(f"M{axis.left + col + 0.5:.1f} {y:.1f}v{tick_h:.1f}")
    for (_lane, mtype), segs in paths.items():
        colour = MESSAGE_COLOURS.get(mtype, OTHER_MESSAGE_COLOUR)
        out.append(
            f'<path class="tick tick-{esc(mtype, 30)}" stroke="{colour}" d="{"".join(segs)}">'
            f"<title>{esc(mtype, 60)}: {len(segs)} ticks</title></path>"
        )
    for key in rare:
        m = first[key]
        lane, mtype, col = key
        y = lanes_top + lane * lane_h + lane_h * 0.02
        out.append(
            f'<rect class="tick tick-{mtype}" x="{axis.left + col - 0.5:.1f}" y="{y:.1f}" width="2.5" '
            f'height="{tick_h + lane_h * 0.08:.1f}" fill="{MESSAGE_COLOURS[mtype]}">'
            f"<title>{esc(_message_title(m), 400)}</title></rect>"
        )
    drawn = len(rare) + len(common)
    note = (
        f"{len(received)} received messages drawn as {drawn} ticks (one per client, type and pixel column)."
    )
    if capped:
        note += (
            f" Capped at {TICK_CAP} ticks: {len(keys) - drawn} ticks were left out, errors and notices "
            "first kept, the other types sampled evenly."
        )
    return out, note


def _event_kind(kind: str) -> str:
    k = kind.lower()
    if any(w in k for w in ("close", "disconnect", "drop", "lost")):
        return "down"
    if "open" in k or "connect" in k:
        return "up"
    return "other"


def _event_marks(
    history: History,
    lane_of: dict[str, int],
    lanes_top: float,
    lane_h: float,
    band: tuple[float, float],
    axis: TimeAxis,
    caption: list[str],
) -> list[str]:
    events = history.events
    shown = events if len(events) <= EVENT_CAP else events[:: math.ceil(len(events) / EVENT_CAP)]
    if len(shown) < len(events):
        caption.append(f"{len(events)} connection events, {len(shown)} drawn (sampled evenly).")
    labelled = len(shown) <= 300
    out: list[str] = []
    size = min(5.0, lane_h * 0.22)
    for ev in shown:
        x = axis.x(ev.time)
        y = lanes_top + lane_of[ev.process] * lane_h + band[0] + band[1] / 2
        shape = _event_kind(ev.kind)
        detail = " ".join(f"{k}={_short(v, 80)}" for k, v in ev.data.items())
        title = esc(f"{ev.process} {ev.kind} at {ev.time:.3f}s {detail}", 400)
        if shape == "up":
            d = f"M{x:.1f} {y - size:.1f}l{size:.1f} {2 * size:.1f}h{-2 * size:.1f}z"
        elif shape == "down":
            d = f"M{x:.1f} {y + size:.1f}l{size:.1f} {-2 * size:.1f}h{-2 * size:.1f}z"
        else:
            d = f"M{x:.1f} {y - size:.1f}l{size:.1f} {size:.1f}l{-size:.1f} {size:.1f}l{-size:.1f} {-size:.1f}z"
        label = ""
        code = ev.data.get("code")
        if labelled and shape == "down" and code is not None:
            label = f'<text class="event-code" x="{x + size + 1:.1f}" y="{y - 1:.1f}">{esc(code, 12)}</text>'
        out.append(f'<g class="event event-{shape}"><path d="{d}"/>{label}<title>{title}</title></g>')
    return out


# latency -------------------------------------------------------------------------------------
def _y_scale(values: Sequence[float], top: float, bottom: float) -> tuple[Any, list[tuple[float, str]], bool]:
    """Log scale when latencies span more than 50 times, else linear from zero; with labelled ticks."""
    hi = max(values)
    positive = [v for v in values if v > 0]
    lo = min(positive) if positive else hi
    if positive and hi / lo > 50:
        l0, l1 = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
        l1 = max(l1, l0 + 1)

        def ylog(v: float) -> float:
            lv = math.log10(max(v, 10.0**l0))
            return bottom - (lv - l0) / (l1 - l0) * (bottom - top)

        return ylog, [(10.0**e, fmt_seconds(10.0**e)) for e in range(l0, l1 + 1)], True
    ticks = nice_ticks(0.0, hi * 1.05 if hi > 0 else 1.0, 5)
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
    points = [(s.time, max(0.0, e.time - s.time), s.f, e.type) for s, e in op_pairs(history) if e is not None]
    pending = sum(1 for _, e in op_pairs(history) if e is None)
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
        parts = [_svg_open(height, kind, axis, label), *shading, *bars, *x_axis(axis, bottom), "</svg>"]
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
        _svg_open(height, kind, axis, label),
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
            _svg_open(height, "heartbeat", axis, "heartbeat gaps"),
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
        coords = " ".join(f"{axis.x(t):.1f},{y(g):.1f}" for t, g in pts)
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
        _svg_open(height, "heartbeat", axis, "heartbeat gaps"),
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


__all__ = ["Plot", "fmt_num", "heartbeat_gaps", "latency", "span_of", "timeline"]
