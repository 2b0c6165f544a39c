"""`harness run | suite | list`: run scenario files and say, truthfully, what held.

Exit codes: 0 when every check passed or was unknown (with --strict: passed, no step skipped),
1 when a check failed, 2 on a usage or scenario error (the message names the file and line),
3 on an internal error (a harness bug or an environment that would not start), 130 on Ctrl-C
and 143 on SIGTERM (after cleaning up).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shlex
import signal
import sys
from collections.abc import Awaitable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from harness import __version__
from harness.env.command_target import CommandTargetError
from harness.env.container_target import ContainerTargetError

if TYPE_CHECKING:
    from harness.env.command_target import CommandSpec
    from harness.env.container_target import ContainerSpec
    from harness.report.record import RunRecord

T = TypeVar("T")

INTERNAL_ERROR = 3
DEFAULT_SUITE_DIR = Path("scenarios")
DEFAULT_REPORT_DIR = Path("reports")


class Console:
    """Rich on a terminal, plain lines otherwise (CI logs)."""

    def __init__(self) -> None:
        self.rich: Any = None
        if sys.stdout.isatty():
            try:
                from rich.console import Console as RichConsole

                self.rich = RichConsole()
            except ImportError:  # pragma: no cover - rich is a dependency
                self.rich = None

    def line(self, text: str) -> None:
        if self.rich is not None:
            style = "red" if " fail " in f" {text} " else "green" if " pass " in f" {text} " else None
            self.rich.print(text, style=style, highlight=False)
        else:
            print(text, flush=True)

    def status(self, text: str) -> Any:
        """A live spinner line on a terminal (what is running now); nothing in CI logs."""
        if self.rich is not None:
            return self.rich.status(text, spinner="dots")
        return contextlib.nullcontext()

    def error(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="harness", description="Resilience harness for sync protocol v1 servers."
    )
    parser.add_argument("--version", action="version", version=f"harness {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run scenario files")
    run.add_argument("files", nargs="+", type=Path, help="scenario YAML files")
    # For `suite --jobs`: the child writes the directory of its run here (one file per run).
    run.add_argument("--run-dir-file", type=Path, help=argparse.SUPPRESS)
    _run_options(run)

    suite = commands.add_parser(
        "suite",
        help="run the default suite (scenarios/*.yaml): bundled coordinator, --target or --target-command",
    )
    suite.add_argument(
        "--dir", type=Path, default=DEFAULT_SUITE_DIR, help="folder of the suite's scenario files"
    )
    suite.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="scenarios at a time, each a `harness run` process with its own environment "
        "(output and summary as a sequential run's, in the same order)",
    )
    _run_options(suite)

    verify = commands.add_parser(
        "verify", help="the detection matrix: each bug scenario with and without its bug"
    )
    verify.add_argument(
        "--bug", action="append", default=[], metavar="ID", help="only these bugs (default: all)"
    )
    verify.add_argument("--jobs", type=int, default=2, help="runs at a time (each in its own environment)")
    verify.add_argument(
        "--repeat", type=int, default=1, help="runs without the bug, per scenario (false alarms)"
    )
    verify.add_argument(
        "--dir", type=Path, default=DEFAULT_SUITE_DIR / "bugs", help="folder of bug scenarios"
    )
    verify.add_argument("--seed", type=int, help="override every scenario's seed")
    verify.add_argument(
        "--job-timeout", type=float, default=600.0, help="seconds a run may take before it counts as an error"
    )
    verify.add_argument("--report-dir", type=Path, default=DEFAULT_REPORT_DIR)

    probe = commands.add_parser(
        "probe",
        help="detect a target's capabilities, heartbeat interval and tombstone policy; draft a profile",
    )
    probe.add_argument("--target", required=True, help="http://host:port/sync (or ws://.../sync/ws)")
    probe.add_argument("--token", help="token to present")
    probe.add_argument(
        "--admin-token-env", metavar="NAME", help="environment variable holding the admin token"
    )
    probe.add_argument("--write-profile", type=Path, metavar="FILE", help="write the drafted profile here")
    probe.add_argument(
        "--wait-s", type=float, default=12.0, help="longest wait for heartbeats (bounds the probe)"
    )
    probe.add_argument(
        "--database-prefix",
        default="harness-probe",
        help="the scratch database is PREFIX-<random>: choose one the token is granted",
    )
    probe.add_argument("--allow-remote", action="store_true", help="probe a target that is not on loopback")

    from harness.load.cli import add_parser as add_load_parser

    add_load_parser(commands)
    from harness.explore.cli import add_explore_parser, add_fuzz_parser

    add_explore_parser(commands)
    add_fuzz_parser(commands)

    listing = commands.add_parser("list", help="list scenarios, checks and faults")
    listing.add_argument("--dir", type=Path, default=DEFAULT_SUITE_DIR)
    listing.add_argument("--json", action="store_true", help="as JSON")
    return parser


def _run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, help="override the scenario's seed (printed and recorded either way)")
    p.add_argument(
        "--target", help="run against an external server (http://host:port/sync) instead of the bundled one"
    )
    p.add_argument(
        "--target-profile",
        type=Path,
        help="YAML profile of the external target: tokens, tombstone policy, timings, capabilities "
        "(`harness probe --write-profile` drafts one)",
    )
    p.add_argument(
        "--target-command",
        metavar="CMD",
        help="start this server command (split like a shell) instead of the bundled coordinator; "
        "placeholders {port} {host} {data_dir} {run_dir} {options_file} {s3_endpoint} {s3_bucket} {s3_region} "
        "{s3_prefix}",
    )
    p.add_argument(
        "--target-image",
        metavar="IMAGE",
        help="run this server image as a container (docker SDK) instead of the bundled coordinator; "
        "`reference`: the reference coordinator's image, built locally (harness.env.docker_images). "
        "--target-ready, --target-env and --target-s3-env apply to it",
    )
    p.add_argument(
        "--target-image-args",
        metavar="ARGS",
        help="the --target-image container's command (split like a shell, replaces the image's CMD; "
        "placeholders as for --target-command, as the container sees them)",
    )
    p.add_argument(
        "--target-image-port",
        type=int,
        default=3000,
        metavar="PORT",
        help="the --target-image server's port inside the container (published on 127.0.0.1; default 3000)",
    )
    p.add_argument(
        "--target-ready",
        default="tcp",
        metavar="tcp|PATH",
        help="when the --target-command server is ready: `tcp` (its port accepts) or an HTTP path "
        "answering 200, e.g. /sync/health (default: tcp)",
    )
    p.add_argument(
        "--target-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="environment variable of the --target-command server (placeholders allowed), repeatable",
    )
    p.add_argument(
        "--target-s3-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="environment variable of the --target-command server in runs with S3 only, e.g. "
        "COORDINATOR_S3_ENDPOINT={s3_endpoint}, repeatable",
    )
    p.add_argument(
        "--namespace",
        type=_nonce,
        metavar="NONCE",
        help="reuse a recorded run nonce (database and site ids), to replay on a fresh server; "
        "default: a new one per run",
    )
    p.add_argument(
        "--database-prefix",
        type=_database_prefix,
        default="",
        metavar="PREFIX",
        help="put PREFIX before every database id of the run (what a staging token's grants match, "
        "e.g. harness-)",
    )
    p.add_argument("--token", help="token the clients present (external targets)")
    p.add_argument(
        "--token-env",
        metavar="NAME",
        help="read the clients' token from this environment variable (recorded and replayed by name)",
    )
    p.add_argument(
        "--admin-token-env",
        metavar="NAME",
        help="read the admin token (/debug/resources, failpoints) from this environment variable",
    )
    p.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow a target outside 127.0.0.0/8 and ::1 (staging); without it only loopback is aimed at",
    )
    p.add_argument("--admin-token", help="admin token for /debug/resources (external targets)")
    p.add_argument("--report-dir", type=Path, default=DEFAULT_REPORT_DIR, help="where reports are written")
    p.add_argument(
        "--keep-logs", action="store_true", help="keep the environment's process logs in the report"
    )
    p.add_argument(
        "--strict",
        action="store_true",
        help="an unknown check or a skipped timeline step fails the run (for CI gates)",
    )
    p.add_argument(
        "--full-payloads",
        action="store_true",
        help="keep every frame whole in the journal (default: frames over 4 KiB are kept as their "
        "type, size, sha256 and the fields the checks read)",
    )
    p.add_argument(
        "--bug",
        action="append",
        default=[],
        metavar="ID",
        help="re-introduce a catalogued bug in the bundled coordinator (COORDINATOR_BUGS), repeatable",
    )


def _nonce(value: str) -> str:
    from harness.targets.namespace import NONCE_RE

    if not NONCE_RE.match(value):
        raise argparse.ArgumentTypeError("a nonce is 1 to 16 letters or digits")
    return value


def _database_prefix(text: str) -> str:
    from harness.targets.namespace import DATABASE_PREFIX_RE

    if not DATABASE_PREFIX_RE.match(text):
        raise argparse.ArgumentTypeError(f"{text!r}: at most 32 of [A-Za-z0-9_:.-]")
    return text


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    console = Console()
    try:
        if args.command == "list":
            return _list(args, console)
        if args.command == "verify":
            return _verify(args, console)
        if args.command == "load":
            from harness.load.cli import run as run_load_command

            return run_load_command(args, console)
        if args.command in ("explore", "fuzz"):
            from harness.explore import cli as explore_cli

            run = explore_cli.explore if args.command == "explore" else explore_cli.fuzz
            return run(args, console.line, console.error)
        if args.command == "probe":
            return asyncio.run(_stoppable(_probe(args, console)))
        files = sorted(args.dir.glob("*.yaml")) if args.command == "suite" else args.files
        if getattr(args, "jobs", 1) < 1:
            console.error("harness: --jobs must be at least 1")
            return 2
        if not files:
            console.error(f"harness: no scenario files in {args.dir}")
            return 2
        return asyncio.run(_stoppable(_run_files(files, args, console, suite=args.command == "suite")))
    except (CommandTargetError, ContainerTargetError) as exc:  # the server did not start: its own words
        console.error(f"harness: {exc}")
        return INTERNAL_ERROR
    except KeyboardInterrupt:
        console.error("harness: interrupted; everything it started has been stopped")
        return 130
    except asyncio.CancelledError:
        console.error("harness: terminated; everything it started has been stopped")
        return 143
    except Exception as exc:  # a harness bug or a broken environment: never "a check failed"
        console.error(f"harness: internal error: {type(exc).__name__}: {exc}")
        if os.environ.get("SYNC_HARNESS_TRACEBACK"):
            raise
        return INTERNAL_ERROR


async def _stoppable(work: Awaitable[T]) -> T:
    """SIGTERM (a CI timeout, `kill`, a container stop) stops a run as Ctrl-C does: the run is
    cancelled and every environment stops what it started before the process exits. Without
    this the default action would kill the harness and leave its servers running."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        return await work
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


