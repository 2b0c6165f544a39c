"""Preflight: a mistake in the inputs costs one line and exit 2 before anything starts."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.scenario.loader import load_scenario
from harness.scenario.preflight import PreflightError, check_bugs, check_fault_targets, check_target
from tests.harness.client.coordinator_process import coordinator


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _scenario(tmp_path: Path, target: str) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(
        "duration_s: 2\n"
        "clients:\n"
        "  - {name: own, behaviour: subscriber, via: own_proxy}\n"
        "  - {name: shared, behaviour: subscriber}\n"
        "timeline:\n"
        f"  - {{id: cut, at: 1, fault: {{kind: proxy_down, target: '{target}'}}}}\n"
        "checks: [survival]\n"
    )
    return path


def test_an_unknown_bug_id_is_named_with_the_known_ones() -> None:
    check_bugs(["apply-race"])
    with pytest.raises(PreflightError, match=r"--bug no-such-bug: not a catalogued bug; known: .*apply-race"):
        check_bugs(["apply-race", "no-such-bug"])


def test_a_client_fault_needs_that_client_on_a_proxy_of_its_own(tmp_path: Path) -> None:
    check_fault_targets(load_scenario(_scenario(tmp_path, "client:own")))
    with pytest.raises(PreflightError, match=r"s\.yaml:6: step cut: .*has no proxy of its own"):
        check_fault_targets(load_scenario(_scenario(tmp_path, "client:shared")))
    with pytest.raises(PreflightError, match="no client 'nobody'"):
        check_fault_targets(load_scenario(_scenario(tmp_path, "client:nobody")))


async def test_a_target_where_nothing_listens_is_refused() -> None:
    with pytest.raises(PreflightError, match="no v1 session could be opened"):
        await check_target(f"http://127.0.0.1:{_free_port()}/sync", None, allow_remote=False)


async def test_a_remote_target_needs_allow_remote() -> None:
    with pytest.raises(PreflightError, match="allow-remote"):
        await check_target("http://192.0.2.1:3000/sync", None, allow_remote=False)


async def test_a_v1_server_passes_and_a_refused_token_is_refused(tmp_path: Path) -> None:
    with coordinator(tmp_path, "--token", "good") as server:
        await check_target(server.http_url, "good", allow_remote=False)
        with pytest.raises(PreflightError, match="handshake was refused: AUTH_FAILED"):
            await check_target(server.http_url, "bad", allow_remote=False)


def test_the_cli_exits_2_with_one_line_before_starting_anything() -> None:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "harness.cli", "run", "scenarios/smoke.yaml", "--target",
         f"http://127.0.0.1:{_free_port()}/sync"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2 and time.monotonic() - started < 30
    assert done.stderr.count("\n") == 1 and "no v1 session" in done.stderr, done.stderr
    bug = subprocess.run(
        [sys.executable, "-m", "harness.cli", "run", "scenarios/smoke.yaml", "--bug", "nope"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert bug.returncode == 2 and "--bug nope" in bug.stderr and "Traceback" not in bug.stderr


def test_a_token_env_var_that_is_not_set_is_named() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "harness.cli", "run", "scenarios/smoke.yaml", "--token-env", "NO_SUCH_VAR_X"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2 and "--token-env NO_SUCH_VAR_X: the variable is not set" in done.stderr
