"""The S3 fault layer in front of real moto, driven by real boto3 (in a thread: the layer
runs on the test's event loop)."""

from __future__ import annotations

import asyncio
import io
import random
import time
from typing import Any

import pytest
from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError

from harness.env.s3_fault_layer import S3FaultLayer, S3FaultRule
from harness.env.s3_operations import classify
from harness.pytest_plugin import S3Stack


async def call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    return await asyncio.to_thread(fn, *args, **kwargs)


async def test_boto3_works_through_the_layer_with_no_fault(s3: S3Stack) -> None:
    client = s3.boto3_client()
    body = bytes(range(256)) * 400
    await call(client.put_object, Bucket=s3.bucket, Key="db/batches/1.json", Body=body)
    got = await call(lambda: client.get_object(Bucket=s3.bucket, Key="db/batches/1.json")["Body"].read())
    assert got == body  # read in the thread too: the layer streams it on this loop
    big = b"x" * (9 * 1024 * 1024)  # multipart upload: CreateMultipartUpload, UploadPart x2, Complete
    await call(client.upload_fileobj, io.BytesIO(big), s3.bucket, "db/snapshots/big")
    head = await call(client.head_object, Bucket=s3.bucket, Key="db/snapshots/big")
    assert head["ContentLength"] == len(big)
    listed = await call(client.list_objects_v2, Bucket=s3.bucket, Prefix="db/")
    assert sorted(o["Key"] for o in listed["Contents"]) == ["db/batches/1.json", "db/snapshots/big"]
    await call(client.delete_object, Bucket=s3.bucket, Key="db/batches/1.json")
    await call(client.head_bucket, Bucket=s3.bucket)
    assert s3.layer.counts() == {
        "PutObject": {"forwarded": 1},
        "GetObject": {"forwarded": 1},
        "CreateMultipartUpload": {"forwarded": 1},
        "UploadPart": {"forwarded": 2},
        "CompleteMultipartUpload": {"forwarded": 1},
        "HeadObject": {"forwarded": 1},
        "ListObjectsV2": {"forwarded": 1},
        "DeleteObject": {"forwarded": 1},
        "HeadBucket": {"forwarded": 1},
    }
    assert all(r.status in (200, 204) for r in s3.layer.requests)


async def raw_exchange(port: int, head: bytes, body: bytes, expect_continue: bool) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head)
        await writer.drain()
        if expect_continue:
            interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10.0)
            assert interim.startswith(b"HTTP/1.1 100"), interim
        writer.write(body)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(-1), 10.0)  # Connection: close ends it
        for _ in range(8):  # werkzeug may repeat the interim answer
            if not answer.startswith(b"HTTP/1.1 100"):
                break
            answer = answer.split(b"\r\n\r\n", 1)[1]
        return answer
    finally:
        writer.close()


async def test_chunked_aws_chunked_body_after_100_continue_is_forwarded(s3: S3Stack) -> None:
    payload = b"hello aws-chunked world"
    inner = f"{len(payload):x}\r\n".encode() + payload + b"\r\n0\r\n\r\n"  # aws-chunked, unsigned
    body = f"{len(inner):x}\r\n".encode() + inner + b"\r\n0\r\n\r\n"  # HTTP chunked framing
    head = (
        f"PUT /{s3.bucket}/chunked HTTP/1.1\r\nHost: 127.0.0.1:{s3.layer.port}\r\n"
        "Content-Encoding: aws-chunked\r\nTransfer-Encoding: chunked\r\n"
        f"x-amz-decoded-content-length: {len(payload)}\r\n"
        "x-amz-content-sha256: STREAMING-UNSIGNED-PAYLOAD-TRAILER\r\n"
        "Expect: 100-continue\r\n\r\n"
    ).encode()
    answer = await raw_exchange(s3.layer.port, head, body, expect_continue=True)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    assert b"connection: close" in answer.lower()
    direct = s3.boto3_client(direct=True)
    stored = await call(lambda: direct.get_object(Bucket=s3.bucket, Key="chunked")["Body"].read())
    assert stored == payload


async def test_outage_makes_boto3_fail_and_clearing_it_makes_boto3_succeed(s3: S3Stack) -> None:
    client = s3.boto3_client()
    rule = s3.layer.add_rule(S3FaultRule("outage"))
    with pytest.raises(ConnectionClosedError):
        await call(client.put_object, Bucket=s3.bucket, Key="k", Body=b"v")
    s3.layer.remove_rule(rule)
    await call(client.put_object, Bucket=s3.bucket, Key="k", Body=b"v")
    assert s3.layer.counts() == {"PutObject": {"outage": 1, "forwarded": 1}}


async def test_refused_connections_while_refusing(s3: S3Stack) -> None:
    client = s3.boto3_client()
    await s3.layer.set_refusing(True)
    with pytest.raises(EndpointConnectionError):
        await call(client.head_bucket, Bucket=s3.bucket)
    await s3.layer.set_refusing(False)
    await call(client.head_bucket, Bucket=s3.bucket)


@pytest.mark.parametrize(
    ("status", "code"), [(500, "InternalError"), (503, "SlowDown"), (403, "AccessDenied")]
)
async def test_error_rate_one_gives_the_configured_status_and_code(
    s3: S3Stack, status: int, code: str
) -> None:
    s3.layer.add_rule(S3FaultRule("error", status=status, code=code, message="injected"))
    client = s3.boto3_client()
    with pytest.raises(ClientError) as err:
        await call(client.put_object, Bucket=s3.bucket, Key="k", Body=b"v" * 5000)
    assert err.value.response["Error"]["Code"] == code
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
    with pytest.raises(ClientError) as head_err:  # HEAD: status only, no body
        await call(client.head_object, Bucket=s3.bucket, Key="k")
    assert head_err.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
    assert s3.layer.count(outcome="injected-error") == 2


