"""When a database's next snapshot is due: every `snapshot_every_changes` applied changes, or
`snapshot_every_s` seconds with at least one."""

from __future__ import annotations

from dataclasses import dataclass

from coordinator.clock import Clock
from coordinator.storage.s3_store import S3Config


@dataclass
class _Tracker:
    changes: int = 0
    since: float = 0.0


class SnapshotCadence:
    def __init__(self, config: S3Config, clock: Clock) -> None:
        self._config = config
        self._clock = clock
        self._trackers: dict[str, _Tracker] = {}

    def note_applied(self, database_id: str, applied: int) -> bool:
        """Count applied changes; True (once, then the count restarts) when a snapshot is due."""
        tracker = self._trackers.get(database_id)
        now = self._clock.monotonic()
        if tracker is None:
            tracker = self._trackers[database_id] = _Tracker(since=now)
        tracker.changes += max(0, applied)
        return self._take_if_due(tracker, now)

    def due(self) -> list[str]:
        """Databases whose time-based snapshot is due without a new apply (for a periodic timer)."""
        now = self._clock.monotonic()
        return [db for db, tracker in self._trackers.items() if self._take_if_due(tracker, now)]

    def taken(self, database_id: str) -> None:
        """A snapshot was queued: the count restarts from now."""
        tracker = self._trackers.get(database_id)
        if tracker is not None:
            tracker.changes = 0
            tracker.since = self._clock.monotonic()

    def release(self, database_id: str) -> None:
        self._trackers.pop(database_id, None)

    def __len__(self) -> int:
        return len(self._trackers)

    def _take_if_due(self, tracker: _Tracker, now: float) -> bool:
        due = tracker.changes >= self._config.snapshot_every_changes or (
            tracker.changes > 0 and now - tracker.since >= self._config.snapshot_every_s
        )
        if due:
            tracker.changes = 0
            tracker.since = now
        return due
