"""Acknowledged means applied, tombstone policies in the judgement, and the last-writer-wins
model check (lww-final-state), on hand-made histories."""

from __future__ import annotations

from typing import Any

from harness.checks.views import applies
from harness.model.changesets import ChangeSetBuilder, HlcClock
from harness.model.codec import hlc_key
from harness.model.replica import Replica, change_cell, pk_key
from tests.harness.checks.script import WALL0, Script, run

WALL = int(WALL0) + 500


def _cell(cs: dict[str, Any]) -> tuple[str, ...]:
    return change_cell(cs["changes"][0])


# acknowledged = applied ------------------------------------------------------------------------
def test_an_apply_counts_as_acknowledged_only_when_every_change_was_applied() -> None:
    s = Script()
    s.connect("a")
    one, two = s.change_set("a", column="x"), s.change_set("a", column="y")
    s.apply("a", [one], applied=1)
    s.apply("a", [two], applied=0)
    s.apply("a", [s.change_set("a", column="p"), s.change_set("a", column="q")], applied=1)
    s.http_apply("h", [s.change_set("h", column="z")], applied=1)
    s.http_apply("h", [s.change_set("h", column="w")], applied=0)
    full, refused, partial, http_ok, http_refused = applies(s.history)
    assert full.acknowledged and len(full.acknowledged_changes) == 1 and not full.refused
    assert not refused.acknowledged and refused.acknowledged_changes == [] and len(refused.refused) == 1
    assert partial.partial and not partial.acknowledged and len(partial.refused) == 2
    assert http_ok.acknowledged and len(http_ok.acknowledged_changes) == 1
    assert not http_refused.acknowledged and len(http_refused.refused) == 1


def test_a_refused_write_is_not_lost() -> None:
    """delete-wins: a column write after the delete is skipped; it is refused, not lost."""
    s = Script()
    s.connect("a").connect("b")
    s.at(1.0)
    delete = s.delete_set("a")
    s.apply("a", [delete])
    late = s.change_set("b", column="c", value="after the delete")
    s.apply("b", [late], applied=0)
    s.at(3.0).replica("checker-db1", [delete], source="server")
    result = run(s, "no-lost-write", tombstone_policy="delete-wins")
    assert result.status == "pass", result.summary
    assert "1 refused" in result.summary
    # the same write acknowledged as applied and then missing is lost under revive
    s2 = Script()
    s2.connect("a").connect("b")
    s2.at(1.0)
    delete = s2.delete_set("a")
    s2.apply("a", [delete])
    s2.apply("b", [s2.change_set("b", column="c")], applied=1)
    s2.at(3.0).replica("checker-db1", [delete], source="server")
    assert run(s2, "no-lost-write", tombstone_policy="revive").status == "fail"
    unset = run(s2, "no-lost-write")  # no policy: the change under a tombstone is not judged
    assert unset.status == "pass" and "1 changes under a tombstone not judged" in unset.summary


def test_a_partly_applied_request_owes_nothing() -> None:
    s = Script()
    s.connect("a")
    sets = [s.change_set("a", column="x"), s.change_set("a", column="y")]
    s.apply("a", sets, applied=1)
    s.at(2.0).replica("checker-db1", [sets[0]], source="server")
    assert run(s, "no-lost-write").status == "unknown"


def test_convergence_does_not_expect_a_refused_write_in_any_replica() -> None:
    """b's write was refused (delete-wins) but a Quereus server pushes it to c anyway: under
    delete-wins neither c nor the server shows the row, so they agree."""
    s = Script()
    s.connect("a").connect("b").connect("c")
    s.at(1.0)
    delete = s.delete_set("a")
    s.apply("a", [delete])
    s.apply("b", [s.change_set("b", column="n", value="late")], applied=0)
    pushed = s.change_set("b", column="n", value="late")
    keep = s.change_set("a", column="n", pk=2, value="kept")
    s.apply("a", [keep])
    s.at(3.0)
    s.replica("checker-db1", [delete, keep], source="server")
    s.replica("b", [delete, keep])  # the fixed client: its refused write is not in its replica
    s.replica("c", [delete, pushed, keep])
    assert run(s, "convergence", tombstone_policy="delete-wins").status == "pass"
    assert run(s, "convergence", tombstone_policy="revive").status == "fail"
    unset = run(s, "convergence")
    assert unset.status == "pass" and "not compared" in unset.summary


