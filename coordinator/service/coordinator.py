"""CoordinatorService: sessions, handshake, apply / get changes, snapshots, broadcast, presence,
heartbeat and graceful shutdown. No sockets: transports call `connect`, `handle_text` and
`disconnect`, and drain each session's queue. Every handler answers its own failures with the
specific code of PROTOCOL.md 3.4; nothing known ends as a generic error.
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

import orjson

from coordinator.clock import Clock
from coordinator.config import CoordinatorConfig
from coordinator.ops.bugs import Bugs, BugSwaps
from coordinator.ops.failpoints import FailpointError, Failpoints
from coordinator.ops.logging import EventLog
from coordinator.ops.metrics import Metrics
from coordinator.protocol import errors as E
from coordinator.protocol import messages as M
from coordinator.protocol.changes import ChangeSet, decode_change_sets
from coordinator.protocol.encoding import decode_hlc, decode_site_id, encode_site_id
from coordinator.protocol.errors import InvalidPayload, ProtocolError
from coordinator.service.auth import Authenticator, valid_database_id
from coordinator.service.databases import DatabaseRegistry, DatabaseState, presence_entry
from coordinator.service.features import Features
from coordinator.service.session import RateLimiter, Session
from coordinator.service.snapshots import (
    Checkpoint,
    decode_checkpoint,
    snapshot_chunks,
    snapshot_chunks_with_snapshot_unserializable,
)
from coordinator.service.store_manager import StoreManager, StoreUnavailable
from coordinator.storage.sqlite_store import ApplyOutcome, DatabaseStore

Handler = Callable[[Session, dict[str, Any]], Awaitable[None]]
# Codes of PROTOCOL.md's [ext] a plain v1 server never sends: a request failing with one of them
# fails with the request's own base code instead.
_EXT_CODES = frozenset({E.INVALID_PAYLOAD, E.NOT_AUTHORIZED})


@dataclass(slots=True)
class ApplyReport:
    outcome: ApplyOutcome
    seq: int | None


class Persistence(Protocol):
    """What the service needs from an object-store persistence (S3); None when local only."""

    def record_batch(
        self,
        database_id: str,
        client_site_id: str,
        change_sets: list[dict[str, Any]],
        applied: int,
        skipped: int,
        conflicts: int,
    ) -> None: ...

    async def shutdown(self, deadline_s: float) -> None: ...

    def describe(self) -> dict[str, Any]: ...

    async def check_backend(self) -> str:
        """Ask the object store itself how it is ("ok" or "degraded"); only a buggy heartbeat
        (heartbeat-stalls-on-backend) waits on this."""
        ...


class CoordinatorService:
    # The bugs of BUGS.md this class can re-introduce: bug id -> (attribute, its variant).
    BUG_SWAPS: ClassVar[BugSwaps] = {
        "presence-wrong-timestamps": ("_presence_entry", "_presence_entry_with_presence_wrong_timestamps"),
        "presence-stale-leave": ("_record_leave", "_record_leave_with_presence_stale_leave"),
        "thundering-herd": ("_changes_to_broadcast", "_changes_to_broadcast_with_thundering_herd"),
        "silent-slow-client-drop": ("_drop_slow", "_drop_slow_with_silent_slow_client_drop"),
        "unbounded-send-queue": ("_bounded_queues", "_bounded_queues_with_unbounded_send_queue"),
        "heartbeat-stalls-on-backend": (
            "_before_heartbeats",
            "_before_heartbeats_with_heartbeat_stalls_on_backend",
        ),
        "shutdown-without-notice": ("_announce_shutdown", "_announce_shutdown_with_shutdown_without_notice"),
        "snapshot-unserializable": ("snapshot_chunks", "_snapshot_chunks_with_snapshot_unserializable"),
        "ws-snapshot-generic-error": ("_stream_snapshot", "_stream_snapshot_with_ws_snapshot_generic_error"),
        "generic-handler-errors": ("_dispatch", "_dispatch_with_generic_handler_errors"),
        "resume-snapshot-unhandled": ("_resume_snapshot", "_resume_snapshot_with_resume_snapshot_unhandled"),
        "broadcast-error-swallowed": ("_delivery_failed", "_delivery_failed_with_broadcast_error_swallowed"),
        "handshake-close-leak": ("_abandon_handshake", "_abandon_handshake_with_handshake_close_leak"),
        "handshake-error-no-unregister": ("_unregister", "_unregister_with_handshake_error_no_unregister"),
        "broadcast-seq-gap": ("_number_push", "_number_push_with_broadcast_seq_gap"),
        "apply-race": ("_store_apply", "_store_apply_with_apply_race"),
    }
    # Session queues are bounded and a broadcast never waits on a recipient (unbounded-send-queue
    # turns both off: see `connect` and `_deliver`).
    _bounded_queues: bool = True
    _bounded_queues_with_unbounded_send_queue: ClassVar[bool] = False
    snapshot_chunks = staticmethod(snapshot_chunks)
    _snapshot_chunks_with_snapshot_unserializable = staticmethod(snapshot_chunks_with_snapshot_unserializable)

    def __init__(
        self,
        config: CoordinatorConfig,
        clock: Clock,
        metrics: Metrics | None = None,
        failpoints: Failpoints | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.metrics = metrics or Metrics()
        self.failpoints = failpoints or Failpoints(
            config.enable_failpoints, clock, self.metrics, config.failpoint_seed
        )
        self.log = EventLog()
        self.bugs = Bugs(config.bugs)
        if self.bugs:
            self.log.warning("bugs_enabled", bugs=sorted(self.bugs.enabled))
        self.bugs.apply(self, self.BUG_SWAPS)  # before the handler table binds its methods
        self.features = Features.from_config(config)
        self.auth = Authenticator(
            config.tokens, config.admin_token, self.bugs, per_database=self.features.authorization
        )
        self.server_site_id = _load_server_site_id(config.data_path)
        self.stores = StoreManager(
            config.data_path / "stores",
            config.max_open_stores,
            config.idle_store_timeout_ms / 1000.0,
            clock,
            self.failpoints,
            self.metrics,
            bugs=self.bugs,
            tombstone_policy=config.tombstone_policy,
        )
        self.databases = DatabaseRegistry(self.bugs)
        self.sessions: dict[str, Session] = {}
        self.persistence: Persistence | None = None
        self.backend_state = "ok"
        self.readiness_problems: list[str] = []  # e.g. a bad S3 configuration, said on /ready
        self.accepting = False
        self.shutting_down = False
        self.started_at = clock.monotonic()
        self.inflight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._no_sessions = asyncio.Event()
        self._no_sessions.set()
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._handlers: dict[str, tuple[Handler, str]] = {
            "handshake": (self._handshake, E.AUTH_FAILED),
            "get_changes": (self._get_changes, E.GET_CHANGES_ERROR),
            "apply_changes": (self._apply_changes, E.APPLY_CHANGES_ERROR),
            "get_snapshot": (self._get_snapshot, E.SNAPSHOT_ERROR),
            "resume_snapshot": (self._resume_snapshot, E.SNAPSHOT_ERROR),
            "ping": (self._ping, E.MESSAGE_ERROR),
        }

    # lifecycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        self.stores.start_cleanup()
        if self.features.heartbeat:
            self._heartbeat_task = asyncio.create_task(self._heartbeat_loop(), name="heartbeat")
        self.accepting = True

    @property
    def ready(self) -> bool:
        return self.accepting and not self.shutting_down

    def not_ready_reasons(self) -> list[str]:
        reasons = []
        if self.shutting_down:
            reasons.append("shutting down")
        elif not self.accepting:
            reasons.append("starting")
        reasons.extend(self.readiness_problems)
        return reasons

    def refuse_reason(self) -> str | None:
        """Why a new connection would be refused now, or None."""
        if not self.accepting or self.shutting_down:
            return "shutting down" if self.shutting_down else "starting"
        if len(self.sessions) >= self.config.max_connections:
            return f"connection limit ({self.config.max_connections}) reached"
        return None

    async def shutdown(self) -> None:
        """Refuse new sessions, tell every session, let in-flight work finish up to the drain
        deadline, close sockets with 1001, then close stores."""
        if self.shutting_down:
            return
        self.shutting_down = True
        deadline = self.clock.monotonic() + self.config.drain_timeout_ms / 1000.0
        self.log.info("shutdown_started", sessions=len(self.sessions), inflight=self.inflight)
        if self._heartbeat_task is not None:
            self._heartbeat_task.cancel()
            await asyncio.gather(self._heartbeat_task, return_exceptions=True)
        for state in self.databases.all():
            state.cancel_presence()
        self._announce_shutdown()
        await self._wait_idle(deadline)
        for session in list(self.sessions.values()):
            session.close(E.CLOSE_GOING_AWAY, "server shutdown")
        if self.persistence is not None:
            await self.persistence.shutdown(deadline - self.clock.monotonic())
        await self.stores.shutdown()
        self.log.info("shutdown_complete", inflight=self.inflight)

    def _announce_shutdown(self) -> None:
        """Tell every session the server is going away, before any socket is closed (plain v1
        has no notices: the 1001 close says it alone)."""
        if not self.features.notices:
            return
        notice = M.notice(
            "SERVER_SHUTDOWN",
            "critical",
            "server",
            "server is shutting down; reconnect later",
            self.clock.now_ms(),
            {"retryAfterMs": self.config.shutdown_retry_after_ms},
        )
        for session in list(self.sessions.values()):
            session.offer(notice)

    def _announce_shutdown_with_shutdown_without_notice(self) -> None:
        """BUG shutdown-without-notice (BUGS.md): nobody is told; the sockets are simply closed
        (1001) a moment later, so clients cannot tell a shutdown from a crash."""

    async def all_sessions_gone(self) -> None:
        await self._no_sessions.wait()

    async def _wait_idle(self, deadline: float) -> None:
        while self.inflight > 0:
            remaining = deadline - self.clock.monotonic()
            if remaining <= 0:
                self.log.warning("drain_deadline_passed", inflight=self.inflight)
                return
            self._idle.clear()
            waiter = asyncio.ensure_future(self._idle.wait())
            sleeper = asyncio.ensure_future(self.clock.sleep(remaining))
            await asyncio.wait({waiter, sleeper}, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            sleeper.cancel()

    def request_started(self) -> None:
        """Count a request in flight: graceful shutdown waits for these (up to its deadline)."""
        self.inflight += 1

    def request_finished(self) -> None:
        self.inflight -= 1
        if self.inflight == 0:
            self._idle.set()

    # sessions -----------------------------------------------------------------------------
    def connect(self, remote: str) -> Session:
        now = self.clock.monotonic()
        session = Session(
            connection_id=uuid.uuid4().hex,
            remote=remote,
            max_messages=self.config.send_queue_messages if self._bounded_queues else sys.maxsize,
            max_bytes=self.config.send_queue_bytes if self._bounded_queues else sys.maxsize,
            limiter=RateLimiter(
                self.config.rate_limit_per_s,
                self.config.rate_limit_burst,
                float(self.config.rate_limit_burst),
                now,
            ),
        )
        self.sessions[session.connection_id] = session
        self._no_sessions.clear()
        self.metrics.connections.set(len(self.sessions))
        self.metrics.connections_total.inc()
        return session

    async def disconnect(self, session: Session) -> None:
        """The socket is gone: unregister first, then tell the others (a leave is announced only
        once the session is really removed), then release the store."""
        session.transport_gone()
        if not self._unregister(session):
            return
        if not self.sessions:
            self._no_sessions.set()
        self.metrics.connections.set(len(self.sessions))
        if session.database_id is not None:
            self._leave_database(session)
            self.stores.release(session.database_id)
            self.log.info(
                "session_end",
                sessionId=session.connection_id,
                databaseId=session.database_id,
                siteId=session.site_id_text,
            )

    def _unregister(self, session: Session) -> bool:
        """Forget the session; False if it was not registered (already gone)."""
        return self.sessions.pop(session.connection_id, None) is not None

    def _unregister_with_handshake_error_no_unregister(self, session: Session) -> bool:
        """BUG handshake-error-no-unregister (BUGS.md): a session the server itself closed before
        it authenticated (a refused handshake) is left for the handshake's error path to
        unregister, and that path never does: it stays registered and counted for good."""
        if not session.authenticated and session.close_code is not None:
            return False
        return self._unregister(session)

    def _leave_database(self, session: Session) -> None:
        """Remove the session from its database, then record the leave for those who remain (a
        leave is announced only once the session is gone)."""
        state = self.databases.get(session.database_id or "")
        entry = self._presence_entry(session) if state is not None else None
        remaining = self.databases.leave(session)
        self.metrics.sessions.set(sum(len(s.sessions) for s in self.databases.all()))
        if remaining is None:
            if state is not None:
                state.cancel_presence()  # nobody left to tell
            return
        assert entry is not None
        self._record_leave(remaining, session, entry)

    def _record_leave(self, state: DatabaseState, session: Session, entry: dict[str, Any]) -> None:
        """The session is gone: its leave goes into the next presence_delta."""
        state.left.append(session.connection_id)
        state.presence_events += 1
        self._presence_changed(state)

    def _record_leave_with_presence_stale_leave(
        self, state: DatabaseState, session: Session, entry: dict[str, Any]
    ) -> None:
        """BUG presence-stale-leave (BUGS.md): the leave is announced from the session's record as
        it was read before the removal, so the delta that goes out on the timer still lists the
        departed client (in `joined`) and never names it in `left`; the others keep seeing it."""
        state.joined.append(entry)
        state.presence_events += 1
        self._presence_changed(state)

    # dispatch -----------------------------------------------------------------------------
    async def handle_text(self, session: Session, text: str) -> None:
        session.last_seen_ms = self.clock.now_ms()
        specific = self.features.specific_errors
        if len(text.encode()) > self.config.max_message_bytes:
            if not specific:  # plain v1: what a WebSocket library's size limit does, a bare 1009
                session.close(E.CLOSE_TOO_LARGE, "message too large", discard_queue=True)
                return
            self._fail(
                session,
                ProtocolError(E.MESSAGE_TOO_LARGE, f"message over {self.config.max_message_bytes} bytes"),
            )
            return
        limited = self.features.rate_limit and not session.limiter.allow(self.clock.monotonic())
        if limited:
            self.metrics.rate_limited.inc()
            self._fail(session, ProtocolError(E.RATE_LIMITED, "too many messages; slow down", fatal=False))
            return
        try:
            message = orjson.loads(text)
        except orjson.JSONDecodeError:
            self._fail(session, ProtocolError(E.MESSAGE_ERROR, "frame is not valid JSON", fatal=False))
            return
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            problem = "a message is a JSON object with a string type"
            self._fail(
                session,
                InvalidPayload("type", problem)
                if specific
                else ProtocolError(E.MESSAGE_ERROR, f"type: {problem}", fatal=False),
            )
            return
        kind = message["type"]
        self.metrics.messages_received.inc(type=kind if kind in self._handlers else "unknown")
        entry = self._handlers.get(kind)
        if entry is None:
            self._fail(
                session, ProtocolError(E.UNKNOWN_MESSAGE, f"unknown message type {kind[:64]!r}", fatal=False)
            )
            return
        handler, failure_code = entry
        if kind != "handshake" and not session.authenticated:
            self._fail(session, ProtocolError(E.NOT_AUTHENTICATED, "handshake first", fatal=False))
            return
        self.request_started()
        try:
            await self._dispatch(handler, session, message)
        except ProtocolError as exc:
            if not specific and exc.code in _EXT_CODES:  # plain v1: the request's base code
                exc = ProtocolError(failure_code, exc.message, fatal=False)
            self._fail(session, exc)
        except StoreUnavailable as exc:
            code = E.STORE_UNAVAILABLE if specific else failure_code
            self._fail(session, ProtocolError(code, f"database store unavailable: {exc}", fatal=False))
        except (FailpointError, Exception) as exc:  # a server-side failure of this request
            self.log.error(
                "request_failed",
                exc_info=not isinstance(exc, FailpointError),
                sessionId=session.connection_id,
                type=kind,
                error=str(exc),
            )
            self._fail(session, ProtocolError(failure_code, f"{kind} failed: {exc}", fatal=False))
        finally:
            self.request_finished()

    async def _dispatch(self, handler: Handler, session: Session, message: dict[str, Any]) -> None:
        """Run one handler; its failures are mapped to specific codes by `handle_text`."""
        await handler(session, message)

    async def _dispatch_with_generic_handler_errors(
        self, handler: Handler, session: Session, message: dict[str, Any]
    ) -> None:
        """BUG generic-handler-errors (BUGS.md): whatever a handler raises (bad base64, a bad HLC,
        a wrong shape, a storage failure) reaches one catch-all that answers MESSAGE_ERROR: the
        client's mistakes and the server's faults look alike. Refusals that end the session
        (a failed handshake) still go out as they are."""
        try:
            await handler(session, message)
        except ProtocolError as exc:
            if exc.fatal:
                raise
            raise ProtocolError(E.MESSAGE_ERROR, f"message failed: {exc.message}", fatal=False) from exc
        except Exception as exc:
            raise ProtocolError(E.MESSAGE_ERROR, f"message failed: {exc}", fatal=False) from exc

    def _fail(self, session: Session, error: ProtocolError) -> None:
        self.metrics.errors.inc(code=error.code)
        frame = M.error(error.code, error.message, error.fatal)
        if error.fatal:
            self.log.info("session_error", sessionId=session.connection_id, code=error.code, fatal=True)
            session.close(error.close_code or E.CLOSE_POLICY, error.code, last_frame=frame)
        elif not session.offer(frame):
            self._drop_slow(session)

    # handlers -----------------------------------------------------------------------------
    async def _handshake(self, session: Session, message: dict[str, Any]) -> None:
        if session.authenticated:
            raise ProtocolError(E.ALREADY_AUTHENTICATED, "this session already completed its handshake")
        version = message.get("protocolVersion")
        if version != 1 or isinstance(version, bool):
            raise ProtocolError(E.PROTOCOL_VERSION_MISMATCH, f"protocolVersion must be 1, got {version!r}")
        database_id = message.get("databaseId")
        if database_id is None or database_id == "":
            raise ProtocolError(E.MISSING_DATABASE_ID, "databaseId is required")
        if not valid_database_id(database_id):
            raise ProtocolError(E.AUTH_FAILED, "invalid databaseId (must match ^[A-Za-z0-9_:.-]{1,128}$)")
        try:
            site_id = decode_site_id(message.get("siteId"), "siteId")
        except InvalidPayload as exc:
            raise ProtocolError(E.AUTH_FAILED, f"invalid siteId: {exc.message}") from None
        identity = self.auth.authenticate(message.get("token"))
        if identity is None:
            raise ProtocolError(E.AUTH_FAILED, "invalid or missing token")
        if not identity.may(database_id, write=False):
            raise ProtocolError(E.AUTH_FAILED, f"token is not authorized for database {database_id}")
        if self.shutting_down:
            raise ProtocolError(E.AUTH_FAILED, "server is shutting down")
        await self.stores.acquire(database_id)
        if session.transport_closed or session.closing:  # the socket went away while the store opened
            self._abandon_handshake(database_id)
            return
        now = self.clock.now_ms()
        session.database_id = database_id
        session.site_id = site_id
        session.site_id_text = encode_site_id(site_id)
        session.identity = identity
        session.joined_at_ms = now
        session.last_seen_ms = now
        state = self.databases.join(session)
        self.metrics.sessions.set(sum(len(s.sessions) for s in self.databases.all()))
        session.offer(
            M.handshake_ack(database_id, encode_site_id(self.server_site_id), session.connection_id)
        )
        self._announce_join(state, session)
        self.log.info(
            "session_start",
            sessionId=session.connection_id,
            databaseId=database_id,
            siteId=session.site_id_text,
            remote=session.remote,
        )

    def _abandon_handshake(self, database_id: str) -> None:
        """The socket closed while the handshake opened the store: give the reference back (the
        session never joined, so its disconnect has nothing to release)."""
        self.stores.release(database_id)

    def _abandon_handshake_with_handshake_close_leak(self, database_id: str) -> None:
        """BUG handshake-close-leak (BUGS.md): the handshake just stops; the reference it took is
        never given back (the session was not assigned the database, so nobody releases it), and
        the store can never be closed as idle."""

    async def _get_changes(self, session: Session, message: dict[str, Any]) -> None:
        assert session.database_id is not None
        since_raw = message.get("sinceHLC")
        since = decode_hlc(since_raw, "sinceHLC") if since_raw is not None else None
        change_sets = await self.read_changes(session.database_id, since, session.site_id)
        await session.put(await asyncio.to_thread(M.changes, change_sets))  # a large answer: off the loop

    async def read_changes(
        self, database_id: str, since: bytes | None, exclude_site: bytes | None
    ) -> list[dict[str, Any]]:
        store = await self.stores.acquire(database_id)
        try:
            await self.failpoints.hit("storage.read")
            return await store.changes_since_off_loop(since, exclude_site, self.config.batch_size)
        finally:
            self.stores.release(database_id)

    async def _apply_changes(self, session: Session, message: dict[str, Any]) -> None:
        assert session.database_id is not None and session.site_id is not None
        if session.identity is None or not session.identity.may(session.database_id, write=True):
            raise ProtocolError(
                E.NOT_AUTHORIZED, f"token may not write database {session.database_id}", fatal=False
            )
        change_sets = decode_change_sets(message.get("changes"), "changes")
        report = await self.apply(session.database_id, change_sets, session.site_id, sender=session)
        o = report.outcome
        await session.put(
            M.apply_result(
                message.get("requestId"), o.applied, o.skipped, o.conflicts, o.transactions, report.seq
            )
        )

    async def apply(
        self,
        database_id: str,
        change_sets: list[ChangeSet],
        sender_site: bytes,
        sender: Session | None = None,
    ) -> ApplyReport:
        """Apply, persist, and broadcast what was applied to every other session."""
        store = await self.stores.acquire(database_id)
        try:
            outcome = await self._store_apply(store, change_sets)
            self.metrics.storage_writes.inc()
            pushed = self._changes_to_broadcast(store, outcome)
        finally:
            self.stores.release(database_id)
        self.metrics.applies.inc()
        if outcome.applied == 0:
            return ApplyReport(outcome, None)
        self.metrics.changes_applied.inc(outcome.applied)
        if self.persistence is not None:
            self.persistence.record_batch(
                database_id,
                encode_site_id(sender_site),
                outcome.applied_sets,
                outcome.applied,
                outcome.skipped,
                outcome.conflicts,
            )
        seq = await self._publish(database_id, sender_site, sender, pushed)
        return ApplyReport(outcome, seq if self.features.seq else None)

    async def _store_apply(self, store: DatabaseStore, change_sets: list[ChangeSet]) -> ApplyOutcome:
        """Applies to one database are serialised (PROTOCOL.md section 2) without a lock:
        `store.apply` reads the cells' versions, compares and writes in one synchronous call
        (one SQLite transaction, no await inside), so on the event loop no other apply to the
        store can run between its read and its write. The only await (the failpoint) comes
        before the read."""
        await self.failpoints.hit("storage.write")
        return store.apply(change_sets, self.clock.now_ms())

    async def _store_apply_with_apply_race(
        self, store: DatabaseStore, change_sets: list[ChangeSet]
    ) -> ApplyOutcome:
        """BUG apply-race (BUGS.md, found in a real v1 server): the stored versions are read off
        the loop (an async storage read), then the apply awaits, and only then decides and writes
        on what it read. That await IS the bug's window: another apply to the same database that
        runs meanwhile writes a cell this one still thinks older, and this one overwrites it, so
        the smaller HLC can win. (The storage.write failpoint sits inside the window, so a delay
        there widens it; in the correct path it comes before the atomic apply.)"""
        known = await asyncio.to_thread(store.read_versions, change_sets)
        await self.failpoints.hit("storage.write")
        return store.apply(change_sets, self.clock.now_ms(), known=known)

    def _changes_to_broadcast(self, store: DatabaseStore, outcome: ApplyOutcome) -> list[dict[str, Any]]:
        """What to push: the changes this apply applied, as it returned them (no storage read)."""
        return outcome.applied_sets

    def _changes_to_broadcast_with_thundering_herd(
        self, store: DatabaseStore, outcome: ApplyOutcome
    ) -> list[dict[str, Any]]:
        """BUG thundering-herd (BUGS.md): every write re-reads the whole database from storage
        and picks what to push out of it, so each event costs a full load."""
        everything = store.changes_since(None, None, 1 << 62)
        applied = {cs["transactionId"]: {c["hlc"] for c in cs["changes"]} for cs in outcome.applied_sets}
        pushed = []
        for cs in everything:
            hlcs = applied.get(cs["transactionId"])
            if hlcs is not None:
                pushed.append(dict(cs, changes=[c for c in cs["changes"] if c["hlc"] in hlcs]))
        return pushed

    async def _publish(
        self, database_id: str, sender_site: bytes, sender: Session | None, change_sets: list[dict[str, Any]]
    ) -> int | None:
        """Broadcast what an apply applied; returns its sequence number. Waits on no recipient."""
        state = self.databases.get(database_id)
        if state is None:
            return None
        seq, frame = await self._number_push(state, change_sets)
        await self._deliver(state, sender_site, sender, frame, seq)
        return seq

    async def _number_push(self, state: DatabaseState, change_sets: list[dict[str, Any]]) -> tuple[int, str]:
        """Take the next sequence number and build its push in one step (nothing awaited between
        them): no gaps, no repeats."""
        seq = state.next_seq()
        return seq, M.push_changes(change_sets, seq if self.features.seq else None)

    async def _number_push_with_broadcast_seq_gap(
        self, state: DatabaseState, change_sets: list[dict[str, Any]]
    ) -> tuple[int, str]:
        """BUG broadcast-seq-gap (BUGS.md): the next number is read, the push is serialized off
        the event loop (an await), and only then is the counter stored: concurrent applies that
        overlap the await take the same number (a repeat) or overwrite each other's."""
        seq = state.seq + 1
        frame = await asyncio.to_thread(M.push_changes, change_sets, seq if self.features.seq else None)
        state.seq = seq
        return seq, frame

    async def _deliver(
        self, state: DatabaseState, sender_site: bytes, sender: Session | None, frame: str, seq: int
    ) -> None:
        """Offer one push to every session of the database but the sender's site, without
        waiting on any of them (nothing is awaited while queues are bounded). A failed send is
        handled by `_delivery_failed`; the rest still get the push."""
        self.metrics.broadcasts.inc()
        bounded = self._bounded_queues
        delivered = 0
        for session in list(state.sessions.values()):
            if session is sender or session.site_id == sender_site:
                continue
            try:
                self.failpoints.check("broadcast.send")
                if not bounded:  # unbounded-send-queue: await each recipient's send in turn
                    await session.put(frame)
                    await session.sent()
                elif not session.offer(frame):
                    self._drop_slow(session)
                    continue
                delivered += 1
            except Exception as exc:
                if not self._delivery_failed(state, session, seq, exc):
                    break
        self.metrics.broadcast_deliveries.inc(delivered)

    def _delivery_failed(self, state: DatabaseState, session: Session, seq: int, exc: Exception) -> bool:
        """A send failed: log, count, and drop that one session (told why); True: the broadcast
        goes on to the other recipients."""
        self.metrics.broadcast_errors.inc()
        self.log.error(
            "broadcast_send_failed",
            sessionId=session.connection_id,
            databaseId=state.database_id,
            seq=seq,
            error=str(exc),
        )
        self._drop(session, "DELIVERY_FAILED", f"a push could not be delivered: {exc}", E.CLOSE_INTERNAL)
        return True

    def _delivery_failed_with_broadcast_error_swallowed(
        self, state: DatabaseState, session: Session, seq: int, exc: Exception
    ) -> bool:
        """BUG broadcast-error-swallowed (BUGS.md): as if one try wrapped the whole loop with an
        empty except: the first failed send ends the broadcast, with no log and no metric, and
        every recipient after it silently misses the push."""
        return False

    async def _get_snapshot(self, session: Session, message: dict[str, Any]) -> None:
        await self._stream_snapshot(session, None)

    async def _resume_snapshot(self, session: Session, message: dict[str, Any]) -> None:
        await self._stream_snapshot(session, decode_checkpoint(message.get("checkpoint")))

    async def _resume_snapshot_with_resume_snapshot_unhandled(
        self, session: Session, message: dict[str, Any]
    ) -> None:
        """BUG resume-snapshot-unhandled (BUGS.md): the message type is declared but has no case
        of its own: it falls through to the unknown-message answer."""
        raise ProtocolError(E.UNKNOWN_MESSAGE, "unknown message type 'resume_snapshot'", fatal=False)

    async def _stream_snapshot(self, session: Session, checkpoint: Checkpoint | None) -> None:
        assert session.database_id is not None
        async with self.snapshot(session.database_id, checkpoint) as chunks:
            async for chunk in chunks:
                await session.put(M.snapshot_chunk(chunk))
                self.metrics.snapshot_chunks.inc(transport="ws")
        await session.put(M.SNAPSHOT_COMPLETE)
        self.metrics.snapshots.inc(transport="ws", outcome="complete")

    async def _stream_snapshot_with_ws_snapshot_generic_error(
        self, session: Session, checkpoint: Checkpoint | None
    ) -> None:
        """BUG ws-snapshot-generic-error (BUGS.md): nothing around the stream catches its
        failures; they reach the catch-all of message handling, which answers MESSAGE_ERROR, so
        the client cannot tell a failed snapshot from a frame it got wrong."""
        try:
            await CoordinatorService._stream_snapshot(self, session, checkpoint)
        except Exception as exc:
            raise ProtocolError(E.MESSAGE_ERROR, f"message failed: {exc}", fatal=False) from exc

    def snapshot(self, database_id: str, checkpoint: Checkpoint | None = None) -> _SnapshotStream:
        return _SnapshotStream(self, database_id, checkpoint)

    async def _ping(self, session: Session, message: dict[str, Any]) -> None:
        await session.put(M.PONG)

    # broadcast side channels ----------------------------------------------------------------
    def _announce_join(self, state: DatabaseState, session: Session) -> None:
        """The joiner gets the full list right after its handshake_ack; the others learn of it in
        the next presence_delta (PROTOCOL.md 3.2)."""
        if not self.features.presence:
            return
        full = M.presence_encoded(
            state.database_id, [self._encoded_entry(s) for s in state.sessions.values()]
        )
        if not session.offer(full):
            self._drop_slow(session)
        state.joined.append(self._presence_entry(session))
        state.presence_events += 1
        session.presence_mark = state.presence_events  # its list already holds every change so far
        self._presence_changed(state)

    def _presence_changed(self, state: DatabaseState) -> None:
        """Send the pending changes now if the database's last delta is at least an interval old,
        else once it is (one timer per database, whatever the number of changes)."""
        if not self.features.presence or state.delta_task is not None:
            return
        interval = self.config.presence_interval_ms / 1000.0
        wait = state.last_delta_at + interval - self.clock.monotonic()
        if wait <= 0:
            self._send_presence_delta(state)
        else:
            state.delta_task = asyncio.create_task(self._presence_delta_later(state, wait), name="presence")

    async def _presence_delta_later(self, state: DatabaseState, wait: float) -> None:
        await self.clock.sleep(wait)
        state.delta_task = None
        self._send_presence_delta(state)

    def _send_presence_delta(self, state: DatabaseState) -> None:
        """One frame, encoded once, offered to every session of the database but those whose full
        list, taken at their join, already holds every change it carries."""
        joined, left = state.take_presence_changes()
        latest = state.presence_events
        recipients = [s for s in state.sessions.values() if s.presence_mark < latest]
        if not recipients or not (joined or left):
            return
        state.last_delta_at = self.clock.monotonic()
        frame = M.presence_delta(state.database_id, joined, left)
        for session in recipients:
            if not session.offer(frame):
                self._drop_slow(session)

    def _encoded_entry(self, session: Session) -> bytes:
        """A session's entry as JSON, kept until its lastSeen moves: a joiner's full list joins N
        ready-made entries instead of building and encoding N dicts (N joins cost O(N²) bytes
        by the protocol, but not O(N²) Python work)."""
        if session.presence_json_seen != session.last_seen_ms:
            session.presence_json = orjson.dumps(self._presence_entry(session))
            session.presence_json_seen = session.last_seen_ms
        return session.presence_json

    def _presence_entry(self, session: Session) -> dict[str, Any]:
        """A session with the time it joined and the time of its last message."""
        return presence_entry(session)

    def _presence_entry_with_presence_wrong_timestamps(self, session: Session) -> dict[str, Any]:
        """BUG presence-wrong-timestamps (BUGS.md): `lastSeen` is the time the entry is built, and
        `joinedAt` the time the session's record last changed (its last message), not its join."""
        return dict(presence_entry(session), joinedAt=session.last_seen_ms, lastSeen=self.clock.now_ms())

    def _drop_slow(self, session: Session) -> None:
        if session.closing:
            return
        self.metrics.slow_client_drops.inc()
        self.log.warning(
            "slow_client_dropped",
            sessionId=session.connection_id,
            queued=len(session.queue),
            queuedBytes=session.queued_bytes,
        )
        self._drop(
            session,
            "SLOW_CLIENT",
            "outbound queue overflowed; closing",
            E.CLOSE_TRY_AGAIN_LATER,
            severity="warning",
        )

    def _drop_slow_with_silent_slow_client_drop(self, session: Session) -> None:
        """BUG silent-slow-client-drop (BUGS.md): the session whose queue is full is closed without
        a word: no SLOW_CLIENT notice, no log, no metric."""
        if not session.closing:
            session.close(E.CLOSE_NORMAL, "", discard_queue=True)

    def _drop(
        self, session: Session, code: str, message: str, close_code: int, severity: str = "error"
    ) -> None:
        if not self.features.notices:  # plain v1: the close code alone
            session.close(close_code, code, discard_queue=True)
            return
        notice = M.notice(code, severity, "hub", message, self.clock.now_ms())
        session.close(close_code, code, last_frame=notice, discard_queue=True)

    def notify_all(
        self, code: str, severity: str, component: str, message: str, data: dict[str, Any] | None = None
    ) -> None:
        if not self.features.notices:
            return
        frame = M.notice(code, severity, component, message, self.clock.now_ms(), data)
        for session in list(self.sessions.values()):
            if session.authenticated and not session.offer(frame):
                self._drop_slow(session)

    async def _heartbeat_loop(self) -> None:
        """Its own task, touching only memory: heartbeats go on whatever storage is doing. Rounds
        keep to a fixed schedule, so one late round (a long GC pause) does not delay the next."""
        interval = self.config.heartbeat_interval_ms / 1000.0
        next_round = self.clock.monotonic() + interval
        while True:
            await self.clock.sleep(max(0.0, next_round - self.clock.monotonic()))
            await self._before_heartbeats()
            self.send_heartbeats()
            next_round += interval
            if next_round < self.clock.monotonic():  # more than a whole interval late: skip ahead
                next_round = self.clock.monotonic() + interval

    async def _before_heartbeats(self) -> None:
        """Nothing: a round says the backend state the object-store bridge last reported."""

    async def _before_heartbeats_with_heartbeat_stalls_on_backend(self) -> None:
        """BUG heartbeat-stalls-on-backend (BUGS.md): each round first asks the object store how it
        is and waits for the answer, so while the store hangs no heartbeat goes out."""
        if self.persistence is not None:
            self.backend_state = await self.persistence.check_backend()

    def send_heartbeats(self) -> None:
        now = self.clock.now_ms()
        backend = self.backend_state
        for state in self.databases.all():
            frame = M.heartbeat(now, state.seq, len(state.sessions), backend)
            for session in list(state.sessions.values()):
                if session.offer(frame):
                    self.metrics.heartbeats.inc()
                else:
                    self._drop_slow(session)

    # observation ----------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        return {
            "openStores": self.stores.open_count,
            "connectedClients": len(self.sessions),
            "uptime": round(self.clock.monotonic() - self.started_at, 3),
        }

    def resources(self) -> dict[str, Any]:
        tasks = [t for t in asyncio.all_tasks() if not t.done()]
        return {
            "openStores": self.stores.describe(),
            "storeRefs": self.stores.total_refs,
            "sessions": len(self.sessions),
            "sessionQueues": [s.describe() for s in self.sessions.values()],
            "authenticatedSessions": sum(1 for s in self.sessions.values() if s.authenticated),
            "databaseStates": len(self.databases),
            "databases": {
                s.database_id: {"sessions": len(s.sessions), "seq": s.seq} for s in self.databases.all()
            },
            "backgroundTasks": self.stores.background_tasks
            + int(self._heartbeat_task is not None and not self._heartbeat_task.done()),
            "asyncioTasks": len(tasks),
            "inflight": self.inflight,
            "backend": self.backend_state,
            "objectStore": self.persistence.describe() if self.persistence is not None else None,
        }


