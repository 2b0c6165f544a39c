"""The Jepsen-style timeline: one lane per client, operations as bars coloured by outcome,
received messages as ticks, connection events, fault windows shaded across every lane.

Detail (one bar and tooltip per operation) is kept while it is cheap; past that, drawing is per
pixel column, which is all a screen can show anyway.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence

from harness.checks.result import CheckResult
from harness.history import History, Message, Op
from harness.report.plots import WIDTH, Plot, natural_key, short, svg_open
from harness.report.svg import (
    CHAR_W,
    OUTCOME_COLOURS,
    TimeAxis,
    esc,
    fault_layer,
    fmt_seconds,
    pack_rows,
    x_axis,
)

OP_DETAIL_CAP = 2000  # operations drawn one by one with a tooltip; past it, per pixel column
TICK_CAP = 5000  # message ticks drawn (after de-duplication per lane, type and pixel)
EVENT_CAP = 1500
EVIDENCE_MARK_CAP = 300
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


def _message_title(m: Message) -> str:
    p = m.payload
    keys = ("code", "severity", "component", "message", "fatal", "seq", "backend")
    shown = {k: p[k] for k in keys if k in p}
    return f"{m.process} {m.type} at {m.time:.3f}s {short(shown or p)}"


def timeline(history: History, checks: Sequence[CheckResult], t_end: float) -> Plot:
    """One lane per client: operations as bars, received messages as ticks, connection events,
    fault windows shaded across all lanes, and where each failing check first saw a violation."""
    axis = TimeAxis(left=130.0, width=WIDTH - 150.0, t_end=t_end)
    procs = sorted(history.processes(), key=natural_key)
    lane_of = {p: i for i, p in enumerate(procs)}
    lane_h = 36.0 if len(procs) <= 10 else 28.0 if len(procs) <= 30 else max(10.0, 840.0 / len(procs))
    top = 6.0
    caption: list[str] = []

    # the header height depends on the fault labels, so lay them out first
    _, header_h = fault_layer(history.faults, axis, top, top)
    lanes_top = top + header_h
    lanes_bottom = lanes_top + lane_h * max(1, len(procs))
    faults, _ = fault_layer(history.faults, axis, top, lanes_bottom)

    # lane backgrounds first, then the fault shading over them (so a window shows across every
    # lane, not only the ones without a background), then the data marks over both
    lanes: list[str] = []
    for i, p in enumerate(procs):
        y = lanes_top + i * lane_h
        if i % 2 == 0:
            lanes.append(
                f'<rect class="lane" x="{axis.left:.1f}" y="{y:.1f}" width="{axis.width:.1f}" height="{lane_h:.1f}"/>'
            )
        lanes.append(
            f'<text class="lane-label" x="{axis.left - 8:.1f}" y="{y + lane_h * 0.62:.1f}" '
            f'text-anchor="end">{esc(p, 18)}<title>{esc(p)}</title></text>'
        )
    shading = [part for part in faults if 'class="fault-shade"' in part]
    bars = [part for part in faults if 'class="fault-shade"' not in part]
    body: list[str] = []

    pairs = history.pairs()
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
    marks += _evidence_marks(checks, lane_of, lanes_top, lane_h, axis, caption)
    height = axis_y + 36 + (max(rows) + 1) * 15 + 8 if detections else axis_y + 40
    parts = [
        svg_open(height, "timeline", axis, "timeline of clients, messages and fault windows"),
        *lanes,
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
    if any(c.status == "fail" and c.evidence for c in checks):
        legend.append(("evidence of a failing check", "#c92a2a", "ring"))
    if not procs:
        caption.append("The history has no client entries.")
    return Plot("".join(parts), legend, caption)


def _op_title(start: Op, end: Op | None) -> str:
    if end is None:
        return f"{start.process} {start.f} invoked at {start.time:.3f}s, no completion recorded {short(start.value)}"
    took = fmt_seconds(max(0.0, end.time - start.time))
    text = f"{start.process} {start.f} {end.type} {start.time:.3f}s → {end.time:.3f}s ({took})"
    if end.error:
        text += f" error={end.error}"
    detail = short(end.value if end.value is not None else start.value)
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
            counts = diff.get((lane, prio))
            if counts is None:
                continue
            running = 0
            for c in range(cols):
                running += counts[c]
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
                shown = STATUS_OF[prio]
                t0, t1 = axis.t_of_column(c), axis.t_of_column(stop + 1)
                out.append(
                    f'<rect class="op op-{shown}" x="{axis.left + c:.1f}" y="{y:.1f}" '
                    f'width="{stop + 1 - c}" height="{band[1]:.1f}" fill="{OUTCOME_COLOURS[shown]}">'
                    f"<title>{shown} {t0:.2f}s - {t1:.2f}s</title></rect>"
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
        common = [common[i * len(common) // room] for i in range(room)] if room > 0 else []
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
        detail = " ".join(f"{k}={short(v, 80)}" for k, v in ev.data.items())
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


def _evidence_marks(
    checks: Sequence[CheckResult],
    lane_of: dict[str, int],
    lanes_top: float,
    lane_h: float,
    axis: TimeAxis,
    caption: list[str],
) -> list[str]:
    """Rings where a failing check's evidence points (items with a `time` and a `process`):
    the reader sees the violation in its context, as in Jepsen's highlighted operations."""
    items = [
        (c, item)
        for c in checks
        if c.status == "fail"
        for item in c.evidence
        if isinstance(item, dict)
        and isinstance(item.get("time"), int | float)
        and item.get("process") in lane_of
    ]
    shown = items[:EVIDENCE_MARK_CAP]
    if len(items) > len(shown):
        caption.append(
            f"{len(items)} evidence items point at the timeline; the first {len(shown)} are ringed."
        )
    out = []
    for c, item in shown:
        x = axis.x(float(item["time"]))
        y = lanes_top + lane_of[str(item["process"])] * lane_h + lane_h / 2
        title = esc(f"{c.name}: {short(item, 300)}", 400)
        out.append(
            f'<circle class="evidence" cx="{x:.1f}" cy="{y:.1f}" r="{max(4.0, lane_h * 0.3):.1f}">'
            f"<title>{title}</title></circle>"
        )
    return out