async def _run_files(files: list[Path], args: argparse.Namespace, console: Console, suite: bool) -> int:
    from harness.report import write_run_report, write_suite_report
    from harness.scenario.loader import ScenarioError, load_scenario
    from harness.scenario.preflight import PreflightError
    from harness.scenario.runner import RunOptions, run_scenario

    try:
        scenarios = [load_scenario(path, seed=args.seed) for path in files]
    except ScenarioError as exc:
        console.error(f"harness: {exc}")
        return 2
    for option, name in (("token", args.token_env), ("admin_token", args.admin_token_env)):
        if name:
            if os.environ.get(name) is None:
                console.error(f"harness: --{option.replace('_', '-')}-env {name}: the variable is not set")
                return 2
            setattr(args, option, os.environ[name])
    try:
        target_command = _target_command(args)
        target_container = _target_container(args)
    except ValueError as exc:
        console.error(f"harness: {exc}")
        return 2
    profile_token: str | None = None
    if args.target_profile is not None:
        from harness.targets.profile import ProfileError, load_profile

        try:
            profile_token = load_profile(args.target_profile).client_token()
        except ProfileError as exc:
            console.error(f"harness: {exc}")
            return 2
    try:
        await _preflight(scenarios, args, args.token or profile_token)
    except PreflightError as exc:
        console.error(f"harness: {exc}")
        return 2
    if suite and getattr(args, "jobs", 1) > 1 and len(scenarios) > 1:
        return await _run_parallel(scenarios, args, console)
    records = []
    outcomes: list[tuple[str, RunRecord]] = []
    worst = 0
    for scenario in scenarios:
        options = RunOptions(
            target_url=args.target,
            token=args.token,
            admin_token=args.admin_token,
            progress=console.line,
            bugs=list(args.bug),
            target_profile=args.target_profile,
            target_command=target_command,
            target_container=target_container,
            namespace=args.namespace,
            database_prefix=args.database_prefix,
            full_payloads=args.full_payloads,
        )
        if args.keep_logs or target_command is not None or target_container is not None:  # evidence
            options.run_dir = args.report_dir / "logs" / scenario.name
            options.run_dir.mkdir(parents=True, exist_ok=True)
        with console.status(f"{scenario.name}: running ({scenario.duration_s:g} s of load and faults)"):
            record = await run_scenario(scenario, options)
        record.strict = args.strict
        record.options = _shaping_options(args)
        record.rerun = _rerun(scenario.path, scenario.seed, record, args)
        out = write_run_report(args.report_dir, record)
        if getattr(args, "run_dir_file", None) is not None:
            with open(args.run_dir_file, "a", encoding="utf-8") as listing:
                listing.write(f"{out}\n")
        records.append(out)
        code = record.effective_exit_code
        worst = max(worst, code)
        for step in record.skipped_steps():
            console.line(f"  skipped {step}")
        strict = record.strict_problems()
        if strict:
            console.line(
                f"  strict: {len(strict)} reasons this run cannot pass (unknown checks, skipped steps)"
            )
        console.line(f"{scenario.name}: {record.verdict}{' (strict: fail)' if strict else ''} -> {out}")
        console.line(f"  replay: {record.rerun_command()}")
        outcomes.append((str(out), record))
    if suite or len(records) > 1:
        suite_dir = write_suite_report(args.report_dir, records, name="suite" if suite else "run")
        for line in _summary_lines(outcomes):
            console.line(line)
        console.line(f"suite report: {suite_dir / 'index.html'}")
    return worst


