"""The local replica's last-writer-wins semantics and the snapshot reader's judgement."""

from __future__ import annotations

import random
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from harness.client.snapshot import SnapshotReader
from harness.client.sync_client import ClientConfig, SyncClient
from harness.history import History
from harness.model.changesets import Change, ChangeSet
from harness.model.codec import HLC, encode_site_id
from harness.model.replica import Replica

SITE = b"\x07" * 16


def _change(
    kind: str, pk: int, column: str, value: Any, wall: int, site: bytes = SITE, op_seq: int = 0
) -> dict[str, Any]:
    hlc = HLC(wall, 0, site, op_seq)  # HLCs are unique per change: op_seq breaks ties
    change = Change(kind, "main", "t", (pk,), hlc, column if kind == "column" else None, value)  # type: ignore[arg-type]
    return ChangeSet(site, hlc, (change,)).to_wire()


changes = st.lists(
    st.tuples(
        st.sampled_from(["column", "column", "delete"]),
        st.integers(0, 3),
        st.sampled_from(["a", "b"]),
        st.integers(0, 9),
        st.integers(1, 50),
    ),
    max_size=30,
)


@given(changes, st.randoms())
def test_same_changes_in_any_order_give_the_same_visible_state(
    items: list[tuple[str, int, str, int, int]], rnd: random.Random
) -> None:
    sets = [
        _change(k, pk, col, val, wall, bytes([wall % 5]) * 16, op_seq=i)
        for i, (k, pk, col, val, wall) in enumerate(items)
    ]
    shuffled = list(sets)
    rnd.shuffle(shuffled)
    a, b = Replica(), Replica()
    a.apply_change_sets(sets)
    b.apply_change_sets(shuffled)
    assert a.visible() == b.visible()
    assert Replica.from_json(a.to_json()).visible() == a.visible()


def test_last_writer_wins_and_tombstones_hide_older_cells_until_revived() -> None:
    replica = Replica()
    replica.apply_change_sets([_change("column", 1, "a", "old", 10), _change("column", 1, "a", "new", 20)])
    replica.apply_change_sets([_change("column", 1, "a", "stale", 15)])
    assert list(replica.visible().values()) == ["new"]
    replica.apply_change_sets([_change("delete", 1, "", None, 30)])
    assert replica.visible() == {}
    replica.apply_change_sets([_change("column", 1, "b", "revived", 40)])
    assert list(replica.visible().values()) == ["revived"]
    assert replica.covers(_change("column", 1, "a", "x", 25)["changes"][0])  # superseded by the delete
    assert not replica.covers(_change("column", 2, "a", "x", 5)["changes"][0])


def test_uncertain_rows_and_cells_are_excluded_from_the_visible_state() -> None:
    replica = Replica()
    replica.apply_change_sets([_change("column", 1, "a", 1, 10), _change("column", 2, "a", 2, 10)])
    row_of_1 = ("main", "t", "[1]")
    assert len(replica.visible(exclude={row_of_1})) == 1


def _chunks(entries: int = 3, footer_entries: int | None = None) -> list[dict[str, Any]]:
    hlc = HLC(5, 0, SITE).encode()
    rows = [{"column": "a", "hlc": hlc, "value": i, "pk": [i]} for i in range(entries)]
    return [
        {
            "type": "header",
            "siteId": encode_site_id(SITE),
            "hlc": hlc,
            "snapshotFormat": 1,
            "tableCount": 1,
            "migrationCount": 0,
            "snapshotId": "s1",
        },
        {"type": "table-start", "schema": "main", "table": "t", "estimatedEntries": entries},
        {"type": "column-versions", "schema": "main", "table": "t", "entries": rows},
        {"type": "table-end", "schema": "main", "table": "t", "entriesWritten": entries},
        {
            "type": "tombstone",
            "schema": "main",
            "table": "t",
            "entries": [{"pk": [9], "hlc": hlc, "createdAt": 1}],
        },
        {
            "type": "footer",
            "snapshotId": "s1",
            "totalTables": 1,
            "totalEntries": entries if footer_entries is None else footer_entries,
            "totalMigrations": 0,
        },
    ]


def test_a_consistent_stream_is_complete_without_problems() -> None:
    reader = SnapshotReader()
    for chunk in _chunks():
        reader.feed(chunk)
    assert reader.complete and reader.problems == [] and len(reader.replica.visible()) == 3


def test_footer_counts_that_disagree_are_problems() -> None:
    reader = SnapshotReader()
    for chunk in _chunks(footer_entries=7):
        reader.feed(chunk)
    assert reader.complete and any("totalEntries" in p for p in reader.problems)


def test_raw_values_and_misordered_chunks_are_problems() -> None:
    chunks = _chunks()
    chunks[2]["entries"][0]["value"] = 2**60  # an unsafe integer sent bare
    reader = SnapshotReader()
    for chunk in [chunks[1], *chunks]:  # table-start before the header
        reader.feed(chunk)
    assert any("before the header" in p for p in reader.problems)
    assert any("JSON cannot carry" in p for p in reader.problems)


def test_checkpoint_tracks_tables_and_entries_and_a_resume_must_repeat_it() -> None:
    reader = SnapshotReader()
    for chunk in _chunks()[:3]:
        reader.feed(chunk)
    checkpoint = reader.checkpoint()
    assert checkpoint is not None
    assert (checkpoint["lastTableIndex"], checkpoint["lastEntryIndex"], checkpoint["completedTables"]) == (
        0,
        3,
        [],
    )
    resumed = SnapshotReader(resumed_from=checkpoint)
    other = dict(_chunks()[0], snapshotId="another")
    resumed.feed(other)
    assert any("snapshotId" in p for p in resumed.problems)


def test_the_client_replica_takes_its_own_write_only_when_proven_applied() -> None:
    client = SyncClient(
        "x", ClientConfig("ws://127.0.0.1:1/sync/ws", "db1"), History(), random.Random(1), bytes(16)
    )
    one = client.builder().set("t", [1], "c", 1).build().to_wire()
    client.absorb_own_write([one], {"applied": 0, "skipped": 1})
    assert client.replica.cells == {} and not client.uncertain  # refused: learnt by catch-up
    two = client.builder().set("t", [2], "c", 2).set("t", [3], "c", 3).build().to_wire()
    client.absorb_own_write([two], {"applied": 1, "skipped": 1})
    assert client.replica.cells == {} and len(client.uncertain) == 2  # which one is not said
    client.absorb_own_write([two], {"applied": 2})
    assert len(client.replica.cells) == 2 and not client.uncertain


async def test_an_http_apply_cut_short_marks_its_cells_uncertain() -> None:
    """A server that never answers: the behaviour's time bound cancels the request, the server
    may still apply it and never tells this site (own-site exclusion), so its cell is uncertain."""
    import asyncio
    import contextlib

    arrived, hold = asyncio.Event(), asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            await reader.read(1 << 16)
            arrived.set()
            await hold.wait()  # the request stays unanswered until the client gives up

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = SyncClient(
        "x", ClientConfig(f"ws://127.0.0.1:{port}/sync/ws", "db1"), History(), random.Random(1), bytes(16)
    )
    one = client.builder().set("t", [1], "c", 1).build()
    task = asyncio.ensure_future(client.http_apply([one]))
    await asyncio.wait_for(arrived.wait(), 10.0)  # the request is in flight
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    hold.set()
    server.close()
    assert client.uncertain == {("main", "t", "[1]", "c")} and client.replica.cells == {}
