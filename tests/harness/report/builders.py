"""Hand-built runs for the report tests: a few clients, every outcome, a fault, bad strings."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from harness.checks.result import CheckResult
from harness.history import History
from harness.report import RunRecord

EVIL = "<script>alert(1)</script>"
STARTED = datetime(2026, 11, 22, 3, 15, 0, tzinfo=UTC)


class Clock:
    """A settable clock, so histories are built at exact times."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def small_history() -> History:
    clock = Clock()
    h = History(clock=clock)

    def at(t: float) -> None:
        clock.t = t

    for i, proc in enumerate(("c1", "c2", "c10")):
        at(0.1 * i)
        h.event(proc, "open", url="ws://127.0.0.1/sync/ws")
        op = h.invoke(proc, "handshake", {"databaseId": "db1"})
        at(0.1 * i + 0.05)
        h.complete(op, "ok", {"connectionId": f"conn-{i}"})
        h.message(proc, "recv", {"type": "handshake_ack", "connectionId": f"conn-{i}"})
    for t in range(1, 30):  # heartbeats every second, c2 hears none from 12 to 19
        for proc in ("c1", "c2", "c10"):
            if proc == "c2" and 12 <= t < 19:
                continue
            at(t + 0.01)
            h.message(proc, "recv", {"type": "heartbeat", "ts": t * 1000, "seq": t, "backend": "ok"})
    for k in range(20):
        at(1.0 + k)
        op = h.invoke("c1", "apply", {"changes": k})
        at(1.0 + k + 0.02 + (0.5 if 10 <= k < 20 else 0.0))
        h.complete(op, "ok", {"applied": 1})
        for proc in ("c2", "c10"):
            h.message(proc, "recv", {"type": "push_changes", "seq": k + 1, "changeSets": []})
    at(11.0)
    failed = h.invoke("c2", "apply", {"changes": 1})
    at(11.4)
    h.complete(failed, "fail", error="APPLY_CHANGES_ERROR")
    h.message("c2", "recv", {"type": "error", "code": "APPLY_CHANGES_ERROR", "message": EVIL, "fatal": False})
    at(12.0)
    snap = h.invoke("c2", "snapshot")
    at(13.5)
    h.complete(snap, "info", error="ConnectionClosed")
    h.message("c2", "recv", {"type": "notice", "code": "SLOW_CLIENT", "severity": "warning", "message": EVIL})
    h.event("c2", "close", code=1013, reason=EVIL)
    at(19.0)
    h.event("c2", "reconnect", attempt=1)
    h.message("c2", "recv", {"type": "presence", "sessions": []})
    at(25.0)
    h.invoke("c10", "get_changes")  # never completes
    at(10.0)
    window = h.fault_started("latency", "client-path", {"latency_ms": 500, "note": EVIL})
    at(20.0)
    h.fault_ended(window)
    at(24.0)
    h.fault_started("s3-outage", "s3", {})  # still in force when the run ends
    at(29.5)
    return h


def small_checks() -> list[CheckResult]:
    return [
        CheckResult(
            "broadcast-delivery", "pass", "every push arrived in seq order", bounds={"max_delay_s": 2}
        ),
        CheckResult(
            "heartbeat-continuity",
            "fail",
            f"c2 went 7.0 s without a heartbeat {EVIL}",
            evidence=[
                {"process": "c2", "time": 19.01, "gap_s": 7.0, "index": 120, "payload": EVIL},
                {"process": "c2", "time": 19.01, "note": "control \x1b[31m char \x00 here"},
            ],
            bounds={"max_gap_s": 2.5},
            detected_at=19.01,
        ),
        CheckResult(
            "leaks",
            "unknown",
            "target does not expose /debug/resources",
            bounds={"max_open_stores": 0},
        ),
    ]


def make_run(
    history: History | None = None, checks: list[CheckResult] | None = None, **kw: object
) -> RunRecord:
    fields: dict[str, object] = {
        "scenario_name": "smoke",
        "seed": 42,
        "history": history or small_history(),
        "checks": checks if checks is not None else small_checks(),
        "started_at": STARTED,
        "ended_at": STARTED + timedelta(seconds=31.5),
        "scenario_path": "scenarios/smoke.yaml",
        "scenario_data": {"name": "smoke", "duration": 30, "clients": [{"count": 3, "behaviour": "writer"}]},
        "versions": {"toxiproxy": "2.12.0", "target": "bundled coordinator", "coordinator": "0.1.0"},
        "notes": [f"a note with {EVIL}"],
        "check_seconds": {"heartbeat-continuity": 0.012},
    }
    fields.update(kw)
    return RunRecord(**fields)  # type: ignore[arg-type]


def big_history(entries: int = 50_000, clients: int = 20, seconds: float = 300.0) -> History:
    """A long, busy run, to keep the report fast and small at realistic sizes."""
    rnd = random.Random(7)
    clock = Clock()
    h = History(clock=clock)
    procs = [f"c{i}" for i in range(1, clients + 1)]
    events: list[tuple[float, int, str]] = []
    for proc in procs:
        for second in range(0, int(seconds), 5):
            events.append((second + rnd.random() * 0.05, 0, proc))
    budget = entries - len(events)
    for _ in range(budget // 3):
        events.append((rnd.random() * seconds, 1, rnd.choice(procs)))
    events.sort()
    pending = []
    for t, kind, proc in events:
        clock.t = t
        if kind == 0:
            h.message(proc, "recv", {"type": "heartbeat", "ts": int(t * 1000)})
            continue
        op = h.invoke(proc, rnd.choice(["apply", "get_changes", "snapshot"]), {"n": 1})
        pending.append((t + rnd.expovariate(20.0) + (rnd.random() * 2 if 100 < t < 130 else 0), op))
        h.message(rnd.choice(procs), "recv", {"type": "push_changes", "seq": op.op_id})
    pending.sort(key=lambda p: p[0])
    for done_at, op in pending:
        clock.t = done_at
        roll = rnd.random()
        h.complete(op, "ok" if roll < 0.97 else "fail" if roll < 0.99 else "info", error=None)
    clock.t = 100.0
    w = h.fault_started("latency", "client-path", {"latency_ms": 2000})
    clock.t = 130.0
    h.fault_ended(w)
    return h


# verify-matrix rows: one caught, one missed, one false alarm (with a hostile bug name)
ROWS = [
    {
        "bug": "heartbeat-stall",
        "scenario": "scenarios/bugs/heartbeat-stall.yaml",
        "detected": True,
        "caught_by": ["heartbeat-continuity"],
        "time_to_detect_s": 12.5,
        "false_alarm": [],
        "runs": 1,
    },
    {
        "bug": "leak-store",
        "scenario": "scenarios/bugs/leak-store.yaml",
        "detected": False,
        "caught_by": [],
        "time_to_detect_s": None,
        "false_alarm": [],
        "runs": 1,
    },
    {
        "bug": f"noisy {EVIL}",
        "scenario": "scenarios/bugs/noisy.yaml",
        "detected": True,
        "caught_by": ["convergence"],
        "time_to_detect_s": 3.0,
        "false_alarm": ["convergence"],
        "runs": ["../20261122T031500Z-noisy-s1", "../20261122T031600Z-noisy-s1"],
    },
]
