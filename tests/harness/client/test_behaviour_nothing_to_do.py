"""A behaviour that cannot do what it is for against a target ends at once and says why."""

from __future__ import annotations

import random

from harness.client.behaviours import Intruder
from harness.client.sync_client import ClientConfig, SyncClient
from harness.history import EventKind, History


async def _intrude(granted: tuple[str, ...] | None) -> tuple[str, History]:
    history = History()
    config = ClientConfig("ws://127.0.0.1:9/sync/ws", "mine", token="t", token_databases=granted)
    client = SyncClient("intruder", config, history, random.Random(1))
    reason = await Intruder(client=client, rng=random.Random(2), foreign_database="theirs").run()
    await client.aclose()
    return reason, history


async def test_an_intruder_whose_token_is_valid_everywhere_tries_nothing() -> None:
    reason, history = await _intrude(None)
    assert reason.startswith("nothing to do") and "unrestricted" in reason
    assert history.ops == []  # not one request: nothing was pretended
    assert [e.kind for e in history.events][-1] == EventKind.BEHAVIOUR_END


async def test_an_intruder_granted_the_database_it_would_intrude_tries_nothing() -> None:
    reason, history = await _intrude(("mine", "theirs"))
    assert reason.startswith("nothing to do") and "granted theirs" in reason and history.ops == []
