"""The step recorder: what an exploration did, as data, and its translation to a scenario file.

Every rule the state machine runs appends one `ProgramStep` at the program's clock (one tick
per rule). A program is exactly a scenario: client steps become client groups starting at their
time, fault steps become `at:` timeline steps (with `for:` or a later `clear:`), a leave becomes
the group's `duration_s`. So the shrunk program is written out as a normal scenario file that
the existing loader reads and `harness run` replays, and the exploration judges each program by
running that same scenario: what was explored is what replays.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

TICK_S = 0.5  # program time per rule: spaces steps so each one's effect can show
TAIL_S = 2.0  # after the last step, before the clients must have ended
# After an S3 or process fault, time for the target to recover (the outbox drains, the breaker
# closes, clients reconnect) before the quiet state is judged: a program whose fault simply
# lasts to the end is not a failure of the target.
RECOVERY_S = 5.0
SETTLE_S = 3.0  # the quiet time of every program, as the bundled suite's
# After an S3 outage the coordinator retries each database with exponential backoff up to 10 s
# and its breaker stays open 5 s (docs/s3.md): the outbox needs that long to drain.
S3_RECOVERY_S = 12.0
S3_FAILING_KINDS = ("s3_outage", "s3_error", "s3_slowdown", "s3_drop")
MIN_FAULT_S = 3.0  # a fault left on at the end still lasts this long (an outage must be seen)
RECOVERY_KINDS = ("s3_", "kill", "terminate", "pause", "restart", "disk_loss")
MIN_LEAVE_S = 0.2  # a client leaves at the earliest this long after it joined
# A SIGTERMed target drains up to its drain timeout (EXPLORE_TARGET's 5 s) before it exits, and
# only then can the fault's restart run: a program ending sooner cancels the fault mid-exit, the
# target is never started again and its durable outbox never uploads (a false no-lost-write).
TERMINATE_EXIT_S = 6.0

# The bundled coordinator every exploration runs: short timers (so heartbeat gaps, idle closes
# and drains are judged within a short program), two tenants (so an intruder has someone to
# intrude on), S3 behind the fault layer and failpoints (so those rules have something to act on).
EXPLORE_TARGET: dict[str, Any] = {
    "coordinator": {
        "options": {
            "heartbeat_interval_ms": 1000,  # 2 s bound: 500 ms flaked on a loaded 2-core machine
            "idle_store_timeout_ms": 1000,
            "drain_timeout_ms": 5000,
            "tokens": ["explore-token:db", "intruder-token:other"],
        },
        "s3": True,
        "failpoints": True,
    },
    "token": "explore-token",
}

# The invariants are the existing checks: the ones that hold at every step (no lost write,
# ordered seq, heartbeats, streams, notices, errors, tenants) and the ones judged at quiescence
# (convergence, last writer wins, leaks). `writes-accepted` is added by the runner.
DEFAULT_CHECKS: tuple[str, ...] = (
    "no-lost-write",
    "ordered-seq",
    "heartbeat-continuity",
    "stream-completeness",
    "snapshot-resume",
    "shutdown-notification",
    "slow-client-notification",
    "degradation-announced",
    "error-specificity",
    "tenant-isolation",
    "convergence",
    "lww-final-state",
    "leaked-resources",
)


OBJECT_STORE_COUNTERS = (
    r"objectStore\.(recorded|uploaded|s3_requests|s3_http_attempts|snapshots_deleted|"
    r"retention_failures|breaker_transitions|breaker_rejections)"
)


def check_bounds(checks: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """The checks with the bounds an exploration needs: with S3 on, /debug/resources also holds
    cumulative object-store counters (requests made, batches recorded and uploaded, breaker
    transitions), which count events, not live things, so leaked-resources ignores them on top
    of its default list (without this, every program that wrote with S3 on "leaked")."""
    from harness.checks.registry import CHECKS, load_all

    load_all()
    out: dict[str, dict[str, Any]] = {name: {} for name in checks}
    if "leaked-resources" in out:
        default = CHECKS["leaked-resources"].defaults()["ignore"]
        out["leaked-resources"]["ignore"] = f"{default}|{OBJECT_STORE_COUNTERS}"
    return out


@dataclass(frozen=True)
class ProgramStep:
    """One rule's effect at time `at_s`. kind: `client` (a client group joins), `leave` (a client
    leaves cleanly), `fault` (a fault starts; ends after `for_s` or at a later `clear`), `clear`."""

    kind: str
    at_s: float
    name: str  # client group name, or the timeline step id
    behaviour: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # client group keys: via, database, token
    fault: dict[str, Any] | None = None
    for_s: float | None = None

    def describe(self) -> str:
        """One line of the shrunk program, as printed and written into the file's description."""
        if self.kind == "client":
            where = "".join(f" {k}={v}" for k, v in sorted(self.extra.items()))
            return f"t={self.at_s:g}s connect {self.name} ({self.behaviour}{where}) {self.params}"
        if self.kind == "leave":
            return f"t={self.at_s:g}s {self.name} leaves"
        if self.kind == "clear":
            return f"t={self.at_s:g}s clear {self.name}"
        spec = dict(self.fault or {})
        kind = spec.pop("kind", "?")
        length = f" for {self.for_s:g}s" if self.for_s is not None else ""
        return f"t={self.at_s:g}s {self.name}: {kind} {spec}{length}"


