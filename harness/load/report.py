"""The load run's report in reports/<run>/: load.json, junit.xml (one case per threshold, one
per check) and report.html in the scenario reports' style (harness/report: page, SVG helpers,
fault shading), beside Locust's own CSV and HTML in locust/.

The plots are drawn from Locust's per-second CSV history (its percentiles are Locust's current
window, as its UI shows them); totals and thresholds come from its final JSON stats.
"""

from __future__ import annotations

import json
import time
import xml.etree.ElementTree as ET
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.history import FaultWindow
from harness.load.runner import LoadRecord
from harness.report.page import legend_html, page, pill
from harness.report.plots import WIDTH, Plot, svg_open
from harness.report.svg import SERIES_COLOURS, TimeAxis, esc, fault_layer, fmt_num, nice_ticks, x_axis

LEFT, RIGHT, PLOT_H = 70.0, 20.0, 170.0


def load_json(record: LoadRecord) -> dict[str, Any]:
    return {
        "profile": record.params.profile,
        "params": {k: v for k, v in record.params.__dict__.items() if k != "token"},
        "target": record.target,
        "scenario": record.scenario,
        "workers": record.workers,
        "started_at": record.started_at.isoformat(),
        "ended_at": record.ended_at.isoformat(),
        "passed": record.passed,
        "locust_exit": record.locust_exit,
        "requests": {name: s.to_json() for name, s in record.stats.items()},
        "requests_by_method": [s.to_json() for s in record.stats_by_method],
        "failures": record.failures,
        "thresholds": [t.to_json() for t in record.thresholds],
        "checks": [{"name": c.name, "status": c.status, "summary": c.summary} for c in record.checks],
        "faults": [
            {
                "id": w.id,
                "kind": w.kind,
                "target": w.target,
                "params": w.params,
                "start": w.start,
                "end": w.end,
            }
            for w in record.history.faults
        ],
        "history_sample_ops": record.sample_ops,
        "notes": record.notes,
    }


def junit_xml(record: LoadRecord) -> bytes:
    """One test case per threshold (crossed = failure, unknown = skipped) and per check."""
    suite = ET.Element("testsuite", {"name": f"load-{record.params.profile}", "errors": "0"})
    failures = skipped = 0
    for t in record.thresholds:
        case = ET.SubElement(suite, "testcase", {"classname": "load.thresholds", "name": t.threshold.text})
        if t.status == "crossed":
            failures += 1
            ET.SubElement(case, "failure", {"message": t.summary}).text = t.summary
        elif t.status == "unknown":
            skipped += 1
            ET.SubElement(case, "skipped", {"message": t.summary})
    for c in record.checks:
        case = ET.SubElement(suite, "testcase", {"classname": "load.checks", "name": c.name})
        if c.status == "fail":
            failures += 1
            ET.SubElement(case, "failure", {"message": c.summary}).text = c.summary
        elif c.status != "pass":
            skipped += 1
            ET.SubElement(case, "skipped", {"message": c.summary})
    suite.set("tests", str(len(record.thresholds) + len(record.checks)))
    suite.set("failures", str(failures))
    suite.set("skipped", str(skipped))
    suite.set("time", f"{(record.ended_at - record.started_at).total_seconds():.3f}")
    root = ET.Element("testsuites")
    root.append(suite)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def write_load_report(out_dir: Path, record: LoadRecord) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "load.json", "junit": out_dir / "junit.xml", "html": out_dir / "report.html"}
    paths["json"].write_text(json.dumps(load_json(record), indent=2, default=str))
    paths["junit"].write_bytes(junit_xml(record))
    paths["html"].write_text(load_html(record))
    return paths


