"""Conformance of the WebSocket side with PROTOCOL.md section 3, against a real process."""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Any

import websockets

from tests.coordinator.wire import change_set, column, delete, hlc, new_site_id, write


async def test_handshake_ack_fields(connect: Any) -> None:
    ws = await connect()
    ack = await ws.handshake("org:db_1")
    assert ack["databaseId"] == "org:db_1"
    assert ack["protocolVersion"] == 1
    assert len(ack["serverSiteId"]) == 22 and ack["connectionId"]


async def test_apply_get_changes_and_push(connect: Any) -> None:
    a, b = await connect(), await connect()
    await a.handshake()
    await b.handshake()
    cs = write(a.site_id, "t", 1, "x", {"__bin": "AAEC"})
    await a.send({"type": "apply_changes", "changes": [cs], "requestId": "r1"})
    result = await a.expect("apply_result")
    assert result["requestId"] == "r1"
    assert (result["applied"], result["skipped"] + result["conflicts"], result["transactions"]) == (1, 0, 1)
    push = await b.expect("push_changes")
    assert push["seq"] == result["seq"] == 1
    assert push["changeSets"][0]["changes"][0]["value"] == {"__bin": "AAEC"}
    # the same change set again changes nothing
    await a.send({"type": "apply_changes", "changes": [cs]})
    again = await a.expect("apply_result")
    assert again["applied"] == 0 and again["skipped"] + again["conflicts"] == 1
    # get_changes excludes the requester's own site
    await a.send({"type": "get_changes"})
    assert (await a.expect("changes"))["changeSets"] == []
    await b.send({"type": "get_changes"})
    sets = (await b.expect("changes"))["changeSets"]
    assert [c["transactionId"] for c in sets] == [cs["transactionId"]]


async def test_get_changes_since_and_batches_cut_at_transactions(
    start_coordinator: Any, connect: Any
) -> None:
    coord = await start_coordinator("--batch-size", "3")
    w, r = await connect(coord), await connect(coord)
    await w.handshake()
    await r.handshake()
    sets = []
    for i in range(4):  # four transactions of two changes each
        wall = 2000 + i
        sets.append(
            change_set(
                w.site_id,
                [
                    column("t", [i], "a", i, hlc(wall, w.site_id)),
                    column("t", [i], "b", i, hlc(wall, w.site_id)),
                ],
                wall,
            )
        )
    await w.send({"type": "apply_changes", "changes": sets})
    assert (await w.expect("apply_result"))["applied"] == 8
    received: list[str] = []
    since = None
    for _ in range(10):
        await r.send({"type": "get_changes", **({"sinceHLC": since} if since else {})})
        batch = (await r.expect("changes"))["changeSets"]
        if not batch:
            break
        assert sum(len(cs["changes"]) for cs in batch) <= 4  # batchSize 3, whole transactions of 2
        received += [cs["transactionId"] for cs in batch]
        since = max((c["hlc"] for cs in batch for c in cs["changes"]), key=lambda h: base64.b64decode(h))
    assert received == [cs["transactionId"] for cs in sets]


async def test_last_writer_wins_and_tombstones(connect: Any) -> None:
    a, b = await connect(), await connect()
    await a.handshake()
    await b.handshake()
    old, new = hlc(1000, a.site_id), hlc(5000, b.site_id)
    await b.send(
        {"type": "apply_changes", "changes": [change_set(b.site_id, [column("t", [1], "x", "new", new)])]}
    )
    assert (await b.expect("apply_result"))["applied"] == 1
    await a.send(
        {"type": "apply_changes", "changes": [change_set(a.site_id, [column("t", [1], "x", "old", old)])]}
    )
    lost = await a.expect("apply_result")
    assert lost["applied"] == 0 and lost["skipped"] + lost["conflicts"] == 1
    # a delete newer than the cell hides it; an older write cannot revive it; a newer one does
    await a.send(
        {
            "type": "apply_changes",
            "changes": [change_set(a.site_id, [delete("t", [1], hlc(6000, a.site_id))])],
        }
    )
    assert (await a.expect("apply_result"))["applied"] == 1
    await a.send(
        {
            "type": "apply_changes",
            "changes": [change_set(a.site_id, [column("t", [1], "y", 1, hlc(5500, a.site_id))])],
        }
    )
    assert (await a.expect("apply_result"))["applied"] == 0
    await a.send({"type": "get_snapshot"})
    chunks = await _snapshot(a)
    entries = [e for c in chunks if c["type"] == "column-versions" for e in c["entries"]]
    tombs = [e for c in chunks if c["type"] == "tombstone" for e in c["entries"]]
    assert entries == [] and len(tombs) == 1 and tombs[0]["pk"] == [1]
    await a.send(
        {
            "type": "apply_changes",
            "changes": [change_set(a.site_id, [column("t", [1], "y", 2, hlc(7000, a.site_id))])],
        }
    )
    assert (await a.expect("apply_result"))["applied"] == 1


