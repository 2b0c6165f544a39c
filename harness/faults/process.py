"""Process faults on the server the harness started (the bundled coordinator, a command target,
harness/env/command_target.py, or a container target, where each is a container operation:
harness/env/container_target.py), as Jepsen's nemeses cause them.

kill (SIGKILL; cleared by starting it again), pause (SIGSTOP; cleared by SIGCONT), terminate
(SIGTERM and wait for the exit; cleared by starting it again), restart (graceful stop and start,
all in apply), disk_loss (SIGKILL and delete the data dir: the restart must restore from S3). Every start reuses the same data dir and port, so proxies and clients find it at
the same address. Exit codes are recorded as history events of process "nemesis".
"""

from __future__ import annotations

from typing import ClassVar

from harness.env.command_target import CommandTarget
from harness.env.container_target import ContainerTarget
from harness.env.coordinator_process import CoordinatorProcess
from harness.faults.base import Fault, FaultError
from harness.faults.params import Param

COORDINATOR_TARGET = Param(
    "target", str, "the process to hurt", default="coordinator", choices=("coordinator",)
)
NEMESIS = "nemesis"


class ProcessFault(Fault):
    family: ClassVar[str] = "process"
    target_param: ClassVar[Param] = COORDINATOR_TARGET

    @property
    def coordinator(self) -> CoordinatorProcess | CommandTarget | ContainerTarget:
        if self.env.coordinator is None:
            raise FaultError(f"{self.describe()}: no server process of the harness's (external target?)")
        return self.env.coordinator

    async def _start_again(self) -> None:
        await self.coordinator.start_again()
        self.history.event(NEMESIS, "process-started", target=self.target, port=self.coordinator.port)


class Kill(ProcessFault):
    kind = "kill"
    summary = "SIGKILL the coordinator; clear starts it again on the same data dir and port"
    params = (Param("restart", bool, "start it again when the fault is cleared", default=True),)

    async def _apply(self) -> None:
        code = await self.coordinator.process.kill()
        self.history.event(NEMESIS, "process-exit", target=self.target, signal="SIGKILL", code=code)

    async def _clear(self) -> None:
        if self.values["restart"]:
            await self._start_again()


class Pause(ProcessFault):
    kind = "pause"
    summary = "SIGSTOP the coordinator (sockets stay open, nothing runs); clear sends SIGCONT"
    params = ()

    async def _apply(self) -> None:
        await self.coordinator.process.pause()

    async def _clear(self) -> None:
        await self.coordinator.process.resume()


class Terminate(ProcessFault):
    kind = "terminate"
    summary = "SIGTERM the coordinator and wait for its exit (graceful shutdown); clear starts it again"
    params = (
        Param("timeout_ms", int, "how long to wait for the exit before failing", default=15000, minimum=1),
        Param("restart", bool, "start it again when the fault is cleared", default=True),
    )

    async def _apply(self) -> None:
        process = self.coordinator.process
        code = await process.terminate(timeout_s=self.values["timeout_ms"] / 1000)
        self.history.event(NEMESIS, "process-exit", target=self.target, signal="SIGTERM", code=code)

    async def _clear(self) -> None:
        if self.values["restart"]:
            await self._start_again()


class Restart(ProcessFault):
    kind = "restart"
    summary = "graceful restart (SIGTERM, then start on the same data dir and port) within apply"
    params = ()

    async def _apply(self) -> None:
        await self.coordinator.restart()
        code = self.coordinator.process.last_returncode
        self.history.event(NEMESIS, "process-restarted", target=self.target, exit_code=code)

    async def _clear(self) -> None:
        return None


class DiskLoss(ProcessFault):
    kind = "disk_loss"
    summary = (
        "SIGKILL the coordinator and delete its local data dir; clear starts it again, so every "
        "database it opens is restored from the object store"
    )
    params = ()

    async def _apply(self) -> None:
        code = await self.coordinator.process.kill()
        removed = self.coordinator.wipe_data()
        self.history.event(
            NEMESIS, "process-exit", target=self.target, signal="SIGKILL", code=code, wiped_entries=removed
        )

    async def _clear(self) -> None:
        await self._start_again()


PROCESS_FAULTS: tuple[type[Fault], ...] = (Kill, Pause, Terminate, Restart, DiskLoss)
