"""The system under test, brought up and always torn down as one object.

Bundled target: toxiproxy-server, moto's S3 server behind the S3 fault layer, the coordinator
as a child (data dir in a temp dir), and the proxies: client -> coordinator ("client"),
coordinator -> S3 ("s3", which forwards to the fault layer), and per-client proxies
("client-<id>") on demand. Command target: the same, with any server started from a command
line (harness/env/command_target.py) in place of the coordinator, so process, S3 and network
faults reach it alike; moto runs when the scenario asks for S3 (the command then gets its
`s3_env`) or when the command cannot run without it (it names an S3 placeholder). Container
target: the same with a server image run by the docker SDK (harness/env/container_target.py);
its S3 proxy listens on the run's bridge gateway for the container's relay, and
`network_disconnect` partitions it from the object store. External target (a URL, e.g. staging): only the client proxy;
there is no process control and no S3 of ours, and `unsupported_faults()` says so as data.

Clients use the URLs through Toxiproxy (`client_urls()`); checks read /status, /metrics and
/debug/resources through `direct_url`, which no fault touches.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib.metadata
import platform
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx

from harness.env import resources
from harness.env.command_target import CommandSpec, CommandTarget
from harness.env.container_target import ContainerSpec, ContainerTarget
from harness.env.coordinator_process import CoordinatorOptions, CoordinatorProcess, S3Settings
from harness.env.moto_server import MotoServer
from harness.env.ports import LOCALHOST
from harness.env.process import Lifecycle
from harness.env.s3_fault_layer import S3FaultLayer
from harness.env.toxiproxy import Proxy, ToxiproxyClient, ToxiproxyServer
from harness.history import FaultWindow, History
from harness.seed import Seeds

BUNDLED = "bundled"
COMMAND = "command"
CONTAINER = "container"
CLIENT_PROXY = "client"
S3_PROXY = "s3"

PROCESS_FAULTS = ("kill", "pause", "terminate", "restart", "disk_loss")
CONTAINER_FAULTS = ("network_disconnect",)
S3_FAULTS = ("s3_outage", "s3_error", "s3_slowdown", "s3_latency", "s3_drop")


class ActiveFault(Protocol):
    """What the environment knows of an applied fault (see harness.faults.base.Fault)."""

    window: FaultWindow | None

    def describe(self) -> str: ...

    async def clear(self) -> None: ...


class EnvironmentSetupError(RuntimeError):
    """The environment could not be brought up as configured."""


@dataclass
class EnvironmentConfig:
    """What to bring up. `target` is "bundled", "command" (with `command`) or the base URL of an
    external server (e.g. http://host:8080/sync)."""

    target: str = BUNDLED
    coordinator: CoordinatorOptions = field(default_factory=CoordinatorOptions)
    with_s3: bool = True
    s3_bucket: str = "sync-harness"
    s3_prefix: str = ""
    s3_region: str = "us-east-1"
    command: CommandSpec | None = None  # target "command": the server's command line and readiness
    command_options: dict[str, Any] = field(default_factory=dict)  # written to its {options_file}
    container: ContainerSpec | None = None  # target "container": the server's image and settings
    admin_token: str | None = None  # external and command targets; bundled uses coordinator.admin_token
    client_proxies: list[str] = field(default_factory=list)  # per-client proxies made at start
    run_dir: Path | None = None  # logs; kept when given, else a temp dir removed at teardown

    @property
    def external(self) -> bool:
        """A server the harness does not start (no process faults, no S3 of ours)."""
        return self.target not in (BUNDLED, COMMAND, CONTAINER)


@dataclass(frozen=True)
class TargetUrls:
    """Where a client connects: HTTP base (with base path) and the WebSocket URL."""

    http: str
    ws: str


def _urls(scheme: str, address: str, base_path: str) -> TargetUrls:
    ws_scheme = "wss" if scheme in ("https", "wss") else "ws"
    http_scheme = "https" if scheme in ("https", "wss") else "http"
    return TargetUrls(f"{http_scheme}://{address}{base_path}", f"{ws_scheme}://{address}{base_path}/ws")


class Environment(Lifecycle):
    """`async with Environment(config, seeds=seeds, history=history) as env: ...`"""

    def __init__(
        self,
        config: EnvironmentConfig | None = None,
        seeds: Seeds | None = None,
        history: History | None = None,
    ) -> None:
        self.config = config or EnvironmentConfig()
        self.seeds = seeds or Seeds.from_env()
        self.history = history or History()
        self.toxiproxy: ToxiproxyServer | None = None
        self.moto: MotoServer | None = None
        self.s3_layer: S3FaultLayer | None = None
        # the server the harness started: the bundled coordinator or a command target
        self.coordinator: CoordinatorProcess | CommandTarget | ContainerTarget | None = None
        self.proxies: dict[str, Proxy] = {}
        self.run_dir = Path()
        self.data_dir: Path | None = None
        self.base_path = "/sync"
        self.failpoints_available: bool | None = None
        self._scheme = "http"
        self._direct_address = ""
        self.active_faults: list[ActiveFault] = []
        self._stack = contextlib.AsyncExitStack()
        self._started = False

    # lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._started:
            raise EnvironmentSetupError("the environment is already started")
        self._started = True
        stack = self._stack
        if self.config.run_dir is not None:
            self.run_dir = self.config.run_dir
            self.run_dir.mkdir(parents=True, exist_ok=True)
        else:
            self.run_dir = resources.make_temp_dir("run")
            stack.callback(resources.remove_temp_dir, self.run_dir)
        self.toxiproxy = await stack.enter_async_context(ToxiproxyServer(self.run_dir))
        if self.config.external:
            await self._start_external()
        elif self.config.target == COMMAND:
            await self._start_command()
        elif self.config.target == CONTAINER:
            await self._start_container()
        else:
            await self._start_bundled()
        for client_id in self.config.client_proxies:
            await self.client_proxy(client_id)

    async def _start_s3(self, listen_host: str = LOCALHOST) -> S3Settings:
        """moto behind the S3 fault layer behind the "s3" proxy: the endpoint a server is given
        (a container's relay reaches the proxy on its bridge's gateway, `listen_host`)."""
        stack = self._stack
        self.moto = await stack.enter_async_context(MotoServer(self.run_dir))
        await self.moto.create_bucket(self.config.s3_bucket)
        self.s3_layer = await stack.enter_async_context(
            S3FaultLayer(
                LOCALHOST, self.moto.port, rng=self.seeds.stream("s3-faults"), clock=self.history.now
            )
        )
        s3_proxy = await self._create_proxy(
            S3_PROXY, f"{LOCALHOST}:{self.s3_layer.port}", listen=f"{listen_host}:0"
        )
        return S3Settings(
            bucket=self.config.s3_bucket,
            endpoint=f"http://{s3_proxy.listen}",
            region=self.config.s3_region,
            prefix=self.config.s3_prefix,
        )

    async def _start_bundled(self) -> None:
        stack = self._stack
        s3_settings = await self._start_s3() if self.config.with_s3 else None
        self.data_dir = resources.make_temp_dir("data")
        stack.callback(resources.remove_temp_dir, self.data_dir)
        seed = self.seeds.stream("coordinator-failpoints").randrange(2**31)
        self.coordinator = await stack.enter_async_context(
            CoordinatorProcess(
                self.run_dir,
                self.data_dir,
                self.config.coordinator,
                s3=s3_settings,
                failpoint_seed=seed,
                clock=self.history.now,
            )
        )
        self.base_path = self.coordinator.base_path
        self._direct_address = self.coordinator.address
        self.failpoints_available = self.config.coordinator.enable_failpoints and bool(
            self.config.coordinator.admin_token
        )
        await self._create_proxy(CLIENT_PROXY, self.coordinator.address)

    async def _start_command(self) -> None:
        spec = self.config.command
        if spec is None:
            raise EnvironmentSetupError("target 'command' needs a command (EnvironmentConfig.command)")
        if self.config.with_s3 and not spec.takes_s3:
            raise EnvironmentSetupError(
                f"the scenario asks for S3 but the server command `{' '.join(spec.argv)}` takes no "
                "object store: name {s3_endpoint} and {s3_bucket} in its command or env, or set s3_env"
            )
        stack = self._stack
        s3_settings = await self._start_s3() if (self.config.with_s3 or spec.needs_s3) else None
        self.data_dir = resources.make_temp_dir("data")
        stack.callback(resources.remove_temp_dir, self.data_dir)
        self.coordinator = await stack.enter_async_context(
            CommandTarget(
                spec,
                self.run_dir,
                self.data_dir,
                s3=s3_settings,
                clock=self.history.now,
                options=self.config.command_options,
            )
        )
        self.base_path = self.coordinator.base_path
        self._direct_address = self.coordinator.address
        await self._create_proxy(CLIENT_PROXY, self.coordinator.address)
        self.failpoints_available = await self._probe_failpoints()

    async def _start_container(self) -> None:
        """The server's image as a container of this run (harness/env/container_target.py): its
        networks first, so the S3 proxy can listen where the container's relay reaches it."""
        spec = self.config.container
        if spec is None:
            raise EnvironmentSetupError("target 'container' needs an image (EnvironmentConfig.container)")
        if self.config.with_s3 and not spec.takes_s3:
            raise EnvironmentSetupError(
                f"the scenario asks for S3 but the image {spec.image} is given no object store: name "
                "{s3_endpoint} and {s3_bucket} in its command or env, or set s3_env"
            )
        from harness.env.docker_images import BASE_IMAGE, REFERENCE, ImageError, ensure

        if spec.image == REFERENCE:  # the reference coordinator's image, built or loaded here
            try:
                spec = dataclasses.replace(spec, image=(await asyncio.to_thread(ensure))["coordinator"])
            except ImageError as exc:
                raise EnvironmentSetupError(f"image {REFERENCE!r}: {exc}") from exc
        stack = self._stack
        self.data_dir = resources.make_temp_dir("data")
        stack.callback(resources.remove_temp_dir, self.data_dir)
        target = ContainerTarget(
            spec,
            self.run_dir,
            self.data_dir,
            clock=self.history.now,
            options=self.config.command_options,
            relay_image=BASE_IMAGE,
        )
        self.coordinator = target
        stack.push_async_callback(target.stop)  # networks exist from here on, whatever fails next
        gateway = await target.prepare()
        if self.config.with_s3 or spec.needs_s3:
            target.s3 = await self._start_s3(listen_host=gateway)
        await target.start()
        stack.push_async_callback(target.stop)  # before moto and Toxiproxy stop (idempotent)
        self.base_path = target.base_path
        self._direct_address = target.address
        await self._create_proxy(CLIENT_PROXY, target.address)
        self.failpoints_available = await self._probe_failpoints()

    async def _start_external(self) -> None:
        parts = urlsplit(self.config.target)
        if parts.scheme not in ("http", "https", "ws", "wss") or not parts.hostname:
            raise EnvironmentSetupError(
                f"target {self.config.target!r} is not a URL like http://host:port/sync (or 'bundled')"
            )
        default_port = 443 if parts.scheme in ("https", "wss") else 80
        self._scheme = parts.scheme
        self._direct_address = f"{parts.hostname}:{parts.port or default_port}"
        self.base_path = parts.path.rstrip("/") or "/sync"
        if not self.tls:
            await self._create_proxy(CLIENT_PROXY, self._direct_address)
        self.failpoints_available = await self._probe_failpoints()

    @property
    def tls(self) -> bool:
        return self._scheme in ("https", "wss")

    async def _probe_failpoints(self) -> bool:
        token = self.admin_token
        if not token:
            return False
        try:
            async with httpx.AsyncClient(timeout=5.0, trust_env=False) as http:
                response = await http.get(
                    f"{self.direct_url}/admin/failpoints", headers={"Authorization": f"Bearer {token}"}
                )
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    async def stop(self) -> None:
        """Tear everything down in reverse order; safe to call twice. Faults still applied end
        their windows here (their effect ends with the components)."""
        for fault in self.active_faults:
            if fault.window is not None:
                self.history.fault_ended(fault.window)
        self.active_faults.clear()
        await self._stack.aclose()
        for proxy in self.proxies.values():
            resources.unregister_port(proxy.port)
        self.proxies.clear()

    # faults ---------------------------------------------------------------------------------
    def fault_applied(self, fault: ActiveFault) -> None:
        self.active_faults.append(fault)

    def fault_cleared(self, fault: ActiveFault) -> None:
        if fault in self.active_faults:
            self.active_faults.remove(fault)

    async def clear_faults(self) -> list[str]:
        """Clear every applied fault, newest first; the errors, as text (all are attempted)."""
        errors: list[str] = []
        for fault in list(reversed(self.active_faults)):
            try:
                await fault.clear()
            except Exception as exc:
                errors.append(f"{fault.describe()}: {exc}")
                self.fault_cleared(fault)
        return errors

    # proxies --------------------------------------------------------------------------------
    @property
    def toxiproxy_client(self) -> ToxiproxyClient:
        if self.toxiproxy is None:
            raise EnvironmentSetupError("the environment is not started")
        return self.toxiproxy.client

    async def _create_proxy(self, name: str, upstream: str, listen: str = f"{LOCALHOST}:0") -> Proxy:
        proxy = await self.toxiproxy_client.create_proxy(name, upstream, listen=listen)
        self.proxies[name] = proxy
        return proxy

    async def client_proxy(self, client_id: str) -> Proxy:
        """The proxy of one client ("client-<id>"), created on first use, so that a fault can
        hurt that client alone (Toxiproxy cannot single out one connection of a proxy)."""
        name = f"client-{client_id}"
        if name not in self.proxies:
            if self.tls:
                raise EnvironmentSetupError("a TLS target cannot be proxied: no per-client network faults")
            await self._create_proxy(name, self._direct_address)
        return self.proxies[name]

    def proxy_for_target(self, target: str) -> str:
        """Toxiproxy proxy name of a fault target: "client", "s3" or "client:<id>"."""
        if target.startswith("client:"):
            return f"client-{target.split(':', 1)[1]}"
        if target in (CLIENT_PROXY, S3_PROXY):
            return target
        raise EnvironmentSetupError(f"unknown network target {target!r}: use client, s3 or client:<id>")

    # URLs -----------------------------------------------------------------------------------
    @property
    def direct_url(self) -> str:
        """HTTP base of the target with no proxy in between (for /status, /metrics, ...)."""
        return _urls(self._scheme, self._direct_address, self.base_path).http

    @property
    def direct_urls(self) -> TargetUrls:
        return _urls(self._scheme, self._direct_address, self.base_path)

    @property
    def admin_token(self) -> str | None:
        if self.config.target == BUNDLED:
            return self.config.coordinator.admin_token
        return self.config.admin_token

    def client_urls(self, client_id: str | None = None) -> TargetUrls:
        """URLs for a client: through its own proxy when it has one, else the shared one."""
        name = f"client-{client_id}" if client_id is not None else CLIENT_PROXY
        proxy = self.proxies.get(name) or self.proxies.get(CLIENT_PROXY)
        if proxy is None:
            return self.direct_urls
        return _urls(self._scheme, proxy.listen, self.base_path)

    @property
    def s3_direct_url(self) -> str | None:
        """moto itself, bypassing faults and counts: for checks that read what S3 holds."""
        return self.moto.url if self.moto is not None else None

    # capabilities ---------------------------------------------------------------------------
    def unsupported_faults(self) -> dict[str, str]:
        """Fault kinds this environment cannot cause, with the reason (for the runner to print)."""
        out: dict[str, str] = {}
        if self.config.external:
            for kind in PROCESS_FAULTS:
                out[kind] = "external target: the harness has no control over its process"
            for kind in S3_FAULTS:
                out[kind] = "external target: its object store is not the harness's"
        elif self.s3_layer is None:
            for kind in S3_FAULTS:
                out[kind] = "the environment runs without S3 (with_s3=False)"
        if self.config.target != CONTAINER:
            for kind in CONTAINER_FAULTS:
                out[kind] = "not a container target: there is no docker network to disconnect it from"
        elif self.s3_layer is None:
            for kind in CONTAINER_FAULTS:
                out[kind] = "the container runs without S3: it has no object-store network"
        if not self.failpoints_available:
            out["failpoint"] = (
                "the target exposes no failpoint routes (needs --enable-failpoints and an admin token)"
            )
        if self.tls:
            out["network"] = "TLS target: Toxiproxy cannot sit in front of it"
        return out

    def network_targets(self) -> list[str]:
        targets = [CLIENT_PROXY] if CLIENT_PROXY in self.proxies else []
        if S3_PROXY in self.proxies:
            targets.append(S3_PROXY)
        return targets + [f"client:{n.split('-', 1)[1]}" for n in self.proxies if n.startswith("client-")]

    def versions(self) -> dict[str, str]:
        out = {"python": platform.python_version()}
        if self.toxiproxy is not None:
            out["toxiproxy-server"] = self.toxiproxy.version
        for package in ("moto", "boto3", "httpx"):
            with contextlib.suppress(importlib.metadata.PackageNotFoundError):
                out[package] = importlib.metadata.version(package)
        return out

    def describe(self) -> dict[str, Any]:
        """What a journal records about the environment."""
        return {
            "target": self.config.target,
            "command": self.coordinator.describe() if isinstance(self.coordinator, CommandTarget) else None,
            "container": (
                self.coordinator.describe() if isinstance(self.coordinator, ContainerTarget) else None
            ),
            "seed": self.seeds.seed,
            "versions": self.versions(),
            "direct_url": self.direct_url,
            "client_url": self.client_urls().http,
            "proxies": {
                name: {"listen": p.listen, "upstream": p.upstream} for name, p in self.proxies.items()
            },
            "s3": (
                {"bucket": self.config.s3_bucket, "prefix": self.config.s3_prefix, "moto": self.s3_direct_url}
                if self.s3_layer is not None
                else None
            ),
            "unsupported_faults": self.unsupported_faults(),
            "run_dir": str(self.run_dir),
        }

    # small helpers for checks ---------------------------------------------------------------
    async def get_direct(self, path: str, admin: bool = False, timeout_s: float = 5.0) -> httpx.Response:
        """GET `{direct_url}{path}` (e.g. "/status"), with the admin token when asked."""
        headers = {"Authorization": f"Bearer {self.admin_token}"} if admin and self.admin_token else {}
        async with httpx.AsyncClient(timeout=timeout_s, trust_env=False) as http:
            return await http.get(f"{self.direct_url}{path}", headers=headers)

    def on_teardown(self, callback: Callable[[], Awaitable[None]]) -> None:
        """Run `callback` at teardown, before the components it may use are stopped."""
        self._stack.push_async_callback(callback)
