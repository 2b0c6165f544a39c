"""`coordinator serve` under cProfile, switched on by SIGUSR1 and off (and dumped) by SIGUSR2.

Why: profiling the whole process would mostly show the joins (presence traffic) and idle time;
the benchmarks switch the profiler on for exactly the phase being measured. The coordinator's
code is not touched: this wraps `coordinator.cli.main`.

    python -m benchmarks.profile_coordinator --out prof.pstats serve --port 0 ...
"""

from __future__ import annotations

import cProfile
import signal
import sys
from types import FrameType


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] != "--out":
        print("usage: profile_coordinator --out FILE <coordinator arguments>", file=sys.stderr)
        return 2
    out, rest = argv[1], argv[2:]
    profiler = cProfile.Profile()

    def enable(signum: int, frame: FrameType | None) -> None:
        profiler.enable()

    def disable(signum: int, frame: FrameType | None) -> None:
        profiler.disable()
        profiler.dump_stats(out)

    signal.signal(signal.SIGUSR1, enable)
    signal.signal(signal.SIGUSR2, disable)
    from coordinator.cli import main as coordinator_main

    return coordinator_main(rest)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
