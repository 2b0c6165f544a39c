"""Serving: bind (port 0 allowed), report the port, and shut down gracefully on SIGTERM/SIGINT.

Uvicorn serves; the coordinator owns the signals, because a graceful shutdown here means more
than closing sockets: /ready turns 503, sessions are told, in-flight work drains, uploads flush.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
from pathlib import Path
from typing import Any

import uvicorn
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.protocol import State

from coordinator.config import CoordinatorConfig
from coordinator.ops.gc_tuning import GcTuner
from coordinator.ops.logging import EventLog
from coordinator.service.coordinator import CoordinatorService
from coordinator.transport.app import CoordinatorApp
from coordinator.transport.frames import FRAMES, deflate_factory, sharing_key

HARD_FRAME_LIMIT_SLACK = 64 * 1024


class _Server(uvicorn.Server):
    """Uvicorn without its own signal handling: shutdown is driven by `run`."""

    def install_signal_handlers(self) -> None:  # pragma: no cover - replaced by ours
        return

    def capture_signals(self):  # type: ignore[no-untyped-def]
        import contextlib

        return contextlib.nullcontext()


class _DenialIsNotAnError(logging.Filter):
    """Uvicorn logs "returned without completing handshake" at ERROR after an app refuses an
    upgrade with an HTTP response (the ASGI denial extension, our 503 for the connection limit
    and during shutdown): its sansio protocol never marks that handshake done. The refusal is
    deliberate, so the line would only be a false error in our logs."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "returned without completing handshake" not in record.getMessage()


SEND_FRAMES = "coordinator.send_frames"  # our ASGI extension: several text messages in one send


class _WebSocketProtocol(WebSocketsSansIOProtocol):
    """Uvicorn's sansio WebSocket protocol, with three changes:

    - a text frame which is not valid UTF-8 reaches the app as bytes: the app answers it like
      any frame that is not JSON (MESSAGE_ERROR, PROTOCOL.md 3.4) and the session stays (uvicorn
      would log a traceback at ERROR for this client mistake and close with 1007);
    - permessage-deflate (only with `ws_compression = deflate`) is negotiated without server
      context takeover, and a text message is framed and compressed once for every connection
      with the same parameters (`frames.FRAMES`): a broadcast costs one compression, not one per
      recipient;
    - the ASGI extension `coordinator.send_frames` sends a session's queued messages in one
      socket write, and offers `write_now`: a broadcast writes straight to a socket that takes
      it without waiting (nothing queued, not paused), instead of waking that session's writer
      task; a paused or busy socket still gets the bounded queue (and SLOW_CLIENT when it is full).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.config.ws_per_message_deflate:
            self.conn.available_extensions = [deflate_factory()]
        self._sharing: tuple[int, ...] | None = None  # the frame-sharing key, once negotiated
        self._sharing_known = False

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)
        if scope is not None:
            scope.setdefault("extensions", {})[SEND_FRAMES] = {"write_now": self.write_now}

    def write_now(self, text: str) -> bool:
        """Write one message at once if the socket takes it without waiting (open, not paused by
        flow control, frames shareable); False: the caller queues it. Only a session with nothing
        queued or being written calls this, so messages keep their order."""
        if not self.writable.is_set() or not self._open():
            return False
        if not self._sharing_known:
            self._sharing, self._sharing_known = sharing_key(self.conn.extensions), True
        if self._sharing is None:
            return False
        self.transport.write(FRAMES.frame(text, self._sharing))
        return True

    async def send(self, message: Any) -> None:
        kind = message["type"]
        if kind == SEND_FRAMES or (kind == "websocket.send" and message.get("text") is not None):
            if not self.writable.is_set():
                await self.writable.wait()
            if self._open():
                if not self._sharing_known:
                    self._sharing, self._sharing_known = sharing_key(self.conn.extensions), True
                key = self._sharing
                if key is not None:
                    texts = message["texts"] if kind == SEND_FRAMES else (message["text"],)
                    self.transport.write(b"".join([FRAMES.frame(text, key) for text in texts]))
                    return
            if kind == SEND_FRAMES:  # closing, or frames that cannot be shared: one at a time
                for text in message["texts"]:
                    await super().send({"type": "websocket.send", "text": text})
                return
        await super().send(message)

    def _open(self) -> bool:
        return (
            self.handshake_complete
            and not self.close_sent
            and not self.disconnected
            and self.initial_response is None
            and self.conn.state is State.OPEN
            and not self.transport.is_closing()
        )

    def send_receive_event_to_app(self) -> None:
        if self.curr_msg_data_type == "text":
            data = self.frames[0] if len(self.frames) == 1 else b"".join(self.frames)
            self.frames = [data]
            if not data.isascii():  # ASCII is valid UTF-8 (and checking it is cheap)
                try:
                    data.decode()
                except UnicodeDecodeError:
                    self.curr_msg_data_type = "bytes"
        super().send_receive_event_to_app()


def bind_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def write_port_file(path: Path, host: str, port: int, base_path: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"host": host, "port": port, "pid": os.getpid(), "basePath": base_path}))
    tmp.replace(path)


async def serve(config: CoordinatorConfig, service: CoordinatorService, sock: socket.socket) -> int:
    log = EventLog()
    app = CoordinatorApp(service)
    uv_config = uvicorn.Config(
        app,
        ws=_WebSocketProtocol,
        ws_per_message_deflate=config.ws_compression == "deflate",
        http="httptools",
        lifespan="off",
        log_level="warning",
        access_log=False,
        ws_max_size=config.max_message_bytes + HARD_FRAME_LIMIT_SLACK,
        ws_ping_interval=20.0,
        ws_ping_timeout=20.0,
        timeout_graceful_shutdown=max(1, config.drain_timeout_ms // 1000),
        backlog=2048,
    )
    server = _Server(uv_config)
    logging.getLogger("uvicorn.error").addFilter(_DenialIsNotAnError())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await service.start()
    tuner = GcTuner(service.clock, lambda: len(service.sessions))
    tuner.freeze_startup()
    gc_task = asyncio.create_task(tuner.run(), name="gc-tuning")
    serving = asyncio.create_task(server.serve(sockets=[sock]), name="uvicorn")
    while not server.started:
        if serving.done():
            await serving
            return 1
        await asyncio.sleep(0.01)  # uvicorn exposes no started event; poll its flag
    host, port = sock.getsockname()[:2]
    if config.port_file:
        write_port_file(Path(config.port_file), host, port, config.base_path)
    log.info("listening", host=host, port=port, basePath=config.base_path, pid=os.getpid())
    stop_wait = asyncio.create_task(stop.wait())
    await asyncio.wait({serving, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
    gc_task.cancel()
    await service.shutdown()  # a second signal meanwhile only sets the event again
    await _wait_sessions_closed(service, config.drain_timeout_ms / 1000.0)
    server.should_exit = True
    stop_wait.cancel()
    await serving
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.remove_signal_handler(sig)
    log.info("stopped")
    return 0


async def _wait_sessions_closed(service: CoordinatorService, timeout_s: float) -> None:
    """Give writers time to send SERVER_SHUTDOWN and the 1001 close before uvicorn stops."""
    try:
        await asyncio.wait_for(service.all_sessions_gone(), timeout=max(1.0, timeout_s))
    except TimeoutError:
        EventLog().warning("sessions_not_closed_in_time", sessions=len(service.sessions))
