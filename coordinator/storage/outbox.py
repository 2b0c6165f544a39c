"""Durable local outbox (SQLite, WAL) of objects waiting to be uploaded to the object store.

The client path appends here and returns; a background uploader drains it. Each entry holds the
final object key and the exact bytes, rendered when the entry was recorded, so a retry (after a
failure, a restart or a cancelled upload) writes the very same object: uploads are idempotent.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    database_id TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('batch', 'snapshot')),
    object_key TEXT NOT NULL,
    body BLOB NOT NULL,
    created_ms INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS outbox_by_database ON outbox (database_id, seq);
CREATE TABLE IF NOT EXISTS key_clock (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    last_ms INTEGER NOT NULL
);
"""

BATCH = "batch"
SNAPSHOT = "snapshot"


@dataclass(frozen=True)
class OutboxEntry:
    seq: int
    database_id: str
    kind: str
    object_key: str
    body: bytes
    created_ms: int
    attempts: int


class Outbox:
    """Ordered, durable queue keyed by an autoincrement sequence (the recording order).

    Synchronous on purpose: it is a local file, the writes are small, and the caller must know
    the entry is on disk before it acknowledges anything. Use from one thread (the event loop).
    """

    def __init__(self, path: Path, synchronous: str = "FULL") -> None:
        if synchronous.upper() not in {"FULL", "NORMAL"}:
            raise ValueError("synchronous must be FULL or NORMAL")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=True)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={synchronous.upper()}")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)
        self._depth = int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
        self._closed = False
        self._oldest_at_close: int | None = None

    def append(
        self,
        database_id: str,
        kind: str,
        now_ms: int,
        render: Callable[[int], tuple[str, bytes]],
        reserved_ms: int | None = None,
    ) -> OutboxEntry:
        """Append one entry in one committed transaction and return it.

        `render(key_ms)` builds the object key and body from the entry's key timestamp, which is
        strictly greater than every one handed out before by this outbox, even across restarts
        and wall-clock steps: two entries never share a millisecond, so key order is recording
        order (a snapshot and a batch can never tie). `reserved_ms` (from `reserve_key_ms`) uses
        a timestamp handed out earlier instead: a snapshot keyed at the moment its state was read.
        """
        with self._transaction():
            key_ms = self._advance_key_clock(now_ms) if reserved_ms is None else reserved_ms
            object_key, body = render(key_ms)
            cur = self._db.execute(
                "INSERT INTO outbox (database_id, kind, object_key, body, created_ms) VALUES (?, ?, ?, ?, ?)",
                (database_id, kind, object_key, body, key_ms),
            )
            seq = cur.lastrowid
        assert seq is not None
        self._depth += 1
        return OutboxEntry(seq, database_id, kind, object_key, body, key_ms, 0)

    def reserve_key_ms(self, now_ms: int) -> int:
        """Hand out a unique key timestamp now, for an entry appended later."""
        with self._transaction():
            return self._advance_key_clock(now_ms)

    def _advance_key_clock(self, now_ms: int) -> int:
        row = self._db.execute("SELECT last_ms FROM key_clock WHERE id = 1").fetchone()
        key_ms = max(now_ms, int(row[0]) + 1) if row else now_ms
        self._db.execute(
            "INSERT INTO key_clock (id, last_ms) VALUES (1, ?) "
            "ON CONFLICT (id) DO UPDATE SET last_ms = excluded.last_ms",
            (key_ms,),
        )
        return key_ms

    def databases(self) -> set[str]:
        """Databases that have entries waiting (read once at start; the caller tracks it after)."""
        return {str(row[0]) for row in self._db.execute("SELECT DISTINCT database_id FROM outbox")}

    def head(self, database_id: str) -> OutboxEntry | None:
        """The oldest entry of one database: uploads go in order per database."""
        row = self._db.execute(
            "SELECT seq, database_id, kind, object_key, body, created_ms, attempts "
            "FROM outbox WHERE database_id = ? ORDER BY seq LIMIT 1",
            (database_id,),
        ).fetchone()
        return None if row is None else _entry(row)

    def pending(self, database_id: str) -> list[OutboxEntry]:
        """Every entry of one database not yet uploaded, in order (for restore)."""
        rows = self._db.execute(
            "SELECT seq, database_id, kind, object_key, body, created_ms, attempts "
            "FROM outbox WHERE database_id = ? ORDER BY seq",
            (database_id,),
        ).fetchall()
        return [_entry(row) for row in rows]

    def remove(self, seq: int) -> None:
        cur = self._db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))
        self._depth -= cur.rowcount

    def mark_failed(self, seq: int, error: str) -> None:
        self._db.execute(
            "UPDATE outbox SET attempts = attempts + 1, last_error = ? WHERE seq = ?", (error[:500], seq)
        )

    def depth(self) -> int:
        """Entries waiting (kept in memory: read on every /metrics scrape and heartbeat)."""
        return self._depth

    def oldest_created_ms(self) -> int | None:
        """Key time of the oldest entry (by primary key: no table scan on a big backlog).

        After `close` it is the figure read at close: /metrics and /debug/resources are still
        scraped while the server drains, and must not fail on a closed database.
        """
        if self._closed:
            return self._oldest_at_close
        row = self._db.execute("SELECT created_ms FROM outbox ORDER BY seq LIMIT 1").fetchone()
        return None if row is None else int(row[0])

    def close(self) -> None:
        if not self._closed:
            self._oldest_at_close = self.oldest_created_ms()
            self._closed = True
            self._db.close()

    def _transaction(self) -> _Tx:
        return _Tx(self._db)


class _Tx:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on error (autocommit connection)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self._db.execute("COMMIT")
        else:
            self._db.execute("ROLLBACK")


def _entry(row: tuple[object, ...]) -> OutboxEntry:
    seq, database_id, kind, object_key, body, created_ms, attempts = row
    assert isinstance(seq, int) and isinstance(database_id, str) and isinstance(kind, str)
    assert isinstance(object_key, str) and isinstance(body, bytes)
    assert isinstance(created_ms, int) and isinstance(attempts, int)
    return OutboxEntry(seq, database_id, kind, object_key, body, created_ms, attempts)
