"""Scenario files: valid ones load with their bounds and faults; every kind of mistake is
reported at its file and line, also through `extends`."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.scenario.loader import ScenarioError, load_scenario

SUITE = sorted(Path("scenarios").glob("*.yaml"))

BASE = """\
duration_s: 10
target:
  coordinator:
    options: {heartbeat_interval_ms: 500}
clients:
  - name: w
    behaviour: writer
    params: {count: 5}
checks: [convergence]
"""


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("path", SUITE, ids=[p.stem for p in SUITE])
def test_every_shipped_scenario_loads(path: Path) -> None:
    scenario = load_scenario(path)
    assert scenario.checks and scenario.clients and scenario.duration_s > 0


def test_bug_scenarios_load() -> None:
    for path in sorted(Path("scenarios/bugs").glob("*.yaml")):
        assert load_scenario(path).checks


def test_extends_merges_and_the_child_wins(tmp_path: Path) -> None:
    _write(tmp_path, "base.yaml", BASE)
    child = _write(
        tmp_path,
        "child.yaml",
        "extends: base.yaml\nname: child\nduration_s: 4\n"
        "timeline:\n  - {at: 1, fault: {kind: latency, latency_ms: 50}, for: 1}\n",
    )
    scenario = load_scenario(child)
    assert scenario.name == "child" and scenario.duration_s == 4.0
    assert scenario.target.coordinator_options == {"heartbeat_interval_ms": 500}
    assert scenario.timeline[0].fault == {
        "kind": "latency",
        "target": "client",
        "latency_ms": 50,
        "jitter_ms": 0,
        "direction": "downstream",
        "toxicity": 1.0,
    }


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        (
            BASE.replace("params: {count: 5}", "params: {count: many}"),
            8,
            "clients.0.params.count: must be an int",
        ),
        (BASE.replace("behaviour: writer", "behaviour: typist"), 7, "unknown behaviour 'typist'"),
        (BASE.replace("checks: [convergence]", "checks: [convergance]"), 9, "unknown check 'convergance'"),
        (BASE + "timeline:\n  - {at: 1, fault: {kind: latncy}}\n", 11, "did you mean 'latency'"),
        (
            BASE + "timeline:\n  - {at: 99, fault: {kind: pause}}\n",
            11,
            "timeline.0.at: must be between 0 and",
        ),
        (BASE + "timeline:\n  - {at: 1, clear: nothing}\n", 11, "no earlier fault step with id 'nothing'"),
        (BASE + "colour: blue\n", 10, "colour: unknown key"),
        (BASE.replace("duration_s: 10", "duration_s: -1"), 1, "duration_s: must be between"),
        (
            BASE.replace("checks: [convergence]", "checks:\n  heartbeat-continuity: {facter: 2}"),
            10,
            "has no parameter facter",
        ),
        ("duration_s: 10\nclients: [\n", 3, "YAML syntax"),
        (BASE + "duration_s: 3\n", 10, "duplicate key 'duration_s'"),
    ],
)
def test_mistakes_name_file_and_line(tmp_path: Path, text: str, line: int, fragment: str) -> None:
    path = _write(tmp_path, "bad.yaml", text)
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    assert caught.value.file == str(path) and caught.value.line == line, str(caught.value)
    assert fragment in caught.value.message and str(caught.value).startswith(f"{path}:{line}: ")


def test_a_mistake_in_a_base_file_is_reported_in_that_file(tmp_path: Path) -> None:
    base = _write(tmp_path, "base.yaml", BASE.replace("params: {count: 5}", "params: {count: many}"))
    child = _write(tmp_path, "child.yaml", "extends: base.yaml\nname: child\n")
    with pytest.raises(ScenarioError) as caught:
        load_scenario(child)
    assert caught.value.file == str(base) and caught.value.line == 8


def test_extends_cycle_and_missing_parent(tmp_path: Path) -> None:
    _write(tmp_path, "a.yaml", "extends: b.yaml\n")
    _write(tmp_path, "b.yaml", "extends: a.yaml\n")
    with pytest.raises(ScenarioError, match="extends cycle"):
        load_scenario(tmp_path / "a.yaml")
    missing = _write(tmp_path, "c.yaml", "extends: nowhere.yaml\n")
    with pytest.raises(ScenarioError, match=r"no such file 'nowhere\.yaml'"):
        load_scenario(missing)