async def _snapshot(ws: Any) -> list[dict[str, Any]]:
    chunks = []
    while True:
        message = await ws.next()
        if message["type"] in ("heartbeat", "presence", "presence_delta", "push_changes"):
            continue
        if message["type"] == "snapshot_complete":
            return chunks
        assert message["type"] == "snapshot_chunk", message
        chunks.append(message["chunk"])


async def test_snapshot_chunk_order_and_counts(connect: Any) -> None:
    ws = await connect()
    await ws.handshake()
    changes = [
        column(t, [i], "v", {"__bigint": str(2**60 + i)}, hlc(1000 + i, ws.site_id))
        for t in ("a", "b")
        for i in range(1500)
    ]
    await ws.send({"type": "apply_changes", "changes": [change_set(ws.site_id, changes)]})
    assert (await ws.expect("apply_result"))["applied"] == 3000
    await ws.send({"type": "get_snapshot"})
    chunks = await _snapshot(ws)
    kinds = [c["type"] for c in chunks]
    assert kinds[0] == "header" and kinds[-1] == "footer"
    assert kinds[1:-1] == ["table-start", "column-versions", "column-versions", "table-end"] * 2
    header, footer = chunks[0], chunks[-1]
    assert (
        header["snapshotFormat"] == 1
        and header["tableCount"] == 2
        and header["snapshotId"] == footer["snapshotId"]
    )
    sent = sum(len(c["entries"]) for c in chunks if c["type"] == "column-versions")
    assert footer["totalEntries"] == sent == 3000 and footer["totalTables"] == 2
    assert all(len(c["entries"]) <= 1000 for c in chunks if c["type"] == "column-versions")
    assert chunks[2]["entries"][0]["value"] == {"__bigint": str(2**60)}


async def test_resume_snapshot_skips_what_was_received(connect: Any) -> None:
    ws = await connect()
    await ws.handshake()
    changes = [column(t, [i], "v", i, hlc(1000 + i, ws.site_id)) for t in ("a", "b") for i in range(10)]
    await ws.send({"type": "apply_changes", "changes": [change_set(ws.site_id, changes)]})
    await ws.expect("apply_result")
    await ws.send({"type": "get_snapshot"})
    full = await _snapshot(ws)
    header = full[0]
    checkpoint = {
        "snapshotId": header["snapshotId"],
        "siteId": header["siteId"],
        "hlc": header["hlc"],
        "lastTableIndex": 1,
        "lastEntryIndex": 4,
        "completedTables": ["main.a"],
        "entriesProcessed": 14,
        "createdAt": 0,
    }
    await ws.send({"type": "resume_snapshot", "checkpoint": checkpoint})
    resumed = await _snapshot(ws)
    assert resumed[0]["snapshotId"] == header["snapshotId"] and resumed[0]["hlc"] == header["hlc"]
    tables = [c["table"] for c in resumed if c["type"] == "table-start"]
    assert tables == ["b"]
    entries = [e for c in resumed if c["type"] == "column-versions" for e in c["entries"]]
    assert [e["pk"] for e in entries] == [[i] for i in range(4, 10)]
    assert resumed[-1]["type"] == "footer" and resumed[-1]["totalEntries"] == 20


