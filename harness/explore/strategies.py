"""The fuzzer's strategies: malformed and hostile input for every client-to-server WS message
type (PROTOCOL.md 3.1) and for the HTTP routes a token reaches.

Every input drawn here is invalid by construction (a value the protocol cannot accept, never a
value that merely looks odd), so every one must get its specific error: a strategy that could
draw valid input would make the fuzzer report correct servers. Each input says what it imitates
(`request`) and what is wrong (`intent`), the two things error-specificity judges by.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

HLC_BYTES = 30
SITE_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


@dataclass(frozen=True)
class HostileInput:
    """One input. channel: `ws` (a raw frame on an authenticated session) or `tenant` (the
    session's token used on a database it is not granted, over WS and HTTP)."""

    channel: str
    frame: str | dict[str, Any]
    intent: str  # not_json | unknown_type | bad_input | foreign_database
    request: str | None = None

    def describe(self) -> str:
        shown = self.frame if isinstance(self.frame, str) else json.dumps(self.frame, sort_keys=True)
        return f"{self.channel} {self.intent} {self.request or ''} {shown[:300]}"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# values that are not a valid HLC (standard base64 of exactly 30 bytes)
NOT_BASE64 = st.text(alphabet="%!*$# ~", min_size=1, max_size=12)
WRONG_LENGTH = st.binary(min_size=0, max_size=64).filter(lambda b: len(b) != HLC_BYTES).map(_b64)
NOT_A_STRING: st.SearchStrategy[Any] = st.one_of(
    st.integers(), st.booleans(), st.lists(st.integers(), max_size=3), st.just({})
)
BAD_HLC = st.one_of(NOT_BASE64, WRONG_LENGTH, NOT_A_STRING)
# values that are not a valid siteId (22 characters of base64url)
BAD_SITE = st.one_of(
    st.text(alphabet=SITE_ALPHABET, max_size=40).filter(lambda s: len(s) != 22),
    st.text(alphabet="%!*$# ~+/=", min_size=22, max_size=22),
    NOT_A_STRING,
)
NOT_A_LIST: st.SearchStrategy[Any] = st.one_of(
    st.text(max_size=10), st.integers(), st.booleans(), st.just({})
)
NOT_AN_OBJECT: st.SearchStrategy[Any] = st.one_of(
    st.text(max_size=10), st.integers(), st.lists(st.integers(), max_size=3)
)


def _good_site() -> str:
    return base64.urlsafe_b64encode(b"\x07" * 16).decode().rstrip("=")


def _good_hlc(wall: int = 1_700_000_000_000) -> str:
    return _b64(wall.to_bytes(8, "big") + (0).to_bytes(2, "big") + b"\x07" * 16 + (1).to_bytes(4, "big"))


def _change_set(**over: Any) -> dict[str, Any]:
    hlc = _good_hlc()
    change = {
        "type": "column",
        "schema": "main",
        "table": "items",
        "pk": [1],
        "column": "name",
        "value": "x",
        "hlc": hlc,
    }
    out: dict[str, Any] = {
        "siteId": _good_site(),
        "transactionId": f"1700000000000:0:{_good_site()}",
        "hlc": hlc,
        "changes": [change],
        "schemaMigrations": [],
    }
    out.update(over)
    return out


@st.composite
def bad_change_set(draw: st.DrawFn) -> dict[str, Any]:
    """A change set with exactly one field broken (the rest valid, so the error names it)."""
    hlc = _good_hlc()
    base_change = _change_set()["changes"][0]
    broken = draw(
        st.sampled_from(["siteId", "hlc", "changes", "change-hlc", "change-type", "change-pk", "missing"])
    )
    if broken == "siteId":
        return _change_set(siteId=draw(BAD_SITE))
    if broken == "hlc":
        return _change_set(hlc=draw(BAD_HLC))
    if broken == "changes":
        return _change_set(changes=draw(NOT_A_LIST))
    if broken == "change-hlc":
        return _change_set(changes=[dict(base_change, hlc=draw(BAD_HLC))])
    if broken == "change-type":
        kind = draw(st.text(max_size=8).filter(lambda t: t not in ("column", "delete")))
        return _change_set(changes=[dict(base_change, type=kind)])
    if broken == "change-pk":
        return _change_set(changes=[dict(base_change, pk=draw(st.one_of(st.text(max_size=5), st.just({}))))])
    field = draw(st.sampled_from(["siteId", "hlc", "changes"]))
    out = _change_set(hlc=hlc)
    del out[field]
    return out


def _not_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return True
    return False


KNOWN_TYPES = {"handshake", "get_changes", "apply_changes", "get_snapshot", "resume_snapshot", "ping"}

NOT_JSON = st.builds(
    lambda t: HostileInput("ws", t, "not_json"),
    st.one_of(st.text(min_size=1, max_size=60), st.just("{"), st.just('{"type": ')).filter(_not_json),
)
UNKNOWN_TYPE = st.builds(
    lambda t: HostileInput("ws", {"type": t}, "unknown_type"),
    st.text(min_size=1, max_size=20).filter(lambda t: t not in KNOWN_TYPES),
)
GET_CHANGES = st.builds(
    lambda h, rid: HostileInput(
        "ws", {"type": "get_changes", "sinceHLC": h, **rid}, "bad_input", "get_changes"
    ),
    BAD_HLC,
    st.sampled_from([{}, {"requestId": "fz"}]),
)
APPLY_NOT_LIST = st.builds(
    lambda c: HostileInput(
        "ws", {"type": "apply_changes", "changes": c, "requestId": "fz"}, "bad_input", "apply_changes"
    ),
    NOT_A_LIST,
)
APPLY_BAD_SET = st.builds(
    lambda cs: HostileInput(
        "ws", {"type": "apply_changes", "changes": [cs], "requestId": "fz"}, "bad_input", "apply_changes"
    ),
    bad_change_set(),
)


@st.composite
def bad_checkpoint(draw: st.DrawFn) -> Any:
    good = {
        "snapshotId": "s-1",
        "siteId": _good_site(),
        "hlc": _good_hlc(),
        "lastTableIndex": 0,
        "lastEntryIndex": 0,
        "completedTables": [],
        "entriesProcessed": 0,
        "createdAt": 0,
    }
    broken = draw(st.sampled_from(["object", "siteId", "hlc"]))
    if broken == "object":
        return draw(NOT_AN_OBJECT)
    return dict(good, **{broken: draw(BAD_SITE if broken == "siteId" else BAD_HLC)})


RESUME = st.builds(
    lambda cp: HostileInput(
        "ws", {"type": "resume_snapshot", "checkpoint": cp}, "bad_input", "resume_snapshot"
    ),
    bad_checkpoint(),
)
TENANT = st.builds(
    lambda how: HostileInput("tenant", how, "foreign_database"),
    st.sampled_from(["ws-handshake", "http-get_changes", "http-apply", "http-snapshot"]),
)


def hostile_inputs() -> st.SearchStrategy[HostileInput]:
    """Any one hostile input, over every message type and the tenant boundary."""
    return st.one_of(NOT_JSON, UNKNOWN_TYPE, GET_CHANGES, APPLY_NOT_LIST, APPLY_BAD_SET, RESUME, TENANT)


def hostile_programs() -> st.SearchStrategy[list[HostileInput]]:
    """A few inputs in a row on one session: orders of messages matter too."""
    return st.lists(hostile_inputs(), min_size=1, max_size=4)
