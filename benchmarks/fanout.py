"""Fan-out benchmark: one writer, N subscribed sessions on one database.

Measures push_changes deliveries per second when the writer applies one-change change sets as
fast as they are acknowledged (closed loop), and the apply-to-push latency, there and at a fixed
offered load. The writer puts its send time (time.monotonic_ns, system-wide on Linux) in the
change's value; subscribers, in worker processes, subtract it from their receive time.

    .venv/bin/python -m benchmarks.fanout                      # small, < 60 s
    .venv/bin/python -m benchmarks.fanout --subscribers 1000 --workers 2 --duration-s 15

Measured from the first subscriber's connect: the time until every subscriber's presence view
holds all N subscribers (and the presence bytes that took), then the two phases. Receivers offer
permessage-deflate as browsers do (`--no-deflate`: they do not); whether it is used is the
server's choice (`--coordinator-arg=--ws-compression=deflate`).

Targets (issue 13): 1,000 join in <= 5 s; >= 60,000 deliveries/s closed loop with 1,000
subscribers; p99 <= 50 ms at a fixed 20,000 deliveries/s; <= 25 us of server CPU per delivery
with 100 subscribers offering deflate.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import signal
import struct
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
    slow_apply_ms_within,
)
from benchmarks._run import HOST, add_profiling_and_worker_args
from benchmarks._sessions import new_site_id, open_sessions
from benchmarks._workers import (
    Worker,
    ask_all,
    raise_nofile,
    serve_commands,
    split,
    stop_all,
    worker_or_driver,
)
from benchmarks._wsclient import RawWebSocket

DATABASE = "bench-fanout"
PUSH = b'{"type":"push_changes"'
PRESENCE = b'{"type":"presence'  # both forms: presence and presence_delta
APPLY_RESULT = b'{"type":"apply_result"'
MAX_APPLIES = 1_000_000
# Over VIEW_SAMPLE_OVER sessions a worker keeps presence views for the first VIEW_SAMPLE sessions
# that hear of presence (the earliest joiners, who learn of everyone through deltas) only.
VIEW_SAMPLE_OVER = 1000
VIEW_SAMPLE = 200  # per phase: every loop is bounded in count as well as in time


# ------------------------------------------------------------------------------------------------
# subscriber worker (a separate process)
# ------------------------------------------------------------------------------------------------
class Subscribers:
    """The subscriber sessions of one worker process and what they received."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.sessions: list[RawWebSocket] = []
        self.recording = False
        self.latencies = array("q")
        self.deliveries = 0
        self.first_ns = 0
        self.last_ns = 0
        self.pushes_total = 0
        self.seq_gaps = 0
        self.other: dict[str, int] = {}
        self.cpu0 = 0.0
        self.per_seq: dict[int, list[int]] = {}  # seq -> [send ns, first latency, last latency]
        self.heartbeat_ns: list[int] = []  # when the first session got a heartbeat
        self.views: dict[RawWebSocket, set[str]] = {}  # each (sampled) session's presence view
        self.untracked: set[RawWebSocket] = set()
        self.expected = 0  # subscribers every view must hold for the join to be complete
        self.complete_ns: dict[RawWebSocket, int] = {}
        self.presence_bytes = 0  # presence payload bytes (inflated)
        self.presence_frames = 0
        self.all_complete = asyncio.Event()

    def on_message(self, ws: RawWebSocket, payload: bytes, now: int) -> None:
        if payload.startswith(PUSH):
            message = orjson.loads(payload)
            seq = message["seq"]
            last = ws.user
            if isinstance(last, int) and seq != last + 1:
                self.seq_gaps += 1
            ws.user = seq
            self.pushes_total += 1
            if self.recording:
                sent = int(message["changeSets"][0]["changes"][0]["value"])
                latency = now - sent
                self.latencies.append(latency)
                span = self.per_seq.get(seq)
                if span is None:
                    self.per_seq[seq] = [sent, latency, latency]
                elif latency > span[2]:
                    span[2] = latency
                elif latency < span[1]:
                    span[1] = latency
                self.deliveries += 1
                if not self.first_ns:
                    self.first_ns = now
                self.last_ns = now
            return
        if payload.startswith(PRESENCE):
            self._presence(ws, payload, now)
            return
        kind = payload[9:30].split(b'"', 1)[0].decode(errors="replace")
        if kind == "heartbeat" and self.recording and ws is self.sessions[0]:
            self.heartbeat_ns.append(now)
        if kind in ("error", "notice"):
            kind += ":" + str(orjson.loads(payload).get("code"))
        self.other[kind] = self.other.get(kind, 0) + 1

    def _presence(self, ws: RawWebSocket, payload: bytes, now: int) -> None:
        """Keep the session's view from either form, and note when it first holds everyone."""
        self.presence_bytes += len(payload)
        self.presence_frames += 1
        view = self.views.get(ws)
        if view is None:
            if ws in self.untracked:
                return
            if self.args.count > VIEW_SAMPLE_OVER and len(self.views) + len(self.untracked) >= VIEW_SAMPLE:
                self.untracked.add(ws)  # many sessions: views for a sample (their memory is O(N) each)
                return
            view = self.views[ws] = set()
        message = orjson.loads(payload)
        if message["type"] == "presence":
            view.clear()
            view.update(e["connectionId"] for e in message["sessions"])
        else:
            view.update(e["connectionId"] for e in message["joined"])
            view.difference_update(message["left"])
        if ws not in self.complete_ns and self.expected and len(view) >= self.expected:
            self.complete_ns[ws] = now
            if len(self.complete_ns) >= self._tracked():
                self.all_complete.set()

    def _tracked(self) -> int:
        return self.args.count if self.args.count <= VIEW_SAMPLE_OVER else VIEW_SAMPLE

    async def joined(self, command: dict[str, Any]) -> dict[str, Any]:
        """Wait (bounded) until every session's view holds all subscribers."""
        if len(self.complete_ns) < self._tracked():
            self.all_complete.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.all_complete.wait(), float(command.get("timeoutS", 300)))
        return {
            "complete": len(self.complete_ns),
            "tracked": self._tracked(),
            "lastCompleteNs": max(self.complete_ns.values(), default=0),
            "presenceBytes": self.presence_bytes,
            "presenceFrames": self.presence_frames,
            "wireBytes": sum(ws.bytes_received for ws in self.sessions),
            "deflateNegotiated": sum(1 for ws in self.sessions if ws.deflate),
        }

    async def connect(self, command: dict[str, Any]) -> dict[str, Any]:
        nofile = raise_nofile()
        self.expected = int(command.get("expected", 0))
        targets = [(DATABASE, new_site_id()) for _ in range(self.args.count)]
        started = time.monotonic()
        self.sessions, errors = await open_sessions(
            self.args.host,
            self.args.port,
            self.args.path,
            targets,
            self.on_message,
            (PUSH, PRESENCE),
            self.args.concurrency,
            float(command.get("timeoutS", 300)),
            deflate=not self.args.no_deflate,
        )
        return {
            "connected": len(self.sessions),
            "errorCount": len(errors),
            "errors": errors[:5],
            "seconds": round(time.monotonic() - started, 3),
            "nofile": nofile,
        }

    async def quiet(self, command: dict[str, Any]) -> dict[str, Any]:
        """Wait until nothing arrived for `quietMs` (e.g. the presence storm of the joins is over)."""
        quiet_ns = int(command.get("quietMs", 1000)) * 1_000_000
        deadline = time.monotonic() + float(command.get("timeoutS", 300))
        started = time.monotonic()
        while time.monotonic() < deadline:
            latest = max((ws.last_recv_ns for ws in self.sessions), default=0)
            if time.monotonic_ns() - latest >= quiet_ns:
                break
            await asyncio.sleep(0.1)
        return {
            "waitedS": round(time.monotonic() - started, 3),
            "bytesReceived": sum(ws.bytes_received for ws in self.sessions),
            "bytesSkipped": sum(ws.bytes_skipped for ws in self.sessions),
            "open": sum(1 for ws in self.sessions if not ws.closed.done()),
            "other": self.other,
        }

    async def start(self, command: dict[str, Any]) -> dict[str, Any]:
        self.latencies = array("q")
        self.deliveries = self.first_ns = self.last_ns = 0
        self.per_seq = {}
        self.heartbeat_ns = []
        self.cpu0 = self_cpu_s()
        self.recording = True
        return {"ok": True}

    async def stop(self, command: dict[str, Any]) -> dict[str, Any]:
        self.recording = False
        return {
            "deliveries": self.deliveries,
            "firstNs": self.first_ns,
            "lastNs": self.last_ns,
            "cpuS": round(self_cpu_s() - self.cpu0, 3),
            "latencies": base64.b64encode(self.latencies.tobytes()).decode(),
            "seqGaps": self.seq_gaps,
            "perSeq": {str(seq): span for seq, span in self.per_seq.items()},
            "heartbeatNs": self.heartbeat_ns,
            "heartbeatGapMaxMs": round(
                max(
                    (b - a for a, b in zip(self.heartbeat_ns, self.heartbeat_ns[1:], strict=False)), default=0
                )
                / 1e6,
                1,
            ),
            "open": sum(1 for ws in self.sessions if not ws.closed.done()),
            "closeCodes": sorted({ws.close_code for ws in self.sessions if ws.close_code is not None}),
            "other": self.other,
        }

    async def run(self) -> None:
        await serve_commands(
            {
                "connect": self.connect,
                "joined": self.joined,
                "quiet": self.quiet,
                "start": self.start,
                "stop": self.stop,
            }
        )
        for ws in self.sessions:
            ws.close()
        await asyncio.sleep(0.2)


