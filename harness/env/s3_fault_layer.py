"""An HTTP reverse proxy in front of moto that misbehaves the way S3 does, and counts.

It runs in-process, on the harness's event loop, not as a process of its own: a fault is in
force the moment `add_rule()` returns (no IPC, no second readiness protocol), and checks read
the request counts as plain Python objects, timed on the run's clock. The cost: anything that
blocks the harness loop also delays S3 traffic, so the harness never calls boto3 on its loop
(tests run boto3 in a thread).

Faults, each selectable by S3 operation and key glob: outage (connection closed after the
request head, or 503, or, for the whole layer, connections refused), error rate with an HTTP
status and S3 error code (a real S3 XML error body), added latency, dropped connections (closed
before the request reaches moto, or after moto did it and before the answer goes back).

Forwarding is byte-transparent: the request head is passed on with `Connection: close`, then the
body bytes are piped as they come (chunked, aws-chunked, after `100 Continue`: moto answers the
`Expect` itself, and interim answers are passed back). Each client connection carries one
request: the final answer is rewritten to `Connection: close`, so every request is seen, counted
and judged on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import itertools
import random
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal
from xml.sax.saxutils import escape

from harness.env import resources
from harness.env.ports import LOCALHOST
from harness.env.process import Lifecycle
from harness.env.s3_operations import classify

Action = Literal["outage", "error", "latency", "drop"]
OutageMode = Literal["close", "http-503"]
DropWhen = Literal["before", "after"]
Outcome = Literal[
    "forwarded",
    "outage",
    "injected-error",
    "dropped-before",
    "dropped-after",
    "upstream-failed",
    "bad-request",
]

HEAD_LIMIT = 1 << 20
HEAD_TIMEOUT_S = 60.0
UPSTREAM_TIMEOUT_S = 120.0
DRAIN_LIMIT = 64 << 20
MAX_INTERIM_RESPONSES = 8
PIPE_CHUNK = 64 << 10
MAX_CHUNKS = 1 << 20  # reads of one body or answer (each read has a deadline): 64 GiB at most


@dataclass
class S3FaultRule:
    """One fault of the layer. `operations` None means every operation; `key_pattern` None means
    every request, else only requests on an object key matching the glob."""

    action: Action
    operations: frozenset[str] | None = None
    key_pattern: str | None = None
    rate: float = 1.0
    status: int = 503
    code: str = "ServiceUnavailable"
    message: str = "injected by the sync-chaos-harness S3 fault layer"
    latency_ms: float = 0.0
    outage_mode: OutageMode = "close"
    drop_when: DropWhen = "before"
    id: int = 0

    def matches(self, operation: str, key: str | None) -> bool:
        if self.operations is not None and operation not in self.operations:
            return False
        if self.key_pattern is not None:
            return key is not None and fnmatch.fnmatchcase(key, self.key_pattern)
        return True


@dataclass(frozen=True)
class S3RequestRecord:
    """One request seen by the layer, with what it did to it. `time` is on the layer's clock."""

    time: float
    method: str
    operation: str
    bucket: str | None
    key: str | None
    outcome: Outcome
    status: int | None = None
    added_latency_ms: float = 0.0


def s3_error_body(code: str, message: str, resource: str, request_id: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{escape(code)}</Code><Message>{escape(message)}</Message>"
        f"<Resource>{escape(resource)}</Resource><RequestId>{escape(request_id)}</RequestId></Error>"
    ).encode()


@dataclass
class _Head:
    method: str
    target: str
    version: str
    headers: list[tuple[str, str]] = field(default_factory=list)

    def get(self, name: str) -> str | None:
        lname = name.lower()
        for key, value in self.headers:
            if key.lower() == lname:
                return value
        return None

    def lower_map(self) -> dict[str, str]:
        return {k.lower(): v for k, v in self.headers}


def _parse_request_head(raw: bytes) -> _Head:
    lines = raw.decode("latin-1").split("\r\n")
    method, target, version = lines[0].split(" ", 2)
    headers = []
    for line in lines[1:]:
        if not line:
            continue
        name, _, value = line.partition(":")
        headers.append((name.strip(), value.strip()))
    return _Head(method, target, version, headers)


def _with_connection_close(raw_head: bytes) -> bytes:
    """The same head (request or response) with Connection/Keep-Alive replaced by close."""
    lines = raw_head.decode("latin-1").split("\r\n")
    kept = [
        line
        for line in lines[1:]
        if line and line.split(":", 1)[0].strip().lower() not in ("connection", "keep-alive")
    ]
    return ("\r\n".join([lines[0], *kept, "Connection: close"]) + "\r\n\r\n").encode("latin-1")