class _SnapshotStream:
    """`async with service.snapshot(db) as chunks`: holds the store for the stream's life."""

    def __init__(self, service: CoordinatorService, database_id: str, checkpoint: Checkpoint | None) -> None:
        self._service = service
        self._database_id = database_id
        self._checkpoint = checkpoint
        self._store: DatabaseStore | None = None
        self._iter: AsyncIterator[dict[str, Any]] | None = None

    async def __aenter__(self) -> AsyncIterator[dict[str, Any]]:
        self._store = await self._service.stores.acquire(self._database_id)
        self._iter = self._service.snapshot_chunks(
            self._store, self._service.server_site_id, self._service.failpoints, self._checkpoint
        )
        return self._iter

    async def __aexit__(self, *exc: object) -> None:
        if self._iter is not None:
            await self._iter.aclose()  # type: ignore[attr-defined]
        if self._store is not None:
            self._service.stores.release(self._database_id)


def _load_server_site_id(data_dir: Path) -> bytes:
    """The server's site id survives restarts: it is kept beside the stores."""
    path = data_dir / "server-site-id"
    try:
        raw = bytes.fromhex(path.read_text().strip())
        if len(raw) == 16:
            return raw
    except (OSError, ValueError):
        pass
    raw = os.urandom(16)
    data_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(raw.hex())
    tmp.replace(path)
    return raw