# ------------------------------------------------------------------------------------------------
# the writer (in the driver process)
# ------------------------------------------------------------------------------------------------
class Writer:
    """One session applying one-change change sets, each after the previous one's apply_result."""

    def __init__(self, site_id: str) -> None:
        self.site_id = site_id
        self.site_raw = base64.urlsafe_b64decode(site_id + "==")
        self.ws: RawWebSocket | None = None
        self.pending: asyncio.Future[bytes] | None = None
        self.wall = 0
        self.counter = 0
        self.key = 0

    def on_message(self, ws: RawWebSocket, payload: bytes, now: int) -> None:
        if payload.startswith((APPLY_RESULT, b'{"type":"error"')) and self.pending is not None:
            if not self.pending.done():
                self.pending.set_result(payload)

    def _hlc(self) -> tuple[str, str]:
        now_ms = time.time_ns() // 1_000_000
        if now_ms > self.wall:
            self.wall, self.counter = now_ms, 0
        else:
            self.counter += 1
            if self.counter > 0xFFFF:
                self.wall, self.counter = self.wall + 1, 0
        raw = struct.pack(">QH16sI", self.wall, self.counter, self.site_raw, 0)
        return base64.b64encode(raw).decode(), f"{self.wall}:{self.counter}:{self.site_id}"

    def frame(self, sent_ns: int) -> bytes:
        hlc, tx_id = self._hlc()
        self.key += 1
        change = {
            "type": "column",
            "schema": "main",
            "table": "bench",
            "pk": [self.key],
            "column": "v",
            "value": str(sent_ns),
            "hlc": hlc,
        }
        change_set = {
            "siteId": self.site_id,
            "transactionId": tx_id,
            "hlc": hlc,
            "changes": [change],
            "schemaMigrations": [],
        }
        return orjson.dumps({"type": "apply_changes", "requestId": self.key, "changes": [change_set]})

    async def run(self, duration_s: float, applies_per_s: float | None) -> dict[str, Any]:
        """Closed loop (`applies_per_s` None) or paced; either way one apply in flight at a time."""
        assert self.ws is not None
        loop = asyncio.get_running_loop()
        acks = array("q")
        applies = errors = 0
        first_ns = time.monotonic_ns()
        start = time.monotonic()
        end = start + duration_s
        while applies < MAX_APPLIES and time.monotonic() < end:
            if applies_per_s is not None:
                due = start + applies / applies_per_s
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            self.pending = loop.create_future()
            sent = time.monotonic_ns()
            self.ws.send_text(self.frame(sent))
            answer = await asyncio.wait_for(self.pending, 30.0)
            acks.append(time.monotonic_ns() - sent)
            result = orjson.loads(answer)
            if result.get("type") != "apply_result" or result.get("applied") != 1:
                errors += 1
                if errors > 10:
                    raise RuntimeError(f"writer: apply failed: {answer[:300]!r}")
            applies += 1
        last_ns = time.monotonic_ns()
        return {
            "applies": applies,
            "applyErrors": errors,
            "firstSendNs": first_ns,
            "lastAckNs": last_ns,
            "appliesPerS": round(applies / ((last_ns - first_ns) / 1e9), 1),
            "ackLatencyMs": percentiles_ms(acks),
        }


