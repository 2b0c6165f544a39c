"""Samples what the target exposes into `Observations`, at the history's clock: the runner
calls it at the start, periodically, and after the clients left, so checks can compare."""

from __future__ import annotations

from harness.checks.observations import Observations, Sample
from harness.checks.prometheus import parse_prometheus
from harness.client.http_api import HttpApi
from harness.history import History


async def sample_target(
    api: HttpApi, history: History, obs: Observations, admin_token: str | None = None
) -> None:
    """One probe of /status, /metrics, /debug/resources (with the admin token), /health, /ready."""
    status = await api.status()
    obs.status.append(Sample(history.now(), status.body, status.status))
    metrics = await api.metrics()
    if metrics.status == 200 and isinstance(metrics.body, str):
        obs.metrics.append(Sample(history.now(), parse_prometheus(metrics.body), 200))
    if admin_token is not None:
        resources = await api.debug_resources(admin_token)
        obs.resources.append(Sample(history.now(), resources.body, resources.status))
    health = await api.health()
    obs.health.append(Sample(history.now(), health.body, health.status))
    ready = await api.ready()
    obs.ready.append(Sample(history.now(), ready.body, ready.status))
