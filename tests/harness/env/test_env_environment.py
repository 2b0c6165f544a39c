"""The whole environment against the real coordinator, toxiproxy-server and moto."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from harness.env.coordinator_process import CoordinatorError, CoordinatorOptions, CoordinatorProcess
from harness.env.environment import Environment, EnvironmentConfig, EnvironmentSetupError
from harness.env.ports import PortInUse
from harness.env.toxiproxy_binary import ToxiproxyUnavailable
from harness.history import History
from harness.seed import Seeds
from tests.harness.env.echo import poll_until
from tests.harness.env.sync_wire import get_values, next_heartbeat, open_session, post_change

FAST_HEARTBEAT = CoordinatorOptions(heartbeat_interval_ms=200)


async def get(url: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=5.0, trust_env=False) as http:
        return await http.get(url)


def boto3_client(endpoint: str) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"total_max_attempts": 1}),
    )


def proc_state(pid: int) -> str:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rfind(")") + 2 :].split()[0]


async def test_bundled_environment_serves_through_the_proxy_and_reaches_s3_through_the_layer() -> None:
    async with Environment(EnvironmentConfig(), seeds=Seeds(11)) as env:
        assert env.coordinator is not None and env.s3_layer is not None and env.moto is not None
        through_proxy = await get(f"{env.client_urls().http}/status")
        direct = await env.get_direct("/status")
        assert through_proxy.json()["ok"] and direct.json()["ok"]
        assert env.client_urls().http != env.direct_url
        assert env.client_urls().ws.startswith("ws://127.0.0.1:") and env.client_urls().ws.endswith(
            "/sync/ws"
        )
        assert env.proxies["s3"].upstream == f"127.0.0.1:{env.s3_layer.port}"
        assert set(env.unsupported_faults()) == container_kinds()  # not a container: no docker network
        described = env.describe()
        assert described["seed"] == 11 and described["versions"]["toxiproxy-server"] == "v2.5.0"
        # the coordinator's S3 path: Toxiproxy "s3" proxy -> fault layer -> moto, with boto3
        s3_via_proxy = boto3_client(f"http://{env.proxies['s3'].listen}")
        await asyncio.to_thread(
            s3_via_proxy.put_object, Bucket="sync-harness", Key="db1/batches/x", Body=b"1"
        )
        assert [(r.operation, r.outcome) for r in env.s3_layer.requests if r.key == "db1/batches/x"] == [
            ("PutObject", "forwarded")
        ]
        assert env.s3_direct_url is not None
        listed = await asyncio.to_thread(
            boto3_client(env.s3_direct_url).list_objects_v2, Bucket="sync-harness"
        )
        assert [o["Key"] for o in listed["Contents"]] == ["db1/batches/x"]
        assert (await env.get_direct("/debug/resources", admin=True)).status_code == 200
        run_dir, data_dir = env.run_dir, env.data_dir
        assert (run_dir / "coordinator.stderr.log").exists()
    assert not run_dir.exists() and data_dir is not None and not data_dir.exists()


async def test_restart_keeps_the_port_and_the_data_dir() -> None:
    config = EnvironmentConfig(with_s3=False)
    async with Environment(config) as env:
        assert env.coordinator is not None
        port, data_dir = env.coordinator.port, env.coordinator.data_dir
        await post_change(env.client_urls().http, "db1", "kept")
        await env.coordinator.restart()
        assert env.coordinator.port == port and env.coordinator.data_dir == data_dir
        assert env.coordinator.process.last_returncode == 0  # SIGTERM: graceful
        assert await get_values(env.client_urls().http, "db1") == ["kept"]
        events = env.coordinator.events
        assert [e.kind for e in events] == ["start", "restart", "sigterm", "exit", "start"]
        assert events[3].exit_code == 0 and events[3].by_harness
        assert 0.0 <= events[0].time <= env.history.now()
        lines = env.coordinator.log_lines()
        listening = [r for r in lines if '"listening"' in r.text]
        assert len(listening) == 2  # one per start
        # JSON lines are timed by their own timestamps, on the run's clock (ms precision)
        assert events[0].time - 0.5 <= listening[0].time <= events[2].time + 0.5
        assert events[4].time - 0.5 <= listening[1].time <= env.history.now() + 0.5


async def test_sigstop_stops_heartbeats_and_sigcont_resumes_them() -> None:
    config = EnvironmentConfig(with_s3=False, coordinator=FAST_HEARTBEAT)
    async with Environment(config) as env:
        assert env.coordinator is not None
        process = env.coordinator.process
        ws = await open_session(env.client_urls().ws)
        try:
            await next_heartbeat(ws, 5.0)
            await process.pause()
            await poll_until(lambda: proc_state(process.pid or 0) == "T")
            received = 0
            for _ in range(10):  # 1.5 s = 7 heartbeat intervals; at most one was in flight
                try:
                    await next_heartbeat(ws, 1.5)
                    received += 1
                except TimeoutError:
                    break
            assert received <= 1
            await process.resume()
            started = time.monotonic()
            await next_heartbeat(ws, 5.0)
            assert time.monotonic() - started < 5.0
        finally:
            await ws.close()


async def test_per_client_proxies_are_separate() -> None:
    async with Environment(EnvironmentConfig(with_s3=False, client_proxies=["a"])) as env:
        b = await env.client_proxy("b")
        assert {"client", "client-a", "client-b"} <= set(env.proxies)
        assert env.client_urls("b").http == f"http://{b.listen}/sync"
        assert env.client_urls("unknown").http == env.client_urls().http
        assert (await get(f"{env.client_urls('a').http}/status")).status_code == 200
        assert env.network_targets() == ["client", "client:a", "client:b"]


async def test_external_target_has_no_process_control_and_says_so(tmp_path: Path) -> None:
    async with CoordinatorProcess(tmp_path, tmp_path / "data") as staging:
        config = EnvironmentConfig(target=staging.http_url, admin_token="harness-admin")
        async with Environment(config) as env:
            assert env.coordinator is None and env.s3_layer is None
            unsupported = env.unsupported_faults()
            assert set(unsupported) == {
                "kill",
                "pause",
                "terminate",
                "restart",
                "disk_loss",
                *env_s3_kinds(),
                *container_kinds(),
            }
            assert "no control over its process" in unsupported["kill"]
            assert env.direct_url == staging.http_url
            assert (await get(f"{env.client_urls().http}/status")).status_code == 200
        async with Environment(EnvironmentConfig(target=staging.http_url)) as no_admin:
            assert "failpoint" in no_admin.unsupported_faults()


def container_kinds() -> set[str]:
    from harness.env.environment import CONTAINER_FAULTS

    return set(CONTAINER_FAULTS)


def env_s3_kinds() -> set[str]:
    from harness.env.environment import S3_FAULTS

    return set(S3_FAULTS)


async def test_without_s3_the_s3_faults_are_unsupported() -> None:
    async with Environment(EnvironmentConfig(with_s3=False)) as env:
        assert env.moto is None and env.s3_direct_url is None
        assert set(env.unsupported_faults()) == env_s3_kinds() | container_kinds()


async def test_a_bad_target_url_is_a_clear_error() -> None:
    with pytest.raises(EnvironmentSetupError, match="not a URL like http://host:port/sync"):
        async with Environment(EnvironmentConfig(target="staging.example")):
            pass


async def test_a_coordinator_that_cannot_start_tears_everything_down() -> None:
    config = EnvironmentConfig(coordinator=CoordinatorOptions(extra={"no-such-option": True}))
    with pytest.raises(CoordinatorError, match="coordinator did not become ready") as err:
        async with Environment(config):
            pass
    assert "no-such-option" in str(err.value)  # the stderr tail says why


async def test_cancellation_tears_the_environment_down() -> None:
    up = asyncio.Event()

    async def run() -> None:
        async with Environment(EnvironmentConfig(with_s3=False), history=History()):
            up.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(run())
    await asyncio.wait_for(up.wait(), 60.0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_missing_toxiproxy_binary_fails_the_environment_clearly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TOXIPROXY_SERVER", "/nonexistent")
    with pytest.raises(ToxiproxyUnavailable, match="TOXIPROXY_SERVER=/nonexistent is not an executable file"):
        async with Environment(EnvironmentConfig(with_s3=False)):
            pass


async def test_a_taken_port_on_restart_is_a_clear_error() -> None:
    async with Environment(EnvironmentConfig(with_s3=False)) as env:
        assert env.coordinator is not None
        await env.coordinator.process.kill()
        with socket.socket() as squatter:
            squatter.bind(("127.0.0.1", env.coordinator.port))
            squatter.listen(1)
            with pytest.raises(
                PortInUse, match=f"127.0.0.1:{env.coordinator.port} wanted for the coordinator"
            ):
                await env.coordinator.start_again()


async def test_a_tls_target_cannot_be_proxied_and_says_so() -> None:
    from harness.faults.base import UnsupportedFault
    from harness.faults.registry import create_fault

    async with Environment(EnvironmentConfig(target="https://127.0.0.1:1/sync")) as env:
        assert env.proxies == {} and env.client_urls().ws == "wss://127.0.0.1:1/sync/ws"
        assert "network" in env.unsupported_faults()
        with pytest.raises(UnsupportedFault, match="TLS target"):
            create_fault({"kind": "latency", "latency_ms": 10}, env)
        with pytest.raises(EnvironmentSetupError, match="TLS target cannot be proxied"):
            await env.client_proxy("a")


def test_raw_extra_args_go_last_and_as_given(tmp_path: Path) -> None:
    """Benchmarks pass their `--coordinator-arg`s through unchanged, after every named option."""
    options = CoordinatorOptions(extra={"log-level": "warning"}, extra_args=["--compat=plain-v1", "--x", "1"])
    argv = CoordinatorProcess(tmp_path, tmp_path / "data", options).argv()
    assert argv[-3:] == ["--compat=plain-v1", "--x", "1"]
    assert argv[argv.index("--log-level") + 1] == "warning"
