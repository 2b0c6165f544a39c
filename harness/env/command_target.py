"""Any server, started from a command line: the harness's supervision for a server it did not write.

The harness picks the port (`port: auto`) and the data dir, fills the placeholders in the
command and its environment, starts it under the same supervisor as the bundled coordinator
(`ManagedProcess`: its own process group, logs appended in the run dir, SIGTERM then SIGKILL),
and waits for readiness (`ready: {http: PATH}` or `{tcp: true}`) with a deadline. Process faults
reach it through the same calls as the bundled coordinator (`process`, `start_again`, `restart`,
`wipe_data`, `port`), so kill, pause, terminate, restart and disk_loss work on it unchanged and
every start reuses the same port and data dir. What the server is (tokens, timings, capabilities)
comes from its target profile, never from this module. The scenario's server options (its
`coordinator: options:`, token grants namespaced like the run's databases) are written as one
JSON object to `{options_file}` for a server that reads such a file (the reference coordinator:
`--config {options_file}`); a command that does not name it runs as given.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.env import resources
from harness.env.coordinator_process import LogRecord, S3Settings, read_log_lines
from harness.env.ports import LOCALHOST, PortInUse, ensure_port_free, free_port
from harness.env.process import Lifecycle, ManagedProcess, ProcessError, ProcessEvent, ProcessSpec
from harness.env.readiness import HttpOk, Readiness, TcpOpen

PROCESS_NAME = "server"
PLACEHOLDERS = (
    "port",
    "host",
    "data_dir",
    "run_dir",
    "options_file",
    "s3_endpoint",
    "s3_bucket",
    "s3_region",
    "s3_prefix",
)
OPTIONS_FILE = "server-options.json"
S3_PLACEHOLDERS = ("s3_endpoint", "s3_bucket", "s3_region", "s3_prefix")
PLACEHOLDER_RE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY")
TAIL_LINES = 20
PORT_ATTEMPTS = 3


class CommandTargetError(RuntimeError):
    """The server command could not be started, or did not become ready; names the command."""


@dataclass(frozen=True)
class CommandSpec:
    """A `target: {command: ...}` section. `ready` is ("http", PATH) or ("tcp", ""); `port`
    None means auto (a free port picked once, then reused by every restart)."""

    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: str | None = None
    ready: tuple[str, str] = ("tcp", "")
    port: int | None = None
    s3_env: Mapping[str, str] = field(default_factory=dict)
    base_path: str = "/sync"
    ready_timeout_s: float = 30.0
    stop_timeout_s: float = 15.0

    @property
    def needs_s3(self) -> bool:
        """The command cannot run without an object store: its argv or env names an S3 placeholder."""
        texts = [*self.argv, *self.env.values()]
        return any(name in S3_PLACEHOLDERS for name in placeholders(texts))

    @property
    def takes_s3(self) -> bool:
        """The command can be given an object store: it needs one, or has an `s3_env` (applied
        only in runs that ask for S3, so one command serves runs with and without it)."""
        return self.needs_s3 or bool(self.s3_env)

    def to_json(self) -> dict[str, Any]:
        return {
            "command": list(self.argv),
            "env": dict(self.env),
            "cwd": self.cwd,
            "ready": {self.ready[0]: self.ready[1] or True},
            "port": self.port if self.port is not None else "auto",
            "s3_env": dict(self.s3_env),
            "base_path": self.base_path,
        }


def placeholders(texts: list[str] | tuple[str, ...]) -> list[str]:
    """The `{name}` placeholders named in `texts`, in order."""
    return [m.group(1) for text in texts for m in PLACEHOLDER_RE.finditer(text)]


def unknown_placeholders(texts: list[str] | tuple[str, ...]) -> list[str]:
    return [name for name in placeholders(texts) if name not in PLACEHOLDERS]


def fill(text: str, values: Mapping[str, str]) -> str:
    """Replace the known `{name}` placeholders; anything else in braces is left as written."""
    return PLACEHOLDER_RE.sub(lambda m: values.get(m.group(1), m.group(0)), text)


def fill_argv(argv: list[str] | tuple[str, ...], values: Mapping[str, str]) -> tuple[list[str], str | None]:
    """`argv` with its placeholders filled, and the first known placeholder left without a
    value (an S3 one in a run without S3), for the caller's error message."""
    filled = [fill(arg, values) for arg in argv]
    missing = [n for n in placeholders(filled) if n in PLACEHOLDERS]
    return filled, missing[0] if missing else None


