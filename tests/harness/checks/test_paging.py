"""changes-paging on hand-made histories: paging sequences of get_changes against the final log
read of `checker-db1`."""

from __future__ import annotations

from typing import Any

from harness.history import OpName
from harness.model.capping import cap_history
from harness.model.changesets import ChangeSetBuilder, HlcClock, max_hlc_text
from tests.harness.checks.script import WALL0, Script, run


def _tx(s: Script, process: str, size: int, wall: int) -> dict[str, Any]:
    """One transaction of `size` changes at wall time `wall`."""
    s.site(process)
    clock = HlcClock(s._sites[process], lambda: int(WALL0) + wall)
    builder = ChangeSetBuilder(clock)
    for i in range(size):
        builder.set("t", [wall], f"c{i}", i)
    return builder.build().to_wire()


def _get(s: Script, process: str, since: str | None, change_sets: list[dict[str, Any]]) -> str | None:
    s.op(
        process, OpName.GET_CHANGES, "ok", {"sinceHLC": since}, {"type": "changes", "changeSets": change_sets}
    )
    return max_hlc_text(change_sets)


def _history(pages: list[list[int]], log_sizes: tuple[int, ...] = (1, 3, 1, 2)) -> Script:
    """Writer `w` made transactions of `log_sizes` changes; reader `r` pages through them in
    `pages` (lists of indices into the log); the checker reads the whole log at the end."""
    s = Script()
    s.at(0.0).connect("w").connect("r")
    log = []
    for i, size in enumerate(log_sizes):
        s.at(1.0 + i)
        cs = _tx(s, "w", size, 10 + i)
        s.apply("w", [cs])
        log.append(cs)
    s.at(10.0)
    since: str | None = None
    for page in pages:
        since = _get(s, "r", since, [log[i] for i in page])
    _get(s, "r", since, [])
    s.at(20.0).connect("checker-db1")
    since = _get(s, "checker-db1", None, log[:2])
    since = _get(s, "checker-db1", since, log[2:])
    _get(s, "checker-db1", since, [])
    return s


def test_paging_that_misses_and_repeats_nothing_passes() -> None:
    result = run(_history([[0, 1], [2, 3]]), "changes-paging", batch_size=2)
    assert result.status == "pass", result.summary
    assert "1 sequences complete" in result.summary


def test_a_transaction_larger_than_the_batch_alone_or_last_is_allowed() -> None:
    # 1 + 3 changes: the boundary after the first came below batch_size 2, so the 3 may follow
    assert run(_history([[0, 1], [2, 3]]), "changes-paging", batch_size=2).status == "pass"


def test_an_answer_not_cut_at_the_first_boundary_over_the_batch_fails() -> None:
    result = run(_history([[0, 1, 2], [3]]), "changes-paging", batch_size=2)
    assert result.status == "fail"
    assert "over batch_size" in result.evidence[0]["problem"]


def test_batch_size_unset_is_not_judged_and_says_so() -> None:
    result = run(_history([[0, 1, 2], [3]]), "changes-paging")
    assert result.status == "pass" and "not judged" in result.summary


def test_a_page_that_misses_a_transaction_fails() -> None:
    result = run(_history([[0, 1], [3]]), "changes-paging", batch_size=2)
    assert result.status == "fail"
    assert "0 of its 1 changes" in result.evidence[0]["problem"]


def test_a_transaction_split_across_answers_fails() -> None:
    s = Script()
    s.at(0.0).connect("w").connect("r")
    big = _tx(s, "w", 4, 10)
    s.apply("w", [big])
    head, tail = dict(big), dict(big)
    head["changes"], tail["changes"] = big["changes"][:2], big["changes"][2:]
    s.at(5.0)
    _get(s, "r", _get(s, "r", None, [head]), [tail])
    s.at(20.0).connect("checker-db1")
    _get(s, "checker-db1", _get(s, "checker-db1", None, [big]), [])
    result = run(s, "changes-paging")
    assert result.status == "fail"
    assert "split or repeated" in result.evidence[0]["problem"]


def test_answers_out_of_hlc_order_fail() -> None:
    result = run(_history([[1, 0], [2, 3]]), "changes-paging")
    assert result.status == "fail"
    assert "not HLC order" in result.evidence[0]["problem"]


