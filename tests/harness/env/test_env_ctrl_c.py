"""Ctrl-C (SIGINT) during a run tears the whole environment down: no process, port or dir left."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from pathlib import Path

import pytest

SCRIPT = str(Path(__file__).with_name("ctrl_c_env.py"))
ROOT = str(Path(__file__).resolve().parents[3])


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2 :].split()[0] != "Z"


def exists(path: str) -> bool:
    return Path(path).exists()


def accepts(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.parametrize("kind", ["bundled", "command"])
async def test_ctrl_c_tears_everything_down(kind: str) -> None:
    env = dict(os.environ, PYTHONPATH=ROOT)
    runner = await asyncio.create_subprocess_exec(
        sys.executable, SCRIPT, kind, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env
    )
    try:
        assert runner.stdout is not None
        line = await asyncio.wait_for(runner.stdout.readline(), 60.0)
        started = json.loads(line)
        assert all(alive(pid) for pid in started["pids"])
        runner.send_signal(signal.SIGINT)
        code = await asyncio.wait_for(runner.wait(), 60.0)
    finally:
        if runner.returncode is None:
            runner.kill()
            await runner.wait()
    assert code == 130
    assert [pid for pid in started["pids"] if alive(pid)] == []
    assert [port for port in started["ports"] if accepts(port)] == []
    assert [d for d in started["dirs"] if exists(d)] == []
