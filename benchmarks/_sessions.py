"""Opening many protocol sessions at once from a worker: raw WebSockets, handshake, ack."""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import orjson

from benchmarks._wsclient import RawWebSocket, open_websocket


def new_site_id() -> str:
    """16 random bytes as 22 base64url characters (PROTOCOL.md 1)."""
    return base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")


@dataclass
class Handshaken:
    ws: RawWebSocket
    ack: asyncio.Future[bytes]


def handshake_frame(database_id: str, site_id: str) -> bytes:
    return orjson.dumps(
        {"type": "handshake", "databaseId": database_id, "siteId": site_id, "protocolVersion": 1}
    )


async def open_sessions(
    host: str,
    port: int,
    path: str,
    targets: Sequence[tuple[str, str]],
    on_message: Callable[[RawWebSocket, bytes, int], None],
    wanted: tuple[bytes, ...],
    concurrency: int,
    timeout_s: float,
    deflate: bool = False,
) -> tuple[list[RawWebSocket], list[str]]:
    """Open one session per (databaseId, siteId) and wait for its handshake_ack. `on_message`
    sees every frame after the ack; the ack itself is consumed here. Returns (sessions, errors)."""
    sessions: list[RawWebSocket] = []
    errors: list[str] = []
    gate = asyncio.Semaphore(concurrency)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s

    async def one(database_id: str, site_id: str) -> None:
        async with gate:
            ack: asyncio.Future[bytes] = loop.create_future()

            def first(ws: RawWebSocket, payload: bytes, now: int) -> None:
                if ack.done():
                    on_message(ws, payload, now)
                elif payload.startswith((b'{"type":"handshake_ack"', b'{"type":"error"')):
                    ack.set_result(payload)

            remaining = max(0.1, deadline - loop.time())
            try:
                ws = await open_websocket(host, port, path, first, wanted, remaining, deflate)
            except (OSError, TimeoutError) as exc:
                errors.append(f"connect: {type(exc).__name__}: {exc}")
                return
            ws.send_text(handshake_frame(database_id, site_id))
            try:
                answer = await asyncio.wait_for(ack, max(0.1, deadline - loop.time()))
            except TimeoutError:
                errors.append("handshake timeout")
                ws.abort()
                return
            if not answer.startswith(b'{"type":"handshake_ack"'):
                errors.append(answer[:200].decode(errors="replace"))
                ws.abort()
                return
            sessions.append(ws)

    await asyncio.gather(*(one(db, site) for db, site in targets))
    return sessions, errors
