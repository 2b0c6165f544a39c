"""What the benchmarks read to report a run: CPU (/proc, getrusage), RSS, the machine's load,
percentiles, and the GC / slow-apply pauses the profiling wrapper recorded."""

from __future__ import annotations

import math
import os
import resource
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_cpu_s(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process, all its threads included."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def proc_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def machine_cpu_s() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    parts = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = parts[3] + (parts[4] if len(parts) > 4 else 0)
    total = sum(parts[:8])
    return (total - idle) / CLK_TCK, total / CLK_TCK


def self_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def load_info() -> dict[str, Any]:
    """What `uptime` says, plus the core count: the figures depend on both."""
    one, five, fifteen = os.getloadavg()
    return {"loadavg": [one, five, fifteen], "cpus": os.cpu_count()}


@dataclass
class CpuWindow:
    """CPU used by the coordinator, by this process and by the whole machine over a window."""

    coordinator_pid: int
    coord0: tuple[float, float] = (0.0, 0.0)
    self0: float = 0.0
    machine0: tuple[float, float] = (0.0, 0.0)
    wall0: float = 0.0

    def start(self) -> None:
        self.coord0 = proc_cpu_s(self.coordinator_pid)
        self.self0 = self_cpu_s()
        self.machine0 = machine_cpu_s()
        self.wall0 = time.monotonic()

    def stop(self) -> dict[str, float]:
        user, system = proc_cpu_s(self.coordinator_pid)
        busy, total = machine_cpu_s()
        wall = time.monotonic() - self.wall0
        return {
            "wallS": round(wall, 3),
            "coordinatorUserS": round(user - self.coord0[0], 3),
            "coordinatorSysS": round(system - self.coord0[1], 3),
            "coordinatorCpuPct": round(100 * (user + system - sum(self.coord0)) / wall, 1),
            "driverCpuS": round(self_cpu_s() - self.self0, 3),
            "machineBusyCpuS": round(busy - self.machine0[0], 3),
            "machineCpuS": round(total - self.machine0[1], 3),
        }


def percentiles_ms(samples_ns: Sequence[int], points: Sequence[float] = (50, 90, 99, 99.9)) -> dict[str, Any]:
    if not samples_ns:
        return {"count": 0}
    ordered = sorted(samples_ns)
    out: dict[str, Any] = {"count": len(ordered)}
    for p in points:
        index = min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))  # nearest rank
        out[f"p{p:g}"] = round(ordered[index] / 1e6, 3)
    out["max"] = round(ordered[-1] / 1e6, 3)
    out["mean"] = round(sum(ordered) / len(ordered) / 1e6, 3)
    return out


def gc_pause_ms_within(gc_info: dict[str, Any] | None, start_ns: int, end_ns: int) -> float:
    """Milliseconds of gen1/gen2 garbage collection that overlap [start_ns, end_ns]."""
    if not gc_info:
        return 0.0
    total = 0
    for _, begin, took, _ in gc_info.get("pauses", []):
        total += max(0, min(end_ns, begin + took) - max(start_ns, begin))
    return round(total / 1e6, 2)


def slow_apply_ms_within(gc_info: dict[str, Any] | None, start_ns: int, end_ns: int) -> float:
    """Milliseconds of store applies over 10 ms that overlap [start_ns, end_ns]."""
    if not gc_info:
        return 0.0
    total = 0
    for begin, took in gc_info.get("storeApply", {}).get("over10Ms", []):
        total += max(0, min(end_ns, begin + took) - max(start_ns, begin))
    return round(total / 1e6, 2)
