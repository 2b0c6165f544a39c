from __future__ import annotations

from harness.checks.observations import LogLine, Sample
from tests.harness.checks.script import Script, run


def _fanout(deliver_to_c: bool, deliver_to_b: bool = True) -> Script:
    s = Script()
    s.at(0.0).connect("w").connect("b").connect("c")
    for i in range(3):
        s.at(1.0 + i)
        cs = s.change_set("w", value=i)
        s.apply("w", [cs], seq=i + 1)
        if deliver_to_b:
            s.push("b", [cs], seq=i + 1)
        if deliver_to_c:
            s.push("c", [cs], seq=i + 1)
    s.at(10.0)
    return s


def test_every_live_session_receiving_every_write_passes() -> None:
    result = run(_fanout(True), "broadcast-delivery", delivery_bound_s=2.0)
    assert result.status == "pass" and "6 pushes" in result.summary


def test_a_live_session_skipped_by_the_broadcast_fails() -> None:
    result = run(_fanout(False), "broadcast-delivery", delivery_bound_s=2.0)
    assert result.status == "fail"
    assert {e["recipient"] for e in result.evidence} == {"c"}
    assert result.detected_at == 1.0 + 2.0


def test_a_session_that_left_is_not_expected_to_receive() -> None:
    s = Script()
    s.at(0.0).connect("w").connect("b")
    s.at(1.0).close("b", by_client=True)
    s.apply("w", [s.change_set("w")])
    s.at(10.0)
    assert run(s, "broadcast-delivery").status == "unknown"


def test_ordered_seq_passes_and_own_writes_explain_gaps() -> None:
    s = _fanout(True)
    # "w" writes seq 1..3 itself and so never sees them; a push to w jumping over them is fine
    s.at(5.0)
    s.apply("b", [s.change_set("b")], seq=4)
    s.push("w", [s.change_set("b")], seq=4)
    s.push("c", [s.change_set("b")], seq=4)
    assert run(s, "ordered-seq").status == "pass"


def _seqs(seqs: list[int]) -> Script:
    s = Script()
    s.connect("a")
    for i, seq in enumerate(seqs):
        s.at(1.0 + i).push("a", [s.change_set("w")], seq=seq)
    return s


def test_seq_gap_fails() -> None:
    result = run(_seqs([1, 2, 4, 5]), "ordered-seq")
    assert result.status == "fail" and "2 -> 4" in result.evidence[0]["problem"] and result.detected_at == 3.0


def test_seq_repeat_fails() -> None:
    assert run(_seqs([1, 2, 2, 3]), "ordered-seq").status == "fail"


def test_new_connection_may_start_anywhere() -> None:
    s = _seqs([7, 8])
    s.close("a", by_client=True).connect("a")
    s.at(5.0).push("a", [s.change_set("w")], seq=20).at(6.0).push("a", [s.change_set("w")], seq=21)
    assert run(s, "ordered-seq").status == "pass"


def test_pushes_after_a_slow_client_notice_are_not_judged() -> None:
    s = _seqs([1, 2])
    s.notice("a", "SLOW_CLIENT")
    s.at(9.0).push("a", [s.change_set("w")], seq=9)
    assert run(s, "ordered-seq").status == "pass"


def test_pushes_without_seq_give_unsupported() -> None:
    s = Script()
    s.connect("a").push("a", [s.change_set("w")]).push("a", [s.change_set("w")])
    result = run(s, "ordered-seq")
    assert result.status == "unknown" and "not supported" in result.summary


def _metrics(errors: float) -> dict[str, float]:
    return {"coordinator_errors_total": errors, 'coordinator_send_failures_total{kind="push"}': errors}


def test_missed_push_with_no_error_metric_moving_fails_visibility() -> None:
    s = _fanout(False)
    s.obs.metrics += [Sample(0.0, _metrics(0)), Sample(10.0, _metrics(0))]
    result = run(s, "failure-visibility", delivery_bound_s=2.0)
    assert result.status == "fail"


