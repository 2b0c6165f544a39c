"""A minimal WebSocket client on a bare asyncio Protocol.

Why not the `websockets` client: the benchmark clients share a 2-core machine with the
coordinator, so every microsecond a client spends per frame is taken from the server being
measured. This client parses frame headers, hands whole text frames to a callback, answers pings
and closes, and drops large frames it was not asked for (presence lists) without buffering them.
With `deflate=True` it offers permessage-deflate as browsers and the `websockets` client do
(`client_max_window_bits`, context takeover allowed both ways) and inflates compressed frames;
a compressed frame is always inflated, since its type cannot be read before.
"""

from __future__ import annotations

import asyncio
import base64
import os
import time
import zlib
from collections.abc import Callable
from typing import Any, cast

OnMessage = Callable[["RawWebSocket", bytes, int], None]

_OP_CONT, _OP_TEXT, _OP_BINARY, _OP_CLOSE, _OP_PING, _OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
_PEEK = 32  # bytes of a payload needed to read its `"type"`
_SKIP_OVER = 1024  # frames at least this long whose type is not wanted are dropped unread


def mask_payload(payload: bytes, key: bytes) -> bytes:
    """XOR with the 4-byte masking key (client frames must be masked, RFC 6455 5.3)."""
    n = len(payload)
    if n == 0:
        return b""
    stream = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(stream, "little")).to_bytes(n, "little")


