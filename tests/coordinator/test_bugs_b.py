"""The catalogue's bugs of seeds 003/004 (presence, leaks, load, slow clients, the object store,
shutdown): each swap, switched on, has the effect BUGS.md describes, and the default does not.

In-process, on a virtual clock where time matters; the object store is a fake S3 client (the
end-to-end proof, against moto behind the S3 fault layer, is `harness verify`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from botocore.exceptions import EndpointConnectionError

from coordinator.clock import VirtualClock
from coordinator.config import CoordinatorConfig
from coordinator.service import object_store
from coordinator.service.coordinator import CoordinatorService
from coordinator.service.object_store import ObjectStoreBridge
from coordinator.service.session import Session
from coordinator.storage.circuit_breaker import BackendState
from coordinator.storage.persistence import ObjectStorePersistence
from coordinator.storage.s3_store import S3Config
from tests.coordinator.conftest import S3_OPTIONS, swaps_applied
from tests.coordinator.wire import new_site_id, write

MINE = (
    "presence-wrong-timestamps",
    "presence-stale-leave",
    "state-leak",
    "thundering-herd",
    "backend-crash-on-open",
    "silent-slow-client-drop",
    "unbounded-send-queue",
    "heartbeat-stalls-on-backend",
    "backend-failure-silent",
    "no-circuit-breaker",
    "shutdown-without-notice",
    "shutdown-loses-writes",
    "outage-loses-writes",
)


pytestmark = pytest.mark.usefixtures("offline_aws")


class FakeS3:
    """Stands in for S3Client: counts calls, and fails them like an unreachable endpoint while
    `down`."""

    def __init__(self) -> None:
        self.down = False
        self.calls = 0
        self.puts: list[str] = []
        self.http_attempts = 0

    def _call(self) -> None:
        self.calls += 1
        if self.down:
            raise EndpointConnectionError(endpoint_url="http://127.0.0.1:9")

    def validate(self) -> None:
        self._call()

    def put_object(self, key: str, body: bytes, content_type: str) -> None:
        self._call()
        self.puts.append(key)

    def get_object(self, key: str) -> bytes:
        self._call()
        raise KeyError(key)

    def list_keys(self, prefix: str, start_after: str | None = None) -> list[str]:
        self._call()
        return []

    def delete_keys(self, keys: list[str]) -> None:
        self._call()

    def close(self) -> None:
        return None


def _frames(session: Session) -> list[dict[str, Any]]:
    frames = [orjson.loads(f) for f in session.queue]
    session.queue.clear()
    session.queued_bytes = 0
    return frames


def _bugs(buggy: bool, bug_id: str) -> list[str]:
    return [bug_id] if buggy else []


async def _service(
    tmp_path: Path, bugs: list[str], **options: Any
) -> tuple[CoordinatorService, VirtualClock]:
    clock = VirtualClock()
    options.setdefault("heartbeat_interval_ms", 1000)
    config = CoordinatorConfig(data_dir=str(tmp_path), bugs=bugs, **options)
    service = CoordinatorService(config, clock)
    await service.start()
    return service, clock


async def _join(service: CoordinatorService, database_id: str = "db") -> Session:
    session = service.connect("test")
    hello = {"type": "handshake", "databaseId": database_id, "siteId": new_site_id(), "protocolVersion": 1}
    await service.handle_text(session, orjson.dumps(hello).decode())
    assert session.authenticated
    return session


def _apply_text(value: Any, pk: int = 1) -> str:
    return orjson.dumps(
        {"type": "apply_changes", "changes": [write(new_site_id(), "t", pk, "x", value)]}
    ).decode()


async def _until(
    condition: Callable[[], bool], timeout_s: float = 10.0, clock: VirtualClock | None = None
) -> None:
    """Poll `condition` with a deadline (advancing the virtual clock a little each turn if given)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached before the deadline")
        if clock is not None:
            await clock.advance(0.05)
        await asyncio.sleep(0.005)


async def _bridge(
    tmp_path: Path, bugs: list[str], fake: FakeS3
) -> tuple[CoordinatorService, ObjectStoreBridge, VirtualClock]:
    service, clock = await _service(tmp_path, bugs, **S3_OPTIONS)
    bridge = ObjectStoreBridge(service, service.config, clock)
    bridge.persistence.calls.client = fake  # type: ignore[assignment]
    await bridge.start()
    return service, bridge, clock


# every id has a swap site --------------------------------------------------------------------------


