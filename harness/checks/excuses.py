"""What excuses a miss: the one rule for every check, declared per check, never ad hoc.

A check that sees a late or missing answer asks whether something the harness did explains it.
What may explain it depends on the check (a server must ride out an object-store outage when
it sends heartbeats, but a failpoint is exactly what an error-code check judges), so each check
declares `ExcusePolicy`s in `register(...)`: which *causes* excuse which miss. A fault window's
causes come from its recorded family and effect (harness/history.py), never from the spelling
of its kind:

- `network`, `s3`, `process`, `failpoint`: the fault class's family (`unknown` for a kind the
  history's table does not know);
- `delay`: a network fault that only delays (latency, jitter); `failpoint-delay`: a failpoint
  in delay mode. A window that only delays has both its family and its delay cause;
- `s3` also for a network fault on the coordinator's path to the object store (target `s3`).

A window excuses under a policy when every one of its causes is in `excused_by`: a latency on
the S3 path needs both `delay` and `s3`. The target's own process events (signals, restarts,
from the observations) excuse when `process` is.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from harness.checks.observations import Observations
from harness.history import FaultWindow, History

NETWORK = "network"
DELAY = "delay"
S3 = "s3"
PROCESS = "process"
FAILPOINT = "failpoint"
FAILPOINT_DELAY = "failpoint-delay"
UNKNOWN = "unknown"
CAUSES = frozenset({NETWORK, DELAY, S3, PROCESS, FAILPOINT, FAILPOINT_DELAY, UNKNOWN})
FAMILIES = frozenset({NETWORK, S3, PROCESS, FAILPOINT})  # `Fault.family` values
DELAY_OF = {NETWORK: DELAY, FAILPOINT: FAILPOINT_DELAY}  # the cause of a family's delay-only fault

S3_PROXY = "s3"  # the network target between the coordinator and the object store


@dataclass(frozen=True, slots=True)
class ExcusePolicy:
    """Which causes excuse `what` (a kind of miss of one check). With `per_client`, a fault on
    one client's own proxy (target `client:<id>`) excuses only misses of that client, when the
    caller names the clients involved."""

    what: str
    excused_by: frozenset[str]
    per_client: bool = True

    def __post_init__(self) -> None:
        unknown = set(self.excused_by) - CAUSES
        if unknown:
            raise ValueError(f"unknown excuse causes {sorted(unknown)}; known: {sorted(CAUSES)}")

    def describe(self) -> str:
        causes = ", ".join(sorted(self.excused_by)) or "nothing"
        return f"{self.what}: excused by {causes}"

    def to_json(self) -> dict[str, Any]:
        return {"what": self.what, "excused_by": sorted(self.excused_by), "per_client": self.per_client}


# What today's checks excuse unless they say otherwise: network, process and failpoint faults
# (any mode); never an object-store fault (a server must ride it out) nor a delay (it widens a
# bound instead: `fault_delay_s`). A check that declares no policy is listed with this one.
DEFAULT_EXCUSED = frozenset({NETWORK, PROCESS, FAILPOINT, FAILPOINT_DELAY, UNKNOWN})
DEFAULT_POLICY = ExcusePolicy("a late or missing answer (default)", DEFAULT_EXCUSED)
# For checks of how the server handles its own failures: a failpoint is what they judge.
WITHOUT_FAILPOINTS = frozenset({NETWORK, PROCESS, UNKNOWN})


def window_causes(window: FaultWindow) -> frozenset[str]:
    """The causes a fault window stands for (see the module docstring)."""
    family = window.family if window.family in FAMILIES else UNKNOWN
    causes = {family}
    if window.observable is False and family in DELAY_OF:
        causes.add(DELAY_OF[family])
    if family == NETWORK and window.target == S3_PROXY:
        causes.add(S3)
    return frozenset(causes)


def overlaps(window: FaultWindow, start: float, end: float, end_of_run: float) -> bool:
    w_end = window.end if window.end is not None else end_of_run
    return window.start <= end and w_end >= start


def excuses(
    policy: ExcusePolicy,
    history: History,
    obs: Observations,
    start: float,
    end: float,
    processes: Iterable[str] | None = None,
) -> list[dict[str, Any]]:
    """What, under `policy`, excuses a miss in [start, end]: the fault windows in force and the
    target's process events then (empty: nothing does, the miss counts). `processes` names the
    clients the miss concerns, for `per_client` scoping."""
    end_of_run = history.now()
    involved = set(processes) if processes is not None and policy.per_client else None
    found: list[dict[str, Any]] = [
        {"fault": w.id, "kind": w.kind, "target": w.target}
        for w in history.faults
        if overlaps(w, start, end, end_of_run)
        and window_causes(w) <= policy.excused_by
        and (involved is None or not w.target.startswith("client:") or w.target[7:] in involved)
    ]
    if PROCESS in policy.excused_by:
        found += [
            {"process": e.kind, "time": e.time}
            for e in obs.process
            if e.kind != "start" and start <= e.time <= end
        ]
    return found


def windows_with(history: History, cause: str) -> list[FaultWindow]:
    """The run's fault windows that stand for `cause` (e.g. every object-store fault)."""
    return [w for w in history.faults if cause in window_causes(w)]
