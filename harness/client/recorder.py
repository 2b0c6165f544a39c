"""A recorder bound to one client id: it writes into the history with the vocabulary of
`harness.history` (`EventKind`, `OpName`), which checks read without importing the client. Messages of one connection are the ones recorded between its `open` event and
the next `open` of the same process (the history's indices are global and increasing).
"""

from __future__ import annotations

from typing import Any, Literal

from harness.history import Event, History, Message, Op, OpType
from harness.model.capping import cap_payload


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
