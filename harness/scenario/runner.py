"""One scenario run, end to end, in the order data flows through the harness:
scenario -> environment and faults -> clients -> history -> checks -> report.

The run is bounded: clients end by themselves within the scenario's duration, the timeline is
cancelled at the end, every fault is cleared, and the environment is torn down whatever
happens (also on Ctrl-C). For a bundled target the run ends with a graceful shutdown of the
coordinator, so the shutdown and durability checks have something to judge.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness.checks.capabilities import REFERENCE_COORDINATOR
from harness.checks.observations import Observations
from harness.checks.registry import load_all, run_check
from harness.checks.result import CheckResult
from harness.client.behaviours import BEHAVIOURS, Behaviour, catch_up_all, read_server_state
from harness.client.sync_client import ClientConfig, SyncClient
from harness.env.coordinator_process import CoordinatorOptions
from harness.env.environment import BUNDLED, Environment, EnvironmentConfig
from harness.history import History
from harness.report import RunRecord
from harness.scenario.model import ClientGroup, Scenario
from harness.scenario.observer import TargetObserver
from harness.scenario.timeline import Timeline
from harness.seed import Seeds

Progress = Callable[[str], None]
END_GRACE_S = 15.0  # beyond the duration, for behaviours' final catch-up
CATCH_UP_S = 30.0


@dataclass
class RunOptions:
    target_url: str | None = None  # overrides the scenario's target (staging)
    token: str | None = None
    admin_token: str | None = None
    bugs: list[str] = field(default_factory=list)  # re-introduce catalogued bugs in the bundled coordinator
    run_dir: Path | None = None  # keep the environment's logs here
    progress: Progress = lambda line: None


async def run_scenario(scenario: Scenario, options: RunOptions | None = None) -> RunRecord:
    options = options or RunOptions()
    load_all()
    say = options.progress
    seeds = Seeds(scenario.seed)
    history = History()
    observations = Observations()
    started = datetime.now(UTC)
    results: list[CheckResult] = []
    notes: list[str] = []
    check_seconds: dict[str, float] = {}
    versions: dict[str, str | None] = {}
    say(f"{scenario.name}: seed {scenario.seed}")
    env_config = _environment_config(scenario, options)
    async with Environment(env_config, seeds, history) as env:
        versions.update(env.versions())
        observations.capabilities = dict(REFERENCE_COORDINATOR) if env_config.target == BUNDLED else {}
        used = {step.fault["kind"] for step in scenario.timeline if step.fault is not None}
        for kind, reason in env.unsupported_faults().items():
            if kind in used or (kind == "network" and used):
                notes.append(f"cannot cause {kind} here: {reason}")
        await _run_phases(scenario, env, history, observations, seeds, options, notes)
    loop = asyncio.get_running_loop()
    for name, bounds in check_bounds(scenario).items():
        t0 = loop.time()
        results.append(run_check(name, history, observations, bounds))
        check_seconds[name] = loop.time() - t0
    for result in results:
        say(f"  {result.status:7} {result.name}: {result.summary}")
    return RunRecord(
        scenario_name=scenario.name,
        seed=scenario.seed,
        history=history,
        checks=results,
        started_at=started,
        ended_at=datetime.now(UTC),
        scenario_path=scenario.path,
        scenario_data=scenario.to_json(),
        versions=versions,
        notes=notes,
        check_seconds=check_seconds,
        observations=observations.to_json(),
    )


def check_bounds(scenario: Scenario) -> dict[str, dict[str, Any]]:
    """The scenario's bounds, with the ones that follow from the bundled coordinator's own
    settings filled in where the scenario left them out (a heartbeat gap is judged against the
    interval the target was started with)."""
    out = {name: dict(bounds) for name, bounds in scenario.checks.items()}
    options = scenario.target.coordinator_options if scenario.target.bundled else {}
    hb = options.get("heartbeat_interval_ms")
    if hb is not None:
        if "heartbeat-continuity" in out:
            out["heartbeat-continuity"].setdefault("interval_s", float(hb) / 1000.0)
        if "degradation-announced" in out:
            out["degradation-announced"].setdefault("heartbeat_interval_s", float(hb) / 1000.0)
    idle = options.get("idle_store_timeout_ms")
    if "leaked-resources" in out and idle is not None:
        out["leaked-resources"].setdefault("settle_s", float(idle) / 1000.0 + 2.0)
    return out


def settle_time(scenario: Scenario) -> float:
    """Long enough after the clients leave for every check that judges the quiet state."""
    bounds = check_bounds(scenario)
    wanted = (
        float(bounds.get("leaked-resources", {}).get("settle_s", 0.0)) + 1.0
        if "leaked-resources" in bounds
        else 0.0
    )
    return max(scenario.settle_s, wanted)


def _environment_config(scenario: Scenario, options: RunOptions) -> EnvironmentConfig:
    target = scenario.target
    url = options.target_url or target.url
    if url is not None:
        return EnvironmentConfig(
            target=url,
            with_s3=False,
            admin_token=options.admin_token or target.admin_token,
            run_dir=options.run_dir,
        )
    opts = dict(target.coordinator_options)
    tokens = opts.pop("tokens", [])
    coordinator = CoordinatorOptions(
        tokens=list(tokens) if isinstance(tokens, list) else [str(tokens)],
        enable_failpoints=target.failpoints,
        heartbeat_interval_ms=opts.pop("heartbeat_interval_ms", None),
        drain_timeout_ms=opts.pop("drain_timeout_ms", None),
        bugs=list(options.bugs),
        extra={key.replace("_", "-"): value for key, value in opts.items()},
    )
    return EnvironmentConfig(
        target=BUNDLED, coordinator=coordinator, with_s3=target.s3, run_dir=options.run_dir, client_proxies=[]
    )


async def _run_phases(
    scenario: Scenario,
    env: Environment,
    history: History,
    observations: Observations,
    seeds: Seeds,
    options: RunOptions,
    notes: list[str],
) -> None:
    say = options.progress
    observer = TargetObserver(env, history, observations)
    stop_observing = asyncio.Event()
    await observer.sample_once()  # the baseline, before any client connects
    observing = asyncio.create_task(observer.run(stop_observing, scenario.duration_s + 600))
    clients = await _make_clients(scenario, env, history, seeds, options)
    timeline = Timeline(scenario, env, history)
    loop = asyncio.get_running_loop()
    started_at = loop.time()
    nemesis = asyncio.create_task(timeline.run(started_at))
    say(
        f"  {sum(g.count for g in scenario.clients)} clients, {len(scenario.timeline)} timeline steps, "
        f"{scenario.duration_s:g} s"
    )
    try:
        behaviours = [asyncio.create_task(_behave(b, start)) for b, start in clients]
        await asyncio.wait(behaviours, timeout=scenario.duration_s + END_GRACE_S)
        for task in behaviours:
            if not task.done():
                task.cancel()
                notes.append("a client behaviour overran its time bound and was cancelled")
        for (behaviour, _), outcome in zip(
            clients, await asyncio.gather(*behaviours, return_exceptions=True), strict=True
        ):
            if isinstance(outcome, BaseException) and not isinstance(outcome, asyncio.CancelledError):
                notes.append(f"client {behaviour.client.client_id} ({behaviour.name}) crashed: {outcome!r}")
    finally:
        remaining = started_at + scenario.duration_s - loop.time()
        if remaining > 0 and not nemesis.done():  # faults keep their schedule to the end
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(nemesis), remaining)
        nemesis.cancel()
        await asyncio.gather(nemesis, return_exceptions=True)
        errors = await env.clear_faults()
        notes.extend(f"clearing a fault: {e}" for e in errors)
        notes.extend(timeline.problems)
    say("  catching up")
    failed = await catch_up_all([b.client for b, _ in clients if b.final_catch_up], CATCH_UP_S)
    if failed:
        notes.append(f"clients that could not catch up: {', '.join(failed)}")
    await _read_server_state(scenario, env, history, seeds, options, notes)
    with contextlib.suppress(TimeoutError):  # settle: let idle timeouts pass while sampling
        await asyncio.wait_for(stop_observing.wait(), settle_time(scenario))
    await observer.sample_once()
    coordinator = env.coordinator
    if coordinator is not None and coordinator.process.running:
        say("  graceful shutdown of the coordinator")
        try:
            await coordinator.process.terminate()
        except Exception as exc:  # the check reads the exit code and logs; this is a note
            notes.append(f"graceful shutdown: {exc}")
    stop_observing.set()
    await observing
    await observer.finish()


async def _behave(behaviour: Behaviour, start_at_s: float) -> str:
    if start_at_s > 0:
        await asyncio.sleep(start_at_s)  # the scenario's schedule
    return await behaviour.run()


async def _make_clients(
    scenario: Scenario, env: Environment, history: History, seeds: Seeds, options: RunOptions
) -> list[tuple[Behaviour, float]]:
    made: list[tuple[Behaviour, float]] = []
    for group in scenario.clients:
        for index in range(group.count):
            client_id = f"{group.name}-{index}" if group.count > 1 else group.name
            if group.via == "own_proxy":
                await env.client_proxy(client_id)
                urls = env.client_urls(client_id)
            elif group.via == "direct":
                urls = env.direct_urls
            else:
                urls = env.client_urls()
            rng = seeds.stream(f"client:{client_id}")
            token = group.token or options.token or scenario.target.token
            config = ClientConfig(
                ws_url=urls.ws,
                http_url=urls.http,
                database_id=group.database,
                token=token,
                token_databases=granted_databases(scenario, token),
            )
            client = SyncClient(client_id, config, history, random.Random(rng.getrandbits(64)))
            behaviour_cls = BEHAVIOURS[group.behaviour]
            params = _coerce_params(behaviour_cls, group)
            duration = min(
                float(params.pop("duration_s", scenario.duration_s)),
                max(0.1, scenario.duration_s - group.start_at_s),
            )
            made.append(
                (behaviour_cls(client=client, rng=rng, duration_s=duration, **params), group.start_at_s)
            )
    return made


def granted_databases(scenario: Scenario, token: str | None) -> tuple[str, ...] | None:
    """The databases a token is granted on the bundled coordinator (from its `tokens` option:
    TOKEN or TOKEN:DB[=ro],DB...), so tenant isolation can tell an intrusion attempt from an
    ordinary session. None when unknown or unrestricted."""
    specs = scenario.target.coordinator_options.get("tokens") if scenario.target.bundled else None
    if token is None or not isinstance(specs, list):
        return None
    for spec in specs:
        name, sep, grants = str(spec).partition(":")
        if name == token:
            return tuple(g.split("=", 1)[0].strip() for g in grants.split(",")) if sep else None
    return None


def _coerce_params(cls: type[Behaviour], group: ClientGroup) -> dict[str, Any]:
    """YAML lists become tuples where the behaviour declares a tuple."""
    hints = typing.get_type_hints(cls)
    out = dict(group.params)
    for f in dataclasses.fields(cls):
        if f.name in out and typing.get_origin(hints.get(f.name)) is tuple:
            out[f.name] = tuple(out[f.name])
    return out


async def _read_server_state(
    scenario: Scenario,
    env: Environment,
    history: History,
    seeds: Seeds,
    options: RunOptions,
    notes: list[str],
) -> None:
    """A fresh site reads each database directly (no fault in the way): the server's state,
    which convergence and no-lost-write compare the clients against."""
    urls = env.direct_urls
    for database in sorted({g.database for g in scenario.clients}):
        token = next((g.token for g in scenario.clients if g.database == database and g.token), None)
        config = ClientConfig(
            ws_url=urls.ws,
            http_url=urls.http,
            database_id=database,
            token=token or options.token or scenario.target.token,
        )
        checker = SyncClient(f"checker-{database}", config, history, seeds.stream(f"checker:{database}"))
        try:
            await asyncio.wait_for(read_server_state(checker, "get_changes"), CATCH_UP_S)
        except Exception as exc:
            notes.append(f"could not read the server state of {database}: {exc}")
