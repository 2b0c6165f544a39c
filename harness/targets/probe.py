"""`harness probe`: a short scripted exchange with a target, on a scratch database of its own,
that detects what a profile needs (capabilities, heartbeat interval, tombstone policy) and
drafts a commented profile to edit. What it cannot detect is written commented out, with why.

It uses the harness's own client, like a run does, and is bounded in time: every step has a
deadline, and the heartbeat wait (the only long one) runs beside the other steps.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import itertools
import random
import secrets
import statistics
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from harness.checks import capabilities as cap
from harness.client.sync_client import ClientConfig, SyncClient
from harness.history import History

STEP_TIMEOUT_S = 3.0
HEARTBEATS_WANTED = 3


class ProbeError(Exception):
    """The probe cannot run (a remote target without --allow-remote, an unreachable target)."""


@dataclass
class Finding:
    value: Any  # None: not detected
    how: str  # what showed it, or why it is not known


@dataclass
class ProbeReport:
    target: str
    database: str
    capabilities: dict[str, Finding] = field(default_factory=dict)
    heartbeat_interval_ms: Finding = field(default_factory=lambda: Finding(None, "not measured"))
    tombstone_policy: Finding = field(default_factory=lambda: Finding(None, "not tested"))
    notes: list[str] = field(default_factory=list)

    def profile_yaml(self, token: str | None, admin_token_env: str | None) -> str:
        """A commented profile; undetected keys are commented out with a note."""
        now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        lines = [
            f"# Target profile drafted by `harness probe --target {self.target}` on {now}",
            f"# (scratch database {self.database}). Check every value, and fill in the commented keys:",
            "# a bound that is neither here nor measured by a run makes its check say `unknown`.",
            "",
            "# Which databases each token may use: globs of the scenario's database names (before the",
            "# run's namespace prefix); '*' = every database.",
        ]
        if token is not None:
            lines += [
                "tokens:",
                f"  {_scalar(token)}: {{databases: '*'}}  # assumed: the probe only used it on its scratch database",
                f"token: {_scalar(token)}  # the token clients present (or token_env: NAME)",
            ]
        else:
            lines += ["# tokens: {T1: {databases: ['db*']}}  # the probe ran without a token"]
        if admin_token_env:
            lines.append(f"admin_token_env: {admin_token_env}  # the admin token is read from this variable")
        else:
            lines.append("# admin_token_env: SYNC_ADMIN_TOKEN  # /debug/resources needs an admin token")
        lines.append(_line("tombstone_policy", self.tombstone_policy, "revive | delete-wins"))
        lines.append(_line("heartbeat_interval_ms", self.heartbeat_interval_ms, "5000"))
        lines.append("# presence_interval_ms: 250  # not measured by the probe (PROTOCOL.md default 250)")
        lines.append(
            "# idle_store_timeout_ms: 300000  # not detectable in a few seconds: the server's idle-store timeout"
        )
        lines.append("capabilities:")
        for name in cap.ALL:
            finding = self.capabilities.get(name, Finding(None, "not tested"))
            lines.append("  " + _line(name, finding, "true | false"))
        return "\n".join(lines) + "\n"


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return f"{value:g}" if isinstance(value, float) else str(value)
    text = str(value)
    return text if text.replace("-", "").replace("_", "").isalnum() else "'" + text.replace("'", "''") + "'"


def _line(key: str, finding: Finding, placeholder: str) -> str:
    if finding.value is None:
        return f"# {key}: {placeholder}  # not detected: {finding.how}"
    return f"{key}: {_scalar(finding.value)}  # {finding.how}"


def is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def target_urls(target: str) -> tuple[str, str]:
    """(ws URL, http base) from http(s)://host:port/basePath or ws(s)://host:port/basePath/ws."""
    parts = urlsplit(target)
    path = parts.path.rstrip("/") or "/sync"
    if parts.scheme in ("ws", "wss"):
        path = path.removesuffix("/ws")
    secure = parts.scheme in ("https", "wss")
    host = parts.netloc
    return f"{'wss' if secure else 'ws'}://{host}{path}/ws", f"{'https' if secure else 'http'}://{host}{path}"


