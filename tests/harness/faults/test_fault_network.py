"""Every Toxiproxy fault has its effect on a real TCP connection.

The environment targets a local echo server as an external target: the "client" proxy then sits
between the test and the echo server, exactly as it sits between clients and a coordinator.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from harness.env.environment import Environment, EnvironmentConfig
from harness.faults.base import UnsupportedFault
from harness.faults.registry import create_fault
from tests.harness.env.echo import EchoServer, connect, read_all, round_trip_s


@pytest.fixture
async def echo() -> AsyncIterator[EchoServer]:
    async with EchoServer() as server:
        yield server


@pytest.fixture
async def env(echo: EchoServer) -> AsyncIterator[Environment]:
    async with Environment(EnvironmentConfig(target=f"http://{echo.address}/sync")) as environment:
        yield environment


def listen(env: Environment, name: str = "client") -> str:
    return env.proxies[name].listen


async def test_latency_adds_what_it_says_and_records_its_window(env: Environment) -> None:
    baseline = await round_trip_s(listen(env))
    fault = create_fault({"kind": "latency", "target": "client", "latency_ms": 300}, env)
    async with fault:
        delayed = await round_trip_s(listen(env))
    assert delayed >= 0.3 > baseline
    after = await round_trip_s(listen(env))
    assert after < 0.3
    [window] = env.history.faults
    assert (window.kind, window.target, window.params["latency_ms"]) == ("latency", "client", 300)
    assert (window.family, window.observable) == ("network", False)  # a delay, recorded as one
    assert window.end is not None and window.end - window.start >= 0.3


async def test_latency_both_directions_adds_twice(env: Environment) -> None:
    fault = create_fault({"kind": "latency", "latency_ms": 200, "direction": "both"}, env)
    await fault.apply()
    toxics = await env.toxiproxy_client.toxics("client")
    assert sorted(t.stream for t in toxics) == ["downstream", "upstream"]
    assert await round_trip_s(listen(env)) >= 0.4
    await fault.clear()
    assert await env.toxiproxy_client.toxics("client") == []


async def test_jitter_is_latency_with_its_jitter_attribute(env: Environment) -> None:
    async with create_fault({"kind": "jitter", "jitter_ms": 50, "latency_ms": 200}, env):
        [toxic] = await env.toxiproxy_client.toxics("client")
        assert (toxic.type, toxic.attributes) == ("latency", {"latency": 200, "jitter": 50})
        assert await round_trip_s(listen(env)) >= 0.15


async def test_limit_data_cuts_at_its_byte_count(env: Environment) -> None:
    async with create_fault({"kind": "limit_data", "bytes": 1000}, env):
        async with connect(listen(env)) as (reader, writer):
            writer.write(b"x" * 5000)
            await writer.drain()
            got = await read_all(reader)
    assert len(got) == 1000


async def test_reset_peer_resets(env: Environment) -> None:
    async with create_fault({"kind": "reset_peer", "timeout_ms": 0}, env):
        async with connect(listen(env)) as (reader, writer):
            writer.write(b"hello")
            with pytest.raises(ConnectionResetError):
                await writer.drain()
                await asyncio.wait_for(reader.read(100), 10.0)
                await asyncio.wait_for(reader.read(100), 10.0)


async def test_proxy_down_refuses_and_clear_restores(env: Environment) -> None:
    fault = create_fault({"kind": "proxy_down", "target": "client"}, env)
    async with fault:
        with pytest.raises(ConnectionRefusedError):
            await round_trip_s(listen(env))
    assert await round_trip_s(listen(env)) < 5.0


async def test_bandwidth_throttles(env: Environment) -> None:
    payload = b"b" * 100_000
    assert await round_trip_s(listen(env), payload) < 1.0
    async with create_fault({"kind": "bandwidth", "rate_kbps": 50}, env):
        throttled = await round_trip_s(listen(env), payload)
    assert throttled >= 1.5  # 100 KB at 50 KB/s is 2 s


async def test_slicer_still_delivers_every_byte(env: Environment) -> None:
    payload = bytes(range(256)) * 200
    async with create_fault(
        {"kind": "slicer", "average_size": 64, "size_variation": 32, "delay_us": 10}, env
    ):
        async with connect(listen(env)) as (reader, writer):
            writer.write(payload)
            await writer.drain()
            got = await asyncio.wait_for(reader.readexactly(len(payload)), 30.0)
    assert got == payload


async def test_timeout_holds_data_then_closes(env: Environment) -> None:
    async with create_fault({"kind": "timeout", "timeout_ms": 500}, env):
        async with connect(listen(env)) as (reader, writer):
            started = time.monotonic()
            writer.write(b"never echoed")
            await writer.drain()
            got = await read_all(reader, 10.0)
            elapsed = time.monotonic() - started
    assert got == b""
    assert elapsed >= 0.4


async def test_slow_close_delays_the_close() -> None:
    async with (
        EchoServer(blob=b"bye") as blob,
        Environment(EnvironmentConfig(target=f"http://{blob.address}/sync")) as env,
    ):
        async with create_fault({"kind": "slow_close", "delay_ms": 600}, env):
            async with connect(listen(env)) as (reader, _):
                assert await asyncio.wait_for(reader.readexactly(3), 10.0) == b"bye"
                started = time.monotonic()
                assert await asyncio.wait_for(reader.read(10), 10.0) == b""
                assert time.monotonic() - started >= 0.4


async def test_a_single_client_can_be_hurt_alone(env: Environment) -> None:
    async with create_fault({"kind": "latency", "target": "client:slow", "latency_ms": 400}, env):
        assert "client-slow" in env.proxies
        assert await round_trip_s(listen(env, "client-slow")) >= 0.4
        assert await round_trip_s(listen(env)) < 0.4


async def test_toxicity_zero_spares_every_connection(env: Environment) -> None:
    async with create_fault({"kind": "latency", "latency_ms": 500, "toxicity": 0.0}, env):
        assert await round_trip_s(listen(env)) < 0.5


async def test_process_faults_are_refused_on_an_external_target(env: Environment) -> None:
    with pytest.raises(UnsupportedFault, match="kill cannot be caused here: external target"):
        create_fault({"kind": "kill"}, env)
    with pytest.raises(UnsupportedFault, match="s3_outage cannot be caused here"):
        create_fault({"kind": "s3_outage"}, env)


async def test_clear_faults_undoes_every_applied_fault(env: Environment) -> None:
    await create_fault({"kind": "latency", "latency_ms": 500}, env).apply()
    await create_fault({"kind": "proxy_down"}, env).apply()
    assert len(env.active_faults) == 2
    assert await env.clear_faults() == []
    assert env.active_faults == [] and await env.toxiproxy_client.toxics("client") == []
    assert await round_trip_s(listen(env)) < 0.5
    assert all(w.end is not None for w in env.history.faults)


async def test_teardown_ends_the_windows_of_faults_still_applied(echo: EchoServer) -> None:
    async with Environment(EnvironmentConfig(target=f"http://{echo.address}/sync")) as env:
        await create_fault({"kind": "latency", "latency_ms": 100}, env).apply()
        assert env.history.faults[0].end is None
    assert env.history.faults[0].end is not None