def _target_command(args: argparse.Namespace) -> CommandSpec | None:
    """The --target-command server, with --target-ready and --target-env; ValueError names the
    mistake."""
    from harness.env.command_target import PLACEHOLDERS, CommandSpec, unknown_placeholders

    if args.target_command is None:
        if args.target_image:
            return None
        if args.target_env or args.target_s3_env or args.target_ready != "tcp":
            raise ValueError("--target-ready, --target-env and --target-s3-env go with --target-command")
        return None
    if args.target:
        raise ValueError("give --target (an external URL) or --target-command, not both")
    try:
        argv = shlex.split(args.target_command)
    except ValueError as exc:
        raise ValueError(f"--target-command: {exc}") from None
    if not argv:
        raise ValueError("--target-command: empty command")
    env = _assignments("--target-env", args.target_env)
    s3_env = _assignments("--target-s3-env", args.target_s3_env)
    bad = unknown_placeholders([*argv, *env.values(), *s3_env.values()])
    if bad:
        known = ", ".join("{" + p + "}" for p in PLACEHOLDERS)
        raise ValueError(f"--target-command: unknown placeholder {{{bad[0]}}}; known: {known}")
    ready = ("tcp", "") if args.target_ready == "tcp" else ("http", args.target_ready)
    if ready[0] == "http" and not ready[1].startswith("/"):
        raise ValueError(f"--target-ready {args.target_ready!r}: `tcp` or a path starting with '/'")
    return CommandSpec(argv=tuple(argv), env=env, s3_env=s3_env, ready=ready)


