"""Network faults: every Toxiproxy toxic, and a proxy taken down, on a named proxy.

Targets: "client" (every client's connection to the coordinator), "s3" (the coordinator's
connection to S3), "client:<id>" (one client's own proxy). Direction follows Toxiproxy:
downstream is server -> client, upstream is client -> server; "both" adds one toxic each way.
Toxicity is the chance that a new connection gets the toxic; Toxiproxy draws it per connection,
outside the harness's seed.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import Any, ClassVar

from harness.env.toxiproxy import Stream, ToxiproxyClient, ToxiproxyError
from harness.faults.base import Fault, FaultError
from harness.faults.params import Param

NETWORK_TARGET = Param(
    "target",
    str,
    "proxy to hurt: client (all clients -> coordinator), s3 (coordinator -> S3) or client:<id>",
    default="client",
    pattern=r"client|s3|client:[A-Za-z0-9_.-]+",
)
DIRECTION = Param(
    "direction",
    str,
    "downstream (server -> client), upstream (client -> server) or both",
    default="downstream",
    choices=("downstream", "upstream", "both"),
)
TOXICITY = Param(
    "toxicity",
    float,
    "probability that a connection gets the toxic (drawn by Toxiproxy per connection)",
    default=1.0,
    minimum=0.0,
    maximum=1.0,
)


class NetworkFault(Fault):
    family: ClassVar[str] = "network"
    target_param: ClassVar[Param] = NETWORK_TARGET

    @property
    def proxy_name(self) -> str:
        return self.env.proxy_for_target(self.target)

    @property
    def client(self) -> ToxiproxyClient:
        return self.env.toxiproxy_client

    async def _ensure_proxy(self) -> None:
        if self.target.startswith("client:"):
            await self.env.client_proxy(self.target.split(":", 1)[1])
        elif self.proxy_name not in self.env.proxies:
            raise FaultError(f"{self.describe()}: this environment has no {self.proxy_name!r} proxy")


class ToxicFault(NetworkFault):
    """A Toxiproxy toxic; subclasses map their parameters to the toxic's attributes."""

    toxic_type: ClassVar[str]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._toxics: list[str] = []

    @abc.abstractmethod
    def attributes(self) -> dict[str, Any]:
        """The toxic's attributes, from this fault's parameters."""

    def streams(self) -> list[Stream]:
        direction = self.values["direction"]
        return ["downstream", "upstream"] if direction == "both" else [direction]

    async def _apply(self) -> None:
        await self._ensure_proxy()
        assert self.window is not None
        for stream in self.streams():
            name = f"{self.kind}-{self.window.id}-{stream}"
            await self.client.add_toxic(
                self.proxy_name,
                self.toxic_type,
                self.attributes(),
                stream=stream,
                toxicity=self.values["toxicity"],
                name=name,
            )
            self._toxics.append(name)

    async def _clear(self) -> None:
        errors = []
        for name in self._toxics:
            try:
                await self.client.remove_toxic(self.proxy_name, name)
            except ToxiproxyError as exc:
                if "404" not in str(exc):  # already gone (e.g. the proxy was reset): nothing to undo
                    errors.append(str(exc))
        self._toxics = []
        if errors:
            raise FaultError("; ".join(errors))


class Latency(ToxicFault):
    kind = "latency"
    toxic_type = "latency"
    summary = "delay every chunk of data by latency_ms (± jitter_ms)"
    params = (
        Param("latency_ms", int, "added delay in milliseconds", minimum=0),
        Param("jitter_ms", int, "random variation of the delay (±), by Toxiproxy", default=0, minimum=0),
        DIRECTION,
        TOXICITY,
    )

    @property
    def observable(self) -> bool:
        return False  # a delay: it widens a bound, it loses nothing

    def attributes(self) -> dict[str, Any]:
        return {"latency": self.values["latency_ms"], "jitter": self.values["jitter_ms"]}


