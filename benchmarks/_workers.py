"""Client worker processes: the driver sends one JSON command a line on a worker's stdin and
reads one JSON answer a line from its stdout; the worker side is the command loop."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import resource
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

import orjson

from benchmarks._run import REPO, run_async

PIPE_LIMIT = 256 * 1024 * 1024  # worker reports carry latency samples


def die_with_parent() -> None:
    """preexec_fn: the child gets SIGTERM if the benchmark dies, even by SIGKILL (Linux)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Worker:
    """A client process: commands go to its stdin and answers come from its stdout, one JSON
    object per line; it exits when its stdin closes."""

    def __init__(self, proc: asyncio.subprocess.Process, index: int) -> None:
        self.proc = proc
        self.index = index

    @classmethod
    async def spawn(cls, module: str, index: int, args: Sequence[str]) -> Worker:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            module,
            "--worker",
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            cwd=str(REPO),
            limit=PIPE_LIMIT,
            preexec_fn=die_with_parent,
        )
        return cls(proc, index)

    async def send(self, command: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(orjson.dumps(command) + b"\n")
        await self.proc.stdin.drain()

    async def receive(self, timeout_s: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), timeout_s)
        if not line:
            raise RuntimeError(f"worker {self.index} exited (code {self.proc.returncode})")
        answer: dict[str, Any] = orjson.loads(line)
        if answer.get("error"):
            raise RuntimeError(f"worker {self.index}: {answer['error']}")
        return answer

    async def ask(self, command: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        await self.send(command)
        return await self.receive(timeout_s)

    async def stop(self, timeout_s: float = 10.0) -> None:
        if self.proc.returncode is not None:
            return
        if self.proc.stdin is not None:
            with contextlib.suppress(Exception):
                self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), timeout_s)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()


async def ask_all(
    workers: Sequence[Worker], command: dict[str, Any], timeout_s: float
) -> list[dict[str, Any]]:
    return list(await asyncio.gather(*(w.ask(command, timeout_s) for w in workers)))


async def stop_all(workers: Sequence[Worker]) -> None:
    await asyncio.gather(*(w.stop() for w in workers), return_exceptions=True)


def split(total: int, parts: int) -> list[int]:
    """`total` spread over `parts` as evenly as possible."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def raise_nofile() -> int:
    """Soft RLIMIT_NOFILE up to the hard limit: a worker holds thousands of sockets."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return hard
    return soft


async def stdin_lines() -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=PIPE_LIMIT)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


def reply(answer: dict[str, Any]) -> None:
    sys.stdout.buffer.write(orjson.dumps(answer) + b"\n")
    sys.stdout.buffer.flush()


async def serve_commands(handlers: dict[str, Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]]) -> None:
    """The worker's command loop: one answer per command, until stdin closes or `quit`."""
    reader = await stdin_lines()
    while True:
        line = await reader.readline()
        if not line:
            return
        command = orjson.loads(line)
        name = command.get("cmd")
        if name == "quit":
            return
        handler = handlers.get(name)
        if handler is None:
            reply({"error": f"unknown command {name!r}"})
            continue
        try:
            reply(await handler(command))
        except Exception as exc:
            reply({"error": f"{type(exc).__name__}: {exc}"})


def worker_or_driver(
    is_worker: bool,
    worker: Callable[[], Coroutine[Any, Any, None]],
    driver: Callable[[], Coroutine[Any, Any, int]],
) -> int:
    """The one entry point of a benchmark script: run as a client worker (started by the driver,
    answering its commands) or as the driver. A worker that fails tells the driver why instead
    of dying silently."""
    if not is_worker:
        return run_async(driver)

    async def work() -> int:
        try:
            await worker()
        except Exception as exc:
            reply({"error": f"{type(exc).__name__}: {exc}"})
            return 1
        return 0

    return run_async(work)
