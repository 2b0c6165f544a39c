from __future__ import annotations

from harness.checks.observations import ProcessEvent, S3Request, Sample
from harness.history import OpName
from tests.harness.checks.script import Script, run


def _outage_requests(count: int, writes: bool = True, mode: str = "close") -> Script:
    s = Script()
    s.obs.s3_owned = True
    s.fault("s3_outage", "s3", 1.0, 11.0, mode=mode)
    s.obs.s3_requests = [S3Request(1.0 + i * 10.0 / max(count, 1), "PutObject") for i in range(count)]
    if writes:  # applied writes during the outage: the server had reasons to call S3
        s.at(0.5).connect("w")
        s.at(2.0).apply("w", [s.change_set("w")])
    s.at(12.0)
    return s


def test_backing_off_during_an_outage_passes() -> None:
    assert run(_outage_requests(8), "object-store-not-hammered", max_rate_per_s=2.0).status == "pass"


def test_retry_storm_during_an_outage_fails() -> None:
    result = run(_outage_requests(200), "object-store-not-hammered", max_rate_per_s=2.0)
    assert result.status == "fail" and result.evidence[0]["requests"] == 200


def test_object_store_check_unknown_without_ownership_or_outage() -> None:
    s = _outage_requests(200)
    s.obs.s3_owned = False
    assert run(s, "object-store-not-hammered").status == "unknown"
    s2 = Script()
    s2.obs.s3_owned = True
    assert run(s2, "object-store-not-hammered").status == "unknown"


def test_an_outage_without_applied_writes_proves_no_backing_off() -> None:
    """A server that refused every write made no S3 call to back off from: not a pass."""
    result = run(_outage_requests(0, writes=False), "object-store-not-hammered", max_rate_per_s=2.0)
    assert result.status == "unknown" and "no write was applied" in result.summary


def test_refused_connections_cannot_be_counted() -> None:
    result = run(_outage_requests(0, mode="refuse"), "object-store-not-hammered", max_rate_per_s=2.0)
    assert result.status == "unknown" and "refused connections" in result.summary


def _reads(per_event: float, read_requests: int = 10) -> Script:
    s = Script()
    s.obs.metrics.append(Sample(0.0, {"coordinator_storage_reads_total": 10.0}))
    for i in range(30):
        s.at(1.0 + i * 0.1).connect(f"c{i}")
    for i in range(read_requests):
        s.at(5.0 + i * 0.1).op("c0", OpName.GET_CHANGES, "ok", result={"changeSets": []})
    s.obs.metrics.append(
        Sample(10.0, {"coordinator_storage_reads_total": 10.0 + read_requests + 30 * per_event})
    )
    return s


def test_reads_explained_by_read_requests_pass_and_reloads_per_event_fail() -> None:
    assert run(_reads(0.0, read_requests=40), "storage-reads-bounded").status == "pass"
    result = run(_reads(1.0), "storage-reads-bounded")
    assert result.status == "fail" and result.evidence[0]["unexplained_per_event"] == 1.0
    assert result.evidence[0]["read_requests"] == 10


def test_a_read_latency_histogram_is_not_counted_as_reads() -> None:
    """A histogram of read latencies beside the counter: its buckets, sum and count are one
    distribution, not reads; adding them in would turn 0 unexplained reads into thousands."""
    s = _reads(0.0, read_requests=40)
    for i, sample in enumerate(s.obs.metrics):
        sample.data |= {
            'storage_read_seconds_bucket{le="0.1"}': 500.0 * i,
            'storage_read_seconds_bucket{le="+Inf"}': 500.0 * i,
            "storage_read_seconds_sum": 3.0 * i,
            "storage_read_seconds_count": 500.0 * i,
        }
    assert run(s, "storage-reads-bounded").status == "pass"


def test_storage_reads_unknown_without_a_read_metric_or_enough_events() -> None:
    s = _reads(1.0)
    for sample in s.obs.metrics:
        sample.data = {"coordinator_connections": 1.0}
    assert run(s, "storage-reads-bounded").status == "unknown"
    assert run(_reads(1.0), "storage-reads-bounded", min_events=100).status == "unknown"


def test_process_dying_by_itself_fails_survival() -> None:
    s = Script()
    s.obs.process += [ProcessEvent(0.0, "start"), ProcessEvent(3.0, "exit", exit_code=1, by_harness=False)]
    result = run(s, "survival")
    assert result.status == "fail" and result.detected_at == 3.0


def test_attempts_after_a_fault_that_all_fail_fail_survival() -> None:
    s = Script()
    s.obs.process.append(ProcessEvent(0.0, "start"))
    s.fault("s3_outage", "s3", 1.0, 2.0)
    s.at(8.0).op("a", OpName.HANDSHAKE, "info", value={"databaseId": "db1"}, error="timeout")
    assert run(s, "survival", recovery_s=1.0).status == "fail"
    s.at(9.0).op("b", OpName.HANDSHAKE, "ok", value={"databaseId": "db1"})
    assert run(s, "survival", recovery_s=1.0).status == "pass"