def _target_container(args: argparse.Namespace) -> ContainerSpec | None:
    """The --target-image container with its args, readiness and environment; `reference`
    is built or loaded here, before any run starts. ValueError names the mistake."""
    from harness.env.command_target import PLACEHOLDERS, unknown_placeholders
    from harness.env.container_target import ContainerSpec

    if not args.target_image:
        if args.target_image_args:
            raise ValueError("--target-image-args goes with --target-image")
        return None
    if args.target or args.target_command:
        raise ValueError("give one of --target, --target-command and --target-image")
    image = args.target_image
    if image == "reference":
        from harness.env.docker_images import ImageError, ensure

        try:
            image = ensure()["coordinator"]
        except ImageError as exc:
            raise ValueError(f"--target-image reference: {exc}") from None
    try:
        command = shlex.split(args.target_image_args) if args.target_image_args else None
    except ValueError as exc:
        raise ValueError(f"--target-image-args: {exc}") from None
    env = _assignments("--target-env", args.target_env)
    s3_env = _assignments("--target-s3-env", args.target_s3_env)
    bad = unknown_placeholders([*(command or []), *env.values(), *s3_env.values()])
    if bad:
        known = ", ".join("{" + p + "}" for p in PLACEHOLDERS)
        raise ValueError(f"--target-image-args: unknown placeholder {{{bad[0]}}}; known: {known}")
    ready = ("tcp", "") if args.target_ready == "tcp" else ("http", args.target_ready)
    if ready[0] == "http" and not ready[1].startswith("/"):
        raise ValueError(f"--target-ready {args.target_ready!r}: `tcp` or a path starting with '/'")
    return ContainerSpec(
        image=image,
        command=tuple(command) if command is not None else None,
        env=env,
        s3_env=s3_env,
        ready=ready,
        port=args.target_image_port,
    )


