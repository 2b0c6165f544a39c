"""What the object store holds, read from the final listing (PROTOCOL.md section 5): the
changes of every batch object and the cells of every snapshot object, per database."""

from __future__ import annotations

from typing import Any

from harness.checks.observations import S3Object
from harness.model.replica import Replica


def replicas_from_objects(objects: list[S3Object]) -> tuple[dict[str, Replica], list[str]]:
    """Per databaseId, a replica holding everything the objects say; plus unreadable keys."""
    by_db: dict[str, Replica] = {}
    unreadable: list[str] = []
    for obj in sorted(objects, key=lambda o: o.key):
        document: Any = obj.document()
        if not isinstance(document, dict):
            unreadable.append(obj.key)
            continue
        replica = by_db.setdefault(str(document.get("databaseId")), Replica())
        try:
            if "/batches/" in f"/{obj.key}" or "changes" in document:
                replica.apply_change_sets(document.get("changes") or [])
            for chunk in document.get("chunks") or []:
                kind = chunk.get("type")
                if kind == "column-versions":
                    replica.apply_snapshot_entries(chunk["schema"], chunk["table"], chunk["entries"])
                elif kind == "tombstone":
                    replica.apply_snapshot_tombstones(chunk["schema"], chunk["table"], chunk["entries"])
        except (KeyError, TypeError, ValueError):
            unreadable.append(obj.key)
    return by_db, unreadable
