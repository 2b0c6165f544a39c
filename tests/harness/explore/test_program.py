"""The step recorder's translation: a recorded program is a normal scenario file the existing
loader reads, with clients at their times, leaves as durations and faults as `at:` steps."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.explore.program import (
    MIN_FAULT_S,
    RECOVERY_S,
    SETTLE_S,
    TAIL_S,
    TICK_S,
    Program,
    found_path,
    write_scenario,
)
from harness.explore.rules import GROUPS, ExploreState, connect_writer, pause, resume, rules_of, toxic_on
from harness.scenario.loader import load_scenario


def _program() -> ExploreState:
    state = ExploreState()
    connect_writer(state, via="own_proxy", http_share=0.5, delete_share=0.3)
    toxic_on(state, toxic="latency", path="client")
    pause(state)
    resume(state)
    from harness.explore.program import ProgramStep

    state.program.add(ProgramStep("leave", state.program.clock_s, state.clients[0].name))
    return state


def test_a_program_loads_as_a_scenario_with_its_times(tmp_path: Path) -> None:
    state = _program()
    doc = state.program.to_document("found", 9, catches=("convergence",))
    path = write_scenario(tmp_path / "found.yaml", doc, header=["the shrunk program"])
    scenario = load_scenario(path)
    assert scenario.name == "found" and scenario.seed == 9 and scenario.catches == ("convergence",)
    (writer,) = scenario.clients
    assert writer.behaviour == "writer" and writer.via == "own_proxy" and writer.start_at_s == 0.0
    assert writer.params["duration_s"] == 4 * TICK_S  # left at the fifth step's time
    steps = [(s.when.at_s, s.fault["kind"] if s.fault else s.clear) for s in scenario.timeline]
    toxic, paused = state.program.steps[1].name, state.program.steps[2].name
    # the toxic nobody cleared ends with the program, before the tail (and the recovery time)
    end = max(5 * TICK_S, TICK_S + MIN_FAULT_S)  # and not before it lasted MIN_FAULT_S
    assert steps == [(TICK_S, "latency"), (2 * TICK_S, "pause"), (3 * TICK_S, paused), (end, toxic)]
    assert scenario.timeline[0].id == toxic
    assert scenario.duration_s == state.program.duration_s() == end + TAIL_S
    assert scenario.settle_s == SETTLE_S + RECOVERY_S  # a pause: time to recover before judging
    assert "leaked-resources" in scenario.checks and scenario.checks["leaked-resources"]["ignore"]
    assert path.read_text().startswith("# the shrunk program\n")


def test_an_empty_program_still_loads(tmp_path: Path) -> None:
    path = write_scenario(tmp_path / "empty.yaml", Program().to_document("empty", 1))
    assert load_scenario(path).clients[0].behaviour == "reader"


def test_found_paths_never_overwrite(tmp_path: Path) -> None:
    first = found_path(tmp_path, "convergence")
    first.write_text("x")
    second = found_path(tmp_path, "convergence")
    assert first.name.endswith("-convergence.yaml") and second.name.endswith("-convergence-2.yaml")


def test_rule_groups_select_and_reject() -> None:
    assert {r.group for r in rules_of(["snapshots"])} == {"snapshots"}
    assert len(rules_of(None)) == len(rules_of(list(GROUPS)))
    with pytest.raises(ValueError, match="nope"):
        rules_of(["nope"])


def test_the_same_program_has_the_same_key() -> None:
    assert _program().program.key() == _program().program.key()
    other = _program()
    pause(other)
    assert other.program.key() != _program().program.key()


def test_an_outage_lasts_and_never_meets_a_pause() -> None:
    from harness.explore.rules import MIN_OUTAGE_S, RULES, page_changes, s3_outage_on

    allowed = {rule.name: rule.precondition for rule in RULES}
    state = ExploreState()
    s3_outage_on(state, mode="close")
    assert not allowed["s3_off"](state) and not allowed["pause"](state)
    while state.program.clock_s - state.started[state.active("s3")[0]] < MIN_OUTAGE_S:
        page_changes(state)
    assert allowed["s3_off"](state)
    paused = ExploreState()
    pause(paused)
    assert not allowed["s3_outage_on"](paused) and allowed["resume"](paused)


def test_one_stalled_reader_per_program() -> None:
    from harness.explore.rules import RULES, stall_reader

    allowed = {rule.name: rule.precondition for rule in RULES}
    state = ExploreState()
    assert allowed["stall_reader"](state)
    stall_reader(state)
    assert not allowed["stall_reader"](state)


def test_a_program_starts_at_most_max_sessions_clients() -> None:
    from harness.explore.rules import MAX_SESSIONS, RULES, burst_writers

    client_rules = [
        r for r in RULES if r.group in ("clients", "writes", "reads", "snapshots", "slow", "input")
    ]
    client_rules = [r for r in client_rules if r.name not in ("leave", "drop_tcp")]
    state = ExploreState()
    assert all(r.precondition(state) for r in client_rules)
    while state.sessions() + 4 <= MAX_SESSIONS:
        burst_writers(state, count=4)
    assert state.sessions() <= MAX_SESSIONS
    assert not any(r.precondition(state) for r in client_rules)


def test_a_program_lasts_until_a_sigtermed_target_exited_and_restarted() -> None:
    from harness.explore.program import TAIL_S, TERMINATE_EXIT_S
    from harness.explore.rules import sigterm_restart

    state = ExploreState()
    connect_writer(state, via="proxy", http_share=0.0, delete_share=0.0)
    sigterm_restart(state)  # at 0.5 s, restart 1 s after its exit
    assert state.program.duration_s() >= 0.5 + TERMINATE_EXIT_S + 1.0 + TAIL_S
