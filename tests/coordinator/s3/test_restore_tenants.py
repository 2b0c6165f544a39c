"""Object-store isolation (PROTOCOL.md section 5): `a.b` and `a_b` share one storage path, and a
restore must use only the objects whose databaseId is its own; the `restore-mixes-tenants` bug
takes every object under the path. Against moto's server over real HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from coordinator.ops.bugs import Bugs
from coordinator.storage.persistence import ObjectStorePersistence, SystemClock
from tests.coordinator.s3.s3_support import MotoServer, change_set, list_keys, snapshot_chunks
from tests.coordinator.s3.test_s3_persistence import SITE, make_config
from tests.coordinator.wire import new_site_id, write

OWN, OTHER = "a.b", "a_b"  # one storage path: a_b


@contextlib.asynccontextmanager
async def _persistence(
    endpoint: str, bucket: str, outbox: Path, bugs: list[str]
) -> AsyncIterator[ObjectStorePersistence]:
    persistence = ObjectStorePersistence(
        make_config(endpoint, bucket), outbox, SystemClock(), bugs=Bugs(bugs)
    )
    try:
        await persistence.start()
        yield persistence
    finally:
        await persistence.close()


def _next_ms() -> None:
    """Wait for the wall clock's next millisecond, so each object's key time is its own (keys
    order by time; this is about distinct names, not about synchronising anything)."""
    start = time.time_ns() // 1_000_000
    while time.time_ns() // 1_000_000 == start:
        pass


@pytest.mark.parametrize("buggy", [False, True])
async def test_restore_uses_only_its_own_database_objects(
    moto_server: MotoServer, bucket: str, tmp_path: Path, buggy: bool
) -> None:
    async with _persistence(moto_server.endpoint, bucket, tmp_path / "first.sqlite", []) as writer:
        steps = [
            lambda: writer.record_batch(OTHER, SITE, [change_set(1)], 1, 0, 0),
            lambda: writer.enqueue_snapshot(OWN, snapshot_chunks("own", 1)),
            lambda: writer.record_batch(OWN, SITE, [change_set(2)], 1, 0, 0),
            lambda: writer.enqueue_snapshot(OTHER, snapshot_chunks("other", 3)),  # the newest snapshot
            lambda: writer.record_batch(OTHER, SITE, [change_set(3)], 1, 0, 0),
            lambda: writer.record_batch(OWN, SITE, [change_set(4)], 1, 0, 0),
        ]
        keys = []
        for step in steps:
            _next_ms()
            keys.append(step())
        assert (await writer.flush(30.0)).complete
    assert len(list_keys(moto_server.endpoint, bucket, "tenant-a/a_b/")) == 6  # all under one path

    bugs = ["restore-mixes-tenants"] if buggy else []
    async with _persistence(moto_server.endpoint, bucket, tmp_path / "fresh.sqlite", bugs) as reader:
        image = await reader.restore(OWN)
    assert image is not None
    if buggy:
        assert image.snapshot is not None and image.snapshot["databaseId"] == OTHER
        assert image.batch_keys == [keys[4], keys[5]]  # the other tenant's batch among them
    else:
        assert image.snapshot is not None and image.snapshot["databaseId"] == OWN
        assert image.snapshot_key == keys[1]
        assert image.batch_keys == [keys[2], keys[5]]
        assert {b["databaseId"] for b in image.batches} == {OWN}


def _s3_args(bucket: str, endpoint: str) -> list[str]:
    return ["--s3-bucket", bucket, "--s3-endpoint", endpoint, "--s3-region", "us-east-1", "--s3-prefix", "t/"]


async def _poll(predicate: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {timeout} s")
        await asyncio.sleep(0.05)  # polling a condition with a deadline


@pytest.mark.parametrize("buggy", [False, True])
async def test_a_restored_database_holds_only_its_own_changes(
    start_coordinator: Any, moto_server: MotoServer, bucket: str, tmp_path: Path, buggy: bool
) -> None:
    """What a client sees: write to `a.b` and `a_b`, lose the local disk, read `a.b` back."""
    coord = await start_coordinator(*_s3_args(bucket, moto_server.endpoint))
    site = new_site_id()
    own = write(site, "t", 1, "x", "own", 1000)
    other = write(site, "t", 2, "x", "other", 2000)
    async with coord.http() as http:
        for database_id, cs in ((OWN, own), (OTHER, other)):
            r = await http.post(f"/{database_id}/changes", json={"changes": [cs]})
            assert r.json()["data"]["applied"] == 1
    await _poll(lambda: len(list_keys(moto_server.endpoint, bucket, "t/a_b/batches/")) == 2)
    assert await coord.terminate() == 0

    args = _s3_args(bucket, moto_server.endpoint) + (["--bug", "restore-mixes-tenants"] if buggy else [])
    restored = await start_coordinator(*args, data_dir=tmp_path / "empty-disk")
    async with restored.http() as http:
        sets = (await http.get(f"/{OWN}/changes")).json()["data"]["changes"]
    hlcs = sorted(c["hlc"] for cs in sets for c in cs["changes"])
    if buggy:
        assert hlcs == sorted([own["changes"][0]["hlc"], other["changes"][0]["hlc"]])
    else:
        assert hlcs == [own["changes"][0]["hlc"]]
