"""A client session and its bounded outbound queue.

Broadcasts and heartbeats `offer` frames and never wait: a full queue means the client is not
reading, and the session is dropped (SLOW_CLIENT, then close 1013) instead of slowing everyone.
Responses and snapshot chunks `put` frames and wait for room, so one large answer cannot grow
memory without bound either. The transport's writer drains the queue.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from coordinator.service.auth import Identity


@dataclass(slots=True)
class RateLimiter:
    """Token bucket on the clock's monotonic time."""

    rate: float
    burst: int
    tokens: float = 0.0
    last: float = 0.0

    def allow(self, now: float) -> bool:
        self.tokens = min(float(self.burst), self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


@dataclass(eq=False, slots=True)
class Session:
    connection_id: str
    remote: str
    max_messages: int
    max_bytes: int
    limiter: RateLimiter
    # identity, set by the handshake
    database_id: str | None = None
    site_id: bytes | None = None
    site_id_text: str | None = None
    identity: Identity | None = None  # who the handshake authenticated, with its grants
    joined_at_ms: int = 0
    last_seen_ms: int = 0
    presence_mark: int = 0  # the database's presence change count its full presence list covers
    presence_json: bytes = b""  # its presence entry, encoded (see CoordinatorService._encoded_entry)
    presence_json_seen: int = -1  # the last_seen_ms that entry was encoded for
    # outbound queue
    queue: deque[str] = field(default_factory=deque)
    queued_bytes: int = 0
    close_code: int | None = None
    close_reason: str = ""
    transport_closed: bool = False
    # Set by a transport that can write a frame at once without waiting (its socket takes it):
    # returns False when it cannot (paused, closing), and the frame is queued instead.
    direct: Callable[[str], bool] | None = None
    writing: bool = False  # the writer holds frames taken from the queue and not yet written
    _wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    _room: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def authenticated(self) -> bool:
        return self.database_id is not None

    @property
    def closing(self) -> bool:
        return self.close_code is not None or self.transport_closed

    def describe(self) -> dict[str, Any]:
        return {
            "connectionId": self.connection_id,
            "databaseId": self.database_id,
            "siteId": self.site_id_text,
            "queued": len(self.queue),
            "queuedBytes": self.queued_bytes,
        }

    def offer(self, frame: str) -> bool:
        """Queue without waiting; False when the queue is full (the caller drops the session)."""
        if self.closing:
            return True  # nothing to deliver to a session that is going away
        if not self.queue and not self.writing and self.direct is not None and self.direct(frame):
            return True  # written at once: nothing queued before it, so the order holds
        if self.queue and (
            len(self.queue) >= self.max_messages or self.queued_bytes + len(frame) > self.max_bytes
        ):
            return False
        self.queue.append(frame)
        self.queued_bytes += len(frame)
        self._wakeup.set()
        return True

    async def put(self, frame: str) -> None:
        """Queue, waiting for room (an answer to this session's own request)."""
        while (
            not self.closing
            and self.queue
            and (len(self.queue) >= self.max_messages or self.queued_bytes + len(frame) > self.max_bytes)
        ):
            self._room.clear()
            await self._room.wait()
        if self.closing:
            return
        self.queue.append(frame)
        self.queued_bytes += len(frame)
        self._wakeup.set()

    async def sent(self) -> None:
        """Wait until the writer has taken everything queued (only the broadcast of the
        unbounded-send-queue bug waits on a recipient like this)."""
        while self.queue and not self.closing:
            self._room.clear()
            await self._room.wait()

    def close(
        self, code: int, reason: str = "", last_frame: str | None = None, discard_queue: bool = False
    ) -> None:
        """Ask the writer to close after what is queued (or after `last_frame` alone)."""
        if self.close_code is not None:
            return
        if discard_queue:
            self.queue.clear()
            self.queued_bytes = 0
        if last_frame is not None:
            self.queue.append(last_frame)
            self.queued_bytes += len(last_frame)
        self.close_code = code
        self.close_reason = reason
        self._wakeup.set()
        self._room.set()

    def transport_gone(self) -> None:
        self.transport_closed = True
        self.queue.clear()
        self.queued_bytes = 0
        self._wakeup.set()
        self._room.set()

    async def next_frames(self) -> list[str] | None:
        """Everything queued so far, waiting if nothing is; None once closing and drained."""
        while not self.queue:
            if self.close_code is not None or self.transport_closed:
                return None
            self._wakeup.clear()
            await self._wakeup.wait()
        frames = list(self.queue)
        self.queue.clear()
        self.queued_bytes = 0
        self._room.set()
        return frames
