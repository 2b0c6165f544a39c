"""The instrumented WebSocket client of sync protocol v1.

One `SyncClient` is one simulated site: a site id, a database, a local replica, and at most one
WebSocket connection at a time (reconnects open a new one). Requests are answered in order
without correlation ids (PROTOCOL.md 3.1), so requests are serialized by a lock; a background
task receives everything and routes answers to the request in flight, and pushes, heartbeats,
presence, notices and errors to the history and the replica. Everything is recorded: operations
as invoke then ok / fail / info, each frame received or sent, each connection event.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from harness.client.backoff import Backoff
from harness.client.http_api import HttpApi, http_base_from_ws
from harness.client.presence import PresenceView
from harness.client.recorder import Recorder
from harness.client.snapshot import SnapshotCut, SnapshotReader
from harness.history import EventKind, History, OpName
from harness.model.changesets import ChangeSet, ChangeSetBuilder, HlcClock, max_hlc_text
from harness.model.codec import CodecError, encode_b64, encode_site_id
from harness.model.replica import Replica, change_cell

# Answers to requests; everything else is a server-initiated message.
_ANSWER_TYPES = frozenset(
    {"handshake_ack", "changes", "apply_result", "snapshot_chunk", "snapshot_complete", "pong", "error"}
)
# Handshake errors after which retrying with the same credentials cannot help.
FATAL_NO_RETRY = frozenset(
    {"AUTH_FAILED", "PROTOCOL_VERSION_MISMATCH", "MISSING_DATABASE_ID", "NOT_AUTHORIZED"}
)


class ConnectionLost(Exception):
    """The connection closed while a request waited for its answer."""


class RequestTimeout(Exception):
    """No answer within the request's deadline."""


class ServerError(Exception):
    """The server answered a request with `error`."""

    def __init__(self, payload: dict[str, Any]) -> None:
        super().__init__(f"{payload.get('code')}: {payload.get('message')}")
        self.code = str(payload.get("code"))
        self.fatal = bool(payload.get("fatal"))
        self.payload = payload


@dataclass(slots=True)
class ClientConfig:
    """What one client needs to reach its target; the URL is the WS endpoint
    (`ws://host:port{basePath}/ws`)."""

    ws_url: str
    database_id: str
    token: str | None = None
    protocol_version: int = 1
    request_timeout_s: float = 10.0
    open_timeout_s: float = 5.0
    chunk_timeout_s: float = 5.0  # longest wait between two chunks of a snapshot stream
    max_queue: int = 16  # frames the library buffers before it stops reading the socket
    # Shrink SO_RCVBUF: the TCP window stays small for the connection's life, so the client
    # stays slow even after it reads again (a permanently slow client, not a stalled one).
    recv_buffer_bytes: int | None = None
    max_pages: int = 10_000  # bound on get_changes paging
    backoff: Backoff = field(default_factory=Backoff)
    http_url: str | None = None
    # The databases the token may use (None: not known). Recorded with each handshake so that
    # tenant-isolation can tell an intrusion attempt from an ordinary session.
    token_databases: tuple[str, ...] | None = None  # defaults to the WS URL's http form without `/ws`


@dataclass(slots=True)
class _Connection:
    number: int
    ws: ClientConnection
    reader: asyncio.Task[None] | None = None
    closed_by_client: bool = False
    expected_seq: int | None = None
    answers: asyncio.Queue[dict[str, Any] | None] = field(default_factory=asyncio.Queue)
    authenticated: bool = False


