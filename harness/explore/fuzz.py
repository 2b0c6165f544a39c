"""`harness fuzz`: hostile input (harness/explore/strategies.py) against one running target.

The environment stays up for the whole fuzz (an asyncio loop in a daemon thread; Hypothesis
calls into it). Each example is a few hostile inputs on a fresh session, recorded in a history
of its own and judged by the existing checks: error-specificity (the specific, non-fatal code;
the session survives) and tenant-isolation (a token kept to its databases). Beyond them the
process must still be up and its log must hold no traceback. A failing input is shrunk by
Hypothesis and written as a `bad_input` (or `intruder`) scenario, which is then replayed through
`harness run`'s path before it counts as a finding.
"""

from __future__ import annotations

import contextlib
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis.errors import Flaky

from harness.checks.observations import Observations
from harness.checks.registry import load_all, run_check
from harness.client.sync_client import ClientConfig, SyncClient
from harness.env.coordinator_process import CoordinatorOptions
from harness.env.environment import BUNDLED, Environment, EnvironmentConfig
from harness.explore.machine import RUN_TIMEOUT_S, BudgetExhausted, LoopThread
from harness.explore.program import found_path, write_scenario
from harness.explore.strategies import HostileInput, hostile_programs
from harness.history import History
from harness.scenario.loader import load_scenario
from harness.scenario.runner import RunOptions, run_scenario
from harness.seed import Seeds
from harness.targets.profile import bundled_profile

FUZZ_TOKEN = "fuzz-token"
INTRUDER_TOKEN = "intruder-token"
CHECKS = ("error-specificity", "tenant-isolation")
EXAMPLE_TIMEOUT_S = 30.0
# A traceback in the target's log: what "no traceback is logged" looks for.
TRACEBACK_MARKERS = ("Traceback (most recent call last)", '"exc_info"', '"traceback"')


@dataclass
class FuzzConfig:
    budget_s: float = 120.0
    seed: int = 1
    bugs: list[str] = field(default_factory=list)
    target_url: str | None = None
    token: str | None = None
    out_dir: Path = Path("scenarios/found")
    work_dir: Path = Path("reports/fuzz")


@dataclass
class FuzzFinding:
    inputs: list[HostileInput]
    check: str
    summary: str


