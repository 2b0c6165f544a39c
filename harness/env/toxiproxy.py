"""toxiproxy-server as a supervised child, and a thin async client for its HTTP API.

Why not toxiproxy-python (0.1.1, 2019), which the design card names: it works against 2.5's API
for the basic calls, but (1) the server address is a class attribute of `APIConsumer`, shared by
the whole process, so two servers (two environments, parallel tests) silently talk to whichever
was configured last; (2) no request has a timeout and none can be passed, so a paused or wedged
server hangs the harness forever; (3) it is blocking `requests` code on an asyncio harness;
(4) 5xx answers are not errors (only 400/404/409 raise), and `add_toxic` throws the answer away;
(5) there is no way to update a toxic. This client does the same calls over httpx with a
timeout on each, per-instance addresses, and errors that name the call that failed.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx

from harness.env import resources
from harness.env.ports import LOCALHOST, PortInUse, ensure_port_free, free_port, split_host_port
from harness.env.process import Lifecycle, ManagedProcess, ProcessError, ProcessSpec
from harness.env.readiness import HttpOk
from harness.env.toxiproxy_binary import TOXIPROXY_VERSION, ensure_toxiproxy_server

Stream = Literal["upstream", "downstream"]
TOXIC_TYPES = ("latency", "bandwidth", "slow_close", "timeout", "reset_peer", "slicer", "limit_data")
START_ATTEMPTS = 3


class ToxiproxyError(RuntimeError):
    """A call to the Toxiproxy API failed; the message names the call and the server's answer."""


@dataclass
class Toxic:
    name: str
    type: str
    stream: Stream
    toxicity: float
    attributes: dict[str, Any]


@dataclass
class Proxy:
    """A Toxiproxy proxy: clients connect to `listen`, which forwards to `upstream`."""

    name: str
    listen: str
    upstream: str
    enabled: bool
    toxics: list[Toxic] = field(default_factory=list)

    @property
    def port(self) -> int:
        return split_host_port(self.listen)[1]

    @property
    def host(self) -> str:
        return split_host_port(self.listen)[0]


def _proxy_from_json(data: dict[str, Any]) -> Proxy:
    return Proxy(
        name=data["name"],
        listen=data["listen"],
        upstream=data["upstream"],
        enabled=bool(data["enabled"]),
        toxics=[Toxic(**t) for t in data.get("toxics") or []],
    )


class ToxiproxyClient:
    """Async client for Toxiproxy 2.5's HTTP API, one instance per server."""

    def __init__(self, api_url: str, timeout_s: float = 5.0) -> None:
        self.api_url = api_url.rstrip("/")
        self._http = httpx.AsyncClient(base_url=self.api_url, timeout=timeout_s, trust_env=False)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _call(self, what: str, method: str, path: str, json: Any = None) -> Any:
        try:
            response = await self._http.request(method, path, json=json)
        except httpx.HTTPError as exc:
            raise ToxiproxyError(
                f"Toxiproxy {what}: {method} {self.api_url}{path} failed: {type(exc).__name__}: {exc}"
            ) from exc
        if response.status_code >= 400:
            try:
                detail = response.json().get("error", response.text)
            except ValueError:
                detail = response.text
            raise ToxiproxyError(
                f"Toxiproxy {what}: {method} {path} answered {response.status_code}: {detail.strip()}"
            )
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            return response.text

    async def version(self) -> str:
        return str(await self._call("version", "GET", "/version")).strip()

    async def proxies(self) -> dict[str, Proxy]:
        data = await self._call("list proxies", "GET", "/proxies")
        return {name: _proxy_from_json(p) for name, p in data.items()}

    async def get_proxy(self, name: str) -> Proxy:
        return _proxy_from_json(await self._call(f"get proxy {name!r}", "GET", f"/proxies/{name}"))

    async def create_proxy(self, name: str, upstream: str, listen: str = f"{LOCALHOST}:0") -> Proxy:
        """Create a proxy; `listen` port 0 lets Toxiproxy pick a free port (no race)."""
        body = {"name": name, "upstream": upstream, "listen": listen, "enabled": True}
        try:
            data = await self._call(f"create proxy {name!r}", "POST", "/proxies", body)
        except ToxiproxyError as exc:
            if "address already in use" in str(exc):
                raise PortInUse(f"proxy {name!r} cannot listen on {listen}: address already in use") from exc
            raise
        proxy = _proxy_from_json(data)
        resources.register_port(proxy.port, f"toxiproxy proxy {name}")
        return proxy

    async def delete_proxy(self, name: str) -> None:
        await self._call(f"delete proxy {name!r}", "DELETE", f"/proxies/{name}")

    async def set_enabled(self, name: str, enabled: bool) -> Proxy:
        """Disable: the proxy stops listening and drops its connections. Enable: listens again
        on the same address."""
        verb = "enable" if enabled else "disable"
        data = await self._call(f"{verb} proxy {name!r}", "POST", f"/proxies/{name}", {"enabled": enabled})
        return _proxy_from_json(data)

    async def add_toxic(
        self,
        proxy: str,
        type: str,
        attributes: dict[str, Any],
        stream: Stream = "downstream",
        toxicity: float = 1.0,
        name: str | None = None,
    ) -> Toxic:
        if type not in TOXIC_TYPES:
            raise ToxiproxyError(f"unknown toxic type {type!r}; Toxiproxy has {', '.join(TOXIC_TYPES)}")
        body = {
            "name": name or f"{type}_{stream}",
            "type": type,
            "stream": stream,
            "toxicity": toxicity,
            "attributes": attributes,
        }
        data = await self._call(f"add {type} toxic to {proxy!r}", "POST", f"/proxies/{proxy}/toxics", body)
        return Toxic(**data)

    async def update_toxic(self, proxy: str, name: str, attributes: dict[str, Any]) -> Toxic:
        path = f"/proxies/{proxy}/toxics/{name}"
        data = await self._call(f"update toxic {name!r}", "POST", path, {"attributes": attributes})
        return Toxic(**data)

    async def remove_toxic(self, proxy: str, name: str) -> None:
        await self._call(f"remove toxic {name!r} of {proxy!r}", "DELETE", f"/proxies/{proxy}/toxics/{name}")

    async def toxics(self, proxy: str) -> list[Toxic]:
        data = await self._call(f"list toxics of {proxy!r}", "GET", f"/proxies/{proxy}/toxics")
        return [Toxic(**t) for t in data]

    async def reset(self) -> None:
        """Enable every proxy and remove every toxic."""
        await self._call("reset", "POST", "/reset")


