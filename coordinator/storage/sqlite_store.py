"""One SQLite database (WAL) per sync database: cell versions, tombstones, the change log.

Last writer wins by HLC, as a join-semilattice so that any order of the same change sets gives
the same state: each cell keeps its highest column write, each row its highest delete; a cell is
visible only when its HLC is above the row's tombstone (cells at or below it are removed, since
no later write can make them visible again).

The tombstone policy (PROTOCOL.md section 2) decides what a column write with a larger HLC than
the row's tombstone does: `revive` applies it; `delete-wins` refuses it (a conflict), and a
delete removes every cell of its row whatever their HLCs, so a deleted row stays deleted in any
arrival order (a write applied before an older delete arrived is removed by it too).
"""

from __future__ import annotations

import asyncio
import sqlite3
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from coordinator.protocol.changes import Change, ChangeSet, canonical_json
from coordinator.protocol.encoding import decode_hlc, encode_hlc, encode_site_id

# (schema, table, pk json, column or None for the row's tombstone) -> stored HLC (None: nothing)
CellKey = tuple[str, str, str, str | None]
Versions = dict[CellKey, bytes | None]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS cells (
  schema_name TEXT NOT NULL, table_name TEXT NOT NULL, pk TEXT NOT NULL, col TEXT NOT NULL,
  value TEXT NOT NULL, hlc BLOB NOT NULL,
  PRIMARY KEY (schema_name, table_name, pk, col)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tombstones (
  schema_name TEXT NOT NULL, table_name TEXT NOT NULL, pk TEXT NOT NULL,
  hlc BLOB NOT NULL, created_at INTEGER NOT NULL, prior_row TEXT,
  PRIMARY KEY (schema_name, table_name, pk)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS change_log (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  hlc BLOB NOT NULL, tx_id TEXT NOT NULL, site_id BLOB NOT NULL, tx_hlc BLOB NOT NULL,
  change TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS change_log_hlc ON change_log (hlc);
CREATE INDEX IF NOT EXISTS change_log_tx ON change_log (tx_id, hlc);
CREATE TABLE IF NOT EXISTS migrations (
  hlc BLOB NOT NULL, schema_name TEXT NOT NULL, table_name TEXT NOT NULL, type TEXT NOT NULL,
  tx_id TEXT NOT NULL, migration TEXT NOT NULL,
  PRIMARY KEY (hlc, schema_name, table_name, type)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
"""

COLUMN_VERSIONS_PER_CHUNK = 1000


def store_filename(database_id: str) -> str:
    """An injective, filesystem-safe file name for a database id."""
    return urllib.parse.quote(database_id, safe="_-") + ".sqlite"


@dataclass(slots=True)
class ApplyOutcome:
    applied: int = 0
    skipped: int = 0
    conflicts: int = 0
    transactions: int = 0
    applied_sets: list[dict[str, Any]] = field(default_factory=list)  # wire form, applied changes only


@dataclass(slots=True)
class TableInfo:
    schema: str
    table: str
    entries: int


class DatabaseStore:
    """Synchronous and single-connection: every call is short, and runs on the event loop."""

    def __init__(
        self,
        path: Path,
        database_id: str,
        tombstone_policy: str = "revive",
        on_read: Callable[[], None] | None = None,
    ) -> None:
        self.path = path
        self.database_id = database_id
        self.revive = tombstone_policy == "revive"
        # Reads of the database's state are counted here, where they happen, whoever asks:
        # the storage-reads metric then shows what the server really does, not what a caller says.
        self.reads = 0
        self._on_read = on_read
        self.unflushed = False  # written since the last checkpoint
        self._db: sqlite3.Connection | None = None

    # lifecycle --------------------------------------------------------------------------------
    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(_SCHEMA)
        self._db = db

    @property
    def is_open(self) -> bool:
        return self._db is not None

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def checkpoint(self) -> None:
        """Fold the WAL into the database file without waiting on readers (PASSIVE): a busy
        store's WAL does not grow without bound, and the file alone stays nearly complete."""
        self.db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        self.unflushed = False

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError(f"store {self.database_id!r} is closed")
        return self._db

    # apply ------------------------------------------------------------------------------------
    def apply(self, change_sets: list[ChangeSet], now_ms: int, known: Versions | None = None) -> ApplyOutcome:
        """Apply change sets in one transaction; log and return what was applied.

        Reads and writes happen in this one synchronous call, so on the event loop nothing else
        touches the store in between. `known` (versions read earlier, see `read_versions`) is
        only ever passed by the apply-race bug: it decides on those instead of reading them."""
        outcome = ApplyOutcome()
        db = self.db
        self.unflushed = True
        db.execute("BEGIN IMMEDIATE")
        try:
            for cs in change_sets:
                outcome.transactions += 1
                applied: list[Change] = []
                for change in cs.changes:
                    verdict = self._apply_change(db, change, now_ms, known)
                    if verdict == "applied":
                        applied.append(change)
                    elif verdict == "skipped":
                        outcome.skipped += 1
                    else:
                        outcome.conflicts += 1
                for migration in cs.migrations:
                    db.execute(
                        "INSERT OR IGNORE INTO migrations VALUES (?, ?, ?, ?, ?, ?)",
                        (
                            migration.hlc,
                            migration.schema,
                            migration.table,
                            migration.type,
                            cs.transaction_id,
                            canonical_json(migration.wire),
                        ),
                    )
                if applied:
                    db.executemany(
                        "INSERT INTO change_log (hlc, tx_id, site_id, tx_hlc, change) VALUES (?, ?, ?, ?, ?)",
                        [
                            (c.hlc, cs.transaction_id, cs.site_id, cs.hlc, canonical_json(c.wire))
                            for c in applied
                        ],
                    )
                    outcome.applied += len(applied)
                    outcome.applied_sets.append(cs.wire(tuple(applied)))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return outcome

    def _apply_change(
        self, db: sqlite3.Connection, change: Change, now_ms: int, known: Versions | None = None
    ) -> str:
        key = (change.schema, change.table, change.pk_json)
        tomb_hlc = _version(db, (*key, None), known)
        if change.type == "delete":
            if tomb_hlc is not None and change.hlc <= tomb_hlc:
                return "skipped" if change.hlc == tomb_hlc else "conflict"
            prior_row = change.wire.get("priorRow")
            db.execute(
                "INSERT OR REPLACE INTO tombstones VALUES (?, ?, ?, ?, ?, ?)",
                (*key, change.hlc, now_ms, canonical_json(prior_row) if prior_row is not None else None),
            )
            if self.revive:
                db.execute(
                    "DELETE FROM cells WHERE schema_name=? AND table_name=? AND pk=? AND hlc <= ?",
                    (*key, change.hlc),
                )
            else:  # delete-wins: the row is gone for good, whatever its cells' HLCs
                db.execute("DELETE FROM cells WHERE schema_name=? AND table_name=? AND pk=?", key)
            if known is not None:
                known[(*key, None)] = change.hlc
            return "applied"
        cell_hlc = _version(db, (*key, change.column), known)
        if cell_hlc is not None and change.hlc <= cell_hlc:
            return "skipped" if change.hlc == cell_hlc else "conflict"
        if tomb_hlc is not None and (change.hlc <= tomb_hlc or not self.revive):
            return "conflict"  # the row's delete is newer than this write, or deletes win
        db.execute(
            "INSERT OR REPLACE INTO cells VALUES (?, ?, ?, ?, ?, ?)",
            (*key, change.column, canonical_json(change.wire["value"]), change.hlc),
        )
        if known is not None:
            known[(*key, change.column)] = change.hlc
        return "applied"

    def read_versions(self, change_sets: list[ChangeSet]) -> Versions:
        """The stored HLCs of every cell and row tombstone the change sets touch, read on a
        connection of its own (so it may run in a worker thread, as an async storage read)."""
        self._count_read()
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            versions: Versions = {}
            for cs in change_sets:
                for change in cs.changes:
                    row = (change.schema, change.table, change.pk_json)
                    keys: list[CellKey] = [(*row, None)]
                    if change.column is not None:
                        keys.append((*row, change.column))
                    for key in keys:
                        if key not in versions:
                            versions[key] = _version(db, key, None)
            return versions
        finally:
            db.close()

    def load_snapshot(self, chunks: list[dict[str, Any]], now_ms: int) -> int:
        """Restore cells, tombstones and migrations from snapshot chunks (an object-store
        snapshot). Each restored cell and tombstone is also logged as a change, so get_changes
        from scratch still returns the whole state after a restore. Returns entries loaded."""
        header = next((c for c in chunks if c.get("type") == "header"), None)
        snapshot_id = str(header.get("snapshotId", "restored")) if header else "restored"
        logged: list[tuple[bytes, str, bytes, bytes, str]] = []
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            for chunk in chunks:
                kind = chunk.get("type")
                if kind == "schema-migration":
                    m = chunk["migration"]
                    db.execute(
                        "INSERT OR IGNORE INTO migrations VALUES (?, ?, ?, ?, ?, ?)",
                        (
                            decode_hlc(m["hlc"]),
                            m["schema"],
                            m["table"],
                            m["type"],
                            f"snapshot:{snapshot_id}",
                            canonical_json(m),
                        ),
                    )
                elif kind == "column-versions":
                    for e in chunk["entries"]:
                        hlc = decode_hlc(e["hlc"])
                        pk = canonical_json(e["pk"])
                        db.execute(
                            "INSERT OR REPLACE INTO cells VALUES (?, ?, ?, ?, ?, ?)",
                            (
                                chunk["schema"],
                                chunk["table"],
                                pk,
                                e["column"],
                                canonical_json(e["value"]),
                                hlc,
                            ),
                        )
                        change = {
                            "type": "column",
                            "schema": chunk["schema"],
                            "table": chunk["table"],
                            "pk": e["pk"],
                            "hlc": e["hlc"],
                            "column": e["column"],
                            "value": e["value"],
                        }
                        logged.append(_restored_log_row(hlc, snapshot_id, change))
                elif kind == "tombstone":
                    for e in chunk["entries"]:
                        hlc = decode_hlc(e["hlc"])
                        prior = e.get("priorRow")
                        db.execute(
                            "INSERT OR REPLACE INTO tombstones VALUES (?, ?, ?, ?, ?, ?)",
                            (
                                chunk["schema"],
                                chunk["table"],
                                canonical_json(e["pk"]),
                                hlc,
                                int(e.get("createdAt", now_ms)),
                                canonical_json(prior) if prior is not None else None,
                            ),
                        )
                        change = {
                            "type": "delete",
                            "schema": chunk["schema"],
                            "table": chunk["table"],
                            "pk": e["pk"],
                            "hlc": e["hlc"],
                        }
                        if prior is not None:
                            change["priorRow"] = prior
                        logged.append(_restored_log_row(hlc, snapshot_id, change))
            db.executemany(
                "INSERT INTO change_log (hlc, tx_id, site_id, tx_hlc, change) VALUES (?, ?, ?, ?, ?)", logged
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return len(logged)

    # change log -------------------------------------------------------------------------------
    def changes_since(
        self, since: bytes | None, exclude_site: bytes | None, batch_size: int
    ) -> list[dict[str, Any]]:
        """Change sets with changes above `since`, in HLC order, whole transactions only.

        A batch is a prefix of the eligible changes in HLC order, cut only where every
        transaction seen so far is complete, so a client that asks again from the largest HLC
        it received misses nothing even when transactions interleave.
        """
        self._count_read()
        return self._changes_since(self.db, since, exclude_site, batch_size)

    async def changes_since_off_loop(
        self, since: bytes | None, exclude_site: bytes | None, batch_size: int
    ) -> list[dict[str, Any]]:
        """`changes_since` on a connection of its own in a worker thread: a large answer (a
        catch-up of thousands of change sets to decode and group) then does not hold the event
        loop, so heartbeats and pushes to every other session keep their schedule. WAL lets it
        read beside the writer; the caller holds the store open meanwhile."""
        self._count_read()  # here, on the loop, like every other read
        return await asyncio.to_thread(self._changes_since_on_own_connection, since, exclude_site, batch_size)

    def _changes_since_on_own_connection(
        self, since: bytes | None, exclude_site: bytes | None, batch_size: int
    ) -> list[dict[str, Any]]:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            return self._changes_since(db, since, exclude_site, batch_size)
        finally:
            db.close()

    def _changes_since(
        self, db: sqlite3.Connection, since: bytes | None, exclude_site: bytes | None, batch_size: int
    ) -> list[dict[str, Any]]:
        low = since if since is not None else b""
        site = exclude_site if exclude_site is not None else b""
        rows = db.execute(
            "SELECT hlc, tx_id, site_id, tx_hlc, change FROM change_log WHERE hlc > ? AND site_id != ? "
            "ORDER BY hlc, id",
            (low, site),
        )
        sets: dict[str, dict[str, Any]] = {}
        remaining: dict[str, int] = {}
        open_txs = 0
        count = 0
        for hlc, tx_id, site_id, tx_hlc, change in rows:
            del hlc
            if tx_id not in sets:
                if count >= batch_size and open_txs == 0:
                    break
                total = db.execute(
                    "SELECT COUNT(*) FROM change_log WHERE tx_id = ? AND hlc > ? AND site_id = ?",
                    (tx_id, low, site_id),
                ).fetchone()[0]
                sets[tx_id] = {
                    "siteId": encode_site_id(site_id),
                    "transactionId": tx_id,
                    "hlc": encode_hlc(tx_hlc),
                    "changes": [],
                    "schemaMigrations": _migrations_of(db, tx_id),
                }
                remaining[tx_id] = total
                open_txs += 1
            sets[tx_id]["changes"].append(orjson.loads(change))
            count += 1
            remaining[tx_id] -= 1
            if remaining[tx_id] == 0:
                open_txs -= 1
        rows.close()
        return list(sets.values())

    # snapshots --------------------------------------------------------------------------------
    def snapshot_reader(self) -> SnapshotReader:
        self._count_read()
        return SnapshotReader(self)

    def _count_read(self) -> None:
        self.reads += 1
        if self._on_read is not None:
            self._on_read()


def _migrations_of(db: sqlite3.Connection, tx_id: str) -> list[dict[str, Any]]:
    return [
        orjson.loads(m)
        for (m,) in db.execute("SELECT migration FROM migrations WHERE tx_id = ? ORDER BY hlc", (tx_id,))
    ]


def _version(db: sqlite3.Connection, key: CellKey, known: Versions | None) -> bytes | None:
    """A cell's (or, with column None, a row tombstone's) stored HLC: from `known` when given."""
    if known is not None:
        return known.get(key)
    schema, table, pk, col = key
    if col is None:
        row = db.execute(
            "SELECT hlc FROM tombstones WHERE schema_name=? AND table_name=? AND pk=?", (schema, table, pk)
        ).fetchone()
    else:
        row = db.execute(
            "SELECT hlc FROM cells WHERE schema_name=? AND table_name=? AND pk=? AND col=?",
            (schema, table, pk, col),
        ).fetchone()
    return row[0] if row else None


def _restored_log_row(
    hlc: bytes, snapshot_id: str, change: dict[str, Any]
) -> tuple[bytes, str, bytes, bytes, str]:
    """A change-log row for state restored from a snapshot: one transaction per original site
    (the site is inside the HLC), so own-site exclusion still works after a restore."""
    site = hlc[10:26]
    return (hlc, f"snapshot:{snapshot_id}:{encode_site_id(site)}", site, hlc, canonical_json(change))


class SnapshotReader:
    """A consistent read of the whole database: its own connection inside one read transaction
    (WAL snapshot isolation), so writes during a long stream do not tear it."""

    def __init__(self, store: DatabaseStore) -> None:
        store.reads += 1
        self._db = sqlite3.connect(store.path, isolation_level=None, check_same_thread=False)
        self._db.execute("BEGIN")
        self.snapshot_id = uuid.uuid4().hex
        row = self._db.execute(
            "SELECT MAX(h) FROM (SELECT MAX(hlc) AS h FROM change_log UNION ALL SELECT MAX(hlc) FROM migrations)"
        ).fetchone()
        self.hlc: bytes | None = row[0] if row else None
        self.tables = [
            TableInfo(s, t, n)
            for s, t, n in self._db.execute(
                "SELECT schema_name, table_name, SUM(n) FROM ("
                " SELECT schema_name, table_name, COUNT(*) AS n FROM cells GROUP BY 1, 2"
                " UNION ALL SELECT schema_name, table_name, 0 FROM tombstones GROUP BY 1, 2"
                ") GROUP BY 1, 2 ORDER BY 1, 2"
            )
        ]
        self.migrations = [
            orjson.loads(m) for (m,) in self._db.execute("SELECT migration FROM migrations ORDER BY hlc")
        ]

    def column_versions(self, table: TableInfo, skip: int = 0) -> Iterator[list[dict[str, Any]]]:
        """Entries of one table in (pk, column) order, in lists of at most 1000."""
        cursor = self._db.execute(
            "SELECT col, hlc, value, pk FROM cells WHERE schema_name=? AND table_name=? ORDER BY pk, col "
            "LIMIT -1 OFFSET ?",
            (table.schema, table.table, skip),
        )
        while True:
            rows = cursor.fetchmany(COLUMN_VERSIONS_PER_CHUNK)
            if not rows:
                break
            yield [
                {"column": col, "hlc": encode_hlc(hlc), "value": orjson.loads(value), "pk": orjson.loads(pk)}
                for col, hlc, value, pk in rows
            ]

    def tombstones(self, table: TableInfo) -> Iterator[list[dict[str, Any]]]:
        cursor = self._db.execute(
            "SELECT pk, hlc, created_at, prior_row FROM tombstones WHERE schema_name=? AND table_name=? ORDER BY pk",
            (table.schema, table.table),
        )
        while True:
            rows = cursor.fetchmany(COLUMN_VERSIONS_PER_CHUNK)
            if not rows:
                break
            entries = []
            for pk, hlc, created_at, prior_row in rows:
                entry: dict[str, Any] = {
                    "pk": orjson.loads(pk),
                    "hlc": encode_hlc(hlc),
                    "createdAt": created_at,
                }
                if prior_row is not None:
                    entry["priorRow"] = orjson.loads(prior_row)
                entries.append(entry)
            yield entries

    def close(self) -> None:
        try:
            self._db.execute("COMMIT")
        finally:
            self._db.close()