def test_survival_unknown_without_process_info_or_faults() -> None:
    assert run(Script(), "survival").status == "unknown"


def test_server_failure_outside_faults_fails_and_inside_is_excused() -> None:
    s = Script()
    s.connect("a")
    s.at(1.0).op("a", OpName.GET_CHANGES, "ok", result={"changeSets": []})
    assert run(s, "no-spurious-failures").status == "pass"
    s.at(5.0).op(
        "a", OpName.GET_CHANGES, "fail", result={"code": "GET_CHANGES_ERROR"}, error="GET_CHANGES_ERROR"
    )
    result = run(s, "no-spurious-failures")
    assert result.status == "fail" and result.evidence[0]["error"] == "GET_CHANGES_ERROR"
    s.fault("s3_outage", "s3", 4.5, 6.0)
    assert run(s, "no-spurious-failures").status == "pass"


def test_a_delay_failpoint_does_not_excuse_a_server_failure() -> None:
    s = Script()
    s.connect("a")
    s.fault("failpoint", "storage.write", 0.5, 9.0, mode="delay", delay_ms=30)
    s.at(5.0).op("a", OpName.APPLY, "fail", error="APPLY_CHANGES_ERROR")
    result = run(s, "no-spurious-failures")
    assert result.status == "fail" and result.evidence[0]["error"] == "APPLY_CHANGES_ERROR"
    s.fault("failpoint", "storage.write", 4.0, 6.0, mode="error")  # a failing code path does excuse
    assert run(s, "no-spurious-failures").status == "pass"
    slowed_only = Script()
    slowed_only.connect("a")
    slowed_only.fault("failpoint", "storage.write", 0.5, 9.0, mode="delay", delay_ms=30)
    slowed_only.at(5.0).op("a", OpName.APPLY, "ok", result={"applied": 1})
    assert run(slowed_only, "no-spurious-failures").status == "pass"


def test_no_request_is_unknown() -> None:
    assert run(Script(), "no-spurious-failures").status == "unknown"


def test_a_refusal_after_a_fault_is_no_proof_of_recovery() -> None:
    s = Script()
    s.obs.process.append(ProcessEvent(0.0, "start"))
    s.fault("s3_outage", "s3", 1.0, 2.0)
    s.at(8.0).op("a", OpName.HANDSHAKE, "fail", value={"databaseId": "db1"}, error="AUTH_FAILED")
    assert run(s, "survival", recovery_s=1.0).status == "fail"
    s2 = Script()
    s2.obs.process.append(ProcessEvent(0.0, "start"))
    s2.fault("s3_outage", "s3", 1.0, 2.0)
    s2.at(8.0).op("b", OpName.APPLY, "info", error="timeout")
    s2.at(8.5).op("b", OpName.GET_CHANGES, "fail", error="GET_CHANGES_ERROR")
    assert run(s2, "survival", recovery_s=1.0).status == "fail"


def test_refusals_and_server_errors_are_not_served_whatever_the_code() -> None:
    for code, status in (("MESSAGE_ERROR", None), ("STORE_UNAVAILABLE", 503), ("INTERNAL_ERROR", 500)):
        s = Script()
        s.obs.process.append(ProcessEvent(0.0, "start"))
        s.fault("s3_outage", "s3", 1.0, 2.0)
        f = OpName.HTTP_GET_CHANGES if status else OpName.GET_CHANGES
        result = {"status": status, "body": {"ok": False}} if status else {"type": "error", "code": code}
        s.at(8.0).op("a", f, "fail", value={"databaseId": "db1"}, result=result, error=code)
        assert run(s, "survival", recovery_s=1.0).status == "fail", code


def test_an_intruders_refusal_after_a_fault_is_not_judged() -> None:
    s = Script()
    s.obs.process.append(ProcessEvent(0.0, "start"))
    s.fault("s3_outage", "s3", 1.0, 2.0)
    foreign = {"databaseId": "db1", "authorizedFor": ["other"]}
    s.at(8.0).op("x", OpName.HANDSHAKE, "fail", value=foreign, error="AUTH_FAILED")
    result = run(s, "survival", recovery_s=1.0)
    assert result.status == "pass" and "0 faults recovered" in result.summary
    s.at(8.1).op("a", OpName.HANDSHAKE, "ok", value={"databaseId": "db1"})
    result = run(s, "survival", recovery_s=1.0)
    assert result.status == "pass" and "1 faults recovered" in result.summary


def test_a_handshake_the_client_abandoned_is_no_attempt() -> None:
    s = Script()
    s.obs.process.append(ProcessEvent(0.0, "start"))
    s.fault("reset_peer", "client", 1.0, 2.0)
    for t in (8.0, 8.05):
        s.at(t).op("churn", OpName.HANDSHAKE, "info", value={"databaseId": "db1"}, error="abandoned")
    s.at(8.1).op("a", OpName.HANDSHAKE, "ok", value={"databaseId": "db1"})
    assert run(s, "survival", recovery_s=1.0).status == "pass"
