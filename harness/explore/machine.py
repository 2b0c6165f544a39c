"""The state machine and the search: Hypothesis picks rule sequences, each is judged by the
existing checks, the failing one is shrunk to the fewest steps.

Hypothesis has no async rules, so the environment's asyncio loop lives in a daemon thread and
the machine calls into it with `run_coroutine_threadsafe(...).result(timeout)`. Each example's
program (harness/explore/program.py) is run as the scenario it translates to, through the same
runner as `harness run`: what is judged is what the written file replays. The first check that
fails becomes the search's target, so shrinking keeps the same failure.

The budget bounds search and shrinking: past it the search stops by an exception Hypothesis
does not catch, and the smallest failing program recorded so far is the result. Results are
cached per program (two choice sequences that mean the same program run once); the finding is
then replayed from its written file, uncached, and only a replay that fails the same check is a
finding: anything else is "found but not reproducible".
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from hypothesis import HealthCheck, Phase, Verbosity, settings
from hypothesis import seed as hypothesis_seed
from hypothesis.database import DirectoryBasedExampleDatabase
from hypothesis.errors import Flaky
from hypothesis.stateful import RuleBasedStateMachine, precondition, rule, run_state_machine_as_test

from harness.explore.program import DEFAULT_CHECKS, Program, write_scenario
from harness.explore.rules import ExploreState, RuleSpec
from harness.report import RunRecord, write_run_report
from harness.scenario.loader import load_scenario
from harness.scenario.runner import RunOptions, run_scenario

T = TypeVar("T")
RUN_TIMEOUT_S = 300.0  # one program's run, environment start and stop included


class BudgetExhausted(BaseException):
    """Raised past the budget: a BaseException, so Hypothesis neither catches nor shrinks it."""


class LoopThread:
    """One asyncio loop in a daemon thread: the sync machine calls coroutines into it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="explore-loop", daemon=True)
        self.thread.start()

    def call(self, coro: Coroutine[Any, Any, T], timeout_s: float) -> T:
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout_s)
        except BaseException:
            future.cancel()  # Ctrl-C or a timeout: the run's environment stops what it started
            raise

    def close(self, timeout_s: float = 60.0) -> None:
        """Let every task still in the loop finish first (a run cancelled by Ctrl-C or SIGTERM
        is still stopping its environment: processes, proxies, temp dirs), then stop the loop."""

        async def drain() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            if tasks:
                await asyncio.wait(tasks, timeout=timeout_s)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(drain(), self.loop).result(timeout_s + 5.0)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10.0)
        if not self.thread.is_alive():
            self.loop.close()


@dataclass
class Outcome:
    failed: tuple[str, ...]
    record: RunRecord | None = None
    seconds: float = 0.0


@dataclass
class Finding:
    program: Program
    check: str
    failed: tuple[str, ...]


@dataclass
class ExploreConfig:
    budget_s: float = 300.0
    seed: int = 1
    bugs: list[str] = field(default_factory=list)
    target_url: str | None = None
    target_profile: Path | None = None
    token: str | None = None
    admin_token: str | None = None
    work_dir: Path = Path("reports/explore")
    step_count: int = 20
    checks: tuple[str, ...] = DEFAULT_CHECKS
    target_doc: dict[str, Any] | None = None  # the scenario's target block (default EXPLORE_TARGET)


