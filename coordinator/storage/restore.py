"""Restore of a database missing from local disk: the newest snapshot, then every batch after
it, in key order, from the object store and the entries still in the outbox."""

from __future__ import annotations

import asyncio
import gzip
import json
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from coordinator.ops.bugs import Bugs, BugSwaps
from coordinator.storage.errors import StoreCorrupted
from coordinator.storage.outbox import BATCH, SNAPSHOT, Outbox
from coordinator.storage.s3_calls import ObjectStoreCalls
from coordinator.storage.s3_store import batches_prefix, key_time_part, snapshots_prefix

T = TypeVar("T")


@dataclass
class RestoredImage:
    """What restore found: the newest snapshot (or none) and every batch after it, in key order."""

    database_id: str
    snapshot: dict[str, Any] | None
    snapshot_key: str | None
    batches: list[dict[str, Any]]
    batch_keys: list[str]
    from_outbox: int = 0  # how many of those came from entries not yet uploaded


class Restore:
    BUG_SWAPS: ClassVar[BugSwaps] = {
        "restore-mixes-tenants": ("_is_own", "_is_own_with_restore_mixes_tenants"),
    }

    def __init__(self, outbox: Outbox, calls: ObjectStoreCalls, bugs: Bugs) -> None:
        self._outbox = outbox
        self._calls = calls
        bugs.apply(self, self.BUG_SWAPS)

    async def image(self, database_id: str) -> RestoredImage | None:
        """Newest snapshot plus every batch at or after its time, in key order; None when neither
        S3 nor the outbox has anything. Raises StoreUnavailable when S3 is down or the breaker is
        open, StoreCorrupted when an object cannot be parsed.

        Entries still in the outbox are merged in, so a restore during a backlog loses nothing.
        Batches recorded in the snapshot's millisecond are kept too: applying a change twice
        changes nothing, missing one would lose it.
        """
        calls = self._calls
        prefix = calls.config.prefix
        local = self._outbox.pending(database_id)
        local_snapshots = {e.object_key: e.body for e in local if e.kind == SNAPSHOT}
        local_batches = {e.object_key: e.body for e in local if e.kind == BATCH}

        remote_snapshots = await calls.guarded(
            "list_objects_v2", calls.client.list_keys, snapshots_prefix(prefix, database_id)
        )
        snapshot: dict[str, Any] | None = None
        chosen: str | None = None
        for key in sorted(set(remote_snapshots) | set(local_snapshots), reverse=True):
            if key in local_snapshots:
                raw = local_snapshots[key]
            else:
                raw = await calls.guarded("get_object", calls.client.get_object, key)
            body = _parse(raw, key)
            if not self._is_own(body, database_id):
                continue  # another databaseId with the same storage path: not "the newest"
            snapshot, chosen = body, key
            break

        bprefix = batches_prefix(prefix, database_id)
        start_after = bprefix + key_time_part(chosen) if chosen is not None else None
        remote_batches = await calls.guarded("list_objects_v2", calls.client.list_keys, bprefix, start_after)
        local_after = {k for k in local_batches if start_after is None or k > start_after}
        keys = sorted(set(remote_batches) | local_after)
        batches: list[dict[str, Any]] = []
        batch_keys: list[str] = []
        step = calls.config.upload_concurrency
        for start in range(0, len(keys), step):
            group = keys[start : start + step]
            raws = await asyncio.gather(
                *(
                    _ready(local_batches[k])
                    if k in local_batches
                    else calls.guarded("get_object", calls.client.get_object, k)
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
