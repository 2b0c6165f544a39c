"""Open database stores: reference counts, LRU eviction, idle close, single-flight open.

Everything that decides to close a store checks its reference count and closes it in the same
step, with no await in between, so a store can never be closed while a request holds it (the
event loop is the lock). Opening is single-flight: concurrent acquires of one database share a
single open (and a single restore from S3).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from coordinator.clock import Clock
from coordinator.ops.bugs import Bugs, BugSwaps
from coordinator.ops.failpoints import Failpoints
from coordinator.ops.logging import EventLog
from coordinator.ops.metrics import Metrics
from coordinator.storage.errors import StoreUnavailable
from coordinator.storage.sqlite_store import DatabaseStore, store_filename

Restorer = Callable[[str, DatabaseStore], Awaitable[None]]


@dataclass(slots=True)
class _Entry:
    store: DatabaseStore
    refs: int
    last_used: float


class StoreManager:
    BUG_SWAPS: ClassVar[BugSwaps] = {
        "eviction-race": ("_still_idle", "_still_idle_with_eviction_race"),
        "cleanup-races-shutdown": ("shutdown", "_shutdown_with_cleanup_races_shutdown"),
    }

    def __init__(
        self,
        data_dir: Path,
        max_open: int,
        idle_timeout_s: float,
        clock: Clock,
        failpoints: Failpoints,
        metrics: Metrics,
        restorer: Restorer | None = None,
        bugs: Bugs | None = None,
        tombstone_policy: str = "revive",
    ) -> None:
        self._dir = data_dir
        self._tombstone_policy = tombstone_policy
        self._max_open = max_open
        self._idle_timeout = idle_timeout_s
        self._clock = clock
        self._failpoints = failpoints
        self._metrics = metrics
        self._restorer = restorer
        self._log = EventLog()
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._opening: dict[str, asyncio.Future[DatabaseStore]] = {}
        self._cleanup_task: asyncio.Task[None] | None = None
        self._closed = False
        self._metrics.open_stores.callback = lambda: {(): float(len(self._entries))}
        self.on_close: Callable[[str], None] | None = None  # told when a store closes (per-db state)
        (bugs or Bugs()).apply(self, self.BUG_SWAPS)

    def set_restorer(self, restorer: Restorer) -> None:
        self._restorer = restorer

    def _close_entry(self, database_id: str, entry: _Entry) -> None:
        entry.store.close()
        if self.on_close is not None:
            self.on_close(database_id)

    # acquire / release --------------------------------------------------------------------
    async def acquire(self, database_id: str) -> DatabaseStore:
        if self._closed:
            raise StoreUnavailable("the coordinator is shutting down")
        while True:
            entry = self._entries.get(database_id)
            if entry is not None:
                entry.refs += 1
                entry.last_used = self._clock.monotonic()
                self._entries.move_to_end(database_id)
                return entry.store
            pending = self._opening.get(database_id)
            if pending is None:
                pending = asyncio.get_running_loop().create_future()
                self._opening[database_id] = pending
                try:
                    store = await self._open(database_id)
                    try:
                        if not self._closed:
                            await self._make_room()
                    except BaseException:
                        store.close()
                        raise
                except BaseException as exc:
                    del self._opening[database_id]
                    pending.set_exception(
                        exc if isinstance(exc, Exception) else StoreUnavailable("cancelled")
                    )
                    pending.exception()  # mark retrieved: waiters (if any) re-raise it themselves
                    raise
                del self._opening[database_id]
                if self._closed:
                    store.close()
                    pending.set_exception(StoreUnavailable("the coordinator is shutting down"))
                    pending.exception()
                    raise StoreUnavailable("the coordinator is shutting down")
                self._entries[database_id] = _Entry(store, 0, self._clock.monotonic())
                pending.set_result(store)
            else:
                await asyncio.shield(pending)
            # loop: take the reference on the (now) open entry, in the same step as the lookup

    def release(self, database_id: str) -> None:
        entry = self._entries.get(database_id)
        if entry is None:
            self._log.error("store_release_unknown", databaseId=database_id)
            return
        if entry.refs <= 0:
            self._log.error("store_release_underflow", databaseId=database_id)
            return
        entry.refs -= 1
        entry.last_used = self._clock.monotonic()

    async def _open(self, database_id: str) -> DatabaseStore:
        await self._failpoints.hit("store.open")
        path = self._dir / store_filename(database_id)
        existed = path.exists()
        store = DatabaseStore(path, database_id, self._tombstone_policy, self._metrics.storage_reads.inc)
        try:
            store.open()
            if not existed and self._restorer is not None:
                await self._restorer(database_id, store)
        except BaseException:
            store.close()
            if not existed:
                path.unlink(missing_ok=True)  # a half-restored store must not look like a real one
            raise
        self._metrics.store_opens.inc()
        self._log.debug("store_open", databaseId=database_id, restored=not existed)
        return store

    # closing ------------------------------------------------------------------------------
    async def _make_room(self) -> None:
        """Evict for the store being opened. The victim is flushed first (a storage write: a
        WAL checkpoint in a worker thread, on a connection of its own), so a request may take
        it meanwhile; it is closed only if it is still idle once the flush is done, checked and
        closed in one step with no await between, else another victim is chosen."""
        while len(self._entries) >= self._max_open:
            victim = next((db for db, e in self._entries.items() if e.refs == 0), None)
            if victim is None:
                self._log.warning("store_limit_exceeded", open=len(self._entries), limit=self._max_open)
                return
            entry = self._entries[victim]
            with contextlib.suppress(Exception):  # a failed flush does not stop the eviction
                await self._failpoints.hit("storage.write")  # a flush is a storage write: as slow
                await asyncio.to_thread(_checkpoint_file, entry.store.path)
            if self._entries.get(victim) is not entry or not self._still_idle(entry):
                continue  # taken (or closed) while it was flushed: look again
            del self._entries[victim]
            self._close_entry(victim, entry)
            self._metrics.store_evictions.inc()

    def _still_idle(self, entry: _Entry) -> bool:
        return entry.refs == 0

    def _still_idle_with_eviction_race(self, entry: _Entry) -> bool:
        """BUG eviction-race (BUGS.md): the victim was chosen by its reference count before the
        flush, and that choice is trusted afterwards without looking at the count again: a
        request that took the store during the flush has it closed under its feet."""
        return True

    def close_idle(self) -> int:
        """The cleanup's pass: checkpoint the stores written since the last pass, then close
        those idle for the timeout."""
        for entry in self._entries.values():
            if entry.store.unflushed:
                entry.store.checkpoint()
        now = self._clock.monotonic()
        idle = [
            db for db, e in self._entries.items() if e.refs == 0 and now - e.last_used >= self._idle_timeout
        ]
        for db in idle:
            self._close_entry(db, self._entries.pop(db))
            self._metrics.store_idle_closes.inc()
        return len(idle)

    def start_cleanup(self) -> None:
        self._cleanup_task = asyncio.create_task(self._cleanup_loop(), name="store-idle-cleanup")

    @property
    def _cleanup_interval(self) -> float:
        return max(0.05, min(self._idle_timeout / 2, 5.0))

    async def _cleanup_loop(self) -> None:
        while not self._closed:
            await self._clock.sleep(self._cleanup_interval)
            if self._closed:
                return
            try:
                self.close_idle()
            except Exception as exc:  # keep cleaning up; say so
                self._log.error("store_cleanup_failed", error=str(exc))

    async def shutdown(self) -> None:
        """Stop the cleanup first, then close every store: the cleanup never runs into shutdown."""
        await self._stop_cleanup()
        while self._entries:
            database_id, entry = self._entries.popitem(last=False)
            self._close_entry(database_id, entry)

    async def _shutdown_with_cleanup_races_shutdown(self) -> None:
        """BUG cleanup-races-shutdown (BUGS.md): the stores are closed first, and the idle cleanup
        is stopped only after a grace meant for in-flight work: its pass in between sweeps
        stores that are already closed (and logs the failure)."""
        for entry in list(self._entries.values()):
            entry.store.close()
        await self._clock.sleep(2 * self._cleanup_interval)  # "let in-flight work see them closed"
        await self._stop_cleanup()
        self._entries.clear()

    async def _stop_cleanup(self) -> None:
        self._closed = True
        if self._cleanup_task is not None:
            self._cleanup_task.cancel()
            await asyncio.gather(self._cleanup_task, return_exceptions=True)
            self._cleanup_task = None

    # observation --------------------------------------------------------------------------
    def describe(self) -> list[dict[str, Any]]:
        now = self._clock.monotonic()
        return [
            {"databaseId": db, "refCount": e.refs, "idleMs": int((now - e.last_used) * 1000)}
            for db, e in self._entries.items()
        ]

    @property
    def open_count(self) -> int:
        return len(self._entries)

    @property
    def total_refs(self) -> int:
        return sum(e.refs for e in self._entries.values())

    @property
    def background_tasks(self) -> int:
        return int(self._cleanup_task is not None and not self._cleanup_task.done())


def _checkpoint_file(path: Path) -> None:
    """Fold a store's WAL into its file from a connection of its own (safe in a worker thread)."""
    db = sqlite3.connect(path)
    try:
        db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
    finally:
        db.close()