class Jitter(ToxicFault):
    kind = "jitter"
    toxic_type = "latency"
    summary = "variable delay: Toxiproxy's latency toxic with its jitter attribute (no jitter toxic exists)"
    params = (
        Param("jitter_ms", int, "random variation of the delay (±), in milliseconds", minimum=1),
        Param("latency_ms", int, "base delay in milliseconds", default=0, minimum=0),
        DIRECTION,
        TOXICITY,
    )

    @property
    def observable(self) -> bool:
        return False  # a delay: it widens a bound, it loses nothing

    def attributes(self) -> dict[str, Any]:
        return {"latency": self.values["latency_ms"], "jitter": self.values["jitter_ms"]}


class Bandwidth(ToxicFault):
    kind = "bandwidth"
    toxic_type = "bandwidth"
    summary = "limit throughput to rate_kbps kilobytes per second"
    params = (Param("rate_kbps", int, "KB/s allowed through", minimum=0), DIRECTION, TOXICITY)

    def attributes(self) -> dict[str, Any]:
        return {"rate": self.values["rate_kbps"]}


class SlowClose(ToxicFault):
    kind = "slow_close"
    toxic_type = "slow_close"
    summary = "delay the close of the connection by delay_ms"
    params = (Param("delay_ms", int, "delay before the close goes through", minimum=0), DIRECTION, TOXICITY)

    def attributes(self) -> dict[str, Any]:
        return {"delay": self.values["delay_ms"]}


class Timeout(ToxicFault):
    kind = "timeout"
    toxic_type = "timeout"
    summary = "stop all data; close the connection after timeout_ms (0: never, data is held)"
    params = (
        Param("timeout_ms", int, "time before the close; 0 keeps the connection open and silent", minimum=0),
        DIRECTION,
        TOXICITY,
    )

    def attributes(self) -> dict[str, Any]:
        return {"timeout": self.values["timeout_ms"]}


class ResetPeer(ToxicFault):
    kind = "reset_peer"
    toxic_type = "reset_peer"
    summary = "reset the connection (TCP RST) after timeout_ms (0: at once)"
    params = (
        Param("timeout_ms", int, "time before the reset", default=0, minimum=0),
        DIRECTION,
        TOXICITY,
    )

    def attributes(self) -> dict[str, Any]:
        return {"timeout": self.values["timeout_ms"]}


class Slicer(ToxicFault):
    kind = "slicer"
    toxic_type = "slicer"
    summary = "cut data into small packets of average_size bytes, delay_us apart"
    params = (
        Param("average_size", int, "average packet size in bytes", minimum=1),
        Param("size_variation", int, "variation of the packet size in bytes", default=0, minimum=0),
        Param("delay_us", int, "delay between packets in microseconds", default=0, minimum=0),
        DIRECTION,
        TOXICITY,
    )

    @classmethod
    def cross_check(cls, values: Mapping[str, Any]) -> list[str]:
        size, variation = values.get("average_size"), values.get("size_variation")
        if isinstance(size, int) and isinstance(variation, int) and variation >= size:
            return [f"slicer: size_variation ({variation}) must be smaller than average_size ({size})"]
        return []

    def attributes(self) -> dict[str, Any]:
        return {
            "average_size": self.values["average_size"],
            "size_variation": self.values["size_variation"],
            "delay": self.values["delay_us"],
        }


class LimitData(ToxicFault):
    kind = "limit_data"
    toxic_type = "limit_data"
    summary = "close the connection once `bytes` bytes have gone through"
    params = (Param("bytes", int, "bytes let through before the close", minimum=0), DIRECTION, TOXICITY)

    def attributes(self) -> dict[str, Any]:
        return {"bytes": self.values["bytes"]}


class ProxyDown(NetworkFault):
    kind = "proxy_down"
    summary = "take the proxy down: it drops its connections and refuses new ones until cleared"
    params = ()

    async def _apply(self) -> None:
        await self._ensure_proxy()
        await self.client.set_enabled(self.proxy_name, False)

    async def _clear(self) -> None:
        proxy = await self.client.set_enabled(self.proxy_name, True)
        self.env.proxies[self.proxy_name] = proxy


NETWORK_FAULTS: tuple[type[Fault], ...] = (
    Latency,
    Jitter,
    Bandwidth,
    SlowClose,
    Timeout,
    ResetPeer,
    Slicer,
    LimitData,
    ProxyDown,
)
