"""Load and validate scenario files. Every mistake is reported as `file:line: message`, with
the line where the offending value was written (in the file that wrote it, through `extends`)."""

from __future__ import annotations

import dataclasses
import re
import shlex
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness.checks.registry import CHECKS, load_all
from harness.client.behaviours import BEHAVIOURS, Behaviour
from harness.env.command_target import PLACEHOLDERS, CommandSpec, unknown_placeholders
from harness.env.container_target import ContainerSpec
from harness.faults.base import FaultSpecError
from harness.faults.registry import validate_fault_spec
from harness.scenario.located_yaml import Located, YamlSyntaxError, load_located
from harness.scenario.model import ClientGroup, Condition, Scenario, Step, TargetSpec
from harness.targets.profile import ProfileError, load_profile

MAX_DURATION_S = 3600.0
MAX_CLIENTS = 2000
VIAS = ("proxy", "own_proxy", "direct")
TARGET_KEYS = {"coordinator", "url", "token", "admin_token", "profile"}
COMMAND_KEYS = {"command", "env", "cwd", "ready", "port", "s3_env", "base_path", "s3", "ready_timeout_s"}
CONTAINER_KEYS = {
    "image",
    "command",
    "env",
    "ready",
    "port",
    "s3_env",
    "base_path",
    "s3",
    "ready_timeout_s",
} | {
    "volumes",
    "data_path",
}
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
TOP_KEYS = {
    "name",
    "description",
    "extends",
    "seed",
    "duration_s",
    "settle_s",
    "target",
    "clients",
    "timeline",
    "checks",
    "catches",
    "load",  # a load run's parameters (harness load --scenario; harness/load/profiles.py)
}


class ScenarioError(Exception):
    """A mistake in a scenario file, located."""

    def __init__(self, file: str, line: int, message: str) -> None:
        super().__init__(f"{file}:{line}: {message}")
        self.file, self.line, self.message = file, line, message


def load_scenario(path: str | Path, seed: int | None = None) -> Scenario:
    path = Path(path)
    if not path.is_file():
        raise ScenarioError(str(path), 0, "no such scenario file")
    load_all()
    located = _resolve(path, ())
    return _Validator(path, located).scenario(seed)


# extends ------------------------------------------------------------------------------------
def _resolve(path: Path, chain: tuple[Path, ...]) -> Located:
    real = path.resolve()
    if real in chain:
        raise ScenarioError(str(path), 1, "extends cycle: " + " -> ".join(str(p) for p in (*chain, real)))
    try:
        doc = load_located(path)
    except YamlSyntaxError as exc:
        raise ScenarioError(exc.file, exc.line, exc.message) from None
    if not isinstance(doc.data, dict):
        raise ScenarioError(str(path), 1, "a scenario is a mapping (name:, duration_s:, clients:, ...)")
    parents = doc.data.get("extends")
    if parents is None:
        return doc
    names = parents if isinstance(parents, list) else [parents]
    merged: Located | None = None
    for i, name in enumerate(names):
        where = doc.where(("extends", i) if isinstance(parents, list) else ("extends",)) or (str(path), 1)
        if not isinstance(name, str):
            raise ScenarioError(where[0], where[1], "extends: must be a file name or a list of them")
        parent_path = path.parent / name
        if not parent_path.is_file():
            raise ScenarioError(
                where[0], where[1], f"extends: no such file {name!r} (looked in {path.parent})"
            )
        parent = _resolve(parent_path, (*chain, real))
        merged = parent if merged is None else _merge(merged, parent)
    assert merged is not None
    child = Located({k: v for k, v in doc.data.items() if k != "extends"}, doc.lines)
    return _merge(merged, child)


def _merge(base: Located, over: Located) -> Located:
    """Mappings merge key by key (the child wins); lists and scalars are replaced whole."""
    lines = dict(base.lines)

    def merge(a: Any, b: Any, path: tuple[Any, ...]) -> Any:
        if isinstance(a, dict) and isinstance(b, dict):
            out = dict(a)
            for key, value in b.items():
                out[key] = merge(a.get(key), value, (*path, key)) if key in a else _take(value, (*path, key))
            return out
        return _take(b, path)

    def _take(value: Any, path: tuple[Any, ...]) -> Any:
        for p in [p for p in lines if p[: len(path)] == path]:
            del lines[p]
        for p, where in over.lines.items():
            if p[: len(path)] == path:
                lines[p] = where
        return value

    data = merge(base.data, over.data, ())
    return Located(data, lines)


