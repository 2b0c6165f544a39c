"""What both benchmarks share: the coordinator subprocess, worker subprocesses that speak JSON
lines, /proc readings (CPU, RSS, machine load) and percentiles.

The coordinator and every client run as separate processes so that the CPU each one used can be
read separately: on a small shared machine the clients compete with the server they measure.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import ctypes
import json
import math
import os
import resource
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from benchmarks._wsclient import RawWebSocket, open_websocket

REPO = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
HOST = "127.0.0.1"  # traffic only to this machine
PIPE_LIMIT = 256 * 1024 * 1024  # worker reports carry latency samples


def add_profiling_and_worker_args(parser: argparse.ArgumentParser) -> None:
    """The options both load scripts share: GC profiling switches and the hidden worker mode."""
    parser.add_argument(
        "--gc-only", action="store_true", help="with --profile: record only GC pauses (no cProfile slowdown)"
    )
    parser.add_argument(
        "--gc-freeze",
        action="store_true",
        help="with --profile, an experiment: gc.freeze() in the coordinator when the profiled phase starts",
    )
    # worker mode (internal)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--host", default=HOST, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--path", default="/sync/ws", help=argparse.SUPPRESS)


def new_site_id() -> str:
    """16 random bytes as 22 base64url characters (PROTOCOL.md 1)."""
    return base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")


def _die_with_parent() -> None:
    """preexec_fn: the child gets SIGTERM if the benchmark dies, even by SIGKILL (Linux)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


# /proc --------------------------------------------------------------------------------------------
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


def _read_json(path: Path, remove: bool = False) -> dict[str, Any] | None:
    """The JSON in `path` if it is there and complete (None otherwise); `remove` deletes it."""
    if remove:
        path.unlink(missing_ok=True)
        return None
    try:
        loaded: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return loaded


# the coordinator ----------------------------------------------------------------------------------
class Coordinator:
    """`coordinator serve` in its own temporary data dir; `stop` always removes everything."""

    def __init__(
        self,
        extra_args: Sequence[str],
        keep_logs: Path | None = None,
        profile_out: Path | None = None,
        gc_only: bool = False,
        gc_freeze: bool = False,
    ) -> None:
        self.extra_args = list(extra_args)
        self.keep_logs = keep_logs
        self.profile_out = profile_out
        self.gc_only = gc_only
        self.gc_freeze = gc_freeze
        self.tmp = Path(tempfile.mkdtemp(prefix="bench-coordinator-"))
        self.proc: asyncio.subprocess.Process | None = None
        self.port = 0
        self.base_path = "/sync"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def ws_path(self) -> str:
        return self.base_path + "/ws"

    async def start(self, timeout_s: float = 30.0) -> None:
        port_file = self.tmp / "port.json"
        exe = Path(sys.executable).parent / "coordinator"
        command = [str(exe)] if exe.exists() else [sys.executable, "-m", "coordinator.cli"]
        if self.profile_out is not None:  # SIGUSR1 starts cProfile, SIGUSR2 stops it and dumps
            command = [sys.executable, "-m", "benchmarks.profile_coordinator", "--out", str(self.profile_out)]
            command += ["--gc-only"] if self.gc_only else []
            command += ["--gc-freeze"] if self.gc_freeze else []
        command += ["serve", "--host", HOST, "--port", "0", "--data-dir", str(self.tmp / "data")]
        command += ["--port-file", str(port_file), "--log-level", "warning", *self.extra_args]
        self.log_path = self.tmp / "coordinator.log"
        with self.log_path.open("wb") as log:
            self.proc = await asyncio.create_subprocess_exec(
                *command,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                cwd=str(REPO),
                preexec_fn=_die_with_parent,
            )
        deadline = time.monotonic() + timeout_s
        while not port_file.exists():
            if self.proc.returncode is not None or time.monotonic() > deadline:
                raise RuntimeError(f"coordinator did not start: {self.log_tail()}")
            await asyncio.sleep(0.05)
        info = json.loads(port_file.read_text())
        self.port, self.base_path = int(info["port"]), str(info["basePath"])

    def signal(self, signum: int) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signum)

    async def profiler_off(self) -> dict[str, Any] | None:
        """SIGUSR2, then the GC pauses the wrapper wrote (None when not profiling)."""
        if self.profile_out is None:
            return None
        gc_file = Path(str(self.profile_out) + ".gc.json")
        _read_json(gc_file, remove=True)
        self.signal(signal.SIGUSR2)
        for _ in range(100):  # up to 10 s for the dump
            await asyncio.sleep(0.1)
            loaded = _read_json(gc_file)
            if loaded is not None:
                return loaded
        return None

    def log_tail(self, limit: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-limit:]
        except OSError:
            return ""

    def log_lines(self) -> int:
        try:
            return self.log_path.read_text(errors="replace").count("\n")
        except OSError:
            return 0

    async def stop(self, timeout_s: float = 20.0) -> int | None:
        """SIGTERM (graceful), SIGKILL after `timeout_s`; then delete the data dir."""
        code: int | None = None
        try:
            if self.proc is not None and self.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.send_signal(signal.SIGTERM)
                try:
                    code = await asyncio.wait_for(self.proc.wait(), timeout_s)
                except TimeoutError:
                    with contextlib.suppress(ProcessLookupError):
                        self.proc.kill()
                    code = await self.proc.wait()
            elif self.proc is not None:
                code = self.proc.returncode
        finally:
            if self.keep_logs is not None:
                with contextlib.suppress(OSError):
                    shutil.copy(self.log_path, self.keep_logs)
            shutil.rmtree(self.tmp, ignore_errors=True)
        return code


