"""The bundled coordinator as a supervised child, started through its CLI only.

The harness never imports the coordinator: it runs `coordinator serve` with `--port 0` and a
`--port-file`, reads the port the coordinator bound, and on restart passes that port back
(same data dir, same port), so clients and proxies reconnect to the same address. Inherited
COORDINATOR_* variables are removed so a run is exactly what its options say.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from harness.env import resources
from harness.env.ports import LOCALHOST, ensure_port_free
from harness.env.process import Lifecycle, ManagedProcess, ProcessError, ProcessEvent, ProcessSpec, cleanup
from harness.env.readiness import HttpOk, PortFile, wait_until

FAILPOINT_NAMES = (
    "snapshot.read",
    "store.open",
    "storage.write",
    "storage.read",
    "broadcast.send",
    "outbox.write",
)


MAX_LOG_LINES = 1_000_000


@dataclass(frozen=True)
class LogRecord:
    time: float
    text: str
    stream: str


class CoordinatorError(RuntimeError):
    """The coordinator could not be found, started or restarted."""


@dataclass
class CoordinatorOptions:
    """Options of `coordinator serve`. `extra` holds any other option by its CLI name without the
    dashes (e.g. {"max-open-stores": 2}); True is a bare flag, a list repeats the flag."""

    admin_token: str | None = "harness-admin"
    tokens: list[str] = field(default_factory=list)
    enable_failpoints: bool = True
    heartbeat_interval_ms: int | None = None
    drain_timeout_ms: int | None = None
    log_format: str | None = "json"
    bugs: list[str] = field(default_factory=list)  # catalogued bugs to re-introduce (COORDINATOR_BUGS)
    port: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    extra_args: list[str] = field(default_factory=list)  # raw CLI arguments, appended as given
    command: list[str] | None = None  # default: the `coordinator` next to this Python
    env: dict[str, str] = field(default_factory=dict)
    ready_timeout_s: float = 30.0
    stop_timeout_s: float = 15.0


@dataclass
class S3Settings:
    bucket: str
    endpoint: str
    region: str = "us-east-1"
    prefix: str = ""


def coordinator_command() -> list[str]:
    """`coordinator` beside the running interpreter (the venv's script), else on PATH."""
    beside = Path(sys.executable).parent / "coordinator"
    if beside.is_file() and os.access(beside, os.X_OK):
        return [str(beside)]
    on_path = shutil.which("coordinator")
    if on_path:
        return [on_path]
    raise CoordinatorError(
        f"no `coordinator` command beside {sys.executable} or on PATH; install the project "
        "(`pip install -e .`) or pass CoordinatorOptions(command=[...])"
    )


def _flags(options: Mapping[str, Any]) -> list[str]:
    out: list[str] = []
    for name, value in options.items():
        flag = "--" + name.replace("_", "-")
        if value is None or value is False:
            continue
        if value is True:
            out.append(flag)
        elif isinstance(value, list | tuple):
            for item in value:
                out += [flag, str(item)]
        else:
            out += [flag, str(value)]
    return out


class CoordinatorProcess(Lifecycle):
    """`coordinator serve` in a data dir of its own, reachable at `http_url`."""

    def __init__(
        self,
        run_dir: Path,
        data_dir: Path,
        options: CoordinatorOptions | None = None,
        s3: S3Settings | None = None,
        failpoint_seed: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.run_dir = run_dir
        self.data_dir = data_dir
        self.options = options or CoordinatorOptions()
        self.s3 = s3
        self.failpoint_seed = failpoint_seed
        self.clock = clock
        # wall-clock seconds at `clock` zero: maps the log's timestamps onto the run's clock
        self.wall_at_zero = time.time() - clock()
        self.port = self.options.port
        self.base_path = "/sync"
        self.port_file = run_dir / "coordinator.port.json"
        self._process: ManagedProcess | None = None

    # addresses ------------------------------------------------------------------------------
    @property
    def address(self) -> str:
        return f"{LOCALHOST}:{self.port}"

    @property
    def http_url(self) -> str:
        """Base URL including the base path, e.g. http://127.0.0.1:PORT/sync."""
        return f"http://{self.address}{self.base_path}"

    @property
    def process(self) -> ManagedProcess:
        if self._process is None:
            raise CoordinatorError("the coordinator is not started")
        return self._process

    def argv(self) -> list[str]:
        o = self.options
        command = o.command or coordinator_command()
        flags: dict[str, Any] = {
            "host": LOCALHOST,
            "port": self.port,
            "data_dir": str(self.data_dir),
            "port_file": str(self.port_file),
            "admin_token": o.admin_token,
            "token": list(o.tokens),
            "enable_failpoints": o.enable_failpoints,
            "heartbeat_interval_ms": o.heartbeat_interval_ms,
            "drain_timeout_ms": o.drain_timeout_ms,
            "log_format": o.log_format,
        }
        if o.enable_failpoints and self.failpoint_seed is not None and "failpoint-seed" not in o.extra:
            flags["failpoint_seed"] = self.failpoint_seed
        if self.s3 is not None:
            flags.update(
                s3_bucket=self.s3.bucket,
                s3_endpoint=self.s3.endpoint,
                s3_region=self.s3.region,
                s3_prefix=self.s3.prefix or None,
            )
        flags.update(o.extra)
        return [*command, "serve", *_flags(flags), *o.extra_args]

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("COORDINATOR_")}
        env.setdefault("AWS_ACCESS_KEY_ID", "testing")
        env.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
        for proxy_var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
            env.pop(proxy_var, None)
        if self.options.bugs:
            env["COORDINATOR_BUGS"] = ",".join(self.options.bugs)
        env.update(self.options.env)
        return env

    # lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        """Start and wait for the port file, then for GET /health; a restart reuses the port."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._process = ManagedProcess(
            ProcessSpec(
                name="coordinator",
                argv=self.argv(),
                run_dir=self.run_dir,
                env=self._env(),
                readiness=PortFile(self.port_file),
                ready_timeout_s=self.options.ready_timeout_s,
                stop_timeout_s=self.options.stop_timeout_s,
            ),
            clock=self.clock,
        )
        await self._start_process(self._process)

    async def _start_process(self, process: ManagedProcess) -> None:
        if self.port:
            ensure_port_free(self.port, "the coordinator")
        try:
            info = await process.start()
        except ProcessError as exc:
            raise CoordinatorError(str(exc)) from exc
        self.port = int(info["port"])
        self.base_path = str(info.get("basePath") or "/sync")
        resources.register_port(self.port, "coordinator")
        try:
            health = HttpOk(f"{self.http_url}/health")

            async def died() -> str | None:
                return None if process.running else f"coordinator exited with {process.returncode}"

            await wait_until(health, self.options.ready_timeout_s, died)
        except BaseException:
            await cleanup(process.kill())
            raise

    async def restart(self) -> None:
        """Stop gracefully if running, then start on the same port and data dir."""
        process = self.process
        process.note_restart()
        await process.stop()
        # the new argv names the port bound the first time
        process.spec.argv = self.argv()
        await self._start_process(process)

    async def start_again(self) -> None:
        """Start after a kill or SIGTERM (the process is not running), same port and data dir."""
        process = self.process
        if process.running:
            raise CoordinatorError("the coordinator is still running; use restart()")
        process.spec.argv = self.argv()
        await self._start_process(process)

    def wipe_data(self) -> int:
        """Delete everything in the data dir (the process must not be running): a lost disk.
        The next start finds no local store and must restore each database from S3. Returns
        how many entries were removed."""
        if self._process is not None and self._process.running:
            raise CoordinatorError("the coordinator is still running; kill it before wiping its data")
        removed = 0
        if self.data_dir.exists():
            for entry in self.data_dir.iterdir():
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
                removed += 1
        return removed

    async def stop(self) -> int | None:
        if self._process is None:
            return None
        code = await self._process.stop()
        resources.unregister_port(self.port)
        return code

    @property
    def events(self) -> list[ProcessEvent]:
        """Lifecycle events (start, signals, restart, exit with code) on the run's clock."""
        return list(self._process.events) if self._process is not None else []

    def log_lines(self) -> list[LogRecord]:
        """Every line the coordinator wrote, timed on the run's clock: JSON lines by their "ts",
        other lines (e.g. a traceback) at the time of the line before them."""
        records: list[LogRecord] = []
        for stream in ("stderr", "stdout"):
            path = self.run_dir / f"coordinator.{stream}.log"
            try:
                text = path.read_text(errors="replace")
            except OSError:
                continue
            last = 0.0
            for line in text.splitlines()[:MAX_LOG_LINES]:
                if line.startswith("---- coordinator start #"):
                    continue  # the supervisor's own marker
                last = self._line_time(line, last)
                records.append(LogRecord(last, line, stream))
        records.sort(key=lambda r: r.time)
        return records

    def _line_time(self, line: str, previous: float) -> float:
        if not line.startswith("{"):
            return previous
        try:
            stamp = json.loads(line).get("ts")
            wall = datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).timestamp()
        except (ValueError, AttributeError, TypeError):
            return previous
        return wall - self.wall_at_zero

    def read_port_file(self) -> dict[str, Any]:
        return dict(json.loads(self.port_file.read_text()))
