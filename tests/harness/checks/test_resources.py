from __future__ import annotations

from typing import Any

from harness.checks.observations import Sample
from tests.harness.checks.script import Script, run


def _status(open_stores: int, clients: int, uptime: float) -> dict[str, Any]:
    return {"ok": True, "data": {"openStores": open_stores, "connectedClients": clients, "uptime": uptime}}


def _resources(stores: list[dict[str, Any]], tasks: int) -> dict[str, Any]:
    return {"stores": stores, "sessions": [], "backgroundTasks": tasks}


def _session_run(final_status: dict[str, Any], final_resources: dict[str, Any]) -> Script:
    s = Script()
    s.obs.status.append(Sample(0.0, _status(0, 0, 0.1)))
    s.obs.resources.append(Sample(0.0, _resources([], 2)))
    s.at(1.0).connect("a")
    s.obs.status.append(Sample(1.5, _status(1, 1, 1.5)))
    s.obs.resources.append(Sample(1.5, _resources([{"id": "db1", "refs": 1}], 3)))
    s.at(2.0).close("a", by_client=True)
    s.obs.status.append(Sample(9.0, final_status))
    s.obs.resources.append(Sample(9.0, final_resources))
    return s


def test_counts_back_to_baseline_pass() -> None:
    s = _session_run(_status(0, 0, 9.0), _resources([], 2))
    result = run(s, "leaked-resources", settle_s=5.0)
    assert result.status == "pass", result


def test_store_reference_left_behind_fails() -> None:
    s = _session_run(_status(1, 0, 9.0), _resources([{"id": "db1", "refs": 1}], 2))
    result = run(s, "leaked-resources", settle_s=5.0)
    assert result.status == "fail"
    paths = {e["path"] for e in result.evidence}
    assert "openStores" in paths and "stores.length" in paths and "stores[].refs" in paths
    assert result.detected_at == 9.0


def test_background_task_left_running_fails() -> None:
    s = _session_run(_status(0, 0, 9.0), _resources([], 3))
    result = run(s, "leaked-resources", settle_s=5.0)
    assert result.status == "fail" and result.evidence[0]["path"] == "backgroundTasks"


def _two_quiet_samples(at_8: int, at_9: int) -> Script:
    """Two samples of the quiet time (after 2.0 + 5 s), the tasks count as given."""
    s = _session_run(_status(0, 0, 9.0), _resources([], at_9))
    s.obs.status.insert(2, Sample(8.0, _status(0, 0, 8.0)))
    s.obs.resources.insert(2, Sample(8.0, _resources([], at_8)))
    return s


def test_task_in_flight_in_one_quiet_sample_only_passes() -> None:
    # The last sample met a task that came and went (the one before it was back at baseline).
    result = run(_two_quiet_samples(at_8=2, at_9=3), "leaked-resources", settle_s=5.0)
    assert result.status == "pass", result


def test_task_above_baseline_in_every_quiet_sample_fails() -> None:
    result = run(_two_quiet_samples(at_8=3, at_9=3), "leaked-resources", settle_s=5.0)
    assert result.status == "fail" and result.evidence[0]["path"] == "backgroundTasks"
    assert result.evidence[0]["final"] == 3 and result.detected_at == 9.0


def test_session_left_registered_fails_from_status_alone() -> None:
    s = _session_run(_status(0, 1, 9.0), _resources([], 2))
    s.obs.capabilities["debug_resources"] = False
    result = run(s, "leaked-resources", settle_s=5.0)
    assert result.status == "fail" and result.evidence[0]["path"] == "connectedClients"


def test_no_sample_after_the_settle_time_gives_unknown() -> None:
    s = _session_run(_status(1, 1, 9.0), _resources([], 9))
    assert run(s, "leaked-resources", settle_s=30.0).status == "unknown"


def test_clients_still_connected_gives_unknown() -> None:
    s = Script()
    s.connect("a")
    s.obs.status.append(Sample(9.0, _status(1, 1, 9.0)))
    assert run(s, "leaked-resources").status == "unknown"


def _shared_server_run(before: int, final: int, first_sample_at: float = 0.0) -> Script:
    """A shared server: other users keep stores open, so the quiet state is not zero."""
    s = Script()
    s.obs.status.append(Sample(first_sample_at, _status(before, before, 0.1)))
    s.at(1.0).connect("a")
    s.obs.status.append(Sample(1.5, _status(before + 1, before + 1, 1.5)))
    s.at(2.0).close("a", by_client=True)
    s.obs.status.append(Sample(9.0, _status(final, before, 9.0)))
    s.obs.capabilities["debug_resources"] = False
    return s


def test_non_zero_baseline_before_the_clients_passes() -> None:
    result = run(_shared_server_run(before=3, final=3), "leaked-resources", settle_s=5.0)
    assert result.status == "pass", result


def test_count_above_a_non_zero_baseline_fails() -> None:
    result = run(_shared_server_run(before=3, final=4), "leaked-resources", settle_s=5.0)
    assert result.status == "fail", result
    assert result.evidence[0]["path"] == "openStores" and result.evidence[0]["baseline"] == 3.0


def test_no_sample_before_the_clients_gives_unknown() -> None:
    result = run(_shared_server_run(before=3, final=3, first_sample_at=1.2), "leaked-resources", settle_s=5.0)
    assert result.status == "unknown" and "baseline" in result.summary


def test_unknown_idle_timeout_gives_unknown_naming_the_profile_key() -> None:
    result = run(_shared_server_run(before=0, final=0), "leaked-resources")
    assert result.status == "unknown" and "idle_store_timeout_ms" in result.summary


def test_idle_timeout_longer_than_the_run_waits_gives_unknown() -> None:
    result = run(_shared_server_run(before=0, final=5), "leaked-resources", settle_s=302.0)
    assert result.status == "unknown" and "max_settle_s" in result.summary