class S3FaultLayer(Lifecycle):
    """The reverse proxy: `async with S3FaultLayer(upstream_port) as layer: layer.url`."""

    def __init__(
        self,
        upstream_host: str,
        upstream_port: int,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        port: int = 0,
    ) -> None:
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self.rng = rng or random.Random(0)
        self.clock = clock
        self.port = port
        self.rules: list[S3FaultRule] = []
        self.requests: list[S3RequestRecord] = []
        self.refusing = False
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._rule_ids = itertools.count(1)
        self._request_ids = itertools.count(1)

    @property
    def url(self) -> str:
        return f"http://{LOCALHOST}:{self.port}"

    # lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        await self._listen()
        resources.register_port(self.port, "S3 fault layer")

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(
            self._on_connection, LOCALHOST, self.port, limit=HEAD_LIMIT, reuse_address=True
        )
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        handlers = list(self._handlers)
        for task in handlers:
            task.cancel()
        if handlers:
            await asyncio.wait(handlers, timeout=5.0)
        resources.unregister_port(self.port)

    # faults ---------------------------------------------------------------------------------
    def add_rule(self, rule: S3FaultRule) -> S3FaultRule:
        if not 0.0 <= rule.rate <= 1.0:
            raise ValueError(f"S3 fault rate must be within [0, 1], got {rule.rate}")
        rule.id = next(self._rule_ids)
        self.rules.append(rule)
        return rule

    def remove_rule(self, rule: S3FaultRule) -> None:
        self.rules = [r for r in self.rules if r.id != rule.id]

    def clear_rules(self) -> None:
        self.rules = []

    async def set_refusing(self, refusing: bool) -> None:
        """Stop listening (connections refused) or listen again on the same port."""
        if refusing == self.refusing:
            return
        if refusing:
            if self._server is not None:
                self._server.close()
                self._server = None
        else:
            await self._listen()
        self.refusing = refusing

    # counts ---------------------------------------------------------------------------------
    def counts(self) -> dict[str, dict[str, int]]:
        """Requests seen, by operation then outcome."""
        table: dict[str, Counter[str]] = {}
        for record in self.requests:
            table.setdefault(record.operation, Counter())[record.outcome] += 1
        return {op: dict(c) for op, c in table.items()}

    def count(
        self,
        operations: Iterable[str] | None = None,
        outcome: str | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> int:
        """How many requests match (operations / outcome / time window on the layer's clock)."""
        ops = set(operations) if operations is not None else None
        return sum(
            1
            for r in self.requests
            if (ops is None or r.operation in ops)
            and (outcome is None or r.outcome == outcome)
            and (since is None or r.time >= since)
            and (until is None or r.time <= until)
        )

    # the proxy ------------------------------------------------------------------------------
    def _on_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.ensure_future(self._serve(reader, writer))
        self._handlers.add(task)
        task.add_done_callback(self._handlers.discard)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                raw = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT_S)
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
                return
            try:
                head = _parse_request_head(raw)
            except ValueError:
                self._record("?", "Unknown", None, None, "bad-request", 400)
                await self._respond_error(writer, None, 400, "BadRequest", "malformed request head", "/")
                return
            await self._handle(head, raw, reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError):
            return
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 2.0)

    def _record(
        self,
        method: str,
        operation: str,
        bucket: str | None,
        key: str | None,
        outcome: Outcome,
        status: int | None,
        latency_ms: float = 0.0,
    ) -> None:
        self.requests.append(
            S3RequestRecord(self.clock(), method, operation, bucket, key, outcome, status, latency_ms)
        )

    async def _handle(
        self, head: _Head, raw: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        request = classify(head.method, head.target, head.lower_map())
        op, bucket, key = request.operation, request.bucket, request.key
        matching = [r for r in self.rules if r.matches(op, key)]

        delay_ms = sum(r.latency_ms for r in matching if r.action == "latency" and self._draw(r))
        if delay_ms > 0:
            await asyncio.sleep(delay_ms / 1000)  # the fault itself, not synchronisation

        for rule in matching:
            if rule.action == "outage":
                if rule.outage_mode == "close":
                    self._record(head.method, op, bucket, key, "outage", None, delay_ms)
                    writer.transport.abort()
                    return
                self._record(head.method, op, bucket, key, "outage", 503, delay_ms)
                await self._reject(head, reader, writer, 503, "ServiceUnavailable", rule.message)
                return
            if rule.action == "error" and self._draw(rule):
                self._record(head.method, op, bucket, key, "injected-error", rule.status, delay_ms)
                await self._reject(head, reader, writer, rule.status, rule.code, rule.message)
                return
            if rule.action == "drop" and rule.drop_when == "before" and self._draw(rule):
                self._record(head.method, op, bucket, key, "dropped-before", None, delay_ms)
                writer.transport.abort()
                return
        drop_after = any(r.action == "drop" and r.drop_when == "after" and self._draw(r) for r in matching)

        def record(status: int | None) -> None:
            # called before the client can see the answer, so counts never lag behind it
            outcome: Outcome = (
                "upstream-failed" if status is None else "dropped-after" if drop_after else "forwarded"
            )
            self._record(head.method, op, bucket, key, outcome, status, delay_ms)

        await self._forward(raw, reader, writer, deliver=not drop_after, record=record)
        if drop_after:
            writer.transport.abort()

    def _draw(self, rule: S3FaultRule) -> bool:
        return rule.rate >= 1.0 or self.rng.random() < rule.rate

    async def _reject(
        self,
        head: _Head,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        status: int,
        code: str,
        message: str,
    ) -> None:
        # With `Expect: 100-continue` the client waits for us: answer without reading the body,
        # as S3 does. Otherwise read the body away first, so the client sees our answer rather
        # than a reset caused by unread data.
        if (head.get("expect") or "").lower() != "100-continue":
            await _drain_body(reader, head)
        await self._respond_error(writer, head, status, code, message, head.target.split("?", 1)[0])

    async def _respond_error(
        self,
        writer: asyncio.StreamWriter,
        head: _Head | None,
        status: int,
        code: str,
        message: str,
        resource: str,
    ) -> None:
        request_id = f"harness-{next(self._request_ids)}"
        body = s3_error_body(code, message, resource, request_id)
        is_head = head is not None and head.method == "HEAD"
        reason = _REASONS.get(status, "Error")
        lines = [
            f"HTTP/1.1 {status} {reason}",
            "Content-Type: application/xml",
            f"Content-Length: {0 if is_head else len(body)}",
            f"x-amz-request-id: {request_id}",
            "Connection: close",
        ]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + (b"" if is_head else body))
        with contextlib.suppress(ConnectionError):
            await writer.drain()

    async def _forward(
        self,
        raw_head: bytes,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        deliver: bool,
        record: Callable[[int | None], None],
    ) -> None:
        """Send the request to moto and its answer back; `record` gets the final status (None if
        moto failed) before the client sees anything of the answer."""
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(self.upstream_host, self.upstream_port, limit=HEAD_LIMIT), 10.0
            )
        except (OSError, TimeoutError):
            record(None)
            await self._respond_error(writer, None, 502, "InternalError", "moto is unreachable", "/")
            return
        body_pipe = asyncio.ensure_future(_pipe(reader, up_writer))
        status: int | None = None
        try:
            up_writer.write(_with_connection_close(raw_head))
            await up_writer.drain()
            for _ in range(MAX_INTERIM_RESPONSES):
                response_head = await asyncio.wait_for(up_reader.readuntil(b"\r\n\r\n"), UPSTREAM_TIMEOUT_S)
                status = int(response_head.split(b" ", 2)[1])
                if 100 <= status < 200:
                    writer.write(response_head)  # e.g. 100 Continue: the client may send the body
                    await writer.drain()
                    continue
                record(status)
                if deliver:
                    writer.write(_with_connection_close(response_head))
                    await writer.drain()
                await _copy_until_eof(up_reader, writer if deliver else None)
                return
            record(None)
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError, ValueError, IndexError):
            if status is None:
                record(None)
        finally:
            body_pipe.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await body_pipe
            up_writer.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Client body bytes to moto, as they arrive, until the client stops sending."""
    with contextlib.suppress(ConnectionError, TimeoutError):
        for _ in range(MAX_CHUNKS):
            chunk = await asyncio.wait_for(reader.read(PIPE_CHUNK), UPSTREAM_TIMEOUT_S)
            if not chunk:
                return
            writer.write(chunk)
            await writer.drain()


async def _copy_until_eof(reader: asyncio.StreamReader, writer: asyncio.StreamWriter | None) -> None:
    for _ in range(MAX_CHUNKS):
        chunk = await asyncio.wait_for(reader.read(PIPE_CHUNK), UPSTREAM_TIMEOUT_S)
        if not chunk:
            return
        if writer is not None:
            writer.write(chunk)
            await writer.drain()


async def _drain_body(reader: asyncio.StreamReader, head: _Head) -> None:
    """Read and discard the request body per its framing (Content-Length or chunked)."""
    with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError, TimeoutError, ValueError):
        if "chunked" in (head.get("transfer-encoding") or "").lower():
            total = 0
            for _ in range(DRAIN_LIMIT):  # chunks; each read has a deadline
                if total >= DRAIN_LIMIT:
                    return
                size_line = await asyncio.wait_for(reader.readuntil(b"\r\n"), 10.0)
                size = int(size_line.split(b";", 1)[0].strip(), 16)
                if size == 0:
                    # trailers, up to the empty line
                    for _ in range(64):
                        if await asyncio.wait_for(reader.readuntil(b"\r\n"), 10.0) == b"\r\n":
                            break
                    return
                await asyncio.wait_for(reader.readexactly(size + 2), 10.0)
                total += size
            return
        length = int(head.get("content-length") or 0)
        remaining = min(length, DRAIN_LIMIT)
        for _ in range(MAX_CHUNKS):
            if remaining <= 0:
                return
            chunk = await asyncio.wait_for(reader.read(min(remaining, PIPE_CHUNK)), 10.0)
            if not chunk:
                return
            remaining -= len(chunk)


_REASONS = {
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    409: "Conflict",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}