def _assignments(option: str, items: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ValueError(f"{option} {item!r}: expected NAME=VALUE")
        out[name] = value
    return out


def _managed_target_words(args: argparse.Namespace) -> list[str]:
    """The options that start the server the harness manages (a command or an image), as given:
    for the replay line and for the child runs of `suite --jobs` (which once lost an image)."""
    command, image = getattr(args, "target_command", None), getattr(args, "target_image", None)
    if not command and not image:
        return []
    words: list[str] = ["--target-command", str(command)] if command else ["--target-image", str(image)]
    if image and args.target_image_args:
        words += ["--target-image-args", args.target_image_args]
    if image and args.target_image_port != 3000:
        words += ["--target-image-port", str(args.target_image_port)]
    if args.target_ready != "tcp":
        words += ["--target-ready", args.target_ready]
    for item in args.target_env:
        words += ["--target-env", item]
    for item in args.target_s3_env:
        words += ["--target-s3-env", item]
    return words


def _forwarded_options(args: argparse.Namespace) -> list[str]:
    """The options of `harness suite` a child `harness run` takes as they were given (tokens
    by variable name stay names; a token given on the command line was on it already)."""
    words = ["--report-dir", str(args.report_dir)]
    values = {
        "--seed": args.seed,
        "--target": args.target,
        "--target-profile": args.target_profile,
        "--namespace": args.namespace,
        "--database-prefix": args.database_prefix or None,
        "--token-env": args.token_env,
        "--admin-token-env": args.admin_token_env,
    }
    if not args.token_env:
        values["--token"] = args.token
    if not args.admin_token_env:
        values["--admin-token"] = args.admin_token
    for flag, value in values.items():
        if value is not None:
            words += [flag, str(value)]
    words += _managed_target_words(args)
    for flag in ("allow_remote", "keep_logs", "strict", "full_payloads"):
        if getattr(args, flag, False):
            words.append("--" + flag.replace("_", "-"))
    for bug in args.bug:
        words += ["--bug", bug]
    return words


async def _run_parallel(scenarios: list[Any], args: argparse.Namespace, console: Console) -> int:
    """`suite --jobs N`: each scenario in a `harness run` process of its own, N at a time; the
    same lines as a sequential suite, in the same order, then the same summary and suite report."""
    from harness.report import write_suite_report
    from harness.report.journal import load_journal, record_from_journal
    from harness.suite import JOB_TIMEOUT_S, run_parallel

    files = [Path(s.path) for s in scenarios]
    timeouts = [JOB_TIMEOUT_S + float(s.duration_s) for s in scenarios]
    results = await run_parallel(files, _forwarded_options(args), args.jobs, console.line, timeouts)
    worst = 0
    run_dirs: list[Path] = []
    outcomes: list[tuple[str, RunRecord]] = []
    for result in results:
        worst = max(worst, result.exit_code if result.exit_code >= 0 else INTERNAL_ERROR)
        if result.run_dir is None:
            worst = max(worst, INTERNAL_ERROR if result.exit_code in (0, 1) else result.exit_code)
            continue
        run_dirs.append(result.run_dir)
        outcomes.append((str(result.run_dir), record_from_journal(load_journal(result.run_dir))))
    if run_dirs:
        suite_dir = write_suite_report(args.report_dir, run_dirs, name="suite")
        for line in _summary_lines(outcomes):
            console.line(line)
        console.line(f"suite report: {suite_dir / 'index.html'}")
    return worst


def _shaping_options(args: argparse.Namespace) -> dict[str, Any]:
    """Every command-line option that shaped the run, for the journal (tokens: whether one was
    given, never its value)."""
    return {
        "seed": args.seed,
        "bugs": list(args.bug),
        "target": args.target,
        "target_profile": str(args.target_profile) if args.target_profile else None,
        "target_command": args.target_command,
        "target_ready": args.target_ready if (args.target_command or args.target_image) else None,
        "target_image": args.target_image,
        "target_image_args": args.target_image_args,
        "target_env": sorted(i.partition("=")[0] for i in args.target_env),
        "target_s3_env": sorted(i.partition("=")[0] for i in args.target_s3_env),
        "namespace": args.namespace,
        "database_prefix": args.database_prefix,
        "strict": args.strict,
        "full_payloads": getattr(args, "full_payloads", False),
        "allow_remote": args.allow_remote,
        "token": "given" if args.token else None,
        "admin_token": "given" if args.admin_token else None,
        "token_env": args.token_env,
        "admin_token_env": args.admin_token_env,
    }


async def _preflight(scenarios: list[Any], args: argparse.Namespace, token: str | None) -> None:
    """Before anything starts: the --bug ids, every fault step's target, and each target the
    runs aim at (reachable, speaks v1, loopback unless --allow-remote)."""
    from harness.scenario.preflight import check_bugs, check_fault_targets, check_target

    await asyncio.to_thread(check_bugs, list(args.bug))
    for scenario in scenarios:
        check_fault_targets(scenario)
    if args.target_command or args.target_image:
        return  # the server is started by the run itself; its readiness is the check
    urls = {args.target} if args.target else {s.target.url for s in scenarios if s.target.url}
    for url in sorted(urls):
        await check_target(url, token, args.allow_remote)


def _rerun(path: str, seed: int, record: RunRecord, args: argparse.Namespace) -> str:
    """The replay command: the seed and every option that shaped the run (tokens by variable
    name only). The namespace is kept for the bundled coordinator, which is fresh each run; an
    external target is shared, so its replay gets ids of its own."""
    words = ["harness", "run", path, "--seed", str(seed)]
    nonce = ((record.scenario_data or {}).get("namespace") or {}).get("nonce")
    if nonce and not args.target:  # a bundled server is fresh each run; a shared one needs new ids
        words += ["--namespace", str(nonce)]
    if args.target:
        words += ["--target", args.target]
    if args.target_profile:
        words += ["--target-profile", str(args.target_profile)]
    words += _managed_target_words(args)
    if args.database_prefix:
        words += ["--database-prefix", args.database_prefix]
    if args.token_env:
        words += ["--token-env", args.token_env]
    if args.admin_token_env:
        words += ["--admin-token-env", args.admin_token_env]
    for bug in args.bug:
        words += ["--bug", bug]
    if args.strict:
        words.append("--strict")
    return " ".join(shlex.quote(w) for w in words)


def _summary_lines(outcomes: list[tuple[str, RunRecord]]) -> list[str]:
    """The closing lines of a multi-scenario run: what failed and how to replay it.

    A CI log is often read from its tail; this puts every failed check, its evidence summary and
    the re-run command there, instead of somewhere in the scroll-back.
    """
    counts: dict[str, int] = {}
    for _, record in outcomes:
        label = record.verdict + (" (strict: fail)" if record.strict_problems() else "")
        counts[label] = counts.get(label, 0) + 1
    tally = ", ".join(f"{n} {verdict}" for verdict, n in sorted(counts.items()))
    lines = [f"summary: {len(outcomes)} scenarios: {tally}"]
    for out, record in outcomes:
        if record.verdict == "pass" and record.effective_exit_code == 0:
            continue
        lines.append(
            f"  {record.verdict}  {record.scenario_name} (exit {record.effective_exit_code}) -> {out}"
        )
        if record.strict_problems():
            lines.append("      strict: an unknown check or a skipped step fails the run")
        for check in record.checks:
            if check.status != "pass":
                lines.append(f"      {check.status}  {check.name}: {check.summary}")
        lines.extend(f"      note: {note}" for note in record.notes)
        rerun = record.rerun_command()
        if rerun:
            lines.append(f"      replay: {rerun}")
    return lines


async def _probe(args: argparse.Namespace, console: Console) -> int:
    from harness.targets.probe import ProbeError, probe_target

    admin_token = os.environ.get(args.admin_token_env) if args.admin_token_env else None
    if args.admin_token_env and admin_token is None:
        console.error(f"harness: ${args.admin_token_env} is not set; /debug/resources is not probed")
    try:
        report = await probe_target(
            args.target,
            args.token,
            admin_token,
            wait_s=args.wait_s,
            allow_remote=args.allow_remote,
            database_prefix=args.database_prefix,
        )
    except ProbeError as exc:
        console.error(f"harness: {exc}")
        return 2
    text = report.profile_yaml(args.token, args.admin_token_env)
    for note in report.notes:
        console.line(f"note: {note}")
    if args.write_profile is not None:
        args.write_profile.write_text(text)
        console.line(f"profile written to {args.write_profile}: edit it, then run with --target-profile")
    else:
        print(text, end="")
    return 0


def _verify(args: argparse.Namespace, console: Console) -> int:
    from harness.verify import VerifyError, verify

    if args.jobs < 1 or args.repeat < 1:
        console.error("harness: --jobs and --repeat must be at least 1")
        return 2
    try:
        ok, _ = asyncio.run(
            _stoppable(
                verify(
                    args.dir,
                    args.bug,
                    args.jobs,
                    args.repeat,
                    args.report_dir,
                    console.line,
                    args.seed,
                    job_timeout_s=args.job_timeout,
                )
            )
        )
    except (FileNotFoundError, VerifyError) as exc:
        console.error(f"harness: {exc}")
        return 2
    return 0 if ok else 1


def _list(args: argparse.Namespace, console: Console) -> int:
    from harness.checks.registry import load_all
    from harness.faults.registry import fault_catalog, format_fault_catalog
    from harness.scenario.loader import ScenarioError, load_scenario

    checks = load_all()
    scenarios: list[dict[str, Any]] = []
    for path in [*sorted(args.dir.glob("*.yaml")), *sorted(args.dir.glob("bugs/*.yaml"))]:
        try:
            loaded = load_scenario(path)
            scenarios.append(
                {
                    "path": str(path),
                    "name": loaded.name,
                    "description": loaded.description,
                    "duration_s": loaded.duration_s,
                    "checks": list(loaded.checks),
                }
            )
        except ScenarioError as exc:
            scenarios.append({"path": str(path), "error": str(exc)})
    if args.json:
        print(
            json.dumps(
                {
                    "scenarios": scenarios,
                    "checks": [
                        {
                            "name": c.name,
                            "family": c.family,
                            "description": c.description,
                            "params": {
                                k: {"default": p.default, "description": p.description}
                                for k, p in c.params.items()
                            },
                            "excuses": [p.to_json() for p in c.excuses],
                        }
                        for c in checks.values()
                    ],
                    "faults": fault_catalog(),
                },
                indent=2,
                default=str,
            )
        )
        return 0
    console.line("Scenarios:")
    for s in scenarios:
        detail = (
            s.get("error") or f"{s['description']} ({s['duration_s']:g} s; checks: {', '.join(s['checks'])})"
        )
        console.line(f"  {s['path']}: {detail}")
    console.line("\nChecks:")
    for c in checks.values():
        console.line(f"  {c.name} [{c.family}]: {c.description}")
        for name, param in c.params.items():
            console.line(f"      {name} = {param.default!r}: {param.description}")
        for policy in c.excuses or ():
            console.line(f"      excuse: {policy.describe()}")
        if not c.excuses:
            console.line("      excuse: no fault excuses a miss")
    console.line("\nFaults:")
    for line in format_fault_catalog().splitlines():
        console.line(f"  {line}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
