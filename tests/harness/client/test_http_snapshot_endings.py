"""How the HTTP snapshot reader classifies the end of a stream, against a raw scripted HTTP
server: footer (complete), error line (error), a body that ends cleanly without either (eof,
truncated), a connection cut mid-body (disconnected)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from harness.client.http_api import HttpApi
from harness.client.recorder import Recorder
from harness.history import History, OpName

HEADER = {
    "type": "header",
    "siteId": "A" * 22,
    "hlc": "A" * 40,
    "snapshotFormat": 1,
    "tableCount": 0,
    "migrationCount": 0,
    "snapshotId": "s",
}
FOOTER = {"type": "footer", "snapshotId": "s", "totalTables": 0, "totalEntries": 0, "totalMigrations": 0}


def _chunk(line: dict[str, object]) -> bytes:
    data = (json.dumps(line) + "\n").encode()
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


Responder = Callable[[asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture
async def http_server() -> AsyncIterator[Callable[[Responder], Awaitable[str]]]:
    servers: list[asyncio.Server] = []

    async def start(respond: Responder) -> str:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/x-ndjson\r\ntransfer-encoding: chunked\r\n\r\n"
            )
            await respond(writer)
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        servers.append(server)
        port = server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/sync"

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


async def _snapshot(base: str) -> tuple[dict[str, object], History]:
    history = History()
    api = HttpApi(base, Recorder(history, "c"), chunk_timeout_s=2.0)
    try:
        outcome, _ = await api.snapshot("db1")
    finally:
        await api.aclose()
    return outcome, history


async def test_footer_ends_a_complete_stream(http_server: Callable[[Responder], Awaitable[str]]) -> None:
    async def respond(writer: asyncio.StreamWriter) -> None:
        writer.write(_chunk(HEADER) + _chunk(FOOTER) + b"0\r\n\r\n")

    outcome, history = await _snapshot(await http_server(respond))
    assert outcome["ended"] == "complete" and outcome["problems"] == []
    assert [op.type for op in history.ops if op.f == OpName.HTTP_SNAPSHOT] == ["invoke", "ok"]


async def test_error_line_ends_the_stream_with_its_code(
    http_server: Callable[[Responder], Awaitable[str]],
) -> None:
    async def respond(writer: asyncio.StreamWriter) -> None:
        writer.write(
            _chunk(HEADER) + _chunk({"error": "disk on fire", "code": "SNAPSHOT_ERROR"}) + b"0\r\n\r\n"
        )

    outcome, history = await _snapshot(await http_server(respond))
    assert outcome["ended"] == "error" and outcome["code"] == "SNAPSHOT_ERROR"
    assert history.ops[-1].type == "fail" and history.ops[-1].error == "SNAPSHOT_ERROR"


async def test_body_ending_cleanly_without_footer_is_truncated(
    http_server: Callable[[Responder], Awaitable[str]],
) -> None:
    async def respond(writer: asyncio.StreamWriter) -> None:
        writer.write(_chunk(HEADER) + b"0\r\n\r\n")

    outcome, history = await _snapshot(await http_server(respond))
    assert outcome["ended"] == "eof" and outcome["chunks"] == 1
    assert (history.ops[-1].type, history.ops[-1].error) == ("info", "eof")


async def test_connection_cut_mid_body_is_disconnected(
    http_server: Callable[[Responder], Awaitable[str]],
) -> None:
    async def respond(writer: asyncio.StreamWriter) -> None:
        writer.write(_chunk(HEADER) + b'40\r\n{"type": "tab')

    outcome, _ = await _snapshot(await http_server(respond))
    assert outcome["ended"] == "disconnected"
