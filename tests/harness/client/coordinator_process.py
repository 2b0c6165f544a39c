"""A minimal coordinator process for the client tests: started through its CLI (never
imported), ready when it writes its port file, stopped with SIGTERM then SIGKILL."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

COORDINATOR = Path(sys.executable).with_name("coordinator")


@dataclass(slots=True)
class RunningCoordinator:
    host: str
    port: int
    base_path: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}{self.base_path}/ws"

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.port}{self.base_path}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextlib.contextmanager
def coordinator(tmp: Path, *args: str, ready_timeout_s: float = 20.0) -> Iterator[RunningCoordinator]:
    port_file = tmp / "port.json"
    log_path = tmp / "coordinator.log"
    command = [
        str(COORDINATOR),
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--data-dir",
        str(tmp / "data"),
        "--port-file",
        str(port_file),
        *args,
    ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy())
    try:
        deadline = time.monotonic() + ready_timeout_s
        info = None
        while time.monotonic() < deadline and process.poll() is None:
            if port_file.exists():
                with contextlib.suppress(ValueError):
                    info = json.loads(port_file.read_text())
                    break
            time.sleep(0.05)
        if info is None:
            raise RuntimeError(f"coordinator did not start: {log_path.read_text(errors='replace')[-2000:]}")
        yield RunningCoordinator(
            info["host"], int(info["port"]), info.get("basePath", "/sync"), process, log_path
        )
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
