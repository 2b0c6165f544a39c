"""The HTTP side of sync protocol v1 (PROTOCOL.md section 4), recorded like the WS side.

Operations (changes, apply, the NDJSON snapshot stream) are recorded as invoke / completion in
the history; probes of the target's observable state (/status, /metrics, /debug/resources,
/health, /ready) are not operations: they return what they read for `Observations`.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from harness.client.recorder import Recorder
from harness.client.snapshot import SnapshotCut, SnapshotReader
from harness.history import OpName
from harness.model.capping import cap_http_changes


def http_base_from_ws(ws_url: str) -> str:
    """`ws://host:port/sync/ws` -> `http://host:port/sync`."""
    base = ws_url.removesuffix("/ws")
    if base.startswith("wss://"):
        return "https://" + base[len("wss://") :]
    return "http://" + base.removeprefix("ws://")


@dataclass(slots=True)
class ProbeResult:
    """What a probe read: the HTTP status (None when the request failed) and the body."""

    status: int | None
    body: Any
    error: str | None = None


class HttpApi:
    def __init__(
        self,
        base_url: str,
        recorder: Recorder | None = None,
        token: str | None = None,
        site_id: str | None = None,
        timeout_s: float = 10.0,
        chunk_timeout_s: float = 5.0,
        token_databases: tuple[str, ...] | None = None,
    ) -> None:
        self.token_databases = token_databases
        self.base_url = base_url.rstrip("/")
        self.rec = recorder
        self.token = token
        self.site_id = site_id
        self.chunk_timeout_s = chunk_timeout_s
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(timeout_s, read=chunk_timeout_s))

    async def aclose(self) -> None:
        await self._client.aclose()

    def _headers(self, token: str | None = None) -> dict[str, str]:
        headers: dict[str, str] = {}
        chosen = token if token is not None else self.token
        if chosen is not None:
            headers["Authorization"] = f"Bearer {chosen}"
        if self.site_id is not None:
            headers["X-Site-Id"] = self.site_id
        return headers

    def _recorder(self) -> Recorder:
        if self.rec is None:
            raise RuntimeError("operations need a recorder; probes do not")
        return self.rec

    def _scoped(self, value: dict[str, Any], token: str | None) -> dict[str, Any]:
        """Op values carry the databases the token may use, for tenant-isolation."""
        if token is None and self.token_databases is not None:
            return value | {"authorizedFor": list(self.token_databases)}
        return value

    # operations -------------------------------------------------------------------------------
    async def _json_op(
        self,
        f: str,
        method: str,
        path: str,
        value: dict[str, Any],
        body: Any = None,
        token: str | None = None,
    ) -> tuple[int | None, Any]:
        rec = self._recorder()
        op = rec.invoke(f, self._scoped(value, token))
        try:
            response = await self._client.request(
                method, self.base_url + path, headers=self._headers(token), json=body
            )
        except httpx.TimeoutException:
            rec.complete(op, "info", None, "timeout")
            return None, None
        except httpx.HTTPError as exc:
            rec.complete(op, "info" if method == "POST" else "fail", None, type(exc).__name__)
            return None, None
        try:
            parsed = response.json()
        except ValueError:
            parsed = {"raw": response.text[:500]}
        outcome = {"status": response.status_code, "body": parsed}
        if response.status_code == 200 and isinstance(parsed, dict) and parsed.get("ok") is True:
            if f == OpName.HTTP_GET_CHANGES:  # a large answer is kept as stubs (capping.py)
                outcome = cap_http_changes(outcome, rec.history.payload_cap, response.content)
            rec.complete(op, "ok", outcome)
        else:
            error = parsed.get("error") if isinstance(parsed, dict) else None
            code = error.get("code") if isinstance(error, dict) else None
            rec.complete(op, "fail", outcome, str(code or f"HTTP_{response.status_code}"))
        return response.status_code, parsed

    async def get_changes(
        self, database_id: str, since_hlc: str | None = None, token: str | None = None
    ) -> tuple[int | None, Any]:
        params = "" if since_hlc is None else "?" + httpx.QueryParams({"sinceHLC": since_hlc}).__str__()
        return await self._json_op(
            OpName.HTTP_GET_CHANGES,
            "GET",
            f"/{database_id}/changes{params}",
            {"databaseId": database_id, "sinceHLC": since_hlc},
            token=token,
        )

    async def apply(
        self, database_id: str, change_sets: list[dict[str, Any]], token: str | None = None
    ) -> tuple[int | None, Any]:
        return await self._json_op(
            OpName.HTTP_APPLY,
            "POST",
            f"/{database_id}/changes",
            {"databaseId": database_id, "changeSets": change_sets},
            body={"changes": change_sets},
            token=token,
        )

    async def snapshot(
        self,
        database_id: str,
        cut_after_chunks: int | None = None,
        token: str | None = None,
        cut: SnapshotCut | None = None,
    ) -> tuple[dict[str, Any], SnapshotReader]:
        """Stream `GET /:db/snapshot` line by line. The outcome's `ended` is complete (footer),
        error (an error line), eof (the body ended with neither: truncated), disconnected (the
        transport broke), stalled (no line within the chunk timeout), http_error (not 200), or
        cut (this client stopped reading after `cut_after_chunks`, or where `cut` says)."""
        rec = self._recorder()
        reader = SnapshotReader()
        value: dict[str, Any] = {"databaseId": database_id, "cutAfterChunks": cut_after_chunks}
        if cut is not None and cut.kind == "chunks":
            value["cutAfterChunks"] = cut.n  # recorded as a cut after chunks always was
        elif cut is not None:
            value["cut"] = cut.to_json()
        elif cut_after_chunks is not None:
            cut = SnapshotCut("chunks", cut_after_chunks)
        op = rec.invoke(OpName.HTTP_SNAPSHOT, self._scoped(value, token))
        try:
            outcome = await self._stream_snapshot(database_id, reader, cut, token)
        except asyncio.CancelledError:
            rec.complete(op, "info", reader.summary() | {"ended": "cancelled"}, "cancelled")
            raise
        summary = reader.summary() | outcome
        ended = outcome["ended"]
        if ended == "complete":
            rec.complete(op, "ok", summary)
        elif ended in ("error", "http_error"):
            rec.complete(op, "fail", summary, str(outcome.get("code") or ended))
        elif ended == "cut":
            rec.complete(op, "fail", summary, "cut_by_client")
        else:
            rec.complete(op, "info", summary, ended)
        return summary, reader

    async def _stream_snapshot(
        self, database_id: str, reader: SnapshotReader, cut: SnapshotCut | None, token: str | None
    ) -> dict[str, Any]:
        url = f"{self.base_url}/{database_id}/snapshot"
        try:
            async with self._client.stream("GET", url, headers=self._headers(token)) as response:
                if response.status_code != 200:
                    text = (await response.aread()).decode("utf-8", "replace")
                    code = None
                    try:
                        code = json.loads(text).get("error", {}).get("code")
                    except (ValueError, AttributeError):
                        code = None
                    return {"ended": "http_error", "status": response.status_code, "code": code}
                async for line in response.aiter_lines():
                    if not line.strip():
                        continue
                    try:
                        chunk = orjson.loads(line)
                    except orjson.JSONDecodeError:
                        reader.problems.append(f"line {reader.chunks + 1} is not JSON")
                        continue
                    if isinstance(chunk, dict) and "error" in chunk and "type" not in chunk:
                        return {
                            "ended": "error",
                            "status": 200,
                            "code": chunk.get("code"),
                            "message": chunk.get("error"),
                            "checkpoint": reader.checkpoint(),
                        }
                    stop = reader.take(chunk, cut)
                    if reader.complete:
                        return {"ended": "complete", "status": 200, "checkpoint": None}
                    if stop:
                        return {"ended": "cut", "status": 200, "checkpoint": reader.checkpoint()}
                return {"ended": "eof", "status": 200, "checkpoint": reader.checkpoint()}
        except httpx.TimeoutException:
            return {"ended": "stalled", "checkpoint": reader.checkpoint()}
        except httpx.HTTPError as exc:
            return {"ended": "disconnected", "error": type(exc).__name__, "checkpoint": reader.checkpoint()}

    # probes -----------------------------------------------------------------------------------
    async def probe(self, path: str, token: str | None = None, as_text: bool = False) -> ProbeResult:
        try:
            response = await self._client.get(self.base_url + path, headers=self._headers(token))
        except httpx.HTTPError as exc:
            return ProbeResult(None, None, type(exc).__name__)
        if as_text:
            return ProbeResult(response.status_code, response.text)
        try:
            return ProbeResult(response.status_code, response.json())
        except ValueError:
            return ProbeResult(response.status_code, response.text)

    async def status(self) -> ProbeResult:
        return await self.probe("/status")

    async def metrics(self) -> ProbeResult:
        return await self.probe("/metrics", as_text=True)

    async def debug_resources(self, admin_token: str | None) -> ProbeResult:
        return await self.probe("/debug/resources", token=admin_token)

    async def health(self) -> ProbeResult:
        return await self.probe("/health")

    async def ready(self) -> ProbeResult:
        return await self.probe("/ready")
