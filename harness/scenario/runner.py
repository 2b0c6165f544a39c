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
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness.checks.observations import Observations
from harness.checks.registry import CHECKS, load_all, run_check
from harness.checks.result import CheckResult
from harness.client.behaviours import BEHAVIOURS, Behaviour, catch_up_all, read_server_state
from harness.client.sync_client import ClientConfig, SyncClient
from harness.env.command_target import CommandSpec
from harness.env.container_target import ContainerSpec
from harness.env.coordinator_process import CoordinatorOptions
from harness.env.environment import BUNDLED, COMMAND, CONTAINER, Environment, EnvironmentConfig
from harness.history import DEFAULT_PAYLOAD_CAP, History
from harness.report import RunRecord
from harness.scenario.model import ClientGroup, Scenario
from harness.scenario.observer import TargetObserver
from harness.scenario.timeline import Timeline
from harness.seed import Seeds
from harness.targets.namespace import Namespace, new_nonce
from harness.targets.profile import TargetProfile, bundled_profile, load_profile

Progress = Callable[[str], None]
END_GRACE_S = 15.0  # beyond the duration, for behaviours' final catch-up
CATCH_UP_S = 30.0
MAX_SETTLE_S = 60.0  # longest wait for an idle timeout before the final resource sample
BATCH_CHECKS = ("changes-paging",)  # checks judged against the target's get_changes batch size
POLICY_CHECKS = (
    "convergence",
    "no-lost-write",
    "durability",
    "lww-final-state",
    "writes-accepted",
    "snapshot-exactness",
)
DATABASE_PARAMS = ("foreign_database",)  # behaviour parameters that name a database


@dataclass
class RunOptions:
    target_url: str | None = None  # overrides the scenario's target (staging)
    token: str | None = None
    admin_token: str | None = None
    bugs: list[str] = field(default_factory=list)  # re-introduce catalogued bugs in the bundled coordinator
    target_profile: Path | None = None  # overrides the scenario's `target.profile` (external targets)
    target_command: CommandSpec | None = None  # run the scenario against this server command
    target_container: ContainerSpec | None = None  # ... or against this server image, as a container
    namespace: str | None = None  # the run nonce to reuse (replay); default a new one
    database_prefix: str = ""  # before every database id (what a staging token's grants match)
    run_dir: Path | None = None  # keep the environment's logs here
    full_payloads: bool = False  # record every frame whole (default: large ones as stubs)
    progress: Progress = lambda line: None


async def run_scenario(scenario: Scenario, options: RunOptions | None = None) -> RunRecord:
    options = options or RunOptions()
    load_all()
    say = options.progress
    seeds = Seeds(scenario.seed)
    history = History(payload_cap=None if options.full_payloads else DEFAULT_PAYLOAD_CAP)
    observations = Observations()
    started = datetime.now(UTC)
    results: list[CheckResult] = []
    notes: list[str] = []
    check_seconds: dict[str, float] = {}
    versions: dict[str, str | None] = {}
    namespace = Namespace(
        scenario.name, scenario.seed, options.namespace or new_nonce(), options.database_prefix
    )
    profile = target_profile(scenario, options, notes)
    say(f"{scenario.name}: seed {scenario.seed}, namespace {namespace.prefix}")
    env_config = _environment_config(scenario, options, namespace, profile, notes)
    async with Environment(env_config, seeds, history) as env:
        versions.update(env.versions())
        observations.capabilities = dict(profile.capabilities)
        used = {step.fault["kind"] for step in scenario.timeline if step.fault is not None}
        for kind, reason in env.unsupported_faults().items():
            if kind in used or (kind == "network" and used):
                notes.append(f"cannot cause {kind} here: {reason}")
        run = _Run(scenario, env, history, observations, seeds, options, notes, namespace, profile)
        await _run_phases(run)
    loop = asyncio.get_running_loop()
    for name, bounds in check_bounds(scenario, profile).items():
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
        scenario_data=scenario.to_json() | {"namespace": namespace.to_json(), "profile": profile.to_json()},
        versions=versions,
        notes=notes,
        check_seconds=check_seconds,
        observations=observations.to_json(),
    )


