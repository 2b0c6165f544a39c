"""Judge one mutant of the coordinator with the harness's default scenarios (cosmic-ray's
test command, run in a copy of the repository that cosmic-ray has just mutated in place).

Why a scenario run and not the coordinator's unit tests: the figure this produces is how much
of what a user's server could get wrong the *harness* catches, so a mutant is killed only when
a default scenario fails on it, exactly as `harness run` would report it to a user.

The mutated module is found with `git diff`; `modules.toml` maps it to the scenarios that
exercise it, run one by one and stopped at the first failure. Exit 0: every scenario passed
(the mutant survived); 1: a scenario failed (killed); 2: the judge itself could not work (a
wrong copy, a missing harness): it prints `JUDGE-ERROR`, and `run.py` does not count that as a
kill (cosmic-ray counts every non-zero exit as one).
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import signal
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

SCENARIO_TIMEOUT_S = 300.0


def mutated_modules(copy: Path) -> list[str]:
    out = subprocess.run(
        ["git", "diff", "--name-only", "--", "coordinator"],
        cwd=copy,
        capture_output=True,
        text=True,
        check=True,
    )
    return [line for line in out.stdout.splitlines() if line.endswith(".py")]


def scenarios_for(module: str | None, table: dict[str, object], copy: Path) -> list[str]:
    """The map's scenarios for `module` (None: the baseline, every scenario the map names),
    keeping only those that exist in this copy."""
    entries = table.get("module", [])
    assert isinstance(entries, list)
    chosen: list[str] = []
    if module is None:
        default = table.get("default", [])
        assert isinstance(default, list)
        chosen = list(default)
        for entry in entries:
            chosen += [s for s in entry["scenarios"] if s not in chosen]
    else:
        for entry in entries:
            if fnmatch.fnmatch(module, entry["glob"]):
                chosen = list(entry["scenarios"])
                break
        else:
            default = table.get("default", [])
            assert isinstance(default, list)
            chosen = list(default)
    return [s for s in chosen if (copy / s).is_file()]


def check_imports_resolve_to(copy: Path, python: str, env: dict[str, str]) -> None:
    """The harness starts `coordinator` from the venv of the main checkout: make sure it imports
    this copy's (mutated) code, or every mutant would be judged on unmutated code and survive."""
    out = subprocess.run(
        [python, "-c", "import coordinator, harness; print(coordinator.__file__); print(harness.__file__)"],
        cwd=copy,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    paths = out.stdout.split()
    if out.returncode != 0 or len(paths) != 2 or not all(p.startswith(str(copy)) for p in paths):
        print(f"JUDGE-ERROR: the copy's code is not what runs (got {paths or out.stderr.strip()})")
        sys.exit(2)


PID_FILE = ".judge.pid"


def stop_on_sigterm(current: list[subprocess.Popen[str]]) -> None:
    """cosmic-ray starts the judge in a session of its own, so `run.py` stops it by pid with
    SIGTERM: pass it on to the running `harness run` (which tears its environment down on
    SIGTERM) and leave once it has."""

    def on_term(signum: int, frame: object) -> None:
        for proc in current:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
        sys.exit(143)

    signal.signal(signal.SIGTERM, on_term)


def run_scenario(
    harness: str,
    scenario: str,
    copy: Path,
    env: dict[str, str],
    reports: Path,
    current: list[subprocess.Popen[str]],
) -> tuple[int, str]:
    """One `harness run`, in its own process group so a timeout stops everything it started."""
    proc = subprocess.Popen(
        [harness, "run", scenario, "--report-dir", str(reports)],
        cwd=copy,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    current[:] = [proc]
    try:
        output, _ = proc.communicate(timeout=SCENARIO_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)  # the harness tears its environment down on SIGTERM
        try:
            output, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            output, _ = proc.communicate()
        return 124, output + f"\n(timed out after {SCENARIO_TIMEOUT_S:.0f} s)"
    return proc.returncode, output


def failed_checks(output: str) -> str:
    """The lines of the harness's output that name what failed (its summary), shortened."""
    lines = [ln.strip() for ln in output.splitlines() if ln.strip().lower().startswith("fail ")]
    return " | ".join(lines[-4:])[:400]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--harness", required=True, help="the `harness` command of a venv with the project's dependencies"
    )
    parser.add_argument("--map", required=True, type=Path, help="modules.toml")
    parser.add_argument(
        "--baseline", action="store_true", help="judge the unmutated copy with every mapped scenario"
    )
    args = parser.parse_args(argv)
    copy = Path.cwd().resolve()
    current: list[subprocess.Popen[str]] = []
    stop_on_sigterm(current)
    (copy / PID_FILE).write_text(str(os.getpid()))
    try:
        return judge(args, copy, current)
    finally:
        (copy / PID_FILE).unlink(missing_ok=True)


def judge(args: argparse.Namespace, copy: Path, current: list[subprocess.Popen[str]]) -> int:
    table = tomllib.loads(args.map.read_text())
    env = dict(os.environ, PYTHONPATH=str(copy), PYTHONDONTWRITEBYTECODE="1")
    check_imports_resolve_to(copy, str(Path(args.harness).parent / "python"), env)
    modules = mutated_modules(copy)
    if args.baseline:
        if modules:
            print(f"JUDGE-ERROR: baseline asked but {modules} differ from the revision")
            return 2
        scenarios = scenarios_for(None, table, copy)
    elif len(modules) != 1:
        print(f"JUDGE-ERROR: expected one mutated module, found {modules}")
        return 2
    else:
        scenarios = scenarios_for(modules[0], table, copy)
    if not scenarios:
        print("JUDGE-ERROR: no scenario of the map exists in this copy")
        return 2
    with tempfile.TemporaryDirectory(prefix="mutant-reports-") as reports:
        for scenario in scenarios:
            rc, output = run_scenario(args.harness, scenario, copy, env, Path(reports), current)
            if rc != 0:
                print(f"KILLED by {scenario} (exit {rc}): {failed_checks(output)}")
                if rc not in (1, 124):
                    print(output[-3000:])
                return 1
            print(f"passed {scenario}")
    print(f"SURVIVED {len(scenarios)} scenarios: {' '.join(scenarios)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
