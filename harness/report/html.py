"""`report.html` for one run and `index.html` for a suite, for a person to read.

Every value that came from the run (server strings above all) passes through `esc`; the only
unescaped markup is the writer's own.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

from harness.checks.result import CheckResult
from harness.report import plots, timeline
from harness.report.page import legend_html, page, pill
from harness.report.record import RunRecord, iso_utc, safe_name, status_counts, verdict_of
from harness.report.svg import esc, fmt_seconds

EVIDENCE_ROWS = 200  # per check on the page; the journal keeps them all
EVIDENCE_COLUMNS = 12


def _value(value: Any, limit: int = 300) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=repr, sort_keys=True)
    return esc(text, limit)


def evidence_id(check_name: str) -> str:
    """An element id for a check's evidence, safe whatever the check is called."""
    return "evidence-" + safe_name(check_name)


def bounds_html(bounds: Mapping[str, Any]) -> str:
    if not bounds:
        return '<span class="muted">—</span>'
    return "".join(f"<code>{esc(k)}={_value(v, 80)}</code>" for k, v in bounds.items())


def evidence_html(evidence: Sequence[Any]) -> str:
    """A table when the items share a handful of keys, JSON lines otherwise."""
    if not evidence:
        return '<p class="muted">No evidence recorded.</p>'
    shown = evidence[:EVIDENCE_ROWS]
    more = (
        f'<p class="caption">{len(evidence) - len(shown)} more items in journal.json.gz.</p>'
        if len(evidence) > len(shown)
        else ""
    )
    columns: dict[str, None] = {}
    if all(isinstance(item, Mapping) for item in shown):
        for item in shown:
            columns.update(dict.fromkeys(str(k) for k in item))
    if columns and len(columns) <= EVIDENCE_COLUMNS:
        head = "".join(f"<th>{esc(c)}</th>" for c in columns)
        rows = "".join(
            "<tr>" + "".join(f"<td>{_value(item.get(c, ''))}</td>" for c in columns) + "</tr>"
            for item in shown
        )
        return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>{more}"
    lines = "\n".join(_value(item, 2000) for item in shown)
    return f"<pre>{lines}</pre>{more}"


def _checks_table(run: RunRecord) -> str:
    order = {"fail": 0, "unknown": 1, "pass": 2}
    rows = []
    for c in sorted(run.checks, key=lambda c: order.get(c.status, 3)):
        detected = f"{c.detected_at:.3f} s" if c.detected_at is not None else '<span class="muted">—</span>'
        took = run.check_seconds.get(c.name)
        rows.append(
            f'<tr class="row-{esc(c.status)}" data-status="{esc(c.status)}">'
            f'<td><a href="#{evidence_id(c.name)}"><b>{esc(c.name)}</b></a></td>'
            f"<td>{pill(c.status)}</td><td>{esc(c.summary)}</td>"
            f'<td class="bounds">{bounds_html(c.bounds)}</td><td class="num">{detected}</td>'
            f'<td class="num">{fmt_seconds(took) if took is not None else "—"}</td></tr>'
        )
    if not rows:
        rows.append('<tr><td colspan="6" class="muted">No checks ran.</td></tr>')
    return (
        '<section class="card" id="checks"><h2>Checks</h2>'
        '<label class="muted"><input type="checkbox" id="only-failing"> only failing</label>'
        "<table><thead><tr><th>check</th><th>status</th><th>summary</th><th>bounds</th>"
        "<th>detected at</th><th>took</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table></section>"
    )


def _evidence_section(checks: Sequence[CheckResult]) -> str:
    order = {"fail": 0, "unknown": 1, "pass": 2}
    blocks = []
    for c in sorted(checks, key=lambda c: order.get(c.status, 3)):
        blocks.append(
            f'<details class="{esc(c.status)}" id="{evidence_id(c.name)}"><summary>{esc(c.name)} — '
            f"{esc(c.status)} ({len(c.evidence)} evidence items)</summary>"
            f"<p>{esc(c.summary)}</p>{evidence_html(c.evidence)}</details>"
        )
    return '<section class="card" id="evidence"><h2>Evidence</h2>' + "".join(blocks) + "</section>"


