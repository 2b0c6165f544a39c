"""no-echo-to-sender on hand-made histories."""

from __future__ import annotations

from tests.harness.checks.script import Script, run


def _run(echo_push: bool = False, echo_changes: bool = False) -> Script:
    s = Script()
    s.at(0.0).connect("w").connect("b")
    own = s.change_set("w")
    s.at(1.0).apply("w", [own], seq=1)
    s.push("b", [own], seq=1)
    if echo_push:
        s.push("w", [own], seq=1)
    theirs = s.change_set("b")
    s.at(2.0).apply("b", [theirs], seq=2)
    s.push("w", [theirs], seq=2)
    s.recv("w", {"type": "changes", "changeSets": [theirs, own] if echo_changes else [theirs]})
    return s


def test_pushes_and_answers_from_other_sites_only_pass() -> None:
    result = run(_run(), "no-echo-to-sender")
    assert result.status == "pass" and "3 received" in result.summary


def test_a_push_back_to_the_writers_own_site_fails() -> None:
    result = run(_run(echo_push=True), "no-echo-to-sender")
    assert result.status == "fail"
    assert result.evidence[0]["process"] == "w" and result.evidence[0]["type"] == "push_changes"


def test_a_get_changes_answer_with_the_requesters_own_change_fails() -> None:
    result = run(_run(echo_changes=True), "no-echo-to-sender")
    assert result.status == "fail" and result.evidence[0]["type"] == "changes"


def test_no_change_set_received_is_unknown() -> None:
    s = Script()
    s.connect("w")
    s.apply("w", [s.change_set("w")])
    assert run(s, "no-echo-to-sender").status == "unknown"
