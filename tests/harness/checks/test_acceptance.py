"""writes-accepted: valid writes outside faults are applied, or refused for a reason the
history shows (a dominating change sent before the answer; a tombstone under delete-wins)."""

from __future__ import annotations

from typing import Any

from harness.history import OpName
from harness.model.changesets import ChangeSetBuilder, HlcClock
from harness.model.codec import decode_site_id
from tests.harness.checks.script import WALL0, Script, run


def _delete_set(s: Script, process: str, pk: int = 1, wall_offset: int = 0) -> dict[str, Any]:
    """A tombstone of row `pk` of table t, `wall_offset` ms after the script's writes so far."""
    site = decode_site_id(s.site(process))
    clock = HlcClock(site, lambda: int(WALL0) + 10_000 + wall_offset)
    return ChangeSetBuilder(clock).delete("t", [pk]).build().to_wire()


def _message_error(s: Script, process: str, change_set: dict[str, Any]) -> None:
    error = {"type": "error", "code": "MESSAGE_ERROR", "message": "bad frame", "fatal": False}
    s.recv(process, error)
    s.op(
        process,
        OpName.APPLY,
        "fail",
        value={"requestId": "r", "changeSets": [change_set]},
        result=error,
        error="MESSAGE_ERROR",
    )


def _writers(applied: int, refused: int) -> Script:
    s = Script()
    s.connect("a")
    for i in range(applied):
        s.at(1.0 + i * 0.1).apply("a", [s.change_set("a", pk=i)])
    for i in range(refused):
        s.at(5.0 + i * 0.1).apply("a", [s.change_set("a", pk=100 + i)], applied=0)
    return s


def test_applied_writes_pass_and_an_empty_run_is_unknown() -> None:
    result = run(_writers(10, 0), "writes-accepted")
    assert result.status == "pass" and result.evidence[0]["outcomes"] == {"applied": 10}
    assert run(Script(), "writes-accepted").status == "unknown"


def test_unexplained_refusals_below_the_share_fail() -> None:
    assert run(_writers(9, 1), "writes-accepted").status == "pass"  # 90% is enough
    result = run(_writers(8, 2), "writes-accepted")
    assert result.status == "fail"
    assert result.evidence[0]["outcome"] == "refused" and result.detected_at is not None
    assert result.evidence[-1]["outcomes"] == {"applied": 8, "refused": 2}


def test_a_server_answering_every_apply_with_message_error_fails() -> None:
    s = Script()
    s.connect("a")
    for i in range(5):
        _message_error(s.at(1.0 + i), "a", s.change_set("a", pk=i))
    result = run(s, "writes-accepted")
    assert result.status == "fail"
    assert result.evidence[-1]["outcomes"] == {"error:MESSAGE_ERROR": 5}


def test_http_errors_and_timeouts_count_against() -> None:
    s = Script()
    s.connect("a")
    s.at(1.0).op(
        "a",
        OpName.HTTP_APPLY,
        "fail",
        value={"databaseId": "db1", "changeSets": [s.change_set("a")]},
        result={"status": 400, "body": {"ok": False, "error": {"code": "INVALID_BODY"}}},
        error="INVALID_BODY",
    )
    s.at(2.0).op("a", OpName.APPLY, "info", value={"changeSets": [s.change_set("a")]}, error="timeout")
    result = run(s, "writes-accepted")
    assert result.status == "fail"
    assert result.evidence[-1]["outcomes"] == {"error:INVALID_BODY": 1, "no-answer:timeout": 1}


def test_a_refusal_explained_by_a_newer_change_of_the_cell_sent_before_passes() -> None:
    s = Script()
    s.connect("a").connect("b")
    older = s.change_set("a", column="c", pk=1)
    newer = s.change_set("b", column="c", pk=1)  # a larger HLC
    s.at(1.0).apply("b", [newer])
    s.at(2.0).apply("a", [older], applied=0)
    result = run(s, "writes-accepted")
    assert result.status == "pass" and result.evidence[0]["outcomes"] == {"applied": 1, "explained": 1}
    # The same refusal before the newer change was sent has no explanation.
    s2 = Script()
    s2.connect("a").connect("b")
    older = s2.change_set("a", column="c", pk=1)
    newer = s2.change_set("b", column="c", pk=1)
    s2.at(1.0).apply("a", [older], applied=0)
    s2.at(2.0).apply("b", [newer])
    assert run(s2, "writes-accepted").status == "fail"


