"""Snapshot cuts at every kind of checkpoint, on hand-made streams of three tables: where the
reader stops, what it kept, and the checkpoint a resume continues from."""

from __future__ import annotations

import random
from typing import Any

import pytest

from harness.client.behaviours import Snapshotter, cut_at
from harness.client.snapshot import SnapshotCut, SnapshotReader
from harness.model.codec import HLC as Hlc
from harness.model.codec import encode_site_id

SITE = encode_site_id(b"\x01" * 16)
HLC = Hlc(1000, 1, b"\x01" * 16, 0).encode()
SIZES = {"a": 3, "b": 5, "c": 2}  # entries per table, in stream order


def _entries(table: str, n: int, start: int = 0) -> list[dict[str, Any]]:
    return [{"column": "x", "hlc": HLC, "value": f"{table}{i}", "pk": [i]} for i in range(start, start + n)]


def _stream(chunk_size: int = 2) -> list[dict[str, Any]]:
    chunks: list[dict[str, Any]] = [
        {
            "type": "header",
            "siteId": SITE,
            "hlc": HLC,
            "snapshotFormat": 1,
            "tableCount": 3,
            "migrationCount": 0,
            "snapshotId": "s1",
        }
    ]
    for table, n in SIZES.items():
        chunks.append({"type": "table-start", "schema": "main", "table": table, "estimatedEntries": n})
        for start in range(0, n, chunk_size):
            entries = _entries(table, min(chunk_size, n - start), start)
            chunks.append({"type": "column-versions", "schema": "main", "table": table, "entries": entries})
        chunks.append({"type": "table-end", "schema": "main", "table": table, "entriesWritten": n})
    chunks.append(
        {"type": "footer", "snapshotId": "s1", "totalTables": 3, "totalEntries": 10, "totalMigrations": 0}
    )
    return chunks


def _read(cut: SnapshotCut | None) -> tuple[SnapshotReader, bool]:
    reader = SnapshotReader()
    for chunk in _stream():
        if reader.take(chunk, cut):
            return reader, True
    return reader, False


@pytest.mark.parametrize(
    ("cut", "entries", "table_index", "entry_index", "completed"),
    [
        (SnapshotCut("entries", 1), 1, 0, 1, []),  # the first entry, mid-chunk
        (SnapshotCut("entries", 5), 5, 1, 2, ["main.a"]),  # mid-table, at a chunk's end
        (SnapshotCut("entries", 6), 6, 1, 3, ["main.a"]),  # mid-table, mid-chunk
        (SnapshotCut("table_start", 1), 3, 1, 0, ["main.a"]),  # boundary: before table b's first entry
        (SnapshotCut("table_end", 1), 8, 1, 0, ["main.a", "main.b"]),  # boundary: after b's end
        (SnapshotCut("last_entry"), 10, 2, 2, ["main.a", "main.b"]),  # every entry, c still open
        (SnapshotCut("chunks", 3), 2, 0, 2, []),
    ],
)
def test_a_cut_stops_where_it_says_with_the_checkpoint_of_what_was_read(
    cut: SnapshotCut, entries: int, table_index: int, entry_index: int, completed: list[str]
) -> None:
    reader, stopped = _read(cut)
    assert stopped and not reader.complete and not reader.problems
    assert reader.entries == entries == len(reader.replica.cells)
    checkpoint = reader.checkpoint()
    assert checkpoint is not None
    assert (checkpoint["lastTableIndex"], checkpoint["lastEntryIndex"]) == (table_index, entry_index)
    assert checkpoint["completedTables"] == completed and checkpoint["entriesProcessed"] == entries


def test_no_cut_reads_the_whole_stream_and_learns_the_table_sizes() -> None:
    reader, stopped = _read(None)
    assert not stopped and reader.complete and not reader.problems
    assert reader.table_entries == list(SIZES.values()) and reader.summary()["tableEntries"] == [3, 5, 2]


def test_a_cut_beyond_the_stream_lets_it_complete() -> None:
    reader, stopped = _read(SnapshotCut("entries", 50))
    assert not stopped and reader.complete


def test_cut_points_are_placed_by_the_table_sizes() -> None:
    rng, sizes = random.Random(1), list(SIZES.values())
    assert cut_at("first", sizes, rng) == SnapshotCut("entries", 1)
    mid = cut_at("mid", sizes, rng)
    starts = [0, 3, 8]
    assert mid.kind == "entries" and any(s < mid.n < s + n for s, n in zip(starts, sizes, strict=True))
    assert cut_at("table_start", sizes, rng).kind == "table_start"
    assert 0 <= cut_at("table_end", sizes, rng).n < 3
    assert cut_at("last", sizes, rng) == SnapshotCut("last_entry")
    with pytest.raises(ValueError, match="unknown snapshot cut"):
        SnapshotCut("somewhere")


def test_a_snapshotter_refuses_an_unknown_cut_point() -> None:
    with pytest.raises(ValueError, match="unknown cut points"):
        Snapshotter(client=None, rng=random.Random(1), cut_points=("middle",))  # type: ignore[arg-type]
