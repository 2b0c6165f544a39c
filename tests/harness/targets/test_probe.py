"""`harness probe` against the bundled coordinator started as a process: the default one (every
extension, revive) and, where it exists, `--compat plain-v1` (none, delete-wins)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.cli import main
from harness.targets.probe import ProbeError, probe_target
from harness.targets.profile import load_profile
from tests.harness.client.coordinator_process import coordinator

ADMIN = "probe-admin"


async def test_probe_detects_the_default_coordinator(tmp_path: Path) -> None:
    with coordinator(tmp_path, "--heartbeat-interval-ms", "200", "--admin-token", ADMIN) as server:
        report = await probe_target(server.http_url, admin_token=ADMIN, wait_s=5.0)
    caps = {name: f.value for name, f in report.capabilities.items()}
    assert caps["seq"] and caps["heartbeat"] and caps["presence"] and caps["invalid_payload"]
    assert caps["health"] and caps["ready"] and caps["metrics"] and caps["debug_resources"]
    assert report.tombstone_policy.value == "revive"
    assert report.heartbeat_interval_ms.value is not None
    assert 150 <= report.heartbeat_interval_ms.value <= 400


def test_probe_writes_a_profile_that_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROBE_ADMIN", ADMIN)
    out = tmp_path / "profile.yaml"
    with coordinator(
        tmp_path, "--heartbeat-interval-ms", "200", "--admin-token", ADMIN, "--token", "T1:scratch*"
    ) as server:
        code = main(
            [
                "probe",
                "--target",
                server.http_url,
                "--token",
                "T1",
                "--admin-token-env",
                "PROBE_ADMIN",
                "--wait-s",
                "5",
                "--write-profile",
                str(out),
                "--database-prefix",
                "scratch",  # the token is granted scratch* only
            ]
        )
    assert code == 0
    text = out.read_text()
    assert "# idle_store_timeout_ms:" in text and "not detectable" in text  # undetected: commented, with why
    profile = load_profile(out)
    assert profile.tombstone_policy == "revive" and profile.token == "T1"
    assert profile.grants("T1") == ("*",) and profile.admin_token() == ADMIN
    assert profile.capabilities["seq"] is True and "not_authorized" not in profile.capabilities
    assert profile.idle_store_timeout_ms is None and profile.heartbeat_interval_ms is not None


async def test_probe_detects_a_plain_v1_server(tmp_path: Path) -> None:
    with coordinator(tmp_path, "--compat", "plain-v1", "--admin-token", ADMIN) as server:
        report = await probe_target(server.http_url, admin_token=ADMIN, wait_s=2.0)
    caps = {name: f.value for name, f in report.capabilities.items()}
    for name in ("seq", "presence", "invalid_payload", "health", "ready", "debug_resources"):
        assert caps[name] is False, (name, report.capabilities[name])
    assert caps["heartbeat"] is None  # none within a bounded wait proves no absence: left to the user
    assert report.tombstone_policy.value == "delete-wins"
    assert report.heartbeat_interval_ms.value is None


async def test_probe_refuses_a_remote_target_without_allow_remote() -> None:
    with pytest.raises(ProbeError, match="allow-remote"):
        await probe_target("http://192.0.2.1:3000/sync")