async def test_each_bug_of_seeds_003_004_has_a_swap_site(tmp_path: Path) -> None:
    for bug_id in MINE:
        assert await swaps_applied(tmp_path / bug_id, [bug_id]) == {bug_id}, bug_id
    assert await swaps_applied(tmp_path / "none", []) == set()


# presence ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("buggy", [False, True])
async def test_presence_wrong_timestamps(tmp_path: Path, buggy: bool) -> None:
    service, clock = await _service(tmp_path, _bugs(buggy, "presence-wrong-timestamps"))
    a = await _join(service)
    joined_a = clock.now_ms()
    await clock.advance(3)
    await service.handle_text(a, '{"type": "ping"}')
    seen_a = clock.now_ms()
    await clock.advance(2)
    b = await _join(service)
    entry = next(
        s
        for m in _frames(b)
        if m["type"] == "presence"
        for s in m["sessions"]
        if s["connectionId"] == a.connection_id
    )
    if buggy:
        assert (entry["joinedAt"], entry["lastSeen"]) == (seen_a, clock.now_ms())
    else:
        assert (entry["joinedAt"], entry["lastSeen"]) == (joined_a, seen_a)
    await service.shutdown()


@pytest.mark.parametrize("buggy", [False, True])
async def test_presence_stale_leave(tmp_path: Path, buggy: bool) -> None:
    service, clock = await _service(tmp_path, _bugs(buggy, "presence-stale-leave"))
    a, b = await _join(service), await _join(service)
    await service.disconnect(b)
    got: list[dict[str, Any]] = []

    def leave_announced() -> bool:
        got.extend(m for m in _frames(a) if m["type"] == "presence_delta")
        return len(got) >= 2  # b's join, then (an interval later) its leave

    await _until(leave_announced, clock=clock)  # coalesced: the second delta waits on the timer
    joined = [e["connectionId"] for m in got for e in m["joined"]]
    left = [c for m in got for c in m["left"]]
    if buggy:
        assert joined == [b.connection_id, b.connection_id] and left == []
    else:
        assert joined == [b.connection_id] and left == [b.connection_id]
    await service.shutdown()


# leaks and load -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("buggy", [False, True])
async def test_state_leak(tmp_path: Path, buggy: bool) -> None:
    service, _ = await _service(tmp_path, _bugs(buggy, "state-leak"))
    for database_id in ("a", "b", "c"):
        session = await _join(service, database_id)
        await service.disconnect(session)
    assert service.resources()["databaseStates"] == (3 if buggy else 0)
    await service.shutdown()


@pytest.mark.parametrize("buggy", [False, True])
async def test_thundering_herd(tmp_path: Path, buggy: bool) -> None:
    service, _ = await _service(tmp_path, _bugs(buggy, "thundering-herd"))
    writer, watcher = await _join(service), await _join(service)
    for i in range(5):
        await service.handle_text(writer, _apply_text(f"v{i}", pk=i))
    pushes = [m for m in _frames(watcher) if m["type"] == "push_changes"]
    assert [len(p["changeSets"][0]["changes"]) for p in pushes] == [1] * 5  # same pushes either way
    assert service.metrics.storage_reads.total() == (5 if buggy else 0)
    await service.shutdown()


# slow clients -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("buggy", [False, True])
async def test_silent_slow_client_drop(tmp_path: Path, buggy: bool) -> None:
    service, _ = await _service(tmp_path, _bugs(buggy, "silent-slow-client-drop"), send_queue_messages=3)
    writer, slow = await _join(service), await _join(service)
    for i in range(6):  # nobody drains `slow`: its queue overflows
        _frames(writer)
        await service.handle_text(writer, _apply_text(i, pk=i))
    frames = [orjson.loads(f) for f in slow.queue]
    if buggy:
        assert slow.close_code == 1000 and not any(f["type"] == "notice" for f in frames)
        assert service.metrics.slow_client_drops.total() == 0
    else:
        assert slow.close_code == 1013 and frames[-1]["code"] == "SLOW_CLIENT"
    await service.shutdown()


