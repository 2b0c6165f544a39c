"""Store manager: reference counts, LRU eviction, idle close, single-flight open, and no store
closed while held, under interleavings explored by Hypothesis."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coordinator.clock import VirtualClock
from coordinator.ops.failpoints import FailpointError, Failpoints
from coordinator.ops.metrics import Metrics
from coordinator.service.store_manager import StoreManager


def _manager(
    tmp_path: Path, max_open: int = 2, idle_s: float = 10.0
) -> tuple[StoreManager, VirtualClock, Metrics]:
    clock, metrics = VirtualClock(), Metrics()
    failpoints = Failpoints(True, clock, metrics)
    return StoreManager(tmp_path, max_open, idle_s, clock, failpoints, metrics), clock, metrics


async def test_concurrent_acquires_share_one_open(tmp_path: Path) -> None:
    manager, _, metrics = _manager(tmp_path)
    stores = await asyncio.gather(*(manager.acquire("db") for _ in range(10)))
    assert len({id(s) for s in stores}) == 1 and metrics.store_opens.total() == 1
    assert manager.total_refs == 10
    for _ in range(10):
        manager.release("db")
    assert manager.total_refs == 0


async def test_eviction_skips_stores_in_use(tmp_path: Path) -> None:
    manager, _, metrics = _manager(tmp_path, max_open=2)
    held = await manager.acquire("a")
    await manager.acquire("b")
    manager.release("b")
    await manager.acquire("c")  # must evict b (idle), never a (held)
    assert held.is_open and [d["databaseId"] for d in manager.describe()] == ["a", "c"]
    assert metrics.store_evictions.total() == 1
    await manager.acquire("d")  # everything held: exceed the soft limit rather than close a held store
    assert held.is_open and manager.open_count == 3


async def test_idle_close_after_timeout_on_virtual_clock(tmp_path: Path) -> None:
    manager, clock, metrics = _manager(tmp_path, idle_s=10.0)
    manager.start_cleanup()
    await manager.acquire("a")
    manager.release("a")
    await clock.advance(6)
    assert manager.open_count == 1
    await clock.advance(10)
    assert manager.open_count == 0 and metrics.store_idle_closes.total() == 1
    await manager.shutdown()
    assert manager.background_tasks == 0


async def test_failed_open_reaches_every_waiter_and_the_next_attempt_works(tmp_path: Path) -> None:
    clock, metrics = VirtualClock(), Metrics()
    attempts = []

    async def restore_from_s3(database_id: str, store: Any) -> None:
        attempts.append(database_id)
        await clock.sleep(1.0)
        if len(attempts) == 1:
            raise ConnectionError("object store unreachable")

    manager = StoreManager(
        tmp_path, 2, 10.0, clock, Failpoints(True, clock, metrics), metrics, restore_from_s3
    )
    waiters = asyncio.gather(*(manager.acquire("db") for _ in range(3)), return_exceptions=True)
    await clock.advance(2)
    results = await waiters
    assert all(isinstance(r, ConnectionError) for r in results) and attempts == ["db"]  # one shared open
    assert not (tmp_path / "db.sqlite").exists()  # no half-restored store left behind
    acquiring = asyncio.ensure_future(manager.acquire("db"))
    await clock.advance(2)
    store = await acquiring
    assert store.is_open and manager.total_refs == 1 and attempts == ["db", "db"]


async def test_failpoint_on_open_fails_that_acquire_only(tmp_path: Path) -> None:
    manager, _, _ = _manager(tmp_path)
    manager._failpoints.configure("store.open", {"mode": "error", "times": 1})
    with pytest.raises(FailpointError):
        await manager.acquire("db")
    assert (await manager.acquire("db")).is_open


async def test_shutdown_stops_cleanup_before_closing(tmp_path: Path) -> None:
    manager, _, _ = _manager(tmp_path, idle_s=0.01)
    manager.start_cleanup()
    await manager.acquire("a")
    await manager.shutdown()
    assert manager.open_count == 0 and manager.background_tasks == 0
    with pytest.raises(Exception, match="shutting down"):
        await manager.acquire("a")


OPS = st.lists(
    st.tuples(
        st.sampled_from(["acquire", "release", "idle", "advance", "open-delay"]), st.sampled_from("abcd")
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS)
def test_no_store_is_ever_closed_while_held(tmp_path: Path, ops: list[tuple[str, str]]) -> None:
    """Random interleavings of acquires (some with a slow open), releases, idle closes and
    time passing: every store a caller holds stays open, and counts never go wrong."""

    async def run() -> None:
        manager, clock, _ = _manager(tmp_path / str(abs(hash(tuple(ops)))), max_open=2, idle_s=1.0)
        held: dict[str, list[Any]] = {}
        pending: list[asyncio.Task[Any]] = []

        async def acquire(db: str) -> None:
            store = await manager.acquire(db)
            held.setdefault(db, []).append(store)

        for op, db in ops:
            if op == "acquire":
                pending.append(asyncio.create_task(acquire(db)))
            elif op == "open-delay":
                manager._failpoints.configure("store.open", {"mode": "delay", "delayMs": 500, "times": 1})
                pending.append(asyncio.create_task(acquire(db)))
            elif op == "release" and held.get(db):
                held[db].pop()
                manager.release(db)
            elif op == "idle":
                manager.close_idle()
            elif op == "advance":
                await clock.advance(0.6)
            await asyncio.sleep(0)
            for stores in held.values():
                assert all(s.is_open for s in stores)
            assert manager.total_refs == sum(len(s) for s in held.values())
        await clock.advance(5)
        await asyncio.gather(*pending)
        for stores in held.values():
            assert all(s.is_open for s in stores)
        await manager.shutdown()

    asyncio.run(run())
