"""S3 faults through the environment: boto3 on the coordinator's S3 path (Toxiproxy "s3" proxy
-> fault layer -> moto) sees each fault, and the layer counts every request."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError

from harness.env.environment import Environment, EnvironmentConfig
from harness.faults.registry import create_fault
from harness.seed import Seeds
from tests.harness.env.echo import poll_until
from tests.harness.env.sync_wire import post_change

BUCKET = "sync-harness"


@pytest.fixture
async def env() -> AsyncIterator[Environment]:
    async with Environment(EnvironmentConfig(), seeds=Seeds(3)) as environment:
        yield environment


def s3_client(env: Environment) -> Any:
    """boto3 on the coordinator's S3 path."""
    return boto3_client(f"http://{env.proxies['s3'].listen}")


def boto3_client(endpoint: str | None) -> Any:
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


async def put(client: Any, key: str) -> None:
    await asyncio.to_thread(client.put_object, Bucket=BUCKET, Key=key, Body=b"v")


def mine(env: Environment) -> dict[str, dict[str, int]]:
    """Counts of this test's requests (keys under t/), whatever the coordinator does meanwhile."""
    assert env.s3_layer is not None
    out: dict[str, dict[str, int]] = {}
    for r in env.s3_layer.requests:
        if r.key is not None and r.key.startswith("t/"):
            out.setdefault(r.operation, {}).setdefault(r.outcome, 0)
            out[r.operation][r.outcome] += 1
    return out


async def test_outage_fails_boto3_and_clear_restores_it(env: Environment) -> None:
    client = s3_client(env)
    async with create_fault({"kind": "s3_outage"}, env):
        with pytest.raises(ConnectionClosedError):
            await put(client, "t/1")
    await put(client, "t/1")
    assert mine(env) == {"PutObject": {"outage": 1, "forwarded": 1}}
    [window] = env.history.faults
    assert window.kind == "s3_outage" and window.end is not None


async def test_outage_modes_503_and_refuse(env: Environment) -> None:
    client = s3_client(env)
    async with create_fault({"kind": "s3_outage", "mode": "http-503"}, env):
        with pytest.raises(ClientError) as err:
            await put(client, "t/503")
        assert err.value.response["Error"]["Code"] == "ServiceUnavailable"
    async with create_fault({"kind": "s3_outage", "mode": "refuse"}, env):
        # through Toxiproxy the refusal shows as a closed connection; straight at the layer it is
        # a refused connect
        with pytest.raises((ConnectionClosedError, EndpointConnectionError)):
            await put(client, "t/refused")
    await put(client, "t/after")


async def test_error_and_slowdown_give_their_codes_only_where_selected(env: Environment) -> None:
    client = s3_client(env)
    spec = {"kind": "s3_error", "status": 500, "code": "InternalError", "operations": ["PutObject"]}
    async with create_fault(spec, env):
        with pytest.raises(ClientError) as err:
            await put(client, "t/a")
        assert err.value.response["Error"]["Code"] == "InternalError"
        await asyncio.to_thread(client.list_objects_v2, Bucket=BUCKET, Prefix="t/")
    async with create_fault({"kind": "s3_slowdown", "key_pattern": "t/slow/*"}, env):
        with pytest.raises(ClientError) as slow:
            await put(client, "t/slow/1")
        assert slow.value.response["Error"]["Code"] == "SlowDown"
        assert slow.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
        await put(client, "t/fast/1")
    assert mine(env) == {"PutObject": {"injected-error": 2, "forwarded": 1}}


async def test_latency_adds_latency(env: Environment) -> None:
    client = s3_client(env)
    await put(client, "t/warm")
    async with create_fault({"kind": "s3_latency", "latency_ms": 500}, env):
        started = time.monotonic()
        await put(client, "t/slow")
        assert time.monotonic() - started >= 0.5


async def test_drop_after_means_s3_did_it(env: Environment) -> None:
    client = s3_client(env)
    async with create_fault({"kind": "s3_drop", "when": "after", "operations": ["PutObject"]}, env):
        with pytest.raises(ConnectionClosedError):
            await put(client, "t/done-but-unknown")
    head = await asyncio.to_thread(client.head_object, Bucket=BUCKET, Key="t/done-but-unknown")
    assert head["ContentLength"] == 1


async def test_the_coordinators_own_s3_writes_are_faulted_and_counted(env: Environment) -> None:
    layer = env.s3_layer
    assert layer is not None
    async with create_fault({"kind": "s3_outage", "operations": ["PutObject"]}, env) as fault:
        await post_change(env.client_urls().http, "db1", "written during the outage")
        await poll_until(lambda: layer.count(operations=["PutObject"], outcome="outage") >= 1, 30.0)
        window = fault.window
    assert window is not None and window.end is not None
    during = layer.count(operations=["PutObject"], since=window.start, until=window.end)
    assert during == layer.count(operations=["PutObject"], outcome="outage") >= 1
    # once S3 is back the batch arrives (the coordinator retries); read it straight from moto
    direct = boto3_client(env.s3_direct_url)
    await poll_until(lambda: layer.count(operations=["PutObject"], outcome="forwarded") >= 1, 60.0)
    listed = await asyncio.to_thread(direct.list_objects_v2, Bucket=BUCKET)
    assert any("db1/batches/" in o["Key"] for o in listed.get("Contents", []))
