"""S3 persistence through the coordinator process, against moto's server over real HTTP (with
a TCP fault proxy in front of it): the client path, the outage announcements, durability."""

from __future__ import annotations

import asyncio
import gzip
import json
import time
from pathlib import Path
from typing import Any

from tests.coordinator.s3.s3_support import FaultProxy, MotoServer, get_bytes, list_keys
from tests.coordinator.wire import write

ADMIN = {"Authorization": "admin-secret"}


async def _poll(predicate: Any, timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s")
        await asyncio.sleep(0.05)  # polling a condition with a deadline


def _s3_args(bucket: str, endpoint: str) -> list[str]:
    return [
        "--s3-bucket",
        bucket,
        "--s3-endpoint",
        endpoint,
        "--s3-region",
        "us-east-1",
        "--s3-prefix",
        "t/",
        "--heartbeat-interval-ms",
        "200",
    ]


def _batch_changes(moto: MotoServer, bucket: str) -> list[str]:
    hlcs = []
    for key in list_keys(moto.endpoint, bucket, "t/db1/batches/"):
        batch = json.loads(get_bytes(moto.endpoint, bucket, key))
        hlcs += [c["hlc"] for cs in batch["changes"] for c in cs["changes"]]
    return hlcs


async def _apply_many(ws: Any, n: int, start: int = 0) -> list[str]:
    hlcs = []
    for i in range(start, start + n):
        cs = write(ws.site_id, "t", i, "x", i, 1000 + i)
        await ws.send({"type": "apply_changes", "changes": [cs]})
        assert (await ws.expect("apply_result"))["applied"] == 1
        hlcs.append(cs["changes"][0]["hlc"])
    return hlcs


async def test_every_applied_change_reaches_s3_and_restores_onto_an_empty_disk(
    start_coordinator: Any, connect: Any, moto_server: MotoServer, bucket: str, tmp_path: Path
) -> None:
    coord = await start_coordinator(*_s3_args(bucket, moto_server.endpoint))
    ws = await connect(coord)
    await ws.handshake("db1")
    applied = await _apply_many(ws, 20)
    await _poll(lambda: sorted(_batch_changes(moto_server, bucket)) == sorted(applied), what="batches in S3")
    key = list_keys(moto_server.endpoint, bucket, "t/db1/batches/")[0]
    assert key.endswith(".json") and "_" in key.rsplit("/", 1)[1]
    assert await coord.terminate() == 0
    fresh = tmp_path / "empty-disk"
    restored = await start_coordinator(*_s3_args(bucket, moto_server.endpoint), data_dir=fresh)
    async with restored.http() as http:
        sets = (await http.get("/db1/changes")).json()["data"]["changes"]
    assert sorted(c["hlc"] for cs in sets for c in cs["changes"]) == sorted(applied)


async def test_outage_is_announced_not_hammered_and_loses_nothing(
    start_coordinator: Any, connect: Any, moto_server: MotoServer, bucket: str
) -> None:
    proxy = FaultProxy(moto_server.port)
    await proxy.start()
    try:
        coord = await start_coordinator(*_s3_args(bucket, proxy.endpoint))
        ws = await connect(coord)
        ws.SKIP = frozenset({"presence", "presence_delta", "push_changes"})
        await ws.handshake("db1")
        before = await _apply_many(ws, 5)
        await _poll(lambda: len(_batch_changes(moto_server, bucket)) == 5, what="first batches in S3")
        proxy.set_mode("refuse")
        outage_start = time.monotonic()
        slowest = 0.0
        during: list[str] = []
        notice = None
        beats: list[dict[str, Any]] = []
        for i in range(40):
            cs = write(ws.site_id, "t", 100 + i, "x", i, 5000 + i)
            sent = time.monotonic()
            await ws.send({"type": "apply_changes", "changes": [cs]})
            while True:
                message = await ws.next()
                if message["type"] == "heartbeat":
                    beats.append(message)
                elif message["type"] == "notice":
                    notice = notice or (message, time.monotonic() - outage_start)
                elif message["type"] == "apply_result":
                    break
            slowest = max(slowest, time.monotonic() - sent)
            during.append(cs["changes"][0]["hlc"])
            await asyncio.sleep(0.05)  # pacing the writer over the outage, not synchronisation
        while notice is None or not any(b["backend"] == "degraded" for b in beats):
            message = await ws.next(timeout=30)
            if message["type"] == "notice":
                notice = notice or (message, time.monotonic() - outage_start)
            if message["type"] == "heartbeat":
                beats.append(message)
        assert slowest < 1.0, f"an apply took {slowest:.2f} s during the outage: the client path waited on S3"
        assert notice[0]["code"] == "BACKEND_UNAVAILABLE" and notice[1] < 15.0
        outage_s = time.monotonic() - outage_start
        attempts = proxy.accepted["refuse"]
        assert attempts <= 10 + outage_s, (
            f"{attempts} connections in {outage_s:.1f} s: the object store was hammered"
        )
        proxy.set_mode("pass")
        recovered = None
        while recovered is None:
            message = await ws.next(timeout=30)
            if message["type"] == "notice" and message["code"] == "BACKEND_RECOVERED":
                recovered = message
        await _poll(
            lambda: sorted(_batch_changes(moto_server, bucket)) == sorted(before + during),
            what="every batch in S3 after the outage",
        )
    finally:
        await proxy.close()


async def test_shutdown_during_outage_loses_nothing_after_restart(
    start_coordinator: Any, connect: Any, moto_server: MotoServer, bucket: str
) -> None:
    proxy = FaultProxy(moto_server.port)
    await proxy.start()
    try:
        coord = await start_coordinator(*_s3_args(bucket, proxy.endpoint), "--drain-timeout-ms", "1500")
        ws = await connect(coord)
        await ws.handshake("db1")
        proxy.set_mode("refuse")
        applied = await _apply_many(ws, 10)
        assert await coord.terminate() == 0
        assert _batch_changes(moto_server, bucket) == []
        proxy.set_mode("pass")
        await coord.start(port=coord.port)  # same data dir: the durable outbox is still there
        await _poll(
            lambda: sorted(_batch_changes(moto_server, bucket)) == sorted(applied),
            what="outbox uploaded after restart",
        )
    finally:
        await proxy.close()


async def test_unknown_bucket_is_said_at_start_and_on_ready(
    start_coordinator: Any, moto_server: MotoServer
) -> None:
    coord = await start_coordinator(*_s3_args("no-such-bucket", moto_server.endpoint))
    async with coord.http() as http:
        ready = await http.get("/ready")
    assert ready.status_code == 503 and "no-such-bucket" in ready.json()["error"]["message"]
    assert any(e.get("event") == "s3_config_error" for e in coord.log_events())


async def test_a_batch_the_outbox_cannot_record_still_reaches_s3_in_a_snapshot(
    start_coordinator: Any, connect: Any, moto_server: MotoServer, bucket: str
) -> None:
    """The change is committed locally before the outbox write: failing the apply would not undo
    it, would keep it from the other sessions, and its retry would apply nothing, so no batch
    would ever carry it. It is acknowledged and pushed, and a snapshot takes it to S3."""
    coord = await start_coordinator(*_s3_args(bucket, moto_server.endpoint), "--enable-failpoints")
    writer, reader = await connect(coord), await connect(coord)
    await writer.handshake("db1")
    await reader.handshake("db1")
    recorded = await _apply_many(writer, 3)
    async with coord.http() as http:
        armed = await http.put(
            "/admin/failpoints/outbox.write", json={"mode": "error", "times": 1}, headers=ADMIN
        )
        assert armed.status_code == 200
    marker = "outbox-could-not-record-this"
    cs = write(writer.site_id, "t", 99, "x", marker, 9000)
    await writer.send({"type": "apply_changes", "changes": [cs]})
    assert (await writer.expect("apply_result"))["applied"] == 1
    reader.SKIP = frozenset({"heartbeat", "presence", "presence_delta"})
    pushed: list[str] = []
    while cs["changes"][0]["hlc"] not in pushed:
        push = await reader.expect("push_changes")
        pushed += [c["hlc"] for s in push["changeSets"] for c in s["changes"]]

    def snapshot_has_marker() -> bool:
        keys = list_keys(moto_server.endpoint, bucket, "t/db1/snapshots/")
        return any(
            marker.encode() in gzip.decompress(get_bytes(moto_server.endpoint, bucket, k)) for k in keys
        )

    await _poll(snapshot_has_marker, what="a snapshot in S3 with the change the outbox could not record")
    await _poll(lambda: sorted(_batch_changes(moto_server, bucket)) == sorted(recorded), what="the batches")
    async with coord.http() as http:
        metrics = (await http.get("/metrics")).text
    assert "coordinator_s3_outbox_write_failures_total 1" in metrics
    assert any(e.get("event") == "s3_batch_record_failed" for e in coord.log_events())


async def test_debug_resources_shows_only_live_object_store_state_not_counters(
    start_coordinator: Any, connect: Any, moto_server: MotoServer, bucket: str
) -> None:
    """/debug/resources holds the numbers a leak check reads (PROTOCOL.md section 4): after
    writes have been uploaded, the object store's part holds nothing that only ever grows (request,
    upload or transition counters would read as leaks to any checker; they are in /metrics)."""
    coord = await start_coordinator(*_s3_args(bucket, moto_server.endpoint))
    ws = await connect(coord)
    await ws.handshake("db1")
    applied = await _apply_many(ws, 5)
    await _poll(lambda: len(_batch_changes(moto_server, bucket)) == len(applied), what="batches in S3")
    async with coord.http() as http:
        store = (await http.get("/debug/resources", headers=ADMIN)).json()["data"]["objectStore"]
    assert set(store) == {
        "backend_state",
        "degraded",
        "outbox_depth",
        "uploads_in_flight",
        "uploader_running",
    }
    async with coord.http() as http:
        metrics = (await http.get("/metrics")).text
    assert "coordinator_s3_requests_total" in metrics
