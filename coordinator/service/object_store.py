"""The coordinator's side of S3 persistence: what to do with the object store's events.

The persistence (coordinator/storage/persistence.py) owns the outbox, the uploads and the
circuit breaker. This module connects it to the service: record a batch after each apply,
upload snapshots on its cadence, restore a database missing from local disk, turn breaker
transitions into BACKEND_UNAVAILABLE / BACKEND_RECOVERED notices and `backend: "degraded"`
heartbeats, report a bad configuration on /ready, and flush on shutdown.
"""

from __future__ import annotations

import asyncio
import os
import random
from pathlib import Path
from typing import Any, ClassVar

from coordinator.clock import Clock
from coordinator.config import CoordinatorConfig
from coordinator.ops.bugs import BugSwaps
from coordinator.ops.logging import EventLog
from coordinator.ops.metrics import Metrics
from coordinator.protocol.changes import decode_change_sets
from coordinator.service.coordinator import CoordinatorService
from coordinator.service.snapshots import snapshot_chunks
from coordinator.service.store_manager import StoreUnavailable
from coordinator.storage.circuit_breaker import BackendState
from coordinator.storage.persistence import ObjectStorePersistence, S3ConfigError, StoreError
from coordinator.storage.s3_calls import CallFailed
from coordinator.storage.s3_store import S3Config
from coordinator.storage.sqlite_store import DatabaseStore

SNAPSHOT_TIMER_S = 5.0
CONFIG_RETRY_S = 10.0


class _MetricsSink:
    def __init__(self, metrics: Metrics) -> None:
        self.requests = metrics.counter(
            "coordinator_s3_requests_total", "Object-store requests by operation and outcome"
        )
        self.depth = metrics.gauge("coordinator_s3_outbox_depth", "Entries waiting in the durable outbox")

    def s3_request(self, operation: str, outcome: str, seconds: float) -> None:
        self.requests.inc(operation=operation, outcome=outcome)

    def outbox_depth(self, depth: int) -> None:
        self.depth.set(depth)


