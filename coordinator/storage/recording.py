"""What goes into the durable outbox: batch and snapshot objects (PROTOCOL.md section 5), rendered
with their object key. Synchronous and local: the client path never waits on the object store."""

from __future__ import annotations

import gzip
import json
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

from coordinator.clock import Clock
from coordinator.storage.outbox import BATCH, SNAPSHOT, Outbox, OutboxEntry
from coordinator.storage.s3_store import S3Config, batch_key, iso_timestamp, snapshot_key


@dataclass(frozen=True)
class SnapshotTicket:
    """A snapshot's key time and id, reserved before the service starts reading its state, so a
    batch recorded while the snapshot is being read sorts after it and is replayed on restore."""

    database_id: str
    key_ms: int
    snapshot_id: str


class Recorder:
    def __init__(self, config: S3Config, outbox: Outbox, clock: Clock) -> None:
        self._config = config
        self._outbox = outbox
        self._clock = clock
        self.recorded: Counter[str] = Counter()

    def batch(
        self,
        database_id: str,
        client_site_id: str,
        change_sets: list[dict[str, Any]],
        applied: int,
        skipped: int,
        conflicts: int,
    ) -> OutboxEntry:
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
            return batch_key(self._config.prefix, database_id, key_ms, batch_id), json_bytes(body)

        entry = self._outbox.append(database_id, BATCH, self._clock.now_ms(), render)
        self.recorded[BATCH] += 1
        return entry

    def begin_snapshot(self, database_id: str) -> SnapshotTicket:
        key_ms = self._outbox.reserve_key_ms(self._clock.now_ms())
        return SnapshotTicket(database_id, key_ms, str(uuid.uuid4()))

    def snapshot(
        self, database_id: str, chunks: list[dict[str, Any]], ticket: SnapshotTicket | None
    ) -> OutboxEntry:
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
            data = gzip.compress(json_bytes(body), mtime=0)
            return snapshot_key(self._config.prefix, database_id, key_ms, object_id), data

        reserved = ticket.key_ms if ticket is not None else None
        entry = self._outbox.append(database_id, SNAPSHOT, self._clock.now_ms(), render, reserved_ms=reserved)
        self.recorded[SNAPSHOT] += 1
        return entry


def json_bytes(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
