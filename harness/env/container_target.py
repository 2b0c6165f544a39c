"""Any server shipped as an image: the harness runs it as a container through the docker SDK.

It sits beside the command target (harness/env/command_target.py) with the same surface for the
faults, the observer and the runner (`process`, `port`, `address`, `events`, `log_lines()`,
`start_again()`, `restart()`, `wipe_data()`, `stop()`), so kill, pause, terminate, restart and
disk_loss reach a container unchanged: kill is `docker kill -s KILL`, pause the cgroup freezer
(`docker pause`), terminate `docker kill -s TERM` and a wait for the exit, restart a stop and a
start of the same container (same port binding, same data volume). The container runs with
init=True (Python as PID 1 would ignore SIGTERM), its port published on 127.0.0.1 only, its
data dir a bind mount of the run's data dir, as the host's uid:gid so the harness can wipe it.

Networks, per run: "front" (a bridge; the published port lives on it) and, when S3 is used,
"back" (internal: no way out). moto stays on the host behind the S3 fault layer and Toxiproxy
as for every target; the server reaches it at `http://<relay address on back>:9000`, a small
relay container (the base image's python3) on both networks that forwards to the Toxiproxy S3
proxy, which listens on the front bridge's gateway address. Host networking would have been
simpler but leaves nothing to disconnect: with the relay, `network_disconnect` of the server
from "back" is a real partition from the object store (the address is no longer routed; by
address, not by name, so it is not hidden behind the host resolvers' timeouts) while its
clients still reach it, and clearing it connects the server again.

Everything created is labelled `sync-chaos-harness.run=<run id>` (and the harness's pid):
stop() removes it, an atexit hook removes it after a crash of the event loop, and every start
first sweeps what a dead harness process left behind (its pid is gone), never a live run's.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.env import resources
from harness.env.command_target import S3_PLACEHOLDERS, fill, fill_argv, placeholders
from harness.env.coordinator_process import LogRecord, S3Settings, read_log_lines
from harness.env.ports import LOCALHOST, free_port
from harness.env.process import Lifecycle, ProcessError, ProcessEvent
from harness.env.readiness import HttpOk, NotReady, Readiness, TcpOpen, wait_until

LABEL_RUN = "sync-chaos-harness.run"
LABEL_PID = "sync-chaos-harness.pid"
LABEL_ROLE = "sync-chaos-harness.role"
PROCESS_NAME = "server"
RELAY_ALIAS = "s3"
RELAY_PORT = 9000
OPTIONS_PATH = "/harness/server-options.json"
OPTIONS_FILE = "server-options.json"
FRONT = "front"
BACK = "back"
NETWORKS = (FRONT, BACK)
WAIT_POLL_S = 2.0
# The relay: accept on argv[3], forward each connection to argv[1]:argv[2] (Toxiproxy's S3 proxy).
RELAY_CODE = """
import asyncio, sys
async def pipe(r, w):
    try:
        while data := await r.read(65536):
            w.write(data); await w.drain()
    except Exception:
        pass
    finally:
        w.close()
async def handle(r, w):
    try:
        ur, uw = await asyncio.open_connection(sys.argv[1], int(sys.argv[2]))
    except OSError:
        w.close(); return
    await asyncio.gather(pipe(r, uw), pipe(ur, w))
async def main():
    server = await asyncio.start_server(handle, "0.0.0.0", int(sys.argv[3]))
    print("relay ready", flush=True)
    async with server:
        await server.serve_forever()
