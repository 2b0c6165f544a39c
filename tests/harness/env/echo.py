"""An asyncio TCP echo server on 127.0.0.1 (upstream of proxies in tests), and small helpers
that measure what a connection through a proxy does."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable


class EchoServer:
    """Echoes every byte back; `sink=True` reads and discards instead, `blob` sends bytes on
    connect and closes."""

    def __init__(self, blob: bytes | None = None) -> None:
        self.blob = blob
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if self.blob is not None:
                writer.write(self.blob)
                await writer.drain()
                return
            for _ in range(1_000_000):
                data = await reader.read(65536)
                if not data:
                    return
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            return
        finally:
            writer.close()

    def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.ensure_future(self._handle(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def __aenter__(self) -> EchoServer:
        self._server = await asyncio.start_server(self._on_connect, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5.0)


@contextlib.asynccontextmanager
async def connect(address: str) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    host, _, port = address.rpartition(":")
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), 5.0)
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer.wait_closed(), 2.0)


async def round_trip_s(address: str, payload: bytes = b"ping\n") -> float:
    """Seconds for `payload` to go through `address` and come back whole."""
    async with connect(address) as (reader, writer):
        started = time.monotonic()
        writer.write(payload)
        await writer.drain()
        await asyncio.wait_for(reader.readexactly(len(payload)), 30.0)
        return time.monotonic() - started


async def read_all(reader: asyncio.StreamReader, timeout_s: float = 30.0) -> bytes:
    """Everything until EOF (with a deadline)."""
    chunks = []
    deadline = time.monotonic() + timeout_s
    for _ in range(100_000):
        if time.monotonic() >= deadline:
            break
        chunk = await asyncio.wait_for(reader.read(65536), deadline - time.monotonic())
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


async def poll_until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    for _ in range(int(timeout_s / 0.02) + 2):
        if condition():
            return
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.02)
    raise AssertionError(f"condition not met within {timeout_s}s")
