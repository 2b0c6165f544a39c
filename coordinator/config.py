"""Every option of `coordinator serve`, from defaults < config file < COORDINATOR_* environment
variables < command-line flags. One table (the dataclass fields) drives all four, so an option
cannot exist in one form and be missing in another."""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

ENV_PREFIX = "COORDINATOR_"
TOMBSTONE_POLICIES = ("revive", "delete-wins")
COMPAT_MODES = ("none", "plain-v1")
WS_COMPRESSION_MODES = ("off", "deflate")
# What --compat plain-v1 changes among the options the user did not set (a plain Quereus default).
PLAIN_V1_DEFAULTS: dict[str, object] = {"tombstone_policy": "delete-wins", "idle_store_timeout_ms": 300_000}


def opt(default: Any, help: str, **extra: Any) -> Any:
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"help": help, **extra})
    return field(default=default, metadata={"help": help, **extra})


@dataclass(slots=True)
class CoordinatorConfig:
    host: str = opt("127.0.0.1", "address to listen on")
    port: int = opt(3000, "port to listen on (0: an ephemeral port, reported in --port-file)")
    data_dir: str = opt("./data", "directory of the SQLite stores, one per database id")
    base_path: str = opt("/sync", "path prefix of every route")
    port_file: str | None = opt(None, "write {host, port, pid, basePath} as JSON here once accepting")
    tokens: list[str] = opt(
        [],
        "accepted token, repeatable: TOKEN (every database) or TOKEN:DB[=ro],DB... (globs allowed); "
        "none given: no authentication (environment: separate with ;)",
    )
    admin_token: str | None = opt(None, "token for /debug/resources and the failpoint routes")
    heartbeat_interval_ms: int = opt(5000, "heartbeat period to every session")
    presence_interval_ms: int = opt(
        250,
        "presence_delta coalescing: at most one per database (so per session) this often, carrying every "
        "join and leave since the previous one (0: each change at once)",
    )
    ws_compression: str = opt(
        "off",
        "permessage-deflate: off (never negotiated) or deflate (negotiated when a client offers it, without "
        "server context takeover, so a broadcast is compressed once and the same bytes go to every recipient)",
        choices=WS_COMPRESSION_MODES,
    )
    max_open_stores: int = opt(100, "open stores before least-recently-used idle ones are evicted")
    idle_store_timeout_ms: int = opt(60000, "close a store unused for this long")
    max_message_bytes: int = opt(
        1_048_576, "largest client frame; larger ones get MESSAGE_TOO_LARGE and 1009"
    )
    rate_limit_per_s: float = opt(1000.0, "sustained client messages per second per session")
    rate_limit_burst: int = opt(2000, "burst of client messages per session")
    max_connections: int = opt(20000, "concurrent WebSocket connections; further upgrades get 503")
    send_queue_messages: int = opt(1000, "outbound queue bound per session, in messages")
    send_queue_bytes: int = opt(8_388_608, "outbound queue bound per session, in bytes of JSON text")
    batch_size: int = opt(1000, "most changes in one get_changes answer (cut at transaction boundaries)")
    drain_timeout_ms: int = opt(10000, "graceful shutdown: time for in-flight work and uploads")
    shutdown_retry_after_ms: int = opt(1000, "retryAfterMs told to clients in SERVER_SHUTDOWN")
    enable_failpoints: bool = opt(False, "allow failpoints to be switched on through the admin routes")
    failpoint_seed: int | None = opt(None, "seed of failpoint probability draws")
    event_loop: str = opt("uvloop", "uvloop (faster) or asyncio", choices=("uvloop", "asyncio"))
    log_format: str = opt("text", "text or json (JSON lines)", choices=("text", "json"))
    log_level: str = opt(
        "info", "debug, info, warning or error", choices=("debug", "info", "warning", "error")
    )
    s3_bucket: str | None = opt(None, "persist batches and snapshots to this S3 bucket (none: local only)")
    s3_endpoint: str | None = opt(None, "S3 endpoint URL (MinIO, moto, ...); default: AWS")
    s3_prefix: str = opt("", "key prefix inside the bucket")
    s3_region: str | None = opt(None, "S3 region")
    tombstone_policy: str = opt(
        "revive",
        "revive: a column write with a larger HLC than the row's tombstone is applied; delete-wins: "
        "a column write to a deleted row is refused (a conflict) [default delete-wins under --compat plain-v1]",
        choices=TOMBSTONE_POLICIES,
    )
    compat: str = opt(
        "none",
        "plain-v1: a correct server without any [ext] feature of PROTOCOL.md (no seq, heartbeat, presence, "
        "notices, /health, /ready, /debug/resources, NOT_AUTHORIZED, INVALID_PAYLOAD), tokens valid on every "
        "database, tombstone policy delete-wins and idle-store timeout 300 s unless given",
        choices=COMPAT_MODES,
    )
    bugs: list[str] = opt(
        [], "re-introduce a catalogued bug (see `coordinator bugs`), repeatable; env: comma-separated"
    )

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)


class ConfigError(ValueError):
    """A bad option: the message names it and where it came from."""


def option_fields() -> list[Any]:
    return list(fields(CoordinatorConfig))