asyncio.run(main())
"""


class ContainerTargetError(RuntimeError):
    """The container could not be created, started or made ready; names the image."""


@dataclass(frozen=True)
class ContainerSpec:
    """A `target: {image: ...}` section. `command` replaces the image's CMD (None keeps it);
    `port` is the server's port inside the container (published on 127.0.0.1:`host_port`, auto
    when None); `volumes` maps host paths to container paths (placeholders allowed); the run's
    data dir is mounted at `data_path`."""

    image: str
    command: tuple[str, ...] | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    s3_env: Mapping[str, str] = field(default_factory=dict)
    port: int = 3000
    host_port: int | None = None
    volumes: Mapping[str, str] = field(default_factory=dict)
    data_path: str = "/data"
    ready: tuple[str, str] = ("http", "/sync/ready")
    base_path: str = "/sync"
    ready_timeout_s: float = 60.0
    stop_timeout_s: float = 15.0

    def texts(self) -> list[str]:
        return [*(self.command or ()), *self.env.values(), *self.volumes.keys(), *self.volumes.values()]

    @property
    def needs_s3(self) -> bool:
        return any(name in S3_PLACEHOLDERS for name in placeholders(self.texts()))

    @property
    def takes_s3(self) -> bool:
        return self.needs_s3 or bool(self.s3_env)

    def to_json(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "command": list(self.command) if self.command is not None else None,
            "env": dict(self.env),
            "s3_env": dict(self.s3_env),
            "port": self.port,
            "host_port": self.host_port if self.host_port is not None else "auto",
            "volumes": dict(self.volumes),
            "data_path": self.data_path,
            "ready": {self.ready[0]: self.ready[1] or True},
            "base_path": self.base_path,
        }


# what a dead event loop leaves: removed at interpreter exit (Ctrl-C outside the loop, a crash)
_live_runs: set[str] = set()


def _docker() -> Any:
    from harness.env.docker_images import docker_client

    return docker_client()


def remove_run(client: Any, run_id: str) -> list[str]:
    """Force-remove every container and network labelled with `run_id`; what was removed."""
    removed: list[str] = []
    selector = {"label": f"{LABEL_RUN}={run_id}"}
    for container in client.containers.list(all=True, filters=selector):
        with contextlib.suppress(Exception):
            container.remove(force=True, v=True)
            removed.append(f"container {container.name}")
    for network in client.networks.list(filters=selector):
        with contextlib.suppress(Exception):
            network.reload()
            for attached in network.attrs.get("Containers") or {}:
                with contextlib.suppress(Exception):
                    network.disconnect(attached, force=True)
            network.remove()
            removed.append(f"network {network.name}")
    return removed


def labelled(client: Any, run_id: str | None = None) -> list[str]:
    """Containers and networks of the harness still in the engine (of one run, or of any)."""
    selector = {"label": f"{LABEL_RUN}={run_id}" if run_id else LABEL_RUN}
    found = [f"container {c.name} ({c.status})" for c in client.containers.list(all=True, filters=selector)]
    return found + [f"network {n.name}" for n in client.networks.list(filters=selector)]


def sweep_dead_runs(client: Any) -> list[str]:
    """Remove what harness processes that no longer exist left labelled (a crashed run); a live
    run's containers, whoever started it, are left alone."""
    dead: set[str] = set()
    objects = [
        *client.containers.list(all=True, filters={"label": LABEL_RUN}),
        *client.networks.list(filters={"label": LABEL_RUN}),
    ]
    for obj in objects:
        labels = obj.attrs.get("Labels") or obj.attrs.get("Config", {}).get("Labels") or {}
        if not _pid_alive(labels.get(LABEL_PID, "")):
            dead.add(labels[LABEL_RUN])
    removed: list[str] = []
    for run_id in sorted(dead):
        removed += remove_run(client, run_id)
    return removed


def _pid_alive(text: str) -> bool:
    try:
        pid = int(text)
    except ValueError:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_live_runs() -> None:
    if not _live_runs:
        return
    with contextlib.suppress(Exception):
        client = _docker()
        for run_id in list(_live_runs):
            remove_run(client, run_id)
            _live_runs.discard(run_id)


atexit.register(_remove_live_runs)


def _exit_code(raw: int) -> int:
    """Docker's exit status with ManagedProcess's convention: a signal death (tini reports
    128+N) is -N, so a SIGKILL reads -9 for a container as for a process."""
    return -(raw - 128) if 128 < raw < 128 + 65 else raw


