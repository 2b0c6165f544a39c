from __future__ import annotations

from typing import Any

from harness.history import OpName
from tests.harness.checks.script import Script, run


def _error(code: str, fatal: bool = False) -> dict[str, Any]:
    return {"type": "error", "code": code, "message": "m", "fatal": fatal}


def _bad_input(code: str, fatal: bool = False, close_after: float | None = None) -> Script:
    s = Script()
    s.obs.capabilities["invalid_payload"] = True
    s.at(0.0).connect("a")
    s.at(1.0)
    value = {
        "intent": "bad_input",
        "request": "get_changes",
        "frame": {"type": "get_changes", "sinceHLC": "%%%"},
    }
    s.op("a", OpName.SEND_RAW, "ok", value=value, result=_error(code, fatal))
    s.op(
        "a",
        OpName.SEND_RAW,
        "ok",
        value={"intent": "not_json", "frame": {"raw": "{"}},
        result=_error("MESSAGE_ERROR"),
    )
    s.op(
        "a",
        OpName.SEND_RAW,
        "ok",
        value={"intent": "unknown_type", "frame": {"type": "x"}},
        result=_error("UNKNOWN_MESSAGE"),
    )
    if close_after is not None:
        s.at(1.0 + close_after).close("a", code=1011)
    return s


def test_specific_non_fatal_errors_that_keep_the_session_pass() -> None:
    assert run(_bad_input("INVALID_PAYLOAD"), "error-specificity").status == "pass"


def test_bad_input_answered_like_a_server_fault_fails() -> None:
    result = run(_bad_input("GET_CHANGES_ERROR"), "error-specificity")
    assert result.status == "fail" and "GET_CHANGES_ERROR" in result.evidence[0]["problem"]


def test_bad_input_answered_with_a_generic_message_error_fails_without_the_extension_too() -> None:
    s = _bad_input("MESSAGE_ERROR")
    s.obs.capabilities["invalid_payload"] = False
    assert run(s, "error-specificity").status == "fail"
    s2 = _bad_input("GET_CHANGES_ERROR")
    s2.obs.capabilities["invalid_payload"] = False
    assert run(s2, "error-specificity").status == "pass"  # plain v1: the request's own code


def test_fatal_error_for_bad_input_fails() -> None:
    assert run(_bad_input("INVALID_PAYLOAD", fatal=True), "error-specificity").status == "fail"


def test_session_closed_by_the_server_after_a_non_fatal_error_fails() -> None:
    result = run(_bad_input("INVALID_PAYLOAD", close_after=0.2), "error-specificity", survive_s=1.0)
    assert result.status == "fail" and "closed" in result.evidence[0]["problem"]


def test_snapshot_failing_with_message_error_fails_and_with_snapshot_error_passes() -> None:
    for code, status in (("MESSAGE_ERROR", "fail"), ("SNAPSHOT_ERROR", "pass")):
        s = Script()
        s.connect("a")
        outcome = {"ended": "error", "code": code, "fatal": False, "problems": []}
        s.op("a", OpName.SNAPSHOT, "fail", result=outcome, error=code)
        assert run(s, "error-specificity").status == status


def test_no_error_at_all_is_unknown() -> None:
    s = Script()
    s.connect("a")
    assert run(s, "error-specificity").status == "unknown"


def test_foreign_handshake_refused_passes() -> None:
    s = Script()
    s.connect("a", db="B", authorized_for=["A"], ok=False, error="AUTH_FAILED")
    s.op(
        "a",
        OpName.HTTP_GET_CHANGES,
        "fail",
        value={"databaseId": "B", "authorizedFor": ["A"]},
        result={"status": 403},
        error="NOT_AUTHORIZED",
    )
    assert run(s, "tenant-isolation").status == "pass"


def test_foreign_handshake_accepted_and_data_received_fails() -> None:
    s = Script()
    s.connect("a", db="B", authorized_for=["A"])
    s.at(1.0).recv("a", {"type": "changes", "changeSets": [s.change_set("owner")]})
    result = run(s, "tenant-isolation")
    assert (
        result.status == "fail"
        and result.detected_at == 1.0
        and "carried its data" in result.evidence[0]["problem"]
    )


def test_foreign_http_read_answered_200_fails() -> None:
    s = Script()
    value = {"databaseId": "B", "authorizedFor": ["A"]}
    s.op("a", OpName.HTTP_GET_CHANGES, "ok", value=value, result={"status": 200, "body": {"ok": True}})
    assert run(s, "tenant-isolation").status == "fail"


def test_own_database_access_is_not_an_intrusion() -> None:
    s = Script()
    s.connect("a", db="A", authorized_for=["A"])
    assert run(s, "tenant-isolation").status == "unknown"


def test_close_explained_by_a_later_notice_is_not_blamed_on_the_error() -> None:
    s = _bad_input("INVALID_PAYLOAD")
    s.at(1.1).notice("a", "DELIVERY_FAILED")
    s.at(1.2).close("a", code=1011)
    assert run(s, "error-specificity").status == "pass"
