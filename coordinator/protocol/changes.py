"""Change sets (PROTOCOL.md section 1): validated decoding from the wire and canonical encoding.

A decoded change keeps both its parsed key parts (for storage and comparison) and its canonical
wire form (so relaying it never re-encodes, and duplicates compare equal byte for byte).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from coordinator.protocol.encoding import (
    decode_hlc,
    decode_site_id,
    decode_value,
    encode_hlc,
    encode_site_id,
    encode_value,
)
from coordinator.protocol.errors import InvalidPayload

MAX_NAME_LENGTH = 256


def canonical_json(value: Any) -> str:
    """One spelling per value: what the store keys and compares on."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


@dataclass(frozen=True, slots=True)
class Change:
    type: str  # "column" | "delete"
    schema: str
    table: str
    pk_json: str  # canonical JSON of the wire-encoded primary key list
    hlc: bytes
    column: str | None
    wire: dict[str, Any]  # canonical wire form of the whole change


@dataclass(frozen=True, slots=True)
class Migration:
    hlc: bytes
    schema: str
    table: str
    type: str
    wire: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ChangeSet:
    site_id: bytes
    transaction_id: str
    hlc: bytes
    changes: tuple[Change, ...]
    migrations: tuple[Migration, ...]

    def wire(self, changes: tuple[Change, ...] | None = None) -> dict[str, Any]:
        """Wire form, optionally with only some of its changes (e.g. those that were applied)."""
        return {
            "siteId": encode_site_id(self.site_id),
            "transactionId": self.transaction_id,
            "hlc": encode_hlc(self.hlc),
            "changes": [c.wire for c in (self.changes if changes is None else changes)],
            "schemaMigrations": [m.wire for m in self.migrations],
        }


def _name(obj: dict[str, Any], key: str, field: str, required: bool = True) -> str | None:
    value = obj.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value or len(value) > MAX_NAME_LENGTH:
        raise InvalidPayload(f"{field}.{key}", f"must be a non-empty string of at most {MAX_NAME_LENGTH}")
    return value


def _object(value: Any, field: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidPayload(field, "must be an object")
    return value


def decode_change(obj: Any, field: str) -> Change:
    obj = _object(obj, field)
    kind = obj.get("type")
    if kind not in ("column", "delete"):
        raise InvalidPayload(f"{field}.type", 'must be "column" or "delete"')
    schema = _name(obj, "schema", field)
    table = _name(obj, "table", field)
    assert schema is not None and table is not None
    pk = obj.get("pk")
    if not isinstance(pk, list) or not pk:
        raise InvalidPayload(f"{field}.pk", "must be a non-empty list of values")
    pk_wire = [encode_value(decode_value(v, f"{field}.pk[{i}]")) for i, v in enumerate(pk)]
    hlc = decode_hlc(obj.get("hlc"), f"{field}.hlc")
    wire: dict[str, Any] = {
        "type": kind,
        "schema": schema,
        "table": table,
        "pk": pk_wire,
        "hlc": encode_hlc(hlc),
    }
    column: str | None = None
    if kind == "column":
        column = _name(obj, "column", field)
        if "value" not in obj:
            raise InvalidPayload(f"{field}.value", "is required on a column change")
        wire["column"] = column
        wire["value"] = encode_value(decode_value(obj["value"], f"{field}.value"))
        if "priorRow" in obj and obj["priorRow"] is not None:
            raise InvalidPayload(f"{field}.priorRow", "is only allowed on deletes")
    else:
        for key in ("column", "value"):
            if obj.get(key) is not None:
                raise InvalidPayload(f"{field}.{key}", "is not allowed on a delete")
        prior_row = obj.get("priorRow")
        if prior_row is not None:
            prior_row = _object(prior_row, f"{field}.priorRow")
            wire["priorRow"] = {
                str(k): encode_value(decode_value(v, f"{field}.priorRow.{k}")) for k, v in prior_row.items()
            }
    has_prior_hlc = obj.get("priorHlc") is not None
    if has_prior_hlc and "priorValue" not in obj:
        raise InvalidPayload(f"{field}.priorValue", "priorValue and priorHlc travel together or not at all")
    if not has_prior_hlc and obj.get("priorValue") is not None:
        raise InvalidPayload(f"{field}.priorHlc", "priorValue and priorHlc travel together or not at all")
    if has_prior_hlc:
        wire["priorValue"] = encode_value(decode_value(obj.get("priorValue"), f"{field}.priorValue"))
        wire["priorHlc"] = encode_hlc(decode_hlc(obj["priorHlc"], f"{field}.priorHlc"))
    return Change(kind, schema, table, canonical_json(pk_wire), hlc, column, wire)


def decode_migration(obj: Any, field: str) -> Migration:
    obj = _object(obj, field)
    kind = _name(obj, "type", field)
    schema = _name(obj, "schema", field)
    table = _name(obj, "table", field)
    assert kind is not None and schema is not None and table is not None
    from_table = _name(obj, "fromTable", field, required=False)
    ddl = obj.get("ddl")
    if not isinstance(ddl, str):
        raise InvalidPayload(f"{field}.ddl", "must be a string")
    hlc = decode_hlc(obj.get("hlc"), f"{field}.hlc")
    version = obj.get("schemaVersion")
    if not isinstance(version, int) or isinstance(version, bool):
        raise InvalidPayload(f"{field}.schemaVersion", "must be an integer")
    wire: dict[str, Any] = {
        "type": kind,
        "schema": schema,
        "table": table,
        "ddl": ddl,
        "hlc": encode_hlc(hlc),
    }
    if from_table is not None:
        wire["fromTable"] = from_table
    wire["schemaVersion"] = version
    return Migration(hlc, schema, table, kind, wire)


def decode_change_set(obj: Any, field: str) -> ChangeSet:
    obj = _object(obj, field)
    site_id = decode_site_id(obj.get("siteId"), f"{field}.siteId")
    tx_id = obj.get("transactionId")
    if not isinstance(tx_id, str) or not tx_id or len(tx_id) > 200:
        raise InvalidPayload(f"{field}.transactionId", "must be a non-empty string")
    hlc = decode_hlc(obj.get("hlc"), f"{field}.hlc")
    changes = obj.get("changes")
    if not isinstance(changes, list):
        raise InvalidPayload(f"{field}.changes", "must be a list")
    migrations = obj.get("schemaMigrations", [])
    if migrations is None:
        migrations = []
    if not isinstance(migrations, list):
        raise InvalidPayload(f"{field}.schemaMigrations", "must be a list")
    return ChangeSet(
        site_id,
        tx_id,
        hlc,
        tuple(decode_change(c, f"{field}.changes[{i}]") for i, c in enumerate(changes)),
        tuple(decode_migration(m, f"{field}.schemaMigrations[{i}]") for i, m in enumerate(migrations)),
    )


def decode_change_sets(value: Any, field: str = "changes") -> list[ChangeSet]:
    if not isinstance(value, list):
        raise InvalidPayload(field, "must be a list of change sets")
    return [decode_change_set(cs, f"{field}[{i}]") for i, cs in enumerate(value)]
