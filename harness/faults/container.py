"""Faults only a container target can suffer: its docker networks (harness/env/container_target.py).

network_disconnect takes the server container off its object-store network ("back", where the
S3 relay is its only way to moto), so S3 is unreachable from it — no name, no route — while its
clients still reach it; clearing connects it again. Recorded as a network fault on the "s3"
path (family network, target s3), so the checks judge it exactly as any outage of the
coordinator's path to S3: BACKEND_UNAVAILABLE expected, then BACKEND_RECOVERED.
"""

from __future__ import annotations

from typing import ClassVar

from harness.env.container_target import BACK, ContainerTarget
from harness.faults.base import Fault, FaultError
from harness.faults.params import Param

S3_PATH = Param("target", str, "what the server is cut off from", default="s3", choices=("s3",))


class NetworkDisconnect(Fault):
    kind = "network_disconnect"
    family: ClassVar[str] = "network"
    target_param: ClassVar[Param] = S3_PATH
    summary = "docker network disconnect of the server container from its object store; clear reconnects"
    params = ()

    @property
    def container(self) -> ContainerTarget:
        target = self.env.coordinator
        if not isinstance(target, ContainerTarget):
            raise FaultError(f"{self.describe()}: the target is not a container")
        return target

    async def _apply(self) -> None:
        await self.container.disconnect(BACK)

    async def _clear(self) -> None:
        await self.container.connect(BACK)


CONTAINER_FAULTS: tuple[type[Fault], ...] = (NetworkDisconnect,)
