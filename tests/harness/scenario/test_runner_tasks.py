"""Structured concurrency in the runner: a run that fails while starting leaves no task behind
(the observer used to be started outside the `try` and outlived a client that could not be set
up), and one crashing behaviour cancels no other."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from harness.checks.observations import Observations
from harness.env.environment import Environment, EnvironmentConfig, EnvironmentSetupError
from harness.history import History
from harness.scenario.loader import load_scenario
from harness.scenario.runner import OVERRAN, RunOptions, _behave, _Run, _run_phases, task_scope
from harness.seed import Seeds
from harness.targets.namespace import Namespace
from harness.targets.profile import TargetProfile

# A TLS target cannot be proxied, so a client with its own proxy cannot be set up.
SCENARIO = """\
name: setup-fails
description: one client whose own proxy cannot be made
seed: 5
duration_s: 5
target: {url: "https://127.0.0.1:9/sync"}
clients:
  - {name: lonely, behaviour: reader, via: own_proxy, params: {polls: 1}}
checks: [convergence]
"""


@pytest.fixture(autouse=True)
def _no_leftovers(harness_no_leftovers: None) -> None:
    """The environment's processes and temp dirs go too."""


async def test_a_client_setup_failure_leaves_no_task_running(tmp_path: Path) -> None:
    path = tmp_path / "setup-fails.yaml"
    path.write_text(SCENARIO)
    scenario = load_scenario(path)
    history, seeds = History(), Seeds(scenario.seed)
    config = EnvironmentConfig(target="https://127.0.0.1:9/sync", with_s3=False)
    async with Environment(config, seeds, history) as env:
        before = asyncio.all_tasks()
        run = _Run(
            scenario,
            env,
            history,
            Observations(),
            seeds,
            RunOptions(),
            [],
            Namespace(scenario.name, scenario.seed, "n0nce"),
            TargetProfile(),
        )
        with pytest.raises(EnvironmentSetupError, match="TLS"):  # itself, not in an ExceptionGroup
            await _run_phases(run)
        left = {t for t in asyncio.all_tasks() - before if not t.done()}
        assert not left, [t.get_coro() for t in left]


async def test_a_scope_cancels_its_tasks_and_raises_a_single_failure_as_itself() -> None:
    never = asyncio.Event()
    started = asyncio.Event()

    async def waits() -> None:
        started.set()
        await never.wait()

    with pytest.raises(KeyError):
        async with task_scope() as scope:
            task = scope.create_task(waits())
            await started.wait()
            raise KeyError("setup failed")
    assert task.cancelled()


class _Crashes:
    name = "crashes"

    async def run(self) -> str:
        raise RuntimeError("boom")


class _Hangs:
    name = "hangs"

    async def run(self) -> str:
        await asyncio.Event().wait()
        return "never"


class _OwnTimeout:
    name = "own-timeout"

    async def run(self) -> str:
        raise TimeoutError("its own request timed out")


async def test_a_behaviour_failure_is_returned_and_an_overrun_is_told_apart() -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 0.2
    crashed = await _behave(_Crashes(), 0, deadline)  # type: ignore[arg-type]
    assert isinstance(crashed, RuntimeError)
    own = await _behave(_OwnTimeout(), 0, deadline)  # type: ignore[arg-type]
    assert isinstance(own, TimeoutError)  # a failure of its own, not an overrun
    assert await _behave(_Hangs(), 0, deadline) is OVERRAN  # type: ignore[arg-type]