def target_profile(scenario: Scenario, options: RunOptions, notes: list[str]) -> TargetProfile:
    """What the run knows about its target: derived from the options the bundled coordinator is
    started with, or read from the external target's profile file (empty without one)."""
    file = options.target_profile or (Path(scenario.target.profile) if scenario.target.profile else None)
    if target_kind(scenario, options) == BUNDLED:
        if file is not None:
            notes.append(
                f"target profile {file} ignored: the bundled coordinator's profile follows its options"
            )
        return bundled_profile(scenario.target.coordinator_options)
    if file is None:
        notes.append("no target profile: bounds it would give are unknown (harness probe drafts one)")
        return TargetProfile()
    return load_profile(file)


def target_kind(scenario: Scenario, options: RunOptions) -> str:
    """What the run aims at: "url" (external), "command" or "bundled"; options override the scenario."""
    if options.target_url is not None:
        return "url"
    if options.target_command is not None:
        return COMMAND
    if options.target_container is not None:
        return CONTAINER
    if scenario.target.bundled:
        return BUNDLED
    if scenario.target.container is not None:
        return CONTAINER
    return COMMAND if scenario.target.command is not None else "url"


def check_bounds(scenario: Scenario, profile: TargetProfile | None = None) -> dict[str, dict[str, Any]]:
    """The scenario's bounds, with the ones that follow from the target's profile filled in where
    the scenario left them out (a heartbeat gap is judged against the target's own interval).
    For an external target the profile is its file, never the bundled coordinator's options; a
    bound neither gives stays unset and its check says `unknown`, naming the profile key."""
    if profile is None:
        profile = (
            bundled_profile(scenario.target.coordinator_options)
            if scenario.target.bundled
            else TargetProfile()
        )
    out = {name: dict(bounds) for name, bounds in scenario.checks.items()}
    out.update({name: {} for name in implied_checks(scenario) if name not in out})
    hb = profile.heartbeat_interval_ms
    if hb is not None:
        if "heartbeat-continuity" in out:
            out["heartbeat-continuity"].setdefault("interval_s", hb / 1000.0)
        if "degradation-announced" in out:
            out["degradation-announced"].setdefault("heartbeat_interval_s", hb / 1000.0)
    idle = profile.idle_store_timeout_ms
    if "leaked-resources" in out and idle is not None:
        out["leaked-resources"].setdefault("settle_s", idle / 1000.0 + 2.0)
    if profile.tombstone_policy is not None:
        for name in POLICY_CHECKS:
            spec = CHECKS.get(name)
            if name in out and spec is not None and "tombstone_policy" in spec.params:
                out[name].setdefault("tombstone_policy", profile.tombstone_policy)
    if profile.batch_size is not None:
        for name in BATCH_CHECKS:
            spec = CHECKS.get(name)
            if name in out and spec is not None and "batch_size" in spec.params:
                out[name].setdefault("batch_size", profile.batch_size)
    return out


def implied_checks(scenario: Scenario) -> list[str]:
    """Checks every run of this kind is judged by, named or not: a scenario whose clients write
    cannot pass on the strength of checks that found nothing to judge, so writes-accepted
    judges whether the target took its valid writes at all."""
    writing = any(getattr(BEHAVIOURS.get(group.behaviour), "writes", False) for group in scenario.clients)
    return ["writes-accepted"] if writing else []


def settle_time(scenario: Scenario, profile: TargetProfile | None = None) -> float:
    """Long enough after the clients leave for every check that judges the quiet state, capped
    (leaked-resources' max_settle_s): beyond the cap that check says unknown rather than wait."""
    bounds = check_bounds(scenario, profile)
    wanted = 0.0
    if "leaked-resources" in bounds:
        leaked = bounds["leaked-resources"]
        settle = leaked.get("settle_s")
        cap = float(leaked.get("max_settle_s", MAX_SETTLE_S))
        if settle is not None and float(settle) <= cap:
            wanted = float(settle) + 1.0
    return max(scenario.settle_s, wanted)