# ------------------------------------------------------------------------------------------------
# the driver
# ------------------------------------------------------------------------------------------------
async def phase(
    name: str,
    workers: list[Worker],
    writer: Writer,
    coordinator: Coordinator,
    subscribers: int,
    duration_s: float,
    applies_per_s: float | None,
    profile: bool = False,
) -> dict[str, Any]:
    await ask_all(workers, {"cmd": "start"}, 30)
    cpu = CpuWindow(coordinator.pid)
    cpu.start()
    load_before = load_info()
    if profile:
        coordinator.signal(signal.SIGUSR1)
        await asyncio.sleep(0.05)
    written = await writer.run(duration_s, applies_per_s)
    gc_info = await coordinator.profiler_off() if profile else None
    drained = await ask_all(workers, {"cmd": "quiet", "quietMs": 500, "timeoutS": 60}, 90)
    window = cpu.stop()
    stats = await ask_all(workers, {"cmd": "stop"}, 60)
    latencies = array("q")
    for s in stats:
        latencies.frombytes(base64.b64decode(s.pop("latencies")))
    deliveries = sum(s["deliveries"] for s in stats)
    spans: dict[int, list[int]] = {}
    for s in stats:
        for seq_text, (sent, first, last) in s.pop("perSeq").items():
            span = spans.setdefault(int(seq_text), [sent, first, last])
            span[1], span[2] = min(span[1], first), max(span[2], last)
    heartbeats = sorted({t for s in stats for t in s.pop("heartbeatNs")})
    heartbeat_gap_ms = max(s["heartbeatGapMaxMs"] for s in stats)
    slow = [(seq, sp) for seq, sp in sorted(spans.items()) if sp[2] > 50_000_000]
    with_heartbeat = sum(1 for _, sp in slow if any(sp[0] - 5e6 <= h <= sp[0] + sp[2] for h in heartbeats))
    with_gc = sum(1 for _, sp in slow if gc_pause_ms_within(gc_info, sp[0], sp[0] + sp[2]) > 0)
    with_slow_apply = sum(1 for _, sp in slow if slow_apply_ms_within(gc_info, sp[0], sp[0] + sp[2]) > 0)
    last_ns = max((s["lastNs"] for s in stats if s["lastNs"]), default=written["lastAckNs"])
    span_s = (max(last_ns, written["lastAckNs"]) - written["firstSendNs"]) / 1e9
    expected = written["applies"] * subscribers
    client_cpu = sum(s["cpuS"] for s in stats)
    return {
        "phase": name,
        "offeredAppliesPerS": applies_per_s,
        "offeredDeliveriesPerS": None if applies_per_s is None else applies_per_s * subscribers,
        "writer": written,
        "deliveries": deliveries,
        "expectedDeliveries": expected,
        "lostDeliveries": expected - deliveries,
        "seconds": round(span_s, 3),
        "deliveriesPerS": round(deliveries / span_s, 1) if span_s > 0 else None,
        "latencyMs": percentiles_ms(latencies),
        "perApply": {
            "firstDeliveryMs": percentiles_ms([sp[1] for sp in spans.values()]),
            "lastDeliveryMs": percentiles_ms([sp[2] for sp in spans.values()]),
            "fanoutSpreadMs": percentiles_ms([sp[2] - sp[1] for sp in spans.values()]),
            "appliesOver50Ms": len(slow),
            "ofThemOverlappingAHeartbeatRound": with_heartbeat,
            "ofThemOverlappingAGcPause": with_gc if gc_info else None,
            "ofThemOverlappingAStoreApplyOver10Ms": with_slow_apply if gc_info else None,
            "slowest": [
                {
                    "seq": seq,
                    "firstMs": round(sp[1] / 1e6, 2),
                    "lastMs": round(sp[2] / 1e6, 2),
                    "gcPauseMsWithin": gc_pause_ms_within(gc_info, sp[0], sp[0] + sp[2]),
                    "slowStoreApplyMsWithin": slow_apply_ms_within(gc_info, sp[0], sp[0] + sp[2]),
                }
                for seq, sp in sorted(slow, key=lambda x: -x[1][2])[:5]
            ],
            "heartbeatRounds": len(heartbeats),
            "heartbeatGapMaxMs": heartbeat_gap_ms,  # one session per worker
        },
        "cpu": {
            **window,
            "clientWorkersCpuS": round(client_cpu, 3),
            "clientWorkersCpuPct": round(100 * client_cpu / window["wallS"], 1),
            "activeS": round(span_s, 3),
            "coordinatorCpuPctOfActive": round(
                100 * (window["coordinatorUserS"] + window["coordinatorSysS"]) / span_s, 1
            ),
            "clientWorkersCpuPctOfActive": round(100 * client_cpu / span_s, 1),
            "perWorkerCpuS": [s["cpuS"] for s in stats],
            "coordinatorCpuUsPerDelivery": (
                round(1e6 * (window["coordinatorUserS"] + window["coordinatorSysS"]) / deliveries, 2)
                if deliveries
                else None
            ),
            "othersOnMachineCpuS": round(
                window["machineBusyCpuS"]
                - window["coordinatorUserS"]
                - window["coordinatorSysS"]
                - client_cpu
                - window["driverCpuS"],
                3,
            ),
        },
        "loadBefore": load_before,
        "loadAfter": load_info(),
        "coordinatorGc": None
        if gc_info is None
        else {
            **{k: v for k, v in gc_info.items() if k not in ("pauses", "storeApply")},
            "gen1Or2PausesOver20Ms": [
                [g, round(t / 1e6, 1)] for g, _, t, _ in gc_info.get("pauses", []) if t > 20_000_000
            ],
            "storeApply": {
                **gc_info.get("storeApply", {}),
                "over10Ms": [round(t / 1e6, 1) for _, t in gc_info.get("storeApply", {}).get("over10Ms", [])],
            },
        },
        "subscribersOpen": sum(s["open"] for s in stats),
        "seqGaps": sum(s["seqGaps"] for s in stats),
        "closeCodes": sorted({c for s in stats for c in s["closeCodes"]}),
        "drainWaitS": max(d["waitedS"] for d in drained),
    }