async def probe_target(
    target: str,
    token: str | None = None,
    admin_token: str | None = None,
    wait_s: float = 12.0,
    allow_remote: bool = False,
    database_prefix: str = "harness-probe",
) -> ProbeReport:
    """Probe `target` within about `wait_s` seconds (the heartbeat wait bounds it)."""
    if not target.startswith(("http://", "https://", "ws://", "wss://")):
        raise ProbeError(f"{target}: must start with http://, https://, ws:// or wss://")
    if not allow_remote and not is_loopback(target):
        raise ProbeError(f"{target} is not a loopback address; pass --allow-remote to probe it")
    ws_url, http_url = target_urls(target)
    database = f"{database_prefix}-{secrets.token_hex(6)}"  # a prefix a restricted token may use
    report = ProbeReport(target, database)
    history = History()
    started = time.monotonic()

    def client(name: str) -> SyncClient:
        config = ClientConfig(
            ws_url, database, token=token, http_url=http_url, request_timeout_s=STEP_TIMEOUT_S
        )
        return SyncClient(name, config, history, _rng())

    writer, listener = client("probe-writer"), client("probe-listener")
    try:
        await _http_capabilities(writer, admin_token, report)
        try:
            await asyncio.wait_for(writer.connect(), STEP_TIMEOUT_S)
        except Exception as exc:
            raise ProbeError(f"could not open a session on {ws_url}: {type(exc).__name__}: {exc}") from exc
        presence = await writer.wait_for_message(lambda m: m.get("type") == "presence", 1.0)
        report.capabilities[cap.PRESENCE] = Finding(
            presence is not None,
            "presence list after handshake_ack"
            if presence
            else "no presence list within 1 s of handshake_ack",
        )
        await asyncio.wait_for(listener.connect(), STEP_TIMEOUT_S)
        try:
            await _seq_and_policy(writer, listener, report)
        except Exception as exc:  # the answers so far stay; the rest is "not detected"
            report.notes.append(f"writing on the scratch database failed: {type(exc).__name__}: {exc}")
        await _invalid_payload(writer, report)
        await _heartbeats(writer, history, started + wait_s, report)
        notices = history.received("notice")
        report.capabilities[cap.NOTICE] = Finding(
            True if notices else None,
            "a notice was received" if notices else "notices come only with events (outage, shutdown)",
        )
        report.capabilities[cap.NOT_AUTHORIZED] = Finding(
            None, "needs a token refused on some database; the probe has one token"
        )
    finally:
        for c in (writer, listener):
            with contextlib.suppress(Exception):
                await c.aclose()
    return report


def _rng() -> random.Random:
    return random.Random(secrets.randbits(64))


async def _http_capabilities(c: SyncClient, admin_token: str | None, report: ProbeReport) -> None:
    api = c.http
    status = await api.status()
    if status.status is None:
        raise ProbeError(f"{api.base_url}/status: no answer ({status.error})")
    health, ready, metrics = await api.health(), await api.ready(), await api.metrics()
    caps = report.capabilities
    caps[cap.HEALTH] = Finding(health.status == 200, f"GET /health answered {health.status}")
    caps[cap.READY] = Finding(ready.status in (200, 503), f"GET /ready answered {ready.status}")
    is_prometheus = metrics.status == 200 and isinstance(metrics.body, str) and "# TYPE" in metrics.body
    caps[cap.METRICS] = Finding(is_prometheus, f"GET /metrics answered {metrics.status}")
    if admin_token is None:
        caps[cap.DEBUG_RESOURCES] = Finding(None, "needs the admin token (--admin-token-env)")
    else:
        res = await api.debug_resources(admin_token)
        ok = res.status == 200 and isinstance(res.body, dict)
        caps[cap.DEBUG_RESOURCES] = Finding(
            ok, f"GET /debug/resources with the admin token answered {res.status}"
        )


