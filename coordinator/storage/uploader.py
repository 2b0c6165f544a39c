"""The background uploader: outbox entries go up in recording order per database, databases take
turns, a failed upload is retried after a backoff, and the breaker's half-open probe is sent
when nothing else would test the store."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from dataclasses import dataclass
from typing import Any, ClassVar

from coordinator.clock import Clock
from coordinator.ops.bugs import Bugs, BugSwaps
from coordinator.ops.logging import EventLog
from coordinator.storage.circuit_breaker import BackendState
from coordinator.storage.outbox import BATCH, SNAPSHOT, Outbox, OutboxEntry
from coordinator.storage.retention import SnapshotRetention
from coordinator.storage.s3_calls import MetricsSink, ObjectStoreCalls
from coordinator.storage.s3_store import S3Failure


@dataclass
class _DatabaseUpload:
    failures: int = 0
    retry_at: float = 0.0


@dataclass(frozen=True)
class FlushResult:
    uploaded: int
    remaining: int
    elapsed_s: float
    complete: bool
    reason: str


class Uploader:
    BUG_SWAPS: ClassVar[BugSwaps] = {
        "outage-loses-writes": ("_upload_failed", "_upload_failed_with_outage_loses_writes"),
    }

    def __init__(
        self,
        outbox: Outbox,
        calls: ObjectStoreCalls,
        retention: SnapshotRetention,
        clock: Clock,
        rng: random.Random,
        metrics: MetricsSink | None,
        bugs: Bugs,
    ) -> None:
        self.config = calls.config
        self.uploads: Counter[str] = Counter()
        self._outbox = outbox
        self._calls = calls
        self._breaker = calls.breaker
        self._retention = retention
        self._clock = clock
        self._rng = rng
        self._metrics = metrics
        self._log = EventLog()
        self._wake = asyncio.Event()
        self._progress = asyncio.Event()
        self._pending: dict[str, None] = dict.fromkeys(sorted(outbox.databases()))
        self._databases: dict[str, _DatabaseUpload] = {}
        self._inflight: dict[str, asyncio.Task[None]] = {}
        self._probe_task: asyncio.Task[None] | None = None
        self._runner: asyncio.Task[None] | None = None
        self._closed = False
        bugs.apply(self, self.BUG_SWAPS)

    # --- lifecycle --------------------------------------------------------------------------------

    @property
    def started(self) -> bool:
        return self._runner is not None

    @property
    def running(self) -> bool:
        return self._runner is not None and not self._runner.done()

    @property
    def in_flight(self) -> int:
        return len(self._inflight)

    def start(self) -> None:
        self._runner = asyncio.create_task(self._run(), name="s3-uploader")
        self._wake.set()

    async def flush(self, deadline_s: float) -> FlushResult:
        """Upload what can be uploaded within `deadline_s` (graceful shutdown).

        Gives up early when the breaker is open past the deadline: no call could be made anyway.
        What remains stays in the outbox and goes up after the next start.
        """
        started = self._clock.monotonic()
        deadline = started + deadline_s
        uploaded_before = sum(self.uploads.values())
        for state in self._databases.values():
            state.retry_at = 0.0  # no backoff wait while draining; the breaker still applies
        self._wake.set()
        reason = "drained"
        while self._outbox.depth() > 0:
            now = self._clock.monotonic()
            if not self.running:
                reason = "uploader not running"
                break
            if now >= deadline:
                reason = "deadline reached"
                break
            if self._breaker.state is BackendState.OPEN and self._breaker.probe_at >= deadline:
                reason = f"object store unavailable: {self._breaker.last_reason}"
                break
            self._progress.clear()
            await self._wait(self._progress, deadline - now)
        remaining = self._outbox.depth()
        return FlushResult(
            uploaded=sum(self.uploads.values()) - uploaded_before,
            remaining=remaining,
            elapsed_s=self._clock.monotonic() - started,
            complete=remaining == 0,
            reason="drained" if remaining == 0 else reason,
        )

    async def close(self) -> None:
        """Stop; in-flight uploads are abandoned: their entries are still in the outbox and are
        uploaded again (same key, same bytes) next time."""
        self._closed = True
        tasks = [t for t in (self._runner, self._probe_task, *self._inflight.values()) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._runner = None

    # --- what the rest of persistence tells it ----------------------------------------------------

    def queued(self, database_id: str) -> None:
        """An entry of this database was appended to the outbox."""
        self._pending.setdefault(database_id, None)
        if self._metrics is not None:
            self._metrics.outbox_depth(self._outbox.depth())
        self._wake.set()

    def wake(self) -> None:
        """Re-plan now (e.g. the breaker changed state and may need a probe at its probe time)."""
        self._wake.set()

    def release(self, database_id: str) -> None:
        if database_id not in self._pending and database_id not in self._inflight:
            self._databases.pop(database_id, None)

    # --- the loop ---------------------------------------------------------------------------------

    async def _run(self) -> None:
        """Dispatch uploads until closed; sleeps until woken by a new entry, a finished upload, a
        backoff expiring or the breaker's probe time."""
        while not self._closed:
            self._wake.clear()
            try:
                self._dispatch()
                delay = self._next_wakeup()
            except Exception as exc:  # a local failure (disk full, outbox locked): retry later
                self._log.error("s3_uploader_dispatch_failed", exc_info=True, error=str(exc))
                self._calls.last_error = f"uploader: {type(exc).__name__}: {exc}"
                delay = self.config.backoff_max_s
            await self._wait(self._wake, delay)

    def _dispatch(self) -> None:
        now = self._clock.monotonic()
        if self._breaker.state is BackendState.OPEN:
            return
        free = self.config.upload_concurrency - len(self._inflight)
        for database_id in list(self._pending):
            if free <= 0:
                break
            if database_id in self._inflight:
                continue
            upload = self._databases.get(database_id)
            if upload is not None and upload.retry_at > now:
                continue
            entry = self._outbox.head(database_id)
            if entry is None:
                del self._pending[database_id]
                continue
            if not self._breaker.try_acquire():
                return  # half-open and the probe is already out
            # Round robin: this database goes to the back of the line.
            del self._pending[database_id]
            self._pending[database_id] = None
            task = asyncio.create_task(self._upload(entry), name=f"s3-upload-{database_id}")
            self._inflight[database_id] = task
            free -= 1
        if (
            self._breaker.state is BackendState.HALF_OPEN
            and not self._inflight
            and self._probe_task is None
            and self._breaker.try_acquire()
        ):
            # Nothing to upload, but the breaker is waiting for a probe: without one it would
            # report "degraded" forever after the store came back.
            self._probe_task = asyncio.create_task(self._probe(), name="s3-probe")

    def _next_wakeup(self) -> float | None:
        now = self._clock.monotonic()
        times: list[float] = []
        if self._breaker.state is BackendState.OPEN:
            times.append(self._breaker.probe_at)
        else:
            for database_id in self._pending:
                upload = self._databases.get(database_id)
                if database_id not in self._inflight and upload is not None and upload.retry_at > now:
                    times.append(upload.retry_at)
        return max(0.0, min(times) - now) if times else None

    async def _upload(self, entry: OutboxEntry) -> None:
        database_id = entry.database_id
        upload = self._databases.setdefault(database_id, _DatabaseUpload())
        content_type = "application/json" if entry.kind == BATCH else "application/gzip"
        try:
            failure = await self._calls.attempt(
                "put_object", self._calls.client.put_object, entry.object_key, entry.body, content_type
            )
            if failure is not None:
                self._upload_failed(entry, upload, failure)
                return
            self._outbox.remove(entry.seq)
            upload.failures = 0
            upload.retry_at = 0.0
            self.uploads[entry.kind] += 1
            if self._metrics is not None:
                self._metrics.outbox_depth(self._outbox.depth())
            if entry.kind == SNAPSHOT:
                await self._retention.apply(database_id)
        except Exception as exc:  # local (outbox) failure: the entry stays and is retried
            self._log.error(
                "s3_upload_bookkeeping_failed", exc_info=True, objectKey=entry.object_key, error=str(exc)
            )
            self._calls.last_error = f"uploader: {type(exc).__name__}: {exc}"
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
        self._outbox.remove(entry.seq)

    async def _probe(self) -> None:
        try:
            await self._calls.attempt("validate", self._calls.client.validate)
        finally:
            self._probe_task = None
            self._wake.set()
            self._progress.set()

    def _backoff(self, failures: int) -> float:
        """Exponential with equal jitter: between half and all of min(max, base * 2^(n-1))."""
        ceiling = min(self.config.backoff_max_s, self.config.backoff_base_s * 2.0 ** min(failures - 1, 30))
        return ceiling / 2 + self._rng.random() * ceiling / 2

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
