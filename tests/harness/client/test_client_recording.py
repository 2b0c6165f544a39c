"""What the client records when the server misbehaves, against a scripted in-test server: seq
gaps and repeats, an answer that never comes (info), a close with its code, a silent stall."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from websockets.asyncio.server import ServerConnection, serve

from harness.client.sync_client import ClientConfig, ConnectionLost, SyncClient
from harness.history import EventKind, History, OpName

Script = Callable[[ServerConnection], Awaitable[None]]


async def _ack(ws: ServerConnection) -> dict[str, object]:
    hello = json.loads(await ws.recv())
    await ws.send(
        json.dumps(
            {
                "type": "handshake_ack",
                "databaseId": hello["databaseId"],
                "serverSiteId": "A" * 22,
                "connectionId": "c1",
                "protocolVersion": 1,
            }
        )
    )
    return dict(hello)


@pytest.fixture
async def scripted() -> AsyncIterator[Callable[[Script], Awaitable[str]]]:
    servers = []

    async def start(script: Script) -> str:
        server = await serve(script, "127.0.0.1", 0)
        servers.append(server)
        port = next(iter(server.sockets)).getsockname()[1]
        return f"ws://127.0.0.1:{port}/sync/ws"

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


def _client(url: str, history: History, **config: object) -> SyncClient:
    return SyncClient("c", ClientConfig(url, "db1", **config), history, random.Random(1))  # type: ignore[arg-type]


async def test_seq_gaps_and_repeats_are_noticed_per_connection(
    scripted: Callable[[Script], Awaitable[str]],
) -> None:
    async def script(ws: ServerConnection) -> None:
        await _ack(ws)
        for seq in (5, 6, 8, 8, 9):
            await ws.send(json.dumps({"type": "push_changes", "changeSets": [], "seq": seq}))
        await ws.send(json.dumps({"type": "pong"}))
        await ws.wait_closed()

    history = History()
    client = _client(await scripted(script), history)
    await client.connect()
    assert await client.wait_for_message(lambda p: p.get("type") == "pong", timeout_s=5.0) is not None
    await client.aclose()
    gaps = [
        (e.kind, e.data["expected"], e.data["got"])
        for e in history.events
        if e.kind in (EventKind.SEQ_GAP, EventKind.SEQ_REPEAT)
    ]
    assert gaps == [(EventKind.SEQ_GAP, 7, 8), (EventKind.SEQ_REPEAT, 9, 8)]


async def test_connection_dropped_before_the_answer_records_info_and_the_close_code(
    scripted: Callable[[Script], Awaitable[str]],
) -> None:
    async def script(ws: ServerConnection) -> None:
        await _ack(ws)
        await ws.recv()  # the apply: never answered
        await ws.close(1011, "boom")

    history = History()
    client = _client(await scripted(script), history)
    await client.connect()
    change_set = client.builder().set("t", [1], "a", 1).build()
    with pytest.raises(ConnectionLost):
        await client.apply([change_set])
    await client.aclose()
    outcome = [op for op in history.ops if op.f == OpName.APPLY][-1]
    assert (outcome.type, outcome.error) == ("info", "connection_closed")
    assert ("main", "t", "[1]", "a") in client.uncertain
    close = [e for e in history.events if e.kind == EventKind.CLOSE][-1]
    assert (close.data["code"], close.data["reason"], close.data["by_client"]) == (1011, "boom", False)


async def test_a_snapshot_that_stops_without_footer_or_error_is_recorded_as_stalled(
    scripted: Callable[[Script], Awaitable[str]],
) -> None:
    async def script(ws: ServerConnection) -> None:
        await _ack(ws)
        await ws.recv()
        header = {
            "type": "header",
            "siteId": "A" * 21 + "A",
            "hlc": "A" * 40,
            "snapshotFormat": 1,
            "tableCount": 1,
            "migrationCount": 0,
            "snapshotId": "s",
        }
        await ws.send(json.dumps({"type": "snapshot_chunk", "chunk": header}))
        await ws.wait_closed()

    history = History()
    client = _client(await scripted(script), history, chunk_timeout_s=0.3)
    await client.connect()
    outcome = await client.snapshot()
    await client.aclose()
    assert (
        outcome["ended"] == "stalled"
        and outcome["chunks"] == 1
        and outcome["checkpoint"]["snapshotId"] == "s"
    )
    recorded = [op for op in history.ops if op.f == OpName.SNAPSHOT][-1]
    assert (recorded.type, recorded.error) == ("info", "stalled")


async def test_paused_reading_holds_frames_until_resumed(
    scripted: Callable[[Script], Awaitable[str]],
) -> None:
    go = asyncio.Event()

    async def script(ws: ServerConnection) -> None:
        await _ack(ws)
        await go.wait()
        await ws.send(json.dumps({"type": "heartbeat", "ts": 1, "seq": 0, "clients": 1, "backend": "ok"}))
        await ws.wait_closed()

    history = History()
    client = _client(await scripted(script), history)
    await client.connect()
    client.pause_reading()
    go.set()
    assert await client.wait_for_message(lambda p: p.get("type") == "heartbeat", timeout_s=0.3) is None
    client.resume_reading()
    assert await client.wait_for_message(lambda p: p.get("type") == "heartbeat", timeout_s=5.0) is not None
    await client.aclose()
    kinds = [e.kind for e in history.events]
    assert kinds.index(EventKind.READING_PAUSED) < kinds.index(EventKind.READING_RESUMED)


async def test_writer_reapplies_a_write_of_unknown_outcome_after_reconnecting(
    scripted: Callable[[Script], Awaitable[str]],
) -> None:
    from harness.client.backoff import Backoff
    from harness.client.behaviours import Writer

    connections = 0

    async def script(ws: ServerConnection) -> None:
        nonlocal connections
        connections += 1
        await _ack(ws)
        request = json.loads(await ws.recv())
        if connections == 1:
            await ws.close(1011, "lost it")  # the first apply's outcome stays unknown
            return
        count = sum(len(cs["changes"]) for cs in request["changes"])
        result = {
            "type": "apply_result",
            "requestId": request["requestId"],
            "applied": count,
            "skipped": 0,
            "conflicts": 0,
            "transactions": 1,
        }
        await ws.send(json.dumps(result))
        await ws.wait_closed()

    history = History()
    client = _client(await scripted(script), history, backoff=Backoff(base_s=0.01))
    writer = Writer(
        client=client,
        rng=random.Random(4),
        count=1,
        changes_per_set=1,
        delete_share=0.0,
        duration_s=10,
        final_catch_up=False,
    )
    assert await writer.run() == "done"
    applies = [op for op in history.ops if op.f == OpName.APPLY and op.type != "invoke"]
    assert [op.type for op in applies] == ["info", "ok"]
    first, second = [op.value for op in history.ops if op.f == OpName.APPLY and op.type == "invoke"]
    assert first["changeSets"] == second["changeSets"]  # the same change set, applied again
    assert client.uncertain == set() and len(client.replica.visible()) == 1
