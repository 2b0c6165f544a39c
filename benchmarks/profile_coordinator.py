"""`coordinator serve` with a switchable profiler: SIGUSR1 starts it, SIGUSR2 stops it and dumps.

Why: profiling the whole process would mostly show the joins (presence traffic) and idle time;
the benchmarks switch the profiler on for exactly the phase being measured. The coordinator's
code is not touched: this wraps `coordinator.cli.main`.

Two things are recorded while on: cProfile (unless `--gc-only`, since cProfile slows the
coordinator about twofold) and every garbage-collector pause (invisible to cProfile), with its
start on the system-wide monotonic clock so the benchmarks can line pauses up with what their
clients saw. Results: OUT (pstats) and OUT.gc.json.

`--gc-freeze` is an experiment, not a measurement of the coordinator as shipped: at SIGUSR1 it
runs gc.collect() and gc.freeze(), to show what the GC pauses cost the benchmark's figures.

    python -m benchmarks.profile_coordinator --out prof.pstats [--gc-only] [--gc-freeze] serve ...
"""

from __future__ import annotations

import cProfile
import gc
import json
import signal
import sys
import time
from types import FrameType
from typing import Any


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] != "--out":
        print("usage: profile_coordinator --out FILE [--gc-only] [--gc-freeze] ARGS...", file=sys.stderr)
        return 2
    out, rest = argv[1], argv[2:]
    flags = set()
    while rest and rest[0] in ("--gc-only", "--gc-freeze"):
        flags.add(rest.pop(0))
    gc_only = "--gc-only" in flags
    gc_freeze = "--gc-freeze" in flags  # an experiment: what if long-lived objects were frozen?
    profiler = cProfile.Profile()
    pauses: list[tuple[int, int, int, int]] = []  # (generation, start ns, duration ns, collected)
    slow_applies: list[tuple[int, int]] = []  # (start ns, duration ns) of store applies over 10 ms
    applies = [0, 0]  # count, total ns
    state = {"on": False, "start": 0}

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if not state["on"]:
            return
        if phase == "start":
            state["start"] = time.monotonic_ns()
        elif state["start"]:
            start, state["start"] = state["start"], 0
            pauses.append((info["generation"], start, time.monotonic_ns() - start, info["collected"]))

    gc.callbacks.append(on_gc)

    def enable(signum: int, frame: FrameType | None) -> None:
        slow_applies.clear()
        applies[0] = applies[1] = 0
        if gc_freeze:  # move everything alive now out of the collector's reach (gc.freeze docs)
            gc.collect()
            gc.freeze()
        pauses.clear()
        state["on"], state["start"] = True, 0
        if not gc_only:
            profiler.enable()

    def disable(signum: int, frame: FrameType | None) -> None:
        if not gc_only:
            profiler.disable()
            profiler.dump_stats(out)
        state["on"] = False
        summary: dict[str, Any] = {}
        for generation in (0, 1, 2):
            took = [p[2] for p in pauses if p[0] == generation]
            summary[f"gen{generation}"] = {
                "collections": len(took),
                "totalMs": round(sum(took) / 1e6, 2),
                "maxMs": round(max(took, default=0) / 1e6, 2),
            }
        summary["trackedObjects"] = len(gc.get_objects())
        summary["frozenObjects"] = gc.get_freeze_count()
        summary["thresholds"] = gc.get_threshold()
        summary["pauses"] = [list(p) for p in pauses if p[0] >= 1]  # gen0 pauses are short and many
        summary["storeApply"] = {
            "calls": applies[0],
            "meanMs": round(applies[1] / max(1, applies[0]) / 1e6, 3),
            "over10Ms": [[start, took] for start, took in slow_applies],
        }
        with open(out + ".gc.json", "w") as f:
            json.dump(summary, f)

    signal.signal(signal.SIGUSR1, enable)
    signal.signal(signal.SIGUSR2, disable)
    _time_store_applies(state, slow_applies, applies)
    from coordinator.cli import main as coordinator_main

    return coordinator_main(rest)


def _time_store_applies(state: dict[str, Any], slow: list[tuple[int, int]], totals: list[int]) -> None:
    """Time each SQLite apply (one transaction, on the event loop) by wrapping the method at
    run time; the coordinator's files are not changed."""
    from coordinator.storage.sqlite_store import DatabaseStore

    original = DatabaseStore.apply

    def timed(self: DatabaseStore, *args: Any, **kwargs: Any) -> Any:
        start = time.monotonic_ns()
        try:
            return original(self, *args, **kwargs)
        finally:
            took = time.monotonic_ns() - start
            if state["on"]:
                totals[0] += 1
                totals[1] += took
                if took > 10_000_000:
                    slow.append((start, took))

    DatabaseStore.apply = timed  # type: ignore[method-assign]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
