"""The catalogue's bugs of issue 9: `apply-race` (found in a real v1 server) here, in-process on a
virtual clock; `restore-mixes-tenants` against moto in tests/coordinator/s3/test_restore_tenants.py.
Each swap, switched on, has the effect BUGS.md describes, and the default does not."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from coordinator.clock import VirtualClock
from coordinator.config import CoordinatorConfig
from coordinator.protocol.changes import decode_change_sets
from coordinator.service.coordinator import ApplyReport, CoordinatorService
from tests.coordinator.conftest import swaps_applied
from tests.coordinator.wire import new_site_id, site_bytes, write

MINE = ("apply-race", "restore-mixes-tenants")


pytestmark = pytest.mark.usefixtures("offline_aws")


async def _until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Poll `condition` with a deadline (the apply-race read runs in a worker thread)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached before the deadline")
        await asyncio.sleep(0.005)


async def test_each_bug_of_issue_9_has_a_swap_site(tmp_path: Path) -> None:
    for bug_id in MINE:
        assert await swaps_applied(tmp_path / bug_id, [bug_id]) == {bug_id}, bug_id


async def _cell_values(service: CoordinatorService, database_id: str) -> dict[tuple[Any, str], Any]:
    """(pk, column) -> value, as a snapshot shows the database (the state, not the change log)."""
    values: dict[tuple[Any, str], Any] = {}
    async with service.snapshot(database_id) as chunks:
        async for chunk in chunks:
            if chunk["type"] == "column-versions":
                for entry in chunk["entries"]:
                    values[(tuple(entry["pk"]), entry["column"])] = entry["value"]
    return values


@pytest.mark.parametrize("buggy", [False, True])
async def test_apply_race_lets_the_older_of_two_concurrent_writes_win(tmp_path: Path, buggy: bool) -> None:
    """Two applies of one cell issued at once: the one with the larger HLC starts first, the
    older one arrives while it is in flight. The interleaving is pinned with the storage.write
    failpoint in delay mode on the virtual clock: both applies wait there, and wake in order."""
    clock = VirtualClock()
    config = CoordinatorConfig(
        data_dir=str(tmp_path), enable_failpoints=True, bugs=["apply-race"] if buggy else []
    )
    service = CoordinatorService(config, clock)
    await service.start()
    opener = new_site_id()  # open the store first, so neither apply waits on opening it
    await service.apply("db", decode_change_sets([write(opener, "t", 9, "x", 0)], "c"), site_bytes(opener))
    new_site, old_site = new_site_id(), new_site_id()
    newer = decode_change_sets([write(new_site, "t", 1, "x", "newer", wall_ms=2000)], "c")
    older = decode_change_sets([write(old_site, "t", 1, "x", "older", wall_ms=1000)], "c")
    gate = service.failpoints.configure("storage.write", {"mode": "delay", "delayMs": 1000})

    first = asyncio.create_task(service.apply("db", newer, site_bytes(new_site)))
    await _until(lambda: gate.fired == 1)
    second = asyncio.create_task(service.apply("db", older, site_bytes(old_site)))
    await _until(lambda: gate.fired == 2)
    await clock.advance(2.0)  # the newer wakes first (it waited first), then the older
    reports: list[ApplyReport] = list(await asyncio.gather(first, second))

    final = (await _cell_values(service, "db"))[((1,), "x")]
    assert reports[0].outcome.applied == 1
    if buggy:
        assert reports[1].outcome.applied == 1  # both acknowledged...
        assert final == "older"  # ...and the smaller HLC is what the database holds
    else:
        assert reports[1].outcome.applied == 0 and reports[1].outcome.conflicts == 1
        assert final == "newer"
    await service.shutdown()


async def test_the_correct_apply_reads_and_writes_in_one_step(tmp_path: Path) -> None:
    """Without a failpoint, many concurrent applies of one cell in any start order end with the
    largest HLC: nothing in the correct path yields between reading a version and writing."""
    service = CoordinatorService(CoordinatorConfig(data_dir=str(tmp_path)), VirtualClock())
    await service.start()
    sites = [new_site_id() for _ in range(20)]
    sets = [
        decode_change_sets([write(s, "t", 1, "x", i, wall_ms=1000 + i)], "c") for i, s in enumerate(sites)
    ]
    order = list(range(20))[::-1]  # the largest HLC first: the worst case for a racy apply
    reports = await asyncio.gather(*(service.apply("db", sets[i], site_bytes(sites[i])) for i in order))
    assert sum(r.outcome.applied for r in reports) == 1
    assert (await _cell_values(service, "db"))[((1,), "x")] == 19
    await service.shutdown()
