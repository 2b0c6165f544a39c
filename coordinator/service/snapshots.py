"""Snapshot streams in the chunk order of PROTOCOL.md 3.3, fresh or resumed from a checkpoint.

One generator serves both transports. Footer totals describe the whole snapshot, so a client
that resumed counts what it received before the cut plus what the resumed stream carried.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from coordinator.ops.failpoints import Failpoints
from coordinator.protocol.encoding import (
    HLC_BYTES,
    MAX_SAFE_INTEGER,
    decode_hlc,
    decode_site_id,
    decode_value,
    encode_hlc,
    encode_site_id,
)
from coordinator.protocol.errors import InvalidPayload
from coordinator.storage.sqlite_store import DatabaseStore

ZERO_HLC = bytes(HLC_BYTES)


@dataclass(frozen=True, slots=True)
class Checkpoint:
    snapshot_id: str
    site_id: str
    hlc: str
    last_table_index: int
    last_entry_index: int
    entries_processed: int
    completed_tables: frozenset[str] = frozenset()  # names, `schema.table` or `table`
    completed_count: int = 0  # a client that sends a count instead of names

    def completed(self, index: int, schema: str, table: str) -> bool:
        """PROTOCOL.md 3.3: a resume skips the completed tables — also the table at
        `lastTableIndex` when the checkpoint was cut right after its table-end."""
        return (
            index < self.last_table_index
            or index < self.completed_count
            or f"{schema}.{table}" in self.completed_tables
            or table in self.completed_tables
        )


def _count(number: Any, field: str) -> int:
    """A non-negative integer a JSON client can send exactly (at most 2^53-1): a larger one
    (up to 2^64 is valid JSON) would overflow SQLite's 64-bit OFFSET deep in the stream."""
    if not isinstance(number, int) or isinstance(number, bool) or not 0 <= number <= MAX_SAFE_INTEGER:
        raise InvalidPayload(field, "must be a non-negative integer of at most 2^53-1")
    return number


def decode_checkpoint(value: Any) -> Checkpoint:
    field = "checkpoint"
    if not isinstance(value, dict):
        raise InvalidPayload(field, "must be an object")
    snapshot_id = value.get("snapshotId")
    if not isinstance(snapshot_id, str) or not snapshot_id:
        raise InvalidPayload(f"{field}.snapshotId", "must be a non-empty string")
    site_id = encode_site_id(decode_site_id(value.get("siteId"), f"{field}.siteId"))
    hlc = encode_hlc(decode_hlc(value.get("hlc"), f"{field}.hlc"))
    numbers = {}
    for key in ("lastTableIndex", "lastEntryIndex", "entriesProcessed", "createdAt"):
        numbers[key] = _count(value.get(key, 0), f"{field}.{key}")
    completed = value.get("completedTables", [])
    names: frozenset[str] = frozenset()
    count = 0
    if isinstance(completed, list):
        if not all(isinstance(t, str) for t in completed):
            raise InvalidPayload(f"{field}.completedTables", "must be a list of table names or a count")
        names = frozenset(completed)
    else:
        count = _count(completed, f"{field}.completedTables")
    return Checkpoint(
        snapshot_id,
        site_id,
        hlc,
        numbers["lastTableIndex"],
        numbers["lastEntryIndex"],
        numbers["entriesProcessed"],
        names,
        count,
    )


async def snapshot_chunks(
    store: DatabaseStore, server_site_id: bytes, failpoints: Failpoints, checkpoint: Checkpoint | None = None
) -> AsyncIterator[dict[str, Any]]:
    reader = store.snapshot_reader()
    try:
        tables = reader.tables
        total_entries = sum(t.entries for t in tables)
        yield {
            "type": "header",
            "siteId": checkpoint.site_id if checkpoint else encode_site_id(server_site_id),
            "hlc": checkpoint.hlc if checkpoint else encode_hlc(reader.hlc or ZERO_HLC),
            "snapshotFormat": 1,
            "tableCount": len(tables),
            "migrationCount": len(reader.migrations),
            "snapshotId": checkpoint.snapshot_id if checkpoint else reader.snapshot_id,
        }
        if checkpoint is None:
            for migration in reader.migrations:
                yield {"type": "schema-migration", "migration": migration}
        for index, table in enumerate(tables):
            skip = 0
            if checkpoint is not None:
                if checkpoint.completed(index, table.schema, table.table):
                    continue
                if index == checkpoint.last_table_index:
                    skip = checkpoint.last_entry_index
            yield {
                "type": "table-start",
                "schema": table.schema,
                "table": table.table,
                "estimatedEntries": table.entries,
            }
            await failpoints.hit("snapshot.read")
            written = 0
            for entries in reader.column_versions(table, skip):
                written += len(entries)
                yield {
                    "type": "column-versions",
                    "schema": table.schema,
                    "table": table.table,
                    "entries": entries,
                }
            yield {
                "type": "table-end",
                "schema": table.schema,
                "table": table.table,
                "entriesWritten": written,
            }
        for table in tables:
            for entries in reader.tombstones(table):
                yield {"type": "tombstone", "schema": table.schema, "table": table.table, "entries": entries}
        yield {
            "type": "footer",
            "snapshotId": checkpoint.snapshot_id if checkpoint else reader.snapshot_id,
            "totalTables": len(tables),
            "totalEntries": total_entries,
            "totalMigrations": len(reader.migrations),
        }
    finally:
        reader.close()


async def snapshot_chunks_with_snapshot_unserializable(
    store: DatabaseStore, server_site_id: bytes, failpoints: Failpoints, checkpoint: Checkpoint | None = None
) -> AsyncIterator[dict[str, Any]]:
    """BUG snapshot-unserializable (BUGS.md): chunks go out as the store holds them, with no
    wire encoding (get_changes has one; snapshots were forgotten): site ids and HLCs as raw
    bytes, values as raw bytes and big integers. Serializing them throws."""
    chunks = snapshot_chunks(store, server_site_id, failpoints, checkpoint)
    try:
        async for chunk in chunks:
            yield _unencoded(chunk)
    finally:
        await chunks.aclose()  # type: ignore[attr-defined]


def _unencoded(chunk: dict[str, Any]) -> dict[str, Any]:
    raw = dict(chunk)
    if "siteId" in raw:
        raw["siteId"] = decode_site_id(raw["siteId"])
    if "hlc" in raw:
        raw["hlc"] = decode_hlc(raw["hlc"])
    if "entries" in raw:
        raw["entries"] = [
            dict(
                e,
                hlc=decode_hlc(e["hlc"]),
                **({"value": decode_value(e["value"], "value")} if "value" in e else {}),
            )
            for e in raw["entries"]
        ]
    return raw
