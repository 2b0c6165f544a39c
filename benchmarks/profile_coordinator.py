"""`coordinator serve` with a switchable profiler: SIGUSR1 starts it, SIGUSR2 stops it and dumps.

Why: profiling the whole process would mostly show the joins (presence traffic) and idle time;
the benchmarks switch the profiler on for exactly the phase being measured. The coordinator's
code is not touched: this wraps `coordinator.cli.main`.

Two things are recorded while on: cProfile (unless `--gc-only`, since cProfile slows the
coordinator about twofold) and every garbage-collector pause (invisible to cProfile), with its
start on the system-wide monotonic clock so the benchmarks can line pauses up with what their
clients saw. Results: OUT (pstats) and OUT.gc.json.

    python -m benchmarks.profile_coordinator --out prof.pstats [--gc-only] serve --port 0 ...
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
        print("usage: profile_coordinator --out FILE [--gc-only] <coordinator arguments>", file=sys.stderr)
        return 2
    out, rest = argv[1], argv[2:]
    gc_only = bool(rest) and rest[0] == "--gc-only"
    if gc_only:
        rest = rest[1:]
    profiler = cProfile.Profile()
    pauses: list[tuple[int, int, int, int]] = []  # (generation, start ns, duration ns, collected)
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
        summary["thresholds"] = gc.get_threshold()
        summary["pauses"] = [list(p) for p in pauses if p[0] >= 1]  # gen0 pauses are short and many
        with open(out + ".gc.json", "w") as f:
            json.dump(summary, f)

    signal.signal(signal.SIGUSR1, enable)
    signal.signal(signal.SIGUSR2, disable)
    from coordinator.cli import main as coordinator_main

    return coordinator_main(rest)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
