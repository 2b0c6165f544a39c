"""The WebSocket endpoint: a reader that feeds frames to the service and a writer that drains
the session's queue. The writer waits on the socket (transport backpressure), never the
service: a stalled client only fills its own bounded queue."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from coordinator.ops.logging import EventLog
from coordinator.protocol import errors as E
from coordinator.service.coordinator import CoordinatorService
from coordinator.service.session import Session

Scope = dict[str, Any]
Receive = Any
Send = Any
SEND_FRAMES = "coordinator.send_frames"  # ASGI extension of our uvicorn protocol (transport/server.py)


async def websocket_endpoint(service: CoordinatorService, scope: Scope, receive: Receive, send: Send) -> None:
    connect = await receive()
    if connect["type"] != "websocket.connect":
        # The server stopped before this connection's handshake: answer it anyway, so the
        # handshake is completed (refused) rather than abandoned mid-way.
        with contextlib.suppress(Exception):
            await send({"type": "websocket.close", "code": E.CLOSE_GOING_AWAY})
        return
    reason = service.refuse_reason()
    if reason is not None:
        service.metrics.connections_refused.inc()
        await _deny(scope, send, 503, reason)
        return
    await send({"type": "websocket.accept"})
    client = scope.get("client") or ("?", 0)
    session = service.connect(f"{client[0]}:{client[1]}")
    extension = (scope.get("extensions") or {}).get(SEND_FRAMES)
    batched = extension is not None
    if extension is not None:
        session.direct = extension.get("write_now")
    writer = asyncio.create_task(
        _write(service, session, send, batched), name=f"ws-writer-{session.connection_id[:8]}"
    )
    try:
        await _read(service, session, receive, writer)
    finally:
        await service.disconnect(session)
        writer.cancel()
        await asyncio.gather(writer, return_exceptions=True)


async def _read(
    service: CoordinatorService, session: Session, receive: Receive, writer: asyncio.Task[None]
) -> None:
    """Frames are handled one at a time, in order; while one is handled, the next receive is
    already waiting, so a peer that leaves mid-request (during a slow handshake, a long
    snapshot) is noticed at once: the session is marked gone and the request sees it."""
    next_message: asyncio.Task[Any] | None = None
    handling: asyncio.Future[None] | None = None
    try:
        while True:
            if next_message is None:
                next_message = asyncio.ensure_future(receive())
            done, _ = await asyncio.wait({next_message, writer}, return_when=asyncio.FIRST_COMPLETED)
            if next_message not in done:  # the writer closed the socket: stop reading
                return
            message = next_message.result()
            next_message = None
            kind = message["type"]
            if kind == "websocket.disconnect":
                return
            if kind != "websocket.receive":
                continue
            text = message.get("text")
            if text is None:
                data = message.get("bytes") or b""
                try:
                    text = data.decode()
                except UnicodeDecodeError:
                    text = "\x00"  # not JSON: answered with MESSAGE_ERROR by the service
            handling = asyncio.ensure_future(service.handle_text(session, text))
            next_message = asyncio.ensure_future(receive())
            done, _ = await asyncio.wait({handling, next_message}, return_when=asyncio.FIRST_COMPLETED)
            if next_message in done and next_message.result()["type"] == "websocket.disconnect":
                session.transport_gone()  # the peer left while its request is being handled
            await handling
    finally:
        for task in (next_message, handling):
            if task is not None and not task.done():
                task.cancel()


async def _write(service: CoordinatorService, session: Session, send: Send, batched: bool) -> None:
    """Drain the queue: everything queued goes in one send where the server takes a batch (our
    uvicorn protocol's `coordinator.send_frames`), else one ASGI send per message."""
    log = EventLog()
    try:
        while True:
            frames = await session.next_frames()
            if frames is None:
                break
            session.writing = True  # no frame may be written directly before these
            try:
                if batched:
                    await send({"type": SEND_FRAMES, "texts": frames})
                    continue
                for text in frames:
                    await send({"type": "websocket.send", "text": text})
            finally:
                session.writing = False
        if session.close_code is not None and not session.transport_closed:
            await send(
                {"type": "websocket.close", "code": session.close_code, "reason": session.close_reason[:120]}
            )
    except (OSError, RuntimeError) as exc:  # the peer went away under us (ClientDisconnected is an OSError)
        log.debug("ws_write_stopped", sessionId=session.connection_id, error=str(exc))
        session.transport_gone()


async def _deny(scope: Scope, send: Send, status: int, reason: str) -> None:
    extensions = scope.get("extensions") or {}
    if "websocket.http.response" in extensions:
        body = reason.encode()
        await send(
            {
                "type": "websocket.http.response.start",
                "status": status,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "websocket.http.response.body", "body": body})
    else:
        await send({"type": "websocket.close", "code": E.CLOSE_TRY_AGAIN_LATER})