# plots ---------------------------------------------------------------------------------------
def _series(record: LoadRecord) -> tuple[dict[str, list[dict[str, Any]]], list[tuple[float, int]], float]:
    """Rows per request name on run time (s since the harness's run start), the user count over
    time, and the span to draw."""
    rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
    users: list[tuple[float, int]] = []
    t_end = 1.0
    for row in record.series:
        t = row["timestamp"] - record.wall_t0
        t_end = max(t_end, t)
        if row["name"] == "Aggregated":
            users.append((t, row["users"]))
        else:
            rows[f"{row['method']} {row['name']}"].append({**row, "t": t})
    for w in record.history.faults:
        t_end = max(t_end, w.start, w.end or 0.0)
    return dict(rows), users, t_end * 1.02


def line_plot(
    lines: dict[str, list[tuple[float, float]]],
    faults: Sequence[FaultWindow],
    t_end: float,
    y_label: str,
    kind: str,
    caption: str,
) -> Plot:
    """Lines over run time with the fault windows shaded under them."""
    axis = TimeAxis(LEFT, WIDTH - LEFT - RIGHT, t_end)
    layer, header_h = fault_layer(faults, axis, 4.0, 4.0 + PLOT_H + 40)
    top, bottom = 8.0 + header_h, 8.0 + header_h + PLOT_H
    layer, _ = fault_layer(faults, axis, 4.0, bottom)
    values = [v for pts in lines.values() for _, v in pts]
    hi = max(values) if values else 1.0
    ticks = nice_ticks(0.0, hi * 1.05 if hi > 0 else 1.0, 5)
    y_max = ticks[-1] if ticks and ticks[-1] > 0 else 1.0

    def y(v: float) -> float:
        return bottom - min(v, y_max) / y_max * (bottom - top)

    height = bottom + 40
    parts = [svg_open(height, kind, axis, y_label)]
    for value in ticks:
        parts.append(
            f'<line class="grid" x1="{LEFT}" y1="{y(value):.1f}" x2="{LEFT + axis.width:.1f}" y2="{y(value):.1f}"/>'
        )
        parts.append(
            f'<text class="tick" x="{LEFT - 6}" y="{y(value) + 4:.1f}" text-anchor="end">{fmt_num(value)}</text>'
        )
    parts.append(
        f'<text class="axis-label" x="{LEFT - 6}" y="{top - 2:.1f}" text-anchor="end">{esc(y_label)}</text>'
    )
    parts += [p for p in layer if "fault-shade" in p]
    legend = []
    for i, (label, pts) in enumerate(lines.items()):
        colour = SERIES_COLOURS[i % len(SERIES_COLOURS)]
        legend.append((label, colour, "dot"))
        if not pts:
            continue
        path = " ".join(f"{'M' if j == 0 else 'L'}{axis.x(t):.1f} {y(v):.1f}" for j, (t, v) in enumerate(pts))
        parts.append(
            f'<path d="{path}" fill="none" stroke="{colour}" stroke-width="1.6"><title>{esc(label)}</title></path>'
        )
    parts += [p for p in layer if "fault-shade" not in p]
    parts += x_axis(axis, bottom)
    parts.append("</svg>")
    return Plot("".join(parts), legend, [caption])


def _section(ident: str, title: str, plot: Plot, intro: str) -> str:
    captions = "".join(f'<p class="caption">{esc(line)}</p>' for line in plot.caption)
    return (
        f'<section class="card" id="{ident}"><h2>{esc(title)}</h2><p class="caption">{esc(intro)}</p>'
        f"{plot.svg}{legend_html(plot.legend)}{captions}</section>"
    )