def _environment_config(
    scenario: Scenario, options: RunOptions, namespace: Namespace, profile: TargetProfile, notes: list[str]
) -> EnvironmentConfig:
    target = scenario.target
    url = options.target_url or target.url
    command = options.target_command or target.command
    container = options.target_container if options.target_command is None else None
    if container is None and options.target_command is None:
        container = target.container
    if options.target_url is None and container is not None:
        server_options = _server_options(target.coordinator_options, namespace)
        if server_options and "{options_file}" not in " ".join(
            [*container.texts(), *container.s3_env.values()]
        ):
            notes.append(
                f"coordinator options ({', '.join(sorted(server_options))}) not applied: the container's "
                "command does not read {options_file}"
            )
        return EnvironmentConfig(
            target=CONTAINER,
            container=container,
            command_options=server_options,
            with_s3=target.s3,
            admin_token=options.admin_token or target.admin_token or profile.admin_token(),
            run_dir=options.run_dir,
        )
    if options.target_url is None and command is not None:
        server_options = dict(target.coordinator_options)
        if "tokens" in server_options:
            tokens = server_options["tokens"]
            server_options["tokens"] = [
                namespace.token_spec(str(t)) for t in (tokens if isinstance(tokens, list) else [tokens])
            ]
        if server_options and "{options_file}" not in " ".join(
            [*command.argv, *command.env.values(), *command.s3_env.values()]
        ):
            names = ", ".join(sorted(server_options))
            notes.append(
                f"coordinator options ({names}) not applied: the server command does not read {{options_file}}"
            )
        if options.bugs:
            notes.append("--bug not applied: it re-introduces bugs in the bundled coordinator only")
        return EnvironmentConfig(
            target=COMMAND,
            command=command,
            command_options=server_options,
            with_s3=target.s3,
            admin_token=options.admin_token or target.admin_token or profile.admin_token(),
            run_dir=options.run_dir,
        )
    if url is not None:
        return EnvironmentConfig(
            target=url,
            with_s3=False,
            admin_token=options.admin_token or target.admin_token or profile.admin_token(),
            run_dir=options.run_dir,
        )
    opts = dict(target.coordinator_options)
    tokens = opts.pop("tokens", [])
    coordinator = CoordinatorOptions(
        tokens=[namespace.token_spec(str(t)) for t in (tokens if isinstance(tokens, list) else [tokens])],
        enable_failpoints=target.failpoints,
        heartbeat_interval_ms=opts.pop("heartbeat_interval_ms", None),
        drain_timeout_ms=opts.pop("drain_timeout_ms", None),
        bugs=list(options.bugs),
        extra={key.replace("_", "-"): value for key, value in opts.items()},
    )
    return EnvironmentConfig(
        target=BUNDLED, coordinator=coordinator, with_s3=target.s3, run_dir=options.run_dir, client_proxies=[]
    )


def _server_options(options: dict[str, Any], namespace: Namespace) -> dict[str, Any]:
    """A scenario's server options for a server the harness starts but did not write, with its
    token grants namespaced like the run's databases."""
    out = dict(options)
    if "tokens" in out:
        tokens = out["tokens"]
        out["tokens"] = [
            namespace.token_spec(str(t)) for t in (tokens if isinstance(tokens, list) else [tokens])
        ]
    return out


@dataclass
class _Run:
    """Everything one run's phases share."""

    scenario: Scenario
    env: Environment
    history: History
    observations: Observations
    seeds: Seeds
    options: RunOptions
    notes: list[str]
    namespace: Namespace
    profile: TargetProfile


@contextlib.asynccontextmanager
async def task_scope() -> AsyncIterator[asyncio.TaskGroup]:
    """A TaskGroup (no task outlives the block, whatever ends it) that re-raises a single
    failure as itself rather than in an ExceptionGroup, so callers keep catching what the run
    raised (an environment that cannot set a client up, a Ctrl-C)."""
    try:
        async with asyncio.TaskGroup() as group:
            yield group
    except BaseExceptionGroup as group_error:
        if len(group_error.exceptions) == 1:
            raise group_error.exceptions[0] from None
        raise


