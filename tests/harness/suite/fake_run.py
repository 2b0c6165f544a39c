"""A stand-in for `harness run FILE ... --run-dir-file F` in the `suite --jobs` tests.

The scenario file is JSON: {"name", "wait_for" (a marker file to wait for, polled with a
deadline), "marker" (a file to create at start), "hang" (never end), "exit" (the exit code)}.
It writes its pid beside its marker, prints lines naming itself, and reports a run directory.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path


def main() -> int:
    args = sys.argv[1:]
    spec = json.loads(Path(args[1]).read_text())
    run_dir_file = Path(args[args.index("--run-dir-file") + 1])
    name = spec["name"]
    stopped = Path(spec["marker"] + ".terminated")

    def on_term(signum: int, frame: object) -> None:
        stopped.write_text("SIGTERM")
        raise SystemExit(143)

    signal.signal(signal.SIGTERM, on_term)
    Path(spec["marker"] + ".pid").write_text(str(__import__("os").getpid()))
    Path(spec["marker"]).write_text("started")
    print(f"{name}: started", flush=True)
    deadline = time.monotonic() + 20
    wait_for = spec.get("wait_for")
    while wait_for and not Path(wait_for).exists():
        if time.monotonic() > deadline:
            print(f"{name}: gave up waiting for {wait_for}", flush=True)
            return 3
        time.sleep(0.02)
    while spec.get("hang"):
        time.sleep(0.05)
    print(f"{name}: pass -> reports/{name}", flush=True)
    run_dir_file.write_text(f"reports/{name}\n")
    return int(spec.get("exit", 0))


if __name__ == "__main__":
    raise SystemExit(main())
