"""A record of every process group, port and temp dir the harness created, to prove cleanup.

Each supervisor, server and environment registers what it makes here and unregisters it when it
has cleaned up. `leftovers()` then looks at the machine itself (/proc, connect(), the file system)
rather than trusting the registry, so a forgotten grandchild or a directory removed only on paper
is still found. The tests assert `leftovers() == []` after every test; a last-resort `atexit`
sweep kills any process group still registered when the interpreter exits (e.g. after Ctrl-C
outside the event loop).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import tempfile
from pathlib import Path

TEMP_PREFIX = "sync-harness-"

_live_pgids: set[int] = set()
_all_pgids: set[int] = set()
_ports: dict[int, str] = {}
_temp_dirs: set[Path] = set()


def register_pgid(pgid: int) -> None:
    _live_pgids.add(pgid)
    _all_pgids.add(pgid)


def live_pgids() -> frozenset[int]:
    """Process groups started and not yet reaped and swept."""
    return frozenset(_live_pgids)


def unregister_pgid(pgid: int) -> None:
    _live_pgids.discard(pgid)


def register_port(port: int, owner: str) -> None:
    """A TCP port on 127.0.0.1 the harness listens on (directly or through a child)."""
    _ports[port] = owner


def unregister_port(port: int) -> None:
    _ports.pop(port, None)


def make_temp_dir(purpose: str) -> Path:
    """A fresh temp dir that `remove_temp_dir` (or the leak check) accounts for."""
    path = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{purpose}-"))
    _temp_dirs.add(path)
    return path


def remove_temp_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
    if not path.exists():
        _temp_dirs.discard(path)


def processes_in_groups(pgids: set[int]) -> list[tuple[int, int, str]]:
    """(pid, pgid, command) of every live, non-zombie process whose group is in `pgids`."""
    found: list[tuple[int, int, str]] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # comm may contain spaces and parentheses: split after the last ')'
        rest = stat[stat.rfind(")") + 2 :].split()
        state, pgrp = rest[0], int(rest[2])
        if pgrp in pgids and state != "Z":
            comm = stat[stat.find("(") + 1 : stat.rfind(")")]
            found.append((int(entry.name), pgrp, comm))
    return found


def _port_accepts(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def leftovers() -> list[str]:
    """Everything of the harness still alive: processes, listening ports, temp dirs."""
    problems: list[str] = []
    for pid, pgid, comm in processes_in_groups(_all_pgids):
        problems.append(f"process {pid} ({comm}) of harness process group {pgid} is still running")
    for port, owner in sorted(_ports.items()):
        if _port_accepts(port):
            problems.append(f"port 127.0.0.1:{port} ({owner}) still accepts connections")
    for path in sorted(_temp_dirs):
        if path.exists():
            problems.append(f"temp dir {path} still exists")
    return problems


def forget_closed() -> None:
    """Drop registry entries whose resource is verifiably gone (between tests)."""
    alive = {pgid for _, pgid, _ in processes_in_groups(_all_pgids)}
    _all_pgids.intersection_update(alive)
    for port in [p for p in _ports if not _port_accepts(p)]:
        _ports.pop(port, None)
    for path in [p for p in _temp_dirs if not p.exists()]:
        _temp_dirs.discard(path)


def kill_all_registered() -> None:
    """Last resort: SIGKILL every process group still registered as live."""
    for pgid in list(_live_pgids):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
        _live_pgids.discard(pgid)


atexit.register(kill_all_registered)
