"""Load mode's pure parts: the users' codec against the harness's strict decoder, profiles,
parameters and their bounds, thresholds on hand-made stats, and the history sample."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from harness.checks.observations import Observations
from harness.checks.registry import run_check
from harness.history import History
from harness.load import wire
from harness.load.profiles import PROFILES, LoadParamError, LoadParams
from harness.load.results import RequestStats, by_name, merge_sample
from harness.load.runner import LoadRecord
from harness.load.sample import Sample
from harness.load.thresholds import Threshold, ThresholdError
from harness.model.changesets import ChangeSet
from harness.model.codec import HLC, decode_site_id


def test_change_sets_decode_with_the_harness_codec_and_hlcs_increase() -> None:
    clock = wire.Clock(wire.new_site_id())
    sets = [wire.change_set(clock, "w-1", n) for n in range(300)]
    decoded = [ChangeSet.from_wire(cs) for cs in sets]
    assert decode_site_id(sets[0]["siteId"]) == clock.site
    hlcs = [HLC.decode(cs["hlc"]) for cs in sets]
    assert hlcs == sorted(hlcs) and len(set(hlcs)) == len(hlcs)
    assert all(d.changes[0].hlc > HLC.decode(cs["hlc"]) for d, cs in zip(decoded, sets, strict=True))
    assert all(cs["transactionId"] == HLC.decode(cs["hlc"]).transaction_id() for cs in sets)


def test_stamp_age_is_read_back_and_foreign_values_are_ignored() -> None:
    value = wire.stamp("w", 3)
    age = wire.stamp_age_ms(value)
    assert age is not None and 0 <= age < 1000
    assert (
        wire.stamp_age_ms("hello") is None
        and wire.stamp_age_ms(5) is None
        and wire.stamp_age_ms("lt:x") is None
    )
    message = {"type": "push_changes", "changeSets": [{"changes": [{"value": value}, {"value": 1}]}]}
    assert wire.pushed_values(message) == [value, 1]


@pytest.mark.parametrize("name", list(PROFILES))
def test_every_profile_stops_by_itself_within_its_bounds(name: str) -> None:
    params = LoadParams(profile=name, users=50, duration_s=30).validate()
    ticks = [PROFILES[name].tick(params, t / 2) for t in range(0, 60)]
    assert all(t is not None for t in ticks)
    assert PROFILES[name].tick(params, 30.0) is None
    for users, rate, kinds in (t for t in ticks if t is not None):
        assert 1 <= users <= params.users and 0 < rate and kinds


def test_ramp_climbs_and_spike_spikes() -> None:
    params = LoadParams(profile="ramp", users=40, duration_s=20)
    counts = [PROFILES["ramp"].tick(params, t)[0] for t in range(20)]  # type: ignore[index]
    assert counts == sorted(counts) and counts[0] < 10 and counts[-1] == 40
    spike = LoadParams(profile="spike", users=40, duration_s=30)
    assert [PROFILES["spike"].tick(spike, t)[0] for t in (1, 15, 25)] == [8, 40, 8]  # type: ignore[index]


def test_fanout_storm_is_one_writer_and_subscribers() -> None:
    users, _, kinds = PROFILES["fanout-storm"].tick(LoadParams(profile="fanout-storm", users=100), 1)  # type: ignore[misc]
    assert users == 100 and set(kinds) == {"fanout_writer", "subscriber"}


def test_params_come_from_mappings_and_env_and_are_bounded() -> None:
    params = LoadParams.from_mapping({"users": "7", "spawn-rate": 2, "mix": "writer=2,subscriber=1"})
    assert (params.users, params.spawn_rate, params.mix) == (7, 2.0, {"writer": 2, "subscriber": 1})
    params.token = "secret"
    assert LoadParams.from_env(params.to_env()) == params
    for bad in (
        {"users": 0},
        {"users": 100_000},
        {"rate": 1e9},
        {"profile": "nope"},
        {"mix": "writer=0"},
        {"mix": "ghost=1"},
    ):
        with pytest.raises(LoadParamError):
            LoadParams.from_mapping(bad).validate()
    for bad_value in ({"users": "many"}, {"wat": 1}, {"duration_s": "nan"}):
        with pytest.raises(LoadParamError):
            LoadParams.from_mapping(bad_value)


def _entry(name: str, times: dict[int, int], failures: int = 0, method: str = "WS") -> dict[str, object]:
    count = sum(times.values())
    return {
        "name": name, "method": method, "num_requests": count, "num_failures": failures,
        "total_response_time": float(sum(k * v for k, v in times.items())), "max_response_time": float(max(times)),
        "min_response_time": float(min(times)), "response_times": {str(k): v for k, v in times.items()},
        "start_time": 100.0, "last_request_timestamp": 110.0,
    }  # fmt: skip


def test_percentiles_follow_locusts_rule_and_methods_merge() -> None:
    stats = by_name([_entry("apply->ack", {10: 90, 300: 10}), _entry("apply->ack", {20: 100}, method="POST")])
    ack = stats["apply->ack"]
    assert ack.requests == 200 and ack.percentile(0.5) == 20 and ack.percentile(0.99) == 300
    assert ack.percentile(0.9) == 20 and ack.rps == pytest.approx(20.0)
    assert RequestStats("x", "*").percentile(0.5) is None


def test_thresholds_parse_or_say_why() -> None:
    t = Threshold.parse("apply->push p99>250ms")
    assert (t.name, t.metric, t.op, t.limit) == ("apply->push", "p99", ">", 250.0)
    assert (
        Threshold.parse("errors>1%").limit == pytest.approx(0.01)
        and Threshold.parse("errors>1%").name == "all"
    )
    assert Threshold.parse("snapshot max>2s").limit == 2000.0
    for bad in ("p99 250", "apply->push p99>1%", "errors>5ms", "apply->ack p101>1ms", ""):
        with pytest.raises(ThresholdError):
            Threshold.parse(bad)


def test_a_threshold_is_crossed_by_bad_stats_held_by_good_ones_unknown_without_any() -> None:
    p99 = Threshold.parse("apply->push p99>250ms")
    errors = Threshold.parse("errors>1%")
    bad = by_name([_entry("apply->push", {10: 90, 400: 10}, failures=5)])
    good = by_name([_entry("apply->push", {10: 99, 200: 1})])
    assert p99.judge(bad).status == "crossed" and errors.judge(bad).status == "crossed"
    assert p99.judge(good).status == "held" and errors.judge(good).status == "held"
    assert p99.judge({}).status == "unknown" and errors.judge({}).status == "unknown"
    assert Threshold.parse("apply->ack rps<5").judge({}).status == "crossed"  # nothing done is too little


def test_the_sample_is_bounded_and_merges_into_a_history_the_checks_judge(tmp_path: Path) -> None:
    sample = Sample(str(tmp_path), max_ops=3, t0=time.monotonic())
    site = wire.site_id_text(b"\x01" * 16)
    sample.event("w", "session", conn=1, databaseId="db", siteId=site, connectionId="c1")
    clock = wire.Clock(b"\x01" * 16)
    for n in range(5):
        cs = wire.change_set(clock, "w", n)
        op = sample.invoke("w", "apply", {"requestId": f"r{n}", "changeSets": [cs]})
        sample.complete(
            op,
            "w",
            "apply",
            "ok",
            {
                "type": "apply_result",
                "requestId": f"r{n}",
                "applied": 0 if n == 1 else 1,
                "skipped": 0,
                "conflicts": 0,
                "transactions": 1,
            },
        )
    sample.flush()
    lines = [json.loads(line) for line in next(tmp_path.glob("history-*.jsonl")).read_text().splitlines()]
    assert sum(1 for line in lines if line["record"] == "op") == 6  # 3 started, 3 completed, then nothing
    history = History()
    assert merge_sample(history, tmp_path) == 3
    assert len(history.pairs()) == 3 and all(done is not None for _, done in history.pairs())
    verdict = run_check("writes-accepted", history, Observations(), {})
    assert verdict.status == "fail"  # one of three refused with no reason: below 90%
    assert run_check("writes-accepted", History(), Observations(), {}).status == "unknown"


def test_a_load_scenario_may_leave_out_clients_and_an_ordinary_one_may_not(tmp_path: Path) -> None:
    from harness.scenario.loader import ScenarioError, load_scenario

    scenario = load_scenario(Path(__file__).parent / "latency.yaml")
    assert scenario.clients == () and scenario.raw["load"]["users"] == 6
    assert LoadParams.from_mapping(scenario.raw["load"]).validate().mix == {
        "writer": 2,
        "subscriber": 3,
        "reader": 1,
    }
    plain = tmp_path / "plain.yaml"
    plain.write_text("name: plain\nduration_s: 5\nchecks: {survival: {}}\n")
    with pytest.raises(ScenarioError, match="clients"):
        load_scenario(plain)


def _record(stats: dict[str, RequestStats], thresholds: list[str]) -> LoadRecord:
    now = datetime.now(UTC)
    return LoadRecord(
        params=LoadParams(),
        started_at=now,
        ended_at=now,
        target="bundled",
        stats=stats,
        stats_by_method=[],
        failures=[],
        series=[],
        thresholds=[Threshold.parse(t).judge(stats) for t in thresholds],
        checks=[],
        history=History(),
        sample_ops=0,
        locust_exit=0,
    )


def test_a_load_run_that_made_no_request_or_could_not_measure_its_gate_does_not_pass() -> None:
    good = by_name([_entry("apply->push", {10: 99, 200: 1})])
    assert _record(good, ["apply->push p99>250ms"]).passed
    nothing = _record({}, [])
    assert not nothing.passed and "tested nothing" in nothing.vacuous()[0]
    unmeasured = _record(good, ["snapshot p99>1s"])  # gated on a request the run never made
    assert not unmeasured.passed and "not measured" in unmeasured.vacuous()[0]
