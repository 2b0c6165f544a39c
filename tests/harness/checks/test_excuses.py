"""Excuse policies: a fault window's causes come from its recorded family and effect, never from
the spelling of its kind; a policy excuses a window when every cause of it is declared; the
declared policies mean exactly what `disturbed()`'s flags meant."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import Any

import pytest

from harness.checks.excuses import (
    CAUSES,
    DEFAULT_POLICY,
    DELAY,
    FAILPOINT,
    FAILPOINT_DELAY,
    NETWORK,
    PROCESS,
    S3,
    UNKNOWN,
    ExcusePolicy,
    excuses,
    window_causes,
)
from harness.checks.observations import Observations, ProcessEvent
from harness.checks.registry import CHECKS, load_all, register
from harness.checks.views import backend_windows, fault_delay_s, overlaps
from harness.history import FAULT_FAMILIES, FaultWindow, History
from tests.harness.checks.script import Script, run


def _window(kind: str, target: str = "client", family: str = "", **params: Any) -> FaultWindow:
    return FaultWindow(1, kind, target, params, 1.0, 2.0, family)


# causes -----------------------------------------------------------------------------------------
def test_a_window_recorded_without_family_takes_it_from_the_kind_table() -> None:
    assert window_causes(_window("s3_outage", "s3")) == {S3}
    assert window_causes(_window("proxy_down")) == {NETWORK}
    assert window_causes(_window("latency", latency_ms=100)) == {NETWORK, DELAY}
    assert window_causes(_window("terminate", "coordinator")) == {PROCESS}
    assert window_causes(_window("failpoint", "storage.write", mode="error")) == {FAILPOINT}
    assert window_causes(_window("failpoint", "storage.write", mode="delay")) == {FAILPOINT, FAILPOINT_DELAY}


def test_no_substring_of_a_kind_or_target_makes_a_backend_fault() -> None:
    """`s3-outage` is no fault kind; a client named `s3writer` is a client."""
    misspelt = _window("s3-outage", "s3")
    assert misspelt.family == UNKNOWN and window_causes(misspelt) == {UNKNOWN}
    assert window_causes(_window("proxy_down", "client:s3writer")) == {NETWORK}
    h = History(clock=lambda: 10.0)
    h.faults = [misspelt, _window("reset_peer", "client:backend-1")]
    assert backend_windows(h) == []


def test_the_recorded_family_wins_over_the_kind() -> None:
    """A fault class of a newer harness records its family; the kind table is only a fallback."""
    window = _window("bucket_vanishes", "s3", family="s3")
    assert window_causes(window) == {S3}
    h = History(clock=lambda: 10.0)
    h.faults = [window]
    assert backend_windows(h) == [window]


def test_a_network_fault_on_the_path_to_the_object_store_is_an_object_store_fault() -> None:
    assert window_causes(_window("reset_peer", "s3")) == {NETWORK, S3}
    assert window_causes(_window("latency", "s3", latency_ms=50)) == {NETWORK, DELAY, S3}


def test_an_unknown_cause_in_a_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown excuse causes"):
        ExcusePolicy("x", frozenset({"backend"}))


# excuses() --------------------------------------------------------------------------------------
def test_a_window_excuses_only_when_every_cause_is_declared() -> None:
    s = Script()
    s.fault("latency", "s3", 1.0, 2.0, latency_ms=50)
    s.at(5.0)
    both = ExcusePolicy("x", frozenset({NETWORK, DELAY, S3}))
    assert excuses(both, s.history, s.obs, 1.5, 1.6) == [{"fault": 1, "kind": "latency", "target": "s3"}]
    for missing in (NETWORK, DELAY, S3):
        assert excuses(ExcusePolicy("x", both.excused_by - {missing}), s.history, s.obs, 1.5, 1.6) == []
    assert excuses(both, s.history, s.obs, 2.5, 3.0) == []  # outside the window


def test_a_fault_on_one_clients_proxy_excuses_only_that_client() -> None:
    s = Script()
    s.fault("proxy_down", "client:b", 1.0, 2.0)
    s.at(5.0)
    assert excuses(DEFAULT_POLICY, s.history, s.obs, 1.0, 2.0, processes=("a",)) == []
    assert excuses(DEFAULT_POLICY, s.history, s.obs, 1.0, 2.0, processes=("a", "b"))
    assert excuses(DEFAULT_POLICY, s.history, s.obs, 1.0, 2.0)  # nobody named: it counts
    unscoped = ExcusePolicy("x", DEFAULT_POLICY.excused_by, per_client=False)
    assert excuses(unscoped, s.history, s.obs, 1.0, 2.0, processes=("a",))


def test_process_actions_excuse_only_where_process_is_declared() -> None:
    s = Script()
    s.obs.process.append(ProcessEvent(1.5, "sigkill"))
    s.obs.process.append(ProcessEvent(1.2, "start"))  # a start disturbs nothing
    s.at(5.0)
    assert excuses(DEFAULT_POLICY, s.history, s.obs, 1.0, 2.0) == [{"process": "sigkill", "time": 1.5}]
    assert excuses(ExcusePolicy("x", frozenset({NETWORK})), s.history, s.obs, 1.0, 2.0) == []


def test_nothing_in_force_excuses_nothing() -> None:
    s = Script().at(5.0)
    assert excuses(ExcusePolicy("x", CAUSES), s.history, s.obs, 0.0, 5.0) == []


def test_only_delay_faults_widen_a_bound() -> None:
    s = Script()
    s.fault("latency", "client", 1.0, 2.0, latency_ms=100, jitter_ms=20)
    s.fault("s3_latency", "s3", 1.0, 2.0, latency_ms=900)  # S3 latency slows S3 calls, not frames
    s.fault("failpoint", "storage.write", 1.0, 2.0, mode="delay", delay_ms=700)
    s.at(5.0)
    assert fault_delay_s(s.history, 1.5, 1.6) == pytest.approx(0.24)


# the policies mean what the flags meant ---------------------------------------------------------
BACKEND_MARKERS = ("s3", "object-store", "backend")


def _old_disturbed(
    history: History,
    obs: Observations,
    start: float,
    end: float,
    include_backend: bool,
    include_failpoints: bool,
    include_delays: bool,
    processes: Iterable[str] | None,
    include_failpoint_delays: bool,
) -> list[dict[str, Any]]:
    """`disturbed()` as it was (substrings of kind names), the reference for the real kinds."""

    def backend(w: FaultWindow) -> bool:
        return any(m in f"{w.kind} {w.target}".lower() for m in BACKEND_MARKERS)

    def failpoint(w: FaultWindow) -> bool:
        return "failpoint" in w.kind.lower()

    def fp_delay(w: FaultWindow) -> bool:
        return failpoint(w) and str(w.params.get("mode", "error")).lower() == "delay"

    involved = set(processes) if processes is not None else None
    found: list[dict[str, Any]] = [
        {"fault": w.id, "kind": w.kind, "target": w.target}
        for w in history.faults
        if overlaps(w, start, end, history.now())
        and (include_delays or w.kind not in ("latency", "jitter"))
        and (involved is None or not w.target.startswith("client:") or w.target[7:] in involved)
        and (include_backend or not backend(w))
        and (include_failpoints or not failpoint(w))
        and (include_failpoint_delays or not fp_delay(w))
    ]
    found += [
        {"process": e.kind, "time": e.time}
        for e in obs.process
        if e.kind != "start" and start <= e.time <= end
    ]
    return found


def policy_from_flags(
    include_backend: bool = False,
    include_failpoints: bool = True,
    include_delays: bool = False,
    include_failpoint_delays: bool = True,
) -> ExcusePolicy:
    """The policy the old `disturbed()`'s flags meant (the reference the declared policies were
    translated from)."""
    causes = {NETWORK, PROCESS, UNKNOWN}
    causes |= {S3} if include_backend else set()
    causes |= {FAILPOINT} if include_failpoints else set()
    causes |= {FAILPOINT_DELAY} if include_failpoint_delays else set()
    causes |= {DELAY} if include_delays else set()
    return ExcusePolicy("a late or missing answer", frozenset(causes))


def _every_real_window() -> Script:
    s = Script()
    targets = {
        "network": ("client", "client:a", "client:b", "s3"),
        "s3": ("s3",),
        "process": ("coordinator",),
    }
    t = 0.0
    for kind, family in FAULT_FAMILIES.items():
        for target in targets.get(family, ("storage.write",)):
            modes = ("error", "delay") if kind == "failpoint" else ("error",)
            for mode in modes:
                params = {"mode": mode} if kind == "failpoint" else {"latency_ms": 10}
                s.fault(kind, target, t, t + 1.0, **params)
                t += 0.5
    s.obs.process.append(ProcessEvent(3.0, "sigterm"))
    s.at(t + 2.0)
    return s


def test_every_flag_combination_excuses_what_it_did_on_every_real_fault_kind() -> None:
    s = _every_real_window()
    end = s.history.now()
    for flags in itertools.product((False, True), repeat=4):
        for processes in (None, ("a",), ("a", "b")):
            for start in [x / 2 for x in range(int(end * 2))]:
                old = _old_disturbed(s.history, s.obs, start, start + 0.4, *flags[:3], processes, flags[3])
                policy = policy_from_flags(*flags)
                new = excuses(policy, s.history, s.obs, start, start + 0.4, processes)
                assert new == old, (flags, processes, start)


def test_the_default_policy_is_the_old_disturbed_without_flags() -> None:
    assert policy_from_flags().excused_by == DEFAULT_POLICY.excused_by


# the registry -----------------------------------------------------------------------------------
def test_every_check_declares_its_policies_and_a_check_without_gets_the_default() -> None:
    load_all()
    for spec in CHECKS.values():
        assert all(isinstance(p, ExcusePolicy) for p in spec.excuses), spec.name
    assert [p.excused_by for p in CHECKS["heartbeat-continuity"].excuses] == [
        frozenset({NETWORK, PROCESS, UNKNOWN})
    ]
    assert CHECKS["convergence"].excuses == ()

    @register("test-undeclared-policy", "test", "a check written before policies")
    def undeclared(history: History, obs: Observations, params: dict[str, Any]) -> Any:
        return None

    try:
        assert CHECKS["test-undeclared-policy"].excuses == (DEFAULT_POLICY,)
    finally:
        del CHECKS["test-undeclared-policy"]


def test_a_heartbeat_gap_in_a_journal_window_without_family_is_judged_by_its_kind() -> None:
    """An old journal's S3 outage (no family recorded) still excuses nothing for heartbeats;
    its proxy_down still does."""
    for kind, target, status in (("s3_outage", "s3", "fail"), ("proxy_down", "client", "pass")):
        s = Script()
        s.at(0.0).connect("a")
        for t in (1.0, 2.0, 6.0, 7.0):
            s.at(t).heartbeat("a")
        s.at(7.5).close("a", by_client=True)
        s.fault(kind, target, 2.5, 5.5)
        assert s.history.faults[0].family == FAULT_FAMILIES[kind]
        assert run(s, "heartbeat-continuity", interval_s=1.0).status == status, kind
    empty = Script().at(5.0)
    assert run(empty, "heartbeat-continuity", interval_s=1.0).status == "unknown"
