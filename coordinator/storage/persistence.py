"""S3 persistence of the coordinator: durable outbox, ordered background uploads, circuit breaker,
snapshots with retention, restore, and a graceful-shutdown flush.

The rules it keeps (see docs/s3.md):

- The client path never waits on S3: `record_batch` appends to a local SQLite outbox and returns.
- Uploads go in recording order per database; the object key carries the recording time, so key
  order is apply order even when an outage delays the upload.
- While the store fails, the breaker stops calls; every state change is reported through
  `on_backend_state` so the service can tell clients (BACKEND_UNAVAILABLE / BACKEND_RECOVERED).
- Nothing recorded is dropped: what is not uploaded stays in the outbox, across restarts.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import gzip
import json
import logging
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, TypeVar

from coordinator.ops.bugs import Bugs, BugSwaps
from coordinator.storage.circuit_breaker import BackendState, CircuitBreaker
from coordinator.storage.outbox import BATCH, SNAPSHOT, Outbox, OutboxEntry
from coordinator.storage.s3_store import (
    S3Client,
    S3Config,
    S3Failure,
    batch_key,
    batches_prefix,
    classify,
    iso_timestamp,
    key_time_part,
    snapshot_key,
    snapshots_prefix,
)

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

log = logging.getLogger("coordinator.storage.s3")

T = TypeVar("T")


class Clock(Protocol):
    """The little this module needs from the coordinator's clock (real or virtual)."""

    def now_ms(self) -> int: ...

    def monotonic(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """Wall and monotonic time of the machine."""

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class MetricsSink(Protocol):
    """Optional push-style hooks; everything is also readable at any time through `stats()`."""

    def s3_request(self, operation: str, outcome: str, seconds: float) -> None: ...

    def outbox_depth(self, depth: int) -> None: ...


class StoreError(Exception):
    """Base of the errors a client may be told about; `code` is the protocol-level error code."""

    code = "STORE_ERROR"


class StoreUnavailable(StoreError):
    """The object store cannot be reached now (down, or the breaker is open): retry later."""

    code = "STORE_UNAVAILABLE"


class StoreCorrupted(StoreError):
    """An object in the store cannot be parsed: retrying will not help."""

    code = "STORE_CORRUPTED"


class S3ConfigError(StoreError):
    """`start()` found the configuration unusable; `problem` says which part
    (bucket_not_found, endpoint_unreachable, credentials_rejected, no_credentials, access_denied,
    timeout, ...) and the message says it in words, for the log and for /ready."""

    code = "STORE_MISCONFIGURED"

    def __init__(self, problem: str, message: str) -> None:
        super().__init__(message)
        self.problem = problem


@dataclass(frozen=True)
class SnapshotTicket:
    """A snapshot's key time and id, reserved before the service starts reading its state, so a
    batch recorded while the snapshot is being read sorts after it and is replayed on restore."""

    database_id: str
    key_ms: int
    snapshot_id: str


@dataclass
class RestoredImage:
    """What restore found: the newest snapshot (or none) and every batch after it, in key order."""

    database_id: str
    snapshot: dict[str, Any] | None
    snapshot_key: str | None
    batches: list[dict[str, Any]]
    batch_keys: list[str]
    from_outbox: int = 0  # how many of those came from entries not yet uploaded


@dataclass(frozen=True)
class FlushResult:
    uploaded: int
    remaining: int
    elapsed_s: float
    complete: bool
    reason: str


@dataclass
class _SnapshotTracker:
    changes: int = 0
    since: float = 0.0


@dataclass
class _DatabaseUpload:
    failures: int = 0
    retry_at: float = 0.0


@dataclass
class _Counters:
    requests: Counter[tuple[str, str]] = field(default_factory=Counter)
    uploads: Counter[str] = field(default_factory=Counter)
    snapshots_deleted: int = 0
    retention_failures: int = 0
    recorded: Counter[str] = field(default_factory=Counter)


class ObjectStorePersistence:
    """Batches and snapshots of every database to S3 through a durable outbox.

    Use from the event loop thread only. `record_batch`, `note_applied`, `begin_snapshot` and
    `enqueue_snapshot` are synchronous and never touch the network.
    """

    BUG_SWAPS: ClassVar[BugSwaps] = {
        "no-circuit-breaker": ("record_batch", "_record_batch_with_no_circuit_breaker"),
        "outage-loses-writes": ("_upload_failed", "_upload_failed_with_outage_loses_writes"),
        "restore-mixes-tenants": ("_is_own", "_is_own_with_restore_mixes_tenants"),
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
        self.config = config
        self._clock = clock
        self._metrics = metrics
        self._on_backend_state = on_backend_state
        self._rng = rng if rng is not None else random.Random()
        self._outbox = Outbox(outbox_path, synchronous=config.outbox_synchronous)
        self._client = client if client is not None else S3Client(config)
        self._wake = asyncio.Event()
        self._progress = asyncio.Event()
        self.breaker = CircuitBreaker(
            clock, config.breaker_failure_threshold, config.breaker_open_s, on_transition=self._transition
        )
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=config.upload_concurrency + 2, thread_name_prefix="s3"
        )
        self._pending: dict[str, None] = dict.fromkeys(sorted(self._outbox.databases()))
        self._uploads: dict[str, _DatabaseUpload] = {}
        self._inflight: dict[str, asyncio.Task[None]] = {}
        self._probe_task: asyncio.Task[None] | None = None
        self._trackers: dict[str, _SnapshotTracker] = {}
        self._counters = _Counters()
        self._runner: asyncio.Task[None] | None = None
        self._closed = False
        self.last_error: str | None = None
        self.config_error: str | None = None
        self._direct: set[asyncio.Task[Any]] = set()
        (bugs if bugs is not None else Bugs()).apply(self, self.BUG_SWAPS)

    # --- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        """Check endpoint, credentials and bucket with one real call, then start the uploader.

        Raises S3ConfigError naming the problem; the uploader is then not running and `start()`
        may be called again. Entries left in the outbox by an earlier run are uploaded first.
        """
        self._check_open()
        if self._runner is not None:
            return
        started = self._clock.monotonic()
        try:
            await self._in_thread(self._client.validate)
        except Exception as exc:
            failure = classify(exc, self.config)
            self._count_request("validate", failure.kind, started)
            self.config_error = failure.message
            self.last_error = failure.message
            raise S3ConfigError(failure.kind, failure.message) from exc
        self._count_request("validate", "ok", started)
        self.config_error = None
        self._runner = asyncio.create_task(self._run(), name="s3-uploader")
        self._wake.set()

    async def flush(self, deadline_s: float) -> FlushResult:
        """Upload what can be uploaded within `deadline_s` (graceful shutdown).

        Gives up early when the breaker is open past the deadline: no call could be made anyway.
        What remains stays in the outbox and goes up after the next start.
        """
        self._check_open()
        started = self._clock.monotonic()
        deadline = started + deadline_s
        uploaded_before = sum(self._counters.uploads.values())
        for state in self._uploads.values():
            state.retry_at = 0.0  # no backoff wait while draining; the breaker still applies
        self._wake.set()
        reason = "drained"
        while self._outbox.depth() > 0:
            now = self._clock.monotonic()
            if self._runner is None or self._runner.done():
                reason = "uploader not running"
                break
            if now >= deadline:
                reason = "deadline reached"
                break
            if self.breaker.state is BackendState.OPEN and self.breaker.probe_at >= deadline:
                reason = f"object store unavailable: {self.breaker.last_reason}"
                break
            self._progress.clear()
            await self._wait(self._progress, deadline - now)
        remaining = self._outbox.depth()
        return FlushResult(
            uploaded=sum(self._counters.uploads.values()) - uploaded_before,
            remaining=remaining,
            elapsed_s=self._clock.monotonic() - started,
            complete=remaining == 0,
            reason="drained" if remaining == 0 else reason,
        )

    async def close(self) -> None:
        """Stop the uploader and release everything. In-flight uploads are abandoned: their
        entries are still in the outbox and are uploaded again (same key, same bytes) next time."""
        if self._closed:
            return
        self._closed = True
        tasks = [
            t
            for t in (self._runner, self._probe_task, *self._inflight.values(), *self._direct)
            if t is not None
        ]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._runner = None
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._client.close()
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
        batch_id = str(uuid.uuid4())

        def render(key_ms: int) -> tuple[str, bytes]:
            body = {
                "batchId": batch_id,
                "databaseId": database_id,
                "timestamp": iso_timestamp(key_ms),
                "clientId": client_site_id,
                "changes": change_sets,
                "metadata": {"applied": applied, "skipped": skipped, "conflicts": conflicts},
            }
            return batch_key(self.config.prefix, database_id, key_ms, batch_id), _json_bytes(body)

        entry = self._outbox.append(database_id, BATCH, self._clock.now_ms(), render)
        self._counters.recorded[BATCH] += 1
        self._queued(database_id)
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
            task = asyncio.create_task(
                self._attempt(
                    "put_object", self._client.put_object, entry.object_key, entry.body, "application/json"
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
        tracker = self._trackers.get(database_id)
        now = self._clock.monotonic()
        if tracker is None:
            tracker = self._trackers[database_id] = _SnapshotTracker(since=now)
        tracker.changes += max(0, applied)
        return self._take_if_due(tracker, now)

    def snapshots_due(self) -> list[str]:
        """Databases whose time-based snapshot is due without a new apply (for a periodic timer)."""
        now = self._clock.monotonic()
        return [db for db, tracker in self._trackers.items() if self._take_if_due(tracker, now)]

    def release(self, database_id: str) -> None:
        """Forget per-database state when the service closes that database (no state leak);
        entries still in the outbox are unaffected and keep uploading."""
        self._trackers.pop(database_id, None)
        if database_id not in self._pending and database_id not in self._inflight:
            self._uploads.pop(database_id, None)

    def begin_snapshot(self, database_id: str) -> SnapshotTicket:
        """Reserve the snapshot's key time: call right before reading the state to snapshot."""
        self._check_open()
        key_ms = self._outbox.reserve_key_ms(self._clock.now_ms())
        return SnapshotTicket(database_id, key_ms, str(uuid.uuid4()))

    def enqueue_snapshot(
        self, database_id: str, chunks: list[dict[str, Any]], ticket: SnapshotTicket | None = None
    ) -> str:
        """Durably queue a snapshot (wire-form chunks, header first). Without a ticket its key time
        is now, which is right only if no batch was recorded since the state was read."""
        self._check_open()
        if ticket is not None and ticket.database_id != database_id:
            raise ValueError(f"snapshot ticket is for {ticket.database_id!r}, not {database_id!r}")
        object_id = ticket.snapshot_id if ticket is not None else str(uuid.uuid4())
        snapshot_id = object_id
        if chunks and isinstance(chunks[0].get("snapshotId"), str):
            snapshot_id = chunks[0]["snapshotId"]

        def render(key_ms: int) -> tuple[str, bytes]:
            body = {
                "snapshotId": snapshot_id,
                "databaseId": database_id,
                "timestamp": iso_timestamp(key_ms),
                "chunks": chunks,
            }
            # mtime=0: the same snapshot always gzips to the same bytes.
            data = gzip.compress(_json_bytes(body), mtime=0)
            return snapshot_key(self.config.prefix, database_id, key_ms, object_id), data

        reserved = ticket.key_ms if ticket is not None else None
        entry = self._outbox.append(database_id, SNAPSHOT, self._clock.now_ms(), render, reserved_ms=reserved)
        self._counters.recorded[SNAPSHOT] += 1
        tracker = self._trackers.get(database_id)
        if tracker is not None:
            tracker.changes = 0
            tracker.since = self._clock.monotonic()
        self._queued(database_id)
        return entry.object_key

    # --- restore ------------------------------------------------------------------------------

    async def restore(self, database_id: str) -> RestoredImage | None:
        """Newest snapshot plus every batch at or after its time, in key order; None when neither
        S3 nor the outbox has anything. Raises StoreUnavailable when S3 is down or the breaker is
        open, StoreCorrupted when an object cannot be parsed.

        Entries still in the outbox are merged in, so a restore during a backlog loses nothing.
        Batches recorded in the snapshot's millisecond are kept too: applying a change twice
        changes nothing, missing one would lose it.
        """
        self._check_open()
        local = self._outbox.pending(database_id)
        local_snapshots = {e.object_key: e.body for e in local if e.kind == SNAPSHOT}
        local_batches = {e.object_key: e.body for e in local if e.kind == BATCH}

        remote_snapshots = await self._guarded(
            "list_objects_v2", self._client.list_keys, snapshots_prefix(self.config.prefix, database_id)
        )
        snapshot: dict[str, Any] | None = None
        chosen: str | None = None
        for key in sorted(set(remote_snapshots) | set(local_snapshots), reverse=True):
            if key in local_snapshots:
                raw = local_snapshots[key]
            else:
                raw = await self._guarded("get_object", self._client.get_object, key)
            body = _parse(raw, key)
            if not self._is_own(body, database_id):
                continue  # another databaseId with the same storage path: not "the newest"
            snapshot, chosen = body, key
            break

        bprefix = batches_prefix(self.config.prefix, database_id)
        start_after = bprefix + key_time_part(chosen) if chosen is not None else None
        remote_batches = await self._guarded("list_objects_v2", self._client.list_keys, bprefix, start_after)
        local_after = {k for k in local_batches if start_after is None or k > start_after}
        keys = sorted(set(remote_batches) | local_after)
        batches: list[dict[str, Any]] = []
        batch_keys: list[str] = []
        step = self.config.upload_concurrency
        for start in range(0, len(keys), step):
            group = keys[start : start + step]
            raws = await asyncio.gather(
                *(
                    _ready(local_batches[k])
                    if k in local_batches
                    else self._guarded("get_object", self._client.get_object, k)
                    for k in group
                )
            )
            for key, raw in zip(group, raws, strict=True):
                body = _parse(raw, key)
                if self._is_own(body, database_id):
                    batches.append(body)
                    batch_keys.append(key)
        if snapshot is None and not batches:
            return None
        from_outbox = sum(1 for k in batch_keys if k in local_batches)
        from_outbox += 1 if chosen in local_snapshots else 0
        return RestoredImage(database_id, snapshot, chosen, batches, batch_keys, from_outbox)

    def _is_own(self, body: dict[str, Any], database_id: str) -> bool:
        """Storage paths are not one-to-one (PROTOCOL.md section 5: `a.b` and `a_b` share one), so
        a restore keeps only the objects that name its own databaseId."""
        return body.get("databaseId") == database_id

    def _is_own_with_restore_mixes_tenants(self, body: dict[str, Any], database_id: str) -> bool:
        """BUG restore-mixes-tenants (BUGS.md, PROTOCOL.md section 5): every object under the
        storage path is taken as the database's own, so restoring `a.b` loads `a_b`'s changes
        (and may pick `a_b`'s snapshot as the newest)."""
        return True

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
        requests: dict[str, dict[str, int]] = {}
        for (operation, outcome), count in sorted(self._counters.requests.items()):
            requests.setdefault(operation, {})[outcome] = count
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
            "recorded": dict(self._counters.recorded),
            "uploaded": dict(self._counters.uploads),
            "s3_requests": requests,
            "s3_http_attempts": self._client.http_attempts,
            "snapshots_deleted": self._counters.snapshots_deleted,
            "retention_failures": self._counters.retention_failures,
            "uploads_in_flight": len(self._inflight),
            "uploader_running": self._runner is not None and not self._runner.done(),
            "tracked_databases": len(self._trackers),
            "last_error": self.last_error,
            "config_error": self.config_error,
        }

    # --- uploader -------------------------------------------------------------------------------

    async def _run(self) -> None:
        """Dispatch uploads until closed; sleeps until woken by a new entry, a finished upload, a
        backoff expiring or the breaker's probe time."""
        while not self._closed:
            self._wake.clear()
            try:
                self._dispatch()
                delay = self._next_wakeup()
            except Exception as exc:  # a local failure (disk full, outbox locked): retry later
                log.exception("S3 uploader dispatch failed")
                self.last_error = f"uploader: {type(exc).__name__}: {exc}"
                delay = self.config.backoff_max_s
            await self._wait(self._wake, delay)

    def _dispatch(self) -> None:
        now = self._clock.monotonic()
        state = self.breaker.state
        if state is BackendState.OPEN:
            return
        free = self.config.upload_concurrency - len(self._inflight)
        for database_id in list(self._pending):
            if free <= 0:
                break
            if database_id in self._inflight:
                continue
            upload = self._uploads.get(database_id)
            if upload is not None and upload.retry_at > now:
                continue
            entry = self._outbox.head(database_id)
            if entry is None:
                del self._pending[database_id]
                continue
            if not self.breaker.try_acquire():
                return  # half-open and the probe is already out
            # Round robin: this database goes to the back of the line.
            del self._pending[database_id]
            self._pending[database_id] = None
            task = asyncio.create_task(self._upload(entry), name=f"s3-upload-{database_id}")
            self._inflight[database_id] = task
            free -= 1
        if (
            self.breaker.state is BackendState.HALF_OPEN
            and not self._inflight
            and self._probe_task is None
            and self.breaker.try_acquire()
        ):
            # Nothing to upload, but the breaker is waiting for a probe: without one it would
            # report "degraded" forever after the store came back.
            self._probe_task = asyncio.create_task(self._probe(), name="s3-probe")

    def _next_wakeup(self) -> float | None:
        now = self._clock.monotonic()
        times: list[float] = []
        if self.breaker.state is BackendState.OPEN:
            times.append(self.breaker.probe_at)
        else:
            for database_id in self._pending:
                upload = self._uploads.get(database_id)
                if database_id not in self._inflight and upload is not None and upload.retry_at > now:
                    times.append(upload.retry_at)
        return max(0.0, min(times) - now) if times else None

    async def _upload(self, entry: OutboxEntry) -> None:
        database_id = entry.database_id
        upload = self._uploads.setdefault(database_id, _DatabaseUpload())
        content_type = "application/json" if entry.kind == BATCH else "application/gzip"
        try:
            failure = await self._attempt(
                "put_object", self._client.put_object, entry.object_key, entry.body, content_type
            )
            if failure is not None:
                self._upload_failed(entry, upload, failure)
                return
            self._outbox.remove(entry.seq)
            upload.failures = 0
            upload.retry_at = 0.0
            self._counters.uploads[entry.kind] += 1
            if self._metrics is not None:
                self._metrics.outbox_depth(self._outbox.depth())
            if entry.kind == SNAPSHOT:
                await self._apply_retention(database_id)
        except Exception as exc:  # local (outbox) failure: the entry stays and is retried
            log.exception("S3 upload bookkeeping failed for %s", entry.object_key)
            self.last_error = f"uploader: {type(exc).__name__}: {exc}"
            upload.retry_at = self._clock.monotonic() + self.config.backoff_max_s
        finally:
            self._inflight.pop(database_id, None)
            self._wake.set()
            self._progress.set()

    def _upload_failed(self, entry: OutboxEntry, upload: _DatabaseUpload, failure: S3Failure) -> None:
        """The entry stays at the head of its database's queue and is retried after a backoff."""
        self._outbox.mark_failed(entry.seq, failure.message)
        upload.failures += 1
        upload.retry_at = self._clock.monotonic() + self._backoff(upload.failures)

    def _upload_failed_with_outage_loses_writes(
        self, entry: OutboxEntry, upload: _DatabaseUpload, failure: S3Failure
    ) -> None:
        """BUG outage-loses-writes (BUGS.md): a failed upload is given up at once: the batch leaves
        the outbox and never reaches the object store."""
        log.warning("S3 upload of %s failed, dropped: %s", entry.object_key, failure.message)
        self._outbox.remove(entry.seq)

    async def ping(self) -> bool:
        """One call to the object store, now, past the breaker: True when it answered."""
        try:
            await self._timed("validate", self._client.validate)
        except _CallFailed:
            return False
        return True

    async def _probe(self) -> None:
        try:
            await self._attempt("validate", self._client.validate)
        finally:
            self._probe_task = None
            self._wake.set()
            self._progress.set()

    async def _apply_retention(self, database_id: str) -> None:
        """Keep the newest `max_retained_snapshots`. Batches are never deleted: restore only needs
        those after the newest snapshot, and the full batch history stays auditable. Best effort:
        a failure here leaves extra snapshots, removed after the next snapshot."""
        if not self.breaker.try_acquire():
            return
        keys = await self._attempt_value(
            "list_objects_v2", self._client.list_keys, snapshots_prefix(self.config.prefix, database_id)
        )
        if keys is None:
            self._counters.retention_failures += 1
            return
        excess = sorted(keys)[: max(0, len(keys) - self.config.max_retained_snapshots)]
        if not excess or not self.breaker.try_acquire():
            return
        failure = await self._attempt("delete_objects", self._client.delete_keys, excess)
        if failure is None:
            self._counters.snapshots_deleted += len(excess)
        else:
            self._counters.retention_failures += 1

    def _backoff(self, failures: int) -> float:
        """Exponential with equal jitter: between half and all of min(max, base * 2^(n-1))."""
        ceiling = min(self.config.backoff_max_s, self.config.backoff_base_s * 2.0 ** min(failures - 1, 30))
        return ceiling / 2 + self._rng.random() * ceiling / 2

    # --- calls ----------------------------------------------------------------------------------

    async def _attempt(self, operation: str, fn: Callable[..., Any], *args: Any) -> S3Failure | None:
        """One store call whose breaker permit is already taken; returns the failure, if any."""
        try:
            await self._timed(operation, fn, *args)
        except _CallFailed as failed:
            return failed.failure
        return None

    async def _attempt_value(self, operation: str, fn: Callable[..., T], *args: Any) -> T | None:
        try:
            return await self._timed(operation, fn, *args)
        except _CallFailed:
            return None

    async def _guarded(self, operation: str, fn: Callable[..., T], *args: Any) -> T:
        """A store call for a caller waiting on it (restore): refused at once while the breaker is
        open, StoreUnavailable on failure."""
        if not self.breaker.try_acquire():
            reason = self.breaker.last_reason
            raise StoreUnavailable(f"object store unavailable (circuit breaker open: {reason})")
        try:
            return await self._timed(operation, fn, *args)
        except _CallFailed as failed:
            raise StoreUnavailable(f"object store unavailable: {failed.failure.message}") from failed

    async def _timed(self, operation: str, fn: Callable[..., T], *args: Any) -> T:
        started = self._clock.monotonic()
        try:
            limit = self.config.operation_timeout_s
            result = await asyncio.wait_for(self._in_thread(fn, *args), timeout=limit)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            failure = classify(exc, self.config)
            self._count_request(operation, failure.kind, started)
            self.last_error = f"{operation}: {failure.message}"
            log.warning("S3 %s failed: %s", operation, failure.message)
            self.breaker.record_failure(f"{operation}: {failure.kind}")
            raise _CallFailed(failure) from exc
        self._count_request(operation, "ok", started)
        self.breaker.record_success()
        return result

    async def _in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args))

    # --- helpers --------------------------------------------------------------------------------

    def _count_request(self, operation: str, outcome: str, started: float) -> None:
        self._counters.requests[(operation, outcome)] += 1
        if self._metrics is not None:
            self._metrics.s3_request(operation, outcome, self._clock.monotonic() - started)

    def _transition(self, old: BackendState, new: BackendState, reason: str) -> None:
        log.warning("object store %s -> %s: %s", old.value, new.value, reason)
        # The uploader must re-plan: an open breaker (even one opened by a restore) needs a probe
        # at its probe time, or it would report "degraded" until the next upload.
        self._wake.set()
        if self._on_backend_state is not None:
            try:
                self._on_backend_state(old, new, reason)
            except Exception:
                log.exception("on_backend_state callback failed")

    def _queued(self, database_id: str) -> None:
        self._pending.setdefault(database_id, None)
        if self._metrics is not None:
            self._metrics.outbox_depth(self._outbox.depth())
        self._wake.set()

    def _take_if_due(self, tracker: _SnapshotTracker, now: float) -> bool:
        due = tracker.changes >= self.config.snapshot_every_changes or (
            tracker.changes > 0 and now - tracker.since >= self.config.snapshot_every_s
        )
        if due:
            tracker.changes = 0
            tracker.since = now
        return due

    async def _wait(self, event: asyncio.Event, limit_s: float | None) -> None:
        """Until `event` is set or `limit_s` seconds of the injected clock have passed."""
        if event.is_set():
            return
        waiter = asyncio.ensure_future(event.wait())
        waits: set[asyncio.Future[Any]] = {waiter}
        if limit_s is not None:
            waits.add(asyncio.ensure_future(self._clock.sleep(limit_s)))
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pending in waits:
                pending.cancel()

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("ObjectStorePersistence is closed")


class _CallFailed(Exception):
    def __init__(self, failure: S3Failure) -> None:
        super().__init__(failure.message)
        self.failure = failure


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _parse(raw: bytes, key: str) -> dict[str, Any]:
    """A batch (JSON) or snapshot (gzip of JSON) object; plain JSON snapshots are accepted too."""
    try:
        data = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
        value = json.loads(data)
    except (OSError, EOFError, ValueError) as exc:
        raise StoreCorrupted(f"object {key} is not valid JSON/gzip: {exc}") from exc
    if not isinstance(value, dict):
        raise StoreCorrupted(f"object {key} is not a JSON object")
    return value


async def _ready(value: T) -> T:
    return value