def binary_version(binary: Path) -> str:
    """The module version the binary was built from (`go version -m`), else the pinned one."""
    go = shutil.which("go")
    if go is not None:
        try:
            out = subprocess.run(
                [go, "version", "-m", str(binary)], capture_output=True, text=True, timeout=10, check=False
            ).stdout
        except (OSError, subprocess.TimeoutExpired):
            out = ""
        for line in out.splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[0] == "mod" and parts[1] == "github.com/Shopify/toxiproxy/v2":
                return parts[2]
    return f"{TOXIPROXY_VERSION} (pinned; binary version not verifiable without go)"


class ToxiproxyServer(Lifecycle):
    """A toxiproxy-server child on 127.0.0.1 and its API client, as an async context manager."""

    def __init__(self, run_dir: Path, port: int = 0, binary: Path | None = None) -> None:
        self.run_dir = run_dir
        self.requested_port = port
        self.binary = binary
        self.port = 0
        self.version = ""
        self._process: ManagedProcess | None = None
        self._client: ToxiproxyClient | None = None

    @property
    def api_url(self) -> str:
        return f"http://{LOCALHOST}:{self.port}"

    @property
    def client(self) -> ToxiproxyClient:
        if self._client is None:
            raise ToxiproxyError("toxiproxy-server is not started")
        return self._client

    @property
    def process(self) -> ManagedProcess:
        if self._process is None:
            raise ToxiproxyError("toxiproxy-server is not started")
        return self._process

    async def start(self) -> None:
        binary: Path = (
            self.binary if self.binary is not None else await asyncio.to_thread(ensure_toxiproxy_server)
        )
        self.binary = binary
        self.version = await asyncio.to_thread(binary_version, binary)
        if self.requested_port:
            ensure_port_free(self.requested_port, "toxiproxy-server's API")
        attempts = 1 if self.requested_port else START_ATTEMPTS
        failures: list[str] = []
        for _ in range(attempts):
            port = self.requested_port or free_port()
            process = ManagedProcess(
                ProcessSpec(
                    name="toxiproxy",
                    argv=[str(binary), "-host", LOCALHOST, "-port", str(port)],
                    run_dir=self.run_dir,
                    readiness=HttpOk(f"http://{LOCALHOST}:{port}/version"),
                    ready_timeout_s=15.0,
                    stop_timeout_s=5.0,
                )
            )
            try:
                await process.start()
            except ProcessError as exc:
                failures.append(str(exc))
                if "address already in use" in process.stderr_tail():
                    continue  # lost the race for the port: try another
                raise ToxiproxyError(f"toxiproxy-server ({binary}) failed to start: {exc}") from exc
            self._process, self.port = process, port
            resources.register_port(port, "toxiproxy-server API")
            self._client = ToxiproxyClient(self.api_url)
            return
        raise ToxiproxyError(
            f"toxiproxy-server could not bind a port after {attempts} attempts: " + " | ".join(failures)
        )

    async def stop(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        if self._process is not None:
            await self._process.stop()
            self._process = None