def _plot_section(ident: str, title: str, plot: plots.Plot, intro: str) -> str:
    captions = "".join(f'<p class="caption">{esc(line)}</p>' for line in plot.caption)
    return (
        f'<section class="card" id="{ident}"><h2>{esc(title)}</h2><p class="caption">{esc(intro)}</p>'
        f"{plot.svg}{legend_html(plot.legend)}{captions}</section>"
    )


def _faults_table(run: RunRecord) -> str:
    faults = run.history.faults
    if not faults:
        return (
            '<section class="card" id="faults"><h2>Fault windows</h2>'
            '<p class="muted">No fault was applied.</p></section>'
        )
    rows = "".join(
        f"<tr><td>#{w.id}</td><td>{esc(w.kind)}</td><td>{esc(w.target)}</td><td>{_value(w.params)}</td>"
        f'<td class="num">{w.start:.3f} s</td>'
        f'<td class="num">{f"{w.end:.3f} s" if w.end is not None else "still in force"}</td>'
        f'<td class="num">{fmt_seconds(w.end - w.start) if w.end is not None else "—"}</td></tr>'
        for w in faults
    )
    return (
        '<section class="card" id="faults"><h2>Fault windows</h2><table><thead><tr><th>id</th><th>kind</th>'
        "<th>target</th><th>params</th><th>start</th><th>end</th><th>lasted</th></tr></thead>"
        f"<tbody>{rows}</tbody></table></section>"
    )


def _run_facts(run: RunRecord) -> str:
    h = run.history
    facts: list[tuple[str, str]] = [
        ("run id", esc(run.resolved_run_id())),
        ("scenario", esc(run.scenario_name)),
        ("scenario file", esc(run.scenario_path or "—")),
        ("seed", esc(run.seed)),
        ("started", esc(iso_utc(run.started_at))),
        ("ended", esc(iso_utc(run.ended_at))),
        ("duration", esc(fmt_seconds(run.duration_s))),
        ("exit code", esc(run.effective_exit_code)),
        (
            "history",
            esc(
                f"{len(h.ops)} operation entries, {len(h.messages)} messages, {len(h.events)} events, "
                f"{len(h.faults)} fault windows, {len(h.processes())} clients"
            ),
        ),
    ]
    facts += [
        (f"{k} version", esc(v if v is not None else "unknown")) for k, v in run.resolved_versions().items()
    ]
    items = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in facts)
    notes = "".join(f"<li>{esc(n)}</li>" for n in run.notes)
    notes_html = f"<h2 style='margin-top:14px'>Notes</h2><ul>{notes}</ul>" if notes else ""
    return f'<section class="card" id="run"><h2>Run</h2><dl class="kv">{items}</dl>{notes_html}</section>'


def _rerun(run: RunRecord) -> str:
    command = run.rerun_command()
    if command is None:
        how = (
            '<p class="muted">The scenario came from no file: its resolved data is under '
            "<code>scenario.data</code> in journal.json.gz; save it as YAML and run "
            f"<code>harness run FILE --seed {esc(run.seed)}</code>.</p>"
        )
    else:
        how = (
            f'<div class="rerun"><code id="rerun-cmd">{esc(command)}</code>'
            '<button type="button" data-copy="rerun-cmd">copy</button></div>'
            '<p class="caption">journal.json.gz holds the resolved scenario, the seed and the history (frames over 4 KiB as digests, unless run with --full-payloads).</p>'
        )
    return f'<section class="card" id="rerun"><h2>Re-run</h2>{how}</section>'


BANNER_LIST_CAP = 20  # lines of each list in the banner; the Run section has the notes in full