@pytest.mark.parametrize("buggy", [False, True])
async def test_unbounded_send_queue(tmp_path: Path, buggy: bool) -> None:
    service, _ = await _service(tmp_path, _bugs(buggy, "unbounded-send-queue"), send_queue_messages=5)
    stalled = await _join(service)  # joined first: first in every broadcast
    fast, writer = await _join(service), await _join(service)
    _frames(stalled)  # it read everything so far, then stops reading
    _frames(fast)
    received: list[dict[str, Any]] = []

    async def fast_reader() -> None:  # plays the transport's writer of `fast`
        while (frames := await fast.next_frames()) is not None:
            received.extend(orjson.loads(f) for f in frames)

    reading = asyncio.ensure_future(fast_reader())
    apply = asyncio.ensure_future(service.handle_text(writer, _apply_text("x")))
    for _ in range(20):
        await asyncio.sleep(0)
    if buggy:
        assert not apply.done()  # held up by the client that does not read...
        assert not any(m["type"] == "push_changes" for m in received)  # ...and so is everyone after it
        await stalled.next_frames()  # the stalled client finally reads
    await asyncio.wait_for(apply, 5)
    await _until(lambda: any(m["type"] == "push_changes" for m in received))
    for i in range(10):
        stalled.offer(f'{{"n": {i}}}')
    if buggy:  # no bound: nothing is dropped, the queue just grows
        assert len(stalled.queue) == 10 and stalled.close_code is None
    else:
        assert len(stalled.queue) <= 5
    await service.shutdown()
    reading.cancel()
    await asyncio.gather(reading, return_exceptions=True)


# the object store ------------------------------------------------------------------------------------------


class _HangingPersistence:
    """A persistence whose backend answers only when told to."""

    def __init__(self) -> None:
        self.answer = asyncio.Event()
        self.asked = 0

    def record_batch(
        self,
        database_id: str,
        client_site_id: str,
        change_sets: list[dict[str, Any]],
        applied: int,
        skipped: int,
        conflicts: int,
    ) -> None:
        return None

    async def shutdown(self, deadline_s: float) -> None:
        self.answer.set()

    def describe(self) -> dict[str, Any]:
        return {}

    async def check_backend(self) -> str:
        self.asked += 1
        await self.answer.wait()
        return "ok"


@pytest.mark.parametrize("buggy", [False, True])
async def test_heartbeat_stalls_on_backend(tmp_path: Path, buggy: bool) -> None:
    service, clock = await _service(tmp_path, _bugs(buggy, "heartbeat-stalls-on-backend"))
    backend = _HangingPersistence()
    service.persistence = backend
    a = await _join(service)
    _frames(a)
    for _ in range(5):
        await clock.advance(1.0)
    beats = [m for m in _frames(a) if m["type"] == "heartbeat"]
    if buggy:
        assert beats == [] and backend.asked == 1
        backend.answer.set()
        await _until(lambda: any(json_type(f) == "heartbeat" for f in a.queue), clock=clock)
    else:
        assert len(beats) == 5 and backend.asked == 0
    await service.shutdown()


def json_type(frame: str) -> str:
    return str(orjson.loads(frame)["type"])


@pytest.mark.parametrize("buggy", [False, True])
async def test_backend_failure_silent(tmp_path: Path, buggy: bool) -> None:
    fake = FakeS3()
    service, bridge, clock = await _bridge(tmp_path, _bugs(buggy, "backend-failure-silent"), fake)
    a = await _join(service)
    _frames(a)
    bridge._on_backend_state(BackendState.CLOSED, BackendState.OPEN, "3 consecutive failures")
    await clock.advance(1.0)
    unavailable = [m for m in _frames(a) if m["type"] == "notice"]
    bridge._on_backend_state(BackendState.HALF_OPEN, BackendState.CLOSED, "probe succeeded")
    recovered = [m for m in _frames(a) if m["type"] == "notice"]
    if buggy:
        assert unavailable == [] and recovered == []
    else:
        assert [m["code"] for m in unavailable + recovered] == ["BACKEND_UNAVAILABLE", "BACKEND_RECOVERED"]
    await service.shutdown()


