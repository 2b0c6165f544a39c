"""No vacuous verdicts: a server that refuses every valid write (or answers it with any error)
must fail no-spurious-failures and writes-accepted and must not make the checks that need
acknowledged writes pass; a refusal the client asked for (a probe, an intruder) stays excused."""

from __future__ import annotations

from typing import Any

import pytest

from harness.checks.capabilities import REFERENCE_COORDINATOR
from harness.history import OpName
from tests.harness.checks.script import Script, run

MESSAGE_ERROR = {"type": "error", "code": "MESSAGE_ERROR", "message": "x", "fatal": False}


def _server(refuse: str | None) -> Script:
    """Writer a and subscriber b on db1. `refuse`: None (the server applies and pushes every
    write), "message_error" (every apply answered MESSAGE_ERROR), "applied0" (every apply
    answered applied 0, nothing explains it)."""
    s = Script()
    s.obs.capabilities = dict(REFERENCE_COORDINATOR)
    s.connect("a").connect("b")
    for i in range(6):
        s.at(1.0 + i)
        change_set = s.change_set("a", pk=i)
        if refuse == "message_error":
            s.recv("a", MESSAGE_ERROR)
            s.op(
                "a",
                OpName.APPLY,
                "fail",
                value={"requestId": f"a-{i}", "changeSets": [change_set]},
                result=MESSAGE_ERROR,
                error="MESSAGE_ERROR",
            )
        elif refuse == "applied0":
            s.apply("a", [change_set], applied=0)
        else:
            s.apply("a", [change_set], seq=i + 1)
            s.push("b", [change_set], seq=i + 1)
        s.at(1.5 + i).op("b", OpName.GET_CHANGES, "ok", result={"type": "changes", "changeSets": []})
    s.at(20.0)
    return s


@pytest.mark.parametrize("refuse", ["message_error", "applied0"])
def test_refused_valid_writes_cannot_pass(refuse: str) -> None:
    s = _server(refuse)
    assert run(s, "writes-accepted").status == "fail"
    assert run(s, "broadcast-delivery").status != "pass"
    assert run(s, "ordered-seq").status != "pass"
    assert run(s, "fast-client-latency").status != "pass"
    spurious = run(s, "no-spurious-failures")
    if refuse == "message_error":
        assert spurious.status == "fail" and spurious.evidence[0]["error"] == "MESSAGE_ERROR"


def test_a_server_applying_every_write_passes() -> None:
    s = _server(None)
    for check in ("writes-accepted", "broadcast-delivery", "ordered-seq", "no-spurious-failures"):
        assert run(s, check).status == "pass", check


def test_any_error_code_on_a_valid_request_is_spurious() -> None:
    for code in ("MESSAGE_ERROR", "UNKNOWN_MESSAGE", "NOT_AUTHORIZED", "STORE_UNAVAILABLE", "RATE_LIMITED"):
        s = Script()
        s.connect("a")
        error = {"type": "error", "code": code, "message": "", "fatal": False}
        s.at(1.0).op("a", OpName.GET_CHANGES, "fail", value={"sinceHLC": None}, result=error, error=code)
        result = run(s, "no-spurious-failures")
        assert result.status == "fail" and result.evidence[0]["error"] == code, code


def test_http_4xx_and_5xx_to_a_valid_request_are_spurious() -> None:
    for status, code in ((401, "AUTH_FAILED"), (400, "INVALID_BODY"), (503, "STORE_UNAVAILABLE")):
        s = Script()
        s.at(1.0).op(
            "a",
            OpName.HTTP_GET_CHANGES,
            "fail",
            value={"databaseId": "db1", "sinceHLC": None},
            result={"status": status, "body": {"ok": False, "error": {"code": code}}},
            error=code,
        )
        result = run(s, "no-spurious-failures")
        assert result.status == "fail" and result.evidence[0]["status"] == status, status


def test_a_ws_snapshot_failing_with_message_error_is_spurious() -> None:
    s = Script()
    s.connect("a")
    outcome: dict[str, Any] = {"ended": "error", "code": "MESSAGE_ERROR", "fatal": False, "chunks": 2}
    s.at(1.0).op("a", OpName.SNAPSHOT, "fail", result=outcome, error="MESSAGE_ERROR")
    assert run(s, "no-spurious-failures").status == "fail"


def test_refusals_the_client_asked_for_are_excused() -> None:
    s = Script()
    s.connect("fuzzer")
    s.at(1.0).op(
        "fuzzer",
        OpName.SEND_RAW,
        "ok",
        value={"intent": "not_json", "request": None, "frame": {"raw": "{x"}},
        result=MESSAGE_ERROR,
    )
    s.at(1.1).op("fuzzer", OpName.PING, "ok", result={"type": "pong"})
    # An intruder: its token is granted "other", it tries db1 (WS, then HTTP).
    s.connect("intruder", db="db1", authorized_for=["other"], ok=False, error="AUTH_FAILED")
    s.at(2.0).op("intruder", OpName.GET_CHANGES, "fail", result={"type": "error"}, error="NOT_AUTHENTICATED")
    s.at(2.1).op(
        "intruder",
        OpName.HTTP_GET_CHANGES,
        "fail",
        value={"databaseId": "db1", "authorizedFor": ["other"]},
        result={"status": 403, "body": {"ok": False}},
        error="NOT_AUTHORIZED",
    )
    s.at(2.2).op(
        "probe",
        OpName.HANDSHAKE,
        "fail",
        value={"databaseId": "db1", "protocolVersion": 2},
        result={"type": "error", "code": "PROTOCOL_VERSION_MISMATCH", "fatal": True},
        error="PROTOCOL_VERSION_MISMATCH",
    )
    s.at(2.3).op(
        "w",
        OpName.HANDSHAKE,
        "fail",
        value={"databaseId": "db1", "intent": "wrong_token"},
        result={"type": "error", "code": "AUTH_FAILED", "fatal": True},
        error="AUTH_FAILED",
    )
    result = run(s, "no-spurious-failures")
    assert result.status == "pass", result.evidence
    # The same refusal of a valid handshake is a failure.
    s.at(3.0).op(
        "c",
        OpName.HANDSHAKE,
        "fail",
        value={"databaseId": "db1", "authorizedFor": ["db1"]},
        result={"type": "error", "code": "AUTH_FAILED", "fatal": True},
        error="AUTH_FAILED",
    )
    assert run(s, "no-spurious-failures").status == "fail"


def test_no_answer_is_not_an_error_answer() -> None:
    s = Script()
    s.connect("a")
    s.at(1.0).op("a", OpName.GET_CHANGES, "fail", error="connection_closed")
    s.at(2.0).op("a", OpName.APPLY, "info", error="timeout")
    s.at(3.0).op("a", OpName.HTTP_GET_CHANGES, "fail", value={"databaseId": "db1"}, error="ConnectError")
    assert run(s, "no-spurious-failures").status == "pass"
