"""Just enough of sync protocol v1 (../shared/PROTOCOL.md) for environment and fault tests: a
WebSocket session that handshakes and collects heartbeats, and one change set over HTTP. The
full client is harness/client; these tests must not depend on it."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import struct
import time
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect


def new_site_id() -> tuple[bytes, str]:
    raw = os.urandom(16)
    return raw, base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def change_set(value: str) -> dict[str, Any]:
    """One column write to main.t pk [1] with a fresh HLC."""
    raw_site, site_id = new_site_id()
    wall = int(time.time() * 1000)
    hlc = base64.b64encode(struct.pack(">QH", wall, 0) + raw_site + struct.pack(">I", 1)).decode()
    change = {
        "type": "column",
        "schema": "main",
        "table": "t",
        "pk": [1],
        "hlc": hlc,
        "column": "c",
        "value": value,
    }
    return {
        "siteId": site_id,
        "transactionId": f"{wall}:0:{site_id}",
        "hlc": hlc,
        "changes": [change],
        "schemaMigrations": [],
    }


async def post_change(base_url: str, database: str, value: str) -> dict[str, Any]:
    cs = change_set(value)
    async with httpx.AsyncClient(timeout=10.0, trust_env=False) as http:
        response = await http.post(
            f"{base_url}/{database}/changes", json={"changes": [cs]}, headers={"X-Site-Id": cs["siteId"]}
        )
    response.raise_for_status()
    return dict(response.json())


async def get_values(base_url: str, database: str) -> list[Any]:
    _, site_id = new_site_id()
    async with httpx.AsyncClient(timeout=10.0, trust_env=False) as http:
        response = await http.get(f"{base_url}/{database}/changes", headers={"X-Site-Id": site_id})
    response.raise_for_status()
    sets = response.json()["data"]["changes"]
    return [c.get("value") for s in sets for c in s["changes"]]


async def open_session(ws_url: str, database: str = "db1") -> ClientConnection:
    """A handshaken WebSocket session."""
    _, site_id = new_site_id()
    ws = await asyncio.wait_for(connect(ws_url, open_timeout=10), 15.0)
    await ws.send(
        json.dumps({"type": "handshake", "databaseId": database, "siteId": site_id, "protocolVersion": 1})
    )
    for _ in range(20):
        message = json.loads(await asyncio.wait_for(ws.recv(), 10.0))
        if message["type"] == "handshake_ack":
            return ws
        if message["type"] == "error":
            raise AssertionError(f"handshake refused: {message}")
    raise AssertionError("no handshake_ack in 20 messages")


async def next_heartbeat(ws: ClientConnection, timeout_s: float) -> dict[str, Any]:
    """The next heartbeat within `timeout_s` (other messages are skipped); TimeoutError if none."""
    deadline = time.monotonic() + timeout_s
    for _ in range(1000):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        message = json.loads(await asyncio.wait_for(ws.recv(), remaining))
        if message["type"] == "heartbeat":
            return dict(message)
    raise TimeoutError(f"no heartbeat within {timeout_s}s")
