"""Run isolation (namespaced database and site ids, replayable by nonce) and check bounds from
the target's profile: the bundled coordinator's options, or the external target's file, never
the bundled options for an external target."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from harness.checks.observations import Observations
from harness.checks.registry import CHECKS, Param, load_all, run_check
from harness.history import History
from harness.scenario.loader import ScenarioError, load_scenario
from harness.scenario.runner import RunOptions, check_bounds, granted_databases, settle_time, target_profile
from harness.seed import Seeds
from harness.targets.namespace import DATABASE_ID, Namespace
from harness.targets.profile import ProfileError, TargetProfile, bundled_profile, load_profile

SCENARIO = """\
name: bounds
duration_s: 5
target:
  coordinator:
    options: {heartbeat_interval_ms: 500, idle_store_timeout_ms: 1000, tokens: ["A:db,b*=ro", "B"]}
clients:
  - {name: w, behaviour: writer, params: {count: 2}}
  - {name: x, behaviour: writer, database: b1, token: A, params: {count: 2}}
  - {name: i, behaviour: intruder, database: other, token: A, params: {foreign_database: zz}}
checks: [heartbeat-continuity, degradation-announced, leaked-resources, convergence]
"""


def _storage_path(database_id: str) -> str:
    """PROTOCOL.md section 5: ':' -> '/', other characters outside [A-Za-z0-9/_-] -> '_'."""
    return re.sub(r"[^A-Za-z0-9/_-]", "_", database_id.replace(":", "/"))


def test_database_ids_are_prefixed_by_scenario_seed_and_nonce() -> None:
    ns = Namespace("smoke", 42, "abc123")
    assert ns.prefix == "smoke-42-abc123" and ns.database("db") == "smoke-42-abc123.db"
    assert ns.local("smoke-42-abc123.db") == "db" and ns.local("elsewhere.db") == "elsewhere.db"
    assert Namespace("smoke", 42, "other1").database("db") != ns.database("db")


def test_colliding_names_still_collide_and_long_names_stay_valid() -> None:
    ns = Namespace("my scenario/with:odd chars", 7, "n1")
    assert DATABASE_ID.match(ns.database("a.b")) and ns.prefix.startswith("my_scenario_with_odd_chars")
    assert _storage_path(ns.database("a.b")) == _storage_path(ns.database("a_b"))
    long = Namespace("x" * 300, 2**47, "ffffffffffffffff")
    assert DATABASE_ID.match(long.database("d" * 60)) and long.prefix.endswith(f"-{2**47}-ffffffffffffffff")
    with pytest.raises(ValueError, match="not a valid database id"):
        long.database("d" * 100)
    with pytest.raises(ValueError, match="nonce"):
        Namespace("s", 1, "no/slashes")


def test_site_ids_follow_seed_nonce_and_client_so_a_replay_reuses_them() -> None:
    seeds = Seeds(42)
    ns = Namespace("smoke", 42, "abc123")
    first = ns.site_id(seeds, "writer-0")
    assert ns.site_id(Seeds(42), "writer-0") == first  # replay: same seed and nonce
    assert ns.site_id(seeds, "writer-1") != first
    assert Namespace("smoke", 42, "zzz").site_id(seeds, "writer-0") != first  # a new run
    assert ns.site_id(Seeds(43), "writer-0") != first


def test_bundled_token_grants_follow_the_namespace() -> None:
    ns = Namespace("s", 1, "n")
    assert ns.token_spec("A:db,b*=ro") == "A:s-1-n.db,s-1-n.b*=ro"
    assert ns.token_spec("B") == "B"


def test_bundled_bounds_come_from_the_coordinator_options(tmp_path: Path) -> None:
    scenario = load_scenario(_write(tmp_path, SCENARIO))
    bounds = check_bounds(scenario, bundled_profile(scenario.target.coordinator_options))
    assert bounds["heartbeat-continuity"]["interval_s"] == 0.5
    assert bounds["degradation-announced"]["heartbeat_interval_s"] == 0.5
    assert bounds["leaked-resources"]["settle_s"] == 3.0
    assert settle_time(scenario) == 4.0


def test_external_bounds_come_from_the_profile_never_the_bundled_options(tmp_path: Path) -> None:
    scenario = load_scenario(_write(tmp_path, SCENARIO))
    notes: list[str] = []
    profile = target_profile(scenario, RunOptions(target_url="http://127.0.0.1:1/sync"), notes)
    assert profile == TargetProfile() and "no target profile" in notes[0]
    bounds = check_bounds(scenario, profile)
    assert "interval_s" not in bounds["heartbeat-continuity"] and "settle_s" not in bounds["leaked-resources"]
    obs = Observations()
    obs.capabilities["heartbeat"] = True
    result = run_check("heartbeat-continuity", History(), obs, bounds["heartbeat-continuity"])
    assert result.status == "unknown" and "heartbeat_interval_ms" in result.summary
    staging = TargetProfile(heartbeat_interval_ms=5000, idle_store_timeout_ms=300000)
    bounds = check_bounds(scenario, staging)
    assert (
        bounds["heartbeat-continuity"]["interval_s"] == 5.0
        and bounds["leaked-resources"]["settle_s"] == 302.0
    )
    assert settle_time(scenario, staging) == scenario.settle_s  # longer than the cap: not waited for


def test_external_profile_file_is_read(tmp_path: Path) -> None:
    scenario = load_scenario(_write(tmp_path, SCENARIO))
    file = tmp_path / "staging.yaml"
    file.write_text("heartbeat_interval_ms: 2000\ntombstone_policy: delete-wins\n")
    options = RunOptions(target_url="http://127.0.0.1:1/sync", target_profile=file)
    profile = target_profile(scenario, options, [])
    assert profile.heartbeat_interval_ms == 2000.0 and profile.tombstone_policy == "delete-wins"


def test_tombstone_policy_bound_filled_for_checks_that_take_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    load_all()
    scenario = load_scenario(_write(tmp_path, SCENARIO))
    profile = TargetProfile(tombstone_policy="delete-wins")
    if "tombstone_policy" not in CHECKS["convergence"].params:  # until the check takes the param
        assert "tombstone_policy" not in check_bounds(scenario, profile)["convergence"]
        spec = CHECKS["convergence"]
        params = spec.params | {"tombstone_policy": Param(None, "revive | delete-wins")}
        monkeypatch.setitem(CHECKS, "convergence", dataclasses.replace(spec, params=params))
    assert check_bounds(scenario, profile)["convergence"]["tombstone_policy"] == "delete-wins"
    assert "tombstone_policy" not in check_bounds(scenario, TargetProfile())["convergence"]


def test_granted_databases_are_the_namespaced_ids_the_token_may_use(tmp_path: Path) -> None:
    scenario = load_scenario(_write(tmp_path, SCENARIO))
    ns = Namespace("bounds", 1, "n")
    profile = bundled_profile(scenario.target.coordinator_options)
    assert granted_databases(scenario, "A", profile, ns) == (ns.database("b1"), ns.database("db"))
    assert granted_databases(scenario, "B", profile, ns) is None  # everywhere
    staging = TargetProfile(tokens={"A": ("other", "z*")})
    assert granted_databases(scenario, "A", staging, ns) == (ns.database("other"), ns.database("zz"))
    assert granted_databases(scenario, "unknown", staging, ns) is None


def test_scenario_profile_is_relative_to_its_file_and_its_mistakes_are_located(tmp_path: Path) -> None:
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "p.yaml").write_text("heartbeat_interval_ms: 1000\n")
    text = SCENARIO.replace("target:\n  coordinator:", "target:\n  profile: profiles/p.yaml\n  coordinator:")
    scenario = load_scenario(_write(tmp_path, text))
    assert scenario.target.profile == str(tmp_path / "profiles" / "p.yaml")
    (tmp_path / "profiles" / "p.yaml").write_text("heartbeat_interval_ms: 1000\nwat: 1\n")
    with pytest.raises(ScenarioError) as caught:
        load_scenario(_write(tmp_path, text))
    assert caught.value.file.endswith("p.yaml") and caught.value.line == 2
    with pytest.raises(ScenarioError, match="no such target profile"):
        load_scenario(_write(tmp_path, text.replace("p.yaml", "missing.yaml")))


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "scenario.yaml"
    path.write_text(text)
    return path


def test_cli_refuses_a_malformed_nonce_and_a_bad_profile(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from harness.cli import main

    with pytest.raises(SystemExit) as caught:
        main(["run", "scenarios/smoke.yaml", "--namespace", "not/ok"])
    assert caught.value.code == 2
    bad = tmp_path / "p.yaml"
    bad.write_text("tombstone_policy: sometimes\n")
    assert (
        main(
            [
                "run",
                "scenarios/smoke.yaml",
                "--target-profile",
                str(bad),
                "--target",
                "http://127.0.0.1:9/sync",
            ]
        )
        == 2
    )
    assert f"{bad}:1:" in capsys.readouterr().err


def _token_run(profile: TargetProfile, target_url: str | None, scenario_token: str | None = None) -> object:
    import types

    target = types.SimpleNamespace(bundled=target_url is None, token=scenario_token)
    return types.SimpleNamespace(
        scenario=types.SimpleNamespace(target=target),
        options=RunOptions(target_url=target_url),
        profile=profile,
        notes=[],
    )


def test_a_scenarios_token_unknown_to_an_external_target_is_not_presented() -> None:
    from harness.scenario.runner import _token

    staging = TargetProfile(tokens={"real": ("*",)}, token="real")
    run = _token_run(staging, "http://127.0.0.1:1/sync", scenario_token="writer-token")
    assert _token(run, "intruder-token") == "real"  # type: ignore[arg-type]
    assert any("'intruder-token'" in n for n in run.notes) and any("'writer-token'" in n for n in run.notes)  # type: ignore[attr-defined]
    assert _token(run, "real") == "real"  # type: ignore[arg-type]
    bundled = _token_run(TargetProfile(), None, scenario_token="writer-token")
    assert _token(bundled, "intruder-token") == "intruder-token"  # type: ignore[arg-type]
    assert _token(bundled, None) == "writer-token"  # type: ignore[arg-type]
    anyone = _token_run(TargetProfile(open_access=True), "http://127.0.0.1:1/sync")
    assert _token(anyone, "intruder-token") == "intruder-token"  # type: ignore[arg-type]


def test_a_database_prefix_goes_before_every_id_of_the_run() -> None:
    ns = Namespace("smoke", 7, "abc", database_prefix="harness-")
    assert ns.database("db") == "harness-smoke-7-abc.db" and ns.local("harness-smoke-7-abc.db") == "db"
    assert ns.token_spec("t:db") == "t:harness-smoke-7-abc.db"
    with pytest.raises(ValueError, match="database prefix"):
        Namespace("smoke", 7, "abc", database_prefix="bad prefix")


def _with_paging_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """changes-paging as it registers itself (its own module, once merged): a `batch_size` param."""
    load_all()
    if "changes-paging" not in CHECKS:
        spec = dataclasses.replace(
            CHECKS["convergence"],
            name="changes-paging",
            params={"batch_size": Param(None, "changes per answer")},
        )
        monkeypatch.setitem(CHECKS, "changes-paging", spec)


PAGING = """\
name: paging-bounds
duration_s: 5
target:
  coordinator:
    options: {batch_size: 20}
