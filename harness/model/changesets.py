"""ChangeSet / Change / Migration as PROTOCOL.md section 1 describes them: builders that produce
wire dicts, strict parsers that turn wire dicts back into typed values, and a per-site HLC clock
that makes every change set a client writes carry fresh, increasing HLCs."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from harness.model.codec import (
    HLC,
    CodecError,
    SqlValue,
    decode_site_id,
    decode_value,
    encode_site_id,
    encode_value,
    hlc_key,
)

ChangeType = Literal["column", "delete"]


def _require(d: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(d, dict) or key not in d:
        raise CodecError(f"{where}: missing field {key!r}")
    value = d[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise CodecError(f"{where}: field {key!r} has the wrong type")
    return value


@dataclass(frozen=True, slots=True)
class Change:
    type: ChangeType
    schema: str
    table: str
    pk: tuple[SqlValue, ...]
    hlc: HLC
    column: str | None = None
    value: SqlValue = None
    prior_value: SqlValue = None
    prior_hlc: HLC | None = None
    prior_row: dict[str, SqlValue] | None = None

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {
            "type": self.type,
            "schema": self.schema,
            "table": self.table,
            "pk": [encode_value(v) for v in self.pk],
            "hlc": self.hlc.encode(),
        }
        if self.type == "column":
            wire["column"] = self.column
            wire["value"] = encode_value(self.value)
        if self.prior_hlc is not None:
            wire["priorValue"] = encode_value(self.prior_value)
            wire["priorHlc"] = self.prior_hlc.encode()
        if self.type == "delete" and self.prior_row is not None:
            wire["priorRow"] = {k: encode_value(v) for k, v in self.prior_row.items()}
        return wire

    @classmethod
    def from_wire(cls, d: Any) -> Change:
        where = "change"
        kind = _require(d, "type", str, where)
        if kind not in ("column", "delete"):
            raise CodecError(f"{where}: type must be column or delete, got {kind!r}")
        pk = tuple(decode_value(v) for v in _require(d, "pk", list, where))
        column: str | None = None
        value: SqlValue = None
        if kind == "column":
            column = _require(d, "column", str, where)
            if "value" not in d:
                raise CodecError(f"{where}: a column change carries a value")
            value = decode_value(d["value"])
        has_prior_value, has_prior_hlc = "priorValue" in d, "priorHlc" in d
        if has_prior_value != has_prior_hlc:
            raise CodecError(f"{where}: priorValue and priorHlc travel together")
        prior_row = None
        if "priorRow" in d:
            if kind != "delete":
                raise CodecError(f"{where}: priorRow only on deletes")
            raw_row = _require(d, "priorRow", dict, where)
            prior_row = {str(k): decode_value(v) for k, v in raw_row.items()}
        return cls(
            type=kind,
            schema=_require(d, "schema", str, where),
            table=_require(d, "table", str, where),
            pk=pk,
            hlc=HLC.decode(_require(d, "hlc", str, where)),
            column=column,
            value=value,
            prior_value=decode_value(d["priorValue"]) if has_prior_value else None,
            prior_hlc=HLC.decode(d["priorHlc"]) if has_prior_hlc else None,
            prior_row=prior_row,
        )


@dataclass(frozen=True, slots=True)
class Migration:
    type: str
    schema: str
    table: str
    ddl: str
    hlc: HLC
    schema_version: int
    from_table: str | None = None

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {
            "type": self.type,
            "schema": self.schema,
            "table": self.table,
            "ddl": self.ddl,
            "hlc": self.hlc.encode(),
            "schemaVersion": self.schema_version,
        }
        if self.from_table is not None:
            wire["fromTable"] = self.from_table
        return wire

    @classmethod
    def from_wire(cls, d: Any) -> Migration:
        where = "migration"
        from_table = d.get("fromTable") if isinstance(d, dict) else None
        if from_table is not None and not isinstance(from_table, str):
            raise CodecError(f"{where}: fromTable is a string")
        return cls(
            type=_require(d, "type", str, where),
            schema=_require(d, "schema", str, where),
            table=_require(d, "table", str, where),
            ddl=_require(d, "ddl", str, where),
            hlc=HLC.decode(_require(d, "hlc", str, where)),
            schema_version=_require(d, "schemaVersion", int, where),
            from_table=from_table,
        )


@dataclass(frozen=True, slots=True)
class ChangeSet:
    site_id: bytes
    hlc: HLC
    changes: tuple[Change, ...]
    migrations: tuple[Migration, ...] = ()

    @property
    def transaction_id(self) -> str:
        return self.hlc.transaction_id()

    def max_hlc(self) -> HLC:
        return max([self.hlc, *(c.hlc for c in self.changes), *(m.hlc for m in self.migrations)])

    def to_wire(self) -> dict[str, Any]:
        return {
            "siteId": encode_site_id(self.site_id),
            "transactionId": self.transaction_id,
            "hlc": self.hlc.encode(),
            "changes": [c.to_wire() for c in self.changes],
            "schemaMigrations": [m.to_wire() for m in self.migrations],
        }

    @classmethod
    def from_wire(cls, d: Any) -> ChangeSet:
        where = "changeSet"
        site_id = decode_site_id(_require(d, "siteId", str, where))
        hlc = HLC.decode(_require(d, "hlc", str, where))
        transaction_id = _require(d, "transactionId", str, where)
        if transaction_id != hlc.transaction_id():
            raise CodecError(f"{where}: transactionId {transaction_id!r} does not match its hlc")
        changes = tuple(Change.from_wire(c) for c in _require(d, "changes", list, where))
        migrations = tuple(Migration.from_wire(m) for m in d.get("schemaMigrations") or [])
        return cls(site_id=site_id, hlc=hlc, changes=changes, migrations=migrations)


@dataclass(slots=True)
class HlcClock:
    """Issues strictly increasing HLCs for one site: wall time from `wall_ms`, a counter that
    breaks ties within a millisecond. Observed remote HLCs push it forward, as an HLC must."""

    site_id: bytes
    wall_ms: Callable[[], int]
    _last_wall: int = 0
    _counter: int = 0

    def tick(self) -> HLC:
        wall = self.wall_ms()
        if wall > self._last_wall:
            self._last_wall, self._counter = wall, 0
        else:
            self._counter += 1
            if self._counter > 0xFFFF:
                self._last_wall, self._counter = self._last_wall + 1, 0
        return HLC(self._last_wall, self._counter, self.site_id, 0)

    def observe(self, remote: HLC) -> None:
        if (remote.wall_time, remote.counter) > (self._last_wall, self._counter):
            self._last_wall, self._counter = remote.wall_time, remote.counter


@dataclass(slots=True)
class ChangeSetBuilder:
    """Builds one change set: every change gets the set's wall time and counter and its own
    opSeq, so the whole set is one transaction with one transactionId."""

    clock: HlcClock
    _changes: list[tuple[ChangeType, str, str, tuple[SqlValue, ...], str | None, SqlValue]] = field(
        default_factory=list
    )

    def set(
        self, table: str, pk: Sequence[SqlValue], column: str, value: SqlValue, schema: str = "main"
    ) -> ChangeSetBuilder:
        self._changes.append(("column", schema, table, tuple(pk), column, value))
        return self

    def delete(self, table: str, pk: Sequence[SqlValue], schema: str = "main") -> ChangeSetBuilder:
        self._changes.append(("delete", schema, table, tuple(pk), None, None))
        return self

    def build(self) -> ChangeSet:
        if not self._changes:
            raise ValueError("a change set holds at least one change")
        base = self.clock.tick()
        changes = tuple(
            Change(
                type=kind,
                schema=schema,
                table=table,
                pk=pk,
                hlc=HLC(base.wall_time, base.counter, base.site_id, op_seq),
                column=column,
                value=value,
            )
            for op_seq, (kind, schema, table, pk, column, value) in enumerate(self._changes)
        )
        self._changes = []
        return ChangeSet(site_id=self.clock.site_id, hlc=base, changes=changes)


def max_hlc_text(change_sets: list[dict[str, Any]]) -> str | None:
    """The newest HLC among change sets and their changes, in its wire form."""
    best: tuple[bytes, str] | None = None
    for change_set in change_sets:
        candidates = [change_set.get("hlc")] + [c.get("hlc") for c in change_set.get("changes") or []]
        for text in candidates:
            try:
                key = hlc_key(text)
            except CodecError:
                continue
            if best is None or key > best[0]:
                best = (key, str(text))
    return best[1] if best else None
