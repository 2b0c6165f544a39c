"""Coordinator failpoints through the admin routes."""

from __future__ import annotations

import httpx
import pytest

from harness.env.environment import Environment, EnvironmentConfig
from harness.faults.base import FaultError
from harness.faults.registry import create_fault
from tests.harness.env.sync_wire import new_site_id


async def get_changes_status(env: Environment) -> int:
    _, site = new_site_id()
    async with httpx.AsyncClient(timeout=5.0, trust_env=False) as http:
        response = await http.get(f"{env.client_urls().http}/db1/changes", headers={"X-Site-Id": site})
    return response.status_code


async def test_storage_read_failpoint_fails_get_changes_until_cleared() -> None:
    async with Environment(EnvironmentConfig(with_s3=False)) as env:
        assert await get_changes_status(env) == 200
        fault = create_fault({"kind": "failpoint", "target": "storage.read", "mode": "error"}, env)
        async with fault:
            assert await get_changes_status(env) == 500
            listed = await env.get_direct("/admin/failpoints", admin=True)
            assert listed.json()["data"]["failpoints"]["storage.read"]["mode"] == "error"
        assert await get_changes_status(env) == 200
        with pytest.raises(FaultError, match=r"has no failpoint 'no\.such'"):
            await create_fault({"kind": "failpoint", "target": "no.such"}, env).apply()
