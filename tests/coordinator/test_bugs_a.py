"""The catalogued bugs of the first half (BUGS.md), re-introduced on purpose: each swap has the
effect its entry describes, and the correct behaviour is what runs without it. In-process, on
a virtual clock: the service without sockets, driven as the transports drive it."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import websockets

from coordinator.clock import VirtualClock
from coordinator.config import CoordinatorConfig
from coordinator.service.auth import Authenticator
from coordinator.service.coordinator import CoordinatorService
from coordinator.service.session import Session
from coordinator.transport.http import HttpApi
from tests.coordinator.conftest import ADMIN
from tests.coordinator.wire import new_site_id, write

MY_BUGS = (
    "snapshot-unserializable",
    "http-snapshot-truncated",
    "ws-snapshot-generic-error",
    "generic-handler-errors",
    "resume-snapshot-unhandled",
    "broadcast-error-swallowed",
    "eviction-race",
    "handshake-close-leak",
    "handshake-error-no-unregister",
    "cleanup-races-shutdown",
    "missing-authorization",
    "broadcast-seq-gap",
)


def _config(tmp_path: Path, bugs: list[str], **options: Any) -> CoordinatorConfig:
    return CoordinatorConfig(
        data_dir=str(tmp_path), heartbeat_interval_ms=1000, enable_failpoints=True, bugs=bugs, **options
    )


async def _service(
    tmp_path: Path, bug: str | None = None, **options: Any
) -> tuple[CoordinatorService, VirtualClock]:
    clock = VirtualClock()
    service = CoordinatorService(_config(tmp_path, [bug] if bug else [], **options), clock)
    await service.start()
    return service, clock


def _drain(session: Session) -> list[dict[str, Any]]:
    frames = [orjson.loads(f) for f in session.queue]
    session.queue.clear()
    session.queued_bytes = 0
    return frames


async def _send(service: CoordinatorService, session: Session, message: dict[str, Any]) -> None:
    await service.handle_text(session, orjson.dumps(message).decode())


def _handshake(database_id: str = "db", **extra: Any) -> dict[str, Any]:
    return {
        "type": "handshake",
        "databaseId": database_id,
        "siteId": new_site_id(),
        "protocolVersion": 1,
        **extra,
    }


async def _join(service: CoordinatorService, database_id: str = "db", **extra: Any) -> Session:
    session = service.connect("test")
    await _send(service, session, _handshake(database_id, **extra))
    assert session.authenticated, _drain(session)
    _drain(session)
    return session


async def _write(service: CoordinatorService, session: Session, value: Any, pk: int = 1) -> None:
    assert session.site_id_text is not None
    await _send(
        service,
        session,
        {"type": "apply_changes", "changes": [write(session.site_id_text, "t", pk, "c", value)]},
    )


def _errors(frames: list[dict[str, Any]]) -> list[str]:
    return [f["code"] for f in frames if f["type"] == "error"]


@pytest.fixture
async def both(tmp_path: Path) -> AsyncIterator[Any]:
    """Factory: `await both(bug)` -> (correct service, service with the bug), shut down after."""
    made: list[CoordinatorService] = []

    async def make(bug: str, **options: Any) -> tuple[CoordinatorService, CoordinatorService]:
        correct, _ = await _service(tmp_path / f"ok-{len(made)}", **options)
        buggy, _ = await _service(tmp_path / f"bug-{len(made)}", bug, **options)
        made.extend([correct, buggy])
        return correct, buggy

    yield make
    for service in made:
        await service.shutdown()


# every id has a swap site -----------------------------------------------------------------------
@pytest.mark.parametrize("bug", MY_BUGS)
async def test_constructing_with_the_bug_applies_its_swap(tmp_path: Path, bug: str) -> None:
    service = CoordinatorService(_config(tmp_path, [bug]), VirtualClock())
    HttpApi(service)  # the HTTP transport holds swaps of its own
    assert bug in service.bugs.applied
    plain = CoordinatorService(_config(tmp_path / "plain", []), VirtualClock())
    HttpApi(plain)
    assert plain.bugs.applied == set()


# snapshots -----------------------------------------------------------------------------------------
async def test_snapshot_unserializable_sends_raw_values_that_cannot_be_serialized(both: Any) -> None:
    for service, raw in zip(await both("snapshot-unserializable"), (False, True), strict=True):
        writer = await _join(service)
        await _write(service, writer, {"__bin": "AAEC"})
        async with service.snapshot("db") as chunks:
            header = await anext(chunks)
        assert isinstance(header["siteId"], bytes) is raw and isinstance(header["hlc"], bytes) is raw
        reader = await _join(service)
        await _send(service, reader, {"type": "get_snapshot"})
        frames = _drain(reader)
        if raw:
            assert _errors(frames) == ["SNAPSHOT_ERROR"] and frames[0]["type"] == "error"
        else:
            assert frames[-1]["type"] == "snapshot_complete" and not _errors(frames)


async def _http_lines(service: CoordinatorService) -> list[dict[str, Any]]:
    """The NDJSON lines of an HTTP snapshot whose table read fails after the first chunk."""
    writer = await _join(service)
    await _write(service, writer, "x")
    service.failpoints.configure("snapshot.read", {"mode": "error", "message": "disk gone"})
    api = HttpApi(service)
    service.request_started()  # as the route does: the stream is in-flight work until its last line
    stream = service.snapshot("db")
    chunks = await stream.__aenter__()
    first = await anext(chunks)
    return [orjson.loads(line) async for line in api._snapshot_lines("db", stream, chunks, first)]


async def test_http_snapshot_truncated_ends_a_failed_stream_without_an_error_line(both: Any) -> None:
    correct, buggy = await both("http-snapshot-truncated")
    told = await _http_lines(correct)
    assert told[-1].get("code") == "SNAPSHOT_ERROR" and "error" in told[-1]
    cut = await _http_lines(buggy)
    assert [line.get("type") for line in cut] == ["header", "table-start"]  # then nothing at all
    assert correct.inflight == 0 and buggy.inflight == 0
    assert correct.stores.total_refs == buggy.stores.total_refs == 1  # the writer's session only


async def test_ws_snapshot_generic_error_answers_a_failed_snapshot_with_message_error(both: Any) -> None:
    for service, code in zip(
        await both("ws-snapshot-generic-error"), ("SNAPSHOT_ERROR", "MESSAGE_ERROR"), strict=True
    ):
        writer = await _join(service)
        await _write(service, writer, "x")
        service.failpoints.configure("snapshot.read", {"mode": "error"})
        reader = await _join(service)
        await _send(service, reader, {"type": "get_snapshot"})
        frames = _drain(reader)
        assert [f["type"] for f in frames[:2]] == ["snapshot_chunk", "snapshot_chunk"]  # mid-stream
        assert _errors(frames) == [code] and reader.close_code is None


async def test_resume_snapshot_unhandled_answers_unknown_message(both: Any) -> None:
    for service, resumes in zip(await both("resume-snapshot-unhandled"), (True, False), strict=True):
        writer = await _join(service)
        await _write(service, writer, "x")
        async with service.snapshot("db") as chunks:
            header = await anext(chunks)
        checkpoint = {
            "snapshotId": header["snapshotId"],
            "siteId": header["siteId"],
            "hlc": header["hlc"],
            "lastTableIndex": 0,
            "lastEntryIndex": 0,
            "completedTables": [],
            "entriesProcessed": 0,
            "createdAt": 0,
        }
        reader = await _join(service)
        await _send(service, reader, {"type": "resume_snapshot", "checkpoint": checkpoint})
        frames = _drain(reader)
        if resumes:
            assert frames[0]["chunk"]["snapshotId"] == header["snapshotId"]
            assert frames[-1]["type"] == "snapshot_complete"
        else:
            assert _errors(frames) == ["UNKNOWN_MESSAGE"]


# handler errors ------------------------------------------------------------------------------------
async def test_generic_handler_errors_make_bad_input_look_like_a_server_fault(both: Any) -> None:
    for service, code in zip(
        await both("generic-handler-errors"), ("INVALID_PAYLOAD", "MESSAGE_ERROR"), strict=True
    ):
        session = await _join(service)
        await _send(service, session, {"type": "get_changes", "sinceHLC": "%%%not-base64%%%"})
        await _send(service, session, {"type": "apply_changes", "changes": "not a list"})
        assert _errors(_drain(session)) == [code, code] and session.close_code is None
        refused = service.connect("test")
        await _send(service, refused, _handshake(protocolVersion=2))  # refusals stay what they are
        assert _errors(_drain(refused)) == ["PROTOCOL_VERSION_MISMATCH"]


# broadcast -----------------------------------------------------------------------------------------
async def test_broadcast_error_swallowed_skips_the_rest_silently(both: Any) -> None:
    for service, swallowed in zip(await both("broadcast-error-swallowed"), (False, True), strict=True):
        writer = await _join(service)
        recipients = [await _join(service) for _ in range(3)]
        for r in recipients:
            _drain(r)
        service.failpoints.configure("broadcast.send", {"mode": "error", "times": 1})
        await _write(service, writer, "x")
        got = [[f for f in _drain(r) if f["type"] == "push_changes"] for r in recipients]
        errors = service.metrics.broadcast_errors.total()
        if swallowed:
            assert got == [[], [], []] and errors == 0
            assert all(r.close_code is None for r in recipients)  # nobody told, nobody dropped
        else:
            assert recipients[0].close_code == 1011 and [len(g) for g in got[1:]] == [1, 1]
            assert errors == 1


async def test_broadcast_seq_gap_repeats_a_number_under_concurrent_applies(both: Any) -> None:
    for service, repeated in zip(await both("broadcast-seq-gap"), (False, True), strict=True):
        a, b, watcher = await _join(service), await _join(service), await _join(service)
        await asyncio.gather(_write(service, a, "from a", pk=1), _write(service, b, "from b", pk=2))
        seqs = [f["seq"] for f in _drain(watcher) if f["type"] == "push_changes"]
        assert seqs == ([1, 1] if repeated else [1, 2])


# stores --------------------------------------------------------------------------------------------
async def test_eviction_race_closes_a_store_taken_while_it_was_being_evicted(tmp_path: Path) -> None:
    for bug, closed_under_use in ((None, False), ("eviction-race", True)):
        service, clock = await _service(tmp_path / str(bug), bug, max_open_stores=1)
        service.failpoints.configure("storage.write", {"mode": "delay", "delayMs": 1000})  # slow disk
        stores = service.stores
        await stores.acquire("a")
        stores.release("a")  # a: open, idle, the eviction's victim
        opening_b = asyncio.ensure_future(stores.acquire("b"))
        await asyncio.sleep(0)
        store_a = await stores.acquire("a")  # a request takes a (while it is being evicted)
        await clock.advance(2.0)
        await opening_b
        assert store_a.is_open is not closed_under_use
        stores.release("a")
        stores.release("b")
        await service.shutdown()


async def test_handshake_close_leak_keeps_the_reference_of_a_handshake_left_midway(
    tmp_path: Path,
) -> None:
    for bug, refs in ((None, 0), ("handshake-close-leak", 1)):
        service, clock = await _service(tmp_path / str(bug), bug)
        service.failpoints.configure("store.open", {"mode": "delay", "delayMs": 1000})
        session = service.connect("test")
        handshake = asyncio.ensure_future(_send(service, session, _handshake()))
        await clock.advance(0.5)
        await service.disconnect(session)  # the socket closes while the store opens
        await clock.advance(1.0)
        await handshake
        assert service.stores.total_refs == refs and len(service.sessions) == 0
        await service.shutdown()


async def test_handshake_error_no_unregister_keeps_a_refused_session(both: Any) -> None:
    for service, left in zip(await both("handshake-error-no-unregister"), (0, 1), strict=True):
        session = service.connect("test")
        await _send(service, session, _handshake(protocolVersion=2))
        assert session.close_code == 4003
        await service.disconnect(session)  # the transport's close after the fatal error
        assert len(service.sessions) == left and service.status()["connectedClients"] == left


async def test_cleanup_races_shutdown_sweeps_closed_stores(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for bug, failed in ((None, False), ("cleanup-races-shutdown", True)):
        caplog.clear()
        service, clock = await _service(tmp_path / str(bug), bug, idle_store_timeout_ms=400)
        session = await _join(service)
        await _write(service, session, "x")  # a store written since the cleanup's last pass
        assert service.stores.open_count == 1
        with caplog.at_level(logging.ERROR, logger="coordinator"):
            shutdown = asyncio.ensure_future(service.shutdown())
            await clock.advance(1.0)
            await shutdown
        swept = [r for r in caplog.records if r.getMessage() == "store_cleanup_failed"]
        assert bool(swept) is failed
        assert service.stores.open_count == 0 and service.stores.background_tasks == 0
        await service.disconnect(session)


# authorization -------------------------------------------------------------------------------------
async def test_missing_authorization_lets_a_token_into_every_database(tmp_path: Path) -> None:
    for bug, let_in in ((None, False), ("missing-authorization", True)):
        auth = Authenticator(
            ["t:a"],
            None,
            CoordinatorService(_config(tmp_path / str(bug), [bug] if bug else []), VirtualClock()).bugs,
        )
        identity = auth.authenticate("t")
        assert identity is not None and identity.may("a", write=True)
        assert identity.may("b", write=True) is let_in
        assert auth.authenticate("unknown") is None  # the token itself is still checked
        service, _ = await _service(tmp_path / f"svc-{bug}", bug, tokens=["t:a"])
        intruder = service.connect("test")
        await _send(service, intruder, _handshake("b", token="t"))
        assert intruder.authenticated is let_in
        await service.shutdown()


# over the wire ---------------------------------------------------------------------------------------
async def test_a_peer_leaving_mid_handshake_is_noticed_over_the_wire(start_coordinator: Any) -> None:
    """The transport notices a close while the handshake still opens the store, so the
    handshake's own cleanup is what decides whether the reference comes back."""
    admin = {"Authorization": f"Bearer {ADMIN}"}
    for bug, refs in ((None, 0), ("handshake-close-leak", 1)):
        proc = await start_coordinator("--enable-failpoints", *(["--bug", bug] if bug else []))
        async with proc.http() as http:
            slow = await http.put(
                "/admin/failpoints/store.open", json={"mode": "delay", "delayMs": 500}, headers=admin
            )
            assert slow.status_code == 200
            conn = await websockets.connect(proc.ws_url)
            await conn.send(orjson.dumps(_handshake()).decode())
            await conn.close()
            deadline = time.monotonic() + 10.0
            while True:
                data = (await http.get("/debug/resources", headers=admin)).json()["data"]
                if data["sessions"] == 0 and data["inflight"] == 0:
                    break
                assert time.monotonic() < deadline, data
                await asyncio.sleep(0.05)  # polling the server's state, with a deadline
            assert data["storeRefs"] == refs
        assert not any(e.get("event") == "session_start" for e in proc.log_events())  # never joined
        await proc.terminate()
