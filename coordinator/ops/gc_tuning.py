"""Keeps Python's full garbage collections short when many sessions are open.

A full collection walks every tracked object: with 10,000 sessions (about 1.2 million objects)
it pauses the event loop for about a second, which shows as heartbeat gaps and broadcast
latency (benchmarks/README.md). Long-lived objects (modules at start, sessions after they
join) are moved to the permanent generation with `gc.freeze()`, so full collections only walk
what is young. When the session count falls a lot, `gc.unfreeze()` hands the frozen objects
back to the collector, so cyclic garbage left by departed sessions is still reclaimed.
"""

from __future__ import annotations

import gc
from collections.abc import Callable

from coordinator.clock import Clock

CHECK_EVERY_S = 5.0
GROWTH = 1.2  # freeze again once the session count grew by 20%...
MIN_GROWTH = 200  # ...and by at least this many sessions
SHRINK = 0.5  # unfreeze once it fell to half of what was frozen


class GcTuner:
    def __init__(self, clock: Clock, session_count: Callable[[], int]) -> None:
        self._clock = clock
        self._count = session_count
        self._frozen_at = 0

    def freeze_startup(self) -> None:
        gc.collect()
        gc.freeze()

    def step(self) -> str | None:
        """One decision; returns what it did (for the log)."""
        now = self._count()
        if now >= max(self._frozen_at * GROWTH, self._frozen_at + MIN_GROWTH):
            gc.freeze()
            self._frozen_at = now
            return "freeze"
        if self._frozen_at and now <= self._frozen_at * SHRINK:
            gc.unfreeze()
            self._frozen_at = now
            return "unfreeze"
        return None

    async def run(self) -> None:
        while True:
            await self._clock.sleep(CHECK_EVERY_S)
            self.step()