class Fuzzer:
    def __init__(self, config: FuzzConfig, say: Any) -> None:
        self.config = config
        self.say = say
        self.loop = LoopThread()
        self.env: Environment | None = None
        self.history = History()
        self.options = {"tokens": [f"{FUZZ_TOKEN}:fuzz.db", f"{INTRUDER_TOKEN}:fuzz.other"]}
        self.capabilities = dict(bundled_profile(self.options).capabilities)
        self.inputs = 0
        self.examples = 0
        self.target: str | None = None
        self.best: FuzzFinding | None = None
        self.deadline = 0.0
        self.log_offsets: dict[Path, int] = {}
        self.flaky = False
        self.n = 0

    async def start(self) -> None:
        if self.config.target_url is not None:
            env_config = EnvironmentConfig(target=self.config.target_url, with_s3=False)
        else:
            coordinator = CoordinatorOptions(tokens=list(self.options["tokens"]), bugs=list(self.config.bugs))
            env_config = EnvironmentConfig(target=BUNDLED, coordinator=coordinator, with_s3=False)
        self.env = Environment(env_config, Seeds(self.config.seed), self.history)
        await self.env.start()

    async def stop(self) -> None:
        if self.env is not None:
            await self.env.stop()

    def _client(self, history: History, token: str, database: str, granted: tuple[str, ...]) -> SyncClient:
        assert self.env is not None
        urls = self.env.direct_urls
        self.n += 1
        config = ClientConfig(
            ws_url=urls.ws,
            http_url=urls.http,
            database_id=database,
            token=self.config.token or token,
            token_databases=granted,
            request_timeout_s=5.0,
        )
        rng = random.Random(self.config.seed * 1_000_003 + self.n)
        return SyncClient(f"fuzz-{self.n}", config, history, rng)

    async def _one(self, inputs: list[HostileInput]) -> History:
        history = History()
        client = self._client(history, FUZZ_TOKEN, "fuzz.db", ("fuzz.db",))
        intruder: SyncClient | None = None  # made only for tenant inputs: a client costs a pool
        recoverable = (Exception,)
        try:
            await client.connect()
            for item in inputs:
                if item.channel == "ws":
                    if not client.connected:
                        with contextlib.suppress(*recoverable):
                            await client.connect()
                    with contextlib.suppress(*recoverable):
                        await client.send_raw(item.frame, item.intent, item.request)
                    with contextlib.suppress(*recoverable):
                        await client.ping()
                else:
                    if intruder is None:
                        intruder = self._client(history, INTRUDER_TOKEN, "fuzz.other", ("fuzz.other",))
                    with contextlib.suppress(*recoverable):
                        await _intrude(intruder, str(item.frame), "fuzz.db")
        finally:
            for c in (client, intruder):
                if c is None:
                    continue
                with contextlib.suppress(Exception):
                    await c.close()
                with contextlib.suppress(Exception):
                    await c.http.aclose()
        return history

    def _judge(self, history: History) -> list[tuple[str, str]]:
        observations = Observations()
        observations.capabilities = dict(self.capabilities)
        failed: list[tuple[str, str]] = []
        for name in CHECKS:
            result = run_check(name, history, observations, {})
            if result.status == "fail":
                failed.append((name, result.summary))
        assert self.env is not None
        coordinator = self.env.coordinator
        if coordinator is not None and not coordinator.process.running:
            failed.append(("survival", "the target's process exited"))
        elif coordinator is not None and self._traceback(coordinator.process):
            failed.append(("no-traceback", "the target logged a traceback"))
        return failed

    def _traceback(self, process: Any) -> bool:
        found = False
        for path in (process.stdout_path, process.stderr_path):
            try:
                with open(path, "rb") as f:
                    f.seek(self.log_offsets.get(path, 0))
                    text = f.read().decode(errors="replace")
                    self.log_offsets[path] = f.tell()
            except OSError:
                continue
            found = found or any(marker in text for marker in TRACEBACK_MARKERS)
        return found

    def example(self, inputs: list[HostileInput]) -> None:
        if time.monotonic() > self.deadline:
            raise BudgetExhausted
        self.examples += 1
        self.inputs += len(inputs)
        history = self.loop.call(self._one(inputs), EXAMPLE_TIMEOUT_S)
        failed = self._judge(history)
        names = [name for name, _ in failed]
        if failed and self.target is None:
            self.target = names[0]
            self.say(f"  input {self.inputs}: {failed[0][0]} failed: {failed[0][1]}")
        if self.target in names:
            if self.best is None or len(inputs) < len(self.best.inputs):
                summary = dict(failed)[self.target]
                self.best = FuzzFinding(list(inputs), self.target, summary)
            raise AssertionError(f"{self.target} failed")
        if self.examples % 200 == 0:
            self.say(f"  {self.inputs} inputs, {self.examples} examples, nothing found yet")

    def search(self) -> FuzzFinding | None:
        self.deadline = time.monotonic() + self.config.budget_s

        @settings(
            max_examples=1_000_000,
            deadline=None,
            database=None,
            report_multiple_bugs=False,
            suppress_health_check=list(HealthCheck),
            phases=[Phase.generate, Phase.shrink],
            verbosity=Verbosity.quiet,
            print_blob=False,
        )
        @given(hostile_programs())
        def test(inputs: list[HostileInput]) -> None:
            self.example(inputs)

        hypothesis_seed(self.config.seed)(test)
        try:
            test()
        except BudgetExhausted:
            pass
        except Flaky:
            self.flaky = True
        except AssertionError:
            pass
        return self.best


async def _intrude(client: SyncClient, how: str, foreign: str) -> None:
    """The intruder's token on a database it is not granted, one way at a time."""
    if how == "ws-handshake":
        try:
            await client.open()
            await client.handshake(database_id=foreign)
            await client.get_changes()
        finally:
            with contextlib.suppress(Exception):
                await client.close()
    elif how == "http-get_changes":
        await client.http.get_changes(foreign)
    elif how == "http-apply":
        probe = client.builder().set("items", [0], "name", "intruder").build().to_wire()
        await client.http.apply(foreign, [probe])
    else:
        await client.http.snapshot(foreign)


