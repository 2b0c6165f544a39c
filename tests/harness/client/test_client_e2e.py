"""The instrumented client against the real coordinator (started as a process, never imported)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from harness.client.sync_client import ServerError, SyncClient
from harness.history import EventKind, History, OpName
from tests.harness.client.coordinator_process import coordinator


async def test_a_write_reaches_the_other_client_as_a_push(
    make_client: Callable[..., SyncClient], history: History
) -> None:
    writer, listener = make_client("writer"), make_client("listener")
    await writer.connect()
    await listener.connect()
    change_set = (
        writer.builder().set("items", [1], "name", "a").set("items", [1], "blob", b"\x00\xff").build()
    )
    result = await writer.apply([change_set])
    assert result["applied"] == 2
    push = await listener.wait_for_message(lambda p: p.get("type") == "push_changes", timeout_s=5.0)
    assert push is not None
    assert push["changeSets"][0]["transactionId"] == change_set.transaction_id
    assert listener.replica.visible() == writer.replica.visible()
    kinds = [(op.f, op.type) for op in history.ops if op.process == "writer"]
    assert kinds == [
        (OpName.HANDSHAKE, "invoke"),
        (OpName.HANDSHAKE, "ok"),
        (OpName.APPLY, "invoke"),
        (OpName.APPLY, "ok"),
    ]
    assert any(e.kind == EventKind.SESSION and e.process == "listener" for e in history.events)


async def test_get_changes_pages_until_empty_at_transaction_boundaries(
    tmp_path: Path, history: History
) -> None:
    import random

    from harness.client.sync_client import ClientConfig

    with coordinator(tmp_path, "--batch-size", "3") as server:
        writer = SyncClient("w", ClientConfig(server.ws_url, "paged"), history, random.Random(1))
        reader = SyncClient("r", ClientConfig(server.ws_url, "paged"), history, random.Random(2))
        try:
            await writer.connect()
            sets = [writer.builder().set("t", [i], "a", i).set("t", [i], "b", -i).build() for i in range(7)]
            for change_set in sets:
                await writer.apply([change_set])
            await reader.connect()
            pulled = await reader.pull()
        finally:
            await writer.aclose()
            await reader.aclose()
    assert [cs["transactionId"] for cs in pulled] == [cs.transaction_id for cs in sets]
    pages = [op for op in history.ops if op.process == "r" and op.f == OpName.GET_CHANGES and op.type == "ok"]
    batches = [[len(cs["changes"]) for cs in op.value["changeSets"]] for op in pages]
    assert batches[-1] == [] and all(batches[:-1]), batches  # pages until an empty one
    # Cut only at transaction boundaries: a batch is filled below batchSize before its last set.
    # (The coordinator lets that last set take a batch past batchSize; PROTOCOL.md's "at most
    # batchSize" is read here as Quereus does.)
    assert all(sum(sizes[:-1]) < 3 for sizes in batches[:-1]), batches
    assert reader.replica.visible() == writer.replica.visible()


async def test_ws_and_http_snapshots_complete_and_a_cut_snapshot_resumes(
    make_client: Callable[..., SyncClient],
) -> None:
    writer, snap = make_client("writer"), make_client("snap")
    await writer.connect()
    for i in range(5):
        await writer.apply([writer.builder().set("items", [i], "qty", 2**60 + i).build()])
    await writer.apply([writer.builder().delete("items", [0]).build()])
    await snap.connect()
    ws = await snap.snapshot()
    assert ws["ended"] == "complete" and ws["problems"] == [] and ws["tombstones"] == 1
    http = await snap.http_snapshot()
    assert (
        http["ended"] == "complete"
        and http["problems"] == []
        and http["footer"]["totalEntries"] == ws["entries"]
    )
    cut = await snap.snapshot(cut_after_chunks=2)
    assert cut["ended"] == "cut" and cut["checkpoint"]["snapshotId"] == cut["snapshotId"]
    await snap.connect()
    resumed = await snap.resume_snapshot(cut["checkpoint"])
    assert resumed["ended"] == "complete" and resumed["problems"] == []
    assert snap.replica.visible() == writer.replica.visible()


async def test_bad_input_gets_an_error_and_the_session_survives(
    make_client: Callable[..., SyncClient],
) -> None:
    client = make_client("prober")
    await client.connect()
    answer = await client.send_raw({"type": "get_changes", "sinceHLC": "%%%"}, "bad_input", "get_changes")
    assert answer["type"] == "error" and answer["fatal"] is False
    not_json = await client.send_raw("{oops", "not_json")
    assert not_json["code"] == "MESSAGE_ERROR"
    await client.ping()
    assert client.connected


async def test_bad_token_is_refused_and_recorded_as_a_failed_handshake(
    tmp_path: Path, history: History
) -> None:
    import random

    from harness.client.sync_client import ClientConfig

    with coordinator(tmp_path, "--token", "good:db1") as server:
        client = SyncClient("c", ClientConfig(server.ws_url, "db1", token="bad"), history, random.Random(3))
        try:
            with pytest.raises(ServerError) as refused:
                await client.connect_with_retry()
        finally:
            await client.aclose()
    assert refused.value.code == "AUTH_FAILED"
    fails = [op for op in history.ops if op.f == OpName.HANDSHAKE and op.type == "fail"]
    assert len(fails) == 1  # a refusal retrying cannot fix is not retried
    closes = [e for e in history.events if e.kind == EventKind.CLOSE]
    assert closes and closes[-1].data["code"] == 4001
    assert all("bad" not in str(m.payload.get("token", "")) for m in history.messages)


async def test_heartbeats_and_presence_arrive_in_the_background(
    make_client: Callable[..., SyncClient],
) -> None:
    a, b = make_client("a"), make_client("b")
    await a.connect()
    await b.connect()
    beat = await a.wait_for_message(lambda p: p.get("type") == "heartbeat", timeout_s=5.0)
    assert beat is not None and beat["backend"] in ("ok", "degraded")
    # Presence comes as a full list or as deltas (PROTOCOL.md 3.2): judge the client's view of both.
    mine, theirs = a.handshake_ack["connectionId"], b.handshake_ack["connectionId"]  # type: ignore[index]
    both = await a.wait_for_message(
        lambda p: (
            p.get("type") in ("presence", "presence_delta") and a.presence.connection_ids() == {mine, theirs}
        ),
        timeout_s=5.0,
    )
    assert both is not None
    await b.close()
    alone = await a.wait_for_message(
        lambda p: p.get("type") in ("presence", "presence_delta") and a.presence.connection_ids() == {mine},
        timeout_s=5.0,
    )
    assert alone is not None


async def test_reconnect_backs_off_and_gives_up_when_nothing_listens(history: History) -> None:
    import random
    import socket

    from harness.client.backoff import Backoff
    from harness.client.sync_client import ClientConfig, ConnectionLost

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = ClientConfig(
        f"ws://127.0.0.1:{port}/sync/ws", "db1", backoff=Backoff(base_s=0.01, max_attempts=4)
    )
    client = SyncClient("lonely", config, history, random.Random(5))
    with pytest.raises(ConnectionLost):
        await client.connect_with_retry()
    await client.aclose()
    kinds = [e.kind for e in history.events if e.process == "lonely"]
    assert kinds.count(EventKind.CONNECT_FAILED) == 4
    assert kinds.count(EventKind.RECONNECT) == 3 and kinds[-1] == EventKind.RECONNECT_GAVE_UP