clients:
  - {name: p, behaviour: pager, params: {rounds: 2}}
checks: [changes-paging]
"""


def test_batch_size_bound_from_the_bundled_option_or_the_profile_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _with_paging_check(monkeypatch)
    scenario = load_scenario(_write(tmp_path, PAGING))
    assert check_bounds(scenario)["changes-paging"]["batch_size"] == 20
    assert bundled_profile({}).batch_size == 1000  # the coordinator's default when not given
    file = tmp_path / "staging.yaml"
    file.write_text("batch_size: 500\n")
    external = target_profile(
        scenario, RunOptions(target_url="http://127.0.0.1:1/sync", target_profile=file), []
    )
    assert (
        external.batch_size == 500 and check_bounds(scenario, external)["changes-paging"]["batch_size"] == 500
    )
    assert "batch_size" not in check_bounds(scenario, TargetProfile())["changes-paging"]  # unknown: unset
    file.write_text("batch_size: 0\n")
    with pytest.raises(ProfileError, match=r"staging\.yaml:1: batch_size: must be a positive whole number"):
        load_profile(file)


def test_every_check_that_takes_a_profile_bound_gets_it_from_the_runner() -> None:
    """A check with a `tombstone_policy` or `batch_size` parameter the runner does not fill judges
    less than it could (deleted rows or batch sizes left unjudged) on every run."""
    from harness.checks.registry import load_all
    from harness.scenario.runner import BATCH_CHECKS, POLICY_CHECKS

    checks = load_all()
    assert {n for n, spec in checks.items() if "tombstone_policy" in spec.params} == set(POLICY_CHECKS)
    assert {n for n, spec in checks.items() if "batch_size" in spec.params} == set(BATCH_CHECKS)
