"""What the load users send and read (PROTOCOL.md section 1): site ids, HLCs, change sets.

Encoding goes through the harness's own codec (harness/model/codec.py: no I/O, no network
library, so it is at home in a gevent-patched Locust process); this module adds only what a
load user needs on top: a per-site HLC source, a stamped value, and reading pushed values.
"""

from __future__ import annotations

import os
import time
from typing import Any

from harness.model.codec import HLC, encode_site_id

STAMP_PREFIX = "lt:"  # values written by load writers: "lt:<wall ns>:<writer>:<n>"


def new_site_id() -> bytes:
    return os.urandom(16)


def site_id_text(site: bytes) -> str:
    """16 bytes as 22 characters of base64url without padding."""
    return encode_site_id(site)


class Clock:
    """A per-site HLC source: wall time in ms, a counter for ties, strictly increasing."""

    def __init__(self, site: bytes) -> None:
        self.site = site
        self.wall = 0
        self.counter = 0

    def tick(self) -> tuple[int, int]:
        now = time.time_ns() // 1_000_000
        if now > self.wall:
            self.wall, self.counter = now, 0
        else:
            self.counter += 1
            if self.counter > 0xFFFF:  # 65,536 stamps in one ms: borrow the next ms
                self.wall, self.counter = self.wall + 1, 0
        return self.wall, self.counter


def hlc_text(wall: int, counter: int, site: bytes, op_seq: int = 0) -> str:
    return HLC(wall, counter, site, op_seq).encode()


def stamp(writer: str, n: int) -> str:
    """The value a writer puts in its change: receivers read the send time from it."""
    return f"{STAMP_PREFIX}{time.time_ns()}:{writer}:{n}"


def stamp_age_ms(value: Any) -> float | None:
    """Milliseconds since a stamped value was written (same clock: one machine, or NTP)."""
    if not isinstance(value, str) or not value.startswith(STAMP_PREFIX):
        return None
    try:
        sent = int(value[len(STAMP_PREFIX) :].split(":", 1)[0])
    except ValueError:
        return None
    return (time.time_ns() - sent) / 1e6


def change_set(clock: Clock, writer: str, n: int, table: str = "load", keys: int = 100) -> dict[str, Any]:
    """One change set of one column change to row `n % keys`: small, valid, and stamped."""
    wall, counter = clock.tick()
    hlc = hlc_text(wall, counter, clock.site)
    site = site_id_text(clock.site)
    change = {
        "type": "column",
        "schema": "main",
        "table": table,
        "pk": [f"{writer}-{n % keys}"],
        "column": "v",
        "value": stamp(writer, n),
        "hlc": hlc_text(wall, counter, clock.site, 1),
    }
    return {
        "siteId": site,
        "transactionId": HLC(wall, counter, clock.site).transaction_id(),
        "hlc": hlc,
        "changes": [change],
        "schemaMigrations": [],
    }


def pushed_values(message: dict[str, Any]) -> list[Any]:
    """The values of every change a `push_changes` (or `changes`) message carries."""
    out: list[Any] = []
    for cs in message.get("changeSets") or ():
        if isinstance(cs, dict):
            out.extend(c.get("value") for c in cs.get("changes") or () if isinstance(c, dict))
    return out