async def _seq_and_policy(writer: SyncClient, listener: SyncClient, report: ProbeReport) -> None:
    """Write a cell, delete its row, write the cell again with a larger HLC: applied means the
    target revives deleted rows, skipped or conflicting means delete wins."""
    pk = [1]
    first = await writer.apply([writer.builder().set("probe", pk, "v", "first").build()])
    push = await listener.wait_for_message(lambda m: m.get("type") == "push_changes", STEP_TIMEOUT_S)
    if push is None:
        report.capabilities[cap.SEQ] = Finding(None, "no push_changes reached a second session")
    else:
        has_seq = "seq" in push
        report.capabilities[cap.SEQ] = Finding(
            has_seq, f"push_changes {'with' if has_seq else 'without'} seq"
        )
    if int(first.get("applied") or 0) != 1:
        report.tombstone_policy = Finding(None, f"the first write was not applied: {first}")
        return
    deleted = await writer.apply([writer.builder().delete("probe", pk).build()])
    if int(deleted.get("applied") or 0) != 1:
        report.tombstone_policy = Finding(None, f"the delete was not applied: {deleted}")
        return
    again = await writer.apply([writer.builder().set("probe", pk, "v", "after delete").build()])
    applied = int(again.get("applied") or 0)
    refused = int(again.get("skipped") or 0) + int(again.get("conflicts") or 0)
    if applied == 1:
        report.tombstone_policy = Finding("revive", "a write with a larger HLC after a delete was applied")
    elif refused >= 1:
        report.tombstone_policy = Finding(
            "delete-wins", "a write with a larger HLC after a delete was refused"
        )
    else:
        report.tombstone_policy = Finding(None, f"unclear answer to a write after a delete: {again}")


async def _invalid_payload(c: SyncClient, report: ProbeReport) -> None:
    change_set = c.builder().set("probe", [2], "v", "x").build().to_wire()
    change_set["hlc"] = "not base64!"
    try:
        answer = await c.send_raw(
            {"type": "apply_changes", "changes": [change_set]}, "bad_input", "apply_changes", "apply_result"
        )
    except Exception as exc:
        report.capabilities[cap.INVALID_PAYLOAD] = Finding(
            None, f"no answer to a bad HLC: {type(exc).__name__}"
        )
        return
    code = answer.get("code") if answer.get("type") == "error" else answer.get("type")
    report.capabilities[cap.INVALID_PAYLOAD] = Finding(
        code == "INVALID_PAYLOAD", f"a change set with a bad base64 HLC got {code}"
    )


async def _heartbeats(c: SyncClient, history: History, deadline: float, report: ProbeReport) -> None:
    """Wait (bounded by `deadline`) for three heartbeats on the writer's session; the interval is
    the median gap between them."""

    def beats() -> list[float]:
        return [m.time for m in history.received("heartbeat") if m.process == c.client_id]

    if len(beats()) < HEARTBEATS_WANTED:
        await c.wait_for_message(
            lambda _: len(beats()) >= HEARTBEATS_WANTED, max(0.0, deadline - time.monotonic())
        )
    times = beats()
    waited = "the probe's wait"
    if not times:  # absence within a bounded wait is no proof: the interval may be longer
        report.capabilities[cap.HEARTBEAT] = Finding(
            None, f"no heartbeat within {waited}: none, or an interval longer than it (raise --wait-s)"
        )
        report.heartbeat_interval_ms = Finding(None, "the target sent no heartbeat within the wait")
        return
    report.capabilities[cap.HEARTBEAT] = Finding(True, f"{len(times)} heartbeats received")
    if len(times) < 2:
        report.heartbeat_interval_ms = Finding(
            None, f"one heartbeat within {waited}; raise --wait-s to measure it"
        )
        return
    gaps = [b - a for a, b in itertools.pairwise(times)]
    interval = round(statistics.median(gaps) * 1000.0)
    report.heartbeat_interval_ms = Finding(
        interval, f"measured: median of {len(gaps)} gaps between heartbeats"
    )
