"""Named load profiles as pure functions of run time, and their bounded parameters.

No Locust import here: the `harness load` runner validates a profile and its parameters before
it starts anything, and `locustfile.py` wraps `Profile.tick` in a `LoadTestShape`. Parameters
travel to the Locust process as `HARNESS_LOAD_*` environment variables (`to_env`/`from_env`),
which is also how the plain `locust -f harness/load/locustfile.py` way takes them.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

MAX_USERS = 5000
MAX_SPAWN_RATE = 500.0
MAX_RATE = 200.0  # requests per second per user
MAX_DURATION_S = 24 * 3600.0
MAX_DATABASES = 1000
MAX_HISTORY_OPS = 100_000

# The user classes of locustfile.py, by the names a `mix` uses.
USER_KINDS = ("writer", "subscriber", "reader", "snapshotter", "churner", "http_writer", "http_reader")
DEFAULT_MIX = {
    "writer": 2,
    "subscriber": 2,
    "reader": 1,
    "snapshotter": 1,
    "http_writer": 1,
    "http_reader": 1,
}


class LoadParamError(ValueError):
    """A load parameter out of its bounds or of the wrong kind (exit code 2)."""


@dataclass
class LoadParams:
    """Everything a profile needs; every loop it drives is bounded by these numbers."""

    profile: str = "steady"
    users: int = 10
    spawn_rate: float = 10.0
    duration_s: float = 30.0
    rate: float = 2.0  # requests per second per user (constant throughput)
    databases: int = 1
    database_prefix: str = ""
    mix: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_MIX))
    history_max_ops: int = 2000  # per Locust process: the sample the checks judge
    history_dir: str = ""
    t0: float = 0.0  # the harness's monotonic run start, so history times line up with faults
    token: str | None = None

    def validate(self) -> LoadParams:
        if self.profile not in PROFILES:
            raise LoadParamError(f"unknown profile {self.profile!r}; known: {', '.join(PROFILES)}")
        _bound("users", self.users, 1, MAX_USERS)
        _bound("spawn_rate", self.spawn_rate, 0.1, MAX_SPAWN_RATE)
        _bound("duration_s", self.duration_s, 1.0, MAX_DURATION_S)
        _bound("rate", self.rate, 0.01, MAX_RATE)
        _bound("databases", self.databases, 1, MAX_DATABASES)
        _bound("history_max_ops", self.history_max_ops, 0, MAX_HISTORY_OPS)
        for kind, weight in self.mix.items():
            if kind not in USER_KINDS:
                raise LoadParamError(f"unknown user kind {kind!r} in mix; known: {', '.join(USER_KINDS)}")
            _bound(f"mix.{kind}", weight, 0, 1000)
        if not any(self.mix.values()):
            raise LoadParamError("mix gives every user kind a weight of 0")
        return self

    def to_env(self) -> dict[str, str]:
        """The parameters as HARNESS_LOAD_* variables for the Locust process (token included:
        it is passed through the environment, never on a command line)."""
        out: dict[str, str] = {}
        for key, value in asdict(self).items():
            if value is None:
                continue
            text = ",".join(f"{k}={v}" for k, v in value.items()) if isinstance(value, dict) else str(value)
            out[f"HARNESS_LOAD_{key.upper()}"] = text
        return out

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> LoadParams:
        env = os.environ if env is None else env
        return cls.from_mapping(
            {
                f.name: env[f"HARNESS_LOAD_{f.name.upper()}"]
                for f in fields(cls)
                if f"HARNESS_LOAD_{f.name.upper()}" in env
            }
        )

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], base: LoadParams | None = None) -> LoadParams:
        """Values from a scenario's `load:` section, the environment or the CLI (strings are
        converted), over `base`; an unknown key is an error, not ignored."""
        out = LoadParams(**asdict(base)) if base is not None else cls()
        known = {f.name: f for f in fields(cls)}
        for key, raw in data.items():
            name = key.replace("-", "_")
            if name not in known:
                raise LoadParamError(f"unknown load parameter {key!r}; known: {', '.join(known)}")
            setattr(out, name, _convert(name, raw, getattr(cls(), name)))
        return out


def _convert(name: str, raw: Any, default: Any) -> Any:
    try:
        if name == "mix":
            if isinstance(raw, str):
                raw = dict(part.split("=", 1) for part in raw.split(",") if part)
            if not isinstance(raw, Mapping):
                raise LoadParamError("mix is a mapping of user kind to weight")
            return {str(k).strip(): int(v) for k, v in raw.items()}
        if name == "token":
            return None if raw in (None, "") else str(raw)
        if isinstance(default, bool):
            return str(raw).lower() in ("1", "true", "yes")
        if isinstance(default, int):
            if isinstance(raw, float) and not raw.is_integer():
                raise ValueError(raw)
            return int(raw)
        if isinstance(default, float):
            value = float(raw)
            if not math.isfinite(value):
                raise ValueError(raw)
            return value
        return str(raw)
    except (TypeError, ValueError) as exc:
        raise LoadParamError(f"load parameter {name}: not a valid value: {raw!r}") from exc


def _bound(name: str, value: float, lo: float, hi: float) -> None:
    if not lo <= value <= hi:
        raise LoadParamError(f"{name} must be between {lo:g} and {hi:g}, got {value:g}")


# profiles ------------------------------------------------------------------------------------
# A tick: seconds since start -> (users, spawn rate, user kinds with their weights) or None to stop.
Tick = tuple[int, float, dict[str, int]] | None


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    tick: Callable[[LoadParams, float], Tick]


def _mix(p: LoadParams) -> dict[str, int]:
    return {k: w for k, w in p.mix.items() if w > 0}


def _steady(p: LoadParams, t: float) -> Tick:
    return None if t >= p.duration_s else (p.users, p.spawn_rate, _mix(p))


def _ramp(p: LoadParams, t: float) -> Tick:
    """From 1 user to `users` over the first 80% of the run, in whole-second steps, then hold."""
    if t >= p.duration_s:
        return None
    climb = max(1.0, 0.8 * p.duration_s)
    users = max(1, min(p.users, math.ceil(p.users * math.floor(t + 1) / climb)))
    return users, p.spawn_rate, _mix(p)


def _spike(p: LoadParams, t: float) -> Tick:
    """A fifth of the users, then all of them (spawned as fast as allowed) for the middle third."""
    if t >= p.duration_s:
        return None
    third = p.duration_s / 3
    base = max(1, p.users // 5)
    if third <= t < 2 * third:
        return p.users, MAX_SPAWN_RATE if p.spawn_rate < p.users else p.spawn_rate, _mix(p)
    return base, p.spawn_rate, _mix(p)


def _fanout(p: LoadParams, t: float) -> Tick:
    """Many subscribers join one database, one writer writes (fanout_writer has fixed_count 1)."""
    if t >= p.duration_s:
        return None
    return max(2, p.users), p.spawn_rate, {"fanout_writer": 1, "subscriber": max(1, p.users - 1)}


def _reconnect(p: LoadParams, t: float) -> Tick:
    """Every user a churner: connect, handshake, close, again, all at `rate` per user."""
    if t >= p.duration_s:
        return None
    return p.users, p.spawn_rate, {"churner": 1}


PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile("steady", "a constant number of users of the mix for the whole run", _steady),
        Profile("ramp", "from 1 user up to --users over 80% of the run, then hold", _ramp),
        Profile("spike", "a fifth of the users, all of them in the middle third, a fifth again", _spike),
        Profile("soak", "steady, meant for long runs (--duration hours) at a low rate", _steady),
        Profile("fanout-storm", "many subscribers on one database, one writer", _fanout),
        Profile("reconnect-storm", "every user reconnects in a loop (connect, handshake, close)", _reconnect),
    )
}
