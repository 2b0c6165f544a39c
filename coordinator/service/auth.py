"""Authentication (is this token known?) and authorization (may it read or write this
database?). Tokens are granted per database, so a token for A gets NOT_AUTHORIZED on B."""

from __future__ import annotations

import fnmatch
import hmac
import re
from dataclasses import dataclass
from typing import ClassVar

from coordinator.ops.bugs import Bugs, BugSwaps

# Matched with fullmatch: `^...$` with `match` accepts a final newline ("db\n"), which becomes a
# store file name and splits log lines.
DATABASE_ID_RE = re.compile(r"[A-Za-z0-9_:.-]{1,128}")


def valid_database_id(value: object) -> bool:
    return isinstance(value, str) and DATABASE_ID_RE.fullmatch(value) is not None


@dataclass(frozen=True, slots=True)
class Grant:
    pattern: str
    write: bool


@dataclass(frozen=True, slots=True)
class Identity:
    token: str | None
    grants: tuple[Grant, ...] | None  # None: every database, read and write

    def may(self, database_id: str, write: bool) -> bool:
        if self.grants is None:
            return True
        return any(
            fnmatch.fnmatchcase(database_id, g.pattern) and (g.write or not write) for g in self.grants
        )


class TokenSpecError(ValueError):
    pass


def parse_token_spec(spec: str) -> tuple[str, tuple[Grant, ...] | None]:
    """TOKEN, or TOKEN:DB[=ro|rw],DB... (DB may be a glob)."""
    token, sep, rest = spec.partition(":")
    if not token:
        raise TokenSpecError(f"token spec {spec!r}: empty token")
    if not sep:
        return token, None
    grants = []
    for item in rest.split(","):
        pattern, _, mode = item.strip().partition("=")
        if not pattern or mode not in ("", "ro", "rw"):
            raise TokenSpecError(f"token spec {spec!r}: grant {item!r} must be DB, DB=ro or DB=rw")
        grants.append(Grant(pattern, mode != "ro"))
    return token, tuple(grants)


class Authenticator:
    """`per_database=False` (plain v1, which has no grants): a known token may read and write
    every database, whatever grants its spec names."""

    BUG_SWAPS: ClassVar[BugSwaps] = {
        "missing-authorization": ("authenticate", "_authenticate_with_missing_authorization"),
    }

    def __init__(
        self,
        token_specs: list[str],
        admin_token: str | None,
        bugs: Bugs | None = None,
        per_database: bool = True,
    ) -> None:
        self._tokens = dict(parse_token_spec(spec) for spec in token_specs)
        if not per_database:
            self._tokens = dict.fromkeys(self._tokens)
        self._admin = admin_token
        (bugs or Bugs()).apply(self, self.BUG_SWAPS)

    @property
    def open(self) -> bool:
        return not self._tokens

    def authenticate(self, token: object) -> Identity | None:
        if not self._tokens:
            return Identity(None, None)
        if not isinstance(token, str):
            return None
        token = strip_bearer(token)
        for known, grants in self._tokens.items():
            if hmac.compare_digest(known.encode(), token.encode()):
                return Identity(known, grants)
        return None

    def _authenticate_with_missing_authorization(self, token: object) -> Identity | None:
        """BUG missing-authorization (BUGS.md): the token is checked, its grants are not: any
        valid token reads and writes every database."""
        identity = Authenticator.authenticate(self, token)
        return Identity(identity.token, None) if identity is not None else None

    def is_admin(self, authorization: str | None) -> bool:
        if self._admin is None or authorization is None:
            return False
        return hmac.compare_digest(self._admin.encode(), strip_bearer(authorization).encode())


def strip_bearer(value: str) -> str:
    return value[7:].strip() if value[:7].lower() == "bearer " else value.strip()
