"""`harness load` end to end against the bundled coordinator: short bounded profiles (each well
under 20 s), a latency scenario that crosses its threshold, and Locust's distributed mode."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.cli import main

pytestmark = pytest.mark.slow
HERE = Path(__file__).parent


def _load(tmp_path: Path, *args: str) -> tuple[int, dict[str, object], Path]:
    code = main(["load", "--report-dir", str(tmp_path), *args])
    runs = sorted(tmp_path.glob("load-*"))
    if not runs:
        return code, {}, tmp_path
    return code, json.loads((runs[-1] / "load.json").read_text()), runs[-1]


def test_a_short_steady_profile_passes_its_thresholds(tmp_path: Path) -> None:
    code, data, run = _load(
        tmp_path, "--profile", "steady", "--users", "6", "--duration", "6s",
        "--fail-on", "apply->push p99>250ms", "--fail-on", "errors>1%",
    )  # fmt: skip
    assert code == 0, data
    requests = data["requests"]
    assert isinstance(requests, dict)
    for name in ("handshake", "apply->ack", "apply->push", "get_changes", "snapshot"):
        assert requests[name]["requests"] > 0, name
    assert [t["status"] for t in data["thresholds"]] == ["held", "held"]  # type: ignore[union-attr]
    assert {c["status"] for c in data["checks"]} == {"pass"}, data["checks"]  # type: ignore[union-attr]
    assert data["history_sample_ops"]
    for name in ("report.html", "junit.xml", "locust/locust.html", "locust/locust_stats_history.csv"):
        assert (run / name).is_file(), name
    assert (run / "junit.xml").read_text().count("<testcase") == 2 + 3


def test_a_latency_toxic_crosses_the_threshold_and_exits_1(tmp_path: Path) -> None:
    code, data, run = _load(
        tmp_path, "--profile", "steady", "--scenario", str(HERE / "latency.yaml"),
        "--fail-on", "apply->push p99>250ms",
    )  # fmt: skip
    assert code == 1, data
    assert data["thresholds"][0]["status"] == "crossed"  # type: ignore[index]
    assert [f["kind"] for f in data["faults"]] == ["latency"]  # type: ignore[union-attr]
    assert "fault-shade" in (run / "report.html").read_text()


def test_bad_input_exits_2_with_a_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["load", "--report-dir", str(tmp_path), "--profile", "steady", "--fail-on", "p99 lots"]) == 2
    assert "--fail-on 'p99 lots'" in capsys.readouterr().err
    assert main(["load", "--report-dir", str(tmp_path), "--profile", "steady", "--users", "0"]) == 2
    assert "users must be between" in capsys.readouterr().err
    assert main(["load", "--profile", "steady", "--target", "http://10.1.2.3:8080/sync"]) == 2
    assert "--allow-remote" in capsys.readouterr().err
    assert (
        main(
            [
                "load",
                "--report-dir",
                str(tmp_path),
                "--profile",
                "steady",
                "--target",
                "http://127.0.0.1:9/sync",
            ]
        )
        == 2
    )
    assert "127.0.0.1:9" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_two_workers_make_the_same_requests_as_one_process(tmp_path: Path) -> None:
    fixed = [
        "--profile",
        "steady",
        "--users",
        "4",
        "--spawn-rate",
        "50",
        "--rate",
        "5",
        "--duration",
        "6s",
        "--mix",
        "writer=1",
    ]
    code_one, one, _ = _load(tmp_path / "one", *fixed)
    code_two, two, _ = _load(tmp_path / "two", *fixed, "--workers", "2")
    assert code_one == code_two == 0
    n_one = one["requests"]["apply->ack"]["requests"]  # type: ignore[index]
    n_two = two["requests"]["apply->ack"]["requests"]  # type: ignore[index]
    assert n_one > 60
    assert abs(n_two - n_one) <= 0.1 * n_one, (n_one, n_two)


def test_failures_carry_the_protocol_code_and_a_token_comes_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scenario = str(HERE / "tokens.yaml")
    code, data, _ = _load(
        tmp_path / "without", "--profile", "steady", "--scenario", scenario, "--fail-on", "errors>1%"
    )
    assert code == 1
    codes = {f["error"] for f in data["failures"]}  # type: ignore[union-attr]
    assert codes == {"AUTH_FAILED"}, data["failures"]
    monkeypatch.setenv("LOAD_TEST_TOKEN", "s3cr3t-load")
    code, data, run = _load(
        tmp_path / "with", "--profile", "steady", "--scenario", scenario, "--fail-on", "errors>1%",
        "--token-env", "LOAD_TEST_TOKEN",
    )  # fmt: skip
    assert code == 0, data
    assert data["failures"] == [] and data["requests"]["apply->ack"]["requests"] > 5  # type: ignore[index]
    assert "s3cr3t-load" not in (run / "load.json").read_text()  # the token is never written down


@pytest.mark.parametrize(
    ("profile", "names"),
    [("fanout-storm", {"handshake", "apply->ack", "apply->push"}), ("reconnect-storm", {"handshake"})],
)
def test_the_storm_profiles_run_their_own_users(tmp_path: Path, profile: str, names: set[str]) -> None:
    code, data, _ = _load(
        tmp_path, "--profile", profile, "--users", "8", "--spawn-rate", "50", "--duration", "4s", "--rate", "4",
        "--fail-on", "handshake requests<8", "--fail-on", "errors>0",
    )  # fmt: skip
    assert code == 0, data
    assert set(data["requests"]) - {"all"} == names  # type: ignore[arg-type]
