"""The bug catalogue (BUGS.md), re-introducible on purpose so the harness can prove it catches
each one. The correct behaviour is always the default. Each class that can carry bugs declares
them in one table at the top of the class, `BUG_SWAPS = {bug_id: (attribute, variant)}`, and its
`__init__` applies it with `bugs.apply(self, self.BUG_SWAPS)`: the variant (a method written right
beside its correct twin, or a hook the correct method consults) replaces the attribute. Where a
copy of the correct method would drift, the variant is a small hook inside the correct method.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Bug:
    id: str
    seed: str
    summary: str


CATALOGUE: dict[str, Bug] = {
    b.id: b
    for b in (
        Bug(
            "snapshot-unserializable",
            "000,001",
            "snapshot chunks carry raw binary/bigint fields; serialization throws",
        ),
        Bug(
            "http-snapshot-truncated",
            "000,001",
            "a mid-stream HTTP snapshot failure ends the response silently",
        ),
        Bug("ws-snapshot-generic-error", "000", "a mid-stream WS snapshot failure surfaces as MESSAGE_ERROR"),
        Bug(
            "generic-handler-errors",
            "000,001",
            "handler failures (bad base64/HLC/shape) become generic errors",
        ),
        Bug("resume-snapshot-unhandled", "000,001", "resume_snapshot answers UNKNOWN_MESSAGE"),
        Bug(
            "broadcast-error-swallowed",
            "000,001",
            "a failed broadcast send is swallowed and the rest are skipped",
        ),
        Bug("eviction-race", "001", "LRU eviction closes a store whose reference count rose meanwhile"),
        Bug("handshake-close-leak", "001", "a socket closing during the handshake leaks its store reference"),
        Bug("handshake-error-no-unregister", "001", "a failed handshake leaves its session registered"),
        Bug(
            "cleanup-races-shutdown",
            "001",
            "idle-store cleanup runs during shutdown and touches closed stores",
        ),
        Bug(
            "presence-wrong-timestamps", "003", "lastSeen is the snapshot time, joinedAt a modification time"
        ),
        Bug("presence-stale-leave", "003", "a leave is announced from a timer before the session is removed"),
        Bug("state-leak", "003", "per-database state and timers are never released"),
        Bug("thundering-herd", "003", "every event reloads the whole database state from storage"),
        Bug(
            "backend-crash-on-open", "003", "an object-store failure while opening a store kills the process"
        ),
        Bug("missing-authorization", "003", "a token valid for one database reads and writes another"),
        Bug("broadcast-seq-gap", "003", "concurrent applies race on the broadcast sequence"),
        Bug("silent-slow-client-drop", "004", "a client with a full buffer is dropped without a word"),
        Bug(
            "unbounded-send-queue",
            "004",
            "a slow client's queue grows without limit and holds up the broadcast",
        ),
        Bug("heartbeat-stalls-on-backend", "004", "the heartbeat waits on the object store"),
        Bug("backend-failure-silent", "004", "object-store failures are never told to clients"),
        Bug("no-circuit-breaker", "004", "during an outage every apply calls the object store again"),
        Bug("shutdown-without-notice", "004", "on SIGTERM sockets close with no SERVER_SHUTDOWN"),
        Bug(
            "shutdown-loses-writes", "004", "the process exits before pending object-store writes are flushed"
        ),
        Bug("outage-loses-writes", "004", "changes applied during an object-store outage never reach it"),
        Bug(
            "apply-race",
            "(found in a real v1 server)",
            "applies to one database interleave (read versions, await, write): the older value can win",
        ),
        Bug(
            "restore-mixes-tenants",
            "(PROTOCOL.md §5)",
            "a restore takes every object under the storage path, so a.b gets a_b's changes",
        ),
    )
}


BugSwaps = Mapping[str, tuple[str, str]]
"""A class's bug table: bug id -> (the attribute it replaces, the attribute holding its variant)."""


class ConflictingBugs(ValueError):
    """Two bugs that replace the same attribute cannot be on at once: one would silently win."""


class UnknownBug(ValueError):
    def __init__(self, unknown: list[str]) -> None:
        super().__init__(
            f"unknown bug id {', '.join(repr(u) for u in unknown)}; valid ids: {', '.join(CATALOGUE)}"
        )


class Bugs:
    """The bugs switched on for this process, and which swap sites consulted them (a test
    proves every catalogued bug has a swap site)."""

    def __init__(self, ids: list[str] | tuple[str, ...] = ()) -> None:
        unknown = [i for i in ids if i not in CATALOGUE]
        if unknown:
            raise UnknownBug(unknown)
        self.enabled = frozenset(ids)
        self.applied: set[str] = set()

    def on(self, bug_id: str) -> bool:
        assert bug_id in CATALOGUE, f"swap site names an uncatalogued bug {bug_id!r}"
        if bug_id in self.enabled:
            self.applied.add(bug_id)
            return True
        return False

    def apply(self, target: object, table: BugSwaps) -> None:
        """Swap in the variant of every bug of `table` that is on: the one place where bugs
        change behaviour. Refuses two enabled bugs on one attribute, naming both."""
        taken: dict[str, str] = {}
        for bug_id, (attribute, variant) in table.items():
            assert hasattr(target, attribute) and hasattr(target, variant), (
                f"{type(target).__name__}: bug {bug_id!r} names a missing attribute"
            )
            if not self.on(bug_id):
                continue
            if attribute in taken:
                raise ConflictingBugs(
                    f"bugs {taken[attribute]} and {bug_id} both replace {type(target).__name__}.{attribute}:"
                    " switch on one at a time"
                )
            taken[attribute] = bug_id
            setattr(target, attribute, getattr(target, variant))

    def __bool__(self) -> bool:
        return bool(self.enabled)


def describe_catalogue() -> str:
    width = max(len(i) for i in CATALOGUE)
    return "\n".join(f"{b.id:<{width}}  [seed {b.seed}] {b.summary}" for b in CATALOGUE.values())