async def drive(args: argparse.Namespace) -> int:
    coordinator = Coordinator(
        [
            "--max-connections",
            str(args.subscribers + 100),
            "--rate-limit-per-s",
            "1000000",
            "--rate-limit-burst",
            "1000000",
            *args.coordinator_arg,
        ],
        profile_out=args.profile,
        gc_only=args.gc_only,
        gc_freeze=args.gc_freeze,
    )
    workers: list[Worker] = []
    writer_ws: RawWebSocket | None = None
    result: dict[str, Any] = {
        "benchmark": "fanout",
        "params": {
            "subscribers": args.subscribers,
            "workers": args.workers,
            "durationS": args.duration_s,
            "rateDeliveriesPerS": args.rate,
            "receiversOfferDeflate": not args.no_deflate,
            "coordinatorArgs": args.coordinator_arg,
        },
        "loadAtStart": load_info(),
    }
    try:
        await coordinator.start()
        result["coordinatorPid"] = coordinator.pid
        common = ["--host", HOST, "--port", str(coordinator.port), "--path", coordinator.ws_path]
        for index, count in enumerate(split(args.subscribers, args.workers)):
            worker_args = [*common, "--count", str(count), "--concurrency", str(args.concurrency)]
            workers.append(await Worker.spawn("benchmarks.fanout", index, worker_args))
        setup = CpuWindow(coordinator.pid)
        setup.start()
        rss0 = _rss(coordinator.pid)
        first_connect_ns = time.monotonic_ns()
        connected = await ask_all(
            workers,
            {"cmd": "connect", "timeoutS": args.setup_timeout_s, "expected": args.subscribers},
            60 + args.setup_timeout_s,
        )
        views = await ask_all(
            workers, {"cmd": "joined", "timeoutS": args.setup_timeout_s}, 60 + args.setup_timeout_s
        )
        all_joined_ns = max(v["lastCompleteNs"] for v in views)
        writer = Writer(new_site_id())
        sessions, errors = await open_sessions(
            HOST,
            coordinator.port,
            coordinator.ws_path,
            [(DATABASE, writer.site_id)],
            writer.on_message,
            (),
            1,
            60,
        )
        if not sessions:
            raise RuntimeError(f"writer could not connect: {errors}")
        writer.ws = writer_ws = sessions[0]
        settled = await ask_all(
            workers,
            {"cmd": "quiet", "quietMs": 300, "timeoutS": args.setup_timeout_s},
            60 + args.setup_timeout_s,
        )
        setup_window = setup.stop()
        n_connected = sum(c["connected"] for c in connected)
        presence_bytes = sum(v["presenceBytes"] for v in views)
        result["setup"] = {
            "joinSeconds": round((all_joined_ns - first_connect_ns) / 1e9, 3)
            if all(v["complete"] == v["tracked"] for v in views)
            else None,
            "viewsComplete": sum(v["complete"] for v in views),
            "viewsTracked": sum(v["tracked"] for v in views),
            "presenceBytesReceived": presence_bytes,
            "presenceBytesPerSubscriber": round(presence_bytes / max(1, args.subscribers)),
            "presenceFrames": sum(v["presenceFrames"] for v in views),
            "wireBytesUntilJoined": sum(v["wireBytes"] for v in views),
            "deflateNegotiated": sum(v["deflateNegotiated"] for v in views),
            "subscribersConnected": n_connected,
            "connectErrors": sum(c["errorCount"] for c in connected),
            "connectErrorSamples": [e for c in connected for e in c["errors"]][:5],
            "connectSecondsMax": max(c["seconds"] for c in connected),
            "settleSecondsMax": max(s["waitedS"] for s in settled),
            "bytesReceivedBySubscribers": sum(s["bytesReceived"] for s in settled),
            "presenceBytesSkippedUnparsed": sum(s["bytesSkipped"] for s in settled),
            "framesByType": _merge([s["other"] for s in settled]),
            "subscribersOpenAfterSetup": sum(s["open"] for s in settled),
            "coordinatorRssKiB": {"before": rss0, "after": _rss(coordinator.pid)},
            "cpu": setup_window,
        }
        if n_connected == 0:
            raise RuntimeError("no subscriber connected")
        result["closedLoop"] = await phase(
            "closed-loop",
            workers,
            writer,
            coordinator,
            n_connected,
            args.duration_s,
            None,
            profile=args.profile is not None and args.profile_phase in ("closed", "both"),
        )
        result["fixedRate"] = await phase(
            "fixed-rate",
            workers,
            writer,
            coordinator,
            n_connected,
            args.duration_s,
            args.rate / n_connected,
            profile=args.profile is not None and args.profile_phase in ("fixed", "both"),
        )
        if args.profile is not None:
            result["profile"] = {
                "file": str(args.profile),
                "phase": args.profile_phase,
                "gcOnly": args.gc_only,
                "gcFreezeExperiment": args.gc_freeze,
            }
        closed, fixed = result["closedLoop"], result["fixedRate"]
        result["summary"] = {
            "deliveriesPerS": closed["deliveriesPerS"],
            "closedLoopP50Ms": closed["latencyMs"].get("p50"),
            "closedLoopP99Ms": closed["latencyMs"].get("p99"),
            "fixedRateDeliveriesPerS": fixed["deliveriesPerS"],
            "fixedRateP50Ms": fixed["latencyMs"].get("p50"),
            "fixedRateP99Ms": fixed["latencyMs"].get("p99"),
            "coordinatorCpuPctClosedLoop": closed["cpu"]["coordinatorCpuPctOfActive"],
            "clientWorkersCpuPctClosedLoop": closed["cpu"]["clientWorkersCpuPctOfActive"],
            "coordinatorCpuUsPerDeliveryClosedLoop": closed["cpu"]["coordinatorCpuUsPerDelivery"],
            "joinSeconds": result["setup"]["joinSeconds"],
            "presenceBytesPerSubscriber": result["setup"]["presenceBytesPerSubscriber"],
            "fixedRateMaxMs": fixed["latencyMs"].get("max"),
            "closedLoopMaxMs": closed["latencyMs"].get("max"),
            "lostDeliveries": closed["lostDeliveries"] + fixed["lostDeliveries"],
        }
        result["coordinatorLogLines"] = coordinator.log_lines()
        return_code = 0
    except asyncio.CancelledError:
        result["error"] = "interrupted"
        raise
    except Exception as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
        result["coordinatorLogTail"] = coordinator.log_tail()
        return_code = 1
    finally:
        if writer_ws is not None:
            writer_ws.close()
        await stop_all(workers)
        result["coordinatorExit"] = await coordinator.stop()
        result["loadAtEnd"] = load_info()
        print(json.dumps(result, indent=2))
    return return_code