class ObjectStoreBridge:
    BUG_SWAPS: ClassVar[BugSwaps] = {
        "backend-failure-silent": ("_on_backend_state", "_on_backend_state_with_backend_failure_silent"),
        "backend-crash-on-open": ("restore", "_restore_with_backend_crash_on_open"),
        "shutdown-loses-writes": ("_flush", "_flush_with_shutdown_loses_writes"),
    }

    def __init__(self, service: CoordinatorService, config: CoordinatorConfig, clock: Clock) -> None:
        assert config.s3_bucket is not None
        self.service = service
        self.log = EventLog()
        bugs = service.bugs
        bugs.apply(self, self.BUG_SWAPS)  # before `_on_backend_state` is handed to persistence
        self.persistence = ObjectStorePersistence(
            S3Config(
                bucket=config.s3_bucket,
                endpoint=config.s3_endpoint,
                prefix=config.s3_prefix,
                region=config.s3_region,
            ),
            Path(config.data_dir) / "s3-outbox.sqlite",
            clock,
            on_backend_state=self._on_backend_state,
            metrics=_MetricsSink(service.metrics),
            rng=random.Random(config.failpoint_seed),
            bugs=bugs,
        )
        self._clock = clock
        self._tasks: set[asyncio.Task[None]] = set()
        self._timer: asyncio.Task[None] | None = None
        breaker = service.metrics.gauge(
            "coordinator_s3_breaker_state", "Object-store breaker: 0 closed, 1 half-open, 2 open"
        )
        breaker.callback = lambda: {(): float(self.persistence.state.gauge)}
        self._record_failures = service.metrics.counter(
            "coordinator_s3_outbox_write_failures_total",
            "Applied batches the outbox could not record (a snapshot carries them to S3 instead)",
        )

    # lifecycle --------------------------------------------------------------------------------
    async def start(self) -> None:
        self.service.persistence = self
        self.service.stores.set_restorer(self.restore)
        self.service.stores.on_close = self.persistence.release
        await self._try_start()
        self._timer = asyncio.create_task(self._timer_loop(), name="s3-snapshot-timer")

    async def _try_start(self) -> bool:
        try:
            await self.persistence.start()
        except S3ConfigError as exc:
            problem = f"object store: {exc}"
            if problem not in self.service.readiness_problems:
                self.service.readiness_problems[:] = [
                    p for p in self.service.readiness_problems if not p.startswith("object store:")
                ] + [problem]
                self.log.error("s3_config_error", problem=exc.problem, error=str(exc))
            return False
        self.service.readiness_problems[:] = [
            p for p in self.service.readiness_problems if not p.startswith("object store:")
        ]
        return True

    async def _timer_loop(self) -> None:
        """Retries a failed start, and uploads snapshots that are due by time."""
        started = self.persistence.config_error is None
        while True:
            await self._clock.sleep(CONFIG_RETRY_S if not started else SNAPSHOT_TIMER_S)
            if not started:
                started = await self._try_start()
                continue
            for database_id in self.persistence.snapshots_due():
                self._snapshot_later(database_id)

    async def shutdown(self, deadline_s: float) -> None:
        """Flush what it can before the deadline; the rest stays in the durable outbox."""
        if self._timer is not None:
            self._timer.cancel()
            await asyncio.gather(self._timer, return_exceptions=True)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.persistence.config_error is None:
            await self._flush(deadline_s)
        await self.persistence.close()

    async def _flush(self, deadline_s: float) -> None:
        result = await self.persistence.flush(max(0.0, deadline_s))
        level = self.log.info if result.complete else self.log.warning
        level("s3_flush", uploaded=result.uploaded, remaining=result.remaining, reason=result.reason)

    async def _flush_with_shutdown_loses_writes(self, deadline_s: float) -> None:
        """BUG shutdown-loses-writes (BUGS.md): the process stops without flushing: batches still
        waiting for their upload are abandoned at exit."""

    # the service's calls ------------------------------------------------------------------------
    def record_batch(
        self,
        database_id: str,
        client_site_id: str,
        change_sets: list[dict[str, Any]],
        applied: int,
        skipped: int,
        conflicts: int,
    ) -> None:
        try:
            self.service.failpoints.check("outbox.write")
            self.persistence.record_batch(
                database_id, client_site_id, change_sets, applied, skipped, conflicts
            )
        except Exception as exc:
            # The change is committed locally and is pushed to the other sessions; only its S3
            # copy failed. Failing the apply would not undo it, and its retry applies nothing, so
            # no batch would ever carry it: a snapshot of the database does instead (and the
            # time cadence takes another one if that fails too, as the change still counts).
            self.log.error("s3_batch_record_failed", databaseId=database_id, error=str(exc))
            self._record_failures.inc()
            self.persistence.note_applied(database_id, applied)
            self._snapshot_later(database_id)
            return
        if self.persistence.note_applied(database_id, applied):
            self._snapshot_later(database_id)

    def _snapshot_later(self, database_id: str) -> None:
        task = asyncio.create_task(self._snapshot(database_id), name=f"s3-snapshot-{database_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _snapshot(self, database_id: str) -> None:
        stores = self.service.stores
        try:
            store = await stores.acquire(database_id)
        except Exception as exc:
            self.log.warning("s3_snapshot_skipped", databaseId=database_id, error=str(exc))
            return
        try:
            ticket = self.persistence.begin_snapshot(database_id)
            chunks = [
                c async for c in snapshot_chunks(store, self.service.server_site_id, self.service.failpoints)
            ]
            self.persistence.enqueue_snapshot(database_id, chunks, ticket)
        except Exception as exc:
            self.log.error("s3_snapshot_failed", databaseId=database_id, error=str(exc))
        finally:
            stores.release(database_id)

    async def restore(self, database_id: str, store: DatabaseStore) -> None:
        """Fill a new local store from the object store: newest snapshot, then later batches."""
        try:
            image = await self.persistence.restore(database_id)
        except StoreError as exc:
            raise StoreUnavailable(f"{exc.code}: {exc}") from None
        if image is None:
            return
        now = self._clock.now_ms()
        loaded = 0
        if image.snapshot is not None:
            loaded = store.load_snapshot(image.snapshot.get("chunks", []), now)
        applied = 0
        for batch in image.batches:
            applied += store.apply(decode_change_sets(batch.get("changes", [])), now).applied
        self.log.info(
            "store_restored",
            databaseId=database_id,
            snapshotEntries=loaded,
            batches=len(image.batches),
            applied=applied,
            fromOutbox=image.from_outbox,
        )

    async def _restore_with_backend_crash_on_open(self, database_id: str, store: DatabaseStore) -> None:
        """BUG backend-crash-on-open (BUGS.md): a failure of the object store while a store opens is
        not handled: like an unhandled promise rejection in Node, it takes the process down."""
        try:
            await ObjectStoreBridge.restore(self, database_id, store)
        except StoreUnavailable as exc:
            self.log.error("unhandled_error", databaseId=database_id, error=str(exc))
            os._exit(1)

    def describe(self) -> dict[str, Any]:
        return self.persistence.stats()

    async def check_backend(self) -> str:
        """Ask the object store itself, now, whether it answers (only the heartbeat of the
        heartbeat-stalls-on-backend bug waits on this)."""
        calls = self.persistence.calls
        try:
            await calls.timed("validate", calls.client.validate)  # now, past the breaker
        except CallFailed:
            return "degraded"
        return "ok"

    # backend state ----------------------------------------------------------------------------
    def _on_backend_state(self, old: BackendState, new: BackendState, reason: str) -> None:
        if new.degraded and not old.degraded:
            self.service.backend_state = "degraded"
            self.log.warning("backend_unavailable", reason=reason)
            self.service.notify_all(
                "BACKEND_UNAVAILABLE",
                "error",
                "storage",
                f"object store unavailable: {reason}",
                {"state": new.value},
            )
        elif old.degraded and not new.degraded:
            self.service.backend_state = "ok"
            self.log.info("backend_recovered", reason=reason)
            self.service.notify_all(
                "BACKEND_RECOVERED", "info", "storage", "object store recovered", {"state": new.value}
            )

    def _on_backend_state_with_backend_failure_silent(
        self, old: BackendState, new: BackendState, reason: str
    ) -> None:
        """BUG backend-failure-silent (BUGS.md): the breaker's transitions are only logged; clients
        are never told (no BACKEND_UNAVAILABLE / BACKEND_RECOVERED, heartbeats keep saying "ok")."""
        self.log.warning("backend_state", old=old.value, new=new.value, reason=reason)