def test_missed_push_reported_by_a_metric_passes_visibility() -> None:
    s = _fanout(False)
    s.obs.metrics += [Sample(0.0, _metrics(0)), Sample(10.0, _metrics(2))]
    assert run(s, "failure-visibility", delivery_bound_s=2.0).status == "pass"


def test_an_error_metric_that_was_moving_before_the_failure_proves_nothing() -> None:
    """Refused bad input moves an error counter all run long: that is no report of the missed push."""
    s = _fanout(False)
    s.obs.metrics += [
        Sample(0.0, {"coordinator_request_errors_total": 0.0}),
        Sample(1.0, {"coordinator_request_errors_total": 5.0}),
        Sample(9.0, {"coordinator_request_errors_total": 40.0}),
    ]
    assert run(s, "failure-visibility", delivery_bound_s=2.0).status == "fail"
    s.obs.metrics[-1].data["coordinator_send_failures_total"] = 1.0  # a failure counter of its own
    assert run(s, "failure-visibility", delivery_bound_s=2.0).status == "pass"


def test_a_metric_moving_long_after_the_failure_is_not_its_report() -> None:
    s = _fanout(False)
    s.obs.metrics += [Sample(0.0, _metrics(0)), Sample(100.0, _metrics(2))]
    assert run(s, "failure-visibility", delivery_bound_s=2.0).status == "unknown"


def test_missed_push_reported_in_the_log_passes_visibility() -> None:
    s = _fanout(False)
    s.obs.metrics += [Sample(0.0, _metrics(0)), Sample(10.0, _metrics(0))]
    s.obs.logs.append(LogLine(3.5, "error broadcast_send_failed session=c"))
    assert run(s, "failure-visibility", delivery_bound_s=2.0).status == "pass"


def test_no_failure_gives_unknown_visibility_and_no_metrics_unsupported() -> None:
    s = _fanout(True)
    s.obs.metrics += [Sample(0.0, _metrics(0)), Sample(10.0, _metrics(0))]
    assert run(s, "failure-visibility").status == "unknown"
    s2 = _fanout(False)
    assert "not supported" in run(s2, "failure-visibility").summary


def test_own_write_seq_from_apply_result_explains_exactly_its_number() -> None:
    s = Script()
    s.connect("a").connect("w")
    s.at(1.0).push("a", [s.change_set("w")], seq=1)
    s.at(1.5)
    s.apply("a", [s.change_set("a")], seq=2)  # a's own write took seq 2
    s.at(2.0).push("a", [s.change_set("w")], seq=4)  # but 3 is missing too
    result = run(s, "ordered-seq")
    assert result.status == "fail" and result.evidence[0]["unexplained_numbers"] == [3]
    s2 = Script()
    s2.connect("a").connect("w")
    s2.at(1.0).push("a", [s2.change_set("w")], seq=1)
    s2.at(1.5)
    s2.apply("a", [s2.change_set("a")], seq=2)
    s2.at(2.0).push("a", [s2.change_set("w")], seq=3)
    assert run(s2, "ordered-seq").status == "pass"


def _fanout_to(recipients: list[str], delivered: set[str]) -> Script:
    s = Script()
    s.at(0.0).connect("w")
    for r in recipients:
        s.connect(r)
    s.at(1.0)
    cs = s.change_set("w")
    s.apply("w", [cs])
    for r in recipients:
        if r in delivered:
            s.push(r, [cs])
    s.at(10.0)
    return s


def test_one_failed_send_under_a_failpoint_is_excused_but_skipping_the_rest_is_not() -> None:
    everyone = ["r1", "r2", "r3", "r4"]
    one_failed = _fanout_to(everyone, {"r2", "r3", "r4"})
    one_failed.fault("failpoint", "broadcast.send", 0.5, 5.0)
    assert run(one_failed, "broadcast-delivery").status == "pass"
    rest_skipped = _fanout_to(everyone, {"r1"})
    rest_skipped.fault("failpoint", "broadcast.send", 0.5, 5.0)
    result = run(rest_skipped, "broadcast-delivery")
    assert result.status == "fail" and len(result.evidence) == 2


