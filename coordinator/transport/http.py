"""HTTP routes of PROTOCOL.md section 4 (Starlette), plus the admin routes for failpoints.

A snapshot is streamed as NDJSON; a failure after the first byte ends the stream with one
`{"error", "code"}` line, never silently, so a client can tell a cut stream from a whole one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, ClassVar, TypeVar

import orjson
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from coordinator.ops.bugs import BugSwaps
from coordinator.ops.failpoints import FailpointConfigError
from coordinator.protocol import errors as E
from coordinator.protocol.changes import decode_change_sets
from coordinator.protocol.encoding import decode_hlc, decode_site_id
from coordinator.protocol.errors import InvalidPayload
from coordinator.service.auth import Identity, valid_database_id
from coordinator.service.coordinator import CoordinatorService, _SnapshotStream
from coordinator.service.store_manager import StoreUnavailable

T = TypeVar("T")


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


def _ok(data: Any) -> Response:
    return _json({"ok": True, "data": data})


def _error(status: int, code: str, message: str) -> Response:
    return _json({"ok": False, "error": {"code": code, "message": message}}, status)


_CUT_SHORT = "body cut short: the client closed the connection before sending all of it"


async def _body(request: Request) -> bytes | None:
    """The whole body, or None when the client left before sending all of it (it sent a
    Content-Length and closed early): that is its mistake, answered INVALID_BODY if anyone is
    still there to read it, never a framework traceback."""
    try:
        return await request.body()
    except ClientDisconnect:
        return None


class HttpApi:
    BUG_SWAPS: ClassVar[BugSwaps] = {
        "http-snapshot-truncated": ("_snapshot_failed", "_snapshot_failed_with_http_snapshot_truncated"),
    }

    def __init__(self, service: CoordinatorService) -> None:
        self.service = service
        service.bugs.apply(self, self.BUG_SWAPS)

    def app(self) -> Starlette:
        base = self.service.config.base_path
        guard = self._guarded
        routes = [
            Route(f"{base}/status", guard("status", self.status)),
            Route(f"{base}/metrics", guard("metrics", self.metrics)),
        ]
        if self.service.features.ops_routes:  # [ext]; without them these paths are unknown (404)
            routes += [
                Route(f"{base}/health", guard("health", self.health)),
                Route(f"{base}/ready", guard("ready", self.ready)),
                Route(f"{base}/debug/resources", guard("debug resources", self.debug_resources)),
            ]
        routes += [
            Route(f"{base}/admin/failpoints", guard("list failpoints", self.list_failpoints)),
            Route(
                f"{base}/admin/failpoints/{{name}}",
                guard("set failpoint", self.set_failpoint),
                methods=["PUT", "POST", "DELETE"],
            ),
            Route(f"{base}/{{database_id}}/changes", self.get_changes, methods=["GET"]),
            Route(f"{base}/{{database_id}}/changes", self.post_changes, methods=["POST"]),
            Route(f"{base}/{{database_id}}/snapshot", self.snapshot, methods=["GET"]),
        ]
        return Starlette(routes=routes)

    # plain routes -------------------------------------------------------------------------
    def _guarded(
        self, what: str, route: Callable[[Request], Awaitable[Response]]
    ) -> Callable[[Request], Awaitable[Response]]:
        """An operational route's unexpected failure becomes a JSON 500 INTERNAL_ERROR and one
        structured log line, never a framework traceback (the sync routes do this in `_served`)."""

        async def guarded(request: Request) -> Response:
            try:
                return await route(request)
            except Exception as exc:
                self.service.log.error("http_request_failed", route=what, error=repr(exc))
                return _error(500, E.INTERNAL_ERROR, f"{what} failed: {exc}")

        return guarded

    async def status(self, request: Request) -> Response:
        return _ok(self.service.status())

    async def metrics(self, request: Request) -> Response:
        return Response(self.service.metrics.render(), media_type="text/plain; version=0.0.4")

    async def health(self, request: Request) -> Response:
        return _ok({"alive": True})

    async def ready(self, request: Request) -> Response:
        reasons = self.service.not_ready_reasons()
        if reasons:
            return _error(503, E.NOT_READY, "; ".join(reasons))
        return _ok({"ready": True})

    def _admin(self, request: Request) -> Response | None:
        if self.service.config.admin_token is None:
            return _error(
                403, E.NOT_AUTHORIZED, "admin routes need the server to be started with --admin-token"
            )
        if not self.service.auth.is_admin(request.headers.get("authorization")):
            return _error(401, E.AUTH_FAILED, "admin token required")
        return None

    async def debug_resources(self, request: Request) -> Response:
        return self._admin(request) or _ok(self.service.resources())

    async def list_failpoints(self, request: Request) -> Response:
        denied = self._admin(request)
        if denied:
            return denied
        return _ok(
            {"enabled": self.service.failpoints.enabled, "failpoints": self.service.failpoints.describe()}
        )

    async def set_failpoint(self, request: Request) -> Response:
        denied = self._admin(request)
        if denied:
            return denied
        failpoints = self.service.failpoints
        if not failpoints.enabled:
            return _error(404, E.FAILPOINTS_DISABLED, "start the server with --enable-failpoints")
        name = request.path_params["name"]
        body: Any = {"mode": "off"}
        if request.method != "DELETE":
            raw = await _body(request)
            if raw is None:
                return _error(400, E.INVALID_BODY, _CUT_SHORT)
            try:
                body = orjson.loads(raw or b"{}")
            except orjson.JSONDecodeError:
                return _error(400, E.INVALID_BODY, "body must be JSON")
            if not isinstance(body, dict):
                return _error(400, E.INVALID_BODY, "body must be a JSON object")
        try:
            setting = failpoints.configure(name, body)
        except FailpointConfigError as exc:
            return _error(400, E.INVALID_BODY, str(exc))
        self.service.log.info("failpoint_set", name=name, mode=setting.mode)
        return _ok({name: setting.to_json()})

    # sync routes --------------------------------------------------------------------------
    def _authorize(self, request: Request, write: bool) -> tuple[str, Identity, bytes | None] | Response:
        database_id = request.path_params["database_id"]
        if not valid_database_id(database_id):
            return _error(400, E.INVALID_DATABASE_ID, "databaseId must match ^[A-Za-z0-9_:.-]{1,128}$")
        identity = self.service.auth.authenticate(request.headers.get("authorization"))
        if identity is None:
            return _error(401, E.AUTH_FAILED, "invalid or missing token")
        if not identity.may(database_id, write):
            action = "write" if write else "read"
            return _error(403, E.NOT_AUTHORIZED, f"token may not {action} database {database_id}")
        site_header = request.headers.get("x-site-id")
        site_id = None
        if site_header is not None:
            try:
                site_id = decode_site_id(site_header, "X-Site-Id")
            except InvalidPayload as exc:
                return _error(401, E.AUTH_FAILED, f"invalid X-Site-Id: {exc.message}")
        return database_id, identity, site_id

    async def _served(
        self, work: Awaitable[T], failure_code: str, what: str, database_id: str
    ) -> T | Response:
        """Run one request's work as in-flight (shutdown drains it), answering its failures with
        the route's own code: 503 STORE_UNAVAILABLE when the store cannot be opened, else 500."""
        self.service.request_started()
        try:
            return await work
        except StoreUnavailable as exc:
            if not self.service.features.specific_errors:  # plain v1: the route's own 500
                return _error(500, failure_code, f"{what} failed: database store unavailable: {exc}")
            return _error(503, E.STORE_UNAVAILABLE, f"database store unavailable: {exc}")
        except Exception as exc:
            self.service.log.error("http_request_failed", route=what, databaseId=database_id, error=str(exc))
            return _error(500, failure_code, f"{what} failed: {exc}")
        finally:
            self.service.request_finished()

    async def get_changes(self, request: Request) -> Response:
        auth = self._authorize(request, write=False)
        if isinstance(auth, Response):
            return auth
        database_id, _, site_id = auth
        since_raw = request.query_params.get("sinceHLC")
        try:
            since = decode_hlc(since_raw, "sinceHLC") if since_raw else None
        except InvalidPayload as exc:
            return _error(400, E.INVALID_BODY, exc.message)
        change_sets = await self._served(
            self.service.read_changes(database_id, since, site_id),
            E.GET_CHANGES_FAILED,
            "get changes",
            database_id,
        )
        if isinstance(change_sets, Response):
            return change_sets
        return _ok({"changes": change_sets})

    async def post_changes(self, request: Request) -> Response:
        auth = self._authorize(request, write=True)
        if isinstance(auth, Response):
            return auth
        database_id, _, site_id = auth
        raw = await _body(request)
        if raw is None:
            return _error(400, E.INVALID_BODY, _CUT_SHORT)
        if len(raw) > self.service.config.max_message_bytes:
            limit = self.service.config.max_message_bytes
            if not self.service.features.specific_errors:  # plain v1: a bad body like any other
                return _error(400, E.INVALID_BODY, f"body over {limit} bytes")
            return _error(413, E.MESSAGE_TOO_LARGE, f"body over {limit} bytes")
        try:
            body = orjson.loads(raw)
            if not isinstance(body, dict):
                raise InvalidPayload("body", "must be a JSON object")
            change_sets = decode_change_sets(body.get("changes"), "changes")
        except orjson.JSONDecodeError:
            return _error(400, E.INVALID_BODY, "body is not valid JSON")
        except InvalidPayload as exc:
            return _error(400, E.INVALID_BODY, exc.message)
        sender = site_id or (change_sets[0].site_id if change_sets else bytes(16))
        report = await self._served(
            self.service.apply(database_id, change_sets, sender), E.APPLY_CHANGES_FAILED, "apply", database_id
        )
        if isinstance(report, Response):
            return report
        o = report.outcome
        result: dict[str, Any] = {
            "applied": o.applied,
            "skipped": o.skipped,
            "conflicts": o.conflicts,
            "transactions": o.transactions,
        }
        if report.seq is not None:
            result["seq"] = report.seq
        return _ok(result)

    async def snapshot(self, request: Request) -> Response:
        auth = self._authorize(request, write=False)
        if isinstance(auth, Response):
            return auth
        database_id = auth[0]
        stream = self.service.snapshot(database_id)
        self.service.request_started()
        try:
            chunks = await stream.__aenter__()
            first = await anext(chunks)
        except StoreUnavailable as exc:
            await stream.__aexit__(None, None, None)
            self.service.request_finished()
            if not self.service.features.specific_errors:
                return _error(500, E.SNAPSHOT_ERROR, f"snapshot failed: database store unavailable: {exc}")
            return _error(503, E.STORE_UNAVAILABLE, f"database store unavailable: {exc}")
        except Exception as exc:
            await stream.__aexit__(None, None, None)
            self.service.request_finished()
            self.service.log.error("http_snapshot_failed", databaseId=database_id, error=str(exc))
            return _error(500, E.SNAPSHOT_ERROR, f"snapshot failed: {exc}")

        return StreamingResponse(
            self._snapshot_lines(database_id, stream, chunks, first), media_type="application/x-ndjson"
        )

    async def _snapshot_lines(
        self,
        database_id: str,
        stream: _SnapshotStream,
        chunks: AsyncIterator[dict[str, Any]],
        first: dict[str, Any],
    ) -> AsyncIterator[bytes]:
        metrics = self.service.metrics
        try:
            yield orjson.dumps(first) + b"\n"
            async for chunk in chunks:
                yield orjson.dumps(chunk) + b"\n"
                metrics.snapshot_chunks.inc(transport="http")
            metrics.snapshots.inc(transport="http", outcome="complete")
        except Exception as exc:  # after the first byte: say so in the stream itself
            last = self._snapshot_failed(database_id, exc)
            if last is not None:
                yield last
        finally:
            await stream.__aexit__(None, None, None)
            self.service.request_finished()

    def _snapshot_failed(self, database_id: str, exc: Exception) -> bytes | None:
        """A failure after the first byte: logged, counted, and the stream's last line says it."""
        self.service.metrics.snapshots.inc(transport="http", outcome="error")
        self.service.log.error("http_snapshot_failed", databaseId=database_id, error=str(exc))
        line: dict[str, Any] = {"error": f"snapshot failed: {exc}"}
        if self.service.features.specific_errors:  # [ext] `code`
            line["code"] = E.SNAPSHOT_ERROR
        return orjson.dumps(line) + b"\n"

    def _snapshot_failed_with_http_snapshot_truncated(self, database_id: str, exc: Exception) -> bytes | None:
        """BUG http-snapshot-truncated (BUGS.md): a failure after the first byte just ends the
        response (the headers are gone, so "nothing more to do"): the client holds a cut NDJSON
        stream with no error line, indistinguishable from a short snapshot until it counts."""
        return None
