"""pytest plugin (entry point `pytest11`): resilience tests in a few lines.

Fixtures: `sut` (the whole environment: coordinator, Toxiproxy, moto + S3 fault layer, proxies),
`toxiproxy` (a toxiproxy-server alone), `s3` (moto behind the S3 fault layer), `coordinator`
(the bundled coordinator alone), `harness_seeds`, `harness_history`, and `harness_no_leftovers`
(fails a test that leaves a harness process, port or temp dir behind). Options of `sut` come
from the `sut` marker: `@pytest.mark.sut(heartbeat_interval_ms=200, with_s3=False)`.

This module is loaded in every pytest run of the environment, so it imports nothing heavy at
import time: the harness is imported inside the fixtures.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

try:
    import pytest_asyncio

    async_fixture: Any = pytest_asyncio.fixture
except ImportError:  # pragma: no cover - the fixtures then say what is missing
    async_fixture = pytest.fixture

if TYPE_CHECKING:
    from harness.env.coordinator_process import CoordinatorProcess
    from harness.env.environment import Environment
    from harness.env.moto_server import MotoServer
    from harness.env.s3_fault_layer import S3FaultLayer
    from harness.env.toxiproxy import ToxiproxyServer
    from harness.history import History
    from harness.seed import Seeds

SUT_MARKER = "sut"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("sync-chaos-harness")
    group.addoption(
        "--harness-seed",
        action="store",
        default=None,
        help="seed of every random choice of the harness fixtures (default: $SYNC_HARNESS_SEED or random)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{SUT_MARKER}(**options): options of the `sut` fixture: EnvironmentConfig fields (target, "
        "with_s3, s3_bucket, client_proxies, ...) and CoordinatorOptions fields (heartbeat_interval_ms, "
        "admin_token, tokens, bugs, extra, ...)",
    )


@pytest.fixture
def harness_seeds(request: pytest.FixtureRequest) -> Seeds:
    """The test's seed; printed, so a failing test can be repeated with --harness-seed."""
    from harness.seed import Seeds

    raw = request.config.getoption("--harness-seed")
    seeds = Seeds(int(raw, 0)) if raw else Seeds.from_env()
    print(f"sync-chaos-harness {seeds.describe()}")
    return seeds


@pytest.fixture
def harness_history() -> History:
    from harness.history import History

    return History()


@pytest.fixture
def harness_no_leftovers() -> Iterator[None]:
    """Fails the test when a process, port or temp dir of the harness outlives it."""
    from harness.env import resources

    resources.forget_closed()
    yield
    left = resources.leftovers()
    if left:
        resources.kill_all_registered()
        pytest.fail("the harness left resources behind:\n  " + "\n  ".join(left), pytrace=False)


def _sut_config(request: pytest.FixtureRequest) -> Any:
    from dataclasses import fields

    from harness.env.coordinator_process import CoordinatorOptions
    from harness.env.environment import EnvironmentConfig

    options: dict[str, Any] = {}
    for marker in reversed(list(request.node.iter_markers(SUT_MARKER))):
        options.update(marker.kwargs)
    env_fields = {f.name for f in fields(EnvironmentConfig)}
    coordinator_fields = {f.name for f in fields(CoordinatorOptions)}
    unknown = set(options) - env_fields - coordinator_fields
    if unknown:
        raise pytest.UsageError(
            f"@pytest.mark.sut: unknown option(s) {sorted(unknown)}; "
            f"allowed: {sorted(env_fields | coordinator_fields)}"
        )
    coordinator = CoordinatorOptions(**{k: v for k, v in options.items() if k in coordinator_fields})
    env_options = {k: v for k, v in options.items() if k in env_fields and k != "coordinator"}
    return EnvironmentConfig(coordinator=coordinator, **env_options)


@async_fixture
async def sut(
    request: pytest.FixtureRequest, harness_seeds: Seeds, harness_history: History
) -> AsyncIterator[Environment]:
    """The system under test, up for the test and torn down after it, whatever happens."""
    from harness.env.environment import Environment

    async with Environment(_sut_config(request), seeds=harness_seeds, history=harness_history) as env:
        yield env


@async_fixture
async def toxiproxy(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ToxiproxyServer]:
    """A toxiproxy-server on 127.0.0.1 (its `client` makes proxies and toxics)."""
    from harness.env.toxiproxy import ToxiproxyServer

    async with ToxiproxyServer(tmp_path_factory.mktemp("toxiproxy")) as server:
        yield server


@dataclass
class S3Stack:
    """moto behind the S3 fault layer: `url` goes through the faults, `direct_url` does not."""

    moto: MotoServer
    layer: S3FaultLayer
    bucket: str

    @property
    def url(self) -> str:
        return self.layer.url

    @property
    def direct_url(self) -> str:
        return self.moto.url

    def boto3_client(self, direct: bool = False, attempts: int = 1) -> Any:
        """A boto3 S3 client (call it from a thread: the layer runs on the test's loop)."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.direct_url if direct else self.url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=Config(retries={"total_max_attempts": attempts, "mode": "standard"}),
        )


@async_fixture
async def s3(tmp_path_factory: pytest.TempPathFactory, harness_seeds: Seeds) -> AsyncIterator[S3Stack]:
    """moto's S3 server with a bucket "harness", behind the S3 fault layer."""
    from harness.env.moto_server import MotoServer
    from harness.env.s3_fault_layer import S3FaultLayer

    async with MotoServer(tmp_path_factory.mktemp("moto")) as moto:
        await moto.create_bucket("harness")
        async with S3FaultLayer("127.0.0.1", moto.port, rng=harness_seeds.stream("s3-faults")) as layer:
            yield S3Stack(moto, layer, "harness")


@async_fixture
async def coordinator(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[CoordinatorProcess]:
    """The bundled coordinator alone (no S3), failpoints on, admin token "harness-admin"."""
    from harness.env.coordinator_process import CoordinatorProcess

    run_dir = tmp_path_factory.mktemp("coordinator")
    async with CoordinatorProcess(run_dir, run_dir / "data") as process:
        yield process
