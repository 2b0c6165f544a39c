"""Failpoints: named places inside the coordinator where an error or a delay can be switched on
at run time (as etcd's gofail or FoundationDB's BUGGIFY), so the harness can cause server-side
failures no network fault can. Off unless the server was started with --enable-failpoints.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from typing import Any

from coordinator.clock import Clock
from coordinator.ops.metrics import Metrics

FAILPOINT_NAMES: dict[str, str] = {
    "snapshot.read": "reading a table's entries while streaming a snapshot (fails mid-stream)",
    "store.open": "opening a database store (also restores from S3)",
    "storage.write": "the storage write of apply_changes",
    "storage.read": "the storage read of get_changes",
    "broadcast.send": "queueing push_changes to one recipient (error only)",
    "outbox.write": "recording an applied batch in the durable S3 outbox (error only)",
}
MODES = ("off", "error", "delay")


class FailpointError(Exception):
    """Raised where a failpoint in error mode fires."""


@dataclass(slots=True)
class FailpointSetting:
    mode: str = "off"
    delay_ms: int = 0
    message: str = "failpoint"
    times: int | None = None  # fire this many more times, then turn off; None: always
    probability: float = 1.0
    fired: int = 0

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        return {
            "mode": data["mode"],
            "delayMs": data["delay_ms"],
            "message": data["message"],
            "times": data["times"],
            "probability": data["probability"],
            "fired": data["fired"],
        }


class FailpointConfigError(ValueError):
    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


class Failpoints:
    def __init__(self, enabled: bool, clock: Clock, metrics: Metrics, seed: int | None = None) -> None:
        self.enabled = enabled
        self._clock = clock
        self._metrics = metrics
        self._settings: dict[str, FailpointSetting] = {}
        self._rng = random.Random(seed)

    def configure(self, name: str, body: dict[str, Any]) -> FailpointSetting:
        if name not in FAILPOINT_NAMES:
            raise FailpointConfigError(
                "name", f"unknown failpoint {name!r}; known: {', '.join(FAILPOINT_NAMES)}"
            )
        mode = body.get("mode", "error")
        if mode not in MODES:
            raise FailpointConfigError("mode", f"must be one of {', '.join(MODES)}")
        delay = body.get("delayMs", 0)
        if not isinstance(delay, int) or isinstance(delay, bool) or delay < 0:
            raise FailpointConfigError("delayMs", "must be a non-negative integer")
        times = body.get("times")
        if times is not None and (not isinstance(times, int) or isinstance(times, bool) or times < 1):
            raise FailpointConfigError("times", "must be a positive integer or null")
        probability = body.get("probability", 1.0)
        if not isinstance(probability, int | float) or not 0.0 <= float(probability) <= 1.0:
            raise FailpointConfigError("probability", "must be a number between 0 and 1")
        message = body.get("message", f"failpoint {name}")
        if not isinstance(message, str):
            raise FailpointConfigError("message", "must be a string")
        if mode == "off":
            self._settings.pop(name, None)
            return FailpointSetting()
        setting = FailpointSetting(mode, delay, message, times, float(probability))
        self._settings[name] = setting
        return setting

    def clear(self, name: str) -> None:
        self._settings.pop(name, None)

    def describe(self) -> dict[str, Any]:
        return {
            name: (self._settings[name].to_json() if name in self._settings else {"mode": "off"})
            | {"where": where}
            for name, where in FAILPOINT_NAMES.items()
        }

    def _fire(self, name: str) -> FailpointSetting | None:
        setting = self._settings.get(name)
        if setting is None or setting.mode == "off":
            return None
        if setting.probability < 1.0 and self._rng.random() >= setting.probability:
            return None
        setting.fired += 1
        if setting.times is not None:
            setting.times -= 1
            if setting.times <= 0:
                self._settings.pop(name, None)
        self._metrics.failpoint_hits.inc(name=name, mode=setting.mode)
        return setting

    async def hit(self, name: str) -> None:
        """Await at a failpoint: sleeps in delay mode, raises in error mode."""
        if not self._settings:
            return
        setting = self._fire(name)
        if setting is None:
            return
        if setting.mode == "delay":
            await self._clock.sleep(setting.delay_ms / 1000.0)
        elif setting.mode == "error":
            raise FailpointError(setting.message)

    def check(self, name: str) -> None:
        """A failpoint where nothing may wait (a broadcast): error mode only."""
        if not self._settings:
            return
        setting = self._fire(name)
        if setting is not None and setting.mode == "error":
            raise FailpointError(setting.message)
