"""ordered-seq: seq is per database (own writes on another database explain no gap) and
heartbeats' seq agrees with the pushes."""

from __future__ import annotations

from tests.harness.checks.script import Script, run


def _pushes(s: Script, to: str, seqs: list[int], start: float = 1.0) -> None:
    for i, seq in enumerate(seqs):
        s.at(start + i).push(to, [s.change_set("w")], seq=seq)


def test_an_own_write_on_the_sessions_database_explains_a_gap() -> None:
    s = Script()
    s.at(0.0).connect("a")
    _pushes(s, "a", [1, 2])
    s.at(2.5).http_apply("a", [s.change_set("a")], db="db1")
    _pushes(s, "a", [4], start=3.0)
    assert run(s, "ordered-seq").status == "pass"


def test_an_own_write_on_another_database_explains_no_gap() -> None:
    """A server numbering broadcasts globally: a's write on db2 takes number 3 from db1."""
    s = Script()
    s.at(0.0).connect("a")
    _pushes(s, "a", [1, 2])
    s.at(2.5).http_apply("a", [s.change_set("a")], db="db2")
    _pushes(s, "a", [4], start=3.0)
    result = run(s, "ordered-seq")
    assert result.status == "fail" and result.evidence[0]["unexplained_numbers"] == [3]


def _beat_after(pushed: list[int], beat_seq: int, late_push: int | None = None, own: bool = False) -> Script:
    s = Script()
    s.at(0.0).connect("a")
    _pushes(s, "a", pushed)
    if own:
        s.at(4.5).http_apply("a", [s.change_set("a")], db="db1")
    s.at(5.0).heartbeat("a", seq=beat_seq)
    if late_push is not None:
        s.at(5.2).push("a", [s.change_set("w")], seq=late_push)
    s.at(7.0).heartbeat("a", seq=max(beat_seq, late_push or 0))
    s.at(10.0)
    return s


def test_heartbeat_seq_matching_the_pushes_passes() -> None:
    assert run(_beat_after([1, 2, 3], 3), "ordered-seq").status == "pass"
    # the heartbeat may name a number whose push is still on its way
    assert run(_beat_after([1, 2], 3, late_push=3), "ordered-seq").status == "pass"
    # or the session's own write, never pushed to it
    assert run(_beat_after([1, 2], 3, own=True), "ordered-seq").status == "pass"


def test_heartbeat_seq_behind_a_pushed_seq_fails() -> None:
    result = run(_beat_after([1, 2, 3], 2), "ordered-seq")
    assert result.status == "fail" and "behind seq 3" in result.evidence[0]["problem"]


def test_heartbeat_seq_naming_a_push_that_never_came_fails() -> None:
    """The last broadcast was lost: no later push shows the gap, only the heartbeat does."""
    result = run(_beat_after([1, 2], 3), "ordered-seq")
    assert result.status == "fail"
    assert result.evidence[0]["unexplained_numbers"] == [3]


def test_heartbeat_seq_going_backwards_fails() -> None:
    s = Script()
    s.obs.capabilities["seq"] = True  # declared: no push shows it in this run
    s.at(0.0).connect("a")
    s.at(1.0).heartbeat("a", seq=5).at(2.0).heartbeat("a", seq=4)
    s.at(5.0)
    result = run(s, "ordered-seq")
    assert result.status == "fail" and "after heartbeat seq 5" in result.evidence[0]["problem"]


def test_idle_heartbeats_with_a_steady_seq_pass_and_nothing_numbered_is_unknown() -> None:
    s = Script()
    s.obs.capabilities["seq"] = True
    s.at(0.0).connect("a")
    s.at(1.0).heartbeat("a", seq=5).at(2.0).heartbeat("a", seq=5)
    s.at(5.0)
    assert run(s, "ordered-seq").status == "pass"
    empty = Script()
    empty.obs.capabilities["seq"] = True
    empty.connect("a")
    assert run(empty, "ordered-seq").status == "unknown"