class Explorer:
    """Runs programs, keeps the best failure, and drives Hypothesis within the budget."""

    def __init__(self, config: ExploreConfig, say: Callable[[str], None]) -> None:
        self.config = config
        self.say = say
        self.loop = LoopThread()
        self.deadline = 0.0
        self.started = 0.0
        self.cache: dict[str, Outcome] = {}
        self.examples = 0
        self.runs = 0
        self.steps = 0
        self.target: str | None = None
        self.best: Finding | None = None
        self.first_found_s: float | None = None
        self.flaky = False

    # one program ----------------------------------------------------------------------------
    def scenario_path(self, name: str) -> Path:
        return self.config.work_dir / "programs" / f"{name}.yaml"

    def document(self, program: Program, name: str, catches: tuple[str, ...] = ()) -> dict[str, Any]:
        return program.to_document(
            name,
            self.config.seed,
            self.config.checks,
            catches,
            description="Found by harness explore. The shrunk program: " + "; ".join(program.describe()),
            target=self.config.target_doc,
        )

    def run_file(self, path: Path) -> RunRecord:
        """Run a scenario file exactly as `harness run FILE` would (loader, then runner)."""
        scenario = load_scenario(path)
        options = RunOptions(
            target_url=self.config.target_url,
            target_profile=self.config.target_profile,
            token=self.config.token,
            admin_token=self.config.admin_token,
            bugs=list(self.config.bugs),
        )
        return self.loop.call(run_scenario(scenario, options), RUN_TIMEOUT_S)

    def judge(self, program: Program) -> Outcome:
        key = program.key()
        if key in self.cache:
            return self.cache[key]
        if time.monotonic() > self.deadline:
            raise BudgetExhausted
        path = write_scenario(self.scenario_path("current"), self.document(program, "explore"))
        t0 = time.monotonic()
        record = self.run_file(path)
        failed = tuple(r.name for r in record.checks if r.status == "fail")
        outcome = Outcome(failed, record, time.monotonic() - t0)
        self.cache[key] = outcome
        self.runs += 1
        if failed:  # every failing program stays on disk with its report, for a look at what broke
            path.replace(path.with_name(f"run{self.runs}-fail.yaml"))
            write_run_report(self.config.work_dir / "runs", record)
        return outcome

    def example(self, program: Program) -> None:
        """An example's end (the machine's teardown): run it, judge it, raise on the target."""
        self.examples += 1
        self.steps += program.length
        outcome = self.judge(program)
        if outcome.failed and self.target is None:
            self.target = outcome.failed[0]
            self.first_found_s = time.monotonic() - self.started
        hit = self.target is not None and self.target in outcome.failed
        if hit and (self.best is None or program.length < self.best.program.length):
            assert self.target is not None
            self.best = Finding(program, self.target, outcome.failed)
        verdict = f"fail: {', '.join(outcome.failed)}" if outcome.failed else "pass"
        best = f"; best so far {self.best.program.length} steps ({self.best.check})" if self.best else ""
        self.say(
            f"  example {self.examples} (run {self.runs}): {program.length} steps, {verdict}"
            f" [{outcome.seconds:.1f} s]{best}; {self.elapsed():.0f} s elapsed"
        )
        if hit:
            raise AssertionError(f"check {self.target} failed")

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    # the search -----------------------------------------------------------------------------
    def search(self, rules: tuple[RuleSpec, ...]) -> Finding | None:
        self.started = time.monotonic()
        self.deadline = self.started + self.config.budget_s
        machine = build_machine(rules, self)
        hypothesis_seed(self.config.seed)(machine)
        db_dir = self.config.work_dir / "hypothesis-db" / ("+".join(sorted(self.config.bugs)) or "no-bug")
        options = settings(
            max_examples=100_000,
            stateful_step_count=self.config.step_count,
            deadline=None,
            database=DirectoryBasedExampleDatabase(str(db_dir)),
            report_multiple_bugs=False,
            suppress_health_check=list(HealthCheck),
            phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
            verbosity=Verbosity.quiet,
            print_blob=False,
        )
        try:
            run_state_machine_as_test(machine, settings=options)
        except BudgetExhausted:
            self.say(f"  budget of {self.config.budget_s:g} s used up")
        except Flaky:
            self.flaky = True
        except AssertionError:
            pass  # the finding is self.best (Hypothesis replayed the minimal example last)
        return self.best

    def replay(self, finding: Finding, path: Path) -> RunRecord:
        """The written file, run again from scratch (no cache): does it fail the same way?"""
        write_scenario(
            path,
            self.document(finding.program, path.stem, (finding.check,)),
            header=[
                "Found by harness explore: a normal scenario file; replay with",
                "  harness run THIS_FILE" + "".join(f" --bug {b}" for b in self.config.bugs),
                "The shrunk program:",
                *[f"  {line}" for line in finding.program.describe()],
            ],
        )
        return self.run_file(path)

    def close(self) -> None:
        self.loop.close()


def build_machine(rules: tuple[RuleSpec, ...], explorer: Explorer) -> type[RuleBasedStateMachine]:
    """A RuleBasedStateMachine with one Hypothesis rule per RuleSpec; its teardown runs and
    judges the recorded program."""

    def __init__(self: Any) -> None:
        RuleBasedStateMachine.__init__(self)
        self.state = ExploreState()

    def teardown(self: Any) -> None:
        explorer.example(self.state.program)

    namespace: dict[str, Any] = {"__init__": __init__, "teardown": teardown}
    for spec in rules:
        namespace[spec.name] = _rule(spec)
    return type("ExploreMachine", (RuleBasedStateMachine,), namespace)


def _rule(spec: RuleSpec) -> Any:
    def body(self: Any, **kwargs: Any) -> None:
        spec.apply(self.state, **kwargs)

    body.__name__ = spec.name
    check = spec.precondition
    decorate: Any = rule(**spec.args)  # type: ignore[call-overload]  # kwargs built at run time
    return precondition(lambda self: check(self.state))(decorate(body))