@dataclass
class Program:
    """The recorder: steps in the order the rules ran, on a clock of one tick per rule."""

    steps: list[ProgramStep] = field(default_factory=list)
    clock_s: float = 0.0
    _counter: int = 0

    def new_name(self, prefix: str) -> str:
        self._counter += 1
        return f"{prefix}{self._counter}"

    def add(self, step: ProgramStep) -> None:
        self.steps.append(step)
        self.clock_s = round(self.clock_s + TICK_S, 3)

    @property
    def length(self) -> int:
        return len(self.steps)

    def key(self) -> str:
        """Identity of the program (what it would run), for the result cache."""
        return yaml.safe_dump([s.describe() for s in self.steps])

    def describe(self) -> list[str]:
        return [step.describe() for step in self.steps]

    def open_faults(self) -> list[tuple[str, float]]:
        """Faults still on at the program's end (no `for:`, no later clear), with when they end:
        at the program's end, but not before they lasted MIN_FAULT_S."""
        cleared = {s.name for s in self.steps if s.kind == "clear"}
        return [
            (s.name, round(max(self.clock_s, s.at_s + MIN_FAULT_S), 3))
            for s in self.steps
            if s.kind == "fault" and s.for_s is None and s.name not in cleared
        ]

    def end_s(self) -> float:
        """The program's end: its last step, open faults' minimum length, and a SIGTERM's exit
        and restart."""
        exits = [
            s.at_s + TERMINATE_EXIT_S + (s.for_s or 0.0)
            for s in self.steps
            if s.kind == "fault" and (s.fault or {}).get("kind") == "terminate"
        ]
        return round(max([self.clock_s, TICK_S, *(at for _, at in self.open_faults()), *exits]), 3)

    def duration_s(self) -> float:
        return round(self.end_s() + TAIL_S, 3)

    def settle_s(self) -> float:
        """The quiet time before the final observations: the runner ends a run once its clients
        are done and its timeline has fired, so recovery time goes here, not in the duration."""
        kinds = [str((s.fault or {}).get("kind", "")) for s in self.steps if s.kind == "fault"]
        recovery = 0.0
        if any(k.startswith(RECOVERY_KINDS) for k in kinds):
            recovery = RECOVERY_S
        if any(k in S3_FAILING_KINDS for k in kinds):
            recovery = S3_RECOVERY_S
        return SETTLE_S + recovery

    def to_document(
        self,
        name: str,
        seed: int,
        checks: tuple[str, ...] = DEFAULT_CHECKS,
        catches: tuple[str, ...] = (),
        description: str | None = None,
        target: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The scenario document (what the loader reads): clients with their start times and
        leaves, faults at their times, the checks, and what the failure was if there was one."""
        duration = self.duration_s()
        clients: list[dict[str, Any]] = []
        by_name: dict[str, dict[str, Any]] = {}
        timeline: list[dict[str, Any]] = []
        for step in self.steps:
            if step.kind == "client":
                group: dict[str, Any] = {"name": step.name, "behaviour": step.behaviour}
                group.update(step.extra)
                if step.at_s > 0:
                    group["start_at_s"] = step.at_s
                group["params"] = dict(step.params)
                clients.append(group)
                by_name[step.name] = group
            elif step.kind == "leave":
                group = by_name[step.name]
                start = float(group.get("start_at_s", 0.0))
                group["params"]["duration_s"] = round(max(MIN_LEAVE_S, step.at_s - start), 3)
            elif step.kind == "fault":
                entry: dict[str, Any] = {"id": step.name, "at": step.at_s, "fault": dict(step.fault or {})}
                if step.for_s is not None:
                    entry["for"] = step.for_s
                timeline.append(entry)
            elif step.kind == "clear":
                timeline.append({"id": f"clear-{step.name}", "at": step.at_s, "clear": step.name})
        for fault, at in self.open_faults():  # every fault ends with the program, before the tail
            timeline.append({"id": f"clear-{fault}", "at": at, "clear": fault})
        doc: dict[str, Any] = {
            "name": name,
            "description": description or "Found by harness explore.",
            "seed": seed,
            "duration_s": duration,
            "settle_s": self.settle_s(),
            "target": copy.deepcopy(target if target is not None else EXPLORE_TARGET),
            "clients": clients
            or [{"name": "idle", "behaviour": "reader", "params": {"polls": 1, "interval_s": 0.1}}],
            "timeline": timeline,
            "checks": check_bounds(checks),
        }
        if not timeline:
            del doc["timeline"]
        if catches:
            doc["catches"] = list(catches)
        return doc


def write_scenario(path: Path, document: dict[str, Any], header: list[str] | None = None) -> Path:
    """Write a scenario document as YAML, with comment lines on top (the shrunk program)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"# {line}" for line in header or []]
    body = yaml.safe_dump(document, sort_keys=False, default_flow_style=None, width=110)
    path.write_text("\n".join([*lines, body]) if lines else body)
    return path


def found_path(out_dir: Path, check: str, now: datetime | None = None) -> Path:
    """`<out>/<date>-<check>.yaml`, never over an earlier finding (a counter is added)."""
    date = (now or datetime.now(UTC)).strftime("%Y-%m-%d")
    path = out_dir / f"{date}-{check}.yaml"
    n = 2
    while path.exists():
        path = out_dir / f"{date}-{check}-{n}.yaml"
        n += 1
    return path
