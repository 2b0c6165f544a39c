"""`harness explore` and `harness fuzz`: the glue between the command line, the search and the
files it writes. Exit codes: 1 a reproducible failure was found (and written), 0 none (a failure
that did not replay is reported as "found but not reproducible", never as a finding), 2 bad input.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

from harness.explore.program import found_path
from harness.explore.rules import GROUPS, rules_of

DEFAULT_FOUND_DIR = Path("scenarios/found")


def add_explore_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = commands.add_parser(
        "explore",
        help="search interleavings of clients, writes and faults for a failing check; "
        "write the shrunk program as a scenario file",
    )
    p.add_argument("--budget", type=float, default=300.0, metavar="SECONDS", help="search and shrink time")
    p.add_argument("--seed", type=int, default=1, help="the search's seed and the scenario's seed")
    p.add_argument("--bug", action="append", default=[], metavar="ID", help="a catalogued bug to switch on")
    p.add_argument("--target", help="an external server (http://host:port/sync) instead of the bundled one")
    p.add_argument("--target-profile", type=Path, help="the external target's profile")
    p.add_argument("--token-env", metavar="NAME", help="environment variable with the clients' token")
    p.add_argument("--admin-token-env", metavar="NAME", help="environment variable with the admin token")
    p.add_argument(
        "--rules", nargs="+", metavar="GROUP", help=f"only these rule groups ({', '.join(GROUPS)})"
    )
    p.add_argument("--steps", type=int, default=20, help="most steps per example (stateful_step_count)")
    p.add_argument("--out", type=Path, default=DEFAULT_FOUND_DIR, help="where the found scenario goes")
    p.add_argument("--report-dir", type=Path, default=Path("reports"), help="work files and reports")


def add_fuzz_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = commands.add_parser("fuzz", help="malformed and hostile input on every WS message and HTTP route")
    p.add_argument("--budget", type=float, default=120.0, metavar="SECONDS")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--bug", action="append", default=[], metavar="ID", help="a catalogued bug to switch on")
    p.add_argument("--target", help="an external server (http://host:port/sync) instead of the bundled one")
    p.add_argument("--token-env", metavar="NAME", help="environment variable with the clients' token")
    p.add_argument("--out", type=Path, default=DEFAULT_FOUND_DIR, help="where the failing input goes")
    p.add_argument("--report-dir", type=Path, default=Path("reports"))


def _env_value(name: str | None, option: str, say: Callable[[str], None]) -> tuple[bool, str | None]:
    if not name:
        return True, None
    value = os.environ.get(name)
    if value is None:
        say(f"harness: {option} {name}: the variable is not set")
        return False, None
    return True, value


def _bad_input(args: argparse.Namespace, error: Callable[[str], None]) -> bool:
    if args.budget <= 0:
        error("harness: --budget must be positive")
        return True
    from harness.verify import catalogue_ids

    unknown = [b for b in args.bug if b not in catalogue_ids()] if args.bug else []
    if unknown:
        error(f"harness: unknown bug id(s) {', '.join(unknown)}")
        return True
    if args.bug and getattr(args, "target", None):
        error("harness: --bug switches a bug on in the bundled coordinator; it cannot go with --target")
        return True
    return False


class Terminated(BaseException):
    """SIGTERM arrived. Not SystemExit: Hypothesis counts SystemExit as a test failure."""


@contextlib.contextmanager
def terminable() -> Iterator[None]:
    """SIGTERM (a CI timeout, `kill`) stops a search as Ctrl-C does: Terminated unwinds through
    the run in progress, whose environment stops what it started, then the exit code is 143."""

    def stop(signum: int, frame: object) -> None:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def explore(args: argparse.Namespace, say: Callable[[str], None], error: Callable[[str], None]) -> int:
    try:
        with terminable():
            return _explore(args, say, error)
    except Terminated:
        error("harness: terminated; everything it started has been stopped")
        return 143


def _explore(args: argparse.Namespace, say: Callable[[str], None], error: Callable[[str], None]) -> int:
    from harness.explore.machine import ExploreConfig, Explorer

    if _bad_input(args, error):
        return 2
    if args.steps < 1:
        error("harness: --steps must be at least 1")
        return 2
    try:
        rules = rules_of(args.rules)
    except ValueError as exc:
        error(f"harness: --rules: {exc}")
        return 2
    ok_token, token = _env_value(args.token_env, "--token-env", error)
    ok_admin, admin = _env_value(args.admin_token_env, "--admin-token-env", error)
    if not (ok_token and ok_admin):
        return 2
    if args.target_profile is not None and not args.target_profile.is_file():
        error(f"harness: --target-profile {args.target_profile}: no such file")
        return 2
    work = args.report_dir / "explore"
    config = ExploreConfig(
        budget_s=args.budget,
        seed=args.seed,
        bugs=list(args.bug),
        target_url=args.target,
        target_profile=args.target_profile,
        token=token,
        admin_token=admin,
        work_dir=work,
        step_count=args.steps,
    )
    say(
        f"explore: seed {args.seed}, budget {args.budget:g} s, bugs {', '.join(args.bug) or 'none'}, "
        f"rules {', '.join(sorted({r.group for r in rules}))}"
    )
    explorer = Explorer(config, say)
    try:
        finding = explorer.search(rules)
        searched = explorer.elapsed()
        say(
            f"explore: {explorer.examples} examples, {explorer.runs} runs, {explorer.steps} steps "
            f"in {searched:.0f} s"
        )
        if finding is None:
            if explorer.flaky:
                say("explore: found but not reproducible (Hypothesis reported the failure as flaky)")
            else:
                say("explore: nothing found")
            return 0
        say(
            f"explore: check {finding.check} failed, first after {explorer.first_found_s:.0f} s; "
            f"shrunk to {finding.program.length} steps:"
        )
        for line in finding.program.describe():
            say(f"    {line}")
        candidate = work / "found" / found_path(work / "found", finding.check).name
        record = explorer.replay(finding, candidate)
        failed = [r.name for r in record.checks if r.status == "fail"]
        record.notes.extend(["shrunk program:", *finding.program.describe()])
        from harness.report import write_run_report

        report = write_run_report(args.report_dir, record)
        if finding.check not in failed:
            say(
                f"explore: found but not reproducible: the written file passed {finding.check} on replay "
                f"(kept at {candidate}; report {report})"
            )
            return 0
        final = found_path(args.out, finding.check)
        final.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(candidate, final)
        say(f"explore: replayed from the file, {finding.check} fails again -> {final} (report {report})")
        say(f"  replay: harness run {final}" + "".join(f" --bug {b}" for b in args.bug))
        return 1
    finally:
        explorer.close()


def fuzz(args: argparse.Namespace, say: Callable[[str], None], error: Callable[[str], None]) -> int:
    try:
        with terminable():
            return _fuzz(args, say, error)
    except Terminated:
        error("harness: terminated; everything it started has been stopped")
        return 143


def _fuzz(args: argparse.Namespace, say: Callable[[str], None], error: Callable[[str], None]) -> int:
    from harness.explore.fuzz import FuzzConfig, run_fuzz

    if _bad_input(args, error):
        return 2
    ok, token = _env_value(args.token_env, "--token-env", error)
    if not ok:
        return 2
    config = FuzzConfig(
        budget_s=args.budget,
        seed=args.seed,
        bugs=list(args.bug),
        target_url=args.target,
        token=token,
        out_dir=args.out,
        work_dir=args.report_dir / "fuzz",
    )
    return run_fuzz(config, say)
