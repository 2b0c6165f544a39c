"""Pieces that need no object store: key layout, the circuit breaker on a manual clock, the outbox."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from coordinator.storage.circuit_breaker import BackendState, CircuitBreaker
from coordinator.storage.outbox import BATCH, Outbox
from coordinator.storage.persistence import ObjectStorePersistence, S3Config
from coordinator.storage.s3_store import batch_key, iso_timestamp, key_time_part, key_timestamp, storage_path


class ManualClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


def test_storage_path_follows_protocol() -> None:
    assert storage_path("org:team:db") == "org/team/db"
    assert storage_path("my.db-1_x") == "my_db-1_x"
    assert storage_path("a:b.c") == "a/b_c"


def test_key_timestamps_are_fixed_width_and_sort_in_time_order() -> None:
    ms = 1_763_782_327_005  # 2025-11-22T03:32:07.005Z
    assert iso_timestamp(ms) == "2025-11-22T03:32:07.005Z"
    assert key_timestamp(ms) == "2025-11-22T03-32-07-005Z"
    rng = random.Random(7)
    times = sorted(rng.randrange(0, 4_000_000_000_000) for _ in range(500))
    stamps = [key_timestamp(t) for t in times]
    assert len({len(s) for s in stamps}) == 1
    assert stamps == sorted(stamps)
    key = batch_key("pfx/", "org:db", ms, "u-1")
    assert key == "pfx/org/db/batches/2025-11-22T03-32-07-005Z_u-1.json"
    assert key_time_part(key) == "2025-11-22T03-32-07-005Z"


def test_breaker_opens_probes_once_and_closes() -> None:
    clock = ManualClock()
    seen: list[tuple[BackendState, BackendState]] = []
    breaker = CircuitBreaker(
        clock, failure_threshold=3, open_duration_s=5.0, on_transition=lambda o, n, _: seen.append((o, n))
    )
    for _ in range(2):
        assert breaker.try_acquire()
        breaker.record_failure("boom")
    assert breaker.state is BackendState.CLOSED
    assert breaker.try_acquire()
    breaker.record_success()  # a success resets the count of consecutive failures
    for _ in range(3):
        assert breaker.try_acquire()
        breaker.record_failure("boom")
    assert breaker.state is BackendState.OPEN
    assert seen == [(BackendState.CLOSED, BackendState.OPEN)]
    assert not breaker.try_acquire()
    clock.now += 4.9
    assert not breaker.try_acquire()
    clock.now += 0.2
    assert breaker.try_acquire()  # the probe
    assert breaker.state is BackendState.HALF_OPEN
    assert not breaker.try_acquire()  # only one probe at a time
    breaker.record_failure("still down")
    assert breaker.state is BackendState.OPEN
    clock.now += 5.0
    assert breaker.try_acquire()
    breaker.record_success()
    assert breaker.state is BackendState.CLOSED
    assert breaker.try_acquire() and breaker.try_acquire()
    assert seen == [
        (BackendState.CLOSED, BackendState.OPEN),
        (BackendState.OPEN, BackendState.HALF_OPEN),
        (BackendState.HALF_OPEN, BackendState.OPEN),
        (BackendState.OPEN, BackendState.HALF_OPEN),
        (BackendState.HALF_OPEN, BackendState.CLOSED),
    ]
    assert breaker.rejections == 3


def test_breaker_rejects_bad_thresholds() -> None:
    with pytest.raises(ValueError):
        CircuitBreaker(ManualClock(), failure_threshold=0, open_duration_s=1.0)
    with pytest.raises(ValueError):
        CircuitBreaker(ManualClock(), failure_threshold=1, open_duration_s=0.0)


def test_outbox_keys_strictly_increase_across_clock_steps_and_restarts(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    outbox = Outbox(path)
    stamps: list[int] = []
    for now in (5000, 5000, 4000, 5001, 10):  # same millisecond, then the wall clock steps back
        entry = outbox.append("db", BATCH, now, lambda ms: (f"k{ms}", b"{}"))
        stamps.append(entry.created_ms)
    assert stamps == [5000, 5001, 5002, 5003, 5004]
    reserved = outbox.reserve_key_ms(1)
    assert reserved == 5005
    outbox.close()
    reopened = Outbox(path)
    assert reopened.depth() == 5
    assert reopened.databases() == {"db"}
    after = reopened.append("db", BATCH, 1, lambda ms: (f"k{ms}", b"{}"))
    assert after.created_ms == 5006
    head = reopened.head("db")
    assert head is not None and head.created_ms == 5000
    reopened.remove(head.seq)
    assert reopened.depth() == 5
    assert [e.created_ms for e in reopened.pending("db")] == [5001, 5002, 5003, 5004, 5006]
    reopened.close()


class VirtualClock(ManualClock):
    """The Clock protocol of the persistence layer, on virtual time."""

    def now_ms(self) -> int:
        return int(self.now * 1000)

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


async def test_snapshot_cadence_by_changes_and_by_time(tmp_path: Path) -> None:
    clock = VirtualClock()
    config = S3Config(
        bucket="never-contacted",
        endpoint="http://127.0.0.1:9",
        snapshot_every_changes=5,
        snapshot_every_s=60.0,
    )
    persistence = ObjectStorePersistence(config, tmp_path / "outbox.sqlite", clock)
    try:
        assert not persistence.note_applied("db", 3)
        assert persistence.note_applied("db", 2)  # 5 changes
        assert not persistence.note_applied("db", 4)  # the count restarted
        clock.now += 59.0
        assert persistence.snapshots_due() == []
        clock.now += 1.0
        assert persistence.snapshots_due() == ["db"]  # 60 s with changes pending
        assert persistence.snapshots_due() == []
        clock.now += 120.0
        assert persistence.snapshots_due() == []  # nothing changed: no snapshot
        assert not persistence.note_applied("quiet", 0)
        ticket = persistence.begin_snapshot("db")
        key = persistence.enqueue_snapshot("db", [{"type": "header", "snapshotId": "s1"}], ticket)
        assert key.startswith("db/snapshots/") and key.endswith(f"_{ticket.snapshot_id}.json")
        assert persistence.outbox_depth() == 1
        persistence.release("quiet")
        assert persistence.stats()["tracked_databases"] == 1
        # Without start() the uploader does not run: a flush says so instead of waiting.
        result = await persistence.flush(5.0)
        assert not result.complete and result.remaining == 1 and result.reason == "uploader not running"
    finally:
        await persistence.close()


async def test_stats_still_answer_after_close(tmp_path: Path) -> None:
    """/metrics and /debug/resources are scraped while the server drains, after the outbox has
    closed; they once failed there with sqlite3.ProgrammingError (seen as a traceback in the
    graceful-shutdown scenario under load)."""
    clock = VirtualClock()
    config = S3Config(bucket="never-contacted", endpoint="http://127.0.0.1:9")
    persistence = ObjectStorePersistence(config, tmp_path / "outbox.sqlite", clock)
    ticket = persistence.begin_snapshot("db")
    persistence.enqueue_snapshot("db", [{"type": "header", "snapshotId": "s1"}], ticket)
    before = persistence.stats()
    await persistence.close()
    clock.now += 10.0
    after = persistence.stats()
    assert after["outbox_depth"] == before["outbox_depth"] == 1
    assert after["outbox_oldest_age_s"] == pytest.approx(before["outbox_oldest_age_s"] + 10.0)