def test_the_requesters_own_changes_in_an_answer_fail() -> None:
    s = _history([[0, 1], [2, 3]])
    s.at(30.0).connect("w")
    _get(s, "w", None, [_tx(s, "w", 1, 99)])
    result = run(s, "changes-paging")
    assert result.status == "fail" and "own change set" in result.evidence[0]["problem"]


def test_a_write_acknowledged_after_the_page_may_be_missing() -> None:
    s = Script()
    s.at(0.0).connect("w").connect("r")
    early = _tx(s, "w", 1, 20)
    late = _tx(s, "w", 1, 10)  # an older HLC that lands after the reader's page
    s.apply("w", [early])
    s.at(5.0)
    _get(s, "r", _get(s, "r", None, [early]), [])
    s.at(6.0).apply("w", [late])
    s.at(20.0).connect("checker-db1")
    _get(s, "checker-db1", _get(s, "checker-db1", None, [late, early]), [])
    assert run(s, "changes-paging").status == "pass"


def test_capped_answers_are_judged_the_same() -> None:
    good = _history([[0, 1], [2, 3]], log_sizes=(1, 200, 1, 2))
    bad = _history([[0, 1], [3]], log_sizes=(1, 200, 1, 2))
    assert run(good, "changes-paging", batch_size=2).status == "pass"
    capped = cap_history(good.history)
    assert any(
        "$capped" in cs
        for op in capped.ops
        if isinstance(op.value, dict)
        for cs in op.value.get("changeSets") or []
    )
    from harness.checks.registry import run_check

    assert run_check("changes-paging", capped, good.obs, {"batch_size": 2}).status == "pass"
    assert run_check("changes-paging", cap_history(bad.history), bad.obs, {"batch_size": 2}).status == "fail"


def test_no_get_changes_answer_is_unknown() -> None:
    s = Script()
    s.connect("w")
    s.apply("w", [s.change_set("w")])
    assert run(s, "changes-paging").status == "unknown"


def test_answers_without_a_final_log_leave_completeness_unknown() -> None:
    s = Script()
    s.at(0.0).connect("w").connect("r")
    cs = _tx(s, "w", 1, 10)
    s.apply("w", [cs])
    _get(s, "r", _get(s, "r", None, [cs]), [])
    result = run(s, "changes-paging")
    assert result.status == "unknown" and "no final log" in result.summary


def _late_reapply(acked_before_the_pages: bool) -> Script:
    """A write cut by a kill (no answer) is re-applied after the reconnect with its old HLC; the
    reader pages from a later HLC in between, so a correct server need not give it."""
    s = Script()
    s.at(0.0).connect("w").connect("r")
    first = _tx(s, "w", 1, 10)
    late = _tx(s, "w", 3, 11)
    last = _tx(s, "w", 1, 12)
    s.at(1.0).apply("w", [first])
    s.at(2.0).apply("w", [late], outcome="info")  # the kill: outcome unknown
    s.at(3.0).apply("w", [last])
    if acked_before_the_pages:
        s.at(4.0).apply("w", [late])
    s.at(10.0)
    since = _get(s, "r", None, [first])
    since = _get(s, "r", since, [last])
    _get(s, "r", since, [])
    if not acked_before_the_pages:
        s.at(11.0).apply("w", [late])  # acknowledged only after the reader's pages
    s.at(20.0).connect("checker-db1")
    since = _get(s, "checker-db1", None, [first, late, last])
    _get(s, "checker-db1", since, [])
    return s


def test_a_write_acknowledged_only_after_the_pages_may_be_missed_one_acknowledged_before_may_not() -> None:
    """Seen in CI (sigkill-under-writes): the first, unanswered attempt's completion time was taken
    for an acknowledgement, and a re-applied write the reader could not have seen was a miss."""
    assert run(_late_reapply(acked_before_the_pages=False), "changes-paging").status == "pass"
    result = run(_late_reapply(acked_before_the_pages=True), "changes-paging")
    assert result.status == "fail" and "0 of its 3 changes" in result.evidence[0]["problem"]
