"""Fixtures for the S3 persistence tests (helpers in s3_support.py)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.coordinator.s3.s3_support import FaultProxy, MotoServer, s3_admin


@pytest.fixture(autouse=True)
def _aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Fake credentials from the environment, and no lookups anywhere but 127.0.0.1."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    server = MotoServer(extra_env={"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"})
    try:
        server.start(tmp_path_factory.mktemp("moto") / "moto.log")
        yield server
    finally:
        server.stop()


@pytest.fixture
def bucket(moto_server: MotoServer) -> str:
    """A fresh bucket per test, so tests sharing the moto process never see each other's objects."""
    name = f"sync-{uuid.uuid4().hex[:12]}"
    s3_admin(moto_server.endpoint).create_bucket(Bucket=name)
    return name


@pytest.fixture
async def proxy(moto_server: MotoServer) -> AsyncIterator[FaultProxy]:
    fault_proxy = FaultProxy(moto_server.port)
    await fault_proxy.start()
    try:
        yield fault_proxy
    finally:
        await fault_proxy.close()