def scenario_document(finding: FuzzFinding, seed: int, name: str) -> dict[str, Any]:
    """The failing inputs as a normal scenario: a `bad_input` client sending exactly these
    frames (its `probes` parameter), an `intruder` for the tenant inputs, next to a writer."""
    probes = [
        {"frame": i.frame, "intent": i.intent, "request": i.request}
        for i in finding.inputs
        if i.channel == "ws"
    ]
    clients: list[dict[str, Any]] = [
        {"name": "writer", "behaviour": "writer", "params": {"count": 5, "interval_s": 0.1}}
    ]
    if probes:
        clients.append({"name": "fuzzer", "behaviour": "bad_input", "params": {"probes": probes}})
    if any(i.channel == "tenant" for i in finding.inputs):
        clients.append(
            {
                "name": "intruder",
                "behaviour": "intruder",
                "database": "other",
                "token": INTRUDER_TOKEN,
                "params": {"foreign_database": "db", "attempts": 1},
            }
        )
    checks: dict[str, dict[str, Any]] = {"error-specificity": {}, "tenant-isolation": {}, "survival": {}}
    return {
        "name": name,
        "description": "Found by harness fuzz. The shrunk input: "
        + "; ".join(i.describe() for i in finding.inputs),
        "seed": seed,
        "duration_s": 4,
        "settle_s": 2,
        "target": {
            "coordinator": {"options": {"tokens": [f"{FUZZ_TOKEN}:db", f"{INTRUDER_TOKEN}:other"]}},
            "token": FUZZ_TOKEN,
        },
        "clients": clients,
        "checks": checks,
        "catches": [finding.check] if finding.check in checks else ["survival"],
    }


def run_fuzz(config: FuzzConfig, say: Any) -> int:
    load_all()
    fuzzer = Fuzzer(config, say)
    say(f"fuzz: seed {config.seed}, budget {config.budget_s:g} s, bugs {', '.join(config.bugs) or 'none'}")
    started = time.monotonic()
    try:
        fuzzer.loop.call(fuzzer.start(), 60.0)
        try:
            finding = fuzzer.search()
        finally:
            fuzzer.loop.call(fuzzer.stop(), 60.0)
        say(f"fuzz: {fuzzer.inputs} inputs in {fuzzer.examples} examples, {time.monotonic() - started:.0f} s")
        if finding is None:
            say("fuzz: found but not reproducible (flaky)" if fuzzer.flaky else "fuzz: nothing found")
            return 0
        say(f"fuzz: {finding.check} failed ({finding.summary}); shrunk to {len(finding.inputs)} inputs:")
        for item in finding.inputs:
            say(f"    {item.describe()}")
        candidate = config.work_dir / found_path(config.work_dir, f"fuzz-{finding.check}").name
        write_scenario(candidate, scenario_document(finding, config.seed, candidate.stem))
        if finding.check not in ("error-specificity", "tenant-isolation", "survival"):
            say(f"fuzz: {finding.check} is judged by the fuzzer only; the scenario is at {candidate}")
            return 1
        record = fuzzer.loop.call(
            run_scenario(load_scenario(candidate), RunOptions(bugs=list(config.bugs))), RUN_TIMEOUT_S
        )
        failed = [r.name for r in record.checks if r.status == "fail"]
        if finding.check not in failed:
            say(
                f"fuzz: found but not reproducible: the scenario passed {finding.check} (kept at {candidate})"
            )
            return 0
        final = found_path(config.out_dir, f"fuzz-{finding.check}")
        final.parent.mkdir(parents=True, exist_ok=True)
        final.write_text(candidate.read_text())
        say(f"fuzz: the scenario fails {finding.check} again under harness run -> {final}")
        say(f"  replay: harness run {final}" + "".join(f" --bug {b}" for b in config.bugs))
        return 1
    finally:
        fuzzer.loop.close()
