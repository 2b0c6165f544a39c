"""What a run leaves behind: `journal.json.gz` (everything, replayable), `junit.xml` (for CI) and a
self-contained `report.html` (for a person), per run and per suite, plus the verify matrix.

See docs/reports.md for what each file contains.
"""

from harness.report.journal import build_journal, history_from_json, load_journal, record_from_journal
from harness.report.junit import junit_document
from harness.report.matrix import MatrixRow, matrix_ok, write_matrix
from harness.report.record import RunRecord, Verdict, make_run_id, verdict_of
from harness.report.writer import update_latest, write_run_report, write_suite_report

__all__ = [
    "MatrixRow",
    "RunRecord",
    "Verdict",
    "build_journal",
    "history_from_json",
    "junit_document",
    "load_journal",
    "make_run_id",
    "matrix_ok",
    "record_from_journal",
    "update_latest",
    "verdict_of",
    "write_matrix",
    "write_run_report",
    "write_suite_report",
]