async def test_resume_cut_right_after_a_table_end_skips_that_completed_table(connect: Any) -> None:
    """PROTOCOL.md 3.3: a resume skips the completed tables. A checkpoint taken right after table
    a's table-end still points at a (lastTableIndex 0, all its entries) and names it completed:
    nothing of a may come again, not even an empty table-start/table-end."""
    ws = await connect()
    await ws.handshake()
    changes = [column(t, [i], "v", i, hlc(1000 + i, ws.site_id)) for t in ("a", "b") for i in range(5)]
    await ws.send({"type": "apply_changes", "changes": [change_set(ws.site_id, changes)]})
    await ws.expect("apply_result")
    await ws.send({"type": "get_snapshot"})
    header = (await _snapshot(ws))[0]
    checkpoint = {
        "snapshotId": header["snapshotId"],
        "siteId": header["siteId"],
        "hlc": header["hlc"],
        "lastTableIndex": 0,
        "lastEntryIndex": 5,
        "completedTables": ["main.a"],
        "entriesProcessed": 5,
        "createdAt": 0,
    }
    await ws.send({"type": "resume_snapshot", "checkpoint": checkpoint})
    resumed = await _snapshot(ws)
    assert [c["table"] for c in resumed if c["type"] in ("table-start", "table-end")] == ["b", "b"]
    entries = [e for c in resumed if c["type"] == "column-versions" for e in c["entries"]]
    assert [e["pk"] for e in entries] == [[i] for i in range(5)]


async def test_ping_pong(connect: Any) -> None:
    ws = await connect()
    await ws.handshake()
    await ws.send({"type": "ping"})
    await ws.expect("pong")


async def test_presence_join_and_leave(connect: Any, coordinator: Any) -> None:
    a = await connect()
    await a.handshake()
    first = await a.expect("presence")
    assert [s["siteId"] for s in first["sessions"]] == [a.site_id]
    b = await connect()
    ack = await b.handshake()
    full = await b.expect("presence")  # the joiner: the full list right after its ack
    assert [s["siteId"] for s in full["sessions"]] == [a.site_id, b.site_id]
    for s in full["sessions"]:
        assert s["joinedAt"] <= s["lastSeen"]
    joined = await a.expect("presence_delta")  # the others: a delta
    assert [s["siteId"] for s in joined["joined"]] == [b.site_id] and joined["left"] == []
    await b.conn.close()
    left = await a.expect("presence_delta")
    assert left["joined"] == [] and left["left"] == [ack["connectionId"]]
    async with coordinator.http() as http:  # announced only once b was gone
        status = (await http.get("/status")).json()
    assert status["data"]["connectedClients"] == 1


async def test_presence_deltas_coalesce_in_order(start_coordinator: Any, connect: Any) -> None:
    coord = await start_coordinator("--presence-interval-ms", "1000")
    a, b = await connect(coord), await connect(coord)
    await a.handshake()
    await b.handshake()
    first = await a.expect("presence_delta")  # the first change after a quiet interval: at once
    arrived = time.monotonic()
    assert [s["siteId"] for s in first["joined"]] == [b.site_id]
    c, d = await connect(coord), await connect(coord)
    c_ack = await c.handshake()
    d_ack = await d.handshake()
    await c.conn.close()
    second = await a.expect("presence_delta")
    assert time.monotonic() - arrived >= 0.8  # held for the interval (less what b's join took)
    assert [s["connectionId"] for s in second["joined"]] == [c_ack["connectionId"], d_ack["connectionId"]]
    assert second["left"] == [c_ack["connectionId"]]
    # b: its own join was in its list, so only the second delta is news to it
    assert (await b.expect("presence_delta")) == second


async def test_a_joiner_is_not_told_its_own_join(start_coordinator: Any, connect: Any) -> None:
    coord = await start_coordinator("--presence-interval-ms", "0")
    a, b = await connect(coord), await connect(coord)
    await a.handshake()
    await b.handshake()
    await b.send({"type": "ping"})
    b.SKIP = frozenset({"heartbeat"})
    assert (await b.expect("presence"))["type"] == "presence"
    await b.expect("pong")  # nothing but its list before the answer: no delta about itself
    assert [m["type"] for m in b.seen] == ["handshake_ack", "presence", "pong"]


