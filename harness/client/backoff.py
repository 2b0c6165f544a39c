"""Reconnect delays: exponential backoff with jitter, bounded in attempts and total time.

The jitter comes from a `random.Random` the caller passes, so one seed replays a whole run.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    base_s: float = 0.05
    factor: float = 2.0
    max_delay_s: float = 2.0
    jitter: float = 0.5  # fraction of each delay drawn at random: delay * (1 - jitter * U[0,1))
    max_attempts: int = 8
    max_elapsed_s: float = 20.0

    def delays(self, rng: random.Random) -> Iterator[float]:
        """The waits before attempts 2, 3, ... (the first attempt does not wait)."""
        elapsed = 0.0
        for attempt in range(1, self.max_attempts):
            nominal = min(self.max_delay_s, self.base_s * self.factor ** (attempt - 1))
            delay = nominal * (1.0 - self.jitter * rng.random())
            if elapsed + delay > self.max_elapsed_s:
                return
            elapsed += delay
            yield delay
