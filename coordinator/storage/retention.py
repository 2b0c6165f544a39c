"""Snapshot retention: after a snapshot upload, keep the newest `max_retained_snapshots`."""

from __future__ import annotations

from coordinator.storage.s3_calls import ObjectStoreCalls
from coordinator.storage.s3_store import snapshots_prefix


class SnapshotRetention:
    """Batches are never deleted: restore only needs those after the newest snapshot, and the
    full batch history stays auditable. Best effort: a failure leaves extra snapshots, removed
    after the next snapshot."""

    def __init__(self, calls: ObjectStoreCalls) -> None:
        self._calls = calls
        self.deleted = 0
        self.failures = 0

    async def apply(self, database_id: str) -> None:
        calls = self._calls
        if not calls.breaker.try_acquire():
            return
        keys = await calls.attempt_value(
            "list_objects_v2", calls.client.list_keys, snapshots_prefix(calls.config.prefix, database_id)
        )
        if keys is None:
            self.failures += 1
            return
        excess = sorted(keys)[: max(0, len(keys) - calls.config.max_retained_snapshots)]
        if not excess or not calls.breaker.try_acquire():
            return
        failure = await calls.attempt("delete_objects", calls.client.delete_keys, excess)
        if failure is None:
            self.deleted += len(excess)
        else:
            self.failures += 1