# worker processes -----------------------------------------------------------------------------------
class Worker:
    """A client process: commands go to its stdin and answers come from its stdout, one JSON
    object per line; it exits when its stdin closes."""

    def __init__(self, proc: asyncio.subprocess.Process, index: int) -> None:
        self.proc = proc
        self.index = index

    @classmethod
    async def spawn(cls, module: str, index: int, args: Sequence[str]) -> Worker:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            module,
            "--worker",
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            cwd=str(REPO),
            limit=PIPE_LIMIT,
            preexec_fn=_die_with_parent,
        )
        return cls(proc, index)

    async def send(self, command: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(orjson.dumps(command) + b"\n")
        await self.proc.stdin.drain()

    async def receive(self, timeout_s: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), timeout_s)
        if not line:
            raise RuntimeError(f"worker {self.index} exited (code {self.proc.returncode})")
        answer: dict[str, Any] = orjson.loads(line)
        if answer.get("error"):
            raise RuntimeError(f"worker {self.index}: {answer['error']}")
        return answer

    async def ask(self, command: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        await self.send(command)
        return await self.receive(timeout_s)

    async def stop(self, timeout_s: float = 10.0) -> None:
        if self.proc.returncode is not None:
            return
        if self.proc.stdin is not None:
            with contextlib.suppress(Exception):
                self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), timeout_s)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()


async def ask_all(
    workers: Sequence[Worker], command: dict[str, Any], timeout_s: float
) -> list[dict[str, Any]]:
    return list(await asyncio.gather(*(w.ask(command, timeout_s) for w in workers)))


async def stop_all(workers: Sequence[Worker]) -> None:
    await asyncio.gather(*(w.stop() for w in workers), return_exceptions=True)


def split(total: int, parts: int) -> list[int]:
    """`total` spread over `parts` as evenly as possible."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


# the worker side ------------------------------------------------------------------------------------
def raise_nofile() -> int:
    """Soft RLIMIT_NOFILE up to the hard limit: a worker holds thousands of sockets."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return hard
    return soft


async def stdin_lines() -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=PIPE_LIMIT)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


def reply(answer: dict[str, Any]) -> None:
    sys.stdout.buffer.write(orjson.dumps(answer) + b"\n")
    sys.stdout.buffer.flush()