async def test_faults_select_by_operation_and_key_pattern(s3: S3Stack) -> None:
    client = s3.boto3_client()
    s3.layer.add_rule(S3FaultRule("error", operations=frozenset({"PutObject"}), key_pattern="db1/*"))
    with pytest.raises(ClientError):
        await call(client.put_object, Bucket=s3.bucket, Key="db1/batches/a", Body=b"1")
    await call(client.put_object, Bucket=s3.bucket, Key="db2/batches/a", Body=b"2")
    await call(client.list_objects_v2, Bucket=s3.bucket)
    assert s3.layer.counts() == {
        "PutObject": {"injected-error": 1, "forwarded": 1},
        "ListObjectsV2": {"forwarded": 1},
    }
    assert s3.layer.count(operations=["PutObject"]) == 2


async def test_latency_adds_latency(s3: S3Stack) -> None:
    client = s3.boto3_client()
    await call(client.head_bucket, Bucket=s3.bucket)  # warm the client
    s3.layer.add_rule(
        S3FaultRule("latency", latency_ms=400, operations=frozenset({"GetObject", "PutObject"}))
    )
    await call(client.put_object, Bucket=s3.bucket, Key="k", Body=b"v")
    started = time.monotonic()
    await call(client.get_object, Bucket=s3.bucket, Key="k")
    assert time.monotonic() - started >= 0.4
    assert s3.layer.requests[-1].added_latency_ms == 400


async def test_drop_after_lets_s3_do_it_and_loses_the_answer(s3: S3Stack) -> None:
    client = s3.boto3_client()
    rule = s3.layer.add_rule(S3FaultRule("drop", drop_when="after"))
    with pytest.raises(ConnectionClosedError):
        await call(client.put_object, Bucket=s3.bucket, Key="dropped-after", Body=b"done")
    s3.layer.remove_rule(rule)
    s3.layer.add_rule(S3FaultRule("drop", drop_when="before"))
    with pytest.raises(ConnectionClosedError):
        await call(client.put_object, Bucket=s3.bucket, Key="dropped-before", Body=b"lost")
    direct = s3.boto3_client(direct=True)
    listed = await call(direct.list_objects_v2, Bucket=s3.bucket)
    assert [o["Key"] for o in listed.get("Contents", [])] == ["dropped-after"]
    assert s3.layer.counts() == {"PutObject": {"dropped-after": 1, "dropped-before": 1}}


async def test_rate_draws_come_from_the_seeded_stream(s3: S3Stack) -> None:
    async def outcomes(seed: int) -> list[str]:
        layer = S3FaultLayer("127.0.0.1", s3.moto.port, rng=random.Random(seed))
        async with layer:
            layer.add_rule(S3FaultRule("error", rate=0.5))
            stack = S3Stack(s3.moto, layer, s3.bucket)
            client = stack.boto3_client()
            for _ in range(12):
                try:
                    await call(client.head_bucket, Bucket=s3.bucket)
                except ClientError:
                    pass
            return [r.outcome for r in layer.requests]

    first, again = await outcomes(7), await outcomes(7)
    assert first == again
    assert {"forwarded", "injected-error"} == set(first)


@pytest.mark.parametrize(
    ("method", "target", "headers", "operation"),
    [
        ("GET", "/", {}, "ListBuckets"),
        ("PUT", "/b", {}, "CreateBucket"),
        ("HEAD", "/b", {}, "HeadBucket"),
        ("GET", "/b?list-type=2&prefix=x", {}, "ListObjectsV2"),
        ("GET", "/b", {}, "ListObjects"),
        ("POST", "/b?delete", {}, "DeleteObjects"),
        ("PUT", "/b/k/1.json", {}, "PutObject"),
        ("PUT", "/b/k", {"x-amz-copy-source": "/b/j"}, "CopyObject"),
        ("PUT", "/b/k?partNumber=1&uploadId=u", {}, "UploadPart"),
        ("GET", "/b/k", {}, "GetObject"),
        ("HEAD", "/b/k", {}, "HeadObject"),
        ("DELETE", "/b/k", {}, "DeleteObject"),
        ("POST", "/b/k?uploads", {}, "CreateMultipartUpload"),
        ("POST", "/b/k?uploadId=u", {}, "CompleteMultipartUpload"),
        ("DELETE", "/b/k?uploadId=u", {}, "AbortMultipartUpload"),
        ("PATCH", "/b/k", {}, "Unknown"),
    ],
)
def test_operation_names(method: str, target: str, headers: dict[str, str], operation: str) -> None:
    assert classify(method, target, headers).operation == operation


async def test_concurrent_requests_are_all_forwarded_and_counted(s3: S3Stack) -> None:
    client = s3.boto3_client()

    def put(i: int) -> None:
        client.put_object(Bucket=s3.bucket, Key=f"c/{i}", Body=b"x" * (1000 + i))

    await asyncio.gather(*(asyncio.to_thread(put, i) for i in range(16)))
    assert s3.layer.counts() == {"PutObject": {"forwarded": 16}}
    listed = await call(s3.boto3_client(direct=True).list_objects_v2, Bucket=s3.bucket, Prefix="c/")
    assert listed["KeyCount"] == 16
