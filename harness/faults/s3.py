"""S3 faults, caused by the S3 fault layer between the coordinator and moto.

Each can be narrowed to some S3 operations (PutObject, GetObject, ListObjectsV2, ...) and to
object keys matching a glob. Rate draws come from the run's seed (stream "s3-faults").
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import Any, ClassVar

from harness.env.s3_fault_layer import S3FaultLayer, S3FaultRule
from harness.faults.base import Fault, FaultError
from harness.faults.params import Param

S3_TARGET = Param("target", str, "the object store the coordinator writes to", default="s3", choices=("s3",))
OPERATIONS = Param(
    "operations",
    list,
    "S3 operations affected (e.g. [PutObject, GetObject]); null: all",
    default=None,
    nullable=True,
)
KEY_PATTERN = Param(
    "key_pattern",
    str,
    "glob on the object key (e.g. 'db1/batches/*'); null: all",
    default=None,
    nullable=True,
)
RATE = Param("rate", float, "fraction of matching requests affected", default=1.0, minimum=0.0, maximum=1.0)


class S3Fault(Fault):
    family: ClassVar[str] = "s3"
    target_param: ClassVar[Param] = S3_TARGET

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._rule: S3FaultRule | None = None

    @property
    def layer(self) -> S3FaultLayer:
        if self.env.s3_layer is None:
            raise FaultError(f"{self.describe()}: this environment has no S3 fault layer")
        return self.env.s3_layer

    def selector(self) -> dict[str, Any]:
        ops = self.values.get("operations")
        return {
            "operations": frozenset(ops) if ops else None,
            "key_pattern": self.values.get("key_pattern"),
        }

    @abc.abstractmethod
    def rule(self) -> S3FaultRule:
        """The fault layer's rule for this fault's parameters."""

    async def _apply(self) -> None:
        self._rule = self.layer.add_rule(self.rule())

    async def _clear(self) -> None:
        if self._rule is not None:
            self.layer.remove_rule(self._rule)
            self._rule = None


class S3Outage(S3Fault):
    kind = "s3_outage"
    summary = "S3 is down: connections closed after the request head, 503 answers, or refused"
    params = (
        Param(
            "mode",
            str,
            "close: connection closed without an answer; http-503: 503 ServiceUnavailable; "
            "refuse: nothing listens (all operations; such requests cannot be counted)",
            default="close",
            choices=("close", "http-503", "refuse"),
        ),
        OPERATIONS,
        KEY_PATTERN,
    )

    @classmethod
    def cross_check(cls, values: Mapping[str, Any]) -> list[str]:
        if values.get("mode") == "refuse" and (values.get("operations") or values.get("key_pattern")):
            return ["s3_outage: mode refuse affects every request; it cannot take operations or key_pattern"]
        return []

    def rule(self) -> S3FaultRule:
        mode = self.values["mode"]
        return S3FaultRule("outage", outage_mode=mode, **self.selector())

    async def _apply(self) -> None:
        if self.values["mode"] == "refuse":
            await self.layer.set_refusing(True)
        else:
            await super()._apply()

    async def _clear(self) -> None:
        if self.values["mode"] == "refuse":
            await self.layer.set_refusing(False)
        else:
            await super()._clear()


class S3Error(S3Fault):
    kind = "s3_error"
    summary = "answer a fraction of requests with an HTTP error and an S3 error code (XML body)"
    params = (
        Param("status", int, "HTTP status of the error", default=500, minimum=400, maximum=599),
        Param("code", str, "S3 error code in the XML body", default="InternalError"),
        Param("message", str, "message in the XML body", default="We encountered an internal error."),
        RATE,
        OPERATIONS,
        KEY_PATTERN,
    )

    def rule(self) -> S3FaultRule:
        v = self.values
        return S3FaultRule(
            "error",
            rate=v["rate"],
            status=v["status"],
            code=v["code"],
            message=v["message"],
            **self.selector(),
        )


class S3SlowDown(S3Fault):
    kind = "s3_slowdown"
    summary = "S3 throttling: 503 SlowDown for a fraction of requests"
    params = (RATE, OPERATIONS, KEY_PATTERN)

    def rule(self) -> S3FaultRule:
        return S3FaultRule(
            "error",
            rate=self.values["rate"],
            status=503,
            code="SlowDown",
            message="Please reduce your request rate.",
            **self.selector(),
        )


class S3Latency(S3Fault):
    kind = "s3_latency"
    summary = "add latency_ms before matching requests reach S3"
    params = (
        Param("latency_ms", int, "added delay in milliseconds", minimum=0),
        RATE,
        OPERATIONS,
        KEY_PATTERN,
    )

    def rule(self) -> S3FaultRule:
        return S3FaultRule(
            "latency",
            latency_ms=float(self.values["latency_ms"]),
            rate=self.values["rate"],
            **self.selector(),
        )


class S3Drop(S3Fault):
    kind = "s3_drop"
    summary = "drop the connection of matching requests, before S3 sees them or after S3 did them"
    params = (
        Param(
            "when",
            str,
            "before: the request never reaches S3; after: S3 performs it, the answer is lost",
            default="before",
            choices=("before", "after"),
        ),
        RATE,
        OPERATIONS,
        KEY_PATTERN,
    )

    def rule(self) -> S3FaultRule:
        return S3FaultRule("drop", drop_when=self.values["when"], rate=self.values["rate"], **self.selector())


S3_FAULTS: tuple[type[Fault], ...] = (S3Outage, S3Error, S3SlowDown, S3Latency, S3Drop)