def test_misses_under_a_failpoint_must_be_made_visible() -> None:
    s = _fanout_to(["r1", "r2"], {"r2"})
    s.fault("failpoint", "broadcast.send", 0.5, 5.0)
    s.obs.metrics += [Sample(0.0, _metrics(0)), Sample(10.0, _metrics(0))]
    assert run(s, "failure-visibility").status == "fail"
    s.obs.metrics[-1] = Sample(10.0, _metrics(1))
    assert run(s, "failure-visibility").status == "pass"


def test_a_fault_on_one_clients_own_proxy_excuses_only_that_client() -> None:
    s = _fanout(False)
    s.fault("proxy_down", "client:b", 0.5, 9.0)  # b is cut off; c is not, and still misses pushes
    result = run(s, "broadcast-delivery", delivery_bound_s=2.0)
    assert result.status == "fail" and {e["recipient"] for e in result.evidence} == {"c"}
    s2 = _fanout(False)
    s2.fault("proxy_down", "client:c", 0.5, 9.0)  # now the one that misses them is the one cut off
    assert run(s2, "broadcast-delivery", delivery_bound_s=2.0).status == "pass"


def test_latency_widens_the_delivery_bound_instead_of_excusing() -> None:
    s = Script()
    s.at(0.0).connect("w").connect("b")
    s.fault("latency", "client", 0.5, 9.0, latency_ms=500)
    s.at(1.0)
    cs = s.change_set("w")
    s.apply("w", [cs], seq=1)
    s.at(3.5).push("b", [cs], seq=1)  # 2.5 s late: within 2 s + 2 x 0.5 s of added latency
    s.at(10.0)
    assert run(s, "broadcast-delivery", delivery_bound_s=2.0).status == "pass"
    missing = _fanout(False)
    missing.fault("latency", "client", 0.5, 9.0, latency_ms=500)
    assert run(missing, "broadcast-delivery", delivery_bound_s=2.0).status == "fail"


def test_the_record_of_an_injected_fault_does_not_make_a_failure_visible() -> None:
    s = _fanout_to(["r1", "r2"], set())  # the failed send and the one after it: both missed
    s.fault("failpoint", "broadcast.send", 0.5, 5.0, mode="error")
    injected = dict(_metrics(0), **{'coordinator_failpoint_hits_total{name="broadcast.send"}': 0.0})
    s.obs.metrics += [
        Sample(0.0, injected),
        Sample(10.0, dict(injected, **{'coordinator_failpoint_hits_total{name="broadcast.send"}': 1.0})),
    ]
    s.obs.logs.append(LogLine(1.1, '{"level":"info","event":"failpoint_set","mode":"error"}'))
    assert run(s, "failure-visibility").status == "fail"
    s.obs.logs.append(LogLine(1.2, '{"level":"error","event":"broadcast_send_failed"}'))
    assert run(s, "failure-visibility").status == "pass"


def test_own_http_write_with_its_seq_explains_its_number_however_late_the_pushes_come() -> None:
    # "a" writes over HTTP (seq 2 in the answer) at 1.5 s; its session's pushes lag: the
    # neighbours of 2 arrive 5 s later. Seq numbers are unique per database, so 2 is a's own.
    s = Script()
    s.connect("a").connect("w")
    s.at(1.5).http_apply("a", [s.change_set("a")], db="db1", seq=2)
    s.at(6.0).push("a", [s.change_set("w")], seq=1)
    s.at(6.1).push("a", [s.change_set("w")], seq=3)
    assert run(s, "ordered-seq").status == "pass"
    # The same lag with a number no own write holds is still a gap.
    s2 = Script()
    s2.connect("a").connect("w")
    s2.at(1.5).http_apply("a", [s2.change_set("a")], db="db1", seq=2)
    s2.at(6.0).push("a", [s2.change_set("w")], seq=1)
    s2.at(6.1).push("a", [s2.change_set("w")], seq=4)
    result = run(s2, "ordered-seq")
    assert result.status == "fail" and result.evidence[0]["unexplained_numbers"] == [3]
