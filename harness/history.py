"""The history of a run: what clients did, what they observed, and what was broken when.

As in Jepsen, an operation is recorded twice: once when invoked, once when its outcome is known
(`ok`, `fail`, or `info` when the outcome is unknown, e.g. the connection dropped before the
answer). Received messages and fault windows are recorded beside the operations. Checks read a
history; they never drive the system. Times are seconds on the monotonic clock since the run
started, so they are comparable across clients and faults of one run.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

OpType = Literal["invoke", "ok", "fail", "info"]

# Frames whose raw text is larger are recorded as a stub with what the checks need
# (harness/model/capping.py says which fields): journals stay small. None keeps every frame.
DEFAULT_PAYLOAD_CAP = 4096


# The vocabulary: what clients write and checks read. It lives here, not in the client, so a check
# imports it without the client (and its network stack).
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


@dataclass(slots=True)
class Op:
    """One half of an operation: its invocation or its completion."""

    index: int
    process: str  # client id
    type: OpType
    f: str  # operation name: handshake, apply, get_changes, snapshot, http_snapshot, ping, ...
    time: float
    value: Any = None
    error: str | None = None  # error code (or exception class) on fail/info
    op_id: int = 0  # pairs the invoke with its completion


@dataclass(slots=True)
class Message:
    """A frame a client received (or sent) on the wire, decoded as JSON."""

    index: int
    process: str
    direction: Literal["recv", "send"]
    type: str
    time: float
    payload: dict[str, Any]


@dataclass(slots=True)
class Event:
    """Something a client observed that is neither an operation nor a message: a connection
    opened or closed (with its close code), a reconnect, a seq gap noticed."""

    index: int
    process: str
    kind: str
    time: float
    data: dict[str, Any] = field(default_factory=dict)


# Fault kind -> family (the fault class's `Fault.family`), for windows recorded without one:
# journals written before windows carried it, and hand-made histories. A test keeps it equal to
# the fault registry (harness/faults/registry.py), which the history may not import.
FAULT_FAMILIES: dict[str, str] = {
    "latency": "network",
    "jitter": "network",
    "bandwidth": "network",
    "slow_close": "network",
    "timeout": "network",
    "reset_peer": "network",
    "slicer": "network",
    "limit_data": "network",
    "proxy_down": "network",
    "network_disconnect": "network",  # a container's partition from its object store
    "s3_outage": "s3",
    "s3_error": "s3",
    "s3_slowdown": "s3",
    "s3_latency": "s3",
    "s3_drop": "s3",
    "kill": "process",
    "pause": "process",
    "terminate": "process",
    "restart": "process",
    "disk_loss": "process",
    "failpoint": "failpoint",
}
UNKNOWN_FAMILY = "unknown"  # a kind the table does not know (a newer harness's journal)
SLOWING_KINDS = frozenset({"latency", "jitter"})  # network faults that delay and lose nothing


def observable_effect(kind: str, params: dict[str, Any]) -> bool:
    """Whether a fault of `kind` can show as a failure (an error, a drop, a lost message) rather
    than only as a delay: latency, jitter and a failpoint in delay mode only slow things down.
    The fault classes say the same for themselves (`Fault.observable`); this is for windows
    recorded without it."""
    if kind in SLOWING_KINDS:
        return False
    return not (kind == "failpoint" and str(params.get("mode", "error")).lower() == "delay")


@dataclass(slots=True)
class FaultWindow:
    """An interval during which a fault was in force. `end` is None while it still is.

    `family` is the fault class's (network, s3, process, failpoint) and `observable` says
    whether its effect can be a failure rather than only a delay; checks decide what a window
    excuses from these two and the target, never from the kind's spelling. Missing (an old
    journal), they are derived from the kind."""

    id: int
    kind: str  # e.g. "latency", "s3_outage", "terminate", "failpoint"
    target: str  # proxy name, "s3", "coordinator", failpoint name
    params: dict[str, Any]
    start: float
    end: float | None = None
    family: str = ""
    observable: bool | None = None

    def __post_init__(self) -> None:
        if not self.family:
            self.family = FAULT_FAMILIES.get(self.kind, UNKNOWN_FAMILY)
        if self.observable is None:
            self.observable = observable_effect(self.kind, self.params)


class History:
    """Append-only record of one run. Not thread-safe by design: a run lives on one event loop."""

    def __init__(self, clock: Any = None, payload_cap: int | None = DEFAULT_PAYLOAD_CAP) -> None:
        self._clock = clock or time.monotonic
        self.payload_cap = payload_cap  # read by the recorder: larger frames are kept as stubs
        self._t0 = self._clock()
        self._index = itertools.count()
        self._op_ids = itertools.count(1)
        self.ops: list[Op] = []
        self.messages: list[Message] = []
        self.events: list[Event] = []
        self.faults: list[FaultWindow] = []

    def now(self) -> float:
        """Seconds since the run started."""
        return self._clock() - self._t0

    # operations -----------------------------------------------------------------------------
    def invoke(self, process: str, f: str, value: Any = None) -> Op:
        op = Op(next(self._index), process, "invoke", f, self.now(), value, None, next(self._op_ids))
        self.ops.append(op)
        return op

    def complete(self, invoked: Op, type: OpType, value: Any = None, error: str | None = None) -> Op:
        assert type != "invoke", "a completion is ok, fail or info"
        op = Op(next(self._index), invoked.process, type, invoked.f, self.now(), value, error, invoked.op_id)
        self.ops.append(op)
        return op

    # observations ---------------------------------------------------------------------------
    def message(self, process: str, direction: Literal["recv", "send"], payload: dict[str, Any]) -> Message:
        msg = Message(
            next(self._index), process, direction, str(payload.get("type", "?")), self.now(), payload
        )
        self.messages.append(msg)
        return msg

    def event(self, process: str, kind: str, **data: Any) -> Event:
        ev = Event(next(self._index), process, kind, self.now(), data)
        self.events.append(ev)
        return ev

    # faults ---------------------------------------------------------------------------------
    def fault_started(
        self,
        kind: str,
        target: str,
        params: dict[str, Any],
        family: str = "",
        observable: bool | None = None,
    ) -> FaultWindow:
        """Open a window; without `family` / `observable` they are derived from the kind."""
        window = FaultWindow(
            len(self.faults) + 1, kind, target, dict(params), self.now(), None, family, observable
        )
        self.faults.append(window)
        return window

    def fault_ended(self, window: FaultWindow) -> None:
        if window.end is None:
            window.end = self.now()

    # queries used by checks -----------------------------------------------------------------
    def pairs(self) -> list[tuple[Op, Op | None]]:
        """Each invocation with its completion (None when it never completed)."""
        done = {op.op_id: op for op in self.ops if op.type != "invoke"}
        return [(op, done.get(op.op_id)) for op in self.ops if op.type == "invoke"]

    def received(self, type: str | None = None, process: str | None = None) -> list[Message]:
        return [
            m
            for m in self.messages
            if m.direction == "recv"
            and (type is None or m.type == type)
            and (process is None or m.process == process)
        ]

    def processes(self) -> list[str]:
        seen: dict[str, None] = {}
        for process in itertools.chain(
            (o.process for o in self.ops),
            (m.process for m in self.messages),
            (e.process for e in self.events),
        ):
            seen.setdefault(process, None)
        return list(seen)

    def to_json(self) -> dict[str, Any]:
        return {
            "ops": [asdict(o) for o in self.ops],
            "messages": [asdict(m) for m in self.messages],
            "events": [asdict(e) for e in self.events],
            "faults": [asdict(w) for w in self.faults],
        }
