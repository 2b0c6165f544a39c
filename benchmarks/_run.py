"""How a benchmark script runs: on uvloop, with Ctrl-C / SIGTERM cancelling `main` so its finally
blocks clean up (workers, coordinator, temporary dirs); its shared options."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"  # traffic only to this machine


def add_profiling_and_worker_args(parser: argparse.ArgumentParser) -> None:
    """The options both load scripts share: GC profiling switches and the hidden worker mode."""
    parser.add_argument(
        "--gc-only", action="store_true", help="with --profile: record only GC pauses (no cProfile slowdown)"
    )
    parser.add_argument(
        "--gc-freeze",
        action="store_true",
        help="with --profile, an experiment: gc.freeze() in the coordinator when the profiled phase starts",
    )
    # worker mode (internal)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--host", default=HOST, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--path", default="/sync/ws", help=argparse.SUPPRESS)


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    """uvloop when present (it is, with uvicorn[standard]): clients must cost as little as possible."""
    try:
        import uvloop

        return uvloop.new_event_loop
    except ImportError:  # pragma: no cover
        return asyncio.new_event_loop


def run_async(main: Callable[[], Coroutine[Any, Any, int]]) -> int:
    """Run on uvloop. Ctrl-C or SIGTERM cancels `main`, whose finally blocks clean up (workers,
    coordinator, temp dir); the exit code is then 130."""

    async def guarded() -> int:
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        return await main()

    try:
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            return runner.run(guarded())
    except (KeyboardInterrupt, asyncio.CancelledError):
        print(json.dumps({"interrupted": True}), file=sys.stderr)
        return 130