def _table(head: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    th = "".join(f"<th>{esc(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f} ms"


def load_html(record: LoadRecord) -> str:
    rows, users, t_end = _series(record)
    faults = record.history.faults
    verdict = "pass" if record.passed else "fail"
    status_of = {"held": "pass", "crossed": "fail", "unknown": "unknown"}
    verdicts = _table(
        ["", "what", "result"],
        [[pill(status_of[t.status]), esc(t.threshold.text), esc(t.summary)] for t in record.thresholds]
        + [[pill(c.status), esc(c.name), esc(c.summary)] for c in record.checks],
    )
    requests = _table(
        ["method", "name", "requests", "failures", "req/s", "p50", "p95", "p99", "max"],
        [
            [esc(s.method), esc(s.name), s.requests, s.failures, f"{s.rps:.1f}", _ms(s.percentile(0.5)),
             _ms(s.percentile(0.95)), _ms(s.percentile(0.99)), _ms(s.max_ms)]
            for s in record.stats_by_method
        ],
    )  # fmt: skip
    failures = (
        _table(
            ["code", "method", "name", "count"],
            [
                [esc(f["error"]), esc(f["method"]), esc(f["name"]), f["count"]]
                for f in sorted(record.failures, key=lambda f: -f["count"])
            ],
        )
        if record.failures
        else '<p class="caption">No request failed.</p>'
    )
    rps = line_plot(
        {name: [(r["t"], r["Requests/s"] or 0.0) for r in pts] for name, pts in rows.items()},
        faults, t_end, "requests/s", "rps", "Locust's current requests per second, per request name.",
    )  # fmt: skip
    user_plot = line_plot(
        {"users": [(t, float(n)) for t, n in users]},
        faults,
        t_end,
        "users",
        "users",
        "Users running, as the profile shaped them.",
    )
    sections = [
        f'<section class="card" id="verdicts"><h2>Thresholds and checks</h2>{verdicts}</section>',
        _section("rps", "Requests per second", rps, "Shaded: fault windows of the scenario's timeline."),
        _section("users", "Users", user_plot, "The profile's user count over time."),
    ]
    for i, (name, pts) in enumerate(sorted(rows.items())):
        plot = line_plot(
            # a 0 in a second without requests is "nothing measured", not a fast response
            {q: [(r["t"], r[q]) for r in pts if r[q] is not None and (r[q] > 0 or r["Requests/s"])] for q in ("50%", "95%", "99%")},
            faults, t_end, "ms", "latency",
            "Locust's current percentiles (its UI's numbers: the last 2 s of requests), one point a second.",
        )  # fmt: skip
        sections.append(
            _section(f"latency-{i}", f"{name}: p50 / p95 / p99 over time", plot, "Response time in ms.")
        )
    sections += [
        f'<section class="card" id="requests"><h2>Requests (final stats)</h2>{requests}</section>',
        f'<section class="card" id="failures"><h2>Failures by code</h2>{failures}</section>',
        _facts(record),
        f'<p class="caption">Written {esc(time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()))} by sync-chaos-harness. '
        'Locust\'s own report: <a href="locust/locust.html">locust/locust.html</a>, CSV in locust/.</p>',
    ]
    banner = (
        f'<header class="banner {verdict}"><h1>{verdict.upper()} load {esc(record.params.profile)}</h1>'
        f"<p>{esc(record.params.users)} users, {esc(fmt_num(record.params.duration_s))} s, target "
        f"{esc(record.target)}{', scenario ' + esc(record.scenario) if record.scenario else ''}</p></header>"
    )
    return page(f"{verdict.upper()} load {record.params.profile}", banner, "".join(sections))


def _facts(record: LoadRecord) -> str:
    p = record.params
    facts = [
        ("profile", p.profile), ("users", p.users), ("spawn rate", p.spawn_rate), ("duration", f"{p.duration_s:g} s"),
        ("rate per user", f"{p.rate:g}/s"), ("databases", p.databases), ("mix", ", ".join(f"{k}={v}" for k, v in p.mix.items())),
        ("Locust workers", record.workers or "one process"), ("Locust exit code", record.locust_exit),
        ("history sample", f"{record.sample_ops} operations (at most {p.history_max_ops} per Locust process)"),
    ]  # fmt: skip
    notes = "".join(f"<li>{esc(n)}</li>" for n in record.notes)
    return (
        '<section class="card" id="facts"><h2>Run</h2>'
        + _table(["", ""], [[esc(k), esc(v)] for k, v in facts])
        + (f"<h3>Notes</h3><ul>{notes}</ul>" if notes else "")
        + "</section>"
    )
