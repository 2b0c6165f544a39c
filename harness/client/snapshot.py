"""Reads a snapshot stream chunk by chunk (PROTOCOL.md 3.3): checks the chunk order and the
counts the stream announces, fills a replica, and keeps the checkpoint a client needs to resume
the stream where it was cut."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from harness.model.codec import CodecError, decode_site_id, hlc_key, is_json_safe
from harness.model.replica import Replica

CHUNK_TYPES = (
    "header",
    "schema-migration",
    "table-start",
    "column-versions",
    "table-end",
    "tombstone",
    "footer",
)


CUT_KINDS = ("chunks", "entries", "table_start", "table_end", "last_entry")


@dataclass(frozen=True, slots=True)
class SnapshotCut:
    """Where a client stops reading a stream, to resume it from the checkpoint it holds then:
    `chunks` after `n` chunks; `entries` right after the `n`-th entry (the rest of that chunk is
    dropped, so the checkpoint can sit mid-chunk and mid-table); `table_start` right after the
    table-start of the table at index `n` (a boundary: nothing of it read yet); `table_end`
    right after the table-end of the table at index `n` (a boundary: that table completed);
    `last_entry` after every entry of the last table (the header's tableCount) but before its
    table-end. Indexes count the tables of this stream's own order, from 0."""

    kind: str
    n: int = 0

    def __post_init__(self) -> None:
        if self.kind not in CUT_KINDS:
            raise ValueError(f"unknown snapshot cut {self.kind!r}; known: {', '.join(CUT_KINDS)}")

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "n": self.n}