async def test_heartbeat_carries_seq_and_clients(connect: Any) -> None:
    a, b = await connect(), await connect()
    await a.handshake()
    await b.handshake()
    await a.send({"type": "apply_changes", "changes": [write(a.site_id, "t", 1, "x", 1)]})
    await a.expect("apply_result")
    Ws_skip = set(b.SKIP)
    b.SKIP = frozenset(Ws_skip - {"heartbeat"})
    await b.expect("push_changes")
    beat = await b.expect("heartbeat")
    assert (
        beat["seq"] == 1 and beat["clients"] == 2 and beat["backend"] == "ok" and isinstance(beat["ts"], int)
    )


async def _error_then_alive(ws: Any, frame: dict[str, Any] | str, code: str) -> dict[str, Any]:
    await ws.send(frame)
    error = await ws.expect("error")
    assert error["code"] == code and error["fatal"] is False, error
    await ws.send({"type": "ping"})
    await ws.expect("pong")  # the session survived
    return error  # type: ignore[no-any-return]


async def test_bad_input_gets_specific_non_fatal_codes(connect: Any) -> None:
    ws = await connect()
    await ws.handshake()
    site = ws.site_id
    good_hlc = hlc(1000, site)
    await _error_then_alive(ws, "{not json", "MESSAGE_ERROR")
    await _error_then_alive(ws, {"type": "teleport"}, "UNKNOWN_MESSAGE")
    await _error_then_alive(ws, {"type": "get_changes", "sinceHLC": "***"}, "INVALID_PAYLOAD")
    await _error_then_alive(ws, {"type": "get_changes", "sinceHLC": "AAAA"}, "INVALID_PAYLOAD")
    bad_b64 = write(site, "t", 1, "x", {"__bin": "!!"})
    err = await _error_then_alive(ws, {"type": "apply_changes", "changes": [bad_b64]}, "INVALID_PAYLOAD")
    assert "changes[0].changes[0].value.__bin" in err["message"]
    bad_hlc = change_set(site, [column("t", [1], "x", 1, "AAAA")])
    await _error_then_alive(ws, {"type": "apply_changes", "changes": [bad_hlc]}, "INVALID_PAYLOAD")
    await _error_then_alive(ws, {"type": "apply_changes", "changes": {"not": "a list"}}, "INVALID_PAYLOAD")
    wrong_type = change_set(
        site, [{"type": "upsert", "schema": "m", "table": "t", "pk": [1], "hlc": good_hlc}]
    )
    await _error_then_alive(ws, {"type": "apply_changes", "changes": [wrong_type]}, "INVALID_PAYLOAD")
    bad_site = dict(write(site, "t", 1, "x", 1), siteId="short")
    await _error_then_alive(ws, {"type": "apply_changes", "changes": [bad_site]}, "INVALID_PAYLOAD")
    await _error_then_alive(
        ws, {"type": "resume_snapshot", "checkpoint": {"snapshotId": 1}}, "INVALID_PAYLOAD"
    )
    await _error_then_alive(ws, [1, 2], "INVALID_PAYLOAD")  # type: ignore[arg-type]


async def test_not_authenticated_before_handshake(connect: Any) -> None:
    ws = await connect()
    for frame in (
        {"type": "get_changes"},
        {"type": "apply_changes", "changes": []},
        {"type": "get_snapshot"},
    ):
        await _error_then_alive_unauth(ws, frame)


async def _error_then_alive_unauth(ws: Any, frame: dict[str, Any]) -> None:
    await ws.send(frame)
    error = await ws.expect("error")
    assert error["code"] == "NOT_AUTHENTICATED" and error["fatal"] is False


async def _fatal(ws: Any, frame: dict[str, Any], code: str, close_code: int) -> None:
    await ws.send(frame)
    close, got = await ws.closed()
    errors = [m for m in got if m["type"] == "error"]
    assert errors and errors[-1]["code"] == code and errors[-1]["fatal"] is True, got
    assert close == close_code


