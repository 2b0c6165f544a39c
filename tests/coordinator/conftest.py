"""Fixtures that run the coordinator as a real process on an ephemeral port, and a thin
WebSocket client that skips the messages a test does not ask for."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from tests.coordinator.wire import new_site_id

START_TIMEOUT_S = 20.0
ADMIN = "admin-secret"


class CoordinatorProcess:
    def __init__(self, args: list[str], data_dir: Path) -> None:
        self.args = args
        self.data_dir = data_dir
        self.port_file = data_dir / "port.json"
        self.stderr_path = data_dir / "stderr.log"
        self.proc: asyncio.subprocess.Process | None = None
        self.port = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}/sync"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/sync/ws"

    async def start(self, port: int = 0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port_file.unlink(missing_ok=True)
        stderr = open(self.stderr_path, "ab")
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "coordinator.cli",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--data-dir",
            str(self.data_dir),
            "--port-file",
            str(self.port_file),
            "--admin-token",
            ADMIN,
            "--log-format",
            "json",
            *self.args,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,
        )
        stderr.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self.port_file.exists():
            if self.proc.returncode is not None or time.monotonic() > deadline:
                raise RuntimeError(f"coordinator did not start: {self.stderr_path.read_text()[-2000:]}")
            await asyncio.sleep(0.02)  # polling the port file with a deadline
        self.port = json.loads(self.port_file.read_text())["port"]

    async def terminate(self, timeout: float = 15.0) -> int:
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            os.killpg(self.proc.pid, signal.SIGKILL)
            await self.proc.wait()
            raise

    async def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            await self.proc.wait()

    def log_events(self) -> list[dict[str, Any]]:
        events = []
        for line in self.stderr_path.read_text().splitlines():
            try:
                events.append(json.loads(line))
            except ValueError:
                events.append({"level": "raw", "event": line})
        return events

    def http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.base, timeout=10.0)


class Ws:
    """A test client: `expect(type)` returns the next message of that type, skipping
    heartbeats and presence unless asked for."""

    SKIP = frozenset({"heartbeat", "presence", "presence_delta", "push_changes"})

    def __init__(self, conn: ClientConnection) -> None:
        self.conn = conn
        self.seen: list[dict[str, Any]] = []

    async def send(self, message: dict[str, Any] | str) -> None:
        await self.conn.send(message if isinstance(message, str) else orjson.dumps(message).decode())

    async def next(self, timeout: float = 10.0) -> dict[str, Any]:
        raw = await asyncio.wait_for(self.conn.recv(), timeout)
        message = orjson.loads(raw)
        self.seen.append(message)
        return message  # type: ignore[no-any-return]

    async def expect(self, kind: str, timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            message = await self.next(max(0.01, deadline - time.monotonic()))
            if message["type"] == kind:
                return message
            if message["type"] in self.SKIP:  # never the kind asked for (checked above)
                continue
            raise AssertionError(f"expected {kind}, got {message}")

    async def handshake(
        self, database_id: str = "db1", site_id: str | None = None, **extra: Any
    ) -> dict[str, Any]:
        self.site_id = site_id or new_site_id()
        await self.send(
            {
                "type": "handshake",
                "databaseId": database_id,
                "siteId": self.site_id,
                "protocolVersion": 1,
                **extra,
            }
        )
        return await self.expect("handshake_ack")

    async def closed(self, timeout: float = 10.0) -> tuple[int | None, list[dict[str, Any]]]:
        """Read until the server closes; returns the close code and what arrived before it."""
        got: list[dict[str, Any]] = []
        try:
            while True:
                got.append(await self.next(timeout))
        except websockets.ConnectionClosed as exc:
            return (exc.rcvd.code if exc.rcvd else None), got


@pytest.fixture
async def start_coordinator() -> AsyncIterator[Any]:
    """Factory: `await start_coordinator("--token", "t")` -> a running CoordinatorProcess."""
    procs: list[CoordinatorProcess] = []
    dirs: list[tempfile.TemporaryDirectory[str]] = []

    async def start(*args: str, data_dir: Path | None = None) -> CoordinatorProcess:
        if data_dir is None:
            tmp = tempfile.TemporaryDirectory(prefix="coord-test-")
            dirs.append(tmp)
            data_dir = Path(tmp.name)
        proc = CoordinatorProcess(list(args), data_dir)
        procs.append(proc)
        await proc.start()
        return proc

    try:
        yield start
    finally:
        for proc in procs:
            await proc.kill()
        for tmp in dirs:
            tmp.cleanup()


@pytest.fixture
async def coordinator(start_coordinator: Any) -> CoordinatorProcess:
    return await start_coordinator("--heartbeat-interval-ms", "200")  # type: ignore[no-any-return]


@pytest.fixture
async def connect(coordinator: CoordinatorProcess) -> AsyncIterator[Any]:
    """Factory of WebSocket clients to the default coordinator (closed at the end)."""
    conns: list[ClientConnection] = []

    async def open_ws(target: CoordinatorProcess | None = None, **kwargs: Any) -> Ws:
        conn = await websockets.connect((target or coordinator).ws_url, max_size=None, **kwargs)
        conns.append(conn)
        return Ws(conn)

    try:
        yield open_ws
    finally:
        for conn in conns:
            await conn.close()


class RawWs:
    """A WebSocket client that reads only when told to (websockets' sansio protocol over a raw
    socket), to play a client that stops reading: unlike the asyncio client, nothing reads
    the socket in the background."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, protocol: Any) -> None:
        self.reader, self.writer, self.protocol = reader, writer, protocol

    @classmethod
    async def connect(cls, url: str, rcvbuf: int = 4096) -> RawWs:
        from websockets.client import ClientProtocol
        from websockets.uri import parse_uri

        uri = parse_uri(url)
        sock = __import__("socket").socket()
        sock.setsockopt(__import__("socket").SOL_SOCKET, __import__("socket").SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (uri.host, uri.port))
        reader, writer = await asyncio.open_connection(sock=sock, limit=rcvbuf)
        protocol = ClientProtocol(uri, max_size=None)
        protocol.send_request(protocol.connect())
        raw = cls(reader, writer, protocol)
        await raw._flush()
        while protocol.handshake_exc is None and protocol.state.name == "CONNECTING":
            protocol.receive_data(await reader.read(65536))
        assert protocol.handshake_exc is None, protocol.handshake_exc
        return raw

    async def _flush(self) -> None:
        for data in self.protocol.data_to_send():
            if data:
                self.writer.write(data)
        await self.writer.drain()

    async def send(self, message: dict[str, Any]) -> None:
        self.protocol.send_text(orjson.dumps(message))
        await self._flush()

    async def read_until_closed(self, timeout: float = 20.0) -> tuple[int | None, list[dict[str, Any]]]:
        """Read everything the server sent until it closes; returns (close code, messages)."""
        from websockets.frames import Opcode

        got: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            data = await asyncio.wait_for(self.reader.read(1 << 20), max(0.01, deadline - time.monotonic()))
            if not data:
                break
            self.protocol.receive_data(data)
            for event in self.protocol.events_received():
                if getattr(event, "opcode", None) is Opcode.TEXT:
                    got.append(orjson.loads(event.data))
            if self.protocol.close_rcvd is not None:
                return self.protocol.close_rcvd.code, got
        return None, got

    async def recv_one(self, timeout: float = 10.0) -> dict[str, Any]:
        from websockets.frames import Opcode

        deadline = time.monotonic() + timeout
        while True:
            for event in self.protocol.events_received():
                if getattr(event, "opcode", None) is Opcode.TEXT:
                    return orjson.loads(event.data)  # type: ignore[no-any-return]
            data = await asyncio.wait_for(self.reader.read(65536), max(0.01, deadline - time.monotonic()))
            self.protocol.receive_data(data)

    def close(self) -> None:
        self.writer.close()


# A bucket on a port where nothing listens: the S3 persistence exists, every call fails fast.
S3_OPTIONS: dict[str, Any] = {
    "s3_bucket": "bucket",
    "s3_endpoint": "http://127.0.0.1:9",
    "s3_region": "us-east-1",
}


@pytest.fixture
def offline_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Test credentials and no AWS config of the machine's: boto3 never looks elsewhere."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))


async def swaps_applied(data_dir: Path, bugs: list[str]) -> set[str]:
    """The bugs whose swap sites a service with S3 persistence consulted and applied: a catalogued
    bug switched on must change something at construction."""
    from coordinator.clock import VirtualClock
    from coordinator.config import CoordinatorConfig
    from coordinator.service.coordinator import CoordinatorService
    from coordinator.service.object_store import ObjectStoreBridge

    service = CoordinatorService(
        CoordinatorConfig(data_dir=str(data_dir), bugs=bugs, **S3_OPTIONS), VirtualClock()
    )
    bridge = ObjectStoreBridge(service, service.config, service.clock)
    try:
        return set(service.bugs.applied)
    finally:
        await bridge.persistence.close()
