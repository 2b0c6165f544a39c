"""A client's bad input never becomes a server fault: against a real `coordinator serve`, every
WebSocket message type and every HTTP route gets wrong shapes, wrong types, huge numbers, nested
junk and broken framing; each is answered with a client-error code (never a server-fault code,
never a 5xx), and the process log holds no traceback and no error line for any of it.

The log is read after a graceful shutdown (SIGTERM, exit 0), so every request has been handled
to its end when it is judged: no waiting on log lines that, when the code is right, never come.
"""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Any

import httpx
import orjson
import pytest
import websockets
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.uri import parse_uri

from tests.coordinator.conftest import ADMIN, CoordinatorProcess, Ws
from tests.coordinator.wire import change_set, column, hlc, new_site_id, write

BIG = [2**53, 2**63 - 1, 2**63, 2**64 - 1, -(2**63), -1]
JUNK: list[Any] = [None, True, 1.5, "x", "", [], {}, [[[[{"a": [1]}]]]], {"type": "column"}, *BIG]
SERVER_FAULT_CODES = {"GET_CHANGES_ERROR", "APPLY_CHANGES_ERROR", "SNAPSHOT_ERROR", "STORE_UNAVAILABLE"}
ZERO_HLC = base64.b64encode(bytes(30)).decode()


def _checkpoint(site_id: str, **override: Any) -> dict[str, Any]:
    checkpoint: dict[str, Any] = {
        "snapshotId": "snap-1",
        "siteId": site_id,
        "hlc": ZERO_HLC,
        "lastTableIndex": 0,
        "lastEntryIndex": 0,
        "completedTables": [],
        "entriesProcessed": 0,
        "createdAt": 1_700_000_000_000,
    }
    checkpoint.update(override)
    return checkpoint


def assert_clean_log(coord: CoordinatorProcess) -> None:
    """No traceback and no error-level line: bad input is the client's fault, not the server's."""
    text = coord.stderr_path.read_text()
    assert "Traceback" not in text, text[-4000:]
    assert "Exception in ASGI application" not in text, text[-4000:]
    errors = [e for e in coord.log_events() if e.get("level") in ("error", "critical", "raw")]
    assert errors == [], errors[:5]


async def _session(coord: CoordinatorProcess, database_id: str = "probe") -> Ws:
    ws = Ws(await websockets.connect(coord.ws_url, max_size=None))
    await ws.handshake(database_id)
    return ws


async def _answer(ws: Ws, message: dict[str, Any] | str, timeout: float = 10.0) -> dict[str, Any]:
    """The answer to one message (errors, results, the end of a snapshot); presence, heartbeats
    and snapshot chunks are skipped, for at most `timeout` seconds in all."""
    await ws.send(message)
    deadline = time.monotonic() + timeout
    while True:
        got = await ws.next(max(0.01, deadline - time.monotonic()))
        if got["type"] in ("error", "pong", "changes", "apply_result", "snapshot_complete", "handshake_ack"):
            return got


async def _assert_alive(ws: Ws) -> None:
    assert (await _answer(ws, {"type": "ping"}))["type"] == "pong"


