"""Circuit breaker for the object store: closed / open / half-open.

While the store fails, calling it again on every apply only hammers it (bug `no-circuit-breaker`)
and slows everything down. After `failure_threshold` consecutive failures the breaker opens: no
call is made at all until `open_duration_s` has passed, then exactly one probe is let through
(half-open). The probe's success closes the breaker, its failure opens it again for another period.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Protocol


class MonotonicClock(Protocol):
    """What the breaker needs from a clock: seconds that never go backwards."""

    def monotonic(self) -> float: ...


class BackendState(enum.Enum):
    """Breaker state; anything other than CLOSED means the backend is degraded."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"

    @property
    def degraded(self) -> bool:
        return self is not BackendState.CLOSED

    @property
    def gauge(self) -> int:
        """Numeric value for a Prometheus gauge: 0 closed, 1 half-open, 2 open."""
        return {BackendState.CLOSED: 0, BackendState.HALF_OPEN: 1, BackendState.OPEN: 2}[self]


StateListener = Callable[[BackendState, BackendState, str], None]


class CircuitBreaker:
    """Consecutive-failure breaker on an injected monotonic clock (so it runs on virtual time).

    Callers ask `try_acquire()` before an object-store call; when it returns False they must not
    call the store. Every acquired call must end with exactly one `record_success()` or
    `record_failure(reason)`.
    """

    def __init__(
        self,
        clock: MonotonicClock,
        failure_threshold: int,
        open_duration_s: float,
        on_transition: StateListener | None = None,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        if open_duration_s <= 0:
            raise ValueError("open_duration_s must be positive")
        self._clock = clock
        self._threshold = failure_threshold
        self._open_duration_s = open_duration_s
        self._on_transition = on_transition
        self._state = BackendState.CLOSED
        self._consecutive_failures = 0
        self._opened_at = 0.0
        self._probe_in_flight = False
        self.transitions = 0
        self.rejections = 0
        self.last_reason = ""

    @property
    def state(self) -> BackendState:
        """Current state, moving OPEN to HALF_OPEN when the open period is over."""
        if self._state is BackendState.OPEN and self._clock.monotonic() >= self.probe_at:
            self._transition(BackendState.HALF_OPEN, "open period elapsed; probing")
        return self._state

    @property
    def probe_at(self) -> float:
        """Monotonic time at which an open breaker lets its probe through."""
        return self._opened_at + self._open_duration_s

    @property
    def consecutive_failures(self) -> int:
        return self._consecutive_failures

    def try_acquire(self) -> bool:
        """May a store call be made now? Half-open allows a single probe at a time."""
        state = self.state
        if state is BackendState.CLOSED:
            return True
        if state is BackendState.HALF_OPEN and not self._probe_in_flight:
            self._probe_in_flight = True
            return True
        self.rejections += 1
        return False

    def record_success(self) -> None:
        self._consecutive_failures = 0
        self._probe_in_flight = False
        if self._state is not BackendState.CLOSED:
            self._transition(BackendState.CLOSED, "object store call succeeded")

    def record_failure(self, reason: str) -> None:
        self._consecutive_failures += 1
        self.last_reason = reason
        if self._state is BackendState.HALF_OPEN:
            self._probe_in_flight = False
            self._open(f"probe failed: {reason}")
        elif self._state is BackendState.CLOSED and self._consecutive_failures >= self._threshold:
            self._open(f"{self._consecutive_failures} consecutive failures, last: {reason}")
        # Already OPEN: a call acquired before the breaker opened has failed too; the open
        # period is not extended, so the probe time stays predictable.

    def _open(self, reason: str) -> None:
        self._opened_at = self._clock.monotonic()
        self._transition(BackendState.OPEN, reason)

    def _transition(self, new: BackendState, reason: str) -> None:
        old = self._state
        if old is new:
            return
        self._state = new
        self.transitions += 1
        self.last_reason = reason
        if self._on_transition is not None:
            self._on_transition(old, new, reason)
