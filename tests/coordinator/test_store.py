"""The SQLite store's semantics: last writer wins by HLC, tombstones, order independence,
and get_changes batching at transaction boundaries."""

from __future__ import annotations

import base64
import random
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coordinator.protocol.changes import decode_change_sets
from coordinator.storage.sqlite_store import DatabaseStore
from tests.coordinator.wire import change_set, column, delete, hlc, new_site_id

SITES = [new_site_id() for _ in range(3)]


def _open(path: Path) -> DatabaseStore:
    store = DatabaseStore(path, "db")
    store.open()
    return store


def _state(store: DatabaseStore) -> tuple[list[Any], list[Any]]:
    reader = store.snapshot_reader()
    try:
        cells = [e for t in reader.tables for chunk in reader.column_versions(t) for e in chunk]
        tombs = [(e["pk"], e["hlc"]) for t in reader.tables for chunk in reader.tombstones(t) for e in chunk]
        return cells, tombs
    finally:
        reader.close()


@st.composite
def change_sets(draw: Any) -> list[dict[str, Any]]:
    """Random column writes and deletes over a few cells; every HLC unique (as HLCs are)."""
    n = draw(st.integers(1, 25))
    walls = draw(st.lists(st.integers(1, 60), min_size=n, max_size=n))
    sets = []
    for i, wall in enumerate(walls):
        site = SITES[draw(st.integers(0, 2))]
        pk = [draw(st.integers(0, 2))]
        at = hlc(wall, site, op_seq=i + 1)
        if draw(st.booleans()) and draw(st.booleans()):
            change = delete("t", pk, at)
        else:
            change = column("t", pk, draw(st.sampled_from(["a", "b"])), draw(st.integers(0, 9)), at)
        sets.append(change_set(site, [change], wall))
    return sets


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sets=change_sets(), seed=st.integers(0, 2**32), duplicates=st.integers(0, 5))
def test_any_order_with_duplicates_gives_the_same_state(
    tmp_path: Path, sets: list[Any], seed: int, duplicates: int
) -> None:
    rng = random.Random(seed)
    shuffled = sets + [rng.choice(sets) for _ in range(duplicates)]
    rng.shuffle(shuffled)
    stores = []
    for name, order in (("in-order", sets), ("shuffled", shuffled)):
        path = tmp_path / f"{name}-{seed}-{len(sets)}-{duplicates}.sqlite"
        path.unlink(missing_ok=True)
        store = _open(path)
        for cs in order:  # one change set per apply call, as separate clients would
            store.apply(decode_change_sets([cs]), now_ms=0)
        stores.append(store)
    try:
        cells_a, tombs_a = _state(stores[0])
        cells_b, tombs_b = _state(stores[1])
        assert cells_a == cells_b and tombs_a == tombs_b
        # and re-applying everything changes nothing
        again = stores[1].apply(decode_change_sets(sets), now_ms=0)
        assert again.applied == 0 and again.skipped + again.conflicts == sum(
            len(cs["changes"]) for cs in sets
        )
    finally:
        for store in stores:
            store.close()


def test_apply_counts_and_revival(tmp_path: Path) -> None:
    store = _open(tmp_path / "s.sqlite")
    site = SITES[0]
    first = store.apply(decode_change_sets([change_set(site, [column("t", [1], "a", 1, hlc(10, site))])]), 0)
    assert (first.applied, first.transactions) == (1, 1)
    older = store.apply(decode_change_sets([change_set(site, [column("t", [1], "a", 0, hlc(5, site))])]), 0)
    assert older.applied == 0 and older.conflicts == 1
    store.apply(decode_change_sets([change_set(site, [delete("t", [1], hlc(20, site))])]), 0)
    assert _state(store)[0] == []
    store.apply(decode_change_sets([change_set(site, [column("t", [1], "b", 2, hlc(30, site))])]), 0)
    cells, tombs = _state(store)
    assert [(c["column"], c["value"]) for c in cells] == [("b", 2)] and len(tombs) == 1
    store.close()


def test_get_changes_batches_never_split_interleaved_transactions(tmp_path: Path) -> None:
    """Two transactions whose HLCs interleave: a batch cut after the first would make a client
    that continues from the batch's largest HLC miss part of the second."""
    store = _open(tmp_path / "s.sqlite")
    a, b = SITES[0], SITES[1]
    tx_a = change_set(a, [column("t", [1], "x", 1, hlc(10, a)), column("t", [1], "y", 1, hlc(30, a))], 10)
    tx_b = change_set(b, [column("t", [2], "x", 1, hlc(20, b)), column("t", [2], "y", 1, hlc(40, b))], 20)
    store.apply(decode_change_sets([tx_a, tx_b]), 0)
    batch = store.changes_since(None, None, batch_size=1)
    assert {cs["transactionId"] for cs in batch} == {tx_a["transactionId"], tx_b["transactionId"]}
    # and own-site exclusion
    only_b = store.changes_since(None, base64.urlsafe_b64decode(a + "=="), batch_size=1000)
    assert [cs["transactionId"] for cs in only_b] == [tx_b["transactionId"]]
    store.close()


def test_paging_through_many_transactions_loses_nothing(tmp_path: Path) -> None:
    store = _open(tmp_path / "s.sqlite")
    rng = random.Random(7)
    sets = []
    for i in range(60):
        site = SITES[i % 3]
        walls = sorted(rng.sample(range(1, 10_000), 3))
        sets.append(
            change_set(site, [column("t", [i], f"c{j}", j, hlc(w, site)) for j, w in enumerate(walls)], i)
        )
    store.apply(decode_change_sets(sets), 0)
    seen: list[str] = []
    since = None
    for _ in range(200):
        batch = store.changes_since(since, None, batch_size=7)
        if not batch:
            break
        seen += [c["hlc"] for cs in batch for c in cs["changes"]]
        since = max(base64.b64decode(c["hlc"]) for cs in batch for c in cs["changes"])
    assert sorted(seen) == sorted(c["hlc"] for cs in sets for c in cs["changes"])
    assert len(seen) == len(set(seen)) == 180
    store.close()