async def test_fatal_handshake_errors_and_close_codes(start_coordinator: Any, connect: Any) -> None:
    coord = await start_coordinator("--token", "tok-a:db_a", "--token", "tok-all")
    site = new_site_id()
    base = {"type": "handshake", "databaseId": "db_a", "siteId": site, "token": "tok-a", "protocolVersion": 1}
    await _fatal(await connect(coord), {**base, "protocolVersion": 2}, "PROTOCOL_VERSION_MISMATCH", 4003)
    await _fatal(
        await connect(coord),
        {k: v for k, v in base.items() if k != "protocolVersion"},
        "PROTOCOL_VERSION_MISMATCH",
        4003,
    )
    await _fatal(await connect(coord), {**base, "databaseId": None}, "MISSING_DATABASE_ID", 4002)
    await _fatal(await connect(coord), {**base, "token": "wrong"}, "AUTH_FAILED", 4001)
    await _fatal(await connect(coord), {**base, "siteId": "not-a-site"}, "AUTH_FAILED", 4001)
    await _fatal(await connect(coord), {**base, "databaseId": "bad/id"}, "AUTH_FAILED", 4001)
    await _fatal(await connect(coord), {**base, "databaseId": "db_b"}, "AUTH_FAILED", 4001)  # not granted
    ws = await connect(coord)
    await ws.handshake("db_a", token="tok-a")
    await _fatal(ws, base, "ALREADY_AUTHENTICATED", 1008)


async def test_read_only_grant_gets_not_authorized_on_write(start_coordinator: Any, connect: Any) -> None:
    coord = await start_coordinator("--token", "reader:db_a=ro")
    ws = await connect(coord)
    await ws.handshake("db_a", token="reader")
    await _error_then_alive(
        ws, {"type": "apply_changes", "changes": [write(ws.site_id, "t", 1, "x", 1)]}, "NOT_AUTHORIZED"
    )


async def test_message_too_large_closes_1009(start_coordinator: Any, connect: Any) -> None:
    coord = await start_coordinator("--max-message-bytes", "1000")
    ws = await connect(coord)
    await ws.handshake()
    await _fatal(ws, {"type": "ping", "pad": "x" * 2000}, "MESSAGE_TOO_LARGE", 1009)


async def test_rate_limited_is_non_fatal(start_coordinator: Any, connect: Any) -> None:
    coord = await start_coordinator("--rate-limit-per-s", "1", "--rate-limit-burst", "3")
    ws = await connect(coord)
    await ws.handshake()  # uses one token
    for _ in range(2):
        await ws.send({"type": "ping"})
        await ws.expect("pong")
    await ws.send({"type": "ping"})
    error = await ws.expect("error")
    assert error["code"] == "RATE_LIMITED" and error["fatal"] is False


async def test_max_connections_refuses_upgrade_with_503(start_coordinator: Any, connect: Any) -> None:
    coord = await start_coordinator("--max-connections", "1")
    await connect(coord)
    try:
        await connect(coord)
    except websockets.InvalidStatus as exc:
        assert exc.response.status_code == 503
    else:
        raise AssertionError("second connection was accepted over --max-connections 1")


async def test_failpoint_mid_snapshot_gives_snapshot_error_and_session_survives(
    start_coordinator: Any, connect: Any
) -> None:
    coord = await start_coordinator("--enable-failpoints")
    ws = await connect(coord)
    await ws.handshake()
    await ws.send({"type": "apply_changes", "changes": [write(ws.site_id, "t", 1, "x", 1)]})
    await ws.expect("apply_result")
    async with coord.http() as http:
        r = await http.put(
            "/admin/failpoints/snapshot.read",
            json={"mode": "error", "times": 1},
            headers={"Authorization": "Bearer admin-secret"},
        )
        assert r.status_code == 200, r.text
    await ws.send({"type": "get_snapshot"})
    got = []
    while True:
        message = await ws.next()
        if message["type"] == "error":
            break
        got.append(message)
    assert message["code"] == "SNAPSHOT_ERROR" and message["fatal"] is False
    assert got and got[0]["type"] == "snapshot_chunk" and got[0]["chunk"]["type"] == "header"
    assert not any(m["type"] == "snapshot_complete" for m in got)
    await ws.send({"type": "get_snapshot"})  # the failpoint fired once; the next one completes
    chunks = await _snapshot(ws)
    assert chunks[-1]["type"] == "footer"


