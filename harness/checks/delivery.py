"""Who should have received which write, and when they did: the facts behind broadcast
delivery, fast-client latency and failure visibility.

A write is expected at a connection when it was acknowledged as applied in full (applied equals
its change count, so every change set in it was broadcast), the connection is on the same
database with another site id, and it was authenticated before the write was sent.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.checks.views import Apply, Connection, applies, connections
from harness.history import History


@dataclass(slots=True)
class Delivery:
    apply: Apply
    transaction_id: str
    recipient: Connection
    received_at: float | None  # None: never received on that connection

    @property
    def latency(self) -> float | None:
        if self.received_at is None:
            return None
        return self.received_at - self.apply.invoked.time


def expected_deliveries(history: History) -> list[Delivery]:
    conns = [c for c in connections(history) if c.authenticated]
    arrivals: dict[tuple[str, int], dict[str, float]] = {}
    for conn in conns:
        seen: dict[str, float] = {}
        for message in conn.received("push_changes"):
            for change_set in message.payload.get("changeSets") or []:
                seen.setdefault(str(change_set.get("transactionId")), message.time)
        arrivals[(conn.process, conn.number)] = seen
    out: list[Delivery] = []
    for write in applies(history):
        if not write.acknowledged or write.applied == 0 or write.applied != write.change_count:
            continue
        for conn in conns:
            if conn.database_id != write.database_id or conn.site_id == write.site_id:
                continue
            if conn.session_at is None or conn.session_at > write.invoked.time:
                continue
            seen = arrivals[(conn.process, conn.number)]
            for change_set in write.change_sets:
                tx = str(change_set.get("transactionId"))
                out.append(Delivery(write, tx, conn, seen.get(tx)))
    return out