async def _run_phases(run: _Run) -> None:
    """The observer samples the target for the whole run; it and the timeline live in one task
    scope, so a failure anywhere (a client that cannot be set up included) leaves no task."""
    observer = TargetObserver(run.env, run.history, run.observations)
    stop_observing = asyncio.Event()
    await observer.sample_once()  # the baseline, before any client connects
    async with task_scope() as background:
        background.create_task(observer.run(stop_observing, run.scenario.duration_s + 600))
        try:
            await _drive(run, background, stop_observing)
            await observer.sample_once()
            await _final_shutdown(run)
        finally:
            stop_observing.set()  # the observer ends with the run, whatever ended it
    await observer.finish()


async def _drive(run: _Run, background: asyncio.TaskGroup, stop_observing: asyncio.Event) -> None:
    """Clients and timeline for the scenario's duration, then catch-up, final state, settle."""
    scenario, env, notes, say = run.scenario, run.env, run.notes, run.options.progress
    clients = await _make_clients(run)
    timeline = Timeline(scenario, env, run.history)
    loop = asyncio.get_running_loop()
    started_at = loop.time()
    nemesis = background.create_task(timeline.run(started_at))
    say(
        f"  {sum(g.count for g in scenario.clients)} clients, {len(scenario.timeline)} timeline steps, "
        f"{scenario.duration_s:g} s"
    )
    try:
        deadline = loop.time() + scenario.duration_s + END_GRACE_S
        async with asyncio.TaskGroup() as group:  # _behave never raises: one crash stops no other
            behaviours = [group.create_task(_behave(b, start, deadline)) for b, start in clients]
        outcomes = [task.result() for task in behaviours]
        notes.extend(
            "a client behaviour overran its time bound and was cancelled" for o in outcomes if o is OVERRAN
        )
        for (behaviour, _), outcome in zip(clients, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                notes.append(f"client {behaviour.client.client_id} ({behaviour.name}) crashed: {outcome!r}")
            elif isinstance(outcome, str) and outcome.startswith("nothing to do"):
                notes.append(f"client {behaviour.client.client_id} ({behaviour.name}): {outcome}")
    finally:
        remaining = started_at + scenario.duration_s - loop.time()
        if remaining > 0 and not nemesis.done():  # faults keep their schedule to the end
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await asyncio.shield(nemesis)
        nemesis.cancel()
        await asyncio.gather(nemesis, return_exceptions=True)
        errors = await env.clear_faults()
        notes.extend(f"clearing a fault: {e}" for e in errors)
        notes.extend(timeline.problems)
    say("  catching up")
    failed = await catch_up_all([b.client for b, _ in clients if b.final_catch_up], CATCH_UP_S)
    if failed:
        notes.append(f"clients that could not catch up: {', '.join(failed)}")
    await _read_server_state(run)
    with contextlib.suppress(TimeoutError):  # settle: let idle timeouts pass while sampling
        async with asyncio.timeout(settle_time(scenario, run.profile)):
            await stop_observing.wait()


async def _final_shutdown(run: _Run) -> None:
    coordinator = run.env.coordinator
    if coordinator is not None and coordinator.process.running:
        run.options.progress("  graceful shutdown of the coordinator")
        try:
            await coordinator.process.terminate()
        except Exception as exc:  # the check reads the exit code and logs; this is a note
            run.notes.append(f"graceful shutdown: {exc}")


class _Overran:
    """A behaviour still running at its deadline (cancelled there)."""


OVERRAN = _Overran()


async def _behave(behaviour: Behaviour, start_at_s: float, deadline: float) -> str | Exception | _Overran:
    """Run one behaviour to its deadline. Its failure is returned, not raised, so it cancels
    no other client; a TimeoutError of its own is a failure, not an overrun."""
    bound = asyncio.timeout_at(deadline)
    try:
        async with bound:
            if start_at_s > 0:
                await asyncio.sleep(start_at_s)  # the scenario's schedule
            return await behaviour.run()
    except TimeoutError as exc:
        return OVERRAN if bound.expired() else exc
    except Exception as exc:
        return exc


async def _make_clients(run: _Run) -> list[tuple[Behaviour, float]]:
    scenario, env, seeds, ns = run.scenario, run.env, run.seeds, run.namespace
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
            token = _token(run, group.token)
            config = ClientConfig(
                ws_url=urls.ws,
                http_url=urls.http,
                database_id=ns.database(group.database),
                token=token,
                token_databases=granted_databases(scenario, token, run.profile, ns),
            )
            client = SyncClient(
                client_id,
                config,
                run.history,
                random.Random(rng.getrandbits(64)),
                site_id=ns.site_id(seeds, client_id),
            )
            behaviour_cls = BEHAVIOURS[group.behaviour]
            params = _coerce_params(behaviour_cls, group)
            for key in DATABASE_PARAMS:  # the behaviour's default too: every database id is the run's
                default = getattr(behaviour_cls, key, None)
                value = params.get(key, default if isinstance(default, str) else None)
                if isinstance(value, str):
                    params[key] = ns.database(value)
            duration = min(
                float(params.pop("duration_s", scenario.duration_s)),
                max(0.1, scenario.duration_s - group.start_at_s),
            )
            made.append(
                (behaviour_cls(client=client, rng=rng, duration_s=duration, **params), group.start_at_s)
            )
    return made


def _token(run: _Run, group_token: str | None) -> str | None:
    """The token a client presents: the group's, --token, the scenario's, the profile's. Tokens
    written in a scenario (a tenant test's) are names the bundled coordinator was started with;
    an external target knows one only when its profile names it (or takes any token), so there
    it is passed over for the next, and the run's notes say so."""
    external = target_kind(run.scenario, run.options) != BUNDLED
    candidates = (
        (group_token, True),
        (run.options.token, False),
        (run.scenario.target.token, True),
        (run.profile.client_token(), False),
    )
    for token, from_scenario in candidates:
        if token is None:
            continue
        if from_scenario and external and not run.profile.open_access and token not in run.profile.tokens:
            note = f"token {token!r} of the scenario is not in the target's profile: not used"
            if note not in run.notes:
                run.notes.append(note)
            continue
        return token
    return None


def granted_databases(
    scenario: Scenario, token: str | None, profile: TargetProfile, namespace: Namespace
) -> tuple[str, ...] | None:
    """The run's database ids `token` is granted among those the scenario uses (by the profile:
    the bundled coordinator's `tokens` option, or the external target's file), so tenant
    isolation can tell an intrusion attempt from an ordinary session. None when unknown or
    unrestricted."""
    globs = profile.grants(token)
    if globs is None or "*" in globs:
        return None
    names = {g.database for g in scenario.clients}
    for group in scenario.clients:
        for key in DATABASE_PARAMS:
            default = getattr(BEHAVIOURS.get(group.behaviour), key, None)
            value = group.params.get(key, default)
            if isinstance(value, str):
                names.add(value)
    return tuple(namespace.database(n) for n in sorted(names) if profile.granted(token, n))


def _coerce_params(cls: type[Behaviour], group: ClientGroup) -> dict[str, Any]:
    """YAML lists become tuples where the behaviour declares a tuple."""
    hints = typing.get_type_hints(cls)
    out = dict(group.params)
    for f in dataclasses.fields(cls):
        if f.name in out and typing.get_origin(hints.get(f.name)) is tuple:
            out[f.name] = tuple(out[f.name])
    return out


async def _read_server_state(run: _Run) -> None:
    """Fresh sites read each database directly (no fault in the way): its change log through a
    full get_changes pull (what convergence and no-lost-write compare the clients against) and
    its cells through a WS snapshot (what last-writer-wins is judged on: a log replays every
    applied change, so only the snapshot shows which value the cells were left with)."""
    scenario = run.scenario
    urls = run.env.direct_urls
    for database in sorted({g.database for g in scenario.clients}):
        token = next((g.token for g in scenario.clients if g.database == database and g.token), None)
        database_id = run.namespace.database(database)
        config = ClientConfig(
            ws_url=urls.ws,
            http_url=urls.http,
            database_id=database_id,
            token=_token(run, token),
        )
        for role, via in (("checker", "get_changes"), ("state", "snapshot")):
            client = SyncClient(
                f"{role}-{database}",
                config,
                run.history,
                run.seeds.stream(f"{role}:{database}"),
                site_id=run.namespace.site_id(run.seeds, f"{role}:{database}"),
            )
            try:
                await asyncio.wait_for(read_server_state(client, via), CATCH_UP_S)
            except Exception as exc:
                run.notes.append(f"could not read the server state of {database_id} ({via}): {exc}")
