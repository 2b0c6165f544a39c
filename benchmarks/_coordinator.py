"""The coordinator a benchmark measures: the harness's launcher (`CoordinatorProcess`, the one
way this project starts `coordinator serve`), in a temporary dir of its own, plus what only
benchmarks need (the profiling wrapper, signals to switch it, CPU readings by pid)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks._run import HOST, REPO
from harness.env.coordinator_process import CoordinatorOptions, CoordinatorProcess
from harness.env.ports import LOCALHOST

assert HOST == LOCALHOST, "benchmarks and the harness launcher bind the same loopback address"


class Coordinator:
    """`coordinator serve --port 0 --log-level warning` in its own temporary data dir, no admin
    token, no failpoints; `stop` always removes everything (after copying the log to
    `keep_logs`, if given). With `profile_out`, it runs under benchmarks/profile_coordinator.py:
    SIGUSR1 starts cProfile, SIGUSR2 stops it and dumps."""

    def __init__(
        self,
        extra_args: Sequence[str],
        keep_logs: Path | None = None,
        profile_out: Path | None = None,
        gc_only: bool = False,
        gc_freeze: bool = False,
        stop_timeout_s: float = 20.0,
    ) -> None:
        self.keep_logs = keep_logs
        self.profile_out = profile_out
        self.tmp = Path(tempfile.mkdtemp(prefix="bench-coordinator-"))
        command: list[str] | None = None
        if profile_out is not None:
            command = [sys.executable, "-m", "benchmarks.profile_coordinator", "--out", str(profile_out)]
            command += ["--gc-only"] if gc_only else []
            command += ["--gc-freeze"] if gc_freeze else []
        options = CoordinatorOptions(
            admin_token=None,
            enable_failpoints=False,
            log_format=None,
            extra={"log-level": "warning"},
            extra_args=list(extra_args),
            command=command,
            env={"PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))},
            stop_timeout_s=stop_timeout_s,
        )
        self.process = CoordinatorProcess(self.tmp, self.tmp / "data", options)

    @property
    def pid(self) -> int:
        pid = self.process.process.pid
        assert pid is not None
        return pid

    @property
    def port(self) -> int:
        return self.process.port

    @property
    def base_path(self) -> str:
        return self.process.base_path

    @property
    def ws_path(self) -> str:
        return self.process.base_path + "/ws"

    async def start(self) -> None:
        await self.process.start()

    def signal(self, signum: int) -> None:
        """To the coordinator alone (not recorded as a lifecycle event: profiling switches)."""
        with contextlib.suppress(ProcessLookupError, AssertionError):
            os.kill(self.pid, signum)

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
        return "\n".join(r.text for r in self.process.log_lines())[-limit:]

    def log_lines(self) -> int:
        return len(self.process.log_lines())

    async def stop(self) -> int | None:
        """SIGTERM (graceful), SIGKILL after the stop timeout; then delete the temporary dir."""
        try:
            return await self.process.stop()
        finally:
            if self.keep_logs is not None:
                with contextlib.suppress(OSError):
                    shutil.copy(self.tmp / "coordinator.stderr.log", self.keep_logs)
            shutil.rmtree(self.tmp, ignore_errors=True)


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
