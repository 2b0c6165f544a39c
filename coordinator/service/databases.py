"""Per-database live state: its sessions, its broadcast sequence, its presence list.

It exists only while a session is on the database and is released with the last one, so no
state or timer outlives its clients.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, ClassVar

from coordinator.ops.bugs import Bugs, BugSwaps
from coordinator.service.session import Session


@dataclass(eq=False, slots=True)
class DatabaseState:
    database_id: str
    sessions: dict[str, Session] = field(default_factory=dict)  # by connection id, in join order
    seq: int = 0  # last broadcast sequence number handed out
    # Presence changes not yet announced (PROTOCOL.md 3.2 presence_delta): joins and leaves in
    # the order they happened, sent together at most once per presence interval.
    joined: list[dict[str, Any]] = field(default_factory=list)
    left: list[str] = field(default_factory=list)
    presence_events: int = 0  # joins and leaves recorded so far (a session's mark is compared to it)
    last_delta_at: float = float("-inf")  # monotonic time of the last presence_delta sent
    delta_task: asyncio.Task[None] | None = None  # the flush waiting for the interval to pass

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def presence(self) -> list[dict[str, Any]]:
        return [presence_entry(s) for s in self.sessions.values()]

    def take_presence_changes(self) -> tuple[list[dict[str, Any]], list[str]]:
        """The pending joins and leaves, emptied (one delta carries them all)."""
        joined, left = self.joined, self.left
        self.joined, self.left = [], []
        return joined, left

    def cancel_presence(self) -> None:
        """Nobody is left to tell: drop what is pending and its timer."""
        self.joined, self.left = [], []
        if self.delta_task is not None:
            self.delta_task.cancel()
            self.delta_task = None


def presence_entry(session: Session) -> dict[str, Any]:
    """A session as presence lists it: when it joined and when it last sent a message."""
    return {
        "siteId": session.site_id_text,
        "connectionId": session.connection_id,
        "joinedAt": session.joined_at_ms,
        "lastSeen": session.last_seen_ms,
    }


class DatabaseRegistry:
    BUG_SWAPS: ClassVar[BugSwaps] = {"state-leak": ("_forget", "_forget_with_state_leak")}

    def __init__(self, bugs: Bugs | None = None) -> None:
        self._states: dict[str, DatabaseState] = {}
        (bugs or Bugs()).apply(self, self.BUG_SWAPS)

    def join(self, session: Session) -> DatabaseState:
        assert session.database_id is not None
        state = self._states.get(session.database_id)
        if state is None:
            state = self._states[session.database_id] = DatabaseState(session.database_id)
        state.sessions[session.connection_id] = session
        return state

    def leave(self, session: Session) -> DatabaseState | None:
        """Remove the session; returns the state if others remain (to announce the leave)."""
        if session.database_id is None:
            return None
        state = self._states.get(session.database_id)
        if state is None or state.sessions.pop(session.connection_id, None) is None:
            return None
        if not state.sessions:
            self._forget(session.database_id)
            return None
        return state

    def _forget(self, database_id: str) -> None:
        """Its last session left: release the database's state (sequence, sessions map)."""
        del self._states[database_id]

    def _forget_with_state_leak(self, database_id: str) -> None:
        """BUG state-leak (BUGS.md): the database's state (sessions map, sequence, its share of
        every heartbeat round) is kept after its last session leaves, for every database ever
        used."""

    def get(self, database_id: str) -> DatabaseState | None:
        return self._states.get(database_id)

    def all(self) -> list[DatabaseState]:
        return list(self._states.values())

    def __len__(self) -> int:
        return len(self._states)
