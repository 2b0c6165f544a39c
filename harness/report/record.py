"""What a finished run hands to the report writers, and the few facts derived from it.

The record is plain data so that it can be rebuilt from a journal: a report can always be
re-rendered, and a failing run re-run, from `journal.json.gz` alone.
"""

from __future__ import annotations

import platform
import re
import shlex
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from harness import __version__
from harness.checks.result import CheckResult
from harness.history import History

Verdict = Literal["pass", "fail", "unknown"]


@dataclass
class RunRecord:
    """One scenario run, as the report writers need it.

    `exit_code` None means "derive it from the verdict" (1 when a check failed, else 0), which
    is what `harness run` does; the CLI passes its own code when the run ended otherwise.
    """

    scenario_name: str
    seed: int
    history: History
    checks: list[CheckResult]
    started_at: datetime
    ended_at: datetime
    scenario_path: str | None = None
    scenario_data: Any = None  # the resolved scenario (after `extends`), enough to re-run it
    versions: dict[str, str | None] = field(default_factory=dict)
    exit_code: int | None = None
    notes: list[str] = field(default_factory=list)
    run_id: str | None = None
    check_seconds: dict[str, float] = field(default_factory=dict)  # how long each check took
    rerun: str | None = None  # the CLI's own re-run command (e.g. with --target); else derived
    observations: Any = None  # what the target exposed (JSON form of harness.checks.Observations)
    strict: bool = False  # --strict: an unknown verdict or a skipped timeline step fails the run
    options: dict[str, Any] = field(default_factory=dict)  # the command-line options that shaped it

    @property
    def verdict(self) -> Verdict:
        return verdict_of(self.checks)

    @property
    def effective_exit_code(self) -> int:
        if self.exit_code is not None:
            return self.exit_code
        return 1 if self.verdict == "fail" or self.strict_problems() else 0

    def skipped_steps(self) -> list[str]:
        """Timeline steps that did not happen as written (skipped, or failed to apply)."""
        return [
            f"step {e.data.get('step')} (line {e.data.get('line')}) {e.kind.removeprefix('step_')}: "
            f"{e.data.get('reason')}"
            for e in self.history.events
            if e.kind in ("step_skipped", "step_failed")
        ]

    def fault_steps(self) -> list[str]:
        """Ids of the timeline steps that apply a fault (not the ones that clear one).

        Taken from the resolved scenario; a record without it falls back on the history's step
        events: every step that fired a fault, or never fired at all."""
        timeline = self.scenario_data.get("timeline") if isinstance(self.scenario_data, dict) else None
        if isinstance(timeline, list):
            return [
                str(s.get("id"))
                for s in timeline
                if isinstance(s, dict) and s.get("fault") is not None and s.get("id") is not None
            ]
        fired = {str(e.data.get("step")) for e in self._step_events("step_fired")}
        with_fault = [str(e.data.get("step")) for e in self._step_events("step_fired") if "fault" in e.data]
        never = [
            str(e.data.get("step"))
            for e in self._step_events("step_skipped", "step_failed")
            if str(e.data.get("step")) not in fired
        ]
        return list(dict.fromkeys(with_fault + never))

    def fault_steps_all_skipped(self) -> bool:
        """True when the timeline had fault steps and not one of them was applied: the run
        tested the workload, not the faults it is named for (e.g. process faults on an
        external target), so a pass must not read as a plain pass."""
        steps = self.fault_steps()
        if not steps:
            return False
        fired = {str(e.data.get("step")) for e in self._step_events("step_fired")}
        return not fired.intersection(steps)

    def _step_events(self, *kinds: str) -> list[Any]:
        return [e for e in self.history.events if e.kind in kinds]

    def strict_problems(self) -> list[str]:
        """Under --strict, what keeps the run from passing: every check that said unknown for
        want of evidence and every skipped step (a CI gate must not go green on a run that could
        not test what it says). A check the target cannot support (it lacks the [ext]
        capability, PROTOCOL.md: neither pass nor fail) is a fact about the target, not a gap
        in the run, and does not count."""
        if not self.strict:
            return []
        return [
            f"unknown {c.name}: {c.summary}"
            for c in self.checks
            if c.status == "unknown" and not c.unsupported
        ] + [*self.skipped_steps()]

    @property
    def duration_s(self) -> float:
        return max(0.0, (as_utc(self.ended_at) - as_utc(self.started_at)).total_seconds())

    def resolved_run_id(self) -> str:
        return self.run_id or make_run_id(self.scenario_name, self.seed, self.started_at)

    def resolved_versions(self) -> dict[str, str | None]:
        """The versions given, completed with what the report writer knows itself."""
        merged: dict[str, str | None] = {
            "harness": __version__,
            "python": platform.python_version(),
            "toxiproxy": None,
            "target": None,
            "coordinator": None,
        }
        merged.update(self.versions)
        return merged

    def rerun_command(self) -> str | None:
        """The command line that re-runs this run, or None when the scenario has no file."""
        if self.rerun:
            return self.rerun
        if not self.scenario_path:
            return None
        return f"harness run {shlex.quote(self.scenario_path)} --seed {self.seed}"


def verdict_of(checks: Iterable[CheckResult]) -> Verdict:
    """fail if any check failed; pass if none failed and one passed; unknown when all were unknown.

    A run whose checks were all unknown proved nothing, so it is not reported as a pass.
    """
    statuses = {c.status for c in checks}
    if "fail" in statuses:
        return "fail"
    if "pass" in statuses:
        return "pass"
    return "unknown"


def status_counts(checks: Iterable[CheckResult]) -> dict[str, int]:
    counts = {"pass": 0, "fail": 0, "unknown": 0}
    for c in checks:
        counts[c.status] = counts.get(c.status, 0) + 1
    return counts


def as_utc(moment: datetime) -> datetime:
    """Naive datetimes are taken to be UTC already (the harness records UTC)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def iso_utc(moment: datetime) -> str:
    return as_utc(moment).isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_iso_utc(text: str) -> datetime:
    return as_utc(datetime.fromisoformat(text.replace("Z", "+00:00")))


_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def safe_name(name: str) -> str:
    """A string usable in a directory name on any filesystem."""
    return _UNSAFE.sub("_", name).strip("._") or "run"


def make_run_id(name: str, seed: int | None, started_at: datetime) -> str:
    """`20261122T031500Z-smoke-s42`: sorts by start time, says what ran and with which seed."""
    stamp = as_utc(started_at).strftime("%Y%m%dT%H%M%SZ")
    suffix = "" if seed is None else f"-s{seed}"
    return f"{stamp}-{safe_name(name)[:60]}{suffix}"
