"""Coordinator failpoints, switched through its admin routes (needs --enable-failpoints).

The failpoint name is the target: the fault makes that code path of the coordinator fail or
stall from the inside, where no network or S3 fault reaches.
"""

from __future__ import annotations

from typing import Any, ClassVar

import httpx

from harness.env.coordinator_process import FAILPOINT_NAMES
from harness.faults.base import Fault, FaultError
from harness.faults.params import Param


class Failpoint(Fault):
    kind = "failpoint"
    family: ClassVar[str] = "failpoint"
    summary = "switch on a coordinator failpoint: its code path errors or is delayed"
    target_param: ClassVar[Param] = Param(
        "target",
        str,
        "failpoint name, e.g. " + ", ".join(FAILPOINT_NAMES) + " (the target lists its own)",
        pattern=r"[a-z0-9_]+(\.[a-z0-9_]+)*",
    )
    params = (
        Param("mode", str, "error or delay", default="error", choices=("error", "delay")),
        Param("delay_ms", int, "delay for mode delay", default=0, minimum=0),
        Param("message", str, "error message for mode error", default="injected by the harness"),
        Param(
            "times", int, "fire this many times, then stay off; null: unlimited", default=None, nullable=True
        ),
        Param(
            "probability",
            float,
            "chance each pass fires (seeded in the coordinator)",
            default=1.0,
            minimum=0.0,
            maximum=1.0,
        ),
    )

    @property
    def observable(self) -> bool:
        return self.values["mode"] != "delay"  # delay mode only slows its code path

    def _url(self) -> str:
        return f"{self.env.direct_url}/admin/failpoints/{self.target}"

    async def _call(self, method: str, body: dict[str, Any] | None = None) -> None:
        token = self.env.admin_token
        if not token:
            raise FaultError(f"{self.describe()}: no admin token, failpoints cannot be switched")
        try:
            async with httpx.AsyncClient(timeout=5.0, trust_env=False) as http:
                response = await http.request(
                    method, self._url(), json=body, headers={"Authorization": f"Bearer {token}"}
                )
        except httpx.HTTPError as exc:
            raise FaultError(f"{self.describe()}: {method} {self._url()} failed: {exc}") from exc
        if response.status_code >= 300 and not (method == "DELETE" and response.status_code == 404):
            raise FaultError(
                f"{self.describe()}: {method} {self._url()} answered {response.status_code}: {response.text[:300]}"
            )

    async def _known_names(self) -> list[str] | None:
        token = self.env.admin_token
        try:
            async with httpx.AsyncClient(timeout=5.0, trust_env=False) as http:
                response = await http.get(
                    f"{self.env.direct_url}/admin/failpoints", headers={"Authorization": f"Bearer {token}"}
                )
            data = response.json().get("data", {}).get("failpoints")
        except (httpx.HTTPError, ValueError, AttributeError):
            return None
        return list(data) if isinstance(data, dict) else None

    async def _apply(self) -> None:
        names = await self._known_names()
        if names is not None and self.target not in names:
            raise FaultError(
                f"{self.describe()}: the target has no failpoint {self.target!r}; it has {names}"
            )
        v = self.values
        body = {
            "mode": v["mode"],
            "delayMs": v["delay_ms"],
            "message": v["message"],
            "times": v["times"],
            "probability": v["probability"],
        }
        await self._call("PUT", body)

    async def _clear(self) -> None:
        await self._call("DELETE")
