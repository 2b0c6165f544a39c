"""Idle-connections benchmark: many authenticated sessions held open while heartbeats flow.

Measures the coordinator's memory per session (VmRSS from /proc before and after the sessions
joined, divided by their number) and the largest gap between two heartbeats seen by any
session while they are held. Sessions are spread over `--databases` databases; the first
session of each database joins before the baseline is taken, so the per-session figure
excludes the per-database cost (an open SQLite store), which is reported separately.

    .venv/bin/python -m benchmarks.connections                      # small, < 60 s
    .venv/bin/python -m benchmarks.connections --sessions 10000 --hold-s 20

Targets (issue 2): <= 40 KiB per session; max heartbeat gap <= 2x the heartbeat interval.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import itertools
import json
import signal
import sys
import time
from array import array
from pathlib import Path
from typing import Any

import orjson

from benchmarks._coordinator import Coordinator
from benchmarks._measure import (
    CpuWindow,
    gc_pause_ms_within,
    load_info,
    percentiles_ms,
    proc_rss_kib,
    self_cpu_s,
)
from benchmarks._run import HOST, add_profiling_and_worker_args
from benchmarks._sessions import new_site_id, open_sessions
from benchmarks._workers import Worker, ask_all, raise_nofile, serve_commands, stop_all, worker_or_driver
from benchmarks._wsclient import RawWebSocket

HEARTBEAT = b'{"type":"heartbeat"'


def database_of(index: int, databases: int) -> str:
    return f"bench-conn-{index % databases}"


def vm_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


# ------------------------------------------------------------------------------------------------
# client worker (a separate process)
# ------------------------------------------------------------------------------------------------
class Idlers:
    """This worker's share of the sessions: session j belongs to worker j % workers."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.sessions: list[RawWebSocket] = []
        self.recording = False
        self.gaps = array("q")
        self.server_gaps = array("q")  # between the `ts` of consecutive heartbeats, in ms
        self.round_delays = array("q")  # receive wall time - `ts`: how far into its round it came
        self.rounds: dict[int, list[int]] = {}  # heartbeat ts -> [first, last receive ns]
        self.heartbeats = 0
        self.other: dict[str, int] = {}
        self.cpu0 = 0.0

    def on_message(self, ws: RawWebSocket, payload: bytes, now: int) -> None:
        if payload.startswith(HEARTBEAT):
            if self.recording:
                last = ws.user
                ts = orjson.loads(payload)["ts"]
                self.round_delays.append(time.time_ns() // 1_000_000 - ts)
                if isinstance(last, tuple):
                    self.gaps.append(now - last[0])
                    self.server_gaps.append(ts - last[1])
                ws.user = (now, ts)
                self.heartbeats += 1
                seen = self.rounds.get(ts)
                if seen is None:
                    self.rounds[ts] = [now, now]
                elif now > seen[1]:
                    seen[1] = now
            return
        kind = payload[9:30].split(b'"', 1)[0].decode(errors="replace")
        self.other[kind] = self.other.get(kind, 0) + 1

    async def connect(self, command: dict[str, Any]) -> dict[str, Any]:
        """Phase 0: the first session of each database; phase 1: all the others."""
        nofile = raise_nofile()
        a = self.args
        first = command["phase"] == 0
        indices = [j for j in range(a.index, a.sessions, a.workers) if (j < a.databases) == first]
        targets = [(database_of(j, a.databases), new_site_id()) for j in indices]
        started = time.monotonic()
        sessions, errors = await open_sessions(
            a.host, a.port, a.path, targets, self.on_message, (HEARTBEAT,), a.concurrency, command["timeoutS"]
        )
        self.sessions.extend(sessions)
        return {
            "connected": len(sessions),
            "errorCount": len(errors),
            "errors": errors[:5],
            "seconds": round(time.monotonic() - started, 3),
            "nofile": nofile,
        }

    async def quiet(self, command: dict[str, Any]) -> dict[str, Any]:
        """Wait until no session received anything but heartbeats for `quietMs`."""
        quiet_ns = int(command.get("quietMs", 1000)) * 1_000_000
        deadline = time.monotonic() + float(command.get("timeoutS", 300))
        started = time.monotonic()
        while time.monotonic() < deadline:
            before = sum(self.other.values()) + sum(ws.bytes_skipped for ws in self.sessions)
            await asyncio.sleep(quiet_ns / 1e9)
            after = sum(self.other.values()) + sum(ws.bytes_skipped for ws in self.sessions)
            if after == before:
                break
        return {
            "waitedS": round(time.monotonic() - started, 3),
            "bytesReceived": sum(ws.bytes_received for ws in self.sessions),
            "bytesSkipped": sum(ws.bytes_skipped for ws in self.sessions),
            "open": sum(1 for ws in self.sessions if not ws.closed.done()),
            "other": self.other,
        }

    async def start(self, command: dict[str, Any]) -> dict[str, Any]:
        for ws in self.sessions:
            ws.user = None
        self.gaps = array("q")
        self.server_gaps = array("q")
        self.round_delays = array("q")
        self.rounds = {}
        self.heartbeats = 0
        self.cpu0 = self_cpu_s()
        self.recording = True
        return {"ok": True}

    async def stop(self, command: dict[str, Any]) -> dict[str, Any]:
        self.recording = False
        # a session that saw no heartbeat since `start` has an open gap at least this long
        now = time.monotonic_ns()
        silent = [ws for ws in self.sessions if not isinstance(ws.user, tuple)]
        open_gap = max((now - ws.user[0] for ws in self.sessions if isinstance(ws.user, tuple)), default=0)
        return {
            "heartbeats": self.heartbeats,
            "gaps": base64.b64encode(self.gaps.tobytes()).decode(),
            "serverGapsMs": base64.b64encode(self.server_gaps.tobytes()).decode(),
            "roundDelaysMs": base64.b64encode(self.round_delays.tobytes()).decode(),
            "rounds": {str(ts): span for ts, span in self.rounds.items()},
            "sessionsWithoutHeartbeat": len(silent),
            "openGapAtStopNs": open_gap,
            "cpuS": round(self_cpu_s() - self.cpu0, 3),
            "open": sum(1 for ws in self.sessions if not ws.closed.done()),
            "closeCodes": sorted({ws.close_code for ws in self.sessions if ws.close_code is not None}),
            "other": self.other,
        }

    async def run(self) -> None:
        await serve_commands(
            {"connect": self.connect, "quiet": self.quiet, "start": self.start, "stop": self.stop}
        )
        for ws in self.sessions:
            ws.close()
        await asyncio.sleep(0.5)


# ------------------------------------------------------------------------------------------------
# the driver
# ------------------------------------------------------------------------------------------------
async def settle(workers: list[Worker], timeout_s: float) -> list[dict[str, Any]]:
    return await ask_all(workers, {"cmd": "quiet", "quietMs": 1000, "timeoutS": timeout_s}, timeout_s + 60)


async def drive(args: argparse.Namespace) -> int:
    interval_ms = args.heartbeat_interval_ms
    coordinator = Coordinator(
        [
            "--heartbeat-interval-ms",
            str(interval_ms),
            "--max-connections",
            str(args.sessions + 100),
            "--max-open-stores",
            str(args.databases + 10),
            *args.coordinator_arg,
        ],
        profile_out=args.profile,
        gc_only=args.gc_only,
        gc_freeze=args.gc_freeze,
        stop_timeout_s=30.0,
    )
    workers: list[Worker] = []
    result: dict[str, Any] = {
        "benchmark": "connections",
        "params": {
            "sessions": args.sessions,
            "databases": args.databases,
            "workers": args.workers,
            "holdS": args.hold_s,
            "heartbeatIntervalMs": interval_ms,
            "coordinatorArgs": args.coordinator_arg,
        },
        "loadAtStart": load_info(),
    }
    try:
        await coordinator.start()
        pid = coordinator.pid
        await asyncio.sleep(1.0)
        rss: dict[str, int] = {"started": proc_rss_kib(pid)}
        common = ["--host", HOST, "--port", str(coordinator.port), "--path", coordinator.ws_path]
        for index in range(args.workers):
            worker_args = [
                *common,
                *("--index", str(index), "--workers", str(args.workers)),
                *("--sessions", str(args.sessions), "--databases", str(args.databases)),
                *("--concurrency", str(args.concurrency)),
            ]
            workers.append(await Worker.spawn("benchmarks.connections", index, worker_args))
        timeout = args.setup_timeout_s
        phase0 = await ask_all(workers, {"cmd": "connect", "phase": 0, "timeoutS": timeout}, timeout + 60)
        await settle(workers, timeout)
        rss["firstSessionPerDatabase"] = proc_rss_kib(pid)
        setup = CpuWindow(pid)
        setup.start()
        phase1 = await ask_all(workers, {"cmd": "connect", "phase": 1, "timeoutS": timeout}, timeout + 60)
        connect_s = setup.stop()["wallS"]
        settled = await settle(workers, timeout)
        setup_cpu = setup.stop()
        rss["allSessions"] = proc_rss_kib(pid)
        n0 = sum(c["connected"] for c in phase0)
        n1 = sum(c["connected"] for c in phase1)
        result["setup"] = {
            "sessionsConnected": n0 + n1,
            "firstPerDatabaseConnected": n0,
            "connectErrors": sum(c["errorCount"] for c in phase0 + phase1),
            "connectErrorSamples": [e for c in phase0 + phase1 for e in c["errors"]][:5],
            "connectSeconds": connect_s,
            "nofile": phase1[0]["nofile"],
            "bytesReceivedByClients": sum(s["bytesReceived"] for s in settled),
            "largeFramesSkippedBytes": sum(s["bytesSkipped"] for s in settled),
            "framesByType": _merge([s["other"] for s in settled]),
            "cpu": setup_cpu,
        }
        if n1 == 0:
            raise RuntimeError("no session connected")

        await ask_all(workers, {"cmd": "start"}, 30)
        hold = CpuWindow(pid)
        hold.start()
        if args.profile is not None:
            coordinator.signal(signal.SIGUSR1)
        hold_start = time.monotonic()
        samples: list[int] = []
        while time.monotonic() - hold_start < args.hold_s:  # bounded by --hold-s
            await asyncio.sleep(min(1.0, max(0.0, args.hold_s - (time.monotonic() - hold_start))))
            samples.append(proc_rss_kib(pid))
        gc_info = await coordinator.profiler_off()
        if args.profile is not None:
            result["profile"] = {
                "file": str(args.profile),
                "phase": "hold",
                "gcOnly": args.gc_only,
                "gcFreezeExperiment": args.gc_freeze,
            }
        hold_cpu = hold.stop()
        stats = await ask_all(workers, {"cmd": "stop"}, 60)
        rss["endOfHold"] = proc_rss_kib(pid)
        rss["maxDuringHold"] = max(samples, default=rss["endOfHold"])
        rss["peakVmHWM"] = vm_kib(pid, "VmHWM")
        gaps, server_gaps, round_delays = array("q"), array("q"), array("q")
        for s in stats:
            round_delays.frombytes(base64.b64decode(s.pop("roundDelaysMs")))
            gaps.frombytes(base64.b64decode(s.pop("gaps")))
            server_gaps.frombytes(base64.b64decode(s.pop("serverGapsMs")))
        max_gap_ms = max(gaps, default=0) / 1e6
        rounds: dict[int, list[int]] = {}
        for s in stats:
            for ts_text, (first, last) in s.pop("rounds").items():
                span = rounds.setdefault(int(ts_text), [first, last])
                span[0], span[1] = min(span[0], first), max(span[1], last)
        ordered = sorted(rounds.items())
        late = []
        for (ts0, span0), (ts1, span1) in itertools.pairwise(ordered):
            if ts1 - ts0 > 1.5 * interval_ms:
                late.append(
                    {
                        "serverGapMs": ts1 - ts0,
                        "previousRoundWriteMs": round((span0[1] - span0[0]) / 1e6, 1),
                        # a pause delays the round it hits and the next one: look back one interval
                        "gcPauseMsBetween": gc_pause_ms_within(
                            gc_info, span0[0] - int(interval_ms * 1.5e6), span1[0]
                        ),
                    }
                )
        client_cpu = sum(s["cpuS"] for s in stats)
        per_session = (rss["endOfHold"] - rss["firstSessionPerDatabase"]) / max(1, n1)
        result["memory"] = {
            "rssKiB": rss,
            "perSessionKiB": round(per_session, 2),
            "perSessionKiBRightAfterJoin": round(
                (rss["allSessions"] - rss["firstSessionPerDatabase"]) / max(1, n1), 2
            ),
            "perSessionKiBIncludingDatabases": round((rss["endOfHold"] - rss["started"]) / (n0 + n1), 2),
            "perDatabaseKiB": round((rss["firstSessionPerDatabase"] - rss["started"]) / max(1, n0), 2),
            "sessionsCounted": n1,
        }
        result["heartbeats"] = {
            "intervalMs": interval_ms,
            "received": sum(s["heartbeats"] for s in stats),
            "expectedAbout": int((n0 + n1) * args.hold_s * 1000 / interval_ms),
            "gapMs": percentiles_ms(gaps),
            "maxGapMs": round(max_gap_ms, 3),
            "serverTsGapMs": percentiles_ms([g * 1_000_000 for g in server_gaps]),
            "deliveryDelayAfterRoundStartMs": percentiles_ms([d * 1_000_000 for d in round_delays]),
            "rounds": len(ordered),
            "roundWriteMs": percentiles_ms([sp[1] - sp[0] for _, sp in ordered]),
            "lateRounds": late[:20],
            "roundTimeline": [[ts, sp[0], sp[1]] for ts, sp in ordered],  # ts ms, first/last receive ns
            "gapsOver1_5xInterval": sum(1 for g in gaps if g > 1.5 * interval_ms * 1e6),
            "maxOpenGapAtStopMs": round(max(s["openGapAtStopNs"] for s in stats) / 1e6, 3),
            "sessionsWithoutHeartbeat": sum(s["sessionsWithoutHeartbeat"] for s in stats),
        }
        result["hold"] = {
            "cpu": {
                **hold_cpu,
                "clientWorkersCpuS": round(client_cpu, 3),
                "clientWorkersCpuPct": round(100 * client_cpu / hold_cpu["wallS"], 1),
            },
            "sessionsOpenAtEnd": sum(s["open"] for s in stats),
            "closeCodes": sorted({c for s in stats for c in s["closeCodes"]}),
            "load": load_info(),
            "coordinatorGc": gc_info,
        }
        result["summary"] = {
            "sessions": n0 + n1,
            "memoryPerSessionKiB": round(per_session, 2),
            "maxHeartbeatGapMs": round(max_gap_ms, 3),
            "heartbeatGapP99Ms": result["heartbeats"]["gapMs"].get("p99"),
            "coordinatorCpuPctDuringHold": hold_cpu["coordinatorCpuPct"],
            "clientWorkersCpuPctDuringHold": result["hold"]["cpu"]["clientWorkersCpuPct"],
            "targetMemoryMet": per_session <= 40.0,
            "targetHeartbeatGapMet": max_gap_ms <= 2 * interval_ms
            and result["heartbeats"]["sessionsWithoutHeartbeat"] == 0,
        }
        result["coordinatorLogLines"] = coordinator.log_lines()
        code = 0
    except asyncio.CancelledError:
        result["error"] = "interrupted"
        raise
    except Exception as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
        result["coordinatorLogTail"] = coordinator.log_tail()
        code = 1
    finally:
        await stop_all(workers)
        result["coordinatorExit"] = await coordinator.stop()
        result["loadAtEnd"] = load_info()
        print(json.dumps(result, indent=2))
    return code


def _merge(counts: list[dict[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for c in counts:
        for k, v in c.items():
            out[k] = out.get(k, 0) + v
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sessions", type=int, default=1000, help="sessions to hold (issue 2: 10000)")
    parser.add_argument(
        "--databases", type=int, default=0, help="databases they spread over (default: one per 10 sessions)"
    )
    parser.add_argument("--workers", type=int, default=4, help="client processes")
    parser.add_argument("--hold-s", type=float, default=5.0, help="how long the sessions are held")
    parser.add_argument("--heartbeat-interval-ms", type=int, default=1000, help="passed to the coordinator")
    parser.add_argument("--concurrency", type=int, default=50, help="handshakes in flight per worker")
    parser.add_argument(
        "--setup-timeout-s", type=float, default=300.0, help="bound on connecting and settling"
    )
    parser.add_argument(
        "--coordinator-arg", action="append", default=[], help="extra argument for `coordinator serve`"
    )
    parser.add_argument(
        "--profile", type=Path, help="run the coordinator under cProfile during the hold; pstats file"
    )
    add_profiling_and_worker_args(parser)
    parser.add_argument("--index", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.databases <= 0:
        args.databases = max(1, args.sessions // 10)
    if args.sessions < 1 or args.workers < 1 or args.hold_s <= 0 or args.heartbeat_interval_ms <= 0:
        parser.error("--sessions, --workers, --hold-s and --heartbeat-interval-ms must be positive")
    if args.databases >= args.sessions:
        parser.error("--databases must be smaller than --sessions (one session per database is the baseline)")
    if args.host != HOST:
        parser.error("traffic goes to 127.0.0.1 only")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return worker_or_driver(args.worker, lambda: Idlers(args).run(), lambda: drive(args))


if __name__ == "__main__":
    sys.exit(main())
