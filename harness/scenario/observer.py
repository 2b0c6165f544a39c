"""Samples what the target exposes (/status, /metrics, /debug/resources, /health, /ready) on a
period during the run, and gathers the object store's contents, its request log and the
coordinator's lifecycle and log lines at the end: the `Observations` checks read beside the
history. It only reads; it never drives the system."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from harness.checks.observations import LogLine, Observations, ProcessEvent, S3Object, S3Request
from harness.client.http_api import HttpApi
from harness.client.probe import sample_target
from harness.client.recorder import Recorder
from harness.env.environment import Environment
from harness.history import History

MAX_SAMPLES = 5000  # per endpoint: a bound on memory for long runs


class TargetObserver:
    def __init__(
        self, env: Environment, history: History, observations: Observations, interval_s: float = 0.5
    ):
        self.env = env
        self.history = history
        self.obs = observations
        self.interval_s = interval_s
        self.api = HttpApi(env.direct_urls.http, Recorder(history, "observer"), timeout_s=2.0)

    async def sample_once(self) -> None:
        if len(self.obs.status) < MAX_SAMPLES:
            await sample_target(self.api, self.history, self.obs, self.env.admin_token)

    async def run(self, stop: asyncio.Event, max_s: float) -> None:
        """Sample until `stop` is set (or `max_s` passes): the period is pacing, not a wait for
        a condition."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max_s
        while not stop.is_set() and loop.time() < deadline:
            await self.sample_once()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval_s)

    async def finish(self) -> None:
        """What is read once at the end: S3 contents and requests, process events and logs."""
        await self.api.aclose()
        env = self.env
        layer = getattr(env, "s3_layer", None)
        if layer is not None:
            self.obs.s3_owned = True
            self.obs.s3_requests = [
                S3Request(r.time, r.operation, r.key, _status_of(r.outcome)) for r in layer.requests
            ]
        if env.s3_direct_url is not None:
            self.obs.s3_listed_at = self.history.now()
            self.obs.s3_objects = await asyncio.to_thread(_list_objects, env)
        coordinator = getattr(env, "coordinator", None)
        if coordinator is not None:
            for event in coordinator.events:
                self.obs.process.append(
                    ProcessEvent(event.time, event.kind, event.exit_code, event.by_harness)
                )
            self.obs.logs = [LogLine(r.time, r.text, r.stream) for r in coordinator.log_lines()]


def _status_of(outcome: str) -> int | None:
    return {"forwarded": 200, "injected-error": 500, "outage": 503}.get(outcome)


def _list_objects(env: Environment) -> list[S3Object]:
    """boto3 against moto itself (not through the fault layer, and off the event loop)."""
    import boto3

    s3 = boto3.client(
        "s3",
        endpoint_url=env.s3_direct_url,
        region_name=env.config.s3_region,
        aws_access_key_id="harness",
        aws_secret_access_key="harness",
    )
    objects: list[S3Object] = []
    token: dict[str, Any] = {}
    for _ in range(10_000):
        page = s3.list_objects_v2(Bucket=env.config.s3_bucket, **token)
        for item in page.get("Contents", []):
            body = s3.get_object(Bucket=env.config.s3_bucket, Key=item["Key"])["Body"].read()
            objects.append(S3Object(item["Key"], body))
        if not page.get("IsTruncated"):
            break
        token = {"ContinuationToken": page["NextContinuationToken"]}
    return objects
