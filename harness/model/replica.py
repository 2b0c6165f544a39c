"""A client's local replica: the database state it has learned, with the semantics of
PROTOCOL.md section 2 (last writer wins by HLC per cell, a tombstone per deleted row).

It stores every cell's newest write and every row's newest tombstone independently and derives
what is visible (cells newer than the row's tombstone). That makes the state a join of max
registers: the same set of changes gives the same state in any order, so two replicas that saw
the same changes compare equal whatever the delivery order was. Values stay in their wire form,
so comparison never depends on decoding.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from harness.model.codec import hlc_key

RowKey = tuple[str, str, str]  # schema, table, canonical JSON of the pk
CellKey = tuple[str, str, str, str]  # schema, table, pk JSON, column


def pk_key(pk: Any) -> str:
    """Canonical text of a wire pk, so equal keys compare equal as strings."""
    return orjson.dumps(pk, option=orjson.OPT_SORT_KEYS).decode()


def change_cell(change: dict[str, Any]) -> CellKey | RowKey:
    """The cell a column change writes, or the row a delete removes."""
    row = (str(change.get("schema")), str(change.get("table")), pk_key(change.get("pk")))
    if change.get("type") == "delete":
        return row
    return (*row, str(change.get("column")))


@dataclass(slots=True)
class Replica:
    cells: dict[CellKey, tuple[bytes, Any]] = field(default_factory=dict)
    tombstones: dict[RowKey, bytes] = field(default_factory=dict)
    max_hlc: bytes | None = None  # newest HLC seen, the resume point of get_changes

    def _see(self, hlc: bytes) -> None:
        if self.max_hlc is None or hlc > self.max_hlc:
            self.max_hlc = hlc

    def put_cell(self, schema: str, table: str, pk: Any, column: str, hlc_text: str, value: Any) -> bool:
        """Record a column write; True when it is newer than what the cell held."""
        hlc = hlc_key(hlc_text)
        self._see(hlc)
        key = (schema, table, pk_key(pk), column)
        held = self.cells.get(key)
        if held is not None and held[0] >= hlc:
            return False
        self.cells[key] = (hlc, value)
        return True

    def put_tombstone(self, schema: str, table: str, pk: Any, hlc_text: str) -> bool:
        hlc = hlc_key(hlc_text)
        self._see(hlc)
        key = (schema, table, pk_key(pk))
        held = self.tombstones.get(key)
        if held is not None and held >= hlc:
            return False
        self.tombstones[key] = hlc
        return True

    def apply_change(self, change: dict[str, Any]) -> bool:
        schema, table = str(change["schema"]), str(change["table"])
        if change["type"] == "delete":
            return self.put_tombstone(schema, table, change["pk"], change["hlc"])
        return self.put_cell(
            schema, table, change["pk"], str(change["column"]), change["hlc"], change.get("value")
        )

    def apply_change_sets(self, change_sets: Iterable[dict[str, Any]]) -> int:
        """Apply wire change sets; returns how many changes were newer than what was held."""
        applied = 0
        for change_set in change_sets:
            if "hlc" in change_set:
                self._see(hlc_key(change_set["hlc"]))
            for change in change_set.get("changes") or []:
                applied += self.apply_change(change)
        return applied

    def apply_snapshot_entries(self, schema: str, table: str, entries: Iterable[dict[str, Any]]) -> None:
        for entry in entries:
            self.put_cell(schema, table, entry["pk"], str(entry["column"]), entry["hlc"], entry.get("value"))

    def apply_snapshot_tombstones(self, schema: str, table: str, entries: Iterable[dict[str, Any]]) -> None:
        for entry in entries:
            self.put_tombstone(schema, table, entry["pk"], entry["hlc"])

    def merge(self, other: Replica) -> None:
        for (schema, table, pk, column), (hlc, value) in other.cells.items():
            held = self.cells.get((schema, table, pk, column))
            if held is None or held[0] < hlc:
                self.cells[(schema, table, pk, column)] = (hlc, value)
        for key, hlc in other.tombstones.items():
            if self.tombstones.get(key, b"") < hlc:
                self.tombstones[key] = hlc
        if other.max_hlc is not None:
            self._see(other.max_hlc)

    def visible(
        self,
        exclude: set[tuple[str, ...]] | None = None,
        policy: str | None = "revive",
        known_applied: Mapping[CellKey, bytes] | None = None,
    ) -> dict[CellKey, Any]:
        """What a reader sees under the server's tombstone policy (PROTOCOL.md section 2); the
        recorded state stays policy-free, so the policy is applied only here, when judging.
        `exclude` holds cells, or rows (3-tuples) whose every cell is left out.
        - "revive": a cell is visible when newer than its row's tombstone.
        - "delete-wins": no cell of a deleted row is visible, except that a row with a column
          write newer than the tombstone known to have been applied (`known_applied`: cell ->
          newest HLC proven applied) depends on the order the server saw them in: such rows are
          left out, never guessed.
        - None (policy not known): rows with a tombstone are left out."""
        out: dict[CellKey, Any] = {}
        skipped = self.undecidable_rows(policy, known_applied)
        for key, (hlc, value) in self.cells.items():
            if exclude and (key in exclude or key[:3] in exclude):
                continue
            row = key[:3]
            if row in skipped:
                continue
            tomb = self.tombstones.get(row)
            if tomb is None or (policy == "revive" and hlc > tomb):
                out[key] = value
        return out

    def undecidable_rows(
        self, policy: str | None, known_applied: Mapping[CellKey, bytes] | None = None
    ) -> set[RowKey]:
        """Rows whose visible state the policy cannot decide from this replica: every deleted
        row when the policy is unknown; under delete-wins, deleted rows with a column write
        newer than the tombstone proven applied (the outcome depends on the order)."""
        if policy == "revive":
            return set()
        if policy is None:
            return set(self.tombstones)
        if policy != "delete-wins":
            raise ValueError(f"unknown tombstone policy {policy!r} (revive or delete-wins)")
        rows: set[RowKey] = set()
        for key, hlc in (known_applied or {}).items():
            tomb = self.tombstones.get(key[:3])
            if tomb is not None and hlc > tomb:
                rows.add(key[:3])
        return rows

    def covers(self, change: dict[str, Any]) -> bool:
        """True when the replica holds this change or something that superseded it."""
        hlc = hlc_key(change["hlc"])
        key = change_cell(change)
        if len(key) == 3:
            held = self.tombstones.get(key)
            return held is not None and held >= hlc
        cell = self.cells.get(key)
        tomb = self.tombstones.get(key[:3])
        return (cell is not None and cell[0] >= hlc) or (tomb is not None and tomb >= hlc)

    # history form -----------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """JSON-safe form recorded in the history, so checks can compare replicas offline."""
        return {
            "cells": [[list(k), h.hex(), v] for k, (h, v) in sorted(self.cells.items())],
            "tombstones": [[list(k), h.hex()] for k, h in sorted(self.tombstones.items())],
            "maxHlc": self.max_hlc.hex() if self.max_hlc is not None else None,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Replica:
        replica = cls()
        for key, hlc, value in data.get("cells") or []:
            replica.cells[(key[0], key[1], key[2], key[3])] = (bytes.fromhex(hlc), value)
        for key, hlc in data.get("tombstones") or []:
            replica.tombstones[(key[0], key[1], key[2])] = bytes.fromhex(hlc)
        if data.get("maxHlc"):
            replica.max_hlc = bytes.fromhex(data["maxHlc"])
        return replica
