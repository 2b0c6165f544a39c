"""The rule groups: what an exploration may do, drawn from the existing behaviours and faults.

Each rule records one step in the program (harness/explore/program.py); none acts on its own:
clients are the behaviours of harness/client/behaviours.py, faults the kinds of the fault
registry, with parameters drawn by Hypothesis from small, meaningful ranges (a shrinker that
can only choose among values the harness knows can only shrink to a program that still means
something). `--rules GROUP...` keeps only some groups.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

from harness.explore.program import MIN_FAULT_S, TICK_S, Program, ProgramStep


@dataclass
class ClientInfo:
    name: str
    behaviour: str
    via: str
    left: bool = False


@dataclass
class ExploreState:
    """What the rules' preconditions need to know: who is connected, which faults are on."""

    program: Program = field(default_factory=Program)
    clients: list[ClientInfo] = field(default_factory=list)
    faults: dict[str, str] = field(default_factory=dict)  # active step id -> family (clearable)
    started: dict[str, float] = field(default_factory=dict)  # active step id -> its start time

    def client(self, name: str, behaviour: str, params: dict[str, Any], **extra: Any) -> None:
        self.program.add(
            ProgramStep("client", self.program.clock_s, name, behaviour=behaviour, params=params, extra=extra)
        )
        self.clients.append(ClientInfo(name, behaviour, str(extra.get("via", "proxy"))))

    def fault(self, prefix: str, spec: dict[str, Any], for_s: float | None, family: str) -> None:
        name = self.program.new_name(prefix)
        self.program.add(ProgramStep("fault", self.program.clock_s, name, fault=spec, for_s=for_s))
        if for_s is None:
            self.faults[name] = family
            self.started[name] = self.program.steps[-1].at_s

    def active(self, family: str) -> list[str]:
        return sorted(n for n, f in self.faults.items() if f == family)

    def lasted(self, family: str, at_least_s: float) -> list[str]:
        """Active faults of the family that have been on at least this long."""
        now = self.program.clock_s
        return [n for n in self.active(family) if now - self.started[n] >= at_least_s]

    def clear(self, name: str) -> None:
        self.faults.pop(name, None)
        self.program.add(ProgramStep("clear", self.program.clock_s, name))

    def sessions(self) -> int:
        """Client processes the program has started (a group of `count` is that many)."""
        return sum(int(s.extra.get("count", 1)) for s in self.program.steps if s.kind == "client")

    def live(self, via: str | None = None) -> list[str]:
        return [c.name for c in self.clients if not c.left and (via is None or c.via == via)]


@dataclass(frozen=True)
class RuleSpec:
    """One rule: its group, the strategies of its arguments, when it may run, and its step."""

    group: str
    name: str
    args: dict[str, st.SearchStrategy[Any]]
    apply: Callable[..., None]
    precondition: Callable[[ExploreState], bool] = lambda state: True


VIA = st.sampled_from(["proxy", "own_proxy"])
SHARE = st.sampled_from([0.0, 0.5, 1.0])


# clients: connect, leave cleanly, drop TCP ------------------------------------------------------
def connect_subscriber(state: ExploreState, via: str) -> None:
    name = state.program.new_name("sub")
    state.client(name, "subscriber", {"listen_s": 30.0, "max_reconnects": 20}, via=via)


def connect_writer(state: ExploreState, via: str, http_share: float, delete_share: float) -> None:
    params = {"count": 10, "interval_s": 0.1, "keys": 10, "http_share": http_share}
    params["delete_share"] = delete_share
    state.client(state.program.new_name("writer"), "writer", params, via=via)


def leave(state: ExploreState, data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(state.live()), label="client")
    for info in state.clients:
        if info.name == name:
            info.left = True
    state.program.add(ProgramStep("leave", state.program.clock_s, name))


def drop_tcp(state: ExploreState, data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(state.live("own_proxy")), label="client")
    spec = {"kind": "reset_peer", "target": f"client:{name}", "timeout_ms": 0}
    state.fault("drop", spec, TICK_S, "network")


# writes: conflicting writes on one HLC tick, deletes, HTTP -------------------------------------
def conflicting_writes(state: ExploreState, count: int, http_share: float) -> None:
    params = {"rounds": 3, "interval_s": 0.4, "lead_s": 0.5, "keys": 12, "cells_per_round": 3}
    params["http_share"] = http_share
    state.client(state.program.new_name("conflict"), "conflicter", params, count=count)


