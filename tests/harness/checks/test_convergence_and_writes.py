from __future__ import annotations

import gzip
import json

from harness.checks.observations import ProcessEvent, S3Object
from harness.history import FaultWindow
from tests.harness.checks.script import Script, run


def _writes() -> tuple[Script, list[dict[str, object]]]:
    s = Script()
    s.at(0.0).connect("a").connect("b")
    sets = []
    for i in range(3):
        s.at(1.0 + i)
        cs = s.change_set("a", column=f"c{i}", value=i)
        s.apply("a", [cs])
        sets.append(cs)
    s.at(5.0)
    return s, sets


def test_replicas_that_agree_converge() -> None:
    s, sets = _writes()
    s.replica("a", sets).replica("b", sets).replica("v", sets, source="server")
    assert run(s, "convergence").status == "pass"


def test_a_replica_missing_a_change_does_not_converge() -> None:
    s, sets = _writes()
    s.replica("a", sets).replica("b", sets[:2]).replica("v", sets, source="server")
    result = run(s, "convergence")
    assert result.status == "fail" and result.evidence[0]["replica"] == "b"
    assert result.evidence[0]["differences"][0]["cell"][3] == "c2"


def test_uncertain_cells_are_left_out_of_the_comparison() -> None:
    s, sets = _writes()
    uncertain_cell = ["main", "t", "[1]", "c2"]
    s.replica("a", sets[:2], uncertain=[uncertain_cell]).replica("v", sets, source="server")
    assert run(s, "convergence").status == "pass"


def test_replicas_recorded_before_the_last_write_are_not_judged() -> None:
    s = Script()
    s.connect("a")
    s.at(1.0).replica("a", []).replica("b", [s.change_set("x")])
    s.at(2.0).apply("a", [s.change_set("a")])
    assert run(s, "convergence").status == "unknown"


def test_acknowledged_write_visible_in_the_final_state_is_not_lost() -> None:
    s, sets = _writes()
    s.replica("v", sets, source="server")
    assert run(s, "no-lost-write").status == "pass"


def test_acknowledged_write_missing_from_the_final_state_is_lost() -> None:
    s, sets = _writes()
    s.replica("v", sets[:1], source="snapshot")
    result = run(s, "no-lost-write")
    assert result.status == "fail" and len(result.evidence) == 2
    assert result.detected_at == 2.01


def test_superseded_write_is_not_lost() -> None:
    s, sets = _writes()
    newer = s.change_set("b", column="c0", value="newer")
    s.replica("v", [*sets[1:], newer], source="server")
    assert run(s, "no-lost-write").status == "pass"


def test_unacknowledged_write_is_not_owed() -> None:
    s = Script()
    s.connect("a")
    s.apply("a", [s.change_set("a")], outcome="info")
    s.replica("v", [], source="server")
    assert run(s, "no-lost-write").status == "unknown"


def _batch(sets: list[dict[str, object]], db: str = "db1") -> S3Object:
    doc = {
        "batchId": "x",
        "databaseId": db,
        "timestamp": "t",
        "clientId": "c",
        "changes": sets,
        "metadata": {},
    }
    return S3Object(f"prefix/{db}/batches/2026-01-01T00-00-00-000Z_x.json", json.dumps(doc).encode())


def _snapshot_object(sets: list[dict[str, object]], db: str = "db1") -> S3Object:
    entries = [
        {"column": c["column"], "hlc": c["hlc"], "value": c["value"], "pk": c["pk"]}
        for cs in sets
        for c in cs["changes"]  # type: ignore[attr-defined]
    ]
    chunks = [{"type": "column-versions", "schema": "main", "table": "t", "entries": entries}]
    doc = {"snapshotId": "s", "databaseId": db, "timestamp": "t", "chunks": chunks}
    return S3Object(
        f"prefix/{db}/snapshots/2026-01-01T00-00-00-000Z_s.json", gzip.compress(json.dumps(doc).encode())
    )


def test_no_lost_write_also_looks_in_s3_when_owned() -> None:
    s, sets = _writes()
    s.replica("v", sets, source="server")
    s.obs.s3_owned = True
    s.obs.s3_objects = [_batch(sets[:2])]
    s.obs.s3_listed_at = 20.0
    result = run(s, "no-lost-write")
    assert result.status == "fail" and result.evidence[0]["where"] == "s3"
    assert run(s, "no-lost-write", check_s3=False).status == "pass"


def test_durability_after_graceful_shutdown_passes_with_batches_and_snapshots() -> None:
    s, sets = _writes()
    s.obs.process.append(ProcessEvent(6.0, "sigterm"))
    s.obs.s3_listed_at = 7.0  # listed after the shutdown
    s.obs.s3_owned = True
    s.obs.s3_objects = [_snapshot_object(sets[:1]), _batch(sets[1:])]
    assert run(s, "durability").status == "pass"


def test_durability_fails_when_a_write_never_reached_s3() -> None:
    s, sets = _writes()
    s.obs.process.append(ProcessEvent(6.0, "sigterm"))
    s.obs.s3_listed_at = 7.0  # listed after the shutdown
    s.obs.s3_owned = True
    s.obs.s3_objects = [_batch(sets[:2])]
    result = run(s, "durability")
    assert result.status == "fail" and result.detected_at == 3.01


def test_durability_after_an_outage_judges_writes_made_during_it() -> None:
    s, sets = _writes()
    s.fault("s3_outage", "s3", 0.5, 4.0)
    s.at(30.0)
    s.obs.s3_owned = True
    s.obs.s3_objects = [_batch(sets[:1])]
    assert run(s, "durability").status == "fail"
    s.obs.s3_objects = [_batch(sets)]
    assert run(s, "durability").status == "pass"


def test_writes_held_back_by_an_outage_are_owed_only_a_flush_bound_after_it_ends() -> None:
    s, sets = _writes()
    s.fault("s3_outage", "s3", 0.5, 4.0)
    s.obs.s3_owned = True
    s.obs.s3_objects = [_batch(sets[:1])]
    s.obs.s3_listed_at = 12.0  # 8 s after the outage: still within the 10 s flush bound
    assert run(s, "durability").status == "unknown"
    s.obs.s3_listed_at = 15.0
    assert run(s, "durability").status == "fail"


def test_no_lost_write_does_not_hold_s3_to_writes_still_flushing() -> None:
    s, sets = _writes()
    s.replica("v", sets, source="server")
    s.obs.s3_owned = True
    s.obs.s3_objects = [_batch(sets[:1])]
    s.obs.s3_listed_at = 5.0
    assert run(s, "no-lost-write").status == "pass"
    s.obs.s3_listed_at = 60.0
    assert run(s, "no-lost-write").status == "fail"


def test_durability_unknown_without_s3_or_while_an_outage_lasts() -> None:
    s, sets = _writes()
    assert run(s, "durability").status == "unknown"
    s.obs.s3_owned = True
    s.obs.s3_objects = [_batch(sets)]
    window: FaultWindow = s.fault("s3_outage", "s3", 0.5, None)
    assert window.end is None
    assert run(s, "durability").status == "unknown"
