"""Every call to the object store goes through here: off the event loop (a thread pool), with a
timeout, classified, counted, and reported to the circuit breaker."""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
from collections import Counter
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from coordinator.clock import Clock
from coordinator.ops.logging import EventLog
from coordinator.storage.circuit_breaker import CircuitBreaker
from coordinator.storage.errors import StoreUnavailable
from coordinator.storage.s3_store import S3Client, S3Config, S3Failure, classify

T = TypeVar("T")


class MetricsSink(Protocol):
    """Optional push-style hooks; everything is also readable at any time through `stats()`."""

    def s3_request(self, operation: str, outcome: str, seconds: float) -> None: ...

    def outbox_depth(self, depth: int) -> None: ...


class CallFailed(Exception):
    def __init__(self, failure: S3Failure) -> None:
        super().__init__(failure.message)
        self.failure = failure


class ObjectStoreCalls:
    """The client, its thread pool and the breaker it reports to; `last_error` is the last
    failure of the persistence (a call's, or the uploader's own), for /debug/resources."""

    def __init__(
        self,
        config: S3Config,
        client: S3Client,
        clock: Clock,
        breaker: CircuitBreaker,
        metrics: MetricsSink | None,
    ) -> None:
        self.config = config
        self.client = client
        self.breaker = breaker
        self.requests: Counter[tuple[str, str]] = Counter()
        self.last_error: str | None = None
        self._clock = clock
        self._metrics = metrics
        self._log = EventLog()
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=config.upload_concurrency + 2, thread_name_prefix="s3"
        )

    async def attempt(self, operation: str, fn: Callable[..., Any], *args: Any) -> S3Failure | None:
        """One store call whose breaker permit is already taken; returns the failure, if any."""
        try:
            await self.timed(operation, fn, *args)
        except CallFailed as failed:
            return failed.failure
        return None

    async def attempt_value(self, operation: str, fn: Callable[..., T], *args: Any) -> T | None:
        try:
            return await self.timed(operation, fn, *args)
        except CallFailed:
            return None

    async def guarded(self, operation: str, fn: Callable[..., T], *args: Any) -> T:
        """A store call for a caller waiting on it (restore): refused at once while the breaker is
        open, StoreUnavailable on failure."""
        if not self.breaker.try_acquire():
            reason = self.breaker.last_reason
            raise StoreUnavailable(f"object store unavailable (circuit breaker open: {reason})")
        try:
            return await self.timed(operation, fn, *args)
        except CallFailed as failed:
            raise StoreUnavailable(f"object store unavailable: {failed.failure.message}") from failed

    async def timed(self, operation: str, fn: Callable[..., T], *args: Any) -> T:
        """One call with the operation timeout; a failure is counted, logged, told to the breaker
        and raised as CallFailed."""
        started = self._clock.monotonic()
        try:
            limit = self.config.operation_timeout_s
            result = await asyncio.wait_for(self.in_thread(fn, *args), timeout=limit)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            failure = classify(exc, self.config)
            self.count_request(operation, failure.kind, started)
            self.last_error = f"{operation}: {failure.message}"
            self._log.warning("s3_request_failed", operation=operation, error=failure.message)
            self.breaker.record_failure(f"{operation}: {failure.kind}")
            raise CallFailed(failure) from exc
        self.count_request(operation, "ok", started)
        self.breaker.record_success()
        return result

    async def in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args))

    def count_request(self, operation: str, outcome: str, started: float) -> None:
        self.requests[(operation, outcome)] += 1
        if self._metrics is not None:
            self._metrics.s3_request(operation, outcome, self._clock.monotonic() - started)

    def requests_by_operation(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for (operation, outcome), count in sorted(self.requests.items()):
            out.setdefault(operation, {})[outcome] = count
        return out

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        self.client.close()