class ContainerProcess:
    """The server container seen as a process: what process faults call (kill, pause, resume,
    terminate) with lifecycle events on the run's clock, as ManagedProcess records them."""

    def __init__(self, target: ContainerTarget) -> None:
        self.target = target
        self.name = PROCESS_NAME
        self.events: list[ProcessEvent] = []
        self.starts = 0
        self.paused = False
        self.last_returncode: int | None = None
        self._running = False
        self._signalled = False
        self._exit: asyncio.Future[int] | None = None

    @property
    def container(self) -> Any:
        if self.target.container is None:
            raise ProcessError("the server container is not created")
        return self.target.container

    @property
    def running(self) -> bool:
        return self._running

    @property
    def returncode(self) -> int | None:
        return None if self._running else self.last_returncode

    def _event(self, kind: Any, code: int | None = None, by_harness: bool = True) -> None:
        self.events.append(ProcessEvent(self.target.clock(), kind, code, by_harness))

    async def start(self) -> None:
        """Start the container (created or exited) and watch for its exit on a daemon thread."""
        if self._running:
            raise ProcessError("the server container is already running")
        loop = asyncio.get_running_loop()
        self._exit = loop.create_future()
        since = time.time()
        try:
            await asyncio.to_thread(self.container.start)
        except Exception as exc:
            raise ProcessError(f"cannot start container of {self.target.spec.image}: {exc}") from exc
        self.starts += 1
        self._running = True
        self.paused = False
        self._signalled = False
        self._event("start")
        self.target.follow_logs(since, self.starts)
        threading.Thread(target=self._wait_thread, args=(loop, self._exit), daemon=True).start()

    def _wait_thread(self, loop: asyncio.AbstractEventLoop, done: asyncio.Future[int]) -> None:
        """Block on `docker wait` (in slices, so a vanished engine cannot pin the thread)."""
        code: int | None = None
        while code is None and not done.done() and not self.target.closing:
            try:
                code = int(self.container.wait(timeout=WAIT_POLL_S)["StatusCode"])
            except Exception as exc:
                if "404" in str(exc) or "No such container" in str(exc):
                    code = -9  # removed under us (teardown): it is gone
        with contextlib.suppress(RuntimeError):  # the loop may be closed at interpreter exit
            loop.call_soon_threadsafe(self._exited, done, code if code is not None else -9)

    def _exited(self, done: asyncio.Future[int], raw: int) -> None:
        if done.done():
            return
        code = _exit_code(raw)
        self._running = False
        self.paused = False
        self.last_returncode = code
        self._event("exit", code, by_harness=self._signalled)
        done.set_result(code)

    async def wait(self, timeout_s: float) -> int:
        if self._exit is None:
            raise ProcessError("the server container was never started")
        try:
            return await asyncio.wait_for(asyncio.shield(self._exit), timeout_s)
        except TimeoutError as exc:
            raise ProcessError(f"the server container did not exit within {timeout_s}s") from exc

    async def _signal(self, sig: str) -> None:
        if not self._running:
            raise ProcessError(f"cannot send {sig} to the server container: it is not running")
        self._event("sigkill" if sig == "SIGKILL" else "sigterm")
        self._signalled = True
        try:
            await asyncio.to_thread(self.container.kill, signal=sig)
        except Exception as exc:
            raise ProcessError(f"docker kill -s {sig} failed: {exc}") from exc

    async def pause(self) -> None:
        """docker pause: the cgroup freezer (sockets stay open, nothing runs)."""
        if not self._running:
            raise ProcessError("cannot pause the server container: it is not running")
        await asyncio.to_thread(self.container.pause)
        self._event("sigstop")
        self.paused = True

    async def resume(self) -> None:
        await asyncio.to_thread(self.container.unpause)
        self._event("sigcont")
        self.paused = False

    async def terminate(self, timeout_s: float | None = None) -> int:
        """SIGTERM (tini hands it to the server) and wait for the exit, no SIGKILL."""
        if self.paused:
            await self.resume()
        await self._signal("SIGTERM")
        return await self.wait(self.target.spec.stop_timeout_s if timeout_s is None else timeout_s)

    async def kill(self) -> int | None:
        if not self._running:
            return self.last_returncode
        if self.paused:  # a frozen container can be killed, but thaw it so its state is plain
            with contextlib.suppress(Exception):
                await self.resume()
        with contextlib.suppress(ProcessError):
            await self._signal("SIGKILL")
        return await self.wait(30.0)

    async def stop(self, timeout_s: float | None = None) -> int | None:
        """SIGTERM, then SIGKILL after the deadline; safe at any time."""
        if not self._running:
            return self.last_returncode
        try:
            return await self.terminate(self.target.spec.stop_timeout_s if timeout_s is None else timeout_s)
        except ProcessError:
            return await self.kill()

    def note_restart(self) -> None:
        self._event("restart")


