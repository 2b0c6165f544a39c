"""What is checked before anything starts, so a mistake costs one line and exit 2, not a
traceback after Toxiproxy and the coordinator came up, and a run that cannot test anything is
refused instead of reported: the `--bug` ids (against `coordinator bugs`), the target (loopback
unless allowed; reachable; answers a v1 handshake on a scratch database of its own), and every
fault step's target (a `client:<id>` fault needs that client, on a proxy of its own)."""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
import subprocess

from harness.client.sync_client import ClientConfig, ServerError, SyncClient
from harness.env.coordinator_process import coordinator_command
from harness.history import History
from harness.scenario.model import Scenario
from harness.targets.probe import is_loopback, target_urls

HANDSHAKE_TIMEOUT_S = 5.0


class PreflightError(ValueError):
    """A run that would fail to start, or test nothing; the message says which input and why."""


def check_bugs(bugs: list[str]) -> None:
    """Every `--bug` id is one the bundled coordinator knows (asked through its CLI)."""
    if not bugs:
        return
    argv = [*coordinator_command(), "bugs"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        raise PreflightError(f"--bug: `{' '.join(argv)}` failed: {done.stderr.strip()[-200:]}")
    known = [line.split()[0] for line in done.stdout.splitlines() if line.strip()]
    unknown = [b for b in bugs if b not in known]
    if unknown:
        raise PreflightError(f"--bug {', '.join(unknown)}: not a catalogued bug; known: {', '.join(known)}")


def check_fault_targets(scenario: Scenario) -> None:
    """A fault on `client:<id>` acts on that client's own proxy: the client must exist and be
    `via: own_proxy`, else the fault would be accepted and do nothing."""
    own: set[str] = set()
    others: set[str] = set()
    for group in scenario.clients:
        ids = [f"{group.name}-{i}" for i in range(group.count)] if group.count > 1 else [group.name]
        (own if group.via == "own_proxy" else others).update(ids)
    for step in scenario.timeline:
        target = str((step.fault or {}).get("target", ""))
        if not target.startswith("client:"):
            continue
        client = target.removeprefix("client:")
        where = f"{scenario.path}:{step.line}: step {step.id}: target {target}"
        if client in others:
            raise PreflightError(
                f"{where}: client {client!r} has no proxy of its own (give it via: own_proxy)"
            )
        if client not in own:
            raise PreflightError(f"{where}: no client {client!r} in this scenario")


async def check_target(url: str, token: str | None, allow_remote: bool) -> None:
    """The target is allowed (loopback unless `allow_remote`), reachable and speaks v1: one
    handshake on a scratch database. A refusal of the handshake (a wrong token) is an answer
    in v1 too, but a run with it would test nothing, so it is refused here as well."""
    if not url.startswith(("http://", "https://", "ws://", "wss://")):
        raise PreflightError(f"--target {url}: must start with http://, https://, ws:// or wss://")
    if not allow_remote and not is_loopback(url):
        raise PreflightError(
            f"--target {url}: not a loopback address (127.0.0.0/8, ::1); pass --allow-remote to aim at it"
        )
    ws_url, http_url = target_urls(url)
    config = ClientConfig(
        ws_url,
        f"harness-preflight-{secrets.token_hex(4)}",
        token=token,
        http_url=http_url,
        request_timeout_s=HANDSHAKE_TIMEOUT_S,
        open_timeout_s=HANDSHAKE_TIMEOUT_S,
    )
    client = SyncClient("preflight", config, History(), random.Random())
    try:
        await asyncio.wait_for(client.connect(), HANDSHAKE_TIMEOUT_S * 2)
    except ServerError as exc:
        raise PreflightError(f"--target {url}: the handshake was refused: {exc}") from None
    except Exception as exc:
        raise PreflightError(
            f"--target {url}: no v1 session could be opened on {ws_url}: {type(exc).__name__}: {exc}"
        ) from None
    finally:
        with contextlib.suppress(Exception):
            await client.aclose()
