"""Conformance of the HTTP routes with PROTOCOL.md section 4, against a real process."""

from __future__ import annotations

import json
from typing import Any

from tests.coordinator.wire import new_site_id, write

ADMIN = {"Authorization": "Bearer admin-secret"}


async def test_status_health_ready_metrics(coordinator: Any) -> None:
    async with coordinator.http() as http:
        status = (await http.get("/status")).json()
        assert status["ok"] is True and set(status["data"]) >= {"openStores", "connectedClients", "uptime"}
        assert (await http.get("/health")).status_code == 200
        assert (await http.get("/ready")).status_code == 200
        metrics = await http.get("/metrics")
        assert (
            metrics.status_code == 200 and "# TYPE coordinator_broadcast_errors_total counter" in metrics.text
        )


async def test_post_and_get_changes(coordinator: Any) -> None:
    site, other = new_site_id(), new_site_id()
    cs = write(site, "t", 1, "x", "hello")
    async with coordinator.http() as http:
        r = await http.post("/db1/changes", json={"changes": [cs]}, headers={"X-Site-Id": site})
        assert r.status_code == 200 and r.json()["data"]["applied"] == 1
        mine = (await http.get("/db1/changes", headers={"X-Site-Id": site})).json()
        assert mine["data"]["changes"] == []  # own site excluded
        theirs = (await http.get("/db1/changes", headers={"X-Site-Id": other})).json()
        assert [c["transactionId"] for c in theirs["data"]["changes"]] == [cs["transactionId"]]
        since = cs["changes"][0]["hlc"]
        after = (
            await http.get("/db1/changes", params={"sinceHLC": since}, headers={"X-Site-Id": other})
        ).json()
        assert after["data"]["changes"] == []


async def test_http_errors(start_coordinator: Any) -> None:
    coord = await start_coordinator("--token", "tok-a:db_a", "--token", "ro:db_a=ro")
    site = new_site_id()
    async with coord.http() as http:
        r = await http.get("/bad$id/changes", headers={"Authorization": "tok-a"})
        assert (r.status_code, r.json()["error"]["code"]) == (400, "INVALID_DATABASE_ID")
        r = await http.get("/db_a/changes", headers={"Authorization": "nope"})
        assert (r.status_code, r.json()["error"]["code"]) == (401, "AUTH_FAILED")
        r = await http.get("/db_b/changes", headers={"Authorization": "Bearer tok-a"})
        assert (r.status_code, r.json()["error"]["code"]) == (403, "NOT_AUTHORIZED")
        r = await http.post(
            "/db_a/changes", json={"changes": [write(site, "t", 1, "x", 1)]}, headers={"Authorization": "ro"}
        )
        assert (r.status_code, r.json()["error"]["code"]) == (403, "NOT_AUTHORIZED")
        r = await http.post("/db_a/changes", content=b"{nope", headers={"Authorization": "tok-a"})
        assert (r.status_code, r.json()["error"]["code"]) == (400, "INVALID_BODY")
        r = await http.post(
            "/db_a/changes", json={"changes": [{"siteId": "x"}]}, headers={"Authorization": "tok-a"}
        )
        assert r.status_code == 400 and "changes[0].siteId" in r.json()["error"]["message"]
        r = await http.get("/db_a/snapshot", headers={"Authorization": "nope"})
        assert r.status_code == 401


async def test_http_snapshot_ndjson(coordinator: Any) -> None:
    site = new_site_id()
    async with coordinator.http() as http:
        await http.post(
            "/db1/changes", json={"changes": [write(site, "t", 1, "x", {"__bigint": str(2**62)})]}
        )
        r = await http.get("/db1/snapshot")
        assert r.headers["content-type"].startswith("application/x-ndjson")
        lines = [json.loads(line) for line in r.text.splitlines()]
    assert [c["type"] for c in lines] == ["header", "table-start", "column-versions", "table-end", "footer"]
    assert lines[2]["entries"][0]["value"] == {"__bigint": str(2**62)}


async def test_http_snapshot_failure_after_first_byte_ends_with_error_line(start_coordinator: Any) -> None:
    coord = await start_coordinator("--enable-failpoints")
    async with coord.http() as http:
        await http.post("/db1/changes", json={"changes": [write(new_site_id(), "t", 1, "x", 1)]})
        await http.put("/admin/failpoints/snapshot.read", json={"mode": "error", "times": 1}, headers=ADMIN)
        r = await http.get("/db1/snapshot")
        lines = [json.loads(line) for line in r.text.splitlines()]
    assert lines[0]["type"] == "header"
    assert lines[-1].get("code") == "SNAPSHOT_ERROR" and "error" in lines[-1]
    assert not any(line.get("type") == "footer" for line in lines)


async def test_admin_routes_need_the_admin_token(start_coordinator: Any) -> None:
    coord = await start_coordinator()
    async with coord.http() as http:
        assert (await http.get("/debug/resources")).status_code == 401
        r = await http.get("/debug/resources", headers=ADMIN)
        assert r.status_code == 200 and r.json()["data"]["storeRefs"] == 0
        r = await http.put("/admin/failpoints/snapshot.read", json={"mode": "error"}, headers=ADMIN)
        assert (r.status_code, r.json()["error"]["code"]) == (404, "FAILPOINTS_DISABLED")


async def test_failpoint_configuration_errors_name_the_field(start_coordinator: Any) -> None:
    coord = await start_coordinator("--enable-failpoints")
    async with coord.http() as http:
        r = await http.put("/admin/failpoints/nowhere", json={"mode": "error"}, headers=ADMIN)
        assert r.status_code == 400 and "name" in r.json()["error"]["message"]
        r = await http.put("/admin/failpoints/store.open", json={"mode": "explode"}, headers=ADMIN)
        assert r.status_code == 400 and r.json()["error"]["message"].startswith("mode")
        r = await http.put(
            "/admin/failpoints/store.open", json={"mode": "delay", "delayMs": -1}, headers=ADMIN
        )
        assert r.status_code == 400 and r.json()["error"]["message"].startswith("delayMs")
        listing = (await http.get("/admin/failpoints", headers=ADMIN)).json()["data"]
        assert listing["enabled"] is True and "broadcast.send" in listing["failpoints"]