def _rss(pid: int) -> int:
    return proc_rss_kib(pid)


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
    parser.add_argument("--subscribers", type=int, default=200, help="subscribed sessions (issue 2: 1000)")
    parser.add_argument("--workers", type=int, default=2, help="subscriber processes")
    parser.add_argument("--duration-s", type=float, default=5.0, help="length of each measured phase")
    parser.add_argument(
        "--rate", type=float, default=20_000.0, help="offered deliveries/s of the fixed-rate phase"
    )
    parser.add_argument("--no-deflate", action="store_true", help="receivers do not offer permessage-deflate")
    parser.add_argument("--concurrency", type=int, default=20, help="handshakes in flight per worker")
    parser.add_argument(
        "--setup-timeout-s", type=float, default=300.0, help="bound on connecting and settling"
    )
    parser.add_argument(
        "--coordinator-arg", action="append", default=[], help="extra argument for `coordinator serve`"
    )
    parser.add_argument(
        "--profile", type=Path, help="run the coordinator under cProfile for one phase; pstats file"
    )
    parser.add_argument(
        "--profile-phase",
        choices=("closed", "fixed", "both"),
        default="closed",
        help="phase(s) to profile (with both, the pstats file holds the last one)",
    )
    add_profiling_and_worker_args(parser)
    parser.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.subscribers < 1 or args.workers < 1 or args.duration_s <= 0 or args.rate <= 0:
        parser.error("--subscribers, --workers, --duration-s and --rate must be positive")
    if args.host != HOST:
        parser.error("traffic goes to 127.0.0.1 only")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return worker_or_driver(args.worker, lambda: Subscribers(args).run(), lambda: drive(args))


if __name__ == "__main__":
    sys.exit(main())