async def serve_commands(handlers: dict[str, Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]]) -> None:
    """The worker's command loop: one answer per command, until stdin closes or `quit`."""
    reader = await stdin_lines()
    while True:
        line = await reader.readline()
        if not line:
            return
        command = orjson.loads(line)
        name = command.get("cmd")
        if name == "quit":
            return
        handler = handlers.get(name)
        if handler is None:
            reply({"error": f"unknown command {name!r}"})
            continue
        try:
            reply(await handler(command))
        except Exception as exc:
            reply({"error": f"{type(exc).__name__}: {exc}"})


@dataclass
class Handshaken:
    ws: RawWebSocket
    ack: asyncio.Future[bytes]


def handshake_frame(database_id: str, site_id: str) -> bytes:
    return orjson.dumps(
        {"type": "handshake", "databaseId": database_id, "siteId": site_id, "protocolVersion": 1}
    )


async def open_sessions(
    host: str,
    port: int,
    path: str,
    targets: Sequence[tuple[str, str]],
    on_message: Callable[[RawWebSocket, bytes, int], None],
    wanted: tuple[bytes, ...],
    concurrency: int,
    timeout_s: float,
) -> tuple[list[RawWebSocket], list[str]]:
    """Open one session per (databaseId, siteId) and wait for its handshake_ack. `on_message`
    sees every frame after the ack; the ack itself is consumed here. Returns (sessions, errors)."""
    sessions: list[RawWebSocket] = []
    errors: list[str] = []
    gate = asyncio.Semaphore(concurrency)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s

    async def one(database_id: str, site_id: str) -> None:
        async with gate:
            ack: asyncio.Future[bytes] = loop.create_future()

            def first(ws: RawWebSocket, payload: bytes, now: int) -> None:
                if ack.done():
                    on_message(ws, payload, now)
                elif payload.startswith((b'{"type":"handshake_ack"', b'{"type":"error"')):
                    ack.set_result(payload)

            remaining = max(0.1, deadline - loop.time())
            try:
                ws = await open_websocket(host, port, path, first, wanted, remaining)
            except (OSError, TimeoutError) as exc:
                errors.append(f"connect: {type(exc).__name__}: {exc}")
                return
            ws.send_text(handshake_frame(database_id, site_id))
            try:
                answer = await asyncio.wait_for(ack, max(0.1, deadline - loop.time()))
            except TimeoutError:
                errors.append("handshake timeout")
                ws.abort()
                return
            if not answer.startswith(b'{"type":"handshake_ack"'):
                errors.append(answer[:200].decode(errors="replace"))
                ws.abort()
                return
            sessions.append(ws)

    await asyncio.gather(*(one(db, site) for db, site in targets))
    return sessions, errors


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    """uvloop when present (it is, with uvicorn[standard]): clients must cost as little as possible."""
    try:
        import uvloop

        return uvloop.new_event_loop
    except ImportError:  # pragma: no cover
        return asyncio.new_event_loop


def run_async(main: Callable[[], Coroutine[Any, Any, int]]) -> int:
    """Run on uvloop. Ctrl-C or SIGTERM cancels `main`, whose finally blocks clean up (workers,
    coordinator, temp dir); the exit code is then 130."""

    async def guarded() -> int:
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        return await main()

    try:
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            return runner.run(guarded())
    except (KeyboardInterrupt, asyncio.CancelledError):
        print(json.dumps({"interrupted": True}), file=sys.stderr)
        return 130


def worker_or_driver(
    is_worker: bool,
    worker: Callable[[], Coroutine[Any, Any, None]],
    driver: Callable[[], Coroutine[Any, Any, int]],
) -> int:
    """The one entry point of a benchmark script: run as a client worker (started by the driver,
    answering its commands) or as the driver. A worker that fails tells the driver why instead
    of dying silently."""
    if not is_worker:
        return run_async(driver)

    async def work() -> int:
        try:
            await worker()
        except Exception as exc:
            reply({"error": f"{type(exc).__name__}: {exc}"})
            return 1
        return 0

    return run_async(work)
