"""What a scenario says, once validated: target, clients, timeline, checks. Plain data, so a
journal can store it and a run can be replayed from it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from harness.env.command_target import CommandSpec
from harness.env.container_target import ContainerSpec


@dataclass(frozen=True)
class TargetSpec:
    """The bundled coordinator (started and owned by the harness), a server command (started and
    owned by the harness, described by its profile) or an external URL."""

    url: str | None = None  # external target: http(s)://host:port/basePath or ws(s)://.../ws
    coordinator_options: dict[str, Any] = field(default_factory=dict)  # `coordinator serve` options
    s3: bool = False  # run moto + the S3 fault layer and point the coordinator (or the command) at them
    failpoints: bool = False
    token: str | None = None  # the clients' token
    admin_token: str | None = None  # for /debug/resources on an external target
    profile: str | None = None  # a target profile file (harness/targets/profile.py), resolved path
    command: CommandSpec | None = None  # a command target (harness/env/command_target.py)
    container: ContainerSpec | None = None  # a container target (harness/env/container_target.py)

    @property
    def bundled(self) -> bool:
        return self.url is None and self.command is None and self.container is None


@dataclass(frozen=True)
class ClientGroup:
    name: str
    behaviour: str
    count: int = 1
    database: str = "db"
    via: str = "proxy"  # proxy (shared Toxiproxy path) | own_proxy (one per client) | direct
    start_at_s: float = 0.0
    token: str | None = None  # overrides the target's token (tenant tests)
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Condition:
    """When a step fires: at a time, or when something holds (polled, bounded by a timeout)."""

    at_s: float | None = None
    after_step: str | None = None  # id of an earlier step
    delay_s: float = 0.0
    ops_ok: int | None = None  # after this many completed ok operations
    metric: str | None = None  # a target metric (Prometheus name) reaching `at_least`
    at_least: float | None = None
    timeout_s: float | None = None


@dataclass(frozen=True)
class Step:
    id: str
    when: Condition
    fault: dict[str, Any] | None = None  # a fault spec (validated against the fault registry)
    for_s: float | None = None  # clear the fault after this long
    clear: str | None = None  # clear the fault of an earlier step
    line: int = 0


@dataclass(frozen=True)
class Scenario:
    name: str
    path: str
    description: str
    seed: int
    duration_s: float
    target: TargetSpec
    clients: tuple[ClientGroup, ...]
    timeline: tuple[Step, ...]
    checks: dict[str, dict[str, Any]]  # check name -> bound overrides
    settle_s: float = 2.0  # after clients end, before final observations
    raw: dict[str, Any] = field(default_factory=dict)  # the merged document, for the journal
    catches: tuple[str, ...] = ()  # the checks whose failure is this (bug) scenario's detection

    def to_json(self) -> dict[str, Any]:
        return asdict(self)
