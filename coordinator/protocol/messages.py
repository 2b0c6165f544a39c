"""Server-to-client messages of PROTOCOL.md section 3.2, as ready-to-send JSON text.

Frames are serialized once: a broadcast to a thousand sessions encodes its message one time.
"""

from __future__ import annotations

from typing import Any

import orjson

PROTOCOL_VERSION = 1


def frame(message: dict[str, Any]) -> str:
    return orjson.dumps(message).decode()


def handshake_ack(database_id: str, server_site_id: str, connection_id: str) -> str:
    return frame(
        {
            "type": "handshake_ack",
            "databaseId": database_id,
            "serverSiteId": server_site_id,
            "connectionId": connection_id,
            "protocolVersion": PROTOCOL_VERSION,
        }
    )


def error(code: str, message: str, fatal: bool) -> str:
    return frame({"type": "error", "code": code, "message": message, "fatal": fatal})


def notice(
    code: str, severity: str, component: str, message: str, ts: int, data: dict[str, Any] | None = None
) -> str:
    body: dict[str, Any] = {
        "type": "notice",
        "code": code,
        "severity": severity,
        "component": component,
        "message": message,
        "ts": ts,
    }
    if data is not None:
        body["data"] = data
    return frame(body)


def changes(change_sets: list[dict[str, Any]]) -> str:
    return frame({"type": "changes", "changeSets": change_sets})


def push_changes(change_sets: list[dict[str, Any]], seq: int | None) -> str:
    """[ext] `seq` (None: a plain v1 push without it)."""
    if seq is None:
        return frame({"type": "push_changes", "changeSets": change_sets})
    return frame({"type": "push_changes", "changeSets": change_sets, "seq": seq})


def apply_result(
    request_id: Any, applied: int, skipped: int, conflicts: int, transactions: int, seq: int | None = None
) -> str:
    """[ext] `seq`: the broadcast sequence number this apply took, so the sender can account
    for the number it never receives as a push."""
    body: dict[str, Any] = {
        "type": "apply_result",
        "applied": applied,
        "skipped": skipped,
        "conflicts": conflicts,
        "transactions": transactions,
    }
    if request_id is not None:
        body["requestId"] = request_id
    if seq is not None:
        body["seq"] = seq
    return frame(body)


def snapshot_chunk(chunk: dict[str, Any]) -> str:
    return frame({"type": "snapshot_chunk", "chunk": chunk})


SNAPSHOT_COMPLETE = frame({"type": "snapshot_complete"})
PONG = frame({"type": "pong"})


def heartbeat(ts: int, seq: int, clients: int, backend: str) -> str:
    return frame({"type": "heartbeat", "ts": ts, "seq": seq, "clients": clients, "backend": backend})


def presence(database_id: str, sessions: list[dict[str, Any]]) -> str:
    return frame({"type": "presence", "databaseId": database_id, "sessions": sessions})


def presence_delta(database_id: str, joined: list[dict[str, Any]], left: list[str]) -> str:
    """[ext] the joins and leaves since the previous delta (PROTOCOL.md 3.2)."""
    return frame({"type": "presence_delta", "databaseId": database_id, "joined": joined, "left": left})


def presence_encoded(database_id: str, entries: list[bytes]) -> str:
    """The full `presence` list from entries already encoded as JSON objects."""
    head = b'{"type":"presence","databaseId":' + orjson.dumps(database_id) + b',"sessions":['
    return (head + b",".join(entries) + b"]}").decode()
