"""The `harness load` subcommand: its options, their checks (exit 2 with a clear message) and
the run. harness/cli.py only registers it; nothing here imports Locust."""

from __future__ import annotations

import argparse
import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness.load.profiles import PROFILES, LoadParamError, LoadParams
from harness.load.thresholds import Threshold, ThresholdError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNITS = {None: 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


class LoadUsageError(ValueError):
    """Bad input to `harness load` (exit code 2)."""


def parse_duration(text: str) -> float:
    """`20`, `20s`, `5m`, `1h`, `1.5m` to seconds."""
    m = _DURATION.match(text)
    if m is None:
        raise argparse.ArgumentTypeError(f"{text!r}: a duration is a number with s, m or h (e.g. 30s, 5m)")
    return float(m[1]) * _UNITS[m[2]]


def add_parser(commands: Any) -> None:
    p = commands.add_parser(
        "load",
        help="load-test with Locust (a named profile), optionally with a scenario's faults",
        description="Runs Locust in its own processes against the bundled coordinator (brought up "
        "and torn down, Toxiproxy in the path) or --target; thresholds and the harness's checks "
        "decide the exit code: 0 pass, 1 a threshold crossed or a check failed, 2 bad input.",
    )
    p.add_argument(
        "--profile",
        choices=list(PROFILES),
        help="the load profile (default: the scenario's `load: profile`, HARNESS_LOAD_PROFILE, or steady)",
    )
    p.add_argument("--target", help="base URL of an external server, e.g. https://staging:8080/sync")
    p.add_argument("--target-profile", type=Path, help="YAML profile of the external target")
    p.add_argument("--users", type=int, help="peak users (default 10; the profile shapes it)")
    p.add_argument("--spawn-rate", type=float, help="users started per second (default 10)")
    p.add_argument("--duration", type=parse_duration, help="how long the profile runs, e.g. 20s, 5m")
    p.add_argument("--rate", type=float, help="requests per second per user (default 2)")
    p.add_argument("--databases", type=int, help="databases the users spread over (default 1)")
    p.add_argument("--mix", help="user kinds and weights, e.g. writer=3,subscriber=5,reader=1")
    p.add_argument("--scenario", type=Path, help="a scenario file: its faults, checks and `load:` section")
    p.add_argument(
        "--fail-on",
        action="append",
        default=[],
        metavar="THRESHOLD",
        help="e.g. 'apply->push p99>250ms', 'errors>1%%'; repeatable; crossing one exits 1",
    )
    p.add_argument("--ui", action="store_true", help="Locust's web UI on 127.0.0.1 (--web-port), autostarted")
    p.add_argument("--web-port", type=int, default=8089, help="port of Locust's web UI")
    p.add_argument("--workers", type=int, default=0, help="run a Locust master and N local worker processes")
    role = p.add_mutually_exclusive_group()
    role.add_argument(
        "--master", action="store_true", help="be a master waiting for --workers N remote workers"
    )
    role.add_argument("--worker", action="store_true", help="be a worker of the master at --master-host")
    p.add_argument("--master-host", default="127.0.0.1", help="the master's address (for --worker)")
    p.add_argument(
        "--master-port", type=int, help="the master's port (default: free port; 5557 for --worker)"
    )
    p.add_argument("--token-env", metavar="NAME", help="read the users' token from this environment variable")
    p.add_argument(
        "--admin-token-env", metavar="NAME", help="read the admin token from this environment variable"
    )
    p.add_argument(
        "--database-prefix", default="", help="before every database id (a staging token's grants)"
    )
    p.add_argument("--allow-remote", action="store_true", help="allow a target outside loopback (staging)")
    p.add_argument("--report-dir", type=Path, default=Path("reports"), help="reports/<run>/ goes here")


def build_params(args: argparse.Namespace, env: dict[str, str] | None = None) -> tuple[LoadParams, Any]:
    """Defaults < the scenario's `load:` section < HARNESS_LOAD_* variables < the command line."""
    from harness.scenario.loader import ScenarioError, load_scenario

    env = dict(os.environ if env is None else env)
    scenario = None
    params = LoadParams()
    if args.scenario is not None:
        try:
            scenario = load_scenario(args.scenario)
        except ScenarioError as exc:
            raise LoadUsageError(str(exc)) from exc
        section = scenario.raw.get("load") or {}
        if not isinstance(section, dict):
            raise LoadUsageError(f"{args.scenario}: `load:` is a mapping of load parameters")
        params = LoadParams.from_mapping({"duration_s": scenario.duration_s} | section)
    params = LoadParams.from_mapping(
        {k: v for k, v in LoadParams.from_env(env).__dict__.items() if f"HARNESS_LOAD_{k.upper()}" in env},
        params,
    )
    cli = {
        "profile": args.profile,
        "users": args.users,
        "spawn_rate": args.spawn_rate,
        "duration_s": args.duration,
        "rate": args.rate,
        "databases": args.databases,
        "mix": args.mix,
    }
    if args.database_prefix:
        cli["database_prefix"] = args.database_prefix
    params = LoadParams.from_mapping({k: v for k, v in cli.items() if v is not None}, params)
    if args.token_env:
        if os.environ.get(args.token_env) is None:
            raise LoadUsageError(f"--token-env {args.token_env}: the variable is not set")
        params.token = os.environ[args.token_env]
    if params.token is None and scenario is not None and scenario.target.token:
        params.token = scenario.target.token  # a name the bundled coordinator was started with
    if params.token is None and args.target_profile is not None:
        from harness.targets.profile import ProfileError, load_profile

        try:
            params.token = load_profile(args.target_profile).client_token()
        except ProfileError as exc:
            raise LoadUsageError(str(exc)) from exc
    return params.validate(), scenario


def run(args: argparse.Namespace, console: Any) -> int:
    import asyncio

    from harness.load.report import write_load_report
    from harness.load.runner import LoadOptions, run_load, run_worker
    from harness.targets.probe import is_loopback

    try:
        params, scenario = build_params(args)
        thresholds = [Threshold.parse(t) for t in args.fail_on]
        if not 0 <= args.workers <= 64:
            raise LoadUsageError("--workers is between 0 and 64")
        target = args.target or (scenario.target.url if scenario is not None else None)
        if target is not None and not args.allow_remote and not is_loopback(target):
            raise LoadUsageError(f"{target} is not on loopback: pass --allow-remote to load-test it")
        if (
            args.worker
            and args.master_host
            and not args.allow_remote
            and not is_loopback(f"tcp://{args.master_host}")
        ):
            raise LoadUsageError(f"master {args.master_host} is not on loopback: pass --allow-remote")
        admin = None
        if args.admin_token_env:
            admin = os.environ.get(args.admin_token_env)
            if admin is None:
                raise LoadUsageError(f"--admin-token-env {args.admin_token_env}: the variable is not set")
    except (LoadUsageError, LoadParamError, ThresholdError) as exc:
        console.error(f"harness load: {exc}")
        return 2
    from harness.scenario.preflight import PreflightError, check_fault_targets, check_target

    try:  # as `harness run` does: fault targets exist, a target answers a v1 handshake
        if scenario is not None:
            check_fault_targets(scenario)
        if target is not None and not args.worker:
            asyncio.run(check_target(target, params.token, args.allow_remote))
    except PreflightError as exc:
        console.error(f"harness load: {exc}")
        return 2
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out_dir = args.report_dir / f"load-{params.profile}-{stamp}"
    options = LoadOptions(
        params=params,
        out_dir=out_dir,
        thresholds=thresholds,
        target_url=target if args.target else None,
        target_profile=args.target_profile,
        scenario=scenario,
        ui=args.ui,
        web_port=args.web_port,
        workers=args.workers,
        role="worker" if args.worker else "master" if args.master else "local",
        master_host=args.master_host,
        master_port=args.master_port,
        admin_token=admin,
        progress=console.line,
    )
    from harness.cli import _stoppable  # SIGTERM stops a load run as Ctrl-C does, cleaning up

    if args.worker:
        return asyncio.run(_stoppable(run_worker(options)))
    record = asyncio.run(_stoppable(run_load(options)))
    paths = write_load_report(out_dir, record)
    console.line(f"report: {paths['html']}")
    for problem in record.vacuous():
        console.line(f"  fail    {problem}")
    return 0 if record.passed else 1
