"""Behaviours against the correct coordinator: the run's history must satisfy every check
(no false alarm), and the checks that have evidence must pass, not stay unknown."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

from harness.checks import Observations, load_all, run_check
from harness.checks.capabilities import REFERENCE_COORDINATOR
from harness.client.behaviours import (
    BadInput,
    Churner,
    Reader,
    SlowReader,
    Snapshotter,
    Subscriber,
    Writer,
    read_server_state,
)
from harness.client.http_api import HttpApi
from harness.client.probe import sample_target
from harness.client.sync_client import ClientConfig, SyncClient
from harness.history import History
from tests.harness.client.coordinator_process import RunningCoordinator, coordinator

ADMIN = "admin-secret"


def _client(server: RunningCoordinator, history: History, name: str, seed: int, **config: object) -> SyncClient:
    return SyncClient(name, ClientConfig(server.ws_url, "shared", **config), history, random.Random(seed))  # type: ignore[arg-type]


async def _settle(api: HttpApi, deadline_s: float) -> None:
    """Wait (bounded) until the target reports no client and no open store."""
    until = time.monotonic() + deadline_s
    while time.monotonic() < until:
        status = await api.status()
        data = (status.body or {}).get("data", {}) if isinstance(status.body, dict) else {}
        if data.get("connectedClients") == 0 and data.get("openStores") == 0:
            return
        await asyncio.sleep(0.1)


async def test_mixed_clients_against_the_correct_coordinator_raise_no_alarm(tmp_path: Path) -> None:
    history, obs = History(), Observations(capabilities=dict(REFERENCE_COORDINATOR))
    with coordinator(
        tmp_path, "--heartbeat-interval-ms", "200", "--admin-token", ADMIN, "--idle-store-timeout-ms", "300"
    ) as server:
        api = HttpApi(server.http_url)
        try:
            await sample_target(api, history, obs, ADMIN)
            behaviours = [
                Writer(client=_client(server, history, "writer-1", 1), rng=random.Random(11), count=15, interval_s=0.02, duration_s=20),
                Writer(client=_client(server, history, "writer-2", 2), rng=random.Random(12), count=15, interval_s=0.02, http_share=0.3, duration_s=20),
                Subscriber(client=_client(server, history, "subscriber", 3), rng=random.Random(13), listen_s=1.5, duration_s=20),
                Reader(client=_client(server, history, "reader", 4), rng=random.Random(14), polls=5, interval_s=0.1, duration_s=20),
                Snapshotter(client=_client(server, history, "snapshotter", 5), rng=random.Random(15), count=4, cut_share=0.5, duration_s=20),
                Churner(client=_client(server, history, "churner", 6), rng=random.Random(16), cycles=8, duration_s=20),
                BadInput(client=_client(server, history, "prober", 7), rng=random.Random(17), duration_s=20),
            ]
            reasons = await asyncio.gather(*(b.run() for b in behaviours))
            assert all(r == "done" for r in reasons), reasons
            verifier = _client(server, history, "verifier", 8)
            await read_server_state(verifier, "snapshot")
            await verifier.aclose()
            await sample_target(api, history, obs, ADMIN)
            await _settle(api, 10.0)
            await asyncio.sleep(0.5)  # the settle bound the leak check judges against
            await sample_target(api, history, obs, ADMIN)
        finally:
            await api.aclose()
    results = {name: run_check(name, history, obs, _bounds(name)) for name in load_all()}
    failures = {n: (r.summary, r.evidence[:3]) for n, r in results.items() if r.status == "fail"}
    assert not failures, failures
    must_pass = {
        "convergence",
        "no-lost-write",
        "broadcast-delivery",
        "ordered-seq",
        "stream-completeness",
        "error-specificity",
        "heartbeat-continuity",
        "presence-accuracy",
        "leaked-resources",
        "no-spurious-failures",
    }
    not_passed = {n: results[n].summary for n in must_pass if results[n].status != "pass"}
    assert not not_passed, not_passed


def _bounds(name: str) -> dict[str, object]:
    return {
        "heartbeat-continuity": {"interval_s": 0.2, "factor": 5.0},
        "leaked-resources": {"settle_s": 0.3},
        "broadcast-delivery": {"delivery_bound_s": 2.0},
    }.get(name, {})


async def test_slow_reader_is_told_before_it_is_dropped_and_others_stay_fast(tmp_path: Path) -> None:
    history, obs = History(), Observations(capabilities=dict(REFERENCE_COORDINATOR))
    with coordinator(tmp_path, "--send-queue-messages", "20", "--heartbeat-interval-ms", "200") as server:
        slow = SlowReader(
            client=_client(server, history, "slow", 1, max_queue=1, recv_buffer_bytes=4096),
            rng=random.Random(1),
            stall_after_s=0.1,
            stall_s=3.0,
            drain_s=3.0,
            duration_s=15,
        )
        fast = Subscriber(client=_client(server, history, "fast", 2), rng=random.Random(2), listen_s=3.0, duration_s=15)
        writer = Writer(
            client=_client(server, history, "writer", 3),
            rng=random.Random(3),
            count=300,
            interval_s=0.005,
            changes_per_set=20,
            value_bytes=1000,
            columns=("name",),
            duration_s=15,
        )
        await asyncio.gather(slow.run(), fast.run(), writer.run())
    notification = run_check("slow-client-notification", history, obs)
    assert notification.status == "pass", notification
    latency = run_check("fast-client-latency", history, obs, {"max_latency_s": 2.0})
    assert latency.status == "pass", latency
