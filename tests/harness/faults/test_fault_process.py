"""Process faults on the real coordinator: kill, pause, terminate, restart, disk loss."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from harness.env.coordinator_process import CoordinatorOptions
from harness.env.environment import Environment, EnvironmentConfig
from harness.faults.registry import create_fault
from tests.harness.env.echo import poll_until
from tests.harness.env.sync_wire import get_values, next_heartbeat, open_session, post_change


@pytest.fixture
async def env() -> AsyncIterator[Environment]:
    config = EnvironmentConfig(with_s3=False, coordinator=CoordinatorOptions(heartbeat_interval_ms=200))
    async with Environment(config) as environment:
        yield environment


async def health(env: Environment) -> int | None:
    try:
        async with httpx.AsyncClient(timeout=2.0, trust_env=False) as http:
            return (await http.get(f"{env.direct_url}/health")).status_code
    except httpx.HTTPError:
        return None


def proc_state(pid: int) -> str:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rfind(")") + 2 :].split()[0]


async def test_pause_stops_heartbeats_and_clear_resumes_them(env: Environment) -> None:
    assert env.coordinator is not None
    process = env.coordinator.process
    ws = await open_session(env.client_urls().ws)
    try:
        await next_heartbeat(ws, 5.0)
        fault = create_fault({"kind": "pause"}, env)
        await fault.apply()
        await poll_until(lambda: proc_state(process.pid or 0) == "T")
        late = 0
        for _ in range(10):
            try:
                await next_heartbeat(ws, 1.5)  # 7 intervals
                late += 1
            except TimeoutError:
                break
        assert late <= 1  # one may have been in flight when the process stopped
        await fault.clear()
        await next_heartbeat(ws, 5.0)
    finally:
        await ws.close()
    [window] = env.history.faults
    assert window.kind == "pause" and window.end is not None and window.end - window.start >= 1.5


async def test_kill_then_clear_starts_again_on_the_same_port_and_data(env: Environment) -> None:
    assert env.coordinator is not None
    port = env.coordinator.port
    await post_change(env.client_urls().http, "db1", "survives SIGKILL")
    fault = create_fault({"kind": "kill"}, env)
    await fault.apply()
    assert await health(env) is None
    assert env.coordinator.process.returncode == -9
    await fault.clear()
    assert env.coordinator.port == port and await health(env) == 200
    assert await get_values(env.client_urls().http, "db1") == ["survives SIGKILL"]
    kinds = [e.kind for e in env.history.events if e.process == "nemesis"]
    assert kinds == ["process-exit", "process-started"]
    assert env.history.events[0].data["code"] == -9


async def test_disk_loss_wipes_the_data_dir_and_clear_starts_on_an_empty_one(env: Environment) -> None:
    """Without S3 nothing can be restored: the change is gone, which shows the disk really was lost."""
    assert env.coordinator is not None
    port = env.coordinator.port
    await post_change(env.client_urls().http, "db1", "lost with the disk")
    assert any(env.coordinator.data_dir.iterdir())
    fault = create_fault({"kind": "disk_loss"}, env)
    await fault.apply()
    assert await health(env) is None
    assert env.coordinator.process.returncode == -9
    assert list(env.coordinator.data_dir.iterdir()) == []
    await fault.clear()
    assert env.coordinator.port == port and await health(env) == 200
    assert await get_values(env.client_urls().http, "db1") == []
    exits = [e for e in env.history.events if e.process == "nemesis" and e.kind == "process-exit"]
    assert exits[0].data["wiped_entries"] >= 1


async def test_terminate_is_graceful_and_clear_restarts(env: Environment) -> None:
    assert env.coordinator is not None
    fault = create_fault({"kind": "terminate", "timeout_ms": 20000}, env)
    started = time.monotonic()
    await fault.apply()
    assert env.history.events[-1].data == {"target": "coordinator", "signal": "SIGTERM", "code": 0}
    assert time.monotonic() - started < 20
    assert fault.window is not None and (fault.window.family, fault.window.observable) == ("process", True)
    await fault.clear()
    assert await health(env) == 200


async def test_restart_keeps_port_and_data(env: Environment) -> None:
    assert env.coordinator is not None
    port, data_dir = env.coordinator.port, env.coordinator.data_dir
    await post_change(env.client_urls().http, "db1", "survives restart")
    async with create_fault({"kind": "restart"}, env):
        pass
    assert (env.coordinator.port, env.coordinator.data_dir) == (port, data_dir)
    assert await get_values(env.client_urls().http, "db1") == ["survives restart"]
    assert env.history.events[-1].data["exit_code"] == 0