@dataclass(slots=True)
class SnapshotReader:
    """Consumes the chunks of one snapshot stream (a fresh one, or a resumed one when
    `resumed_from` holds the checkpoint it resumed)."""

    resumed_from: dict[str, Any] | None = None
    replica: Replica = field(default_factory=Replica)
    header: dict[str, Any] | None = None
    footer: dict[str, Any] | None = None
    chunks: int = 0
    migrations: int = 0
    tables_started: int = 0
    tables_ended: int = 0
    entries: int = 0
    tombstones: int = 0
    problems: list[str] = field(default_factory=list)
    table_entries: list[int] = field(default_factory=list)  # entries of each table, in stream order
    _table: tuple[str, str] | None = None
    _table_entries: int = 0
    _completed: list[str] = field(default_factory=list)
    _table_index: int = -1

    def take(self, chunk: Any, cut: SnapshotCut | None) -> bool:
        """Feed one chunk, or the part of it read before `cut`; True when the client stops
        reading here (the stream is cut and `checkpoint()` is where a resume continues)."""
        if cut is None or not isinstance(chunk, dict):
            self.feed(chunk)
            return cut is not None and cut.kind == "chunks" and self.chunks >= cut.n
        kind = chunk.get("type")
        if cut.kind == "last_entry" and kind == "table-end":
            count = (self.header or {}).get("tableCount")
            if isinstance(count, int) and self._table_index == count - 1 and self._table is not None:
                return True  # every entry read; the last table stays open in the checkpoint
        if cut.kind == "entries" and kind == "column-versions" and isinstance(chunk.get("entries"), list):
            need = cut.n - self.entries
            if 0 < need < len(chunk["entries"]):
                chunk = dict(chunk, entries=chunk["entries"][:need])
        started = self._table_index
        self.feed(chunk)
        if cut.kind == "chunks":
            return self.chunks >= cut.n
        if cut.kind == "entries":
            return self.entries >= cut.n > 0
        if cut.kind == "table_start":
            return kind == "table-start" and self._table_index == cut.n and started != self._table_index
        if cut.kind == "table_end":
            return kind == "table-end" and self._table_index == cut.n
        return False

    def feed(self, chunk: Any) -> None:
        """Take one chunk; order and shape problems are collected in `problems`, not raised,
        because a check wants all of them as evidence."""
        self.chunks += 1
        if not isinstance(chunk, dict):
            self.problems.append(f"chunk {self.chunks} is not an object")
            return
        if not is_json_safe(chunk):
            self.problems.append(f"chunk {self.chunks} holds a value JSON cannot carry")
        kind = chunk.get("type")
        if kind not in CHUNK_TYPES:
            self.problems.append(f"chunk {self.chunks} has unknown type {kind!r}")
            return
        if self.footer is not None:
            self.problems.append(f"chunk {self.chunks} ({kind}) after the footer")
        if kind != "header" and self.header is None:
            self.problems.append(f"chunk {self.chunks} ({kind}) before the header")
        try:
            getattr(self, "_on_" + str(kind).replace("-", "_"))(chunk)
        except (KeyError, TypeError, CodecError) as exc:
            self.problems.append(f"chunk {self.chunks} ({kind}) malformed: {exc}")

    def _on_header(self, chunk: dict[str, Any]) -> None:
        if self.header is not None:
            self.problems.append("a second header")
        self.header = chunk
        decode_site_id(chunk["siteId"])
        hlc_key(chunk["hlc"])
        cp = self.resumed_from
        if cp is not None:
            for key in ("snapshotId", "siteId", "hlc"):
                if chunk.get(key) != cp.get(key):
                    self.problems.append(
                        f"resumed header {key} {chunk.get(key)!r} != checkpoint {cp.get(key)!r}"
                    )
            self._table_index = int(cp.get("lastTableIndex", 0)) - 1
            self._completed = [str(t) for t in cp.get("completedTables") or []]

    def _on_schema_migration(self, chunk: dict[str, Any]) -> None:
        hlc_key(chunk["migration"]["hlc"])
        self.migrations += 1

    def _on_table_start(self, chunk: dict[str, Any]) -> None:
        if self._table is not None:
            self.problems.append(f"table-start {chunk['table']} inside table {self._table[1]}")
        self._table = (str(chunk["schema"]), str(chunk["table"]))
        self._table_entries = 0
        self._table_index += 1
        self.tables_started += 1

    def _on_column_versions(self, chunk: dict[str, Any]) -> None:
        table = (str(chunk["schema"]), str(chunk["table"]))
        if self._table != table:
            self.problems.append(f"column-versions for {table[1]} outside its table")
        entries = chunk["entries"]
        if len(entries) > 1000:
            self.problems.append(f"column-versions chunk with {len(entries)} entries (max 1000)")
        self.replica.apply_snapshot_entries(table[0], table[1], entries)
        self._table_entries += len(entries)
        self.entries += len(entries)

    def _on_table_end(self, chunk: dict[str, Any]) -> None:
        table = (str(chunk["schema"]), str(chunk["table"]))
        if self._table != table:
            self.problems.append(f"table-end for {table[1]} without its table-start")
        written = chunk.get("entriesWritten")
        if self.resumed_from is None and written != self._table_entries:
            self.problems.append(f"table {table[1]}: entriesWritten {written} but {self._table_entries} sent")
        self._completed.append(f"{table[0]}.{table[1]}")
        self.table_entries.append(self._table_entries)
        self._table = None
        self._table_entries = 0
        self.tables_ended += 1

    def _on_tombstone(self, chunk: dict[str, Any]) -> None:
        self.replica.apply_snapshot_tombstones(str(chunk["schema"]), str(chunk["table"]), chunk["entries"])
        self.tombstones += len(chunk["entries"])

    def _on_footer(self, chunk: dict[str, Any]) -> None:
        self.footer = chunk
        header = self.header or {}
        if header and chunk.get("snapshotId") != header.get("snapshotId"):
            self.problems.append("footer snapshotId differs from the header's")
        if self._table is not None:
            self.problems.append(f"footer inside table {self._table[1]}")
        if self.resumed_from is None:
            expected = {
                "totalTables": self.tables_started,
                "totalEntries": self.entries,
                "totalMigrations": self.migrations,
            }
            for key, counted in expected.items():
                if chunk.get(key) != counted:
                    self.problems.append(f"footer {key} {chunk.get(key)} but {counted} sent")
            if header.get("tableCount") not in (None, self.tables_started):
                self.problems.append(
                    f"header tableCount {header.get('tableCount')} but {self.tables_started} sent"
                )
            if header.get("migrationCount") not in (None, self.migrations):
                self.problems.append(
                    f"header migrationCount {header.get('migrationCount')} but {self.migrations} sent"
                )

    @property
    def complete(self) -> bool:
        return self.footer is not None

    def checkpoint(self) -> dict[str, Any] | None:
        """Where a resume would continue: the tables done, and the entries sent of the current
        table. None before the header (nothing to resume)."""
        if self.header is None:
            return None
        base = self.resumed_from or {}
        return {
            "snapshotId": self.header["snapshotId"],
            "siteId": self.header["siteId"],
            "hlc": self.header["hlc"],
            "lastTableIndex": max(self._table_index, 0),
            "lastEntryIndex": self._table_entries,
            "completedTables": list(self._completed),
            "entriesProcessed": int(base.get("entriesProcessed", 0)) + self.entries,
            "createdAt": int(time.time() * 1000),
        }

    def summary(self) -> dict[str, Any]:
        """The outcome a history records for this stream."""
        return {
            "snapshotId": (self.header or {}).get("snapshotId"),
            "hlc": (self.header or {}).get("hlc"),
            "header": self.header,
            "footer": self.footer,
            "chunks": self.chunks,
            "tables": self.tables_started,
            "migrations": self.migrations,
            "entries": self.entries,
            "tombstones": self.tombstones,
            "tableEntries": list(self.table_entries),
            "complete": self.complete,
            "resumed": self.resumed_from is not None,
            "problems": list(self.problems),
        }