class SyncClient:
    def __init__(
        self,
        client_id: str,
        config: ClientConfig,
        history: History,
        rng: random.Random,
        site_id: bytes | None = None,
        wall_ms: Callable[[], int] | None = None,
    ) -> None:
        self.client_id = client_id
        self.config = config
        self.rng = rng
        self.rec = Recorder(history, client_id)
        self.site_id = site_id if site_id is not None else rng.randbytes(16)
        self.site_id_text = encode_site_id(self.site_id)
        self.clock = HlcClock(self.site_id, wall_ms or (lambda: int(time.time() * 1000)))
        self.replica = Replica()
        self.presence = PresenceView()  # who is on the database, from `presence` or `presence_delta`
        self.uncertain: set[tuple[str, ...]] = set()  # own writes whose outcome is unknown
        self.handshake_ack: dict[str, Any] | None = None
        self._conn: _Connection | None = None
        self._conn_count = 0
        self._lock = asyncio.Lock()
        self._reading = asyncio.Event()
        self._reading.set()
        self._arrivals = asyncio.Condition()
        self._request_ids = 0
        self.rec.event(EventKind.CLOCK, wall_ms=time.time() * 1000.0, siteId=self.site_id_text)
        self.http = HttpApi(
            config.http_url or http_base_from_ws(config.ws_url),
            self.rec,
            token=config.token,
            site_id=self.site_id_text,
            timeout_s=config.request_timeout_s,
            chunk_timeout_s=config.chunk_timeout_s,
            token_databases=config.token_databases,
        )

    # connection lifecycle ---------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._conn is not None and self._conn.reader is not None and not self._conn.reader.done()

    @property
    def connection_number(self) -> int:
        return self._conn.number if self._conn else 0

    async def open(self) -> None:
        """Open the WebSocket (no handshake yet): churners use it to close mid-handshake."""
        await self.close()
        self._conn_count += 1
        number = self._conn_count
        self.rec.event(EventKind.CONNECTING, conn=number, url=self.config.ws_url)
        try:
            ws = await connect(
                self.config.ws_url,
                open_timeout=self.config.open_timeout_s,
                ping_interval=None,  # a paused reader must not be closed by its own keepalive
                max_queue=self.config.max_queue,
                max_size=None,
                compression=None,
            )
        except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as exc:
            self.rec.event(EventKind.CONNECT_FAILED, conn=number, error=f"{type(exc).__name__}: {exc}")
            raise ConnectionLost(str(exc)) from exc
        if self.config.recv_buffer_bytes is not None:
            sock = ws.transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.config.recv_buffer_bytes)
        conn = _Connection(number, ws)
        self._conn = conn
        self.presence.clear()
        self.rec.event(EventKind.OPEN, conn=number, url=self.config.ws_url)
        conn.reader = asyncio.create_task(self._receive(conn), name=f"{self.client_id}-recv-{number}")

    async def connect(self) -> dict[str, Any]:
        """Open a connection and handshake; returns the `handshake_ack`."""
        await self.open()
        return await self.handshake()

    async def connect_with_retry(self) -> dict[str, Any]:
        """`connect`, retried with exponential backoff and jitter until it works, the bounds are
        spent, or the server refuses for a reason retrying cannot fix."""
        started = time.monotonic()
        delays = self.config.backoff.delays(self.rng)
        attempt = 1
        while True:
            try:
                return await self.connect()
            except ServerError as exc:
                if exc.code in FATAL_NO_RETRY:
                    raise
                last: Exception = exc
            except (ConnectionLost, RequestTimeout) as exc:
                last = exc
            delay = next(delays, None)
            if delay is None:
                self.rec.event(
                    EventKind.RECONNECT_GAVE_UP,
                    attempts=attempt,
                    elapsed=time.monotonic() - started,
                    error=str(last),
                )
                raise ConnectionLost(f"gave up after {attempt} attempts: {last}")
            attempt += 1
            self.rec.event(EventKind.RECONNECT, attempt=attempt, delay=delay)
            await asyncio.sleep(delay)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the current connection (if any) and wait for its receive task to record it."""
        conn = self._conn
        if conn is None:
            return
        conn.closed_by_client = True
        self._reading.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(conn.ws.close(code, reason), timeout=self.config.open_timeout_s)
        if conn.reader is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(conn.reader), timeout=self.config.open_timeout_s)
            if not conn.reader.done():
                conn.reader.cancel()
                with contextlib.suppress(BaseException):
                    await conn.reader
        self._conn = None

    async def abort(self) -> None:
        """Drop the TCP connection without a close frame, as a crashed client would."""
        conn = self._conn
        if conn is None:
            return
        conn.closed_by_client = True
        self._reading.set()
        conn.ws.transport.abort()
        if conn.reader is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(conn.reader), timeout=self.config.open_timeout_s)
        self._conn = None

    # slow reading -----------------------------------------------------------------------------
    def pause_reading(self) -> None:
        """Stop taking frames off the socket: the library's queue, then TCP buffers, fill up."""
        self._reading.clear()
        self.rec.event(EventKind.READING_PAUSED, conn=self.connection_number)

    def resume_reading(self) -> None:
        self._reading.set()
        self.rec.event(EventKind.READING_RESUMED, conn=self.connection_number)

    # receiving --------------------------------------------------------------------------------
    async def _receive(self, conn: _Connection) -> None:
        ws = conn.ws
        try:
            while True:
                raw = await ws.recv()
                # A frame taken while reading is paused waits with it: the client has not read it.
                await self._reading.wait()
                self._on_frame(conn, raw)
                async with self._arrivals:
                    self._arrivals.notify_all()
        except ConnectionClosed:
            pass
        except asyncio.CancelledError:
            raise
        finally:
            rcvd, sent = ws.protocol.close_rcvd, ws.protocol.close_sent
            self.rec.event(
                EventKind.CLOSE,
                conn=conn.number,
                code=rcvd.code if rcvd is not None else None,
                reason=rcvd.reason if rcvd is not None else "",
                sent_code=sent.code if sent is not None else None,
                by_client=conn.closed_by_client,
            )
            conn.answers.put_nowait(None)
            with contextlib.suppress(RuntimeError):
                async with self._arrivals:
                    self._arrivals.notify_all()

    def _on_frame(self, conn: _Connection, raw: str | bytes) -> None:
        try:
            payload = orjson.loads(raw)
            if not isinstance(payload, dict):
                raise ValueError("a frame is a JSON object")
        except ValueError as exc:
            text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
            self.rec.event(EventKind.BAD_FRAME, conn=conn.number, error=str(exc), raw=text[:200])
            return
        self.rec.message("recv", payload, raw)
        kind = payload.get("type")
        if kind == "push_changes":
            self._on_push(conn, payload)
        elif kind in ("presence", "presence_delta"):
            self.presence.apply(payload)
        elif kind in _ANSWER_TYPES:
            conn.answers.put_nowait(payload)

    def _on_push(self, conn: _Connection, payload: dict[str, Any]) -> None:
        seq = payload.get("seq")
        if isinstance(seq, int) and not isinstance(seq, bool):
            expected = conn.expected_seq
            if expected is not None and seq < expected:
                self.rec.event(EventKind.SEQ_REPEAT, conn=conn.number, expected=expected, got=seq)
            elif expected is not None and seq > expected:
                self.rec.event(EventKind.SEQ_GAP, conn=conn.number, expected=expected, got=seq)
            conn.expected_seq = max(seq + 1, expected or 0)
        self._absorb(conn.number, payload)

    def _absorb(self, conn_number: int, payload: dict[str, Any]) -> None:
        """Apply received change sets to the replica; a malformed one is recorded, not fatal
        (the well-formed-messages check judges it; convergence sees what it cost)."""
        try:
            self.replica.apply_change_sets(payload.get("changeSets") or [])
        except (CodecError, KeyError, TypeError, AttributeError) as exc:
            error = f"{type(exc).__name__}: {exc}"
            self.rec.event(EventKind.BAD_FRAME, conn=conn_number, error=error, type=payload.get("type"))

    async def wait_for_message(
        self, predicate: Callable[[dict[str, Any]], bool], timeout_s: float
    ) -> dict[str, Any] | None:
        """Wait (bounded) until a received message satisfies `predicate`; returns it or None.
        Looks at messages received since the call, and at the ones already recorded."""
        history = self.rec.history
        seen = 0
        deadline = time.monotonic() + timeout_s
        async with self._arrivals:
            while True:
                mine = [m for m in history.messages[seen:] if m.process == self.client_id]
                seen = len(history.messages)
                for message in mine:
                    if message.direction == "recv" and predicate(message.payload):
                        return message.payload
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._arrivals.wait(), timeout=remaining)

    # requests ---------------------------------------------------------------------------------
    async def _send(self, conn: _Connection, payload: dict[str, Any]) -> None:
        shown = payload | {"token": "<redacted>"} if "token" in payload else payload
        text = orjson.dumps(payload).decode()
        self.rec.message("send", shown, None if shown is not payload else text)
        try:
            await conn.ws.send(text)
        except ConnectionClosed as exc:
            raise ConnectionLost(str(exc)) from exc

    async def _next_answer(self, conn: _Connection, timeout_s: float) -> dict[str, Any]:
        try:
            answer = await asyncio.wait_for(conn.answers.get(), timeout=timeout_s)
        except TimeoutError as exc:
            raise RequestTimeout(f"no answer within {timeout_s}s") from exc
        if answer is None:
            conn.answers.put_nowait(None)  # keep telling later waiters the connection is gone
            raise ConnectionLost("connection closed before the answer")
        return answer

    def _live(self) -> _Connection:
        if self._conn is None:
            raise ConnectionLost("not connected")
        return self._conn

    async def _exchange(
        self, payload: dict[str, Any], accept: Callable[[dict[str, Any]], bool]
    ) -> dict[str, Any]:
        """Send a request and wait for its answer (or an `error`); stale answers are skipped."""
        conn = self._live()
        while not conn.answers.empty():
            stale = conn.answers.get_nowait()
            if stale is None:
                conn.answers.put_nowait(None)
                raise ConnectionLost("connection closed")
        await self._send(conn, payload)
        deadline = time.monotonic() + self.config.request_timeout_s
        while True:
            answer = await self._next_answer(conn, max(0.0, deadline - time.monotonic()))
            if answer.get("type") == "error":
                raise ServerError(answer)
            if accept(answer):
                return answer

    async def _run_op(
        self,
        f: str,
        value: Any,
        body: Callable[[], Any],
        unknown_on_loss: bool,
        shown: Callable[[Any], Any] | None = None,
    ) -> Any:
        """Record `f` as invoke, run it, record its completion; re-raise what went wrong.
        `shown` turns the result into what is recorded (a capped copy of a large answer that is
        already in the history as a message); the caller still gets the result whole."""
        async with self._lock:
            op = self.rec.invoke(f, value)
            try:
                result = await body()
            except ServerError as exc:
                self.rec.complete(op, "fail", exc.payload, exc.code)
                raise
            except RequestTimeout:
                self.rec.complete(op, "info", None, "timeout")
                raise
            except ConnectionLost:
                self.rec.complete(op, "info" if unknown_on_loss else "fail", None, "connection_closed")
                raise
            except asyncio.CancelledError:
                self.rec.complete(op, "info", None, "cancelled")
                raise
            self.rec.complete(op, "ok", shown(result) if shown is not None else result)
            return result

    async def handshake(self, database_id: str | None = None, token: str | None = None) -> dict[str, Any]:
        msg: dict[str, Any] = {
            "type": "handshake",
            "databaseId": database_id if database_id is not None else self.config.database_id,
            "siteId": self.site_id_text,
            "protocolVersion": self.config.protocol_version,
        }
        chosen_token = token if token is not None else self.config.token
        if chosen_token is not None:
            msg["token"] = chosen_token

        async def body() -> dict[str, Any]:
            ack = await self._exchange(msg, lambda a: a.get("type") == "handshake_ack")
            conn = self._live()
            conn.authenticated = True
            self.handshake_ack = ack
            self.rec.event(
                EventKind.SESSION,
                conn=conn.number,
                databaseId=msg["databaseId"],
                siteId=self.site_id_text,
                connectionId=ack.get("connectionId"),
            )
            return ack

        public = {k: v for k, v in msg.items() if k != "token"}
        if self.config.token_databases is not None:
            public["authorizedFor"] = list(self.config.token_databases)
        return dict(await self._run_op(OpName.HANDSHAKE, public, body, unknown_on_loss=True))

    async def abandon_handshake(self, abort: bool = False) -> None:
        """Open, send the handshake, and leave before its answer (close, or drop the TCP
        connection when `abort`): the handshake-time close a churner provokes."""
        await self.open()
        conn = self._live()
        msg = {
            "type": "handshake",
            "databaseId": self.config.database_id,
            "siteId": self.site_id_text,
            "protocolVersion": self.config.protocol_version,
        } | ({"token": self.config.token} if self.config.token is not None else {})
        op = self.rec.invoke(OpName.HANDSHAKE, {k: v for k, v in msg.items() if k != "token"})
        with contextlib.suppress(ConnectionLost):
            await self._send(conn, msg)
        if abort:
            await self.abort()
        else:
            await self.close(1000, "left during handshake")
        self.rec.complete(op, "info", None, "abandoned")

    async def ping(self) -> None:
        await self._run_op(
            OpName.PING,
            None,
            lambda: self._exchange({"type": "ping"}, lambda a: a.get("type") == "pong"),
            unknown_on_loss=False,
        )

    async def get_changes(self, since_hlc: str | None = None) -> list[dict[str, Any]]:
        """One `get_changes` request: one batch of change sets (applied to the replica)."""
        msg: dict[str, Any] = {"type": "get_changes"}
        if since_hlc is not None:
            msg["sinceHLC"] = since_hlc

        async def body() -> dict[str, Any]:
            answer = await self._exchange(msg, lambda a: a.get("type") == "changes")
            self._absorb(self.connection_number, answer)
            return answer

        answer = await self._run_op(
            OpName.GET_CHANGES, {"sinceHLC": since_hlc}, body, unknown_on_loss=False, shown=self.rec.capped
        )
        return list(answer.get("changeSets") or [])

    async def pull(self, since_hlc: str | None = None) -> list[dict[str, Any]]:
        """Page through `get_changes` until an empty batch, asking each time from the newest HLC
        received. Bounded by `max_pages`."""
        collected: list[dict[str, Any]] = []
        since = since_hlc
        for _ in range(self.config.max_pages):
            batch = await self.get_changes(since)
            if not batch:
                return collected
            collected.extend(batch)
            newest = max_hlc_text(batch)
            if newest is None or newest == since:
                return collected
            since = newest
        raise RuntimeError(f"get_changes still returned data after {self.config.max_pages} pages")

    def next_request_id(self) -> str:
        self._request_ids += 1
        return f"{self.client_id}-{self._request_ids}"

    def builder(self) -> ChangeSetBuilder:
        return ChangeSetBuilder(self.clock)

    async def apply(self, change_sets: list[ChangeSet] | list[dict[str, Any]]) -> dict[str, Any]:
        """`apply_changes` with a fresh requestId. A write proven applied enters the replica; one
        whose outcome is unknown marks its cells uncertain (see `absorb_own_write`)."""
        wire = [cs.to_wire() if isinstance(cs, ChangeSet) else cs for cs in change_sets]
        request_id = self.next_request_id()
        msg = {"type": "apply_changes", "changes": wire, "requestId": request_id}

        async def body() -> dict[str, Any]:
            answer = await self._exchange(
                msg, lambda a: a.get("type") == "apply_result" and a.get("requestId") in (None, request_id)
            )
            return answer

        try:
            result = await self._run_op(
                OpName.APPLY, {"requestId": request_id, "changeSets": wire}, body, unknown_on_loss=True
            )
        except (RequestTimeout, ConnectionLost, ServerError, asyncio.CancelledError):
            # Unknown outcome, or a server failure that may have come after a partial commit.
            self._mark_uncertain(wire)
            raise
        self.absorb_own_write(wire, result)
        return dict(result)

    def absorb_own_write(self, wire: list[dict[str, Any]], result: dict[str, Any]) -> None:
        """Put a write into the replica only when the answer proves it applied (`applied`
        equal to the request's change count, PROTOCOL.md section 2). A refused write (applied
        0: skipped or lost last-writer-wins) stays out: the replica learns the winner by
        catch-up. A partly applied request does not say which part: its cells become uncertain."""
        count = sum(len(cs.get("changes") or []) for cs in wire)
        applied = result.get("applied")
        if not isinstance(applied, int) or isinstance(applied, bool) or not 0 <= applied <= count:
            self._mark_uncertain(wire)  # an answer that proves nothing
            return
        if applied == 0 and count > 0:
            return
        if applied < count:
            self._mark_uncertain(wire)
            return
        self.replica.apply_change_sets(wire)
        for change_set in wire:
            for change in change_set.get("changes") or []:
                self.uncertain.discard(change_cell(change))

    def _mark_uncertain(self, wire: list[dict[str, Any]]) -> None:
        for change_set in wire:
            for change in change_set.get("changes") or []:
                self.uncertain.add(change_cell(change))

    async def snapshot(
        self, cut_after_chunks: int | None = None, cut: SnapshotCut | None = None
    ) -> dict[str, Any]:
        """`get_snapshot` over WS. The outcome records how the stream ended: complete, error,
        stalled (no chunk within `chunk_timeout_s`), connection_closed, or cut (by this client
        after `cut_after_chunks` chunks, or where `cut` says, by closing the connection; the
        checkpoint is kept)."""
        return await self._snapshot_op(OpName.SNAPSHOT, {"type": "get_snapshot"}, None, cut_after_chunks, cut)

    async def resume_snapshot(
        self,
        checkpoint: dict[str, Any],
        cut_after_chunks: int | None = None,
        cut: SnapshotCut | None = None,
    ) -> dict[str, Any]:
        msg = {"type": "resume_snapshot", "checkpoint": checkpoint}
        return await self._snapshot_op(OpName.RESUME_SNAPSHOT, msg, checkpoint, cut_after_chunks, cut)

    async def _snapshot_op(
        self,
        f: str,
        msg: dict[str, Any],
        resumed_from: dict[str, Any] | None,
        cut_after_chunks: int | None,
        cut: SnapshotCut | None = None,
    ) -> dict[str, Any]:
        reader = SnapshotReader(resumed_from=resumed_from)
        value: dict[str, Any] = {"checkpoint": resumed_from, "cutAfterChunks": cut_after_chunks}
        if cut is not None and cut.kind == "chunks":
            value["cutAfterChunks"] = cut.n  # recorded as a cut after chunks always was
        elif cut is not None:
            value["cut"] = cut.to_json()
        elif cut_after_chunks is not None:
            cut = SnapshotCut("chunks", cut_after_chunks)
        async with self._lock:
            op = self.rec.invoke(f, value)
            try:
                outcome = await self._read_snapshot(msg, reader, cut)
            except asyncio.CancelledError:
                self.replica.merge(reader.replica)
                self.rec.complete(op, "info", reader.summary() | {"ended": "cancelled"}, "cancelled")
                raise
            summary = reader.summary() | outcome
            ended = outcome["ended"]
            # Chunks are true server state whatever the ending, so even a cut stream's part counts.
            self.replica.merge(reader.replica)
            if ended == "complete":
                self.rec.complete(op, "ok", summary)
            elif ended == "error":
                self.rec.complete(op, "fail", summary, str(outcome.get("code")))
            elif ended == "cut":
                self.rec.complete(op, "fail", summary, "cut_by_client")
            else:
                self.rec.complete(op, "info", summary, ended)
        if ended == "cut":
            await self.close(1000, "snapshot cut by client")
        return summary

    async def _read_snapshot(
        self, msg: dict[str, Any], reader: SnapshotReader, cut: SnapshotCut | None
    ) -> dict[str, Any]:
        try:
            conn = self._live()
            while not conn.answers.empty():
                conn.answers.get_nowait()
            await self._send(conn, msg)
            while True:
                answer = await self._next_answer(conn, self.config.chunk_timeout_s)
                kind = answer.get("type")
                if kind == "snapshot_chunk":
                    if reader.take(answer.get("chunk"), cut):
                        return {"ended": "cut", "checkpoint": reader.checkpoint()}
                elif kind == "snapshot_complete":
                    return {"ended": "complete", "checkpoint": None}
                elif kind == "error":
                    return {
                        "ended": "error",
                        "code": answer.get("code"),
                        "fatal": answer.get("fatal"),
                        "checkpoint": reader.checkpoint(),
                    }
        except RequestTimeout:
            return {"ended": "stalled", "checkpoint": reader.checkpoint()}
        except ConnectionLost:
            return {"ended": "connection_closed", "checkpoint": reader.checkpoint()}

    async def send_raw(
        self,
        frame: str | dict[str, Any],
        intent: str,
        request: str | None = None,
        expect: str | None = None,
    ) -> dict[str, Any]:
        """Send a frame as is and return the answer (an error, or the `expect`ed type). `intent`
        says what is wrong with it (not_json, unknown_type, bad_input) and `request` which
        request it imitates: error-specificity judges the answer against them."""
        text = frame if isinstance(frame, str) else orjson.dumps(frame).decode()
        shown: dict[str, Any] = frame if isinstance(frame, dict) else {"raw": frame[:200]}
        value = {"intent": intent, "request": request, "frame": shown}

        async def body() -> dict[str, Any]:
            conn = self._live()
            while not conn.answers.empty():
                conn.answers.get_nowait()
            self.rec.message("send", shown, text)
            try:
                await conn.ws.send(text)
            except ConnectionClosed as exc:
                raise ConnectionLost(str(exc)) from exc
            deadline = time.monotonic() + self.config.request_timeout_s
            while True:
                answer = await self._next_answer(conn, max(0.0, deadline - time.monotonic()))
                if answer.get("type") == "error" or expect is None or answer.get("type") == expect:
                    return answer

        return dict(await self._run_op(OpName.SEND_RAW, value, body, unknown_on_loss=True))

    # HTTP -------------------------------------------------------------------------------------
    async def http_snapshot(
        self, cut_after_chunks: int | None = None, cut: SnapshotCut | None = None
    ) -> dict[str, Any]:
        summary, reader = await self.http.snapshot(self.config.database_id, cut_after_chunks, cut=cut)
        self.replica.merge(reader.replica)
        return summary

    async def http_apply(self, change_sets: list[ChangeSet] | list[dict[str, Any]]) -> tuple[int | None, Any]:
        wire = [cs.to_wire() if isinstance(cs, ChangeSet) else cs for cs in change_sets]
        try:
            status, body = await self.http.apply(self.config.database_id, wire)
        except BaseException:
            # Cut short (a behaviour's time bound cancels it): the server may still apply it,
            # and never tells this site (own-site exclusion), so its cells are uncertain.
            self._mark_uncertain(wire)
            raise
        if status == 200 and isinstance(body, dict) and body.get("ok") is True:
            self.absorb_own_write(wire, body.get("data") or {})
        elif status is None or status >= 500:
            self._mark_uncertain(wire)
        return status, body

    async def http_get_changes(self, since_hlc: str | None = None) -> tuple[int | None, Any]:
        status, body = await self.http.get_changes(self.config.database_id, since_hlc)
        if status == 200 and isinstance(body, dict):
            self._absorb(
                0, {"type": "http_changes", "changeSets": (body.get("data") or {}).get("changes") or []}
            )
        return status, body

    async def aclose(self) -> None:
        """Close the connection and the HTTP client: the end of this client's life."""
        await self.close()
        await self.http.aclose()

    # replica ----------------------------------------------------------------------------------
    def record_replica(self, source: str = "client", caught_up: bool = True) -> None:
        """Write the replica into the history, for convergence and lost-write checks."""
        self.rec.event(
            EventKind.REPLICA,
            source=source,
            caught_up=caught_up,
            databaseId=self.config.database_id,
            siteId=self.site_id_text,
            uncertain=[list(k) for k in sorted(self.uncertain)],
            state=self.replica.to_json(),
        )

    async def catch_up(self, full: bool = True) -> None:
        """Pull what the replica may lack, then record it. `full` pulls from the beginning: a
        change with an older HLC can reach the server after newer ones (a lagging site clock),
        so pulling from the newest HLC held is fast but can miss it."""
        since = None if full or self.replica.max_hlc is None else encode_b64(self.replica.max_hlc)
        await self.pull(since)
        self.record_replica("client", caught_up=True)