class ContainerTarget(Lifecycle):
    """A server image run as one container of this run, reachable at `http_url` on 127.0.0.1."""

    def __init__(
        self,
        spec: ContainerSpec,
        run_dir: Path,
        data_dir: Path,
        s3: S3Settings | None = None,
        clock: Callable[[], float] = time.monotonic,
        options: Mapping[str, Any] | None = None,
        run_id: str | None = None,
        relay_image: str | None = None,
    ) -> None:
        self.spec = spec
        self.run_dir = run_dir
        self.data_dir = data_dir
        self.s3 = s3  # the S3 proxy as the host sees it (front gateway address); None: no S3
        self.clock = clock
        self.options = dict(options or {})
        self.run_id = run_id or uuid.uuid4().hex[:12]
        self.relay_image = relay_image
        self.wall_at_zero = time.time() - clock()
        self.port = spec.host_port or 0
        self.base_path = spec.base_path
        self.client: Any = None
        self.container: Any = None
        self.relay: Any = None
        self.networks: dict[str, Any] = {}
        self.gateway: str | None = None
        self.closing = False
        self.partitioned: set[str] = set()
        self.relay_address: str | None = None  # the relay's address on "back"
        self._process = ContainerProcess(self)
        self._log_threads: list[threading.Thread] = []

    # surface shared with the command target --------------------------------------------------
    @property
    def address(self) -> str:
        return f"{LOCALHOST}:{self.port}"

    @property
    def http_url(self) -> str:
        return f"http://{self.address}{self.base_path}"

    @property
    def process(self) -> ContainerProcess:
        return self._process

    @property
    def events(self) -> list[ProcessEvent]:
        return list(self._process.events)

    @property
    def options_file(self) -> Path:
        return self.run_dir / OPTIONS_FILE

    def log_lines(self) -> list[LogRecord]:
        return read_log_lines(self.run_dir, PROCESS_NAME, self.wall_at_zero)

    def labels(self, role: str) -> dict[str, str]:
        return {LABEL_RUN: self.run_id, LABEL_PID: str(os.getpid()), LABEL_ROLE: role}

    def name(self, role: str) -> str:
        return f"sch-{self.run_id}-{role}"

    def values(self) -> dict[str, str]:
        """Placeholders as the server sees them, inside its container."""
        out = {
            "port": str(self.spec.port),
            "host": "0.0.0.0",
            "data_dir": self.spec.data_path,
            "run_dir": str(Path(OPTIONS_PATH).parent),
            "options_file": OPTIONS_PATH,
        }
        if self.s3 is not None:
            out |= {
                "s3_endpoint": f"http://{self.relay_address or RELAY_ALIAS}:{RELAY_PORT}",
                "s3_bucket": self.s3.bucket,
                "s3_region": self.s3.region,
                "s3_prefix": self.s3.prefix,
            }
        return out

    def command(self) -> list[str] | None:
        if self.spec.command is None:
            return None
        argv, missing = fill_argv(self.spec.command, self.values())
        if missing:
            raise ContainerTargetError(
                f"container {self.spec.image}: no value for {{{missing}}} "
                "(S3 placeholders need a scenario that asks for S3)"
            )
        return argv

    def environment(self) -> dict[str, str]:
        values = self.values()
        env: dict[str, str] = {}
        if self.s3 is not None:
            env |= {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
            env["AWS_DEFAULT_REGION"] = self.s3.region
            env.update({k: fill(v, values) for k, v in self.spec.s3_env.items()})
        env.update({k: fill(v, values) for k, v in self.spec.env.items()})
        return env

    def readiness(self) -> Readiness:
        kind, path = self.spec.ready
        if kind == "http":
            return HttpOk(f"http://{self.address}{path}")
        return TcpOpen(LOCALHOST, self.port)  # weak: docker-proxy accepts before the server does

    # networks ------------------------------------------------------------------------------
    async def prepare(self) -> str:
        """Connect to the engine, sweep dead runs' leftovers, create the run's networks; the
        front bridge's gateway address (where the host's S3 proxy must listen for the relay)."""
        if self.client is None:
            from harness.env.docker_images import ImageError

            try:
                self.client = await asyncio.to_thread(_docker)
            except ImageError as exc:
                raise ContainerTargetError(f"container target {self.spec.image}: {exc}") from exc
            _live_runs.add(self.run_id)
            await asyncio.to_thread(sweep_dead_runs, self.client)
        if FRONT not in self.networks:
            front = await asyncio.to_thread(
                self.client.networks.create, self.name(FRONT), driver="bridge", labels=self.labels(FRONT)
            )
            self.networks[FRONT] = front
            await asyncio.to_thread(front.reload)
            self.gateway = str(front.attrs["IPAM"]["Config"][0]["Gateway"])
        assert self.gateway is not None
        return self.gateway

    async def _create(self) -> None:
        client = self.client
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.options_file.write_text(json.dumps(self.options, indent=2, sort_keys=True) + "\n")
        if not self.port:
            self.port = free_port()
        resources.register_port(self.port, f"container {self.name(PROCESS_NAME)}")
        values = self.values()
        volumes = {
            str(self.data_dir): {"bind": self.spec.data_path, "mode": "rw"},
            str(self.options_file): {"bind": OPTIONS_PATH, "mode": "ro"},
        }
        for host, inside in self.spec.volumes.items():
            volumes[fill(host, values)] = {"bind": fill(inside, values), "mode": "rw"}
        if self.s3 is not None:
            await self._start_relay()  # first: the server's environment names its address
        try:
            self.container = await asyncio.to_thread(
                client.containers.create,
                self.spec.image,
                command=self.command(),
                name=self.name(PROCESS_NAME),
                labels=self.labels(PROCESS_NAME),
                environment=self.environment(),
                ports={f"{self.spec.port}/tcp": (LOCALHOST, self.port)},
                volumes=volumes,
                init=True,
                user=f"{os.getuid()}:{os.getgid()}",
                network=self.networks[FRONT].name,
                detach=True,
            )
        except Exception as exc:
            raise ContainerTargetError(
                f"cannot create a container of image {self.spec.image}: {exc}"
            ) from exc
        if self.s3 is not None:
            await asyncio.to_thread(self.networks[BACK].connect, self.container)

    async def _start_relay(self) -> None:
        """The back network and the relay container that is the server's only way to S3."""
        assert self.s3 is not None and self.gateway is not None
        client = self.client
        back = await asyncio.to_thread(
            client.networks.create,
            self.name(BACK),
            driver="bridge",
            internal=True,
            labels=self.labels(BACK),
        )
        self.networks[BACK] = back
        upstream = self.s3.endpoint.split("://", 1)[-1].rstrip("/")
        host, _, port = upstream.rpartition(":")
        self.relay = await asyncio.to_thread(
            client.containers.create,
            self.relay_image or self.spec.image,
            command=["python3", "-c", RELAY_CODE, host, port, str(RELAY_PORT)],
            entrypoint=[],
            name=self.name("s3-relay"),
            labels=self.labels("s3-relay"),
            init=True,
            network=self.networks[FRONT].name,
            detach=True,
        )
        await asyncio.to_thread(back.connect, self.relay, aliases=[RELAY_ALIAS])
        await asyncio.to_thread(self.relay.start)
        await asyncio.to_thread(self.relay.reload)
        # by address, not by name: off the network the address is not routed (connect times out
        # fast), where a name would go to the host's resolvers and fail only after their timeouts
        self.relay_address = str(self.relay.attrs["NetworkSettings"]["Networks"][back.name]["IPAddress"])
        deadline = time.monotonic() + 30.0
        while b"relay ready" not in await asyncio.to_thread(self.relay.logs):
            await asyncio.to_thread(self.relay.reload)
            if self.relay.status == "exited" or time.monotonic() > deadline:
                logs = (await asyncio.to_thread(self.relay.logs)).decode(errors="replace")
                raise ContainerTargetError(f"the S3 relay container did not start: {logs[-600:]}")
            await asyncio.sleep(0.05)

    # lifecycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        await self.prepare()
        await self._create()
        await self._start_and_wait()

    async def _start_and_wait(self) -> None:
        process = self._process
        await process.start()

        async def died() -> str | None:
            if process.running:
                return None
            return f"the container exited with code {process.last_returncode}"

        try:
            await wait_until(self.readiness(), self.spec.ready_timeout_s, died)
        except NotReady as exc:
            with contextlib.suppress(Exception):
                await process.kill()
            raise ContainerTargetError(
                f"container of {self.spec.image} (port {self.port}): not ready: {exc}{self._tail()}"
            ) from exc

    def _tail(self) -> str:
        path = self.run_dir / f"{PROCESS_NAME}.stderr.log"
        try:
            lines = path.read_text(errors="replace").splitlines()[-20:]
        except OSError:
            return ""
        return f"\n--- stderr tail ({path}):\n" + "\n".join(lines) if lines else ""

    async def start_again(self) -> None:
        """Start the same container after a kill or SIGTERM: same port, same data dir."""
        if self._process.running:
            raise ContainerTargetError("the server container is still running; use restart()")
        await self._start_and_wait()

    async def restart(self) -> None:
        self._process.note_restart()
        await self._process.stop()
        await self._start_and_wait()

    def wipe_data(self) -> int:
        if self._process.running:
            raise ContainerTargetError(
                "the server container is still running; kill it before wiping its data"
            )
        removed = 0
        if self.data_dir.exists():
            for entry in self.data_dir.iterdir():
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
                removed += 1
        return removed

    async def disconnect(self, network: str = BACK) -> None:
        """Partition the server from a network of the run ("back": its object store)."""
        if network not in self.networks:
            raise ContainerTargetError(f"the run has no {network!r} network (does it use S3?)")
        await asyncio.to_thread(self.networks[network].disconnect, self.container, force=True)
        self.partitioned.add(network)

    async def connect(self, network: str = BACK) -> None:
        """Heal a partition made by disconnect()."""
        if network not in self.partitioned:
            return
        await asyncio.to_thread(self.networks[network].connect, self.container)
        self.partitioned.discard(network)

    async def stop(self) -> int | None:
        """Stop the server gracefully, keep its last logs, remove every labelled object."""
        code: int | None = None
        if self.container is not None:
            with contextlib.suppress(Exception):
                code = await self._process.stop()
        self.closing = True
        for thread in self._log_threads:
            await asyncio.to_thread(thread.join, 5.0)
        if self.client is not None:
            await asyncio.to_thread(remove_run, self.client, self.run_id)
            _live_runs.discard(self.run_id)
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.client.close)
            self.client = None
        self.container = self.relay = None
        self.networks.clear()
        resources.unregister_port(self.port)
        return code

    # logs ------------------------------------------------------------------------------------
    def follow_logs(self, since: float, start_number: int) -> None:
        """Copy this start's stdout and stderr into the run dir (as ManagedProcess's files, with
        the same start markers), each on a daemon thread that ends when the container stops."""
        self._log_threads = [t for t in self._log_threads if t.is_alive()]
        for stream in ("stdout", "stderr"):
            path = self.run_dir / f"{PROCESS_NAME}.{stream}.log"
            marker = f"---- {PROCESS_NAME} start #{start_number} at {since:.3f}: {self.spec.image}\n"
            with path.open("a") as out:
                out.write(marker)
            thread = threading.Thread(target=self._copy_logs, args=(stream, path, since), daemon=True)
            thread.start()
            self._log_threads.append(thread)

    def _copy_logs(self, stream: str, path: Path, since: float) -> None:
        container = self.container
        if container is None:
            return
        with contextlib.suppress(Exception), path.open("ab") as out:
            for chunk in container.logs(
                stream=True, follow=True, stdout=stream == "stdout", stderr=stream == "stderr", since=since
            ):
                out.write(chunk)
                out.flush()

    def describe(self) -> dict[str, Any]:
        return self.spec.to_json() | {
            "run_id": self.run_id,
            "port": self.port,
            "data_dir": str(self.data_dir),
            "container": self.name(PROCESS_NAME),
            "networks": sorted(self.networks),
            "s3_via": f"relay {RELAY_ALIAS}:{RELAY_PORT} -> {self.s3.endpoint}" if self.s3 else None,
        }