def test_a_retry_of_an_applied_change_set_is_explained_by_its_first_attempt() -> None:
    s = Script()
    s.connect("a")
    change_set = s.change_set("a")
    s.at(1.0).apply("a", [change_set])
    s.at(2.0).apply("a", [change_set], applied=0)  # already present: skipped
    assert run(s, "writes-accepted").status == "pass"


def test_a_write_to_a_deleted_row_is_explained_unless_the_policy_is_revive() -> None:
    s = Script()
    s.connect("a").connect("b")
    column_write = s.change_set("a", pk=1)
    s.at(1.0).apply("b", [_delete_set(s, "b", pk=1, wall_offset=-20_000)])  # an older tombstone
    s.at(2.0).apply("a", [column_write], applied=0)
    assert run(s, "writes-accepted", tombstone_policy="revive").status == "fail"
    assert run(s, "writes-accepted", tombstone_policy="delete-wins").status == "pass"
    unknown_policy = run(s, "writes-accepted")  # the check may not assume revive
    assert unknown_policy.status == "pass"
    assert unknown_policy.evidence[0]["tombstone_policy"] == "unknown (either allowed)"
    # A tombstone sent after the answer explains nothing, whatever the policy.
    s2 = Script()
    s2.connect("a").connect("b")
    s2.at(1.0).apply("a", [s2.change_set("a", pk=1)], applied=0)
    s2.at(2.0).apply("b", [_delete_set(s2, "b", pk=1, wall_offset=-20_000)])
    assert run(s2, "writes-accepted", tombstone_policy="delete-wins").status == "fail"


def test_a_newer_tombstone_explains_a_column_write_whatever_the_policy() -> None:
    s = Script()
    s.connect("a").connect("b")
    column_write = s.change_set("a", pk=1)
    s.at(1.0).apply("b", [_delete_set(s, "b", pk=1)])
    s.at(2.0).apply("a", [column_write], applied=0)
    assert run(s, "writes-accepted").status == "pass"


def test_writes_in_fault_windows_and_an_intruders_writes_are_not_judged() -> None:
    s = _writers(0, 5)
    s.fault("reset_peer", "client", 4.0, 6.0)
    result = run(s, "writes-accepted")
    assert result.status == "unknown"
    s2 = Script()
    s2.at(1.0).op(
        "x",
        OpName.HTTP_APPLY,
        "fail",
        value={"databaseId": "db1", "authorizedFor": ["other"], "changeSets": [s2.change_set("x")]},
        result={"status": 403, "body": {"ok": False, "error": {"code": "NOT_AUTHORIZED"}}},
        error="NOT_AUTHORIZED",
    )
    assert run(s2, "writes-accepted").status == "unknown"


def test_a_write_the_server_rejected_in_part_counts_against() -> None:
    s = Script()
    s.connect("a")
    op = s.at(1.0).apply("a", [s.change_set("a")])
    op.value["rejected"] = [{"reason": "no", "code": "CONSTRAINT"}]
    result = run(s, "writes-accepted")
    assert result.status == "fail" and result.evidence[-1]["outcomes"] == {"rejected:CONSTRAINT": 1}


def test_a_change_superseded_within_its_own_change_set_is_explained() -> None:
    s = Script()
    s.connect("a")
    site = decode_site_id(s.site("a"))
    clock = HlcClock(site, lambda: int(WALL0) + 1)
    twice = ChangeSetBuilder(clock).set("t", [1], "c", 1).set("t", [1], "c", 2).build().to_wire()
    s.at(1.0).apply("a", [twice], applied=1)  # the first change lost to the second
    assert run(s, "writes-accepted").status == "pass"
    once_each = ChangeSetBuilder(clock).set("t", [2], "c", 1).set("t", [3], "c", 2).build().to_wire()
    s.at(2.0).apply("a", [once_each], applied=1)
    assert run(s, "writes-accepted").status == "fail"


