"""A stand-in for `harness` in verify's tests: `run FILE --report-dir D [--bug ID]` behaves as
the FAKE_HARNESS_MODE environment variable says, so every way a child run can end is tried."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path


def main(argv: list[str]) -> int:
    mode = os.environ.get("FAKE_HARNESS_MODE", "detect")
    scenario = Path(argv[1])
    report_dir = Path(argv[argv.index("--report-dir") + 1])
    with_bug = "--bug" in argv
    if mode == "hang":
        time.sleep(3600)
    if mode == "crash":
        print("Traceback (most recent call last): RuntimeError: boom", file=sys.stderr)
        return 1  # what Python itself exits with on an uncaught exception
    failing = with_bug if mode in ("detect", "mismatch") else mode == "false-alarm"
    checks = [
        {"name": "convergence", "status": "fail" if failing else "pass", "summary": "x", "detected_at": 1.5}
    ]
    run_id = f"20261201T000000Z-{scenario.stem}-s1"
    name = "some-other-scenario" if mode == "foreign" else scenario.stem
    run_dir = report_dir / run_id
    run_dir.mkdir(parents=True)
    (run_dir / "journal.json").write_text(
        json.dumps({"run_id": run_id, "scenario": {"name": name}, "checks": checks})
    )
    (report_dir / "latest").symlink_to(run_id)
    if mode == "mismatch":
        return 0
    return 1 if failing else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
