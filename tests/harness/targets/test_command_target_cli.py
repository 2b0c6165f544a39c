"""`harness run --target-command` end to end: SIGTERM in the middle of a run stops the server
command and everything else the run started, as it does for the bundled coordinator."""

from __future__ import annotations

import asyncio
import shlex
import signal
import sys
from pathlib import Path

from harness.env.resources import processes_in_groups
from tests.harness.scenario.test_cli_e2e import _children_of, _exists, _temp_dirs_in_cmdline

COORDINATOR = str(Path(sys.executable).parent / "coordinator")
COMMAND = (
    f"{shlex.quote(COORDINATOR)} serve --config {{options_file}} --host {{host}} --port {{port}} "
    "--data-dir {data_dir} --log-format json"
)


async def test_sigterm_stops_a_command_target_run_and_everything_it_started(tmp_path: Path) -> None:
    runner = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "harness.cli",
        "run",
        "scenarios/smoke.yaml",
        "--target-command",
        COMMAND,
        "--target-ready",
        "/sync/ready",
        "--report-dir",
        str(tmp_path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert runner.stdout is not None and runner.stderr is not None
        seen = b""
        while b"timeline steps" not in seen:  # printed once the environment is up and clients run
            line = await asyncio.wait_for(runner.stdout.readline(), 120.0)
            assert line, f"harness ended before the run started: {seen!r}"
            seen += line
        children = _children_of(runner.pid)
        dirs = sorted({d for pid in children for d in _temp_dirs_in_cmdline(pid)})
        assert len(children) >= 2 and any("sync-harness-data-" in d for d in dirs)
        runner.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(runner.communicate(), 90.0)
    finally:
        if runner.returncode is None:
            runner.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(runner.wait(), 90.0)
            except TimeoutError:
                runner.kill()
                await runner.wait()
    assert runner.returncode == 143, err.decode()
    assert "terminated; everything it started has been stopped" in err.decode()
    assert processes_in_groups(set(children)) == []
    assert [d for d in dirs if _exists(d)] == []
    logs = tmp_path / "logs" / "smoke"
    assert (logs / "server.stderr.log").is_file() and (logs / "server-options.json").is_file()