class CommandTarget(Lifecycle):
    """A server command in a data dir of its own, reachable at `http_url`; the same surface as
    `CoordinatorProcess` for the faults, the observer and the runner."""

    def __init__(
        self,
        spec: CommandSpec,
        run_dir: Path,
        data_dir: Path,
        s3: S3Settings | None = None,
        clock: Callable[[], float] = time.monotonic,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        self.spec = spec
        self.options = dict(options or {})
        self.run_dir = run_dir
        self.data_dir = data_dir
        self.s3 = s3
        self.clock = clock
        self.wall_at_zero = time.time() - clock()
        self.port = spec.port or 0
        self.base_path = spec.base_path
        self._process: ManagedProcess | None = None

    @property
    def address(self) -> str:
        return f"{LOCALHOST}:{self.port}"

    @property
    def http_url(self) -> str:
        return f"http://{self.address}{self.base_path}"

    @property
    def process(self) -> ManagedProcess:
        if self._process is None:
            raise CommandTargetError("the server command is not started")
        return self._process

    @property
    def options_file(self) -> Path:
        return self.run_dir / OPTIONS_FILE

    @property
    def command_line(self) -> str:
        return shlex.join(self.spec.argv)

    def values(self) -> dict[str, str]:
        out = {
            "port": str(self.port),
            "host": LOCALHOST,
            "data_dir": str(self.data_dir),
            "run_dir": str(self.run_dir),
            "options_file": str(self.options_file),
        }
        if self.s3 is not None:
            out |= {
                "s3_endpoint": self.s3.endpoint,
                "s3_bucket": self.s3.bucket,
                "s3_region": self.s3.region,
                "s3_prefix": self.s3.prefix,
            }
        return out

    def argv(self) -> list[str]:
        argv, missing = fill_argv(self.spec.argv, self.values())
        if missing:
            raise CommandTargetError(
                f"server command `{self.command_line}`: no value for {{{missing}}} "
                "(S3 placeholders need a scenario that asks for S3)"
            )
        return argv

    def environment(self) -> dict[str, str]:
        """The harness's environment without proxy variables (the server talks to our moto
        directly), test credentials for that moto, then `env` and, with S3, `s3_env`."""
        env = {k: v for k, v in os.environ.items() if k not in PROXY_VARS}
        values = self.values()
        if self.s3 is not None:
            env.setdefault("AWS_ACCESS_KEY_ID", "testing")
            env.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
            env.setdefault("AWS_DEFAULT_REGION", self.s3.region)
            env.update({k: fill(v, values) for k, v in self.spec.s3_env.items()})
        env.update({k: fill(v, values) for k, v in self.spec.env.items()})
        return env

    def readiness(self) -> Readiness:
        kind, path = self.spec.ready
        if kind == "http":
            return HttpOk(f"http://{self.address}{path}")
        return TcpOpen(LOCALHOST, self.port)

    # lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        """Pick the port (once), start, wait for readiness; a failure names the command."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.options_file.write_text(json.dumps(self.options, indent=2, sort_keys=True) + "\n")
        auto = not self.port
        for attempt in range(PORT_ATTEMPTS if auto else 1):
            if auto:
                self.port = free_port()
            self._process = ManagedProcess(self._spec(), clock=self.clock)
            try:
                await self._start_process(self._process)
                return
            except (CommandTargetError, PortInUse):
                # a free port is free only for a moment: when another process took it before
                # the server could bind it, try another one; any other failure is the server's
                if attempt + 1 >= PORT_ATTEMPTS or not auto or not _port_taken(self.port):
                    raise
                resources.unregister_port(self.port)

    def _spec(self) -> ProcessSpec:
        cwd = Path(self.spec.cwd) if self.spec.cwd else None
        return ProcessSpec(
            name=PROCESS_NAME,
            argv=self.argv(),
            run_dir=self.run_dir,
            env=self.environment(),
            cwd=cwd,
            readiness=self.readiness(),
            ready_timeout_s=self.spec.ready_timeout_s,
            stop_timeout_s=self.spec.stop_timeout_s,
        )

    async def _start_process(self, process: ManagedProcess) -> None:
        ensure_port_free(self.port, f"the server command `{self.command_line}`")
        if not _executable(process.spec):
            raise CommandTargetError(
                f"server command `{self.command_line}`: {process.spec.argv[0]!r} is not an executable "
                "(give a path or a command on PATH)"
            )
        resources.register_port(self.port, PROCESS_NAME)
        try:
            await process.start()
        except ProcessError as exc:
            raise CommandTargetError(
                f"server command `{self.command_line}` (port {self.port}, data dir {self.data_dir}): "
                f"{exc}{self._stdout_tail()}"
            ) from exc

    def _stdout_tail(self) -> str:
        process = self._process
        if process is None:
            return ""
        try:
            lines = process.stdout_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        lines = [line for line in lines if not line.startswith(f"---- {PROCESS_NAME} start #")]
        if not lines:
            return ""
        return f"\n--- stdout tail ({process.stdout_path}):\n" + "\n".join(lines[-TAIL_LINES:])

    async def restart(self) -> None:
        """Stop gracefully, then start on the same port and data dir."""
        process = self.process
        process.note_restart()
        await process.stop()
        await self._start_process(process)

    async def start_again(self) -> None:
        """Start after a kill or SIGTERM, same port and data dir."""
        process = self.process
        if process.running:
            raise CommandTargetError("the server command is still running; use restart()")
        await self._start_process(process)

    def wipe_data(self) -> int:
        """Delete everything in the data dir (the server must not be running): a lost disk."""
        if self._process is not None and self._process.running:
            raise CommandTargetError("the server is still running; kill it before wiping its data")
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
            resources.unregister_port(self.port)
            return None
        code = await self._process.stop()
        resources.unregister_port(self.port)
        return code

    @property
    def events(self) -> list[ProcessEvent]:
        return list(self._process.events) if self._process is not None else []

    def log_lines(self) -> list[LogRecord]:
        return read_log_lines(self.run_dir, PROCESS_NAME, self.wall_at_zero)

    def describe(self) -> dict[str, Any]:
        return self.spec.to_json() | {"argv": self.argv(), "port": self.port, "data_dir": str(self.data_dir)}


def _port_taken(port: int) -> bool:
    try:
        ensure_port_free(port, "a retry")
    except PortInUse:
        return True
    return False


def _executable(spec: ProcessSpec) -> bool:
    """Whether the child's argv[0] can be run: a path (from its cwd) or a command on its PATH."""
    program = spec.argv[0]
    if "/" in program:
        path = Path(spec.cwd or ".") / program
        return path.is_file() and os.access(path, os.X_OK)
    return shutil.which(program, path=(spec.env or os.environ).get("PATH")) is not None
