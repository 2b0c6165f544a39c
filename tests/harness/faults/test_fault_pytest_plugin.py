"""The pytest plugin's fixtures, used the way docs/faults.md shows."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from harness.env.coordinator_process import CoordinatorProcess
from harness.env.environment import Environment
from harness.env.toxiproxy import ToxiproxyServer
from harness.faults.registry import create_fault
from harness.pytest_plugin import S3Stack
from tests.harness.env.sync_wire import next_heartbeat, open_session


@pytest.mark.sut(heartbeat_interval_ms=200, with_s3=False)
async def test_heartbeats_survive_client_latency(sut: Environment) -> None:
    """The example of docs/faults.md: a fault, a client, an expectation."""
    ws = await open_session(sut.client_urls().ws)
    try:
        async with create_fault({"kind": "latency", "target": "client", "latency_ms": 300}, sut):
            beat = await next_heartbeat(ws, timeout_s=5.0)
        assert beat["backend"] == "ok"
    finally:
        await ws.close()
    assert [w.kind for w in sut.history.faults] == ["latency"]


async def test_toxiproxy_fixture(toxiproxy: ToxiproxyServer) -> None:
    assert await toxiproxy.client.proxies() == {}


async def test_s3_fixture(s3: S3Stack) -> None:
    client = s3.boto3_client()
    await asyncio.to_thread(client.put_object, Bucket=s3.bucket, Key="k", Body=b"v")
    assert s3.layer.counts() == {"PutObject": {"forwarded": 1}}


async def test_coordinator_fixture(coordinator: CoordinatorProcess) -> None:
    async with httpx.AsyncClient(trust_env=False, timeout=5.0) as http:
        assert (await http.get(f"{coordinator.http_url}/ready")).status_code == 200


def test_unknown_sut_options_are_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "test_typo.py").write_text(
        "import pytest\n\n@pytest.mark.sut(heartbeat_ms=5)\nasync def test_x(sut):\n    pass\n"
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-o",
            "asyncio_mode=auto",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode != 0
    assert "@pytest.mark.sut: unknown option(s) ['heartbeat_ms']" in result.stdout
