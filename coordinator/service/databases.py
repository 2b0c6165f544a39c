"""Per-database live state: its sessions, its broadcast sequence, its presence list.

It exists only while a session is on the database and is released with the last one, so no
state or timer outlives its clients.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from coordinator.ops.bugs import Bugs, BugSwaps
from coordinator.service.session import Session


@dataclass(eq=False, slots=True)
class DatabaseState:
    database_id: str
    sessions: dict[str, Session] = field(default_factory=dict)  # by connection id, in join order
    seq: int = 0  # last broadcast sequence number handed out

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def presence(self) -> list[dict[str, Any]]:
        return [
            {
                "siteId": s.site_id_text,
                "connectionId": s.connection_id,
                "joinedAt": s.joined_at_ms,
                "lastSeen": s.last_seen_ms,
            }
            for s in self.sessions.values()
        ]


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
