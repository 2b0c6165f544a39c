"""A client's view of who is on its database, from either form of PROTOCOL.md 3.2: a full
`presence` list replaces the view; a `presence_delta` adds its `joined`, then removes its `left`
(connection ids are never reused, so joins-then-leaves is the order of any one delta).

Its own codec, written from PROTOCOL.md: the harness never shares code with a server it judges.
"""

from __future__ import annotations

from typing import Any


class PresenceView:
    """connectionId -> the latest entry the server sent for it."""

    def __init__(self) -> None:
        self.sessions: dict[str, dict[str, Any]] = {}
        self.updates = 0  # presence messages applied

    def apply(self, payload: dict[str, Any]) -> bool:
        """Apply one message; False if it is not a presence message of a known form."""
        kind = payload.get("type")
        if kind == "presence":
            entries = payload.get("sessions")
            if not isinstance(entries, list):
                return False
            self.sessions = {}
            self._add(entries)
        elif kind == "presence_delta":
            joined, left = payload.get("joined") or [], payload.get("left") or []
            if not isinstance(joined, list) or not isinstance(left, list):
                return False
            self._add(joined)
            for connection_id in left:
                self.sessions.pop(str(connection_id), None)
        else:
            return False
        self.updates += 1
        return True

    def _add(self, entries: list[Any]) -> None:
        for entry in entries:
            if isinstance(entry, dict) and entry.get("connectionId") is not None:
                self.sessions[str(entry["connectionId"])] = entry

    def connection_ids(self) -> set[str]:
        return set(self.sessions)

    def clear(self) -> None:
        """A new connection starts from nothing: its own full list comes after the handshake."""
        self.sessions = {}