def burst_writers(state: ExploreState, count: int) -> None:
    params = {"count": 40, "interval_s": 0.01}
    state.client(state.program.new_name("burst"), "writer", params, count=count)


# reads and snapshots ---------------------------------------------------------------------------
def page_changes(state: ExploreState) -> None:
    state.client(state.program.new_name("reader"), "reader", {"polls": 5, "interval_s": 0.2})


def snapshots(state: ExploreState, http_share: float, cut: bool) -> None:
    params = {"count": 3, "http_share": http_share, "cut_share": 1.0 if cut else 0.0}
    params.update({"max_cut_chunks": 2, "interval_s": 0.2})
    state.client(state.program.new_name("snap"), "snapshotter", params)


def stall_reader(state: ExploreState) -> None:
    writer = {"count": 40, "interval_s": 0.03, "columns": ["name"], "value_bytes": 60000}
    writer["changes_per_set"] = 4
    state.client(state.program.new_name("bulk"), "writer", writer)
    params = {"stall_after_s": 0.3, "stall_s": 4.0, "drain_s": 1.0}
    state.client(state.program.new_name("stalled"), "slow_reader", params)


# network toxics --------------------------------------------------------------------------------
TOXICS: dict[str, dict[str, Any]] = {
    "latency": {"kind": "latency", "latency_ms": 150},
    "slicer": {"kind": "slicer", "average_size": 64, "delay_us": 200},
    "bandwidth": {"kind": "bandwidth", "rate_kbps": 64},
}


def toxic_on(state: ExploreState, toxic: str, path: str) -> None:
    spec = dict(TOXICS[toxic], target=path)
    state.fault("toxic", spec, None, "network")


def toxic_off(state: ExploreState, data: st.DataObject) -> None:
    state.clear(data.draw(st.sampled_from(state.active("network")), label="toxic"))


# S3 --------------------------------------------------------------------------------------------
# An outage lasts at least this long, and never overlaps a paused target: a shorter one, or one
# the target slept through, may meet no S3 request, and no server can announce an outage it
# never saw (degradation-announced does not excuse those; the bundled bug scenarios use >= 3 s).
MIN_OUTAGE_S = MIN_FAULT_S


def s3_outage_on(state: ExploreState, mode: str) -> None:
    state.fault("outage", {"kind": "s3_outage", "mode": mode}, None, "s3")


def s3_off(state: ExploreState, data: st.DataObject) -> None:
    state.clear(data.draw(st.sampled_from(state.lasted("s3", MIN_OUTAGE_S)), label="s3 fault"))


def s3_slow(state: ExploreState, latency_ms: int) -> None:
    state.fault("s3slow", {"kind": "s3_latency", "latency_ms": latency_ms}, MIN_FAULT_S, "s3")


# process ---------------------------------------------------------------------------------------
def pause(state: ExploreState) -> None:
    state.fault("pause", {"kind": "pause"}, None, "pause")


def resume(state: ExploreState) -> None:
    state.clear(state.active("pause")[0])


def kill_restart(state: ExploreState) -> None:
    state.fault("kill", {"kind": "kill"}, 2 * TICK_S, "process")


def sigterm_restart(state: ExploreState) -> None:
    state.fault("sigterm", {"kind": "terminate"}, 2 * TICK_S, "process")


# failpoints ------------------------------------------------------------------------------------
FAILPOINTS: dict[str, dict[str, Any]] = {
    "slow-storage-write": {"kind": "failpoint", "target": "storage.write", "mode": "delay", "delay_ms": 40},
    "snapshot-read-error": {
        "kind": "failpoint",
        "target": "snapshot.read",
        "mode": "error",
        "probability": 0.5,
    },
    "broadcast-send-error": {"kind": "failpoint", "target": "broadcast.send", "mode": "error", "times": 1},
}


def failpoint_on(state: ExploreState, failpoint: str) -> None:
    state.fault("fp", dict(FAILPOINTS[failpoint]), None, "failpoint")


def failpoint_off(state: ExploreState, data: st.DataObject) -> None:
    state.clear(data.draw(st.sampled_from(state.active("failpoint")), label="failpoint"))


# hostile input ---------------------------------------------------------------------------------
def bad_input(state: ExploreState) -> None:
    state.client(state.program.new_name("bad"), "bad_input", {"rounds": 1})


def intruder(state: ExploreState) -> None:
    params = {"foreign_database": "db", "attempts": 2}
    name = state.program.new_name("intruder")
    state.client(name, "intruder", params, database="other", token="intruder-token")


