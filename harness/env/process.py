"""A small supervisor for every process the harness starts.

Each child runs in its own session (so its own process group): signals go to the whole group,
and nothing it spawns outlives it. stdout and stderr go to files in the run dir (appended across
restarts, with a marker line), so a failing run keeps the evidence. Start waits on a readiness
condition with a deadline; stop is SIGTERM, then SIGKILL after a deadline; pause and resume are
SIGSTOP and SIGCONT; restart reuses the same argv (same data dir and port). Use it as an async
context manager: the child is stopped on success, failure, cancellation and Ctrl-C alike.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Literal, Self

from harness.env import resources
from harness.env.readiness import NotReady, Readiness, wait_until

STDERR_TAIL_CHARS = 2000
GROUP_EXIT_TIMEOUT_S = 5.0


class ProcessError(RuntimeError):
    """A supervised process could not be started, signalled or stopped as asked."""


@dataclass
class ProcessSpec:
    """What to run and how to know it is ready. `argv` is reused as is by restart."""

    name: str
    argv: list[str]
    run_dir: Path
    env: dict[str, str] | None = None
    cwd: Path | None = None
    readiness: Readiness | None = None
    ready_timeout_s: float = 30.0
    stop_timeout_s: float = 10.0
    extra_env: dict[str, str] = field(default_factory=dict)


ProcessEventKind = Literal["start", "sigterm", "sigkill", "sigstop", "sigcont", "restart", "exit"]
_SIGNAL_KINDS: dict[signal.Signals, ProcessEventKind] = {
    signal.SIGTERM: "sigterm",
    signal.SIGKILL: "sigkill",
    signal.SIGSTOP: "sigstop",
    signal.SIGCONT: "sigcont",
}


@dataclass(frozen=True)
class ProcessEvent:
    """A lifecycle event on the supervisor's clock: what the harness did (start, signals,
    restart) and the exit, with its code; `by_harness` is False for an exit nobody asked for
    (a crash)."""

    time: float
    kind: ProcessEventKind
    exit_code: int | None = None
    by_harness: bool = True


class Lifecycle(abc.ABC):
    """start()/stop() as an async context manager, the same way for every component: a failed
    start stops whatever it had started, and stop runs to completion even while the caller is
    being cancelled (Ctrl-C must never leave a process or a port behind)."""

    @abc.abstractmethod
    async def start(self) -> object: ...

    @abc.abstractmethod
    async def stop(self) -> object: ...

    async def __aenter__(self) -> Self:
        try:
            await self.start()
        except BaseException:
            await cleanup(self.stop())
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await cleanup(self.stop())


class ManagedProcess(Lifecycle):
    """One supervised child process: start, stop, kill, pause, resume, restart. `clock` times
    its lifecycle events (the environment passes the run's clock)."""

    def __init__(self, spec: ProcessSpec, clock: Callable[[], float] = time.monotonic) -> None:
        self.spec = spec
        self.name = spec.name
        self.clock = clock
        self._proc: asyncio.subprocess.Process | None = None
        self._logs: list[IO[bytes]] = []
        self._watcher: asyncio.Task[None] | None = None
        self._signalled = False  # SIGTERM/SIGKILL sent since the last start
        self.ready_value: Any = None
        self.starts = 0
        self.paused = False
        self.last_returncode: int | None = None
        self.events: list[ProcessEvent] = []

    # paths --------------------------------------------------------------------------------
    @property
    def stdout_path(self) -> Path:
        return self.spec.run_dir / f"{self.name}.stdout.log"

    @property
    def stderr_path(self) -> Path:
        return self.spec.run_dir / f"{self.name}.stderr.log"

    # state --------------------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    @property
    def returncode(self) -> int | None:
        """The exit code of the current (or last) run; negative for a signal (-9 = SIGKILL)."""
        if self._proc is not None and self._proc.returncode is not None:
            return self._proc.returncode
        return self.last_returncode

    def stderr_tail(self, chars: int = STDERR_TAIL_CHARS) -> str:
        try:
            text = self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""
        return text[-chars:].strip()

    # lifecycle ----------------------------------------------------------------------------
    async def start(self) -> Any:
        """Start the child and wait until it is ready; returns the readiness value."""
        if self.running:
            raise ProcessError(f"{self.name} is already running (pid {self.pid})")
        self.spec.run_dir.mkdir(parents=True, exist_ok=True)
        if self.spec.readiness is not None:
            self.spec.readiness.reset()
        self._close_logs()
        stdout = self.stdout_path.open("ab")
        stderr = self.stderr_path.open("ab")
        self._logs = [stdout, stderr]
        marker = f"---- {self.name} start #{self.starts + 1} at {time.time():.3f}: {self.spec.argv}\n"
        for log in self._logs:
            log.write(marker.encode())
            log.flush()
        env = dict(self.spec.env if self.spec.env is not None else os.environ)
        env.update(self.spec.extra_env)
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *self.spec.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                env=env,
                cwd=self.spec.cwd,
                start_new_session=True,
            )
        except OSError as exc:
            self._close_logs()
            raise ProcessError(f"cannot start {self.name} ({self.spec.argv[0]}): {exc}") from exc
        resources.register_pgid(self._proc.pid)
        self.starts += 1
        self.paused = False
        self._signalled = False
        self.events.append(ProcessEvent(self.clock(), "start"))
        self._watcher = asyncio.ensure_future(self._watch(self._proc))
        if self.spec.readiness is None:
            return None
        try:
            self.ready_value = await wait_until(
                self.spec.readiness, self.spec.ready_timeout_s, self._death_reason
            )
        except BaseException as exc:
            await self.kill()
            if isinstance(exc, NotReady):
                tail = self.stderr_tail()
                raise ProcessError(
                    f"{self.name} did not become ready: {exc}"
                    + (f"\n--- stderr tail ({self.stderr_path}):\n{tail}" if tail else "")
                ) from exc
            raise
        return self.ready_value

    async def _watch(self, proc: asyncio.subprocess.Process) -> None:
        code = await proc.wait()
        self.events.append(ProcessEvent(self.clock(), "exit", code, by_harness=self._signalled))

    def _signal_group(self, sig: signal.Signals) -> None:
        """killpg and record it; the caller handles a vanished group."""
        assert self._proc is not None
        os.killpg(self._proc.pid, sig)
        self.events.append(ProcessEvent(self.clock(), _SIGNAL_KINDS.get(sig, "sigterm")))
        if sig in (signal.SIGTERM, signal.SIGKILL):
            self._signalled = True

    async def _death_reason(self) -> str | None:
        if self._proc is not None and self._proc.returncode is not None:
            return f"{self.name} exited with code {self._proc.returncode}"
        return None

    async def wait(self, timeout_s: float) -> int:
        """Wait for the child to exit on its own; its exit code."""
        if self._proc is None:
            raise ProcessError(f"{self.name} was never started")
        try:
            return await asyncio.wait_for(self._proc.wait(), timeout_s)
        except TimeoutError as exc:
            raise ProcessError(f"{self.name} (pid {self.pid}) did not exit within {timeout_s}s") from exc

    def send_signal(self, sig: signal.Signals) -> None:
        """Send `sig` to the child's whole process group."""
        if not self.running or self._proc is None:
            raise ProcessError(f"cannot send {sig.name} to {self.name}: it is not running")
        try:
            self._signal_group(sig)
        except ProcessLookupError as exc:
            raise ProcessError(f"cannot send {sig.name} to {self.name}: process group is gone") from exc

    async def pause(self) -> None:
        """SIGSTOP: the child keeps its sockets but runs nothing until resume()."""
        self.send_signal(signal.SIGSTOP)
        self.paused = True

    async def resume(self) -> None:
        """SIGCONT after pause()."""
        self.send_signal(signal.SIGCONT)
        self.paused = False

    async def terminate(self, timeout_s: float | None = None) -> int:
        """SIGTERM and wait for the exit (no SIGKILL): the code shows how shutdown went."""
        self.send_signal(signal.SIGTERM)
        if self.paused:
            await self.resume()
        code = await self.wait(self.spec.stop_timeout_s if timeout_s is None else timeout_s)
        await self._after_exit()
        return code

    async def kill(self) -> int | None:
        """SIGKILL the group at once and reap the child."""
        if self._proc is None:
            return None
        if self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                self._signal_group(signal.SIGKILL)
        code = await self._proc.wait()
        await self._after_exit()
        return code

    async def stop(self, timeout_s: float | None = None) -> int | None:
        """SIGTERM, then SIGKILL after the deadline. Safe to call at any time, any number of times."""
        if self._proc is None:
            return None
        if self._proc.returncode is None:
            deadline = self.spec.stop_timeout_s if timeout_s is None else timeout_s
            with contextlib.suppress(ProcessLookupError, PermissionError):
                self._signal_group(signal.SIGTERM)
                if self.paused:  # a paused child cannot act on SIGTERM
                    self._signal_group(signal.SIGCONT)
            try:
                await asyncio.wait_for(asyncio.shield(self._proc.wait()), deadline)
            except TimeoutError:
                pass
        return await self.kill()

    def note_restart(self) -> None:
        """Record that what follows (stop, start) is one restart."""
        self.events.append(ProcessEvent(self.clock(), "restart"))

    async def restart(self) -> Any:
        """Stop (gracefully) and start again with the same argv."""
        self.note_restart()
        await self.stop()
        return await self.start()

    async def _after_exit(self) -> None:
        """Sweep what is left of the group (grandchildren) and wait until it is really gone."""
        if self._proc is not None and self._proc.pid in resources.live_pgids():
            pgid = self._proc.pid
            self.last_returncode = self._proc.returncode
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
            deadline = time.monotonic() + GROUP_EXIT_TIMEOUT_S
            for _ in range(int(GROUP_EXIT_TIMEOUT_S / 0.01) + 1):
                if not resources.processes_in_groups({pgid}) or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.01)
            resources.unregister_pgid(pgid)
        if self._watcher is not None:
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._watcher), 5.0)  # the exit is recorded
        self.paused = False
        self._close_logs()

    def _close_logs(self) -> None:
        for log in self._logs:
            with contextlib.suppress(OSError):
                log.close()
        self._logs = []

    def __repr__(self) -> str:
        state = "running" if self.running else f"exited({self.returncode})"
        return f"<ManagedProcess {self.name} pid={self.pid} {state}>"


async def cleanup(coro: Any) -> None:
    """Run a cleanup coroutine to completion even if the caller is being cancelled meanwhile;
    the cancellation is re-raised once the cleanup is done."""
    task = asyncio.ensure_future(coro)
    cancelled = False
    for _ in range(100):  # each cancel of the caller interrupts the wait once; bounded
        try:
            await asyncio.shield(task)
            break
        except asyncio.CancelledError:
            if task.done():
                raise
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError
