"""ObjectStorePersistence against moto's server over real HTTP (a subprocess), with outages made by
a TCP proxy in front of it. Every bound below is generous; waits are on events or deadlines."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from coordinator.storage.persistence import (
    BackendState,
    ObjectStorePersistence,
    S3Config,
    S3ConfigError,
    StoreCorrupted,
    StoreUnavailable,
    SystemClock,
)
from tests.coordinator.s3.s3_support import (
    FaultProxy,
    MotoServer,
    RecordingS3Client,
    Transitions,
    change_set,
    free_port,
    get_bytes,
    list_keys,
    s3_admin,
    snapshot_chunks,
)

PREFIX = "tenant-a/"
SITE = "AAECAwQFBgcICQoLDA0ODw"  # a 22-character base64url siteId
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
TS = r"\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}-\d{3}Z"


def make_config(endpoint: str, bucket: str, **overrides: Any) -> S3Config:
    values: dict[str, Any] = {
        "bucket": bucket,
        "endpoint": endpoint,
        "prefix": PREFIX,
        "region": "us-east-1",
        "upload_concurrency": 2,
        "backoff_base_s": 0.05,
        "backoff_max_s": 0.4,
        "breaker_failure_threshold": 2,
        "breaker_open_s": 0.5,
        "connect_timeout_s": 1.0,
        "read_timeout_s": 1.5,
        "max_attempts": 2,
        "operation_timeout_s": 10.0,
    }
    values.update(overrides)
    return S3Config(**values)


@contextlib.asynccontextmanager
async def opened(
    config: S3Config,
    outbox: Path,
    transitions: Transitions | None = None,
    start: bool = True,
    client: RecordingS3Client | None = None,
) -> AsyncIterator[ObjectStorePersistence]:
    persistence = ObjectStorePersistence(
        config, outbox, SystemClock(), on_backend_state=transitions, client=client
    )
    try:
        if start:
            await persistence.start()
        yield persistence
    finally:
        await persistence.close()


def batch_body(endpoint: str, bucket: str, key: str) -> dict[str, Any]:
    value = json.loads(get_bytes(endpoint, bucket, key))
    assert isinstance(value, dict)
    return value


async def test_batches_land_in_s3_with_the_protocol_layout(
    moto_server: MotoServer, bucket: str, tmp_path: Path
) -> None:
    config = make_config(moto_server.endpoint, bucket)
    recorded: dict[str, list[tuple[str, list[dict[str, Any]]]]] = {"org:team.db": [], "other": []}
    async with opened(config, tmp_path / "outbox.sqlite") as persistence:
        for i in range(12):
            database_id = "org:team.db" if i % 3 else "other"
            changes = [change_set(i)]
            key = persistence.record_batch(database_id, SITE, changes, applied=1, skipped=i % 2, conflicts=0)
            assert key is not None
            recorded[database_id].append((key, changes))
        assert (
            persistence.record_batch("other", SITE, [change_set(99)], applied=0, skipped=1, conflicts=0)
            is None
        )
        result = await persistence.flush(30.0)
        assert result.complete and result.remaining == 0 and result.uploaded == 12
        stats = persistence.stats()
        assert stats["outbox_depth"] == 0
        assert stats["uploaded"] == {"batch": 12}
        assert stats["s3_requests"]["put_object"] == {"ok": 12}
        assert stats["backend_state"] == "closed"

    assert list_keys(moto_server.endpoint, bucket, PREFIX + "org/team_db/batches/") == [
        k for k, _ in recorded["org:team.db"]
    ]
    assert list_keys(moto_server.endpoint, bucket, PREFIX + "other/batches/") == [
        k for k, _ in recorded["other"]
    ]
    assert len(list_keys(moto_server.endpoint, bucket)) == 12
    pattern = re.compile(rf"^tenant-a/(org/team_db|other)/batches/({TS})_({UUID})\.json$")
    for database_id, items in recorded.items():
        for key, changes in items:
            match = pattern.match(key)
            assert match, key
            body = batch_body(moto_server.endpoint, bucket, key)
            assert set(body) == {"batchId", "databaseId", "timestamp", "clientId", "changes", "metadata"}
            assert body["batchId"] == match.group(3)
            assert body["databaseId"] == database_id
            assert body["clientId"] == SITE
            assert body["changes"] == changes
            assert body["timestamp"].replace(":", "-").replace(".", "-") == match.group(2)
            assert body["metadata"]["applied"] == 1


async def test_snapshots_are_gzipped_and_only_the_newest_are_kept(
    moto_server: MotoServer, bucket: str, tmp_path: Path
) -> None:
    config = make_config(moto_server.endpoint, bucket, max_retained_snapshots=2, snapshot_every_changes=3)
    database_id = "snap:db"
    snapshot_keys: list[str] = []
    batch_keys: list[str] = []
    async with opened(config, tmp_path / "outbox.sqlite") as persistence:
        for round_no in range(4):
            due = False
            for i in range(3):
                key = persistence.record_batch(database_id, SITE, [change_set(round_no * 10 + i)], 1, 0, 0)
                assert key is not None
                batch_keys.append(key)
                due = persistence.note_applied(database_id, 1)
            assert due  # every 3 applied changes
            ticket = persistence.begin_snapshot(database_id)
            snapshot_keys.append(
                persistence.enqueue_snapshot(
                    database_id, snapshot_chunks(f"snap-{round_no}", round_no), ticket
                )
            )
        result = await persistence.flush(30.0)
        assert result.complete
        assert persistence.stats()["snapshots_deleted"] == 2

    remaining = list_keys(moto_server.endpoint, bucket, PREFIX + "snap/db/snapshots/")
    assert remaining == snapshot_keys[-2:]
    assert list_keys(moto_server.endpoint, bucket, PREFIX + "snap/db/batches/") == batch_keys
    raw = get_bytes(moto_server.endpoint, bucket, snapshot_keys[-1])
    body = json.loads(gzip.decompress(raw))
    assert set(body) == {"snapshotId", "databaseId", "timestamp", "chunks"}
    assert body["snapshotId"] == "snap-3"
    assert body["databaseId"] == database_id
    assert body["chunks"] == snapshot_chunks("snap-3", 3)
    assert re.match(rf"^tenant-a/snap/db/snapshots/{TS}_{UUID}\.json$", snapshot_keys[-1])


async def test_restore_is_the_newest_snapshot_plus_later_batches(
    moto_server: MotoServer, bucket: str, tmp_path: Path
) -> None:
    config = make_config(moto_server.endpoint, bucket)
    database_id = "restore:me"
    async with opened(config, tmp_path / "first.sqlite") as persistence:
        persistence.record_batch(database_id, SITE, [change_set(1)], 1, 0, 0)
        persistence.enqueue_snapshot(database_id, snapshot_chunks("old", 1))
        persistence.record_batch(database_id, SITE, [change_set(2)], 1, 0, 0)
        ticket = persistence.begin_snapshot(database_id)
        # Recorded while the service was still reading the snapshot's state: it must be replayed.
        during = persistence.record_batch(database_id, SITE, [change_set(3)], 1, 0, 0)
        snap_key = persistence.enqueue_snapshot(database_id, snapshot_chunks("new", 2), ticket)
        after = persistence.record_batch(database_id, SITE, [change_set(4)], 2, 0, 1)
        assert (await persistence.flush(30.0)).complete

    async with opened(config, tmp_path / "fresh.sqlite") as persistence:
        image = await persistence.restore(database_id)
        assert image is not None
        assert image.snapshot_key == snap_key
        assert image.snapshot is not None and image.snapshot["chunks"] == snapshot_chunks("new", 2)
        assert image.batch_keys == [during, after]
        assert [b["changes"] for b in image.batches] == [[change_set(3)], [change_set(4)]]
        assert image.batches[1]["metadata"] == {"applied": 2, "skipped": 0, "conflicts": 1}
        assert image.from_outbox == 0
        assert await persistence.restore("never:written") is None

    # Entries not uploaded yet (uploader not started here) are part of the image too.
    async with opened(config, tmp_path / "backlog.sqlite", start=False) as persistence:
        pending = persistence.record_batch(database_id, SITE, [change_set(5)], 1, 0, 0)
        image = await persistence.restore(database_id)
        assert image is not None
        assert image.batch_keys == [during, after, pending]
        assert image.from_outbox == 1


async def test_a_corrupt_object_is_reported_as_such_not_as_an_outage(
    moto_server: MotoServer, bucket: str, tmp_path: Path
) -> None:
    config = make_config(moto_server.endpoint, bucket)
    async with opened(config, tmp_path / "outbox.sqlite") as persistence:
        persistence.record_batch("broken", SITE, [change_set(1)], 1, 0, 0)
        assert (await persistence.flush(30.0)).complete
        bad_key = f"{PREFIX}broken/batches/2999-01-01T00-00-00-000Z_bad.json"
        s3_admin(moto_server.endpoint).put_object(Bucket=bucket, Key=bad_key, Body=b"{not json")
        with pytest.raises(StoreCorrupted) as corrupt:
            await persistence.restore("broken")
        assert corrupt.value.code == "STORE_CORRUPTED"
        assert bad_key in str(corrupt.value)
        assert persistence.state is BackendState.CLOSED


async def test_outage_does_not_block_is_announced_not_hammered_and_loses_nothing(
    proxy: FaultProxy, bucket: str, tmp_path: Path
) -> None:
    config = make_config(proxy.endpoint, bucket, upload_concurrency=4, breaker_open_s=1.0)
    transitions = Transitions()
    databases = ["a", "b", "c", "d"]
    recorded: dict[str, list[str]] = {db: [] for db in databases}

    def record(i: int) -> float:
        database_id = databases[i % len(databases)]
        started = time.perf_counter()
        key = persistence.record_batch(database_id, SITE, [change_set(i)], 1, 0, 0)
        elapsed = time.perf_counter() - started
        assert key is not None
        recorded[database_id].append(key)
        return elapsed

    client = RecordingS3Client(config)
    async with opened(config, tmp_path / "outbox.sqlite", transitions, client=client) as persistence:
        for i in range(8):
            record(i)
        assert (await persistence.flush(30.0)).complete

        # 1. The store hangs: every S3 attempt would take the 1.5 s read timeout.
        proxy.set_mode("blackhole")
        durations = [record(i) for i in range(8, 20)]
        assert max(durations) < config.read_timeout_s / 3, durations
        # Bound: the threshold's failures, each max_attempts x (up to 1 s waiting for
        # "100 Continue" + the read timeout) plus botocore's retry delay (under 2 s): about 7 s.
        waited = await transitions.wait_for(BackendState.OPEN, timeout_s=30.0)
        assert waited < 20.0, waited
        assert transitions.seen[0][:2] == (BackendState.CLOSED, BackendState.OPEN)
        assert persistence.degraded

        # 2. The store is down hard (connections reset at once). Count what reaches it over a
        # window while applies go on. Without a breaker (threshold 10^6, same set-up) this
        # window measured 53 connections: four databases retrying on their own backoff.
        proxy.set_mode("refuse")
        window_s = 4.0
        before_proxy, before_hook = proxy.total, persistence.stats()["s3_http_attempts"]
        window_started = time.monotonic()
        for i in range(20, 60):
            durations.append(record(i))
            await asyncio.sleep(window_s / 40)  # spreads the applies over the measured window
        window = time.monotonic() - window_started
        made = proxy.total - before_proxy
        hooked = persistence.stats()["s3_http_attempts"] - before_hook
        # With the breaker: one probe per open period, plus the second attempts of uploads that
        # were already under way when the breaker opened (at most upload_concurrency).
        probes = window / config.breaker_open_s + 1
        bound = config.max_attempts * (probes + config.upload_concurrency)
        assert made <= bound, (made, hooked, bound)
        assert hooked <= bound, (made, hooked, bound)
        assert made >= 1  # it does probe
        print(
            f"outage window {window:.2f}s: {made} connections at the proxy, {hooked} attempts hooked, "
            f"bound {bound:.1f}; breaker opened {waited:.2f}s after the hang; "
            f"record_batch max {max(durations) * 1000:.1f} ms"
        )
        assert max(durations) < config.read_timeout_s / 3
        assert persistence.stats()["outbox_depth"] >= 40

        # 3. The store is back: recovery is announced and every batch goes up, in order.
        proxy.set_mode("pass")
        mark = len(transitions.seen)
        await transitions.wait_for(BackendState.CLOSED, timeout_s=30.0, after=mark)
        result = await persistence.flush(60.0)
        assert result.complete, result
        assert not persistence.degraded
        assert persistence.stats()["uploaded"]["batch"] == 60

    for database_id, keys in recorded.items():
        assert list_keys(proxy.upstream, bucket, f"{PREFIX}{database_id}/batches/") == keys
        # Uploaded in recording order too: at any moment S3 held a prefix of each database's batches.
        done = [k for k in client.uploaded if k.startswith(f"{PREFIX}{database_id}/")]
        assert list(dict.fromkeys(done)) == keys
    for i, key in enumerate(recorded["b"]):
        assert batch_body(proxy.upstream, bucket, key)["changes"] == [change_set(4 * i + 1)]


async def test_slowdown_answers_open_the_breaker_and_it_recovers(
    proxy: FaultProxy, bucket: str, tmp_path: Path
) -> None:
    config = make_config(proxy.endpoint, bucket)
    transitions = Transitions()
    async with opened(config, tmp_path / "outbox.sqlite", transitions) as persistence:
        proxy.set_mode("slowdown")
        keys = [persistence.record_batch("busy", SITE, [change_set(i)], 1, 0, 0) for i in range(5)]
        await transitions.wait_for(BackendState.OPEN, timeout_s=30.0)
        stats = persistence.stats()
        assert stats["s3_requests"]["put_object"].get("throttled", 0) >= 1, stats
        assert "throttled" in (persistence.last_error or "")
        assert stats["outbox_depth"] == 5

        proxy.set_mode("pass")
        await transitions.wait_for(BackendState.CLOSED, timeout_s=30.0)
        assert (await persistence.flush(30.0)).complete
    assert list_keys(proxy.upstream, bucket, PREFIX + "busy/batches/") == keys


async def test_shutdown_during_outage_keeps_entries_for_the_next_start(
    proxy: FaultProxy, bucket: str, tmp_path: Path
) -> None:
    config = make_config(proxy.endpoint, bucket)
    outbox = tmp_path / "outbox.sqlite"
    keys: list[str] = []
    async with opened(config, outbox) as persistence:
        proxy.set_mode("refuse")
        for i in range(6):
            key = persistence.record_batch("db:one" if i % 2 else "db:two", SITE, [change_set(i)], 1, 0, 0)
            assert key is not None
            keys.append(key)
        keys.append(persistence.enqueue_snapshot("db:one", snapshot_chunks("s", 1)))
        started = time.monotonic()
        result = await persistence.flush(2.0)
        assert time.monotonic() - started < 2.0 + 5.0  # a blocked call is bounded by its timeouts
        assert not result.complete
        assert result.remaining == 7
    assert list_keys(proxy.upstream, bucket) == []  # nothing reached S3 (checked through pass mode below)

    proxy.set_mode("pass")
    assert list_keys(proxy.upstream, bucket) == []
    async with opened(config, outbox, start=False) as persistence:
        assert persistence.outbox_depth() == 7
        await persistence.start()
        result = await persistence.flush(30.0)
        assert result.complete and result.uploaded == 7
    assert sorted(list_keys(proxy.upstream, bucket)) == sorted(keys)
    assert list_keys(proxy.upstream, bucket, PREFIX + "db/one/batches/") == [
        k for k in keys if "/one/batches/" in k
    ]


async def test_restore_while_store_is_down_fails_clearly_and_later_succeeds(
    proxy: FaultProxy, bucket: str, tmp_path: Path
) -> None:
    config = make_config(proxy.endpoint, bucket)
    transitions = Transitions()
    async with opened(config, tmp_path / "writer.sqlite") as writer:
        written = [writer.record_batch("x", SITE, [change_set(i)], 1, 0, 0) for i in range(3)]
        assert (await writer.flush(30.0)).complete

    async with opened(config, tmp_path / "reader.sqlite", transitions) as reader:
        proxy.set_mode("refuse")
        for _ in range(config.breaker_failure_threshold):
            with pytest.raises(StoreUnavailable) as failed:
                await reader.restore("x")
            assert failed.value.code == "STORE_UNAVAILABLE"
        assert reader.state is BackendState.OPEN
        before = proxy.total
        started = time.monotonic()
        with pytest.raises(StoreUnavailable, match="circuit breaker open"):
            await reader.restore("x")
        assert time.monotonic() - started < 0.5
        assert proxy.total == before  # refused without touching the store

        proxy.set_mode("pass")
        # The uploader's half-open probe finds the store back, even with nothing to upload.
        await transitions.wait_for(BackendState.CLOSED, timeout_s=30.0)
        image = await reader.restore("x")
        assert image is not None
        assert image.batch_keys == written


async def test_bad_configuration_is_named_at_start(
    moto_server: MotoServer, bucket: str, tmp_path: Path
) -> None:
    async with opened(
        make_config(moto_server.endpoint, "no-such-bucket-here"), tmp_path / "a.sqlite", start=False
    ) as p:
        with pytest.raises(S3ConfigError) as missing:
            await p.start()
        assert missing.value.problem == "bucket_not_found"
        assert "no-such-bucket-here" in str(missing.value) and "does not exist" in str(missing.value)
        assert p.config_error == str(missing.value)
        assert p.stats()["uploader_running"] is False
        # Entries recorded meanwhile are kept locally, not lost.
        p.record_batch("db", SITE, [change_set(1)], 1, 0, 0)
        assert p.outbox_depth() == 1

    dead = f"http://127.0.0.1:{free_port()}"
    async with opened(make_config(dead, bucket), tmp_path / "b.sqlite", start=False) as p:
        with pytest.raises(S3ConfigError) as unreachable:
            await p.start()
        assert unreachable.value.problem == "endpoint_unreachable"
        assert dead in str(unreachable.value) and "unreachable" in str(unreachable.value)
        assert unreachable.value.code == "STORE_MISCONFIGURED"


async def test_rejected_credentials_are_named_at_start(tmp_path: Path) -> None:
    strict = MotoServer(extra_env={"INITIAL_NO_AUTH_ACTION_COUNT": "0"})  # moto checks every key
    try:
        strict.start(tmp_path / "moto-strict.log")
        async with opened(
            make_config(strict.endpoint, "any-bucket"), tmp_path / "c.sqlite", start=False
        ) as p:
            with pytest.raises(S3ConfigError) as rejected:
                await p.start()
            assert rejected.value.problem == "credentials_rejected"
            assert "credentials rejected" in str(rejected.value)
            assert "InvalidAccessKeyId" in str(rejected.value)
    finally:
        strict.stop()
