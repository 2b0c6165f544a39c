"""`junit.xml`: the run as CI systems read it, one test case per check.

JUnit has no "unknown": an unknown check is reported as skipped, never as passed, with a
message that starts with "unknown:" so a reader of the CI page sees why.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

from harness.report.journal import atomic_write
from harness.report.record import RunRecord, as_utc, status_counts

JUNIT_NAME = "junit.xml"
MAX_EVIDENCE_CHARS = 200_000  # a CI page chokes on megabytes of text per test case

# Characters XML 1.0 forbids even when escaped; a server may send any of them.
_XML_ILLEGAL = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_text(value: object) -> str:
    """Any value as text that is legal inside an XML document (escaping is ElementTree's job)."""
    return _XML_ILLEGAL.sub(lambda m: f"\\x{ord(m.group()):02x}", str(value))


def _evidence_text(evidence: Sequence[object]) -> str:
    lines = [json.dumps(item, sort_keys=True, default=repr) for item in evidence]
    text = "\n".join(lines)
    if len(text) > MAX_EVIDENCE_CHARS:
        text = text[:MAX_EVIDENCE_CHARS] + f"\n... ({len(lines)} items; the rest is in journal.json.gz)"
    return text


def testsuite_element(run: RunRecord) -> ET.Element:
    counts = status_counts(run.checks)
    suite = ET.Element(
        "testsuite",
        {
            "name": xml_text(run.scenario_name),
            "tests": str(len(run.checks)),
            "failures": str(counts["fail"]),
            "errors": "0",
            "skipped": str(counts["unknown"]),
            "time": f"{run.duration_s:.3f}",
            "timestamp": as_utc(run.started_at).strftime("%Y-%m-%dT%H:%M:%S"),  # JUnit XSD: no zone; UTC
        },
    )
    props = ET.SubElement(suite, "properties")
    properties: dict[str, object] = {
        "seed": run.seed,
        "run_id": run.resolved_run_id(),
        "scenario_path": run.scenario_path or "",
        "rerun": run.rerun_command() or "",
        "verdict": run.verdict,
        "exit_code": run.effective_exit_code,
    }
    properties.update({f"version.{k}": v or "" for k, v in run.resolved_versions().items()})
    for name, value in properties.items():
        ET.SubElement(props, "property", {"name": xml_text(name), "value": xml_text(value)})
    for check in run.checks:
        case = ET.SubElement(
            suite,
            "testcase",
            {
                "classname": xml_text(run.scenario_name),
                "name": xml_text(check.name),
                "time": f"{run.check_seconds.get(check.name, 0.0):.3f}",
            },
        )
        if check.status == "fail":
            detail = [
                f"detected_at: {check.detected_at}",
                f"bounds: {json.dumps(check.bounds, default=repr)}",
            ]
            failure = ET.SubElement(case, "failure", {"message": xml_text(check.summary), "type": "fail"})
            failure.text = xml_text("\n".join(detail) + "\n" + _evidence_text(check.evidence))
        elif check.status == "unknown":
            ET.SubElement(case, "skipped", {"message": xml_text(f"unknown: {check.summary}")})
        else:
            out = ET.SubElement(case, "system-out")
            out.text = xml_text(check.summary)
    if run.notes:
        notes = ET.SubElement(suite, "system-out")
        notes.text = xml_text("\n".join(run.notes))
    return suite


def junit_document(runs: Sequence[RunRecord], name: str = "sync-chaos-harness") -> bytes:
    """One `<testsuites>` with a `<testsuite>` per run (so per scenario)."""
    root = ET.Element("testsuites", {"name": xml_text(name)})
    totals = {"tests": 0, "failures": 0, "skipped": 0}
    elapsed = 0.0
    for run in runs:
        counts = status_counts(run.checks)
        totals["tests"] += len(run.checks)
        totals["failures"] += counts["fail"]
        totals["skipped"] += counts["unknown"]
        elapsed += run.duration_s
        root.append(testsuite_element(run))
    root.attrib.update({k: str(v) for k, v in totals.items()})
    root.attrib.update({"errors": "0", "time": f"{elapsed:.3f}"})
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


def write_junit(out_dir: Path, runs: Sequence[RunRecord], name: str = "sync-chaos-harness") -> Path:
    path = out_dir / JUNIT_NAME
    atomic_write(path, junit_document(runs, name))
    return path