def test_convergence_with_only_deleted_rows_and_no_policy_is_unknown() -> None:
    s = Script()
    s.connect("a")
    s.at(1.0)
    cs, delete = s.change_set("a"), s.delete_set("a")
    s.apply("a", [cs])
    s.apply("a", [delete])
    s.at(2.0).replica("checker-db1", [cs, delete], source="server").replica("a", [cs, delete])
    assert run(s, "convergence").status == "unknown"
    assert run(s, "convergence", tombstone_policy="revive").status == "unknown"  # nothing visible


# tombstone policies -----------------------------------------------------------------------------
def _deleted_then_written() -> tuple[Replica, tuple[str, str, str, str]]:
    s = Script()
    delete = s.delete_set("a")
    later = s.change_set("b", column="c", value="later")
    replica = Replica()
    replica.apply_change_sets([delete, later])
    key = ("main", "t", pk_key([1]), "c")
    return replica, key


def test_a_delete_wins_replica_hides_every_cell_of_a_deleted_row() -> None:
    replica, key = _deleted_then_written()
    assert replica.visible(policy="revive") == {key: "later"}
    assert replica.visible(policy="delete-wins") == {}
    assert replica.visible(policy=None) == {}


def test_delete_wins_leaves_out_rows_whose_newer_write_was_applied() -> None:
    replica, key = _deleted_then_written()
    known = {key: replica.cells[key][0]}
    assert replica.undecidable_rows("delete-wins", known) == {key[:3]}
    assert replica.undecidable_rows("delete-wins", {}) == set()
    assert replica.undecidable_rows("revive", known) == set()


# lww-final-state --------------------------------------------------------------------------------
def _race(first_applied: int, second_applied: int, final_from: str) -> Script:
    """a and b write one cell on the same (wallTime, counter); b's site id is larger, so b's
    HLC wins. The server's final state holds `final_from`'s write."""
    s = Script()
    s.connect("a").connect("b")
    s.at(1.0)
    wa = s.raced_change_set("a", WALL, 7, value="from a")
    wb = s.raced_change_set("b", WALL, 7, value="from b")
    assert hlc_key(wb["hlc"]) > hlc_key(wa["hlc"])
    s.apply("a", [wa], applied=first_applied)
    s.http_apply("b", [wb], applied=second_applied)
    s.at(3.0).replica("state-db1", [wa if final_from == "a" else wb], source="snapshot")
    return s


def test_lww_race_leaving_the_older_value_fails() -> None:
    result = run(_race(1, 1, final_from="a"), "lww-final-state")
    assert result.status == "fail", result.summary
    assert result.evidence[0]["problem"] == "older value won"
    assert result.evidence[0]["expected"] == "from b" and result.evidence[0]["found"] == "from a"
    assert result.detected_at == 3.0


def test_lww_race_won_by_the_larger_site_id_passes() -> None:
    assert run(_race(1, 1, final_from="b"), "lww-final-state").status == "pass"
    # b came first: a's equal-tick write lost and was refused; b's value stays
    assert run(_race(0, 1, final_from="b"), "lww-final-state").status == "pass"


def test_a_refused_or_unknown_write_may_be_what_the_server_holds() -> None:
    # a acknowledged, b refused (b was a duplicate of what the server already held): b's larger
    # HLC in the final state is legitimate
    assert run(_race(1, 0, final_from="b"), "lww-final-state").status == "pass"


def test_a_value_from_nowhere_or_the_wrong_value_for_its_hlc_fails() -> None:
    s = _race(1, 1, final_from="b")
    s.replica("state-db1", [s.raced_change_set("z", WALL + 9, value="nobody wrote this")], source="snapshot")
    result = run(s, "lww-final-state")
    problems = {v["problem"] for v in result.evidence}
    assert result.status == "fail" and "value from nowhere" in problems
    assert run(s, "lww-final-state", other_writers=True).status == "pass"  # newer than b's
    s2 = _race(1, 1, final_from="b")
    forged = s2.raced_change_set("b", WALL, 7, value="changed")
    s2.replica("state-db1", [forged], source="snapshot")
    result = run(s2, "lww-final-state")
    assert result.status == "fail" and result.evidence[0]["problem"] == "wrong value for its HLC"


