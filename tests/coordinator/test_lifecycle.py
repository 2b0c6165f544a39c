"""Process-level behaviour: slow clients, graceful shutdown on SIGTERM, leaks, the CLI."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from typing import Any

import websockets

from tests.coordinator.conftest import RawWs
from tests.coordinator.wire import new_site_id, write

ADMIN = {"Authorization": "admin-secret"}


async def _poll(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached before the deadline")
        await asyncio.sleep(0.02)  # polling a condition with a deadline


async def test_slow_client_gets_slow_client_then_1013_and_others_keep_up(
    start_coordinator: Any, connect: Any
) -> None:
    coord = await start_coordinator("--send-queue-messages", "50", "--send-queue-bytes", "200000")
    writer, fast = await connect(coord), await connect(coord)
    await writer.handshake()
    await fast.handshake()
    slow = await RawWs.connect(coord.ws_url)  # reads nothing until told to
    await slow.send({"type": "handshake", "databaseId": "db1", "siteId": new_site_id(), "protocolVersion": 1})
    value = "x" * 30000  # 400 pushes of 30 kB: more than the kernel's socket buffers can absorb
    try:
        for i in range(400):
            await writer.send(
                {"type": "apply_changes", "changes": [write(writer.site_id, "t", i, "v", value, 1000 + i)]}
            )
            await writer.expect("apply_result")
            assert (await fast.expect("push_changes"))["seq"] == i + 1  # the fast client is never held up
        async with coord.http() as http:
            metrics = (await http.get("/metrics")).text
        assert "coordinator_slow_client_drops_total 1" in metrics
        close, got = await slow.read_until_closed()
    finally:
        slow.close()
    assert close == 1013
    notices = [m for m in got if m["type"] == "notice"]
    assert notices and notices[-1]["code"] == "SLOW_CLIENT" and notices[-1]["severity"] == "warning"
    assert got[-1] is notices[-1]  # the notice is the last thing before the close
    pushes = [m["seq"] for m in got if m["type"] == "push_changes"]
    assert pushes == list(range(1, len(pushes) + 1))  # no gap before the drop notice


async def test_sigterm_notifies_sessions_closes_1001_and_exits_zero(
    start_coordinator: Any, connect: Any
) -> None:
    coord = await start_coordinator("--drain-timeout-ms", "5000")
    clients = [await connect(coord) for _ in range(3)]
    for c in clients:
        await c.handshake()
    assert coord.proc is not None
    exit_task = asyncio.ensure_future(coord.terminate())
    for c in clients:
        close, got = await c.closed()
        assert close == 1001
        notice = [m for m in got if m["type"] == "notice"]
        assert notice and notice[0]["code"] == "SERVER_SHUTDOWN" and notice[0]["severity"] == "critical"
        assert isinstance(notice[0]["data"]["retryAfterMs"], int)
    assert await exit_task == 0
    errors = [e for e in coord.log_events() if e.get("level") == "error"]
    assert errors == []


async def test_sigterm_waits_for_inflight_request(start_coordinator: Any, connect: Any) -> None:
    coord = await start_coordinator("--enable-failpoints", "--drain-timeout-ms", "5000")
    ws = await connect(coord)
    await ws.handshake()
    async with coord.http() as http:
        await http.put(
            "/admin/failpoints/storage.write", json={"mode": "delay", "delayMs": 800}, headers=ADMIN
        )
    await ws.send(
        {"type": "apply_changes", "changes": [write(ws.site_id, "t", 1, "x", 1)], "requestId": "slow"}
    )
    await _poll(lambda: _inflight(coord))
    exit_task = asyncio.ensure_future(coord.terminate())
    close, got = await ws.closed()
    types = [m["type"] for m in got]
    assert "apply_result" in types and close == 1001
    assert await exit_task == 0


async def _inflight(coord: Any) -> bool:
    async with coord.http() as http:
        return bool((await http.get("/debug/resources", headers=ADMIN)).json()["data"]["inflight"] > 0)


async def test_sessions_and_stores_return_to_zero(start_coordinator: Any, connect: Any) -> None:
    coord = await start_coordinator("--idle-store-timeout-ms", "200")
    clients = [await connect(coord) for _ in range(5)]
    for i, c in enumerate(clients):
        await c.handshake(f"db{i % 2}")
    # a socket that closes in the middle of its handshake, and one whose handshake fails
    half = await connect(coord)
    await half.send(
        {"type": "handshake", "databaseId": "db9", "siteId": clients[0].site_id, "protocolVersion": 1}
    )
    await half.conn.close()
    bad = await connect(coord)
    await bad.send({"type": "handshake", "databaseId": "db9", "siteId": "nope", "protocolVersion": 1})
    await bad.closed()
    for c in clients:
        await c.conn.close()

    async def back_to_zero() -> bool:
        async with coord.http() as http:
            res = (await http.get("/debug/resources", headers=ADMIN)).json()["data"]
            status = (await http.get("/status")).json()["data"]
        return bool(
            res["storeRefs"] == 0
            and res["sessions"] == 0
            and res["databaseStates"] == 0
            and status["openStores"] == 0
            and status["connectedClients"] == 0
        )

    await _poll(back_to_zero)


async def test_restart_keeps_data(start_coordinator: Any, connect: Any) -> None:
    coord = await start_coordinator()
    ws = await connect(coord)
    await ws.handshake()
    await ws.send({"type": "apply_changes", "changes": [write(ws.site_id, "t", 1, "x", "kept")]})
    await ws.expect("apply_result")
    assert await coord.terminate() == 0
    await coord.start(port=coord.port)
    async with coord.http() as http:
        changes = (await http.get("/db1/changes")).json()["data"]["changes"]
    assert changes[0]["changes"][0]["value"] == "kept"


async def test_ready_is_503_while_shutting_down(start_coordinator: Any, connect: Any) -> None:
    coord = await start_coordinator("--enable-failpoints", "--drain-timeout-ms", "5000")
    ws = await connect(coord)
    await ws.handshake()
    async with coord.http() as http:
        await http.put(
            "/admin/failpoints/storage.write", json={"mode": "delay", "delayMs": 1500}, headers=ADMIN
        )
        await ws.send({"type": "apply_changes", "changes": [write(ws.site_id, "t", 1, "x", 1)]})
        await _poll(lambda: _inflight(coord))
        assert coord.proc is not None
        coord.proc.terminate()
        ready = None
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            ready = (await http.get("/ready")).status_code
            if ready == 503:
                break
        assert ready == 503
        try:
            await websockets.connect(coord.ws_url)
        except websockets.InvalidStatus as exc:
            assert exc.response.status_code == 503
        else:
            raise AssertionError("a new connection was accepted during shutdown")
    assert await coord.terminate() == 0


def test_cli_help_and_bad_config_are_clear(tmp_path: Any) -> None:
    help_text = subprocess.run(
        [sys.executable, "-m", "coordinator.cli", "serve", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for flag in ("--heartbeat-interval-ms", "COORDINATOR_MAX_OPEN_STORES", "--enable-failpoints", "--token"):
        assert flag in help_text
    bad = subprocess.run(
        [sys.executable, "-m", "coordinator.cli", "serve", "--heartbeat-interval-ms", "0"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "heartbeat_interval_ms must be positive" in bad.stderr
    config = tmp_path / "c.yaml"
    config.write_text("heartbeatIntervalMs: 100\nnoSuchOption: 1\n")
    bad = subprocess.run(
        [sys.executable, "-m", "coordinator.cli", "serve", "--config", str(config)],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "unknown option 'noSuchOption'" in bad.stderr
    env_bad = subprocess.run(
        [sys.executable, "-m", "coordinator.cli", "serve"],
        capture_output=True,
        text=True,
        env={"COORDINATOR_PORT": "many", "PATH": ""},
    )
    assert env_bad.returncode == 2 and "COORDINATOR_PORT" in env_bad.stderr