def _flag(text: str, kind: str) -> str:
    return f'<span class="flag {kind}">{esc(text)}</span>'


def _banner_list(title: str, items: Sequence[str], kind: str) -> str:
    if not items:
        return ""
    shown = "".join(f"<li>{esc(item, 400)}</li>" for item in items[:BANNER_LIST_CAP])
    more = f"<li>{len(items) - BANNER_LIST_CAP} more</li>" if len(items) > BANNER_LIST_CAP else ""
    return f'<div class="banner-list {kind}"><b>{esc(title)}</b><ul>{shown}{more}</ul></div>'


def run_flags(run: RunRecord) -> list[str]:
    """The caveats beside the verdict: what the run could not do, said where it is seen first
    (a run whose faults were all skipped must not read as a plain PASS)."""
    flags = []
    if run.fault_steps_all_skipped():
        flags.append(_flag("no fault applied", "untested"))
    skipped = len(run.skipped_steps())
    if skipped:
        flags.append(_flag(f"{skipped} step{'s' if skipped != 1 else ''} skipped", "skipped"))
    if run.strict:
        failing = bool(run.strict_problems())
        flags.append(
            _flag(f"strict: {'fail' if failing else 'pass'}", "strict-fail" if failing else "strict")
        )
    return flags


def run_banner(run: RunRecord) -> str:
    """The top of the report: verdict, its caveats, and the lists that explain them."""
    counts = status_counts(run.checks)
    verdict = run.verdict
    flags = run_flags(run)
    skipped = run.skipped_steps()
    unknown_gaps = [p for p in run.strict_problems() if p not in skipped]
    caveat = " caveat" if skipped or run.fault_steps_all_skipped() or run.strict_problems() else ""
    lists = (
        _banner_list("Skipped timeline steps", skipped, "skipped")
        + _banner_list("Under --strict, also failing the run", unknown_gaps, "strict")
        + _banner_list("Notes", run.notes, "notes")
    )
    return (
        f'<header class="banner {verdict}{caveat}"><div class="verdict-box"><div class="verdict">'
        f'{esc(verdict.upper())}</div><div class="flags">{"".join(flags)}</div></div>'
        f'<div><h1>{esc(run.scenario_name)}</h1><div class="meta">{esc(run.resolved_run_id())} · seed '
        f"{esc(run.seed)} · {esc(fmt_seconds(run.duration_s))} · {counts['pass']} passed, "
        f"{counts['fail']} failed, {counts['unknown']} unknown</div>{lists}</div></header>"
    )


def run_html(run: RunRecord) -> str:
    """The person-facing report of one run."""
    verdict = run.verdict
    banner = run_banner(run)
    t_end = plots.span_of(run.history, run.checks)
    lanes = timeline.timeline(run.history, run.checks, t_end)
    lat = plots.latency(run.history, t_end)
    hb = plots.heartbeat_gaps(run.history, t_end)
    body = "".join(
        [
            _checks_table(run),
            _rerun(run),
            _plot_section(
                "timeline",
                "Timeline",
                lanes,
                "One lane per client. Bars: operations from invocation to completion. Ticks above them: "
                "messages received. Triangles: connections opened and closed (with close code). Shaded: "
                "fault windows. Red dashed lines: where a failing check first saw a violation. Hover for "
                "details.",
            ),
            _plot_section(
                "latency", "Operation latency", lat, "Each completed operation, at its invocation time."
            ),
            _plot_section(
                "heartbeats",
                "Heartbeat gaps",
                hb,
                "Time between consecutive heartbeats each client received, plotted at the later heartbeat.",
            ),
            _evidence_section(run.checks),
            _faults_table(run),
            _run_facts(run),
            f'<p class="caption">Written {esc(time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()))} '
            "by sync-chaos-harness.</p>",
        ]
    )
    return page(f"{verdict.upper()} {run.scenario_name} — {run.resolved_run_id()}", banner, body)


