from __future__ import annotations

from harness.history import EventKind, OpName
from tests.harness.checks.script import Script, run


def test_well_formed_traffic_passes() -> None:
    s = Script()
    s.connect("a")
    s.recv("a", {"type": "changes", "changeSets": [s.change_set("b")]})
    s.push("a", [s.change_set("b")], seq=1)
    s.apply("a", [s.change_set("a")])
    assert run(s, "well-formed-messages").status == "pass"


def test_raw_big_integer_in_a_push_fails() -> None:
    s = Script()
    s.connect("a")
    bad = s.change_set("b")
    bad["changes"][0]["value"] = 2**60  # must travel as {"__bigint": ...}
    s.at(1.0).push("a", [bad], seq=1)
    result = run(s, "well-formed-messages")
    assert (
        result.status == "fail" and result.detected_at == 1.0 and "__bigint" in result.evidence[0]["problem"]
    )


def test_transaction_id_not_matching_its_hlc_fails() -> None:
    s = Script()
    s.connect("a")
    bad = s.change_set("b")
    bad["transactionId"] = "1:2:" + bad["siteId"]
    s.recv("a", {"type": "changes", "changeSets": [bad]})
    assert run(s, "well-formed-messages").status == "fail"


def test_frame_that_is_not_json_fails_and_http_changes_are_parsed_too() -> None:
    s = Script()
    s.connect("a")
    s.history.event("a", EventKind.BAD_FRAME, conn=1, error="not JSON", raw="{oops")
    assert run(s, "well-formed-messages").status == "fail"
    s2 = Script()
    bad = s2.change_set("b")
    bad["hlc"] = "short"
    body = {"ok": True, "data": {"changes": [bad]}}
    s2.op(
        "a", OpName.HTTP_GET_CHANGES, "ok", value={"databaseId": "db1"}, result={"status": 200, "body": body}
    )
    assert run(s2, "well-formed-messages").status == "fail"


def test_apply_result_with_a_negative_count_fails_and_nothing_received_is_unknown() -> None:
    s = Script()
    s.connect("a")
    s.recv("a", {"type": "apply_result", "applied": -1, "skipped": 0, "conflicts": 0, "transactions": 1})
    assert run(s, "well-formed-messages").status == "fail"
    assert run(Script(), "well-formed-messages").status == "unknown"