_LIST_SEPARATORS = {"tokens": ";", "bugs": ","}  # a token spec contains commas itself


def _coerce(name: str, raw: Any, template: Any, origin: str) -> Any:
    kind = type(template) if template is not None else str
    if isinstance(template, list):
        if isinstance(raw, str):
            return [item.strip() for item in raw.split(_LIST_SEPARATORS.get(name, ",")) if item.strip()]
        if isinstance(raw, list):
            return [str(item) for item in raw]
        raise ConfigError(f"{origin}: {name} must be a list")
    if raw is None:
        return None
    try:
        if kind is bool:
            if isinstance(raw, bool):
                return raw
            lowered = str(raw).strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if kind is int:
            if isinstance(raw, bool):
                raise ValueError(raw)
            return int(raw)
        if kind is float:
            return float(raw)
        return str(raw)
    except ValueError:
        raise ConfigError(f"{origin}: {name} must be a {kind.__name__}, got {raw!r}") from None


def _defaults() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in option_fields():
        out[f.name] = f.default_factory() if f.default is MISSING else f.default
    return out


def _templates() -> dict[str, Any]:
    templates = _defaults()
    typed = {"port_file": "", "admin_token": "", "s3_bucket": "", "s3_endpoint": "", "s3_region": ""}
    templates.update(typed)
    templates["failpoint_seed"] = 0
    return templates


def load_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"config file {path}: {exc.strerror}") from None
    try:
        if path.suffix == ".toml":
            data = tomllib.loads(text)
        elif path.suffix == ".json":
            data = json.loads(text)
        else:
            data = yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise ConfigError(
            f"config file {path}: not valid {path.suffix.lstrip('.') or 'YAML'}: {exc}"
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: must be a mapping of option names to values")
    return data


def _snake(name: str) -> str:
    out = "".join("_" + c.lower() if c.isupper() else c for c in name)
    return out.replace("-", "_")


def build_config(
    cli: dict[str, Any], environ: dict[str, str] | None = None, config_file: Path | None = None
) -> CoordinatorConfig:
    """Merge the four sources, validate, and name the culprit when something is wrong."""
    environ = dict(os.environ) if environ is None else environ
    templates = _templates()
    values = _defaults()
    given: set[str] = set()  # options set by some source, which a compat mode's defaults leave alone
    if config_file is not None:
        for key, raw in load_file(config_file).items():
            name = _snake(key)
            if name not in values:
                raise ConfigError(f"config file {config_file}: unknown option {key!r}")
            values[name] = _coerce(name, raw, templates[name], f"config file {config_file}")
            given.add(name)
    for name in values:
        env_name = ENV_PREFIX + name.upper()
        if env_name in environ:
            values[name] = _coerce(name, environ[env_name], templates[name], f"environment {env_name}")
            given.add(name)
    for name, raw in cli.items():
        if raw is not None and name in values:
            values[name] = raw
            given.add(name)
    if values["compat"] == "plain-v1":
        for name, default in PLAIN_V1_DEFAULTS.items():
            if name not in given:
                values[name] = default
    config = CoordinatorConfig(**values)
    validate(config)
    return config


def validate(config: CoordinatorConfig) -> None:
    positive = [
        "heartbeat_interval_ms",
        "max_open_stores",
        "idle_store_timeout_ms",
        "max_message_bytes",
        "rate_limit_burst",
        "max_connections",
        "send_queue_messages",
        "send_queue_bytes",
        "batch_size",
    ]
    for name in positive:
        if getattr(config, name) <= 0:
            raise ConfigError(f"{name} must be positive, got {getattr(config, name)}")
    if config.rate_limit_per_s <= 0:
        raise ConfigError(f"rate_limit_per_s must be positive, got {config.rate_limit_per_s}")
    if not 0 <= config.port <= 65535:
        raise ConfigError(f"port must be between 0 and 65535, got {config.port}")
    if config.presence_interval_ms < 0:
        raise ConfigError(f"presence_interval_ms must not be negative, got {config.presence_interval_ms}")
    if config.ws_compression not in WS_COMPRESSION_MODES:
        raise ConfigError(
            f"ws_compression must be {' or '.join(WS_COMPRESSION_MODES)}, got {config.ws_compression!r}"
        )
    if config.drain_timeout_ms < 0:
        raise ConfigError("drain_timeout_ms must not be negative")
    if not config.base_path.startswith("/") or config.base_path.endswith("/"):
        raise ConfigError(f"base_path must start with / and not end with /, got {config.base_path!r}")
    from coordinator.ops.bugs import Bugs, ConflictingBugs, UnknownBug

    try:
        Bugs(config.bugs)
    except (UnknownBug, ConflictingBugs) as exc:
        raise ConfigError(f"bugs: {exc}") from None
    if config.tombstone_policy not in TOMBSTONE_POLICIES:
        raise ConfigError(
            f"tombstone_policy must be {' or '.join(TOMBSTONE_POLICIES)}, got {config.tombstone_policy!r}"
        )
    if config.compat not in COMPAT_MODES:
        raise ConfigError(f"compat must be {' or '.join(COMPAT_MODES)}, got {config.compat!r}")
    if config.log_format not in ("text", "json"):
        raise ConfigError(f"log_format must be text or json, got {config.log_format!r}")
