"""The vocabulary a client writes into the history, and a recorder bound to one client id.

Checks read the history through these names only, so they are the contract between the client
and the checks. Messages of one connection are the ones recorded between its `open` event and
the next `open` of the same process (the history's indices are global and increasing).
"""

from __future__ import annotations

from typing import Any, Literal

from harness.client.capping import cap_payload
from harness.history import Event, History, Message, Op, OpType


class EventKind:
    CONNECTING = "connecting"  # {url, attempt}
    OPEN = "open"  # {conn, url}
    CONNECT_FAILED = "connect_failed"  # {conn, error}
    CLOSE = "close"  # {conn, code, reason, sent_code, by_client}
    RECONNECT = "reconnect"  # {attempt, delay}
    RECONNECT_GAVE_UP = "reconnect_gave_up"  # {attempts, elapsed, error}
    SESSION = "session"  # {conn, databaseId, siteId, connectionId}
    SEQ_GAP = "seq_gap"  # {conn, expected, got}
    SEQ_REPEAT = "seq_repeat"  # {conn, expected, got}
    BAD_FRAME = "bad_frame"  # {conn, error}
    READING_PAUSED = "reading_paused"  # {conn}
    READING_RESUMED = "reading_resumed"  # {conn}
    REPLICA = "replica"  # {source, caught_up, databaseId, uncertain, state}
    CLOCK = "clock"  # {wall_ms}: maps this run's monotonic times to wall-clock ms
    BEHAVIOUR_START = "behaviour_start"  # {behaviour, params}
    BEHAVIOUR_END = "behaviour_end"  # {behaviour, reason}


class OpName:
    HANDSHAKE = "handshake"
    GET_CHANGES = "get_changes"
    APPLY = "apply"
    SNAPSHOT = "snapshot"  # WS get_snapshot
    RESUME_SNAPSHOT = "resume_snapshot"
    HTTP_SNAPSHOT = "http_snapshot"
    HTTP_GET_CHANGES = "http_get_changes"
    HTTP_APPLY = "http_apply"
    PING = "ping"
    SEND_RAW = "send_raw"  # a deliberately malformed or unusual frame, answered by an error


class Recorder:
    """Writes into a `History` on behalf of one client (its `process`)."""

    def __init__(self, history: History, process: str) -> None:
        self.history = history
        self.process = process

    def invoke(self, f: str, value: Any = None) -> Op:
        return self.history.invoke(self.process, f, value)

    def complete(self, invoked: Op, type: OpType, value: Any = None, error: str | None = None) -> Op:
        return self.history.complete(invoked, type, value, error)

    def message(
        self, direction: Literal["recv", "send"], payload: dict[str, Any], raw: str | bytes | None = None
    ) -> Message:
        """Record a frame; one over the history's `payload_cap` is kept as a stub (its size and
        the sha256 of `raw`, its text on the wire, plus the fields the checks read)."""
        return self.history.message(self.process, direction, self.capped(payload, raw, direction))

    def capped(
        self, payload: dict[str, Any], raw: str | bytes | None = None, direction: str = "recv"
    ) -> dict[str, Any]:
        """What the history keeps of `payload` (also for an op value that repeats a frame)."""
        return cap_payload(payload, self.history.payload_cap, raw, direction)

    def event(self, kind: str, **data: Any) -> Event:
        return self.history.event(self.process, kind, **data)

    def now(self) -> float:
        return self.history.now()
