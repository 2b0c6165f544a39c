"""Wire builders for the coordinator's tests, written from PROTOCOL.md (not from the
coordinator's own codec, so a codec bug cannot hide itself in its tests)."""

from __future__ import annotations

import base64
import itertools
import os
import struct
from typing import Any

_op_seq = itertools.count(1)


def new_site_id() -> str:
    return base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")


def site_bytes(site_id: str) -> bytes:
    return base64.urlsafe_b64decode(site_id + "==")


def hlc(wall_ms: int, site_id: str, counter: int = 0, op_seq: int | None = None) -> str:
    seq = next(_op_seq) if op_seq is None else op_seq
    return base64.b64encode(struct.pack(">QH16sI", wall_ms, counter, site_bytes(site_id), seq)).decode()


def column(table: str, pk: list[Any], col: str, value: Any, at: str, schema: str = "main") -> dict[str, Any]:
    return {
        "type": "column",
        "schema": schema,
        "table": table,
        "pk": pk,
        "column": col,
        "value": value,
        "hlc": at,
    }


def delete(table: str, pk: list[Any], at: str, schema: str = "main") -> dict[str, Any]:
    return {"type": "delete", "schema": schema, "table": table, "pk": pk, "hlc": at}


def change_set(site_id: str, changes: list[dict[str, Any]], wall_ms: int = 1000) -> dict[str, Any]:
    tx_hlc = hlc(wall_ms, site_id)
    return {
        "siteId": site_id,
        "transactionId": f"{wall_ms}:0:{site_id}:{tx_hlc[-8:]}",
        "hlc": tx_hlc,
        "changes": changes,
        "schemaMigrations": [],
    }


def write(site_id: str, table: str, pk: int, col: str, value: Any, wall_ms: int = 1000) -> dict[str, Any]:
    """A change set with one column write."""
    return change_set(site_id, [column(table, [pk], col, value, hlc(wall_ms, site_id))], wall_ms)