@pytest.mark.parametrize("buggy", [False, True])
async def test_backend_crash_on_open(tmp_path: Path, buggy: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    exits: list[int] = []

    class Died(BaseException):
        pass

    def fake_exit(code: int) -> None:
        exits.append(code)
        raise Died

    monkeypatch.setattr(object_store.os, "_exit", fake_exit)
    fake = FakeS3()
    service, _, _ = await _bridge(tmp_path, _bugs(buggy, "backend-crash-on-open"), fake)
    fake.down = True  # the store is down while "db" (not on local disk) opens: restore fails
    session = service.connect("test")
    hello = {"type": "handshake", "databaseId": "db", "siteId": new_site_id(), "protocolVersion": 1}
    if buggy:
        with pytest.raises(Died):
            await service.handle_text(session, orjson.dumps(hello).decode())
        assert exits == [1]
    else:
        await service.handle_text(session, orjson.dumps(hello).decode())
        assert exits == [] and not session.authenticated
        assert [m["code"] for m in _frames(session) if m["type"] == "error"] == ["STORE_UNAVAILABLE"]
        fake.down = False
        await service.handle_text(session, orjson.dumps(hello).decode())  # the next attempt works
        assert session.authenticated
    await service.shutdown()


def _persistence(
    tmp_path: Path, clock: VirtualClock, fake: FakeS3, bugs: list[str]
) -> ObjectStorePersistence:
    from coordinator.ops.bugs import Bugs

    return ObjectStorePersistence(
        S3Config(bucket="bucket", breaker_failure_threshold=3, breaker_open_s=5.0),
        tmp_path / "outbox.sqlite",
        clock,
        client=fake,  # type: ignore[arg-type]
        bugs=Bugs(bugs),
    )


@pytest.mark.parametrize("buggy", [False, True])
async def test_no_circuit_breaker(tmp_path: Path, buggy: bool) -> None:
    clock, fake = VirtualClock(), FakeS3()
    persistence = _persistence(tmp_path, clock, fake, _bugs(buggy, "no-circuit-breaker"))
    await persistence.start()
    fake.down = True
    persistence.record_batch("db", new_site_id(), [{"n": 0}], 1, 0, 0)
    await _until(lambda: persistence.state is BackendState.OPEN, clock=clock)  # failed uploads open it
    await _until(lambda: not persistence._direct)
    before = fake.calls
    for i in range(20):  # the outage goes on, and so do the applies (within the open period)
        persistence.record_batch("db", new_site_id(), [{"n": i}], 1, 0, 0)
    for _ in range(20):
        await asyncio.sleep(0)
    await _until(lambda: not persistence._direct)
    if buggy:
        assert fake.calls - before >= 20  # every apply called the store again
    else:
        assert fake.calls == before  # while the breaker is open, no call at all
    await persistence.close()


@pytest.mark.parametrize("buggy", [False, True])
async def test_outage_loses_writes(tmp_path: Path, buggy: bool) -> None:
    clock, fake = VirtualClock(), FakeS3()
    persistence = _persistence(tmp_path, clock, fake, _bugs(buggy, "outage-loses-writes"))
    await persistence.start()
    fake.down = True
    keys = [persistence.record_batch("db", new_site_id(), [{"n": i}], 1, 0, 0) for i in range(3)]
    await _until(lambda: persistence.state is BackendState.OPEN, clock=clock)
    fake.down = False
    await _until(
        lambda: persistence.state is BackendState.CLOSED and persistence.outbox_depth() == 0, clock=clock
    )
    if buggy:
        assert not set(keys) <= set(fake.puts)  # the batches that failed once are gone
    else:
        assert set(keys) <= set(fake.puts)
    await persistence.close()


# shutdown ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("buggy", [False, True])
async def test_shutdown_without_notice(tmp_path: Path, buggy: bool) -> None:
    service, _ = await _service(tmp_path, _bugs(buggy, "shutdown-without-notice"))
    a = await _join(service)
    _frames(a)
    await service.shutdown()
    notices = [m["code"] for m in _frames(a) if m["type"] == "notice"]
    assert a.close_code == 1001
    assert notices == ([] if buggy else ["SERVER_SHUTDOWN"])


@pytest.mark.parametrize("buggy", [False, True])
async def test_shutdown_loses_writes(tmp_path: Path, buggy: bool) -> None:
    fake = FakeS3()
    service, bridge, _ = await _bridge(tmp_path, _bugs(buggy, "shutdown-loses-writes"), fake)
    writer = await _join(service)
    fake.down = True  # the first upload fails and waits for its backoff (on the virtual clock)
    for i in range(5):
        await service.handle_text(writer, _apply_text(i, pk=i))
    persistence = bridge.persistence
    await _until(
        lambda: persistence.stats()["s3_requests"].get("put_object", {}).get("endpoint_unreachable", 0) >= 1
    )
    await _until(lambda: persistence.stats()["uploads_in_flight"] == 0)
    assert persistence.outbox_depth() == 5
    fake.down = False  # the store is fine again when SIGTERM comes
    await asyncio.wait_for(service.shutdown(), 10)
    batches = {k for k in fake.puts if "/batches/" in k}
    assert len(batches) == (0 if buggy else 5)  # the buggy one exits with the outbox unflushed