def test_refused_changes_do_not_explain_each_other() -> None:
    """A server that refuses every write of a race: the loser's refusal is not explained by the
    winner's change, which the server refused too (else half of every race passes)."""
    s = Script()
    s.connect("a").connect("b")
    for i in range(10):
        s.at(1.0 + i * 0.1)
        low, high = s.change_set("a", pk=i), s.change_set("b", pk=i)  # same cell, b's HLC larger
        s.apply("b", [high], applied=0)
        s.apply("a", [low], applied=0)
    result = run(s, "writes-accepted")
    assert result.status == "fail" and result.evidence[-1]["outcomes"] == {"refused": 20}


def test_an_applied_change_explains_a_later_refusal() -> None:
    s = Script()
    s.connect("a").connect("b")
    for i in range(10):
        s.at(1.0 + i * 0.1)
        low, high = s.change_set("a", pk=i), s.change_set("b", pk=i)
        s.apply("b", [high])
        s.apply("a", [low], applied=0)
    result = run(s, "writes-accepted")
    assert result.status == "pass" and result.evidence[-1]["outcomes"] == {"applied": 10, "explained": 10}


def test_an_unusual_rejected_field_is_counted_against_not_a_crash() -> None:
    s = Script()
    s.connect("a")
    op = s.history.invoke("a", OpName.APPLY, {"requestId": "r", "changeSets": [s.change_set("a")]})
    s.at(1.0)
    s.history.complete(op, "ok", {"type": "apply_result", "applied": 0, "rejected": {"reason": "x"}})
    result = run(s, "writes-accepted")
    assert result.status == "fail" and "rejected:REJECTED" in result.evidence[-1]["outcomes"]


def _unavailable(s: Script, process: str, pk: int) -> None:
    """An HTTP apply refused as the reference coordinator does while its breaker is open."""
    body = {"ok": False, "error": {"code": "STORE_UNAVAILABLE", "message": "circuit breaker open"}}
    s.op(
        process,
        OpName.HTTP_APPLY,
        "fail",
        value={"databaseId": "db1", "changeSets": [s.change_set(process, pk=pk)]},
        result={"status": 503, "body": body},
        error="STORE_UNAVAILABLE",
    )


def _after_outage(first_write_s: float) -> Script:
    """An object-store outage 0-10 s; five writes refused as unavailable from `first_write_s`."""
    s = Script()
    s.connect("a")
    s.fault("s3_outage", "s3", 0.0, 10.0, mode="close")
    for i in range(5):
        _unavailable(s.at(first_write_s + i * 0.5), "a", pk=i)
    return s


def test_unavailable_while_recovering_from_an_outage_is_not_judged() -> None:
    # 2-4 s after the store came back (past the 1 s grace): a breaker still open, not a refusal.
    s = _after_outage(12.0)
    for i in range(5):
        s.at(20.0 + i * 0.1).apply("a", [s.change_set("a", pk=50 + i)])
    result = run(s, "writes-accepted")
    assert result.status == "pass" and result.evidence[0]["outcomes"] == {"applied": 5}


def test_unavailable_long_after_the_outage_fails() -> None:
    result = run(_after_outage(30.0), "writes-accepted")
    assert result.status == "fail"
    assert result.evidence[-1]["outcomes"] == {"error:STORE_UNAVAILABLE": 5}


def test_other_refusals_after_an_outage_still_count() -> None:
    s = Script()
    s.connect("a")
    s.fault("s3_outage", "s3", 0.0, 10.0, mode="close")
    for i in range(5):
        s.at(12.0 + i * 0.5).apply("a", [s.change_set("a", pk=i)], applied=0)
    assert run(s, "writes-accepted").status == "fail"
