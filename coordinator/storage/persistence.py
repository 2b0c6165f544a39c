"""S3 persistence of the coordinator: the facade the service uses, wiring one part per
responsibility (see docs/s3.md):

- `recording`: the client path never waits on S3: a batch or snapshot is appended to the local
  SQLite outbox (`outbox`) and the call returns.
- `uploader`: uploads go in recording order per database; the object key carries the recording
  time, so key order is apply order even when an outage delays the upload. Nothing recorded is
  dropped: what is not uploaded stays in the outbox, across restarts.
- `s3_calls` and the circuit breaker: while the store fails, the breaker stops calls; every
  state change is reported through `on_backend_state` so the service can tell clients
  (BACKEND_UNAVAILABLE / BACKEND_RECOVERED).
- `snapshot_cadence`, `retention`, `restore`: when to snapshot, how many to keep, and how a
  database missing from disk comes back.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from coordinator.clock import Clock, SystemClock
from coordinator.ops.bugs import Bugs, BugSwaps
from coordinator.ops.logging import EventLog
from coordinator.storage.circuit_breaker import BackendState, CircuitBreaker
from coordinator.storage.errors import S3ConfigError, StoreCorrupted, StoreError, StoreUnavailable
from coordinator.storage.outbox import Outbox
from coordinator.storage.recording import Recorder, SnapshotTicket
from coordinator.storage.restore import Restore, RestoredImage
from coordinator.storage.retention import SnapshotRetention
from coordinator.storage.s3_calls import MetricsSink, ObjectStoreCalls
from coordinator.storage.s3_store import S3Client, S3Config, classify
from coordinator.storage.snapshot_cadence import SnapshotCadence
from coordinator.storage.uploader import FlushResult, Uploader

__all__ = [
    "BackendState",
    "Clock",
    "FlushResult",
    "MetricsSink",
    "ObjectStorePersistence",
    "RestoredImage",
    "S3Config",
    "S3ConfigError",
    "SnapshotTicket",
    "StoreCorrupted",
    "StoreError",
    "StoreUnavailable",
    "SystemClock",
]


class ObjectStorePersistence:
    """Batches and snapshots of every database to S3 through a durable outbox.

    Use from the event loop thread only. `record_batch`, `note_applied`, `begin_snapshot` and
    `enqueue_snapshot` are synchronous and never touch the network.
    """

    BUG_SWAPS: ClassVar[BugSwaps] = {
        "no-circuit-breaker": ("record_batch", "_record_batch_with_no_circuit_breaker"),
    }

    def __init__(
        self,
        config: S3Config,
        outbox_path: Path,
        clock: Clock,
        on_backend_state: Callable[[BackendState, BackendState, str], None] | None = None,
        metrics: MetricsSink | None = None,
        rng: random.Random | None = None,
        client: S3Client | None = None,
        bugs: Bugs | None = None,
    ) -> None:
        bugs = bugs if bugs is not None else Bugs()
        self.config = config
        self._clock = clock
        self._on_backend_state = on_backend_state
        self._log = EventLog()
        self._outbox = Outbox(outbox_path, synchronous=config.outbox_synchronous)
        self.breaker = CircuitBreaker(
            clock, config.breaker_failure_threshold, config.breaker_open_s, on_transition=self._transition
        )
        self.calls = ObjectStoreCalls(
            config, client if client is not None else S3Client(config), clock, self.breaker, metrics
        )
        self._retention = SnapshotRetention(self.calls)
        self._uploader = Uploader(
            self._outbox,
            self.calls,
            self._retention,
            clock,
            rng if rng is not None else random.Random(),
            metrics,
            bugs,
        )
        self._recorder = Recorder(config, self._outbox, clock)
        self._cadence = SnapshotCadence(config, clock)
        self._restore = Restore(self._outbox, self.calls, bugs)
        self._closed = False
        self.config_error: str | None = None
        self._direct: set[asyncio.Task[Any]] = set()
        bugs.apply(self, self.BUG_SWAPS)

    @property
    def last_error(self) -> str | None:
        return self.calls.last_error

    # --- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        """Check endpoint, credentials and bucket with one real call, then start the uploader.

        Raises S3ConfigError naming the problem; the uploader is then not running and `start()`
        may be called again. Entries left in the outbox by an earlier run are uploaded first.
        """
        self._check_open()
        if self._uploader.started:
            return
        started = self._clock.monotonic()
        try:
            await self.calls.in_thread(self.calls.client.validate)
        except Exception as exc:
            failure = classify(exc, self.config)
            self.calls.count_request("validate", failure.kind, started)
            self.config_error = failure.message
            self.calls.last_error = failure.message
            raise S3ConfigError(failure.kind, failure.message) from exc
        self.calls.count_request("validate", "ok", started)
        self.config_error = None
        self._uploader.start()

    async def flush(self, deadline_s: float) -> FlushResult:
        """Upload what can be uploaded within `deadline_s` (graceful shutdown)."""
        self._check_open()
        return await self._uploader.flush(deadline_s)

    async def close(self) -> None:
        """Stop the uploader and release everything. In-flight uploads are abandoned: their
        entries are still in the outbox and are uploaded again (same key, same bytes) next time."""
        if self._closed:
            return
        self._closed = True
        for task in self._direct:
            task.cancel()
        await asyncio.gather(self._uploader.close(), *self._direct, return_exceptions=True)
        self.calls.close()
        self._outbox.close()

    # --- client path (synchronous, local only) -------------------------------------------------

    def record_batch(
        self,
        database_id: str,
        client_site_id: str,
        change_sets: list[dict[str, Any]],
        applied: int,
        skipped: int,
        conflicts: int,
    ) -> str | None:
        """Durably queue one batch object; returns its object key, or None when nothing was
        applied (only applies that applied something make a batch)."""
        self._check_open()
        if applied <= 0:
            return None
        entry = self._recorder.batch(database_id, client_site_id, change_sets, applied, skipped, conflicts)
        self._uploader.queued(database_id)
        return entry.object_key

    def _record_batch_with_no_circuit_breaker(
        self,
        database_id: str,
        client_site_id: str,
        change_sets: list[dict[str, Any]],
        applied: int,
        skipped: int,
        conflicts: int,
    ) -> str | None:
        """BUG no-circuit-breaker (BUGS.md): every apply also uploads its batch to the object store
        at once, whatever the store did before: during an outage each apply calls it again."""
        key = ObjectStorePersistence.record_batch(
            self, database_id, client_site_id, change_sets, applied, skipped, conflicts
        )
        entry = next((e for e in self._outbox.pending(database_id) if e.object_key == key), None)
        if entry is not None:
            client = self.calls.client
            task = asyncio.create_task(
                self.calls.attempt(
                    "put_object", client.put_object, entry.object_key, entry.body, "application/json"
                ),
                name=f"s3-direct-{database_id}",
            )
            self._direct.add(task)
            task.add_done_callback(self._direct.discard)
        return key

    def note_applied(self, database_id: str, applied: int) -> bool:
        """Count applied changes; True (once, then the count restarts) when a snapshot is due:
        `snapshot_every_changes` changes, or `snapshot_every_s` seconds with at least one."""
        self._check_open()
        return self._cadence.note_applied(database_id, applied)

    def snapshots_due(self) -> list[str]:
        """Databases whose time-based snapshot is due without a new apply (for a periodic timer)."""
        return self._cadence.due()

    def release(self, database_id: str) -> None:
        """Forget per-database state when the service closes that database (no state leak);
        entries still in the outbox are unaffected and keep uploading."""
        self._cadence.release(database_id)
        self._uploader.release(database_id)

    def begin_snapshot(self, database_id: str) -> SnapshotTicket:
        """Reserve the snapshot's key time: call right before reading the state to snapshot."""
        self._check_open()
        return self._recorder.begin_snapshot(database_id)

    def enqueue_snapshot(
        self, database_id: str, chunks: list[dict[str, Any]], ticket: SnapshotTicket | None = None
    ) -> str:
        """Durably queue a snapshot (wire-form chunks, header first). Without a ticket its key time
        is now, which is right only if no batch was recorded since the state was read."""
        self._check_open()
        entry = self._recorder.snapshot(database_id, chunks, ticket)
        self._cadence.taken(database_id)
        self._uploader.queued(database_id)
        return entry.object_key

    async def restore(self, database_id: str) -> RestoredImage | None:
        """See `Restore.image`: newest snapshot plus every later batch, outbox entries merged in."""
        self._check_open()
        return await self._restore.image(database_id)

    # --- observability --------------------------------------------------------------------------

    @property
    def state(self) -> BackendState:
        return self.breaker.state

    @property
    def degraded(self) -> bool:
        return self.breaker.state.degraded

    def outbox_depth(self) -> int:
        return self._outbox.depth()

    def stats(self) -> dict[str, Any]:
        """Everything /metrics, /ready and /debug/resources need, as plain data."""
        oldest = self._outbox.oldest_created_ms()
        now_ms = self._clock.now_ms()
        state = self.breaker.state
        return {
            "backend_state": state.value,
            "backend_state_gauge": state.gauge,
            "degraded": state.degraded,
            "breaker_transitions": self.breaker.transitions,
            "breaker_rejections": self.breaker.rejections,
            "breaker_consecutive_failures": self.breaker.consecutive_failures,
            "outbox_depth": self._outbox.depth(),
            "outbox_oldest_age_s": None if oldest is None else max(0.0, (now_ms - oldest) / 1000),
            "recorded": dict(self._recorder.recorded),
            "uploaded": dict(self._uploader.uploads),
            "s3_requests": self.calls.requests_by_operation(),
            "s3_http_attempts": self.calls.client.http_attempts,
            "snapshots_deleted": self._retention.deleted,
            "retention_failures": self._retention.failures,
            "uploads_in_flight": self._uploader.in_flight,
            "uploader_running": self._uploader.running,
            "tracked_databases": len(self._cadence),
            "last_error": self.last_error,
            "config_error": self.config_error,
        }

    # --- helpers --------------------------------------------------------------------------------

    def _transition(self, old: BackendState, new: BackendState, reason: str) -> None:
        self._log.warning("s3_breaker_transition", old=old.value, new=new.value, reason=reason)
        # The uploader must re-plan: an open breaker (even one opened by a restore) needs a probe
        # at its probe time, or it would report "degraded" until the next upload.
        self._uploader.wake()
        if self._on_backend_state is not None:
            try:
                self._on_backend_state(old, new, reason)
            except Exception as exc:
                self._log.error("s3_backend_state_callback_failed", exc_info=True, error=str(exc))

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("ObjectStorePersistence is closed")
