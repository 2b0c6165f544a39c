"""`harness load`: Locust in its own processes against the bundled coordinator or a target,
with a scenario's faults on their timeline, judged by thresholds and the harness's checks.

Locust (gevent) never runs in this process: it is a child (`python -m locust`), or a master and
N worker children. The environment, the fault timeline and the checks are the ones
`harness run` uses (harness/env, harness/scenario/timeline.py, harness/checks): data flows the
same way, scenario -> environment and faults -> Locust users -> history sample -> checks.
Every Locust process is bounded: the profile stops the run after its duration, and this runner
kills what is still running a grace period later.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from harness.checks.observations import Observations
from harness.checks.registry import load_all, run_check
from harness.checks.result import CheckResult
from harness.env.coordinator_process import CoordinatorOptions
from harness.env.environment import BUNDLED, Environment, EnvironmentConfig
from harness.env.ports import LOCALHOST, free_port
from harness.env.process import ManagedProcess, ProcessError, ProcessSpec
from harness.history import History
from harness.load import results
from harness.load.profiles import LoadParams
from harness.load.thresholds import Threshold, ThresholdResult
from harness.scenario.model import Scenario
from harness.scenario.runner import RunOptions, _environment_config, check_bounds, target_profile
from harness.scenario.timeline import Timeline
from harness.seed import Seeds
from harness.targets.namespace import Namespace, new_nonce

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
END_GRACE_S = 30.0  # past the profile's duration before a Locust process is killed
START_GRACE_S = 30.0  # workers connecting, users spawning
DEFAULT_CHECKS = ("writes-accepted", "no-spurious-failures", "well-formed-messages")
Role = Literal["local", "master", "worker"]
_STATUS = {"held": "pass", "crossed": "fail", "unknown": "unknown"}


@dataclass
class LoadOptions:
    params: LoadParams
    out_dir: Path
    thresholds: list[Threshold] = field(default_factory=list)
    target_url: str | None = None
    target_profile: Path | None = None
    scenario: Scenario | None = None
    ui: bool = False
    web_port: int = 8089
    workers: int = 0  # 0: one Locust process; N: a master and N local workers
    role: Role = "local"  # master: wait for remote workers; worker: join --master-host
    master_host: str = LOCALHOST
    master_port: int | None = None
    admin_token: str | None = None
    progress: Callable[[str], None] = lambda line: None


@dataclass
class LoadRecord:
    """Everything the report needs from one load run."""

    params: LoadParams
    started_at: datetime
    ended_at: datetime
    target: str
    stats: dict[str, results.RequestStats]
    stats_by_method: list[results.RequestStats]
    failures: list[dict[str, Any]]
    series: list[dict[str, Any]]
    thresholds: list[ThresholdResult]
    checks: list[CheckResult]
    history: History
    sample_ops: int
    locust_exit: int | None
    notes: list[str] = field(default_factory=list)
    scenario: str | None = None
    workers: int = 0
    wall_t0: float = 0.0

    @property
    def passed(self) -> bool:
        return (
            not any(t.status == "crossed" for t in self.thresholds)
            and not any(c.status == "fail" for c in self.checks)
            and not self.vacuous()
        )

    def vacuous(self) -> list[str]:
        """Why this run cannot count as a pass although nothing crossed a line: it made no
        request at all, or a threshold the user gated on was never measured (a gate that could
        not be judged is not a gate that held)."""
        out: list[str] = []
        every = self.stats.get("all")
        if every is None or every.requests == 0:
            out.append("no request was made: the load run tested nothing")
        out += [
            f"threshold {t.threshold.text!r} was not measured ({t.summary})"
            for t in self.thresholds
            if t.status == "unknown"
        ]
        return out


def locust_argv(
    options: LoadOptions, role: Role | Literal["local-worker"], host: str, port: int | None
) -> list[str]:
    """The command line of one Locust process (a test of its own: no harness state in it)."""
    locust_dir = options.out_dir / "locust"
    argv = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--host", host, "--loglevel", "INFO"]
    if role in ("worker", "local-worker"):
        return [*argv, "--worker", "--master-host", options.master_host, "--master-port", str(port)]
    if options.ui:
        argv += [
            "--autostart",
            "--autoquit",
            "10",
            "--web-host",
            LOCALHOST,
            "--web-port",
            str(options.web_port),
        ]
    else:
        argv += ["--headless", "--only-summary"]
    argv += [
        "--json-file", str(locust_dir / "stats"),
        "--csv", str(locust_dir / "locust"), "--csv-full-history",
        "--html", str(locust_dir / "locust.html"),
        "--stop-timeout", "5",
    ]  # fmt: skip
    if role == "master" or options.workers > 0:
        argv += [
            "--master",
            "--expect-workers",
            str(max(1, options.workers)),
            "--master-bind-port",
            str(port),
        ]
        if role != "master":  # local workers only: nothing listens beyond loopback
            argv += ["--master-bind-host", LOCALHOST]
    return argv


def _process(name: str, argv: list[str], env: dict[str, str], run_dir: Path) -> ManagedProcess:
    return ManagedProcess(
        ProcessSpec(name=name, argv=argv, run_dir=run_dir, env=env, cwd=Path.cwd(), stop_timeout_s=10.0)
    )


def locust_env(params: LoadParams) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HARNESS_LOAD_")}
    env.update(params.to_env())
    root = str(Path(__file__).resolve().parents[2])  # so `harness` imports from a plain checkout too
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


async def run_worker(options: LoadOptions) -> int:
    """`harness load --worker --master-host H`: one Locust worker until its master ends the run."""
    run_dir = options.out_dir / "locust"
    host = options.target_url or "http://unused.invalid/sync"  # the master sends the host to use
    worker = _process(
        "locust-worker",
        locust_argv(options, "worker", host, options.master_port or 5557),
        locust_env(options.params),
        run_dir,
    )
    await worker.start()
    try:
        return await worker.wait(options.params.duration_s + START_GRACE_S + END_GRACE_S + 3600)
    finally:
        await worker.stop()


async def run_load(options: LoadOptions) -> LoadRecord:
    load_all()
    say = options.progress
    scenario = options.scenario
    params = options.params
    history = History()
    t0 = time.monotonic() - history.now()  # the history's run start, on the clock Locust reads too
    wall_t0 = time.time() - history.now()  # the same moment on the wall clock (Locust's CSV times)
    started = datetime.now(UTC)
    notes: list[str] = []
    out = options.out_dir
    sample_dir = out / "sample"
    for folder in (out / "locust", sample_dir):
        folder.mkdir(parents=True, exist_ok=True)
    for stale in sample_dir.glob("history-*.jsonl"):
        stale.unlink()
    nonce = new_nonce()
    namespace = Namespace(
        scenario.name if scenario else f"load-{params.profile}",
        scenario.seed if scenario else 1,
        nonce,
        params.database_prefix,
    )
    params.database_prefix = namespace.prefix + "."
    params.history_dir, params.t0 = str(sample_dir), t0
    env_config, bounds = _config(options, namespace, notes)
    seeds = Seeds(scenario.seed if scenario else 1)
    locust_exit: int | None = None
    async with Environment(env_config, seeds, history) as env:
        host = env.client_urls().http
        say(f"load {params.profile}: {params.users} users, {params.duration_s:g} s against {host}")
        loop = asyncio.get_running_loop()
        timeline = Timeline(scenario, env, history) if scenario is not None and scenario.timeline else None
        nemesis = asyncio.create_task(timeline.run(loop.time())) if timeline is not None else None
        try:
            locust_exit = await _run_locust(options, host, locust_env(params), notes)
        finally:
            if nemesis is not None:
                nemesis.cancel()
                await asyncio.gather(nemesis, return_exceptions=True)
            notes.extend(f"clearing a fault: {e}" for e in await env.clear_faults())
            if timeline is not None:
                notes.extend(timeline.problems)
        target = "bundled" if env_config.target == BUNDLED else env_config.target
    sample_ops = results.merge_sample(history, sample_dir)
    if sample_ops == 0:
        notes.append(
            "the history sample is empty (history_max_ops 0, or remote workers keep theirs): the checks say unknown"
        )
    entries = results.read_stats(out / "locust" / "stats.json")
    if not entries:
        notes.append("Locust wrote no final stats: see locust/*.log")
    stats = results.by_name(entries)
    thresholds = [t.judge(stats) for t in options.thresholds]
    checks = [run_check(name, history, Observations(), b) for name, b in bounds.items()]
    for r in thresholds:
        say(f"  {_STATUS[r.status]:7} {r.threshold.text}: {r.summary}")
    for c in checks:
        say(f"  {c.status:7} {c.name}: {c.summary}")
    return LoadRecord(
        params=params,
        started_at=started,
        ended_at=datetime.now(UTC),
        target=target,
        stats=stats,
        stats_by_method=results.by_method(entries),
        failures=results.read_failures(out / "locust" / "locust_failures.csv"),
        series=results.read_history_csv(out / "locust" / "locust_stats_history.csv"),
        thresholds=thresholds,
        checks=checks,
        history=history,
        sample_ops=sample_ops,
        locust_exit=locust_exit,
        notes=notes,
        scenario=scenario.name if scenario else None,
        workers=options.workers,
        wall_t0=wall_t0,
    )


def _config(
    options: LoadOptions, namespace: Namespace, notes: list[str]
) -> tuple[EnvironmentConfig, dict[str, dict[str, Any]]]:
    """The environment to bring up and the checks (with bounds) to judge the sample by: the
    scenario's, as `harness run` would, or the defaults for a load run without one."""
    logs = options.out_dir / "logs"
    scenario = options.scenario
    if scenario is not None:
        run_options = RunOptions(
            target_url=options.target_url,
            admin_token=options.admin_token,
            target_profile=options.target_profile,
            run_dir=logs,
        )
        profile = target_profile(scenario, run_options, notes)
        bounds = check_bounds(scenario, profile) if scenario.checks else {n: {} for n in DEFAULT_CHECKS}
        return _environment_config(scenario, run_options, namespace, profile), bounds
    bounds = {n: {} for n in DEFAULT_CHECKS}
    if options.target_url is not None:
        return EnvironmentConfig(
            target=options.target_url, with_s3=False, admin_token=options.admin_token, run_dir=logs
        ), bounds
    return EnvironmentConfig(
        target=BUNDLED, coordinator=CoordinatorOptions(), with_s3=False, run_dir=logs, client_proxies=[]
    ), bounds


async def _run_locust(options: LoadOptions, host: str, env: dict[str, str], notes: list[str]) -> int | None:
    """The master (or the single process) and its local workers, to their end or their bound."""
    run_dir = options.out_dir / "locust"
    distributed = options.workers > 0 or options.role == "master"
    port = (options.master_port or free_port()) if distributed else None
    main = _process("locust", locust_argv(options, options.role, host, port), env, run_dir)
    workers = [
        _process(f"locust-worker-{i}", locust_argv(options, "local-worker", host, port), env, run_dir)
        for i in range(options.workers if options.role == "local" else 0)
    ]
    bound = options.params.duration_s + START_GRACE_S + END_GRACE_S
    try:
        await main.start()
        for worker in workers:
            await worker.start()
        if options.ui:
            options.progress(f"  Locust UI: http://{LOCALHOST}:{options.web_port}")
        try:
            return await main.wait(bound)
        except ProcessError as exc:
            notes.append(f"Locust overran its bound and was stopped: {exc}")
            return None
    finally:
        await main.stop()
        for worker in workers:
            with contextlib.suppress(ProcessError):
                await worker.wait(10.0)
            await worker.stop()
