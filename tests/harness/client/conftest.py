from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from harness.client.sync_client import ClientConfig, SyncClient
from harness.history import History
from tests.harness.client.coordinator_process import RunningCoordinator, coordinator

ADMIN = "admin-secret"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RunningCoordinator]:
    with coordinator(tmp_path, "--heartbeat-interval-ms", "200", "--admin-token", ADMIN) as running:
        yield running


@pytest.fixture
def history() -> History:
    return History()


@pytest.fixture
async def make_client(
    server: RunningCoordinator, history: History
) -> AsyncIterator[Callable[..., SyncClient]]:
    made: list[SyncClient] = []
    rng = random.Random(7)

    def make(client_id: str, database_id: str = "db1", **config: object) -> SyncClient:
        client = SyncClient(client_id, ClientConfig(server.ws_url, database_id, **config), history, rng)  # type: ignore[arg-type]
        made.append(client)
        return client

    yield make
    for client in made:
        await client.aclose()