class RawSocketWs:
    """Sends frames the `websockets` client refuses to build (a text frame that is not UTF-8)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, proto: ClientProtocol):
        self.reader, self.writer, self.proto = reader, writer, proto

    @classmethod
    async def connect(cls, url: str) -> RawSocketWs:
        uri = parse_uri(url)
        reader, writer = await asyncio.open_connection(uri.host, uri.port)
        proto = ClientProtocol(uri, max_size=None)
        proto.send_request(proto.connect())
        raw = cls(reader, writer, proto)
        await raw._flush()
        while proto.state.name == "CONNECTING":
            proto.receive_data(await asyncio.wait_for(reader.read(65536), 10))
        assert proto.handshake_exc is None
        return raw

    async def _flush(self) -> None:
        for data in self.proto.data_to_send():
            self.writer.write(data)
        await self.writer.drain()

    async def send_frame(self, opcode: Opcode, payload: bytes) -> None:
        self.proto.send_frame(Frame(opcode, payload))
        await self._flush()

    async def send_json(self, message: dict[str, Any]) -> None:
        await self.send_frame(Opcode.TEXT, orjson.dumps(message))

    async def recv(self, timeout: float = 10.0) -> dict[str, Any]:
        """The next text message that is not presence/heartbeat; fails if the server closes."""
        while True:
            for event in self.proto.events_received():
                if isinstance(event, Frame) and event.opcode is Opcode.TEXT:
                    message: dict[str, Any] = orjson.loads(event.data)
                    if message["type"] not in ("presence", "presence_delta", "heartbeat"):
                        return message
                elif isinstance(event, Frame) and event.opcode is Opcode.CLOSE:
                    raise AssertionError(f"server closed: {self.proto.close_rcvd}")
            data = await asyncio.wait_for(self.reader.read(65536), timeout)
            if not data:
                raise AssertionError("server closed the connection")
            self.proto.receive_data(data)

    def close(self) -> None:
        self.writer.close()


# -- issue 10, one test per fix -------------------------------------------------------------------


@pytest.mark.parametrize("database_id", ["fzA_x\n", "db\n", "a" * 128 + "\n"])
async def test_database_id_with_a_final_newline_is_refused(start_coordinator: Any, database_id: str) -> None:
    coord = await start_coordinator()
    ws = Ws(await websockets.connect(coord.ws_url))
    site = new_site_id()
    handshake = {"type": "handshake", "databaseId": database_id, "siteId": site, "protocolVersion": 1}
    answer = await _answer(ws, handshake)  # not a handshake_ack
    assert (answer["type"], answer.get("code"), answer.get("fatal")) == ("error", "AUTH_FAILED", True), answer
    code, _ = await ws.closed()
    assert code == 4001
    quoted = database_id.replace("\n", "%0A")
    async with coord.http() as http:
        headers = {"x-site-id": site}
        body = {"changes": [write(site, "t", 1, "x", 1)]}
        for response in (
            await http.get(f"/{quoted}/changes", headers=headers),
            await http.post(f"/{quoted}/changes", json=body, headers=headers),
            await http.get(f"/{quoted}/snapshot", headers=headers),
        ):
            assert response.status_code == 400, response.text
            assert response.json()["error"]["code"] == "INVALID_DATABASE_ID"
    assert not any(
        p.name.startswith(database_id.strip()) for p in coord.data_dir.rglob("*") if "\n" in p.name
    )
    assert await coord.terminate() == 0
    assert_clean_log(coord)


CHECKPOINT_NUMBERS = ["lastTableIndex", "lastEntryIndex", "entriesProcessed", "createdAt"]


@pytest.mark.parametrize("compat", ["ext", "plain-v1"])
async def test_resume_checkpoint_numbers_out_of_range_are_invalid_payload(
    start_coordinator: Any, compat: str
) -> None:
    """lastEntryIndex >= 2^63 used to reach SQLite's OFFSET and fail there (OverflowError,
    SNAPSHOT_ERROR with a traceback); negative, boolean, float and unsafe values were taken."""
    coord = await start_coordinator(*(["--compat", "plain-v1"] if compat == "plain-v1" else []))
    ws = await _session(coord)
    result = await _answer(ws, {"type": "apply_changes", "changes": [write(ws.site_id, "t", 1, "x", 1)]})
    assert result["applied"] == 1  # a table with entries: the resumed stream reads with OFFSET
    expected_code = "INVALID_PAYLOAD" if compat == "ext" else "SNAPSHOT_ERROR"  # plain v1: base code
    for key in CHECKPOINT_NUMBERS:
        for bad in (2**63, 2**64 - 1, 2**53, -1, True, 1.5, "3", None):
            checkpoint = _checkpoint(ws.site_id, **{key: bad})
            answer = await _answer(ws, {"type": "resume_snapshot", "checkpoint": checkpoint})
            assert answer["type"] == "error", (key, bad, answer)
            assert (answer["code"], answer["fatal"]) == (expected_code, False), (key, bad, answer)
            assert f"checkpoint.{key}" in answer["message"], answer
    for bad_completed in (-1, True, [1], [None], 2**63):
        checkpoint = _checkpoint(ws.site_id, completedTables=bad_completed)
        answer = await _answer(ws, {"type": "resume_snapshot", "checkpoint": checkpoint})
        assert (answer["code"], answer["fatal"]) == (expected_code, False), (bad_completed, answer)
        assert "checkpoint.completedTables" in answer["message"]
    # the largest value a JSON client can send exactly is still a valid checkpoint
    good = _checkpoint(ws.site_id, lastEntryIndex=2**53 - 1, completedTables=["t"])
    assert (await _answer(ws, {"type": "resume_snapshot", "checkpoint": good}))["type"] == "snapshot_complete"
    await _assert_alive(ws)
    await ws.conn.close()
    assert await coord.terminate() == 0
    assert_clean_log(coord)


@pytest.mark.parametrize("compat", ["ext", "plain-v1"])
async def test_text_frame_that_is_not_utf8_gets_message_error(start_coordinator: Any, compat: str) -> None:
    coord = await start_coordinator(*(["--compat", "plain-v1"] if compat == "plain-v1" else []))
    raw = await RawSocketWs.connect(coord.ws_url)
    try:
        await raw.send_json(
            {"type": "handshake", "databaseId": "utf8", "siteId": new_site_id(), "protocolVersion": 1}
        )
        assert (await raw.recv())["type"] == "handshake_ack"
        for payload in (b"\xff\xfe", b'{"type": "ping", "x": "\xc3"}', b"\xed\xa0\x80"):  # last: a surrogate
            await raw.send_frame(Opcode.TEXT, payload)
            answer = await raw.recv()
            assert (answer["type"], answer["code"], answer["fatal"]) == ("error", "MESSAGE_ERROR", False)
        await raw.send_json({"type": "ping"})
        assert (await raw.recv())["type"] == "pong"  # the session survived
        await raw.send_frame(Opcode.TEXT, '{"type": "ping", "x": "é€😀"}'.encode())
        assert (await raw.recv())["type"] == "pong"  # valid non-ASCII UTF-8 is still text
    finally:
        raw.close()
    assert await coord.terminate() == 0
    assert_clean_log(coord)


async def _cut_short_post(coord: CoordinatorProcess, path: str, headers: str = "") -> None:
    """A POST that announces 1000 bytes, sends a few and closes."""
    _reader, writer = await asyncio.open_connection("127.0.0.1", coord.port)
    writer.write(
        f"POST /sync{path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{headers}"
        'Content-Length: 1000\r\n\r\n{"changes": ['.encode()
    )
    await writer.drain()
    writer.close()
    await writer.wait_closed()


async def test_http_post_cut_short_logs_no_traceback(start_coordinator: Any) -> None:
    coord = await start_coordinator("--enable-failpoints")
    for _ in range(3):
        await _cut_short_post(coord, "/db1/changes")
        await _cut_short_post(coord, "/admin/failpoints/storage.read", f"Authorization: {ADMIN}\r\n")
    async with coord.http() as http:  # the server still serves
        assert (await http.get("/status")).status_code == 200
    assert await coord.terminate() == 0
    assert_clean_log(coord)


# -- the whole surface --------------------------------------------------------------------------------


def _change_sets_junk(site: str) -> list[Any]:
    """`changes` values for apply_changes / POST: wrong shapes at every level, huge numbers."""
    ok_hlc = hlc(5000, site)
    good = column("t", [1], "x", 1, ok_hlc)
    sets: list[Any] = [*JUNK, [None], [1], ["x"], [{}], [[]]]
    base = change_set(site, [good])
    for key in ("siteId", "transactionId", "hlc", "changes", "schemaMigrations"):
        for bad in JUNK:
            sets.append([{**base, key: bad}])
    sets.append([{**base, "siteId": site + "\n"}])
    sets.append([{**base, "hlc": ok_hlc + "\n"}])
    for key in (
        "type",
        "schema",
        "table",
        "pk",
        "hlc",
        "column",
        "value",
        "priorValue",
        "priorHlc",
        "priorRow",
    ):
        for bad in JUNK:
            sets.append([change_set(site, [{**good, key: bad}])])
    for value in (
        {"__bin": 1},
        {"__bin": "!!"},
        {"__bigint": "1e5"},
        {"__bigint": "9" * 400},
        {"__bigint": "-" + "9" * 400},
        {"__bigint": "9" * 401},
        {"__bin": "AA==", "__bigint": "1"},
        {"__bigint": 12},
    ):
        sets.append([change_set(site, [{**good, "value": value}])])
        sets.append([change_set(site, [{**good, "pk": [value]}])])
    delete = {"type": "delete", "schema": "main", "table": "t", "pk": [1], "hlc": hlc(5001, site)}
    for prior_row in (*JUNK, {"a": 2**63}, {"a": {"__bigint": "x"}}, {"": [[[]]]}):
        sets.append([change_set(site, [{**delete, "priorRow": prior_row}])])
    migration = {
        "type": "create",
        "schema": "main",
        "table": "t",
        "ddl": "CREATE",
        "hlc": ok_hlc,
        "schemaVersion": 1,
    }
    for key in ("type", "schema", "table", "fromTable", "ddl", "hlc", "schemaVersion"):
        for bad in JUNK:
            sets.append([{**base, "schemaMigrations": [{**migration, key: bad}]}])
    return sets


async def _probe_ws(coord: CoordinatorProcess, plain: bool) -> None:
    site = new_site_id()
    # handshakes with bad fields, each on its own connection (a bad handshake ends the session)
    handshake = {"type": "handshake", "databaseId": "probe", "siteId": site, "protocolVersion": 1}
    variants: list[dict[str, Any]] = []
    for key in ("databaseId", "siteId", "protocolVersion", "token"):
        for bad in (*JUNK, "a\n", "a b", "ü", "a" * 129, "A" * 22 + "\n", "A" * 21 + "=", "1"):
            variants.append({**handshake, key: bad})
    variants.append({k: v for k, v in handshake.items() if k != "protocolVersion"})
    for message in variants:
        ws = Ws(await websockets.connect(coord.ws_url))
        await ws.send(message)
        first = await ws.next()  # an open server ignores the token: some variants are accepted
        assert first["type"] in ("handshake_ack", "error"), first
        if first["type"] == "error":
            assert first["fatal"] and first["code"] not in SERVER_FAULT_CODES, (message, first)
        await ws.conn.close()

    ws = Ws(await websockets.connect(coord.ws_url))
    for kind in ("get_changes", "apply_changes", "get_snapshot", "resume_snapshot", "ping", "nope"):
        answer = await _answer(ws, {"type": kind})
        assert answer["type"] in ("error", "pong"), answer
    await ws.handshake("probe", site)

    async def bad(message: dict[str, Any] | str) -> None:
        answer = await _answer(ws, message)
        if answer["type"] == "error":
            assert answer["fatal"] is False, (message, answer)
            if not plain:
                assert answer["code"] not in SERVER_FAULT_CODES, (str(message)[:300], answer)

    frames: list[str] = [
        "",
        "null",
        "[]",
        "1",
        '"x"',
        "{}",
        '{"type": 1}',
        '{"type": null}',
        '{"type": ""}',
        '{"type": "' + "x" * 10_000 + '"}',
        "[" * 5000,
        '{"type": "ping", "x": ' + "[" * 2000 + "]" * 2000 + "}",
        '{"type": "ping", "x": 1e400}',
        '{"type": "ping", "x": 123456789012345678901234567890}',
        "{'type': 'ping'}",
        '{"type": "ping"',
        "\x00",
        '{"type": "handshake", "type": "ping"}',  # the last key wins
    ]
    for text in frames:
        await bad(text)
    for since in (*JUNK, "!!", "AAAA", ZERO_HLC + "\n", ZERO_HLC[:-4], "=" * 40):
        await bad({"type": "get_changes", "sinceHLC": since})
    for changes in _change_sets_junk(site):
        await bad({"type": "apply_changes", "changes": changes})
    for request_id in (*JUNK, "r" * 5000):
        await bad(
            {"type": "apply_changes", "changes": [write(site, "t", 1, "x", 1)], "requestId": request_id}
        )
    for value in (*JUNK, [1, 2]):
        await bad({"type": "get_snapshot", "x": value})
        await bad({"type": "resume_snapshot", "checkpoint": value})
    for key in ("snapshotId", "siteId", "hlc", *CHECKPOINT_NUMBERS, "completedTables"):
        for value in (*JUNK, "a\n", "A" * 22 + "\n"):
            await bad({"type": "resume_snapshot", "checkpoint": _checkpoint(site, **{key: value})})
    await _assert_alive(ws)
    await ws.send({"type": "handshake", "databaseId": "probe", "siteId": site, "protocolVersion": 1})
    code, got = await ws.closed()
    assert code == 1008 and got[-1]["code"] == "ALREADY_AUTHENTICATED", got
    # binary frames are not JSON text either
    raw = await RawSocketWs.connect(coord.ws_url)
    for payload in (b"\x00\x01", b'{"type": "ping"}', b"\xff"):
        await raw.send_frame(Opcode.BINARY, payload)
        answer = await raw.recv()
        assert answer["type"] in ("error", "pong"), answer
    raw.close()


async def _probe_http(coord: CoordinatorProcess) -> None:
    site = new_site_id()
    bad_ids = ["a%0A", "a%00", "%FF", "a" * 129, "a%20b", "%C3%A9", "..", "a%2Fb", "%0A"]
    bad_sites: list[str | bytes] = ["bad", "A" * 22 + "=", "A" * 21 + "*", "A" * 100, "", "Zg", b"\xff" * 22]
    bad_auth: list[str | bytes] = [
        "Bearer",
        "Bearer x y",
        "Basic abc",
        "x" * 5000,
        b"\xff",
        b"Bearer \xc3\xa9",
    ]
    good_body = orjson.dumps({"changes": [write(site, "t", 1, "x", 1)]})
    bodies: list[bytes] = [
        b"",
        b"null",
        b"[]",
        b"1",
        b"{",
        b"\xff\xfe",
        b"[" * 5000,
        b'{"changes": 1e400}',
        b'{"changes": ' + b"[" * 2000 + b"]" * 2000 + b"}",
        *(orjson.dumps({"changes": c}) for c in _change_sets_junk(site)),
    ]
    async with httpx.AsyncClient(base_url=coord.base, timeout=10.0) as http:
        responses: list[httpx.Response] = []
        for db in bad_ids:
            responses.append(await http.get(f"/{db}/changes"))
            responses.append(await http.post(f"/{db}/changes", content=good_body))
            responses.append(await http.get(f"/{db}/snapshot"))
        for value in bad_sites:
            headers = {"x-site-id": value}
            responses.append(await http.get("/probe/changes", headers=headers))
            responses.append(await http.post("/probe/changes", content=good_body, headers=headers))
            responses.append(await http.get("/probe/snapshot", headers=headers))
        for value in bad_auth:
            headers = {"authorization": value}
            for route in ("/probe/changes", "/debug/resources", "/admin/failpoints"):
                responses.append(await http.get(route, headers=headers))
        for since in ("!!", "AAAA", "%FF", "%0A", ZERO_HLC + "%0A", "=" * 40, "x" * 5000):
            responses.append(await http.get(f"/probe/changes?sinceHLC={since}"))
        responses.append(await http.get("/probe/changes?sinceHLC=a&sinceHLC=b&%FF=%FF"))
        responses.append(await http.get("/status?x=%FF&y"))
        responses.append(await http.get("/metrics?%00"))
        for body in bodies:
            for content_type in ("application/json", "text/plain", "multipart/form-data; boundary=x"):
                responses.append(
                    await http.post("/probe/changes", content=body, headers={"content-type": content_type})
                )
        admin = {"authorization": f"Bearer {ADMIN}"}
        for name in ("storage.read", "nope", "%FF", "a" * 300):
            for body in (
                b"{",
                b"[]",
                b"\xff",
                b'{"mode": 1}',
                b'{"mode": "delay", "delayMs": 18446744073709551615}',
                b'{"mode": "delay", "delayMs": 9223372036854775808}',
                b'{"mode": "delay", "delayMs": 1.5}',
                b'{"mode": "error", "times": 18446744073709551615, "probability": 0}',
                b'{"mode": "error", "times": 0}',
                b'{"mode": "error", "probability": 1e308}',
                b'{"mode": "error", "probability": true}',
                b'{"mode": "error", "message": [1]}',
            ):
                response = await http.put(f"/admin/failpoints/{name}", content=body, headers=admin)
                responses.append(response)
                if response.status_code == 200:  # accepted (valid): switch it off again
                    await http.delete(f"/admin/failpoints/{name}", headers=admin)
        for method in ("PUT", "PATCH", "DELETE"):
            responses.append(await http.request(method, "/probe/changes", content=b"{}"))
            responses.append(await http.request(method, "/status"))
        responses.append(await http.get("/%FF%FE/x/y/z"))
        responses.append(await http.get("/ws"))  # an HTTP GET on the WebSocket path
        responses.append(await http.get("/ws", headers={"upgrade": "websocket", "connection": "upgrade"}))
    failures = [(r.request.method, str(r.request.url)[:200], r.status_code, r.text[:200]) for r in responses]
    assert [f for f in failures if f[2] >= 500] == []


@pytest.mark.parametrize("compat", ["ext", "plain-v1"])
async def test_the_whole_surface_survives_bad_input_without_a_traceback(
    start_coordinator: Any, compat: str
) -> None:
    plain = compat == "plain-v1"
    coord = await start_coordinator("--enable-failpoints", *(["--compat", "plain-v1"] if plain else []))
    await _probe_ws(coord, plain)
    await _probe_http(coord)
    await _cut_short_post(coord, "/probe/changes")
    ws = await _session(coord)  # after all of it, the server still serves
    await _assert_alive(ws)
    result = await _answer(ws, {"type": "apply_changes", "changes": [write(ws.site_id, "t", 9, "x", 1)]})
    assert result["type"] == "apply_result", result
    await ws.conn.close()
    assert await coord.terminate() == 0
    assert_clean_log(coord)