# At most this many client processes per program: every one of them runs in the harness's own
# process and catches up at the end, and ~45 of them pulling a 10 MB log stalled the harness's
# loop 3 s (the server's heartbeats were sent on time, received late): the harness measured
# itself, not the server.
MAX_SESSIONS = 24


def _room(state: ExploreState) -> bool:
    """Room for one more client rule (the largest adds 4 processes)."""
    return state.sessions() + 4 <= MAX_SESSIONS


def _no_bulk_yet(state: ExploreState) -> bool:
    """One stalled reader per program: each brings ~10 MB of large changes fanned out to every
    session, and stacking them overloads a small machine (heartbeats stalled 3 s in the server
    itself under four at once: the machine judged, not the server). One already overflows the
    default 8 MB send queue, which is what the slow-client checks need."""
    return not any(c.behaviour == "slow_reader" for c in state.clients) and _room(state)


def _paused(state: ExploreState) -> bool:
    return bool(state.active("pause"))


def _not_paused(state: ExploreState) -> bool:
    return not _paused(state)


DATA = st.data()
RULES: tuple[RuleSpec, ...] = (
    RuleSpec("clients", "connect_subscriber", {"via": VIA}, connect_subscriber, _room),
    RuleSpec(
        "clients",
        "connect_writer",
        {"via": VIA, "http_share": SHARE, "delete_share": st.sampled_from([0.0, 0.3])},
        connect_writer,
        _room,
    ),
    RuleSpec("clients", "leave", {"data": DATA}, leave, lambda s: bool(s.live())),
    RuleSpec("clients", "drop_tcp", {"data": DATA}, drop_tcp, lambda s: bool(s.live("own_proxy"))),
    RuleSpec(
        "writes",
        "conflicting_writes",
        {"count": st.integers(2, 4), "http_share": SHARE},
        conflicting_writes,
        _room,
    ),
    RuleSpec("writes", "burst_writers", {"count": st.integers(2, 4)}, burst_writers, _room),
    RuleSpec("reads", "page_changes", {}, page_changes, _room),
    RuleSpec("snapshots", "snapshots", {"http_share": SHARE, "cut": st.booleans()}, snapshots, _room),
    RuleSpec("slow", "stall_reader", {}, stall_reader, _no_bulk_yet),
    RuleSpec(
        "network",
        "toxic_on",
        {"toxic": st.sampled_from(sorted(TOXICS)), "path": st.sampled_from(["client", "s3"])},
        toxic_on,
    ),
    RuleSpec("network", "toxic_off", {"data": DATA}, toxic_off, lambda s: bool(s.active("network"))),
    RuleSpec(
        "s3",
        "s3_outage_on",
        {"mode": st.sampled_from(["close", "http-503"])},
        s3_outage_on,
        lambda s: not s.active("s3") and not s.active("pause"),
    ),
    RuleSpec("s3", "s3_off", {"data": DATA}, s3_off, lambda s: bool(s.lasted("s3", MIN_OUTAGE_S))),
    RuleSpec("s3", "s3_slow", {"latency_ms": st.sampled_from([1000, 4000])}, s3_slow),
    RuleSpec("process", "pause", {}, pause, lambda s: _not_paused(s) and not s.active("s3")),
    RuleSpec("process", "resume", {}, resume, _paused),
    RuleSpec("process", "kill_restart", {}, kill_restart, _not_paused),
    RuleSpec("process", "sigterm_restart", {}, sigterm_restart, _not_paused),
    RuleSpec(
        "failpoints",
        "failpoint_on",
        {"failpoint": st.sampled_from(sorted(FAILPOINTS))},
        failpoint_on,
        lambda s: len(s.active("failpoint")) < 2,
    ),
    RuleSpec(
        "failpoints", "failpoint_off", {"data": DATA}, failpoint_off, lambda s: bool(s.active("failpoint"))
    ),
    RuleSpec("input", "bad_input", {}, bad_input, _room),
    RuleSpec("input", "intruder", {}, intruder, _room),
)

GROUPS: tuple[str, ...] = tuple(dict.fromkeys(rule.group for rule in RULES))


def rules_of(groups: list[str] | None) -> tuple[RuleSpec, ...]:
    """The rules of the named groups (all without a selection); unknown names are a ValueError."""
    if not groups:
        return RULES
    unknown = sorted(set(groups) - set(GROUPS))
    if unknown:
        raise ValueError(f"unknown rule group(s) {', '.join(unknown)}; groups: {', '.join(GROUPS)}")
    return tuple(rule for rule in RULES if rule.group in groups)
