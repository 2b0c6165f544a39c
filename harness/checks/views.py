"""Views of a history the checks share: connections with their messages, applies with what
they acknowledged, the run's wall clock, object-store fault windows and the delay faults add.
What excuses a miss is harness/checks/excuses.py.

A connection's messages are those of its process recorded between its `open` event and the
next `open` of the same process; history indices are global and increasing, so this holds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from harness.checks.excuses import (
    DELAY,
    S3,
    overlaps,
    window_causes,
    windows_with,
)
from harness.history import Event, EventKind, FaultWindow, History, Message, Op, OpName


@dataclass(slots=True)
class Connection:
    process: str
    number: int
    opened_at: float
    open_index: int
    closed_at: float | None = None
    close_code: int | None = None
    close_reason: str = ""
    by_client: bool = False
    session_at: float | None = None  # handshake acknowledged
    database_id: str | None = None
    site_id: str | None = None
    connection_id: str | None = None
    messages: list[Message] = field(default_factory=list)
    sent: list[Message] = field(default_factory=list)
    paused: list[tuple[float, float | None]] = field(default_factory=list)  # reading paused

    @property
    def authenticated(self) -> bool:
        return self.session_at is not None

    def received(self, type: str) -> list[Message]:
        return [m for m in self.messages if m.type == type]

    def live_over(self, start: float, end: float) -> bool:
        """Authenticated before `start` and still open at `end`."""
        return (
            self.session_at is not None
            and self.session_at <= start
            and (self.closed_at is None or self.closed_at >= end)
        )

    def paused_during(self, start: float, end: float) -> bool:
        return any(p0 <= end and (p1 is None or p1 >= start) for p0, p1 in self.paused)


def connections(history: History) -> list[Connection]:
    """Every WebSocket connection of the run, in the order they opened."""
    by_process: dict[str, list[Connection]] = {}
    items: list[Event | Message] = [*history.events, *history.messages]
    items.sort(key=lambda item: item.index)
    for item in items:
        conns = by_process.setdefault(item.process, [])
        current = conns[-1] if conns else None
        if isinstance(item, Message):
            if current is not None:
                (current.messages if item.direction == "recv" else current.sent).append(item)
            continue
        data = item.data
        if item.kind == EventKind.OPEN:
            conns.append(
                Connection(item.process, int(data.get("conn", len(conns) + 1)), item.time, item.index)
            )
        elif current is None:
            continue
        elif item.kind == EventKind.CLOSE:
            current.closed_at = item.time
            current.close_code = data.get("code")
            current.close_reason = str(data.get("reason") or "")
            current.by_client = bool(data.get("by_client"))
        elif item.kind == EventKind.SESSION:
            current.session_at = item.time
            current.database_id = data.get("databaseId")
            current.site_id = data.get("siteId")
            current.connection_id = data.get("connectionId")
        elif item.kind == EventKind.READING_PAUSED:
            current.paused.append((item.time, None))
        elif item.kind == EventKind.READING_RESUMED and current.paused and current.paused[-1][1] is None:
            current.paused[-1] = (current.paused[-1][0], item.time)
    out = [c for conns in by_process.values() for c in conns]
    out.sort(key=lambda c: c.open_index)
    for conn in out:  # a pause lasts until the connection ends when never resumed
        conn.paused = [(p0, p1 if p1 is not None else conn.closed_at) for p0, p1 in conn.paused]
    return out


@dataclass(slots=True)
class Apply:
    """An acknowledged or attempted write: WS apply_changes or HTTP POST changes."""

    process: str
    invoked: Op
    completed: Op | None
    change_sets: list[dict[str, Any]]
    database_id: str | None
    site_id: str | None

    @property
    def answered(self) -> bool:
        """The server answered the request with an apply result (WS apply_result, HTTP ok)."""
        return self.result is not None

    @property
    def acknowledged(self) -> bool:
        """The answer proves every change of the request applied (PROTOCOL.md section 2:
        `applied` equal to the request's change count). Skipped or conflicting changes were
        refused by the server, not acknowledged."""
        return self.answered and self.change_count > 0 and self.applied == self.change_count

    @property
    def acknowledged_changes(self) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """(change set, change) pairs proven applied: all of them, or none (the answer gives
        a count, not which changes it took)."""
        return self.all_changes() if self.acknowledged else []

    @property
    def refused(self) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """Changes of an answered request that are not proven applied (applied < count): the
        server skipped them or they lost last-writer-wins. Refused is not lost; when only part
        of the request was applied (`partial`), which part is not known."""
        return [] if not self.answered or self.acknowledged else self.all_changes()

    @property
    def partial(self) -> bool:
        """Answered with 0 < applied < count: some changes applied, which ones unknown."""
        return self.answered and 0 < self.applied < self.change_count

    def all_changes(self) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        return [(cs, c) for cs in self.change_sets for c in cs.get("changes") or []]

    @property
    def result(self) -> dict[str, Any] | None:
        if (
            self.completed is None
            or self.completed.type != "ok"
            or not isinstance(self.completed.value, dict)
        ):
            return None
        value = self.completed.value
        if self.invoked.f == OpName.HTTP_APPLY:
            body = value.get("body") or {}
            if not isinstance(body, dict) or body.get("ok") is not True:
                return None
            data = body.get("data")
            return data if isinstance(data, dict) else None
        return value

    @property
    def applied(self) -> int:
        return int((self.result or {}).get("applied") or 0)

    @property
    def change_count(self) -> int:
        return sum(len(cs.get("changes") or []) for cs in self.change_sets)

    @property
    def ack_time(self) -> float | None:
        return self.completed.time if self.completed is not None else None


def applies(history: History) -> list[Apply]:
    """Every write, with the database and site of the client that made it."""
    session_db: dict[str, str | None] = {}
    session_site: dict[str, str | None] = {}
    out: list[Apply] = []
    events = sorted(history.events, key=lambda e: e.index)
    pairs = history.pairs()
    pairs.sort(key=lambda p: p[0].index)
    ev_iter = iter(events)
    pending = next(ev_iter, None)
    for invoked, completed in pairs:
        while pending is not None and pending.index < invoked.index:
            if pending.kind == EventKind.SESSION:
                session_db[pending.process] = pending.data.get("databaseId")
                session_site[pending.process] = pending.data.get("siteId")
            elif pending.kind == EventKind.CLOCK:
                session_site.setdefault(pending.process, pending.data.get("siteId"))
            pending = next(ev_iter, None)
        if invoked.f not in (OpName.APPLY, OpName.HTTP_APPLY) or not isinstance(invoked.value, dict):
            continue
        database = invoked.value.get("databaseId") or session_db.get(invoked.process)
        out.append(
            Apply(
                invoked.process,
                invoked,
                completed,
                list(invoked.value.get("changeSets") or []),
                database,
                session_site.get(invoked.process),
            )
        )
    return out


def first_acknowledged(writes: list[Apply]) -> dict[str, float]:
    """When each transaction was first acknowledged: the earliest answer, over every attempt at
    it (a write of unknown outcome is re-applied after a reconnect), proving it applied in full.
    A transaction no attempt got acknowledged is absent: when it landed is not known."""
    out: dict[str, float] = {}
    for write in writes:
        if not write.acknowledged or write.ack_time is None:
            continue
        for change_set in write.change_sets:
            tx = str(change_set.get("transactionId"))
            out[tx] = min(out.get(tx, write.ack_time), write.ack_time)
    return out


def wall_offset_ms(history: History) -> float | None:
    """wall-clock ms minus run-time ms, from the clients' clock events (None if none)."""
    offsets = [
        float(e.data["wall_ms"]) - e.time * 1000.0 for e in history.events if e.kind == EventKind.CLOCK
    ]
    return sum(offsets) / len(offsets) if offsets else None


def backend_windows(history: History) -> list[FaultWindow]:
    """Object-store faults: S3 faults, and network faults on the coordinator's path to S3."""
    return windows_with(history, S3)


def fault_delay_s(history: History, start: float, end: float) -> float:
    """How much later than usual a message may arrive in [start, end] because of delay-only
    network faults (latency, jitter): they slow messages by a known amount, they do not lose
    them, so they widen a bound instead of excusing a miss. Counted both ways (request and
    answer)."""
    end_of_run = history.now()
    delay_ms = 0.0
    for w in history.faults:
        if DELAY in window_causes(w) and overlaps(w, start, end, end_of_run):
            delay_ms += 2 * (
                float(w.params.get("latency_ms", 0) or 0) + float(w.params.get("jitter_ms", 0) or 0)
            )
    return delay_ms / 1000.0
