"""Prometheus text-format metrics, kept in plain dicts so the hot path (one increment per
delivered message) costs a dictionary update and nothing more."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

LabelKey = tuple[tuple[str, str], ...]


class Metric:
    def __init__(self, name: str, kind: str, help_text: str) -> None:
        self.name = name
        self.kind = kind  # "counter" | "gauge"
        self.help = help_text
        self.values: dict[LabelKey, float] = defaultdict(float)
        self.callback: Callable[[], dict[LabelKey, float]] | None = None

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        self.values[tuple(sorted(labels.items()))] += amount

    def set(self, value: float, **labels: str) -> None:
        self.values[tuple(sorted(labels.items()))] = value

    def get(self, **labels: str) -> float:
        return self.values.get(tuple(sorted(labels.items())), 0.0)

    def total(self) -> float:
        return sum(self.values.values())


class Metrics:
    """The coordinator's metrics. Names are part of the contract the harness reads."""

    def __init__(self) -> None:
        self._all: dict[str, Metric] = {}
        c, g = self._counter, self._gauge
        self.connections = g("coordinator_connections", "Open WebSocket connections")
        self.connections_total = c("coordinator_connections_total", "WebSocket connections accepted")
        self.connections_refused = c(
            "coordinator_connections_refused_total", "Upgrades refused (limit, shutdown)"
        )
        self.sessions = g("coordinator_sessions", "Authenticated sessions")
        self.messages_received = c("coordinator_messages_received_total", "Client messages by type")
        self.messages_sent = c("coordinator_messages_sent_total", "Server messages queued by type")
        self.errors = c("coordinator_errors_total", "Error responses by code")
        self.applies = c("coordinator_applies_total", "apply_changes requests processed")
        self.changes_applied = c("coordinator_changes_applied_total", "Changes applied")
        self.broadcasts = c("coordinator_broadcasts_total", "Broadcasts (push_changes) started")
        self.broadcast_deliveries = c(
            "coordinator_broadcast_deliveries_total", "push_changes queued to sessions"
        )
        self.broadcast_errors = c("coordinator_broadcast_errors_total", "Failed sends during broadcast")
        self.slow_client_drops = c("coordinator_slow_client_drops_total", "Sessions dropped for a full queue")
        self.snapshot_chunks = c("coordinator_snapshot_chunks_total", "Snapshot chunks sent by transport")
        self.snapshots = c("coordinator_snapshots_total", "Snapshot streams by transport and outcome")
        self.store_opens = c("coordinator_store_opens_total", "Database stores opened")
        self.store_evictions = c("coordinator_store_evictions_total", "Stores closed by LRU eviction")
        self.store_idle_closes = c(
            "coordinator_store_idle_closes_total", "Stores closed after the idle timeout"
        )
        self.open_stores = g("coordinator_open_stores", "Database stores open")
        self.storage_reads = c("coordinator_storage_reads_total", "Reads of database state from storage")
        self.storage_writes = c("coordinator_storage_writes_total", "Write transactions to storage")
        self.heartbeats = c("coordinator_heartbeats_total", "Heartbeat messages queued")
        self.rate_limited = c("coordinator_rate_limited_total", "Messages refused by the rate limit")
        self.failpoint_hits = c("coordinator_failpoint_hits_total", "Failpoints that fired, by name and mode")

    def _counter(self, name: str, help_text: str) -> Metric:
        return self._add(Metric(name, "counter", help_text))

    def _gauge(self, name: str, help_text: str) -> Metric:
        return self._add(Metric(name, "gauge", help_text))

    def _add(self, metric: Metric) -> Metric:
        self._all[metric.name] = metric
        return metric

    def gauge(self, name: str, help_text: str) -> Metric:
        """Register an extra gauge (e.g. from the S3 persistence)."""
        return self._all.get(name) or self._gauge(name, help_text)

    def counter(self, name: str, help_text: str) -> Metric:
        return self._all.get(name) or self._counter(name, help_text)

    def render(self) -> str:
        lines: list[str] = []
        for metric in self._all.values():
            lines.append(f"# HELP {metric.name} {metric.help}")
            lines.append(f"# TYPE {metric.name} {metric.kind}")
            values = metric.callback() if metric.callback else metric.values
            if not values:
                lines.append(f"{metric.name} 0")
            for labels, value in values.items():
                label_text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
                suffix = f"{{{label_text}}}" if label_text else ""
                lines.append(f"{metric.name}{suffix} {_number(value)}")
        return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)
