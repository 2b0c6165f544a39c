"""Brings up an environment, prints what it started, and waits: the Ctrl-C test interrupts it.

Prints one JSON line {"pids": [...], "dirs": [...], "ports": [...]} once everything is up.
With the argument `command` the server is a command target (Python's http.server) instead of
the bundled coordinator, with S3 as well.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys

from harness.env.command_target import CommandSpec
from harness.env.environment import COMMAND, Environment, EnvironmentConfig

HTTP_SERVER = (sys.executable, "-m", "http.server", "{port}", "--bind", "{host}", "--directory", "{data_dir}")


def config(kind: str) -> EnvironmentConfig:
    if kind == "command":
        spec = CommandSpec(argv=HTTP_SERVER, ready=("http", "/"), s3_env={"STORE": "{s3_endpoint}"})
        return EnvironmentConfig(target=COMMAND, command=spec, with_s3=True)
    return EnvironmentConfig()


async def main(kind: str) -> None:
    async with Environment(config(kind)) as env:
        assert env.coordinator is not None and env.toxiproxy is not None and env.moto is not None
        pids = [env.coordinator.process.pid, env.toxiproxy.process.pid, env.moto.process.pid]
        ports = [env.coordinator.port, env.toxiproxy.port, env.moto.port]
        ports += [p.port for p in env.proxies.values()]
        dirs = [str(env.run_dir), str(env.data_dir)]
        print(json.dumps({"pids": pids, "dirs": dirs, "ports": ports}), flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    # A shell starts background jobs with SIGINT ignored, and children inherit that: run from
    # `make test &` this script would never see the test's Ctrl-C. It wants Python's own handler.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "bundled"))
    except KeyboardInterrupt:
        raise SystemExit(130) from None