def suite_html(
    name: str, suite_id: str, runs: Sequence[tuple[RunRecord, str]], matrix: str = "", duration_s: float = 0.0
) -> str:
    """The suite's index: one row per scenario run, linking to its report (`runs` pairs each
    record with the relative link to its directory)."""
    all_checks = [c for run, _ in runs for c in run.checks]
    verdict = verdict_of(all_checks)
    counts = status_counts(all_checks)
    untested = [run.scenario_name for run, _ in runs if run.fault_steps_all_skipped()]
    skipped_total = sum(len(run.skipped_steps()) for run, _ in runs)
    flags = []
    if untested:
        flags.append(_flag(f"{len(untested)} with no fault applied", "untested"))
    if skipped_total:
        flags.append(_flag(f"{skipped_total} step{'s' if skipped_total != 1 else ''} skipped", "skipped"))
    caveat = " caveat" if flags else ""
    banner = (
        f'<header class="banner {verdict}{caveat}"><div class="verdict-box"><div class="verdict">'
        f'{esc(verdict.upper())}</div><div class="flags">{"".join(flags)}</div></div>'
        f'<div><h1>{esc(name)}</h1><div class="meta">{esc(suite_id)} · {len(runs)} scenario runs · '
        f"{counts['pass']} checks passed, {counts['fail']} failed, {counts['unknown']} unknown"
        f"{' · ' + esc(fmt_seconds(duration_s)) if duration_s else ''}</div>"
        f"{_banner_list('Every fault step skipped (the faults were not tested)', untested, 'skipped')}"
        "</div></header>"
    )
    rows = []
    for run, link in runs:
        c = status_counts(run.checks)
        failing = ", ".join(x.name for x in run.checks if x.status == "fail")
        command = run.rerun_command()
        all_skipped = run.fault_steps_all_skipped()
        skipped = run.skipped_steps()
        marker = f" {pill('no-fault-applied')}" if all_skipped else ""
        skipped_cell = (
            f'<span title="{esc(chr(10).join(skipped), 2000)}">{len(skipped)}</span>' if skipped else "0"
        )
        rows.append(
            f'<tr class="row-{run.verdict}{" row-untested" if all_skipped else ""}" data-status="{run.verdict}"'
            f' data-untested="{str(all_skipped).lower()}">'
            f"<td><b>{esc(run.scenario_name)}</b></td>"
            f"<td>{pill(run.verdict)}{marker}</td>"
            f'<td class="num">{c["pass"]} / {c["fail"]} / {c["unknown"]}</td><td>{esc(failing) or "—"}</td>'
            f'<td class="num steps-skipped">{skipped_cell}</td>'
            f'<td class="num">{esc(run.seed)}</td><td class="num">{esc(fmt_seconds(run.duration_s))}</td>'
            f'<td><a href="{esc(link)}/report.html">report</a> · '
            f'<a href="{esc(link)}/journal.json.gz">journal</a></td>'
            f"<td>{f'<code>{esc(command)}</code>' if command else '—'}</td></tr>"
        )
    table = (
        '<section class="card" id="runs"><h2>Scenario runs</h2>'
        '<label class="muted"><input type="checkbox" id="only-failing"> only failing</label>'
        "<table><thead><tr><th>scenario</th><th>verdict</th><th>pass / fail / unknown</th>"
        "<th>failed checks</th><th>steps skipped</th><th>seed</th><th>duration</th><th>files</th>"
        "<th>re-run</th></tr></thead>"
        f"<tbody>{''.join(rows) or '<tr><td colspan=9>No runs.</td></tr>'}</tbody></table>"
        '<p class="caption"><span class="pill no-fault-applied">no fault applied</span> every fault step '
        "of the scenario's timeline was skipped or failed to apply (e.g. process faults on an external "
        "target): its checks judged the workload without the faults it is named for.</p></section>"
    )
    return page(f"{verdict.upper()} {name} — {suite_id}", banner, table + matrix)