def test_lww_judges_deleted_rows_by_policy() -> None:
    s = Script()
    s.connect("a").connect("b")
    s.at(1.0)
    cs = s.change_set("a", value="old")
    delete = s.delete_set("b")
    s.apply("a", [cs])
    s.apply("b", [delete])
    s.at(2.0).replica("state-db1", [delete], source="snapshot")
    assert run(s, "lww-final-state", tombstone_policy="revive").status == "pass"  # covered
    unset = run(s, "lww-final-state")
    assert unset.status == "pass" and "not judged" in unset.summary  # the tombstone is judged
    s.replica("state-db1", [], source="snapshot")  # the acknowledged delete vanished
    assert run(s, "lww-final-state", tombstone_policy="revive").status == "fail"


def test_lww_is_unknown_without_acknowledged_writes_or_a_final_read() -> None:
    assert run(Script(), "lww-final-state").status == "unknown"
    s = _race(1, 1, final_from="b")
    s2 = Script()
    s2.connect("a")
    s2.apply("a", [s2.change_set("a")])
    assert run(s2, "lww-final-state").status == "unknown"  # no final server read
    s3 = Script()
    s3.connect("a")
    s3.apply("a", [s3.change_set("a")], applied=0)
    s3.replica("state-db1", [], source="snapshot")
    assert run(s3, "lww-final-state").status == "unknown"  # nothing proven applied
    assert _cell(s.raced_change_set("a", WALL)) == ("main", "t", "[1]", "c")


def test_a_value_of_a_site_outside_the_run_is_an_unrecorded_write_not_a_fail() -> None:
    s = _race(1, 1, final_from="b")
    stranger = ChangeSetBuilder(HlcClock(b"\xee" * 16, lambda: WALL + 50)).set("t", [1], "c", "x").build()
    s.replica("state-db1", [stranger.to_wire()], source="snapshot")
    result = run(s, "lww-final-state")
    assert (
        result.status == "pass" and "1 final values from writers the history did not record" in result.summary
    )


def test_a_final_read_of_the_change_log_alone_cannot_show_a_race() -> None:
    """get_changes replays every applied change, so a log merged by HLC looks right even when
    the cells ended with the older value: without a snapshot the check says unknown."""
    s = Script()
    s.connect("a").connect("b")
    s.at(1.0)
    wa = s.raced_change_set("a", WALL, 7, value="from a")
    wb = s.raced_change_set("b", WALL, 7, value="from b")
    s.apply("a", [wa])
    s.apply("b", [wb])
    s.at(3.0).replica("checker-db1", [wa, wb], source="server")
    result = run(s, "lww-final-state")
    assert result.status == "unknown" and "snapshot" in result.summary


def _tie_arrival_order(final_from: str) -> Script:
    """Tied (wallTime, counter): b (larger site id) applies first, then a's write is
    acknowledged as applied too. `final_from`: whose value the server's cell was left with."""
    s = Script()
    s.connect("a").connect("b")
    s.at(1.0)
    wa = s.raced_change_set("a", WALL, 3, value="from a")
    wb = s.raced_change_set("b", WALL, 3, value="from b")
    s.http_apply("b", [wb], applied=1)
    s.at(1.5).apply("a", [wa], applied=1)
    s.at(3.0).replica("state-db1", [wa if final_from == "a" else wb], source="snapshot")
    return s


def test_lww_tie_lost_by_the_later_writer_with_the_smaller_site_id_fails() -> None:
    """A server that breaks the tie by arrival (the later write wins) fails: the site id decides."""
    wrong = run(_tie_arrival_order("a"), "lww-final-state")
    assert wrong.status == "fail" and wrong.evidence[0]["found"] == "from a"
    assert run(_tie_arrival_order("b"), "lww-final-state").status == "pass"
