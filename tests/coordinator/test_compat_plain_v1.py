"""`coordinator serve --compat plain-v1`: a correct protocol-v1 server without any [ext] feature
of PROTOCOL.md (no seq, heartbeat, presence, notices, /health, /ready, /debug/resources,
NOT_AUTHORIZED, INVALID_PAYLOAD), tokens valid on every database, tombstone policy delete-wins
and a 300 s idle-store timeout unless given. Over WebSocket and HTTP against a real process, and
in-process (on a virtual clock) for what a process cannot be made to show on demand; each
in-process test runs the default mode too, as the control that has the feature."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from coordinator.clock import VirtualClock
from coordinator.config import ConfigError, CoordinatorConfig, build_config
from coordinator.protocol import errors as E
from coordinator.service.coordinator import CoordinatorService
from coordinator.service.features import Features
from coordinator.service.session import Session
from tests.coordinator.conftest import ADMIN
from tests.coordinator.wire import new_site_id, write

HEARTBEAT_MS = 200


# configuration -------------------------------------------------------------------------------------


def test_plain_v1_defaults_apply_only_to_what_was_not_given(tmp_path: Path) -> None:
    plain = build_config({"compat": "plain-v1"}, environ={})
    assert (plain.tombstone_policy, plain.idle_store_timeout_ms) == ("delete-wins", 300_000)
    default = build_config({}, environ={})
    assert (default.compat, default.tombstone_policy, default.idle_store_timeout_ms) == (
        "none",
        "revive",
        60000,
    )
    flags = build_config(
        {"compat": "plain-v1", "tombstone_policy": "revive", "idle_store_timeout_ms": 1000}, environ={}
    )
    assert (flags.tombstone_policy, flags.idle_store_timeout_ms) == ("revive", 1000)
    env = build_config(
        {}, environ={"COORDINATOR_COMPAT": "plain-v1", "COORDINATOR_TOMBSTONE_POLICY": "revive"}
    )
    assert (env.tombstone_policy, env.idle_store_timeout_ms) == ("revive", 300_000)
    config_file = tmp_path / "c.yaml"
    config_file.write_text("compat: plain-v1\nidleStoreTimeoutMs: 2000\n")
    from_file = build_config({}, environ={}, config_file=config_file)
    assert (from_file.tombstone_policy, from_file.idle_store_timeout_ms) == ("delete-wins", 2000)
    with pytest.raises(ConfigError, match="tombstone_policy"):
        build_config({}, environ={"COORDINATOR_TOMBSTONE_POLICY": "undead"})
    with pytest.raises(ConfigError, match="compat"):
        build_config({}, environ={"COORDINATOR_COMPAT": "v2"})


def test_features_follow_the_compat_mode() -> None:
    assert Features.from_config(CoordinatorConfig()) == Features()
    plain = Features.from_config(CoordinatorConfig(compat="plain-v1", tombstone_policy="delete-wins"))
    assert plain == Features(False, False, False, False, False, False, False, False, "delete-wins")


# over the wire: a real process ----------------------------------------------------------------------


async def _quiet_for(ws: Any, seconds: float) -> list[dict[str, Any]]:
    """Everything that arrives within `seconds` (a bounded wait for frames that must not come)."""
    got: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while (left := deadline - loop.time()) > 0:
        try:
            got.append(await ws.next(left))
        except TimeoutError:
            break
    return got


@pytest.mark.parametrize("compat", ["none", "plain-v1"])
async def test_ws_without_extensions(start_coordinator: Any, connect: Any, compat: str) -> None:
    coord = await start_coordinator(
        "--compat", compat, "--heartbeat-interval-ms", str(HEARTBEAT_MS), "--token", "tok:db_a"
    )
    plain = compat == "plain-v1"
    a, b = await connect(coord), await connect(coord)
    database = "db_b" if plain else "db_a"  # plain v1: a known token is valid on every database
    await a.handshake(database, token="tok")
    await b.handshake(database, token="tok")
    await a.send({"type": "apply_changes", "changes": [write(a.site_id, "t", 1, "x", 1)], "requestId": "r1"})
    result = await a.expect("apply_result")
    assert result["applied"] == 1 and result["requestId"] == "r1"
    push = await b.expect("push_changes")
    assert ("seq" in result, "seq" in push) == (not plain, not plain)
    later = await _quiet_for(a, 2.5 * HEARTBEAT_MS / 1000)  # more than two heartbeat intervals
    kinds = {m["type"] for m in a.seen + later}
    assert ("heartbeat" in kinds, "presence" in kinds) == (not plain, not plain)
    assert ("presence_delta" in {m["type"] for m in b.seen}) is False  # b joined last: nothing to learn
    assert ("presence_delta" in kinds) == (not plain)  # a learns of b's join

    # a client's bad input: the request's own base code (plain) or INVALID_PAYLOAD, never fatal
    bad = {"type": "apply_changes", "changes": [dict(write(a.site_id, "t", 2, "x", 1), hlc="not-an-hlc")]}
    for message, base in (
        (bad, E.APPLY_CHANGES_ERROR),
        ({"type": "get_changes", "sinceHLC": "%%%"}, E.GET_CHANGES_ERROR),
        ({"type": "resume_snapshot", "checkpoint": {}}, E.SNAPSHOT_ERROR),
        ([1, 2], E.MESSAGE_ERROR),
    ):
        await a.send(orjson.dumps(message).decode())
        error = await a.expect("error")
        assert error["fatal"] is False
        assert error["code"] == (base if plain else E.INVALID_PAYLOAD), message
    await a.send({"type": "ping"})
    await a.expect("pong")  # the session survived all of it
    if not plain:
        c = await connect(coord)
        await c.send(
            {
                "type": "handshake",
                "databaseId": "db_b",
                "siteId": new_site_id(),
                "protocolVersion": 1,
                "token": "tok",
            }
        )
        assert (await c.closed())[0] == E.CLOSE_AUTH_FAILED  # grants hold by default


@pytest.mark.parametrize("compat", ["none", "plain-v1"])
async def test_http_without_extensions(start_coordinator: Any, connect: Any, compat: str) -> None:
    coord = await start_coordinator(
        "--compat", compat, "--token", "tok:db_a", "--enable-failpoints", "--max-message-bytes", "4000"
    )
    plain = compat == "plain-v1"
    auth = {"Authorization": "tok"}
    async with coord.http() as http:
        assert (await http.get("/status")).json()["ok"] is True
        assert (await http.get("/metrics")).status_code == 200
        for route in ("/health", "/ready", "/debug/resources"):
            status = (await http.get(route, headers={"Authorization": ADMIN})).status_code
            assert status == (404 if plain else 200), route
        site = new_site_id()
        r = await http.post("/db_b/changes", json={"changes": [write(site, "t", 1, "x", 1)]}, headers=auth)
        if plain:
            assert r.status_code == 200 and r.json()["data"]["applied"] == 1 and "seq" not in r.json()["data"]
        else:
            assert (r.status_code, r.json()["error"]["code"]) == (403, E.NOT_AUTHORIZED)
        db = "db_b" if plain else "db_a"
        listener = await connect(coord)  # a session on the database: an apply then takes a seq
        await listener.handshake(db, token="tok")
        r = await http.post(f"/{db}/changes", json={"changes": [write(site, "t", 2, "x", 1)]}, headers=auth)
        assert ("seq" in r.json()["data"]) == (not plain)
        big = {"changes": [write(site, "t", 3, "x", "y" * 5000)]}
        r = await http.post(f"/{db}/changes", json=big, headers=auth)
        assert (r.status_code, r.json()["error"]["code"]) == (
            (400, E.INVALID_BODY) if plain else (413, E.MESSAGE_TOO_LARGE)
        )
        r = await http.get(f"/{db}/changes", params={"sinceHLC": "%%%"}, headers=auth)
        assert (r.status_code, r.json()["error"]["code"]) == (400, E.INVALID_BODY)
        r = await http.put(
            "/admin/failpoints/snapshot.read", json={"mode": "error"}, headers={"Authorization": ADMIN}
        )
        assert r.status_code == 200
        lines = [
            json.loads(line) for line in (await http.get(f"/{db}/snapshot", headers=auth)).text.splitlines()
        ]
        assert "error" in lines[-1] and ("code" in lines[-1]) == (not plain)


async def test_plain_v1_shutdown_closes_1001_without_notice(start_coordinator: Any, connect: Any) -> None:
    coord = await start_coordinator("--compat", "plain-v1", "--drain-timeout-ms", "5000")
    ws = await connect(coord)
    await ws.handshake()
    exit_task = asyncio.ensure_future(coord.terminate())
    close, got = await ws.closed()
    assert close == E.CLOSE_GOING_AWAY and [m for m in got if m["type"] == "notice"] == []
    assert await exit_task == 0


# in-process: slow clients, limits, backend notices ----------------------------------------------


async def _service(tmp_path: Path, compat: str, **options: Any) -> CoordinatorService:
    config = build_config({"data_dir": str(tmp_path / compat), "compat": compat, **options}, environ={})
    service = CoordinatorService(config, VirtualClock())
    await service.start()
    return service


async def _join(service: CoordinatorService) -> Session:
    session = service.connect("test")
    hello = {"type": "handshake", "databaseId": "db", "siteId": new_site_id(), "protocolVersion": 1}
    await service.handle_text(session, orjson.dumps(hello).decode())
    assert session.authenticated
    _drain(session)
    return session


def _frames(session: Session) -> list[dict[str, Any]]:
    return [orjson.loads(f) for f in session.queue]


def _drain(session: Session) -> list[dict[str, Any]]:
    frames = _frames(session)
    session.queue.clear()
    session.queued_bytes = 0
    return frames


@pytest.mark.parametrize("compat", ["none", "plain-v1"])
async def test_slow_client_limits_and_backend_notices(tmp_path: Path, compat: str) -> None:
    plain = compat == "plain-v1"
    service = await _service(
        tmp_path, compat, send_queue_messages=3, max_message_bytes=2000, rate_limit_burst=5
    )
    assert (service._heartbeat_task is None) == plain
    writer, slow = await _join(service), await _join(service)
    for i in range(5):  # the slow session reads nothing: its queue overflows
        assert writer.site_id_text is not None
        await service.handle_text(
            writer,
            orjson.dumps(
                {"type": "apply_changes", "changes": [write(writer.site_id_text, "t", i, "x", i)]}
            ).decode(),
        )
        _drain(writer)  # the writer reads its answers
    assert slow.close_code == E.CLOSE_TRY_AGAIN_LATER
    assert [f["code"] for f in _frames(slow) if f["type"] == "notice"] == ([] if plain else ["SLOW_CLIENT"])

    big = await _join(service)
    await service.handle_text(big, orjson.dumps({"type": "ping", "pad": "x" * 3000}).decode())
    assert big.close_code == E.CLOSE_TOO_LARGE
    assert [f.get("code") for f in _frames(big)] == ([] if plain else [E.MESSAGE_TOO_LARGE])

    busy = await _join(service)
    errors = []
    for _ in range(5):  # with the handshake, one over the burst of 5
        await service.handle_text(busy, orjson.dumps({"type": "get_changes"}).decode())
        errors += [f["code"] for f in _drain(busy) if f["type"] == "error"]
    assert errors == ([] if plain else [E.RATE_LIMITED])  # a plain v1 server has no rate limit

    quiet = await _join(service)
    service.notify_all("BACKEND_UNAVAILABLE", "error", "storage", "object store unavailable")
    assert len(quiet.queue) == (0 if plain else 1)
    await service.shutdown()