def encode_frame(opcode: int, payload: bytes) -> bytes:
    """One final, masked client frame."""
    n = len(payload)
    head = bytes([0x80 | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([0x80 | 127]) + n.to_bytes(8, "big")
    key = os.urandom(4)
    return head + key + mask_payload(payload, key)


class RawWebSocket(asyncio.Protocol):
    """One client connection. `wanted` are payload prefixes to deliver even when large."""

    def __init__(
        self,
        host: str,
        port: int,
        path: str,
        on_message: OnMessage,
        wanted: tuple[bytes, ...],
        deflate: bool = False,
    ):
        self.deflate_offered = deflate
        self.deflate = False  # negotiated
        self.server_no_context_takeover = False
        self._inflater: Any = None
        self._compressed_message = False
        self.bytes_inflated = 0  # payload bytes after inflating
        self.host = host
        self.port = port
        self.path = path
        self.on_message = on_message
        self.wanted = wanted
        loop = asyncio.get_running_loop()
        self.opened: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self.transport: asyncio.Transport | None = None
        self.close_code: int | None = None
        self.bytes_received = 0
        self.bytes_skipped = 0
        self.frames_received = 0
        self.last_recv_ns = 0
        self._bits = 15
        self._buf = bytearray()
        self._upgraded = False
        self._skip = 0
        self._fragments: bytearray | None = None
        self.user: object = None  # per-connection state of the benchmark using it

    # asyncio.Protocol -------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        )
        if self.deflate_offered:
            request += "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
        request += "\r\n"
        self.transport.write(request.encode())

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(f"connection lost before upgrade: {exc}"))
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        now = time.monotonic_ns()
        self.last_recv_ns = now
        self.bytes_received += len(data)
        buf = self._buf
        buf += data
        if not self._upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > 65536:
                    self._fail("oversized upgrade response")
                return
            head_lines = bytes(buf[:end]).split(b"\r\n")
            status = head_lines[0]
            del buf[: end + 4]
            for line in head_lines[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"sec-websocket-extensions" and b"permessage-deflate" in value:
                    self.deflate = True
                    self.server_no_context_takeover = b"server_no_context_takeover" in value
                    bits = 15
                    for param in value.split(b";"):
                        k, _, v = param.strip().partition(b"=")
                        if k == b"server_max_window_bits" and v:
                            bits = int(v.strip(b'"'))
                    self._bits = bits
                    self._inflater = zlib.decompressobj(-bits)
            if b" 101 " not in status + b" ":
                self._fail(f"upgrade refused: {status.decode(errors='replace')}")
                return
            self._upgraded = True
            self.opened.set_result(None)
        self._parse(now)

    # frames -----------------------------------------------------------------------------------
    def _parse(self, now: int) -> None:
        buf = self._buf
        while True:
            if self._skip:
                n = min(self._skip, len(buf))
                del buf[:n]
                self._skip -= n
                self.bytes_skipped += n
                if self._skip:
                    return
            if len(buf) < 2:
                return
            b0, b1 = buf[0], buf[1]
            opcode, fin = b0 & 0x0F, b0 & 0x80
            length, head = b1 & 0x7F, 2
            if length == 126:
                if len(buf) < 4:
                    return
                length, head = int.from_bytes(buf[2:4], "big"), 4
            elif length == 127:
                if len(buf) < 10:
                    return
                length, head = int.from_bytes(buf[2:10], "big"), 10
            if b1 & 0x80:
                self._fail("server frame is masked")
                return
            if b0 & 0x40 and opcode in (_OP_TEXT, _OP_BINARY):
                self._compressed_message = True
            if (
                opcode == _OP_TEXT
                and fin
                and not b0 & 0x40
                and length >= _SKIP_OVER
                and len(buf) >= head + _PEEK
            ):
                peek = bytes(buf[head : head + _PEEK])
                if not peek.startswith(self.wanted):
                    self.frames_received += 1
                    del buf[:head]
                    self._skip = length
                    continue
            if len(buf) < head + length:
                return
            payload = bytes(buf[head : head + length])
            del buf[: head + length]
            self._frame(opcode, bool(fin), payload, now)
            if self.transport is None or self.transport.is_closing():
                return

    def _inflate(self, payload: bytes) -> bytes:
        """One whole compressed message (RFC 7692 7.2.2): a fresh inflater per message when the
        server keeps no context, else the connection's own."""
        if self.server_no_context_takeover:
            self._inflater = zlib.decompressobj(-self._bits)
        data: bytes = self._inflater.decompress(payload + b"\x00\x00\xff\xff")
        self.bytes_inflated += len(data)
        return data

    def _deliver(self, payload: bytes, now: int) -> None:
        if self._compressed_message:
            self._compressed_message = False
            payload = self._inflate(payload)
        self.frames_received += 1
        self.on_message(self, payload, now)

    def _frame(self, opcode: int, fin: bool, payload: bytes, now: int) -> None:
        if opcode in (_OP_TEXT, _OP_BINARY):
            if not fin:
                self._fragments = bytearray(payload)
                return
            self._deliver(payload, now)
        elif opcode == _OP_CONT and self._fragments is not None:
            self._fragments += payload
            if fin:
                whole, self._fragments = bytes(self._fragments), None
                self._deliver(whole, now)
        elif opcode == _OP_PING:
            self._write(encode_frame(_OP_PONG, payload))
        elif opcode == _OP_CLOSE:
            self.close_code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            self._write(encode_frame(_OP_CLOSE, payload[:2]))
            if self.transport is not None:
                self.transport.close()

    # sending ----------------------------------------------------------------------------------
    def send_text(self, text: bytes) -> None:
        self._write(encode_frame(_OP_TEXT, text))

    def close(self, code: int = 1000) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self._write(encode_frame(_OP_CLOSE, code.to_bytes(2, "big")))
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _fail(self, why: str) -> None:
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(why))
        if self.transport is not None:
            self.transport.abort()


async def open_websocket(
    host: str,
    port: int,
    path: str,
    on_message: OnMessage,
    wanted: tuple[bytes, ...],
    timeout_s: float,
    deflate: bool = False,
) -> RawWebSocket:
    """Connect and complete the HTTP upgrade within `timeout_s` (offering deflate if asked)."""
    loop = asyncio.get_running_loop()

    def factory() -> RawWebSocket:
        return RawWebSocket(host, port, path, on_message, wanted, deflate)

    async def connect() -> RawWebSocket:
        _, protocol = await loop.create_connection(factory, host, port)
        await protocol.opened
        return protocol

    return await asyncio.wait_for(connect(), timeout_s)
