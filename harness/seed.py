"""One seed for every random choice the harness makes.

A run is repeatable only if fault timing and targets, client operations and toxicity draws made
by the harness all come from one recorded seed. Each consumer takes its own named substream, so
adding a client (which draws from "client:7") does not shift the draws of "faults". Toxiproxy's
own per-connection toxicity draws are made inside toxiproxy-server and are not covered: its
`-seed` flag has no effect in v2.5.
"""

from __future__ import annotations

import hashlib
import os
import random
import secrets

SEED_ENV = "SYNC_HARNESS_SEED"


def _derive(seed: int, name: str) -> int:
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


class Seeds:
    """The run's root seed and its independent, named random streams."""

    def __init__(self, seed: int | None = None) -> None:
        self.seed: int = seed if seed is not None else secrets.randbits(48)
        self._streams: dict[str, random.Random] = {}

    @classmethod
    def from_env(cls, default: int | None = None) -> Seeds:
        """$SYNC_HARNESS_SEED when set (so a failing run can be repeated), else `default`/random."""
        raw = os.environ.get(SEED_ENV)
        if raw:
            try:
                return cls(int(raw, 0))
            except ValueError as exc:
                raise ValueError(f"{SEED_ENV}={raw!r} is not an integer") from exc
        return cls(default)

    def stream(self, name: str) -> random.Random:
        """The stream named `name`: the same object on every call, so draws continue in order."""
        rng = self._streams.get(name)
        if rng is None:
            rng = random.Random(_derive(self.seed, name))
            self._streams[name] = rng
        return rng

    def fresh(self, name: str) -> random.Random:
        """A new generator at the start of stream `name` (for replaying it from the beginning)."""
        return random.Random(_derive(self.seed, name))

    def names(self) -> list[str]:
        """Streams drawn from so far, for the run's record."""
        return sorted(self._streams)

    def describe(self) -> str:
        return f"seed={self.seed} (repeat with --seed {self.seed} or {SEED_ENV}={self.seed})"

    def __repr__(self) -> str:
        return f"Seeds({self.seed})"
