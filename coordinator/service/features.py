"""The [ext] features of PROTOCOL.md this coordinator offers, derived once from the config.

`--compat plain-v1` switches every one of them off, so the reference coordinator can play a
correct server the harness did not write (the control for a staging target). Each flag is read
where its feature lives (the broadcast, the heartbeat task, the notices, the routes, the error
mapping), never re-derived from the config elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass

from coordinator.config import CoordinatorConfig


@dataclass(frozen=True, slots=True)
class Features:
    seq: bool = True  # `seq` on push_changes and on apply results
    heartbeat: bool = True  # the heartbeat task and its frames
    presence: bool = True  # presence frames after a join and on every change
    notices: bool = True  # SLOW_CLIENT, SERVER_SHUTDOWN, BACKEND_*, DELIVERY_FAILED notices
    ops_routes: bool = True  # /health, /ready, /debug/resources (absent: 404 like any unknown route)
    authorization: bool = True  # per-database grants of a token (off: a known token may do anything)
    specific_errors: bool = True  # INVALID_PAYLOAD, RATE_LIMITED, MESSAGE_TOO_LARGE, STORE_UNAVAILABLE,
    # NOT_AUTHORIZED codes, and `code` on an HTTP snapshot's error line (off: the base v1 codes)
    rate_limit: bool = True  # the per-session message rate limit (a plain v1 server has none)
    tombstone_policy: str = "revive"

    @classmethod
    def from_config(cls, config: CoordinatorConfig) -> Features:
        if config.compat == "plain-v1":
            return cls(
                seq=False,
                heartbeat=False,
                presence=False,
                notices=False,
                ops_routes=False,
                authorization=False,
                specific_errors=False,
                rate_limit=False,
                tombstone_policy=config.tombstone_policy,
            )
        return cls(tombstone_policy=config.tombstone_policy)
