"""The process supervisor, against a small real child (tests/harness/env/ticker.py)."""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from harness.env import resources
from harness.env.ports import free_port
from harness.env.process import ManagedProcess, ProcessError, ProcessSpec
from harness.env.readiness import PortFile
from tests.harness.env.echo import poll_until

TICKER = str(Path(__file__).with_name("ticker.py"))


def ticker_spec(
    run_dir: Path, *args: str, stop_timeout_s: float = 5.0, ready_timeout_s: float = 15.0
) -> ProcessSpec:
    port_file = run_dir / "ticker.port.json"
    return ProcessSpec(
        name="ticker",
        argv=[sys.executable, TICKER, str(port_file), *args],
        run_dir=run_dir,
        readiness=PortFile(port_file),
        ready_timeout_s=ready_timeout_s,
        stop_timeout_s=stop_timeout_s,
    )


def ticks(process: ManagedProcess) -> int:
    return process.stdout_path.read_text().count("tick ")


async def poll(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Wait until `condition()` is true, polling, with a deadline."""
    await poll_until(condition, timeout_s)


def proc_state(pid: int) -> str:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rfind(")") + 2 :].split()[0]


def pong(port: int, timeout_s: float) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        return sock.recv(16)


async def test_start_waits_for_port_file_and_captures_output(tmp_path: Path) -> None:
    async with ManagedProcess(ticker_spec(tmp_path)) as process:
        info = process.ready_value
        assert isinstance(info["port"], int) and info["pid"] == process.pid
        assert await asyncio.to_thread(pong, info["port"], 5.0) == b"pong\n"
        await poll(lambda: ticks(process) >= 2)
    assert not process.running
    assert process.returncode == 0  # SIGTERM handled: a clean exit
    assert "start #1" in process.stderr_path.read_text()


async def test_sigstop_stops_output_and_sigcont_resumes_it(tmp_path: Path) -> None:
    async with ManagedProcess(ticker_spec(tmp_path)) as process:
        assert process.pid is not None
        await poll(lambda: ticks(process) >= 1)
        await process.pause()
        await poll(lambda: proc_state(process.pid or 0) == "T")
        paused_at = ticks(process)
        # a stopped process cannot answer: the connection is accepted by the kernel, no reply
        with pytest.raises(TimeoutError):
            await asyncio.to_thread(pong, process.ready_value["port"], 0.5)
        assert ticks(process) == paused_at  # 0.5 s is 10 tick periods: none came
        await process.resume()
        await poll(lambda: ticks(process) > paused_at + 2)
        assert await asyncio.to_thread(pong, process.ready_value["port"], 5.0) == b"pong\n"


async def test_stop_escalates_to_sigkill_when_sigterm_is_ignored(tmp_path: Path) -> None:
    process = ManagedProcess(ticker_spec(tmp_path, "--ignore-term", stop_timeout_s=0.5))
    await process.start()
    started = time.monotonic()
    code = await process.stop()
    assert code == -9
    assert time.monotonic() - started >= 0.4
    assert resources.leftovers() == []


async def test_stop_of_a_paused_process_still_terminates_it(tmp_path: Path) -> None:
    async with ManagedProcess(ticker_spec(tmp_path)) as process:
        await process.pause()
    assert process.returncode == 0


async def test_kill_and_restart_reuse_argv_and_port(tmp_path: Path) -> None:
    port = free_port()
    async with ManagedProcess(ticker_spec(tmp_path, "--port", str(port))) as process:
        first_pid = process.pid
        assert await process.kill() == -9
        assert not process.running
        info = await process.start()
        assert info["port"] == port and process.pid != first_pid
        info = await process.restart()
        assert info["port"] == port
        assert process.starts == 3
    assert process.stdout_path.read_text().count("---- ticker start #") == 3


async def test_terminate_reports_the_exit_code(tmp_path: Path) -> None:
    async with ManagedProcess(ticker_spec(tmp_path)) as process:
        assert await process.terminate() == 0
        with pytest.raises(ProcessError, match="not running"):
            process.send_signal(signal.SIGTERM)


async def test_grandchildren_die_with_the_group(tmp_path: Path) -> None:
    async with ManagedProcess(ticker_spec(tmp_path, "--spawn-child")) as process:
        pgid = process.pid
        assert pgid is not None
        await poll(lambda: len(resources.processes_in_groups({pgid})) >= 2)
    assert resources.processes_in_groups({pgid}) == []


async def test_a_child_that_dies_while_starting_fails_at_once_with_its_stderr(tmp_path: Path) -> None:
    process = ManagedProcess(ticker_spec(tmp_path, "--exit-now", "3", ready_timeout_s=30.0))
    started = time.monotonic()
    with pytest.raises(ProcessError) as err:
        await process.start()
    assert time.monotonic() - started < 10.0
    assert "exited with code 3" in str(err.value) and "exiting at once as asked" in str(err.value)


async def test_readiness_has_a_deadline(tmp_path: Path) -> None:
    process = ManagedProcess(ticker_spec(tmp_path, "--no-port-file", ready_timeout_s=0.5))
    with pytest.raises(ProcessError, match=r"not ready within 0\.5s"):
        await process.start()
    assert not process.running


async def test_a_missing_executable_is_a_clear_error(tmp_path: Path) -> None:
    spec = ProcessSpec(name="ghost", argv=["/nonexistent/ghost-binary"], run_dir=tmp_path)
    with pytest.raises(ProcessError, match="cannot start ghost"):
        await ManagedProcess(spec).start()


async def test_cancellation_inside_the_context_still_stops_the_child(tmp_path: Path) -> None:
    entered = asyncio.Event()
    holder: list[ManagedProcess] = []

    async def body() -> None:
        async with ManagedProcess(ticker_spec(tmp_path)) as process:
            holder.append(process)
            entered.set()
            await asyncio.Event().wait()  # until cancelled, like a run interrupted by Ctrl-C

    task = asyncio.create_task(body())
    await asyncio.wait_for(entered.wait(), 15.0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not holder[0].running
    assert resources.leftovers() == []


async def test_leftovers_sees_a_process_that_outlives_its_supervisor(tmp_path: Path) -> None:
    process = ManagedProcess(ticker_spec(tmp_path))
    await process.start()
    assert any("ticker" in line or "python" in line for line in resources.leftovers())
    await process.stop()
    assert resources.leftovers() == []


def kinds(process: ManagedProcess) -> list[str]:
    return [e.kind for e in process.events]


async def test_lifecycle_events_record_what_the_harness_did(tmp_path: Path) -> None:
    async with ManagedProcess(ticker_spec(tmp_path)) as process:
        await process.pause()
        await process.resume()
        await process.kill()
        await process.start()
    assert kinds(process) == ["start", "sigstop", "sigcont", "sigkill", "exit", "start", "sigterm", "exit"]
    exits = [e for e in process.events if e.kind == "exit"]
    assert [(e.exit_code, e.by_harness) for e in exits] == [(-9, True), (0, True)]
    times = [e.time for e in process.events]
    assert times == sorted(times)


async def test_a_crash_is_an_exit_nobody_asked_for(tmp_path: Path) -> None:
    async with ManagedProcess(ticker_spec(tmp_path, "--crash-after-ticks", "3")) as process:
        await poll(lambda: not process.running)
        await poll(lambda: "exit" in kinds(process))
        [exit_event] = [e for e in process.events if e.kind == "exit"]
        assert (exit_event.exit_code, exit_event.by_harness) == (7, False)
        assert "crashing on purpose" in process.stderr_tail()
