"""A target profile: what the harness cannot see about a target, written down (tokens and their
databases, tombstone policy, heartbeat and idle-store timings, capabilities).

For an external target it comes from a YAML file (`--target-profile`, or `target: {profile:}` in
a scenario; `harness probe` writes a first draft). For the bundled coordinator it is derived from
the options the harness starts it with, so both kinds of target feed check bounds the same way.
A value that is neither in the profile nor derivable stays None, and the checks that need it say
`unknown`, naming the missing key.

Database globs in `tokens` name the scenario's databases (`db`, `tenant-a`), not the run's
namespaced ids: a run matches them after removing its namespace prefix (harness/targets/namespace.py).
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.checks.capabilities import ALL as CAPABILITIES
from harness.scenario.located_yaml import Located, YamlSyntaxError, load_located

POLICIES = ("revive", "delete-wins")
KEYS = {
    "tokens",
    "token",
    "token_env",
    "admin_token_env",
    "tombstone_policy",
    "heartbeat_interval_ms",
    "presence_interval_ms",
    "idle_store_timeout_ms",
    "batch_size",
    "capabilities",
}
EVERYWHERE = ("*",)
# The reference coordinator's defaults (`coordinator serve --help`), read from its help, not its code.
BUNDLED_HEARTBEAT_MS = 5000.0
BUNDLED_IDLE_MS = 60000.0
BUNDLED_PRESENCE_MS = 250.0
PLAIN_V1_IDLE_MS = 300000.0
BUNDLED_BATCH_SIZE = 1000  # most changes in one get_changes answer


class ProfileError(Exception):
    """A mistake in a profile file, located like a scenario error."""

    def __init__(self, file: str, line: int, message: str) -> None:
        super().__init__(f"{file}:{line}: {message}")
        self.file, self.line, self.message = file, line, message


@dataclass(frozen=True)
class TargetProfile:
    source: str = "none"  # the file, or "bundled coordinator options"
    tokens: dict[str, tuple[str, ...]] = field(default_factory=dict)  # token -> database globs
    token: str | None = None
    token_env: str | None = None
    admin_token_env: str | None = None
    tombstone_policy: str | None = None
    heartbeat_interval_ms: float | None = None
    presence_interval_ms: float | None = None
    idle_store_timeout_ms: float | None = None
    batch_size: int | None = None  # the target's get_changes batch size (changes per answer)
    capabilities: dict[str, bool] = field(default_factory=dict)
    # Bundled coordinator without a `tokens` option: no authentication, every token everywhere.
    open_access: bool = False

    def client_token(self) -> str | None:
        """The token clients present by default: the profile's, else its env var's value."""
        if self.token is not None:
            return self.token
        return os.environ.get(self.token_env) if self.token_env else None

    def admin_token(self) -> str | None:
        return os.environ.get(self.admin_token_env) if self.admin_token_env else None

    def grants(self, token: str | None) -> tuple[str, ...] | None:
        """The database globs `token` may use; None when the profile does not say."""
        if self.open_access:
            return EVERYWHERE
        if token is None:
            return None
        return self.tokens.get(token)

    def granted(self, token: str | None, database: str) -> bool | None:
        """Whether `token` may use `database` (a scenario name, before namespacing); None: unknown."""
        globs = self.grants(token)
        if globs is None:
            return None
        return any(fnmatch.fnmatchcase(database, glob) for glob in globs)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def load_profile(path: str | Path) -> TargetProfile:
    path = Path(path)
    if not path.is_file():
        raise ProfileError(str(path), 0, "no such target profile file")
    try:
        doc = load_located(path)
    except YamlSyntaxError as exc:
        raise ProfileError(exc.file, exc.line, exc.message) from None
    return _Reader(path, doc).profile()


class _Reader:
    def __init__(self, path: Path, doc: Located) -> None:
        self.path, self.doc = path, doc

    def error(self, where: tuple[Any, ...], message: str) -> ProfileError:
        file, line = self.doc.where(where) or (str(self.path), 1)
        label = ".".join(str(p) for p in where)
        return ProfileError(file, line, f"{label}: {message}" if label else message)

    def text(self, data: dict[str, Any], key: str) -> str | None:
        value = data.get(key)
        if value is not None and not isinstance(value, str):
            raise self.error((key,), f"must be a string, got {value!r}")
        return value

    def millis(self, data: dict[str, Any], key: str) -> float | None:
        value = data.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise self.error((key,), f"must be a positive number of milliseconds, got {value!r}")
        return float(value)

    def count(self, data: dict[str, Any], key: str) -> int | None:
        value = data.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise self.error((key,), f"must be a positive whole number, got {value!r}")
        return value

    def profile(self) -> TargetProfile:
        data = self.doc.data
        if not isinstance(data, dict):
            raise self.error((), "a target profile is a mapping (tokens:, tombstone_policy:, ...)")
        for key in data:
            if key not in KEYS:
                raise self.error((key,), f"unknown key; a target profile has {', '.join(sorted(KEYS))}")
        policy = self.text(data, "tombstone_policy")
        if policy is not None and policy not in POLICIES:
            raise self.error(("tombstone_policy",), f"must be one of {', '.join(POLICIES)}, got {policy!r}")
        if data.get("token") is not None and data.get("token_env") is not None:
            raise self.error(("token_env",), "give token or token_env, not both")
        open_access = data.get("tokens") == "*"
        return TargetProfile(
            source=str(self.path),
            tokens={} if open_access else self.tokens(data.get("tokens")),
            open_access=open_access,
            token=self.text(data, "token"),
            token_env=self.text(data, "token_env"),
            admin_token_env=self.text(data, "admin_token_env"),
            tombstone_policy=policy,
            heartbeat_interval_ms=self.millis(data, "heartbeat_interval_ms"),
            presence_interval_ms=self.millis(data, "presence_interval_ms"),
            idle_store_timeout_ms=self.millis(data, "idle_store_timeout_ms"),
            batch_size=self.count(data, "batch_size"),
            capabilities=self.capabilities(data.get("capabilities")),
        )

    def tokens(self, tokens: Any) -> dict[str, tuple[str, ...]]:
        if tokens is None:
            return {}
        if not isinstance(tokens, dict):
            raise self.error(
                ("tokens",),
                "must be '*' (any token, or none, may use every database) or a mapping of token to "
                "{databases: GLOB or [GLOB, ...]}",
            )
        out: dict[str, tuple[str, ...]] = {}
        for name, spec in tokens.items():
            where = ("tokens", name)
            if not isinstance(spec, dict) or set(spec) != {"databases"}:
                raise self.error(where, "must be {databases: GLOB or [GLOB, ...]} ('*' = every database)")
            globs = spec["databases"]
            globs = [globs] if isinstance(globs, str) else globs
            if not isinstance(globs, list) or not globs or not all(isinstance(g, str) and g for g in globs):
                raise self.error((*where, "databases"), "must be a glob or a non-empty list of globs")
            out[str(name)] = tuple(globs)
        return out

    def capabilities(self, caps: Any) -> dict[str, bool]:
        if caps is None:
            return {}
        if not isinstance(caps, dict):
            raise self.error(("capabilities",), "must be a mapping of capability name to true/false")
        for name, value in caps.items():
            if name not in CAPABILITIES:
                raise self.error(
                    ("capabilities", name), f"unknown capability; known: {', '.join(CAPABILITIES)}"
                )
            if not isinstance(value, bool):
                raise self.error(("capabilities", name), f"must be true or false, got {value!r}")
        return dict(caps)


def bundled_profile(options: dict[str, Any]) -> TargetProfile:
    """The profile of the bundled coordinator started with these `coordinator serve` options
    (scenario keys: tokens, heartbeat_interval_ms, idle_store_timeout_ms, tombstone_policy, compat,
    batch_size)."""
    plain = options.get("compat") == "plain-v1"
    specs = options.get("tokens") or []
    specs = specs if isinstance(specs, list) else [specs]
    tokens: dict[str, tuple[str, ...]] = {}
    for spec in specs:
        name, sep, grants = str(spec).partition(":")
        if plain or not sep:
            tokens[name] = EVERYWHERE
        else:
            tokens[name] = tuple(g.split("=", 1)[0].strip() for g in grants.split(",") if g.strip())
    if plain:
        policy = str(options.get("tombstone_policy") or "delete-wins")
        idle = float(options.get("idle_store_timeout_ms") or PLAIN_V1_IDLE_MS)
        caps = dict.fromkeys(CAPABILITIES, False)
        heartbeat = None
        presence = None
    else:
        policy = str(options.get("tombstone_policy") or "revive")
        idle = float(options.get("idle_store_timeout_ms") or BUNDLED_IDLE_MS)
        caps = dict.fromkeys(CAPABILITIES, True)
        heartbeat = float(options.get("heartbeat_interval_ms") or BUNDLED_HEARTBEAT_MS)
        presence = BUNDLED_PRESENCE_MS
    return TargetProfile(
        source="bundled coordinator options",
        tokens=tokens,
        tombstone_policy=policy,
        heartbeat_interval_ms=heartbeat,
        presence_interval_ms=presence,
        idle_store_timeout_ms=idle,
        batch_size=int(options.get("batch_size") or BUNDLED_BATCH_SIZE),
        capabilities=caps,
        open_access=not specs,
    )
