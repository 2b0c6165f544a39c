"""Run isolation on a shared server: every database id and site id of a run is namespaced by
scenario, seed and a run nonce, so a run never inherits another's rows, tombstones or sites.

Database `db` becomes `<ns>.db` with `ns = <scenario>-<seed>-<nonce>` (sanitised, truncated so the
id still matches ^[A-Za-z0-9_:.-]{1,128}$). Only a prefix is added, so two names that collide on
the server (`a.b` and `a_b` share an object-store place) still collide: the object-store
isolation scenario depends on that. The nonce is recorded in the journal; `--namespace NONCE`
replays a run with the same ids (on a fresh server), and each run picks a new one otherwise.
"""

from __future__ import annotations

import random
import re
import secrets
from dataclasses import dataclass

from harness.seed import Seeds

DATABASE_ID = re.compile(r"^[A-Za-z0-9_:.-]{1,128}$")
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
MAX_PREFIX = 64  # leaves at least 63 characters of the scenario's own name
NONCE_RE = re.compile(r"^[A-Za-z0-9]{1,16}$")
DATABASE_PREFIX_RE = re.compile(r"^[A-Za-z0-9_:.-]{0,32}$")


def new_nonce() -> str:
    return secrets.token_hex(4)


@dataclass(frozen=True)
class Namespace:
    scenario: str
    seed: int
    nonce: str
    # put before every id: the part of the name a staging server's token grants match
    # (a token granted `harness-*` needs `--database-prefix harness-`)
    database_prefix: str = ""

    def __post_init__(self) -> None:
        if not NONCE_RE.match(self.nonce):
            raise ValueError(f"namespace nonce {self.nonce!r}: 1 to 16 letters or digits")
        if not DATABASE_PREFIX_RE.match(self.database_prefix):
            raise ValueError(f"database prefix {self.database_prefix!r}: at most 32 of [A-Za-z0-9_:.-]")

    @property
    def prefix(self) -> str:
        """`[<database prefix>]<scenario>-<seed>-<nonce>`, sanitised; the scenario part is cut
        first when long."""
        tail = f"-{self.seed}-{self.nonce}"
        head = _UNSAFE.sub("_", self.scenario).strip("_") or "run"
        return self.database_prefix + head[: max(1, MAX_PREFIX - len(tail))] + tail

    def database(self, name: str) -> str:
        """The run's id for the scenario's database `name`."""
        full = f"{self.prefix}.{name}"
        if not DATABASE_ID.match(full):
            raise ValueError(
                f"database {name!r}: {full!r} is not a valid database id (at most 128 of [A-Za-z0-9_:.-])"
            )
        return full

    def local(self, database_id: str) -> str:
        """The scenario's name for one of the run's ids (ids of other runs are returned as they are)."""
        head = f"{self.prefix}."
        return database_id[len(head) :] if database_id.startswith(head) else database_id

    def token_spec(self, spec: str) -> str:
        """A bundled coordinator `tokens` entry (TOKEN or TOKEN:DB[=ro],DB...) with its database
        parts (globs too) namespaced like the databases they name."""
        name, sep, grants = spec.partition(":")
        if not sep:
            return spec
        parts = [g.strip() for g in grants.split(",") if g.strip()]
        return f"{name}:" + ",".join(f"{self.prefix}.{part}" for part in parts)

    def site_rng(self, seeds: Seeds, client_id: str) -> random.Random:
        """Where a client's site id comes from: the seed, the nonce and the client id."""
        return seeds.fresh(f"site:{self.nonce}:{client_id}")

    def site_id(self, seeds: Seeds, client_id: str) -> bytes:
        return self.site_rng(seeds, client_id).randbytes(16)

    def to_json(self) -> dict[str, object]:
        return {
            "scenario": self.scenario,
            "seed": self.seed,
            "nonce": self.nonce,
            "database_prefix": self.database_prefix,
            "prefix": self.prefix,
        }