async def test_storage_failpoints_give_request_specific_codes(start_coordinator: Any, connect: Any) -> None:
    coord = await start_coordinator("--enable-failpoints")
    ws = await connect(coord)
    await ws.handshake()
    headers = {"Authorization": "admin-secret"}
    async with coord.http() as http:
        await http.put("/admin/failpoints/storage.write", json={"mode": "error"}, headers=headers)
        await http.put("/admin/failpoints/storage.read", json={"mode": "error"}, headers=headers)
    await _error_then_alive(
        ws, {"type": "apply_changes", "changes": [write(ws.site_id, "t", 1, "x", 1)]}, "APPLY_CHANGES_ERROR"
    )
    await _error_then_alive(ws, {"type": "get_changes"}, "GET_CHANGES_ERROR")
    async with coord.http() as http:
        await http.delete("/admin/failpoints/storage.write", headers=headers)
    await ws.send({"type": "apply_changes", "changes": [write(ws.site_id, "t", 1, "x", 1)]})
    assert (await ws.expect("apply_result"))["applied"] == 1


async def test_broadcast_send_failure_is_counted_and_others_still_receive(
    start_coordinator: Any, connect: Any
) -> None:
    coord = await start_coordinator("--enable-failpoints")
    writer = await connect(coord)
    await writer.handshake()
    readers = [await connect(coord) for _ in range(3)]
    for r in readers:
        await r.handshake()
    async with coord.http() as http:
        await http.put(
            "/admin/failpoints/broadcast.send",
            json={"mode": "error", "times": 1},
            headers={"Authorization": "admin-secret"},
        )
    await writer.send({"type": "apply_changes", "changes": [write(writer.site_id, "t", 1, "x", 1)]})
    await writer.expect("apply_result")
    outcomes = []
    for r in readers:
        close, got = await _until_push_or_close(r)
        outcomes.append((close, got))
    dropped = [o for o in outcomes if o[0] is not None]
    delivered = [o for o in outcomes if o[0] is None]
    assert len(dropped) == 1 and len(delivered) == 2
    assert dropped[0][0] == 1011 and any(m.get("code") == "DELIVERY_FAILED" for m in dropped[0][1])
    async with coord.http() as http:
        metrics = (await http.get("/metrics")).text
    assert "coordinator_broadcast_errors_total 1" in metrics


async def _until_push_or_close(ws: Any) -> tuple[int | None, list[dict[str, Any]]]:
    got: list[dict[str, Any]] = []
    try:
        while True:
            message = await ws.next()
            got.append(message)
            if message["type"] == "push_changes":
                return None, got
    except websockets.ConnectionClosed as exc:
        return (exc.rcvd.code if exc.rcvd else None), got


async def test_concurrent_applies_give_contiguous_seq(connect: Any) -> None:
    writers = [await connect() for _ in range(4)]
    for w in writers:
        await w.handshake()
    listener = await connect()
    await listener.handshake()

    async def burst(w: Any, n: int) -> list[int]:
        seqs = []
        for i in range(n):
            await w.send(
                {
                    "type": "apply_changes",
                    "changes": [write(w.site_id, f"t_{w.site_id}", i, "x", i, 1000 + i)],
                }
            )
            seqs.append((await _apply_result(w))["seq"])
        return seqs

    own = await asyncio.gather(*(burst(w, 25) for w in writers))
    assert sorted(s for seqs in own for s in seqs) == list(range(1, 101))
    pushes = []
    while len(pushes) < 100:
        pushes.append((await listener.expect("push_changes"))["seq"])
    assert pushes == list(range(1, 101))


async def _apply_result(ws: Any) -> dict[str, Any]:
    while True:
        message = await ws.next()
        if message["type"] == "apply_result":
            return message  # type: ignore[no-any-return]
