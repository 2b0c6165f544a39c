"""Conditions that say a started process is ready, each polled with a deadline.

Never a bare sleep: readiness is something observable (a port file with valid JSON, an HTTP URL
answering, a line in the process's log). Each poll also watches the process itself, so a child
that dies while starting fails at once with its exit code and the tail of its stderr.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx

POLL_INTERVAL_S = 0.05


class NotReady(RuntimeError):
    """The process did not become ready before its deadline, or died first."""


class Readiness(Protocol):
    def describe(self) -> str: ...

    def reset(self) -> None:
        """Forget evidence from an earlier start (called before each start)."""
        ...

    async def probe(self) -> Any:
        """None while not ready; any other value (e.g. the parsed port file) once ready."""
        ...


@dataclass
class PortFile:
    """Ready once `path` holds a JSON object with a "port" (written atomically by the child)."""

    path: Path

    def describe(self) -> str:
        return f"port file {self.path}"

    def reset(self) -> None:
        self.path.unlink(missing_ok=True)

    async def probe(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None
        if isinstance(data, dict) and isinstance(data.get("port"), int):
            return data
        return None


@dataclass
class HttpOk:
    """Ready once GET `url` answers with a status in `statuses`."""

    url: str
    statuses: tuple[int, ...] = (200,)
    headers: dict[str, str] | None = None

    def describe(self) -> str:
        return f"GET {self.url} -> {'/'.join(map(str, self.statuses))}"

    def reset(self) -> None:
        return None

    async def probe(self) -> httpx.Response | None:
        try:
            async with httpx.AsyncClient(timeout=1.0, trust_env=False) as client:
                response = await client.get(self.url, headers=self.headers)
        except httpx.HTTPError:
            return None
        return response if response.status_code in self.statuses else None


@dataclass
class TcpOpen:
    """Ready once 127.0.0.1:`port` accepts a TCP connection (a server that binds when ready)."""

    host: str
    port: int

    def describe(self) -> str:
        return f"TCP {self.host}:{self.port} accepting"

    def reset(self) -> None:
        return None

    async def probe(self) -> bool | None:
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(self.host, self.port), 1.0)
        except (OSError, TimeoutError):
            return None
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True


@dataclass
class LogLine:
    """Ready once `path` (a captured stdout/stderr file) has a line matching `pattern`."""

    path: Path
    pattern: str
    offset: int = 0  # only text written after this many bytes counts (logs append across starts)

    def describe(self) -> str:
        return f"a line matching /{self.pattern}/ in {self.path.name}"

    def reset(self) -> None:
        try:
            self.offset = self.path.stat().st_size
        except OSError:
            self.offset = 0

    async def probe(self) -> re.Match[str] | None:
        try:
            with self.path.open("rb") as f:
                f.seek(self.offset)
                text = f.read().decode(errors="replace")
        except OSError:
            return None
        return re.search(self.pattern, text, re.MULTILINE)


async def wait_until(
    condition: Readiness,
    timeout_s: float,
    still_alive: Callable[[], Awaitable[str | None]] | None = None,
) -> Any:
    """Poll `condition` until it holds or `timeout_s` passes; `still_alive` returns a reason
    string when the process has died (then waiting stops at once)."""
    deadline = time.monotonic() + timeout_s
    polls = 0
    max_polls = int(timeout_s / POLL_INTERVAL_S) + 2
    while polls < max_polls:
        polls += 1
        value = await condition.probe()
        if value is not None:
            return value
        if still_alive is not None:
            reason = await still_alive()
            if reason is not None:
                raise NotReady(f"while waiting for {condition.describe()}: {reason}")
        if time.monotonic() >= deadline:
            break
        await asyncio.sleep(POLL_INTERVAL_S)
    raise NotReady(f"{condition.describe()} not ready within {timeout_s:.1f}s")
