"""`coordinator serve` and friends. Every option is also a COORDINATOR_* environment variable
and a key of the --config file (TOML, JSON or YAML)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from dataclasses import MISSING
from pathlib import Path
from typing import Any

from coordinator import __version__
from coordinator.clock import SystemClock
from coordinator.config import ENV_PREFIX, ConfigError, CoordinatorConfig, build_config, option_fields
from coordinator.ops.logging import EventLog, configure_logging


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="coordinator", description="Reference sync coordinator (protocol v1)."
    )
    parser.add_argument("--version", action="version", version=f"coordinator {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser(
        "serve",
        help="serve the sync protocol over WebSocket and HTTP",
        description="Serve sync protocol v1. Precedence: flags > COORDINATOR_* environment > --config file > "
        "defaults.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    commands.add_parser("bugs", help="list the catalogued bugs that `serve --bug ID` re-introduces")
    serve.add_argument(
        "--config", type=Path, help="config file (.toml, .json or .yaml) with option names as keys"
    )
    for f in option_fields():
        flag = "--" + f.name.replace("_", "-")
        env = ENV_PREFIX + f.name.upper()
        default = f.default_factory() if f.default is MISSING else f.default
        help_text = f"{f.metadata['help']} [env {env}]"
        kwargs: dict[str, Any] = {"dest": f.name, "default": None, "help": help_text}
        if isinstance(default, bool):
            kwargs["action"] = argparse.BooleanOptionalAction
        elif isinstance(default, list):
            kwargs["action"] = "append"
            flag = "--" + {"tokens": "token", "bugs": "bug"}.get(f.name, f.name.replace("_", "-"))
            kwargs["metavar"] = flag.lstrip("-").upper()
        else:
            kwargs["type"] = (
                type(default) if default is not None else (int if f.name == "failpoint_seed" else str)
            )
            if "choices" in f.metadata:
                kwargs["choices"] = f.metadata["choices"]
        serve.add_argument(flag, **kwargs)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    if args.command == "bugs":
        from coordinator.ops.bugs import describe_catalogue

        print(describe_catalogue())
        return 0
    return 2


def _serve(args: argparse.Namespace) -> int:
    cli = {f.name: getattr(args, f.name) for f in option_fields()}
    try:
        config = build_config(cli, config_file=args.config)
    except ConfigError as exc:
        print(f"coordinator: configuration error: {exc}", file=sys.stderr)
        return 2
    configure_logging(config.log_format, config.log_level)
    return run(config)


def run(config: CoordinatorConfig) -> int:
    from coordinator.service.coordinator import CoordinatorService
    from coordinator.transport.server import bind_socket, serve

    log = EventLog()
    try:
        sock = bind_socket(config.host, config.port)
    except OSError as exc:
        print(f"coordinator: {exc}", file=sys.stderr)
        return 2

    async def main_async() -> int:
        clock = SystemClock()
        service = CoordinatorService(config, clock)
        if config.s3_bucket:
            from coordinator.service.object_store import ObjectStoreBridge

            await ObjectStoreBridge(service, config, clock).start()
        return await serve(config, service, sock)

    loop_factory: Callable[[], asyncio.AbstractEventLoop] = asyncio.new_event_loop
    if config.event_loop == "uvloop":
        try:
            import uvloop

            loop_factory = uvloop.new_event_loop
        except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
            log.warning("uvloop_unavailable", fallback="asyncio")
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            return runner.run(main_async())
    except Exception as exc:
        log.error("fatal", exc_info=True, error=str(exc))
        return 1
    finally:
        sock.close()


if __name__ == "__main__":
    raise SystemExit(main())
