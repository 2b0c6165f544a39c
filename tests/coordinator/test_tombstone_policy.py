"""The tombstone policy (PROTOCOL.md section 2): with `revive` a column write with a larger HLC
than its row's tombstone is applied; with `delete-wins` it is refused (counted in skipped +
conflicts), over WebSocket and HTTP alike, and snapshots and get_changes show the refusal."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coordinator.protocol.changes import decode_change_sets
from coordinator.storage.sqlite_store import DatabaseStore
from tests.coordinator.test_store import _state, change_sets
from tests.coordinator.wire import change_set, column, delete, hlc, new_site_id

SITE = new_site_id()


def _open(path: Path, policy: str) -> DatabaseStore:
    store = DatabaseStore(path, "db", policy)
    store.open()
    return store


def _one(change: dict[str, Any], wall: int) -> list[Any]:
    return decode_change_sets([change_set(SITE, [change], wall)])


@pytest.mark.parametrize("policy", ["revive", "delete-wins"])
def test_a_write_after_a_delete_follows_the_policy(tmp_path: Path, policy: str) -> None:
    store = _open(tmp_path / "s.sqlite", policy)
    store.apply(_one(column("t", [1], "a", 1, hlc(10, SITE)), 10), 0)
    assert store.apply(_one(delete("t", [1], hlc(20, SITE)), 20), 0).applied == 1
    older = store.apply(_one(column("t", [1], "a", 2, hlc(15, SITE)), 15), 0)
    assert older.applied == 0 and older.skipped + older.conflicts == 1  # smaller HLC: refused by both
    newer = store.apply(_one(column("t", [1], "b", 3, hlc(30, SITE)), 30), 0)
    cells, tombs = _state(store)
    assert len(tombs) == 1
    if policy == "revive":
        assert newer.applied == 1 and [(c["column"], c["value"]) for c in cells] == [("b", 3)]
    else:
        assert newer.applied == 0 and newer.conflicts == 1 and cells == []
    logged = [c["hlc"] for cs in store.changes_since(None, None, 1000) for c in cs["changes"]]
    assert len(logged) == (3 if policy == "revive" else 2)  # a refused write is not in the change log
    store.close()


def test_delete_wins_removes_a_row_whatever_arrived_first(tmp_path: Path) -> None:
    """A write applied before an older delete arrived: under delete-wins the row is gone anyway,
    so the state does not depend on arrival order; under revive the newer cell stays."""
    for policy, expected in (("revive", [("a", 7)]), ("delete-wins", [])):
        store = _open(tmp_path / f"{policy}.sqlite", policy)
        store.apply(_one(column("t", [1], "a", 7, hlc(70, SITE)), 70), 0)
        assert store.apply(_one(delete("t", [1], hlc(50, SITE)), 50), 0).applied == 1
        assert [(c["column"], c["value"]) for c in _state(store)[0]] == expected, policy
        store.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sets=change_sets(), seed=st.integers(0, 2**32))
def test_delete_wins_is_order_independent(tmp_path: Path, sets: list[Any], seed: int) -> None:
    shuffled = list(sets)
    random.Random(seed).shuffle(shuffled)
    states = []
    for name, order in (("in-order", sets), ("shuffled", shuffled)):
        path = tmp_path / f"dw-{name}-{seed}-{len(sets)}.sqlite"
        path.unlink(missing_ok=True)
        store = _open(path, "delete-wins")
        for cs in order:
            store.apply(decode_change_sets([cs]), now_ms=0)
        states.append(_state(store))
        store.close()
    assert states[0] == states[1]


# over the wire: a real process ---------------------------------------------------------------------


async def _scenario(coord: Any, connect: Any) -> dict[str, Any]:
    """Write, delete, then write again (WS and HTTP) a row; return what the server said and shows."""
    ws = await connect(coord)
    await ws.handshake("db1")
    site = ws.site_id
    answers = []
    for change, wall in (
        (column("t", [1], "a", 1, hlc(1000, site)), 1000),
        (delete("t", [1], hlc(2000, site)), 2000),
        (column("t", [1], "a", 2, hlc(3000, site)), 3000),
    ):
        await ws.send({"type": "apply_changes", "changes": [change_set(site, [change], wall)]})
        answers.append(await ws.expect("apply_result"))
    other = new_site_id()
    late = change_set(other, [column("t", [1], "b", 3, hlc(4000, other))], 4000)
    async with coord.http() as http:
        posted = (await http.post("/db1/changes", json={"changes": [late]})).json()["data"]
        lines = [json.loads(line) for line in (await http.get("/db1/snapshot")).text.splitlines()]
        logged = (await http.get("/db1/changes")).json()["data"]["changes"]
    return {
        "ws": answers[2],
        "http": posted,
        "cells": [e for c in lines if c["type"] == "column-versions" for e in c["entries"]],
        "tombstones": [e for c in lines if c["type"] == "tombstone" for e in c["entries"]],
        "logged": sorted(c["hlc"] for cs in logged for c in cs["changes"]),
        "late": [late["changes"][0]["hlc"]],
    }


@pytest.mark.parametrize("policy", ["revive", "delete-wins"])
async def test_the_policy_over_ws_and_http(start_coordinator: Any, connect: Any, policy: str) -> None:
    coord = await start_coordinator("--tombstone-policy", policy)
    seen = await _scenario(coord, connect)
    assert len(seen["tombstones"]) == 1
    if policy == "revive":
        assert seen["ws"]["applied"] == 1 and seen["http"]["applied"] == 1
        assert sorted((e["column"], e["value"]) for e in seen["cells"]) == [("a", 2), ("b", 3)]
        assert set(seen["late"]) <= set(seen["logged"])
    else:
        for answer in (seen["ws"], seen["http"]):
            assert answer["applied"] == 0 and answer["skipped"] + answer["conflicts"] == 1
        assert seen["cells"] == []
        assert not set(seen["late"]) & set(seen["logged"]) and len(seen["logged"]) == 2
