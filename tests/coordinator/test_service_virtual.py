"""The service without sockets, on a virtual clock: what the simulation mode relies on."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path
from typing import Any

import orjson

from coordinator.clock import VirtualClock
from coordinator.config import CoordinatorConfig
from coordinator.service.coordinator import CoordinatorService
from coordinator.service.session import Session
from tests.coordinator.wire import new_site_id, write


def _drain(session: Session) -> list[dict[str, Any]]:
    frames = [orjson.loads(f) for f in session.queue]
    session.queue.clear()
    session.queued_bytes = 0
    return frames


async def _service(tmp_path: Path, **options: Any) -> tuple[CoordinatorService, VirtualClock]:
    clock = VirtualClock()
    config = CoordinatorConfig(
        data_dir=str(tmp_path), heartbeat_interval_ms=1000, enable_failpoints=True, **options
    )
    service = CoordinatorService(config, clock)
    await service.start()
    return service, clock


async def _join(service: CoordinatorService, database_id: str = "db") -> Session:
    session = service.connect("test")
    await service.handle_text(
        session,
        orjson.dumps(
            {"type": "handshake", "databaseId": database_id, "siteId": new_site_id(), "protocolVersion": 1}
        ).decode(),
    )
    return session


async def test_heartbeats_keep_their_period_while_storage_stalls(tmp_path: Path) -> None:
    service, clock = await _service(tmp_path)
    a, b = await _join(service), await _join(service)
    service.failpoints.configure("storage.write", {"mode": "delay", "delayMs": 10_000})
    stalled = asyncio.ensure_future(
        service.handle_text(
            a,
            orjson.dumps(
                {"type": "apply_changes", "changes": [write(new_site_id(), "t", 1, "x", 1)]}
            ).decode(),
        )
    )
    _drain(b)
    beats = []
    for _ in range(8):
        await clock.advance(1.0)
        beats += [(m["ts"], m["seq"]) for m in _drain(b) if m["type"] == "heartbeat"]
    assert len(beats) == 8 and not stalled.done()
    gaps = [later[0] - earlier[0] for earlier, later in itertools.pairwise(beats)]
    assert max(gaps) <= 1000
    await clock.advance(5)
    await stalled
    assert any(m["type"] == "push_changes" for m in _drain(b))
    await service.shutdown()


async def test_presence_times_are_true_and_leave_is_announced_after_removal(tmp_path: Path) -> None:
    service, clock = await _service(tmp_path)
    a = await _join(service)
    joined_a = clock.now_ms()
    await clock.advance(3)
    b = await _join(service)
    await clock.advance(2)
    await service.handle_text(a, '{"type": "ping"}')
    seen_a = clock.now_ms()
    await service.disconnect(b)  # the leave
    presence = [m for m in _drain(a) if m["type"] == "presence"][-1]
    assert [s["connectionId"] for s in presence["sessions"]] == [a.connection_id]
    assert presence["sessions"][0]["joinedAt"] == joined_a and presence["sessions"][0]["lastSeen"] == seen_a
    assert service.databases.get("db") is not None and len(service.databases.get("db").sessions) == 1  # type: ignore[union-attr]
    await service.disconnect(a)
    assert service.databases.get("db") is None and service.stores.total_refs == 0
    await service.shutdown()


async def test_disconnect_during_store_open_releases_the_reference(tmp_path: Path) -> None:
    service, clock = await _service(tmp_path)
    service.failpoints.configure("store.open", {"mode": "delay", "delayMs": 1000})
    session = service.connect("test")
    handshake = asyncio.ensure_future(
        service.handle_text(
            session,
            orjson.dumps(
                {"type": "handshake", "databaseId": "db", "siteId": new_site_id(), "protocolVersion": 1}
            ).decode(),
        )
    )
    await clock.advance(0.5)
    await service.disconnect(session)  # the socket closes mid-handshake
    await clock.advance(1.0)
    await handshake
    assert service.stores.total_refs == 0 and len(service.sessions) == 0 and len(service.databases) == 0
    await service.shutdown()


async def test_shutdown_notifies_and_closes_with_1001(tmp_path: Path) -> None:
    service, _ = await _service(tmp_path)
    a = await _join(service)
    _drain(a)
    await service.shutdown()
    frames = [orjson.loads(f) for f in a.queue]
    assert frames[0]["type"] == "notice" and frames[0]["code"] == "SERVER_SHUTDOWN"
    assert a.close_code == 1001


async def test_an_operational_route_that_fails_answers_internal_error_not_a_traceback(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """/status and the other plain routes are scraped at any moment, also while the server drains;
    a failure there is a JSON error with a code and one log line, as on the sync routes."""
    import httpx

    from coordinator.transport.http import HttpApi

    service, _ = await _service(tmp_path)

    def broken_status() -> dict[str, Any]:
        raise RuntimeError("status source went away")

    monkeypatch.setattr(service, "status", broken_status)
    transport = httpx.ASGITransport(app=HttpApi(service).app())
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://coordinator") as http:
            answer = await http.get("/sync/status")
            healthy = await http.get("/sync/health")
    finally:
        await service.shutdown()
    assert answer.status_code == 500
    assert answer.json() == {
        "ok": False,
        "error": {"code": "INTERNAL_ERROR", "message": "status failed: status source went away"},
    }
    assert healthy.status_code == 200
