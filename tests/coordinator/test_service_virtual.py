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
    full = [m for m in _drain(b) if m["type"] == "presence"]
    assert [[e["connectionId"] for e in m["sessions"]] for m in full] == [[a.connection_id, b.connection_id]]
    assert full[0]["sessions"][0]["joinedAt"] == joined_a and full[0]["sessions"][0]["lastSeen"] == joined_a
    await service.disconnect(b)  # the leave: at once, the last delta is older than the interval
    deltas = [m for m in _drain(a) if m["type"] == "presence_delta"]
    assert [(m["joined"], m["left"]) for m in deltas][-1] == ([], [b.connection_id])
    assert seen_a > joined_a
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


async def test_presence_deltas_are_coalesced_per_interval_in_order_and_encoded_once(tmp_path: Path) -> None:
    service, clock = await _service(tmp_path, presence_interval_ms=1000)
    a = await _join(service)
    b = await _join(service)  # the first change after a quiet interval goes out at once
    assert [(m["joined"], m["left"]) for m in _drain(a) if m["type"] == "presence_delta"] == [
        ([service._presence_entry(b)], [])
    ]
    _drain(b)
    c, d = await _join(service), await _join(service)
    _drain(d)
    await service.disconnect(c)
    await clock.advance(0.9)
    assert [m for m in _drain(a) if m["type"] == "presence_delta"] == []  # not before the interval
    await clock.advance(0.2)
    frames = {
        name: [f for f in s.queue if f.startswith('{"type":"presence_delta"')]
        for name, s in (("a", a), ("b", b), ("d", d))
    }
    assert all(len(f) == 1 for f in frames.values())
    assert frames["a"][0] is frames["b"][0] is frames["d"][0]  # one encoding for every recipient
    delta = orjson.loads(frames["a"][0])
    assert delta["type"] == "presence_delta" and delta["databaseId"] == "db"
    assert [e["connectionId"] for e in delta["joined"]] == [c.connection_id, d.connection_id]
    assert delta["left"] == [c.connection_id]
    await service.shutdown()


async def test_a_join_storm_costs_a_delta_per_interval_not_per_join(tmp_path: Path) -> None:
    service, clock = await _service(tmp_path, presence_interval_ms=250)
    first = await _join(service)
    joiners = []
    for _ in range(200):
        joiners.append(await _join(service))
        await clock.advance(0.005)  # 200 joins over one second
    await clock.advance(0.3)
    deltas = [m for m in _drain(first) if m["type"] == "presence_delta"]
    assert len(deltas) <= 6  # at most one per 250 ms (plus the leading one)
    assert [e["connectionId"] for m in deltas for e in m["joined"]] == [j.connection_id for j in joiners]
    last = joiners[-1]
    kinds = [m["type"] for m in _drain(last) if m["type"] != "heartbeat"]
    assert kinds == ["handshake_ack", "presence"]  # its own list says it all
    await service.shutdown()


async def test_the_joiner_gets_the_full_list_and_plain_v1_gets_no_presence(tmp_path: Path) -> None:
    service, _ = await _service(tmp_path, presence_interval_ms=0)
    a, b = await _join(service), await _join(service)
    frames = _drain(b)
    assert [m["type"] for m in frames] == ["handshake_ack", "presence"]
    assert [e["connectionId"] for e in frames[1]["sessions"]] == [a.connection_id, b.connection_id]
    await service.shutdown()
    plain, _ = await _service(tmp_path / "plain", compat="plain-v1")
    p, q = await _join(plain), await _join(plain)
    await plain.disconnect(q)
    assert {m["type"] for m in _drain(p)} == {"handshake_ack"}
    await plain.shutdown()


async def test_the_last_leave_drops_pending_presence_and_its_timer(tmp_path: Path) -> None:
    service, clock = await _service(tmp_path, presence_interval_ms=1000)
    a = await _join(service)
    b = await _join(service)
    c = await _join(service)  # pending: an interval after b's delta
    state = service.databases.get("db")
    assert state is not None and state.delta_task is not None
    for s in (c, b, a):
        await service.disconnect(s)
    assert state.delta_task is None and state.joined == [] and state.left == []
    await clock.advance(2)
    assert service.databases.get("db") is None
    await service.shutdown()
