"""Test helpers for the S3 persistence tests: moto's server as a real process over HTTP, a small
TCP proxy in front of it that can cut the store off (refuse or black-hole connections) and counts
every connection the coordinator opens, so "not hammered" is measured, not assumed; wire-form
sample data."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config as BotoConfig

from coordinator.storage.persistence import BackendState
from coordinator.storage.s3_store import S3Client

STARTUP_DEADLINE_S = 30.0


def free_port() -> int:
    """A port nobody listens on right now (the OS picks it); the caller must cope with losing it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class MotoServer:
    """`python -m moto.server` on an ephemeral port, killed on stop whatever happened."""

    def __init__(self, extra_env: dict[str, str] | None = None) -> None:
        self._extra_env = extra_env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, log_path: Path) -> None:
        env = dict(os.environ, **self._extra_env)
        last_error = "not started"
        for _ in range(3):  # the picked port can be taken before moto binds it: try another
            self.port = free_port()
            with log_path.open("ab") as log:
                self.proc = subprocess.Popen(
                    [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                )
            deadline = time.monotonic() + STARTUP_DEADLINE_S
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    last_error = f"moto exited with {self.proc.returncode}"
                    break
                if _listening(self.port):
                    return
                time.sleep(0.05)  # polling a child process's readiness, with a deadline
            else:
                last_error = f"moto not listening after {STARTUP_DEADLINE_S}s"
            self.stop()
        raise RuntimeError(f"could not start moto server: {last_error}; log in {log_path}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None


def s3_admin(endpoint: str) -> Any:
    """A plain boto3 client for the test's own reads and set-up (not the code under test)."""
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        config=BotoConfig(s3={"addressing_style": "path"}, retries={"mode": "standard", "max_attempts": 3}),
    )


class FaultProxy:
    """TCP proxy to moto. Modes: `pass` (forward), `refuse` (accept, then reset at once: the
    server is down), `blackhole` (accept and never answer: the server hangs), `slowdown` (answer
    every request with S3's 503 SlowDown: the server throttles). Counts accepted
    connections per mode; botocore opens a new connection for every attempt after a failure."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.mode = "pass"
        self.accepted: Counter[str] = Counter()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def upstream(self) -> str:
        """moto itself: the test's own reads go there. A blocking boto3 call through this proxy
        from the test's event loop would starve the proxy, which runs on that same loop."""
        return f"http://127.0.0.1:{self.upstream_port}"

    @property
    def total(self) -> int:
        return sum(self.accepted.values())

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    def set_mode(self, mode: str) -> None:
        """Switch, dropping every open connection so that pooled keep-alive ones see it too."""
        assert mode in {"pass", "refuse", "blackhole", "slowdown"}
        self.mode = mode
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def close(self) -> None:
        self.set_mode("refuse")
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        mode = self.mode
        self.accepted[mode] += 1
        if mode == "refuse":
            writer.transport.abort()
            return
        if mode == "slowdown":
            await _slow_down_response(reader, writer)
            return
        self._writers.add(writer)
        try:
            if mode == "blackhole":
                while await reader.read(65536):
                    pass
                return
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
            self._writers.add(up_writer)
            try:
                await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
            finally:
                self._writers.discard(up_writer)
                up_writer.transport.abort()
        except (ConnectionError, OSError):
            pass
        finally:
            self._writers.discard(writer)
            writer.transport.abort()


_SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)


async def _slow_down_response(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answer the request head with S3's 503 SlowDown, without reading the body, and hang up."""
    try:
        await reader.readuntil(b"\r\n\r\n")
        head = (
            b"HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\n"
            + f"Content-Length: {len(_SLOW_DOWN)}\r\nConnection: close\r\n\r\n".encode()
        )
        writer.write(head + _SLOW_DOWN)
        await writer.drain()
        writer.write_eof()
        # Read (and drop) whatever body the client still sends until it hangs up: closing with
        # unread data would reset the connection and lose the answer.
        async with asyncio.timeout(5.0):
            while await reader.read(65536):
                pass
    except (ConnectionError, OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        pass
    finally:
        writer.transport.abort()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(ConnectionError, OSError, RuntimeError):
            writer.write_eof()


class Transitions:
    """Collects `on_backend_state` calls and lets a test wait for a given new state."""

    def __init__(self) -> None:
        self.seen: list[tuple[BackendState, BackendState, str]] = []
        self._changed = asyncio.Event()

    def __call__(self, old: BackendState, new: BackendState, reason: str) -> None:
        self.seen.append((old, new, reason))
        self._changed.set()

    async def wait_for(self, state: BackendState, timeout_s: float, after: int = 0) -> float:
        """Wait until a transition into `state` beyond index `after`; returns the seconds waited."""
        started = time.monotonic()
        async with asyncio.timeout(timeout_s):
            while not any(new is state for _, new, _ in self.seen[after:]):
                self._changed.clear()
                await self._changed.wait()
        return time.monotonic() - started


def list_keys(endpoint: str, bucket: str, prefix: str = "") -> list[str]:
    client = s3_admin(endpoint)
    keys: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys.extend(item["Key"] for item in page.get("Contents", []))
    return keys


def get_bytes(endpoint: str, bucket: str, key: str) -> bytes:
    data = s3_admin(endpoint).get_object(Bucket=bucket, Key=key)["Body"].read()
    assert isinstance(data, bytes)
    return data


SAMPLE_SITE = "AAECAwQFBgcICQoLDA0ODw"


def change_set(i: int) -> dict[str, Any]:
    """A wire-form ChangeSet (PROTOCOL.md section 1); the store treats it as opaque JSON."""
    hlc = f"AAABk{i:06d}AAAAAQIDBAUGBwgJCgsMDQ4PAAAAAQ=="
    return {
        "siteId": SAMPLE_SITE,
        "transactionId": f"{1_763_000_000_000 + i}:0:{SAMPLE_SITE}",
        "hlc": hlc,
        "changes": [
            {
                "type": "column",
                "schema": "main",
                "table": "items",
                "pk": [i],
                "hlc": hlc,
                "column": "body",
                "value": {"__bin": "AQID"} if i % 5 == 0 else f"text-{i}",
            }
        ],
        "schemaMigrations": [],
    }


def snapshot_chunks(snapshot_id: str, rows: int) -> list[dict[str, Any]]:
    """Wire-form snapshot chunks, header first, footer last."""
    entries = [{"column": "body", "hlc": "AAAB", "value": f"v{i}", "pk": [i]} for i in range(rows)]
    return [
        {
            "type": "header",
            "siteId": SAMPLE_SITE,
            "hlc": "AAAB",
            "snapshotFormat": 1,
            "tableCount": 1,
            "migrationCount": 0,
            "snapshotId": snapshot_id,
        },
        {"type": "table-start", "schema": "main", "table": "items", "estimatedEntries": rows},
        {"type": "column-versions", "schema": "main", "table": "items", "entries": entries},
        {"type": "table-end", "schema": "main", "table": "items", "entriesWritten": rows},
        {
            "type": "footer",
            "snapshotId": snapshot_id,
            "totalTables": 1,
            "totalEntries": rows,
            "totalMigrations": 0,
        },
    ]


class RecordingS3Client(S3Client):
    """The real client (real HTTP to moto), noting the keys of the uploads that succeeded, in the
    order they completed: what the per-database upload order is checked against."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.uploaded: list[str] = []

    def put_object(self, key: str, body: bytes, content_type: str) -> None:
        super().put_object(key, body, content_type)
        self.uploaded.append(key)