# validation ---------------------------------------------------------------------------------
class _Validator:
    def __init__(self, path: Path, doc: Located) -> None:
        self.path = path
        self.doc = doc

    def error(self, path: tuple[Any, ...], message: str) -> ScenarioError:
        file, line = self.doc.where(path) or (str(self.path), 1)
        label = ".".join(str(p) for p in path)
        return ScenarioError(file, line, f"{label}: {message}" if label else message)

    def get(
        self,
        mapping: Mapping[str, Any],
        key: str,
        path: tuple[Any, ...],
        kind: Any,
        default: Any = None,
        required: bool = False,
    ) -> Any:
        if key not in mapping or mapping[key] is None:
            if required:
                raise self.error(path, f"missing required key {key!r}")
            return default
        value = mapping[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind in (int, float) and isinstance(value, bool)):
            name = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            raise self.error((*path, key), f"must be {_article(name)}, got {value!r}")
        return value

    def scenario(self, seed_override: int | None) -> Scenario:
        data = self.doc.data
        for key in data:
            if key not in TOP_KEYS:
                raise self.error((key,), f"unknown key; a scenario has {', '.join(sorted(TOP_KEYS))}")
        duration = self.get(data, "duration_s", (), float, required=True)
        if not 0 < duration <= MAX_DURATION_S:
            raise self.error(("duration_s",), f"must be between 0 and {MAX_DURATION_S:g} seconds")
        settle = self.get(data, "settle_s", (), float, 2.0)
        seed = self.get(data, "seed", (), int, 1)
        # A load scenario's users are Locust's (its `load:` section): its `clients` may be left out.
        clients = self.clients(data.get("clients")) if "clients" in data or "load" not in data else ()
        timeline = self.timeline(data.get("timeline") or [], duration)
        checks = self.checks(data.get("checks"))
        catches = self.catches(data.get("catches"), checks)
        return Scenario(
            name=self.get(data, "name", (), str, self.path.stem),
            path=str(self.path),
            description=self.get(data, "description", (), str, "").strip(),
            seed=seed if seed_override is None else seed_override,
            duration_s=duration,
            target=self.target(data.get("target") or {}),
            clients=clients,
            timeline=timeline,
            checks=checks,
            settle_s=settle,
            raw=data,
            catches=catches,
        )

    def target(self, target: Any) -> TargetSpec:
        path: tuple[Any, ...] = ("target",)
        if not isinstance(target, dict):
            raise self.error(path, "must be a mapping with `coordinator:`, `url:` or `command:`")
        unknown = set(target) - TARGET_KEYS - COMMAND_KEYS - CONTAINER_KEYS
        if unknown:
            raise self.error(
                (*path, sorted(unknown)[0]),
                f"unknown key; target has {', '.join(sorted(TARGET_KEYS | COMMAND_KEYS | CONTAINER_KEYS))}",
            )
        url = self.get(target, "url", path, str)
        coordinator = target.get("coordinator") or {}
        if url is not None and target.get("coordinator"):
            raise self.error(path, "give either `coordinator:` (bundled) or `url:` (external), not both")
        if url is not None and not url.startswith(("http://", "https://", "ws://", "wss://")):
            raise self.error((*path, "url"), "must start with http://, https://, ws:// or wss://")
        container = self.container(target)
        command = self.command(target) if container is None else None
        if not isinstance(coordinator, dict):
            raise self.error((*path, "coordinator"), "must be a mapping (options:, s3:, failpoints:)")
        cpath = (*path, "coordinator")
        unknown = set(coordinator) - {"options", "s3", "failpoints"}
        if unknown:
            raise self.error(
                (*cpath, sorted(unknown)[0]), "unknown key; coordinator has options, s3, failpoints"
            )
        options = self.get(coordinator, "options", cpath, dict, {})
        for key, value in options.items():
            if not isinstance(value, str | int | float | bool | list):
                raise self.error((*cpath, "options", key), "must be a string, number, boolean or list")
        s3 = self.get(coordinator, "s3", cpath, bool, False)
        if command is not None or container is not None:
            s3 = self.get(target, "s3", path, bool, False)
        return TargetSpec(
            url=url,
            profile=self.profile(target),
            coordinator_options=options,
            s3=s3,
            failpoints=self.get(coordinator, "failpoints", cpath, bool, False),
            token=self.get(target, "token", path, str),
            admin_token=self.get(target, "admin_token", path, str),
            command=command,
            container=container,
        )

    def container(self, target: dict[str, Any]) -> ContainerSpec | None:
        """`image: IMAGE` (`reference`: the reference coordinator's image, built locally) with
        `command` (the container's, replacing its CMD), env, s3_env, ready, port (inside the
        container), volumes (host path: container path), data_path, base_path, s3, ready_timeout_s."""
        path: tuple[Any, ...] = ("target",)
        if "image" not in target:
            for key in ("volumes", "data_path"):
                if key in target:
                    raise self.error((*path, key), "belongs to a container target: add `image: ...`")
            return None
        if "cwd" in target:
            raise self.error((*path, "cwd"), "a container target has no `cwd` (its image sets the directory)")
        for other in ("url", "coordinator"):
            if target.get(other) is not None:
                raise self.error((*path, other), "a container target has no `" + other + "` (give one kind)")
        image = self.get(target, "image", path, str)
        if not image:
            raise self.error((*path, "image"), "must name an image (or `reference`)")
        argv = target.get("command")
        if isinstance(argv, str):
            try:
                argv = shlex.split(argv)
            except ValueError as exc:
                raise self.error((*path, "command"), f"cannot split the command line: {exc}") from None
        if argv is not None:
            if not isinstance(argv, list) or not all(
                isinstance(a, str | int | float) and not isinstance(a, bool) for a in argv
            ):
                raise self.error((*path, "command"), "must be a list of arguments (or one string)")
            argv = [str(a) for a in argv]
            self.placeholders(argv, (*path, "command"), indexed=True)
        volumes = self.str_map_of_paths(target, "volumes")
        port = target.get("port", 3000)
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise self.error((*path, "port"), f"must be the server's port inside the container, got {port!r}")
        base_path = self.get(target, "base_path", path, str, "/sync")
        if not base_path.startswith("/"):
            raise self.error((*path, "base_path"), f"must start with '/', got {base_path!r}")
        timeout = self.get(target, "ready_timeout_s", path, float, 60.0)
        if timeout <= 0:
            raise self.error((*path, "ready_timeout_s"), "must be positive")
        ready = (
            self.ready(target.get("ready"))
            if "ready" in target
            else ("http", f"{base_path.rstrip('/')}/ready")
        )
        return ContainerSpec(
            image=image,
            command=tuple(argv) if argv is not None else None,
            env=self.str_map(target, "env"),
            s3_env=self.str_map(target, "s3_env"),
            port=port,
            volumes=volumes,
            data_path=self.get(target, "data_path", path, str, "/data"),
            ready=ready,
            base_path=base_path.rstrip("/") or "/",
            ready_timeout_s=timeout,
        )

    def str_map_of_paths(self, target: dict[str, Any], key: str) -> dict[str, str]:
        where: tuple[Any, ...] = ("target", key)
        value = target.get(key)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.error(where, "must be a mapping of host path to container path")
        out: dict[str, str] = {}
        for host, inside in value.items():
            if not isinstance(host, str) or not isinstance(inside, str) or not inside.startswith("/"):
                raise self.error((*where, str(host)), "must map a host path to an absolute container path")
            self.placeholders([host, inside], (*where, host), indexed=False)
            out[host] = inside
        return out

    def command(self, target: dict[str, Any]) -> CommandSpec | None:
        """`command: [ARG, ...]` (or one string, split like a shell) with its siblings env, cwd,
        ready, port, s3_env, base_path, s3, ready_timeout_s; every mistake at its own line."""
        path: tuple[Any, ...] = ("target",)
        given = sorted(set(target) & COMMAND_KEYS - {"command"})
        if "command" not in target:
            if given:
                raise self.error((*path, given[0]), "belongs to a command target: add `command: [...]`")
            return None
        for other in ("url", "coordinator"):
            if target.get(other) is not None:
                raise self.error((*path, other), "a command target has no `" + other + "` (give one kind)")
        argv = target["command"]
        if isinstance(argv, str):
            try:
                argv = shlex.split(argv)
            except ValueError as exc:
                raise self.error((*path, "command"), f"cannot split the command line: {exc}") from None
        if not isinstance(argv, list) or not argv:
            raise self.error((*path, "command"), "must be a non-empty list of arguments (or one string)")
        for i, arg in enumerate(argv):
            if isinstance(arg, bool) or not isinstance(arg, str | int | float):
                raise self.error((*path, "command", i), f"must be a string, got {arg!r}")
        argv = [str(a) for a in argv]
        if not argv[0]:
            raise self.error((*path, "command", 0), "the program must not be empty")
        self.placeholders(argv, (*path, "command"), indexed=True)
        env = self.str_map(target, "env")
        s3_env = self.str_map(target, "s3_env")
        cwd = self.get(target, "cwd", path, str)
        if cwd is not None:
            file, _ = self.doc.where((*path, "cwd")) or (str(self.path), 1)
            cwd = str(Path(file).parent / cwd)
            if not Path(cwd).is_dir():
                raise self.error((*path, "cwd"), f"no such directory {cwd!r}")
        port = target.get("port", "auto")
        if port == "auto" or port is None:
            port_value: int | None = None
        elif isinstance(port, int) and not isinstance(port, bool) and 1 <= port <= 65535:
            port_value = port
        else:
            raise self.error((*path, "port"), f"must be `auto` or a port number 1-65535, got {port!r}")
        base_path = self.get(target, "base_path", path, str, "/sync")
        if not base_path.startswith("/"):
            raise self.error((*path, "base_path"), f"must start with '/', got {base_path!r}")
        timeout = self.get(target, "ready_timeout_s", path, float, 30.0)
        if timeout <= 0:
            raise self.error((*path, "ready_timeout_s"), "must be positive")
        return CommandSpec(
            argv=tuple(argv),
            env=env,
            cwd=cwd,
            ready=self.ready(target.get("ready")),
            port=port_value,
            s3_env=s3_env,
            base_path=base_path.rstrip("/") or "/",
            ready_timeout_s=timeout,
        )

    def ready(self, ready: Any) -> tuple[str, str]:
        where: tuple[Any, ...] = ("target", "ready")
        if ready is None:
            return ("tcp", "")
        if not isinstance(ready, dict) or len(ready) != 1 or set(ready) - {"http", "tcp"}:
            raise self.error(where, "must be {http: PATH} (GET answers 200) or {tcp: true} (port accepts)")
        if "tcp" in ready:
            if ready["tcp"] is not True:
                raise self.error((*where, "tcp"), f"must be true, got {ready['tcp']!r}")
            return ("tcp", "")
        http = ready["http"]
        if not isinstance(http, str) or not http.startswith("/"):
            raise self.error((*where, "http"), f"must be a path starting with '/', got {http!r}")
        return ("http", http)

    def str_map(self, target: dict[str, Any], key: str) -> dict[str, str]:
        where: tuple[Any, ...] = ("target", key)
        value = target.get(key)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.error(where, "must be a mapping of variable name to value")
        out: dict[str, str] = {}
        for name, item in value.items():
            if not isinstance(name, str) or not ENV_NAME.match(name):
                raise self.error((*where, name), f"{name!r} is not an environment variable name")
            if isinstance(item, bool) or not isinstance(item, str | int | float):
                raise self.error((*where, name), f"must be a string or a number, got {item!r}")
            out[name] = str(item)
            self.placeholders([out[name]], (*where, name), indexed=False)
        return out

    def placeholders(self, texts: list[str], where: tuple[Any, ...], indexed: bool) -> None:
        for i, text in enumerate(texts):
            bad = unknown_placeholders([text])
            if bad:
                raise self.error(
                    (*where, i) if indexed else where,
                    f"unknown placeholder {{{bad[0]}}}; known: "
                    + ", ".join("{" + p + "}" for p in PLACEHOLDERS),
                )

    def profile(self, target: dict[str, Any]) -> str | None:
        """`profile: FILE`, relative to the file that wrote it; loaded now so its mistakes stop
        the run before it starts, at their own file and line."""
        path: tuple[Any, ...] = ("target", "profile")
        name = self.get(target, "profile", ("target",), str)
        if name is None:
            return None
        file, _ = self.doc.where(path) or (str(self.path), 1)
        resolved = Path(file).parent / name
        if not resolved.is_file():
            raise self.error(path, f"no such target profile {name!r} (looked in {Path(file).parent})")
        try:
            load_profile(resolved)
        except ProfileError as exc:
            raise ScenarioError(exc.file, exc.line, exc.message) from None
        return str(resolved)

    def clients(self, clients: Any) -> tuple[ClientGroup, ...]:
        if not isinstance(clients, list) or not clients:
            raise self.error(("clients",), "must be a non-empty list of client groups")
        groups = []
        names: set[str] = set()
        total = 0
        for i, entry in enumerate(clients):
            path: tuple[Any, ...] = ("clients", i)
            if not isinstance(entry, dict):
                raise self.error(path, "a client group is a mapping (name:, behaviour:, count:, ...)")
            allowed = {"name", "behaviour", "count", "database", "via", "start_at_s", "token", "params"}
            unknown = set(entry) - allowed
            if unknown:
                raise self.error(
                    (*path, sorted(unknown)[0]),
                    f"unknown key; a client group has {', '.join(sorted(allowed))}",
                )
            behaviour = self.get(entry, "behaviour", path, str, required=True)
            cls = BEHAVIOURS.get(behaviour)
            if cls is None:
                raise self.error(
                    (*path, "behaviour"), f"unknown behaviour {behaviour!r}; known: {', '.join(BEHAVIOURS)}"
                )
            name = self.get(entry, "name", path, str, f"{behaviour}{i}")
            if name in names:
                raise self.error((*path, "name"), f"duplicate client group name {name!r}")
            names.add(name)
            count = self.get(entry, "count", path, int, 1)
            if not 1 <= count <= MAX_CLIENTS:
                raise self.error((*path, "count"), f"must be between 1 and {MAX_CLIENTS}")
            total += count
            via = self.get(entry, "via", path, str, "proxy")
            if via not in VIAS:
                raise self.error((*path, "via"), f"must be one of {', '.join(VIAS)}")
            params = self.get(entry, "params", path, dict, {})
            self.behaviour_params(cls, params, (*path, "params"))
            groups.append(
                ClientGroup(
                    name=name,
                    behaviour=behaviour,
                    count=count,
                    database=self.get(entry, "database", path, str, "db"),
                    via=via,
                    start_at_s=self.get(entry, "start_at_s", path, float, 0.0),
                    token=self.get(entry, "token", path, str),
                    params=params,
                )
            )
        if total > MAX_CLIENTS:
            raise self.error(("clients",), f"{total} clients in all; at most {MAX_CLIENTS}")
        return tuple(groups)

    def behaviour_params(self, cls: type[Behaviour], params: dict[str, Any], path: tuple[Any, ...]) -> None:
        hints = typing.get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls) if f.init and f.name not in ("client", "rng")}
        for key, value in params.items():
            if key not in fields:
                raise self.error(
                    (*path, key), f"{cls.name} has no parameter {key!r}; it has {', '.join(sorted(fields))}"
                )
            expected = hints.get(key)
            if not _fits(value, expected):
                raise self.error((*path, key), f"must be {_describe_type(expected)}, got {value!r}")

    def timeline(self, steps: Any, duration: float) -> tuple[Step, ...]:
        if not isinstance(steps, list):
            raise self.error(("timeline",), "must be a list of steps")
        out: list[Step] = []
        ids: set[str] = set()
        fault_ids: set[str] = set()
        for i, entry in enumerate(steps):
            path: tuple[Any, ...] = ("timeline", i)
            if not isinstance(entry, dict):
                raise self.error(path, "a step is a mapping with `at:` or `when:`, and `fault:` or `clear:`")
            allowed = {"id", "at", "when", "fault", "for", "clear"}
            unknown = set(entry) - allowed
            if unknown:
                raise self.error(
                    (*path, sorted(unknown)[0]), f"unknown key; a step has {', '.join(sorted(allowed))}"
                )
            step_id = self.get(entry, "id", path, str, f"step{i + 1}")
            if step_id in ids:
                raise self.error((*path, "id"), f"duplicate step id {step_id!r}")
            condition = self.condition(entry, path, ids, duration)
            fault = entry.get("fault")
            clear = self.get(entry, "clear", path, str)
            if (fault is None) == (clear is None):
                raise self.error(path, "a step has exactly one of `fault:` (apply) or `clear:` (a step id)")
            for_s = self.get(entry, "for", path, float)
            if for_s is not None and (fault is None or for_s <= 0):
                raise self.error((*path, "for"), "must be positive, and only on a `fault:` step")
            if fault is not None:
                try:
                    spec = validate_fault_spec(fault)
                except FaultSpecError as exc:
                    raise self.error((*path, "fault"), "; ".join(exc.errors)) from None
                fault = spec.to_json()
                fault_ids.add(step_id)
            if clear is not None and clear not in fault_ids:
                raise self.error((*path, "clear"), f"no earlier fault step with id {clear!r}")
            ids.add(step_id)
            line = (self.doc.where(path) or ("", 0))[1]
            out.append(Step(step_id, condition, fault, for_s, clear, line))
        return tuple(out)

    def condition(
        self, entry: dict[str, Any], path: tuple[Any, ...], ids: set[str], duration: float
    ) -> Condition:
        at = self.get(entry, "at", path, float)
        when = entry.get("when")
        if (at is None) == (when is None):
            raise self.error(
                path, "a step has exactly one of `at:` (seconds from the start) or `when:` (a condition)"
            )
        if at is not None:
            if not 0 <= at <= duration:
                raise self.error((*path, "at"), f"must be between 0 and duration_s ({duration:g})")
            return Condition(at_s=at)
        wpath = (*path, "when")
        if not isinstance(when, dict):
            raise self.error(
                wpath,
                "must be a mapping: {after: ID, delay_s: N} | {ops_ok: N} | {metric: NAME, at_least: X}",
            )
        allowed = {"after", "delay_s", "ops_ok", "metric", "at_least", "timeout_s"}
        unknown = set(when) - allowed
        if unknown:
            raise self.error(
                (*wpath, sorted(unknown)[0]), f"unknown condition; one of {', '.join(sorted(allowed))}"
            )
        after = self.get(when, "after", wpath, str)
        if after is not None and after not in ids:
            raise self.error((*wpath, "after"), f"no earlier step with id {after!r}")
        ops_ok = self.get(when, "ops_ok", wpath, int)
        metric = self.get(when, "metric", wpath, str)
        at_least = self.get(when, "at_least", wpath, float)
        if (metric is None) != (at_least is None):
            raise self.error(wpath, "`metric:` and `at_least:` go together")
        if sum(x is not None for x in (after, ops_ok, metric)) != 1:
            raise self.error(wpath, "give exactly one of after:, ops_ok:, metric:")
        return Condition(
            after_step=after,
            delay_s=self.get(when, "delay_s", wpath, float, 0.0),
            ops_ok=ops_ok,
            metric=metric,
            at_least=at_least,
            timeout_s=self.get(when, "timeout_s", wpath, float),
        )

    def catches(self, catches: Any, checks: dict[str, dict[str, Any]]) -> tuple[str, ...]:
        """`catches: [check, ...]`: the checks whose failure is the detection this scenario is
        for (a bug scenario's): `harness verify` counts no other failure as catching the bug."""
        if catches is None:
            return ()
        if not isinstance(catches, list) or not catches or not all(isinstance(c, str) for c in catches):
            raise self.error(("catches",), "must be a non-empty list of check names")
        for i, name in enumerate(catches):
            if name not in checks:
                raise self.error(
                    ("catches", i), f"{name!r} is not one of this scenario's checks ({', '.join(checks)})"
                )
        return tuple(catches)

    def checks(self, checks: Any) -> dict[str, dict[str, Any]]:
        if checks is None:
            raise self.error(
                ("checks",) if "checks" in self.doc.data else (), "missing required key 'checks'"
            )
        if isinstance(checks, list):
            checks = {name: {} for name in checks}
        if not isinstance(checks, dict) or not checks:
            raise self.error(
                ("checks",), "must be a list of check names or a mapping of check name to bounds"
            )
        out = {}
        for name, bounds in checks.items():
            path = ("checks", name)
            spec = CHECKS.get(name)
            if spec is None:
                raise self.error(path, f"unknown check {name!r}; known: {', '.join(sorted(CHECKS))}")
            bounds = bounds or {}
            if not isinstance(bounds, dict):
                raise self.error(path, "bounds are a mapping of parameter to value")
            try:
                spec.bind(bounds)
            except ValueError as exc:
                raise self.error(path, str(exc)) from None
            for key, value in bounds.items():
                default = spec.params[key].default
                if default is not None and not _same_kind(value, default):
                    raise self.error((*path, key), f"must be like the default {default!r}, got {value!r}")
            out[name] = dict(bounds)
        return out


def _article(name: str) -> str:
    return ("an " if name[0] in "aeiou" else "a ") + name


def _same_kind(value: Any, default: Any) -> bool:
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int | float):
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, type(default))


def _fits(value: Any, expected: Any) -> bool:
    if expected is None:
        return True
    origin = typing.get_origin(expected)
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        return any(_fits(value, arg) for arg in typing.get_args(expected))
    if expected is type(None):
        return value is None
    if expected is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is tuple:
        return isinstance(value, list | tuple)
    if isinstance(expected, type):
        return isinstance(value, expected)
    return True


def _describe_type(expected: Any) -> str:
    if expected is None:
        return "a value"
    if isinstance(expected, type):
        return _article(expected.__name__)
    return str(expected).replace("typing.", "")
