"""Client behaviours the scenario runner instantiates: small coroutines over a `SyncClient`,
each bounded in count and in time, stopping by itself, drawing every random choice from the
`random.Random` it is given (one seed replays the run).

Every behaviour records `behaviour_start` / `behaviour_end` events, survives the connection
dropping under it (reconnecting with backoff), and, where it keeps a replica, ends by
catching up and recording the replica for the convergence checks.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

from harness.client.snapshot import SnapshotCut
from harness.client.sync_client import (
    ConnectionLost,
    RequestTimeout,
    ServerError,
    SyncClient,
)
from harness.history import EventKind
from harness.model.changesets import Change, ChangeSet, max_hlc_text
from harness.model.codec import HLC, encode_b64

_RECOVERABLE = (ConnectionLost, RequestTimeout, ServerError)


class NothingToDo(Exception):
    """The behaviour cannot do what it is for against this target (e.g. an intruder whose token
    is valid everywhere): it ends at once, saying why, instead of pretending to have tried."""


@dataclass(kw_only=True)
class Behaviour(ABC):
    """Base: `duration_s` bounds the whole run of the behaviour; subclasses bound their loops
    by count as well."""

    name: ClassVar[str] = "behaviour"
    writes: ClassVar[bool] = False  # makes valid writes: the run is judged by writes-accepted too
    client: SyncClient
    rng: random.Random
    duration_s: float = 30.0
    final_catch_up: bool = True
    _deadline: float = field(default=0.0, init=False)

    def params(self) -> dict[str, Any]:
        skip = {"client", "rng"}
        return {k: v for k, v in vars(self).items() if k not in skip and not k.startswith("_")}

    def time_left(self) -> float:
        return self._deadline - time.monotonic()

    async def run(self) -> str:
        """Run to completion or to the time bound; returns why it ended."""
        self._deadline = time.monotonic() + self.duration_s
        self.client.rec.event(EventKind.BEHAVIOUR_START, behaviour=self.name, params=self.params())
        reason = "done"
        try:
            async with asyncio.timeout(self.duration_s):
                await self.body()
        except TimeoutError:
            reason = "time bound"
        except NothingToDo as exc:
            reason = f"nothing to do: {exc}"
        except _RECOVERABLE as exc:
            reason = f"gave up: {exc}"
        try:
            if self.final_catch_up:
                await self.finish()
        except _RECOVERABLE as exc:
            reason += f"; final catch-up failed: {exc}"
        finally:
            with contextlib.suppress(Exception):
                await self.client.close()
            self.client.rec.event(EventKind.BEHAVIOUR_END, behaviour=self.name, reason=reason)
        return reason

    @abstractmethod
    async def body(self) -> None:
        """What the behaviour does; `run` bounds it in time and records it."""

    async def finish(self) -> None:
        async with asyncio.timeout(max(5.0, self.client.config.request_timeout_s * 2)):
            await self.ensure_connected()
            await self.client.catch_up()

    async def ensure_connected(self) -> None:
        if not self.client.connected:
            await self.client.connect_with_retry()

    async def pause(self, seconds: float) -> None:
        """Wait, but never past the behaviour's deadline (pacing, not synchronisation)."""
        await asyncio.sleep(max(0.0, min(seconds, self.time_left())))


@dataclass(kw_only=True)
class Writer(Behaviour):
    """Applies `count` change sets, one every `interval_s`, over WS (or HTTP for `http_share`
    of them). A write whose outcome is unknown is applied again after reconnecting (applying a
    change set twice changes nothing), so that its outcome becomes known."""

    name: ClassVar[str] = "writer"
    writes: ClassVar[bool] = True
    count: int = 50
    interval_s: float = 0.05
    table: str = "items"
    keys: int = 20
    columns: tuple[str, ...] = ("name", "qty", "blob")
    changes_per_set: int = 2
    delete_share: float = 0.05
    http_share: float = 0.0
    value_bytes: int = 0  # pad text values to this size (load for slow-reader scenarios)

    def _value(self, column: str) -> Any:
        roll = self.rng.random()
        if column == "blob":
            return self.rng.randbytes(self.rng.randint(0, 8))
        if column == "qty":
            return self.rng.randint(-(2**62), 2**62) if roll < 0.2 else self.rng.randint(0, 1000)
        text = f"v{self.rng.randint(0, 10**6)}"
        return text.ljust(self.value_bytes, "x")

    def _change_set(self) -> dict[str, Any]:
        builder = self.client.builder()
        for _ in range(self.changes_per_set):
            pk = [self.rng.randrange(self.keys)]
            if self.rng.random() < self.delete_share:
                builder.delete(self.table, pk)
            else:
                column = self.rng.choice(self.columns)
                builder.set(self.table, pk, column, self._value(column))
        return builder.build().to_wire()

    async def body(self) -> None:
        if self.http_share < 1.0:  # a writer that only uses HTTP holds no session while it writes
            await self.client.connect_with_retry()
        for _ in range(self.count):
            change_set = self._change_set()
            await self._write(change_set)
            await self.pause(self.interval_s)

    async def _write(self, change_set: dict[str, Any], attempts: int = 3) -> None:
        for _ in range(attempts):
            if self.rng.random() < self.http_share:
                status, _ = await self.client.http_apply([change_set])
                if status is not None and status < 500:
                    return
            else:
                try:
                    await self.ensure_connected()
                    await self.client.apply([change_set])
                    return
                except ServerError as exc:
                    if exc.fatal:
                        raise
                    return  # refused by the server: a known outcome
                except (ConnectionLost, RequestTimeout):
                    with contextlib.suppress(Exception):
                        await self.client.close()
            await self.pause(self.interval_s)


@dataclass(kw_only=True)
class Conflicter(Behaviour):
    """Writes the same cells as every other conflicter at the same moments, on the same HLC
    tick: the load that shows whether a server serialises applies to one database.

    Rounds sit on a grid of the wall clock, `interval_s` apart, so every client of the group
    computes the same schedule without talking to the others: round k is due at wall time
    k * interval, and in it every client writes the same `cells_per_round` cells with an HLC
    whose wallTime (the round's grid time) and counter (k mod 65536) are the same for all;
    only the site id differs, so the HLC's byte order decides. `http_share` of the writes go
    over HTTP. A client takes the first `rounds` rounds due at least `lead_s` after it starts."""

    name: ClassVar[str] = "conflicter"
    writes: ClassVar[bool] = True
    rounds: int = 20
    interval_s: float = 0.4
    lead_s: float = 0.5
    table: str = "contested"
    keys: int = 12
    cells_per_round: int = 3
    columns: tuple[str, ...] = ("a", "b")
    http_share: float = 0.3

    def round_cells(self, k: int) -> list[tuple[int, str]]:
        """The (pk, column) cells of round k: a function of k alone, the same for every client."""
        out = []
        for i in range(self.cells_per_round):
            n = k * self.cells_per_round + i
            out.append((n % self.keys, self.columns[(n // self.keys + i) % len(self.columns)]))
        return out

    def round_change_set(self, k: int, interval_ms: int) -> dict[str, Any]:
        hlc = HLC(k * interval_ms, k % 0x10000, self.client.site_id, 0)
        self.client.clock.observe(hlc)  # this site's later HLCs stay above the round's
        changes = tuple(
            Change(
                type="column",
                schema="main",
                table=self.table,
                pk=(pk,),
                hlc=HLC(hlc.wall_time, hlc.counter, hlc.site_id, op_seq),
                column=column,
                value=f"{self.client.site_id_text[:6]}-r{k}-{op_seq}",
            )
            for op_seq, (pk, column) in enumerate(self.round_cells(k))
        )
        return ChangeSet(site_id=self.client.site_id, hlc=hlc, changes=changes).to_wire()

    async def body(self) -> None:
        interval_ms = max(1, int(self.interval_s * 1000))
        now_ms = time.time() * 1000.0
        first = -(-int(now_ms + self.lead_s * 1000) // interval_ms)  # ceiling division
        if self.http_share < 1.0:
            await self.client.connect_with_retry()
        for k in range(first, first + self.rounds):
            wait_s = (k * interval_ms - time.time() * 1000.0) / 1000.0
            if wait_s > self.time_left():
                return
            await self.pause(wait_s)  # pacing on the shared schedule, not synchronisation
            change_set = self.round_change_set(k, interval_ms)
            if self.rng.random() < self.http_share:
                await self.client.http_apply([change_set])
                continue
            try:
                await self.ensure_connected()
                await self.client.apply([change_set])
            except ServerError as exc:
                if exc.fatal:
                    raise
            except (ConnectionLost, RequestTimeout):
                with contextlib.suppress(Exception):
                    await self.client.close()


@dataclass(kw_only=True)
class Reader(Behaviour):
    """Polls `get_changes` (paging until empty) `polls` times, `interval_s` apart."""

    name: ClassVar[str] = "reader"
    polls: int = 20
    interval_s: float = 0.2

    async def body(self) -> None:
        since: str | None = None
        for _ in range(self.polls):
            try:
                await self.ensure_connected()
                await self.client.pull(since)
                if self.client.replica.max_hlc is not None:
                    since = encode_b64(self.client.replica.max_hlc)
            except (ConnectionLost, RequestTimeout):
                with contextlib.suppress(Exception):
                    await self.client.close()
            await self.pause(self.interval_s)


@dataclass(kw_only=True)
class Pager(Behaviour):
    """Reads its database by paging `get_changes` `rounds` times, `interval_s` apart: each
    request asks from the largest HLC of the previous answer, until an empty answer. The next
    round goes on from the last HLC received (a reader that keeps up), except `restart_share`
    of the rounds, which page from the beginning. `http_share` of the rounds go over HTTP. With
    transactions larger than the target's batch size this is the evidence that batches are cut
    only at transaction boundaries and that paging misses and repeats nothing."""

    name: ClassVar[str] = "pager"
    rounds: int = 20
    interval_s: float = 0.3
    http_share: float = 0.5
    restart_share: float = 0.2
    max_pages: int = 1000

    async def body(self) -> None:
        since: str | None = None
        for _ in range(self.rounds):
            start = None if self.rng.random() < self.restart_share else since
            over_http = self.rng.random() < self.http_share
            try:
                since = await self.page(start, over_http)
            except (ConnectionLost, RequestTimeout):
                with contextlib.suppress(Exception):
                    await self.client.close()
            await self.pause(self.interval_s)

    async def page(self, since: str | None, over_http: bool) -> str | None:
        """One paging sequence; returns the last HLC received (where the next one goes on)."""
        for _ in range(self.max_pages):
            if over_http:
                status, answer = await self.client.http_get_changes(since)
                if status != 200 or not isinstance(answer, dict):
                    return since
                batch = list((answer.get("data") or {}).get("changes") or [])
            else:
                await self.ensure_connected()
                batch = await self.client.get_changes(since)
            newest = max_hlc_text(batch)
            if not batch or newest is None or newest == since:
                return since
            since = newest
        return since


@dataclass(kw_only=True)
class Subscriber(Behaviour):
    """Connects and listens to pushes for `listen_s`, reconnecting (bounded) when dropped.
    `abort_share` of the subscribers leave by dropping TCP (no close frame) instead of closing,
    after `listen_s`: the others must still be told they are gone."""

    name: ClassVar[str] = "subscriber"
    listen_s: float = 10.0
    max_reconnects: int = 5
    abort_share: float = 0.0

    async def body(self) -> None:
        await self.client.connect_with_retry()
        until = time.monotonic() + self.listen_s
        reconnects = 0
        while time.monotonic() < until:
            await self.pause(min(0.1, until - time.monotonic()))
            if not self.client.connected and reconnects < self.max_reconnects:
                reconnects += 1
                await self.client.connect_with_retry()
        if self.abort_share > 0 and self.rng.random() < self.abort_share and self.client.connected:
            await self.client.abort()


@dataclass(kw_only=True)
class SlowReader(Behaviour):
    """Connects, then stops reading its socket for `stall_s` (frames pile up in the library's
    small queue, then in TCP buffers), then reads again and waits (bounded) for the server's
    verdict: a SLOW_CLIENT notice and a 1013 close, or nothing."""

    name: ClassVar[str] = "slow_reader"
    stall_after_s: float = 0.2
    stall_s: float = 5.0
    drain_s: float = 2.0
    final_catch_up: bool = False

    async def body(self) -> None:
        await self.client.connect_with_retry()
        await self.pause(self.stall_after_s)
        self.client.pause_reading()
        await self.pause(self.stall_s)
        self.client.resume_reading()
        until = time.monotonic() + self.drain_s
        while self.client.connected and time.monotonic() < until:
            await self.pause(0.05)


@dataclass(kw_only=True)
class Churner(Behaviour):
    """Connects and disconnects `cycles` times: some cycles leave during the handshake (closing
    or dropping TCP before the answer), others hold the session a moment then close or drop."""

    name: ClassVar[str] = "churner"
    cycles: int = 20
    mid_handshake_share: float = 0.3
    abort_share: float = 0.3
    hold_s: tuple[float, float] = (0.02, 0.2)
    final_catch_up: bool = False

    async def body(self) -> None:
        for _ in range(self.cycles):
            abort = self.rng.random() < self.abort_share
            try:
                if self.rng.random() < self.mid_handshake_share:
                    await self.client.abandon_handshake(abort=abort)
                else:
                    await self.client.connect()
                    await self.pause(self.rng.uniform(*self.hold_s))
                    if abort:
                        await self.client.abort()
                    else:
                        await self.client.close()
            except _RECOVERABLE:
                with contextlib.suppress(Exception):
                    await self.client.close()
            await self.pause(self.rng.uniform(*self.hold_s))


CUT_POINTS = ("first", "mid", "table_start", "table_end", "last")


@dataclass(kw_only=True)
class Snapshotter(Behaviour):
    """Takes `count` snapshots, over HTTP for `http_share` of them; `cut_share` of them are cut
    and resumed over WS from the checkpoint read so far. Without `cut_points` a cut falls after
    a few chunks (up to `max_cut_chunks`). With `cut_points` (first, mid, table_start,
    table_end, last) the cuts go through them in turn, placed by the table sizes of the last
    complete snapshot: after the first entry, mid-table (mid-chunk too), at a table boundary
    (before a table's first entry, or after its end), after the last entry of the last table:
    the checkpoints at which a resume can miss or repeat entries."""

    name: ClassVar[str] = "snapshotter"
    count: int = 5
    http_share: float = 0.5
    cut_share: float = 0.3
    max_cut_chunks: int = 3
    interval_s: float = 0.2
    cut_points: tuple[str, ...] = ()
    _table_entries: list[int] = field(default_factory=list, init=False)
    _next_point: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        unknown = [p for p in self.cut_points if p not in CUT_POINTS]
        if unknown:
            raise ValueError(f"unknown cut points {unknown}; known: {', '.join(CUT_POINTS)}")

    def plan_cut(self) -> SnapshotCut | None:
        """The next cut: None for a whole snapshot (also while no table sizes are known)."""
        if self.rng.random() >= self.cut_share:
            return None
        if not self.cut_points:
            return SnapshotCut("chunks", self.rng.randint(1, self.max_cut_chunks))
        sizes = self._table_entries
        if not sizes:
            return None  # a complete snapshot first, to learn where the tables are
        point = self.cut_points[self._next_point % len(self.cut_points)]
        self._next_point += 1
        return cut_at(point, sizes, self.rng)

    async def body(self) -> None:
        for _ in range(self.count):
            cut = self.plan_cut()
            try:
                if self.rng.random() < self.http_share:
                    outcome = await self.client.http_snapshot(cut=cut)
                else:
                    await self.ensure_connected()
                    outcome = await self.client.snapshot(cut=cut)
                if outcome.get("ended") == "complete" and outcome.get("tableEntries"):
                    self._table_entries = list(outcome["tableEntries"])
                checkpoint = outcome.get("checkpoint")
                if outcome.get("ended") == "cut" and checkpoint is not None:
                    await self.ensure_connected()
                    await self.client.resume_snapshot(checkpoint)
            except (ConnectionLost, RequestTimeout):
                with contextlib.suppress(Exception):
                    await self.client.close()
            await self.pause(self.interval_s)


def cut_at(point: str, sizes: list[int], rng: random.Random) -> SnapshotCut:
    """A cut at one kind of checkpoint, given the entries of each table of a snapshot."""
    if point == "first":
        return SnapshotCut("entries", 1)
    if point == "mid":
        tables = [i for i, n in enumerate(sizes) if n >= 2] or [0]
        t = rng.choice(tables)
        return SnapshotCut("entries", sum(sizes[:t]) + max(1, sizes[t] // 2))
    if point == "table_start":
        return SnapshotCut("table_start", rng.randrange(len(sizes)))
    if point == "table_end":
        return SnapshotCut("table_end", rng.randrange(len(sizes)))
    if point == "last":
        return SnapshotCut("last_entry")
    raise ValueError(f"unknown cut point {point!r}")


@dataclass(kw_only=True)
class BadInput(Behaviour):
    """Sends malformed requests (not JSON, unknown type, bad base64, bad HLC, wrong shapes) and
    pings after each one: error-specificity judges the answers and the session's survival."""

    name: ClassVar[str] = "bad_input"
    rounds: int = 1
    interval_s: float = 0.05
    final_catch_up: bool = False
    # Exactly these frames instead of the built-in list ({frame, intent, request} each): how a
    # frame found by `harness fuzz` is replayed from a scenario file.
    probes: tuple[dict[str, Any], ...] = ()

    def probe_list(self) -> list[tuple[str | dict[str, Any], str, str | None]]:
        if self.probes:
            return [(p["frame"], str(p.get("intent", "bad_input")), p.get("request")) for p in self.probes]
        good = self.client.builder().set("items", [1], "name", "x").build().to_wire()
        short_hlc = dict(good, changes=[dict(good["changes"][0], hlc=encode_b64(b"\x00" * 12))])
        # A bytes value whose base64 is valid only once its stray characters are dropped: a lenient
        # decoder stores b"\x00\x00\x00", a strict one (PROTOCOL.md: standard base64) refuses it.
        stray_bin = dict(good, changes=[dict(good["changes"][0], value={"__bin": "AAAA!!"})])
        return [
            ("{not json", "not_json", None),
            ({"type": "no_such_message"}, "unknown_type", None),
            ({"type": "get_changes", "sinceHLC": "%%%not-base64%%%"}, "bad_input", "get_changes"),
            ({"type": "get_changes", "sinceHLC": encode_b64(b"\x01" * 7)}, "bad_input", "get_changes"),
            (
                {"type": "apply_changes", "changes": "not a list", "requestId": "bad-1"},
                "bad_input",
                "apply_changes",
            ),
            (
                {"type": "apply_changes", "changes": [short_hlc], "requestId": "bad-2"},
                "bad_input",
                "apply_changes",
            ),
            (
                {"type": "apply_changes", "changes": [{"siteId": "x"}], "requestId": "bad-3"},
                "bad_input",
                "apply_changes",
            ),
            (
                {"type": "apply_changes", "changes": [stray_bin], "requestId": "bad-4"},
                "bad_input",
                "apply_changes",
            ),
        ]

    async def body(self) -> None:
        await self.client.connect_with_retry()
        for _ in range(self.rounds):
            probes = self.probe_list()
            if not self.probes:  # found frames replay in their order: orders of messages matter
                self.rng.shuffle(probes)
            for frame, intent, request in probes:
                await self.ensure_connected()
                with contextlib.suppress(*_RECOVERABLE):
                    await self.client.send_raw(frame, intent, request)
                with contextlib.suppress(*_RECOVERABLE):
                    await self.client.ping()
                await self.pause(self.interval_s)


@dataclass(kw_only=True)
class Intruder(Behaviour):
    """Uses its token (granted `client.config.token_databases`) on `foreign_database`: WS
    handshake, then reads if let in, and HTTP reads and a write. Tenant isolation judges."""

    name: ClassVar[str] = "intruder"
    foreign_database: str = "other"
    attempts: int = 2
    final_catch_up: bool = False

    async def body(self) -> None:
        granted = self.client.config.token_databases
        if granted is None:
            raise NothingToDo("its token's grants are unknown or unrestricted: no database is foreign to it")
        if self.foreign_database in granted:
            raise NothingToDo(f"its token is granted {self.foreign_database}: using it is no intrusion")
        for _ in range(self.attempts):
            try:
                await self.client.open()
                await self.client.handshake(database_id=self.foreign_database)
                await self.client.get_changes()
                await self.client.snapshot()
            except _RECOVERABLE:
                pass
            finally:
                with contextlib.suppress(Exception):
                    await self.client.close()
            await self.client.http.get_changes(self.foreign_database)
            probe = self.client.builder().set("items", [0], "name", "intruder").build().to_wire()
            await self.client.http.apply(self.foreign_database, [probe])
            await self.client.http.snapshot(self.foreign_database)


async def read_server_state(client: SyncClient, via: str = "get_changes") -> None:
    """The server's state as a fresh site sees it, recorded as a server-side replica for
    convergence and no-lost-write: via a full `get_changes` pull, a WS snapshot, or HTTP."""
    if via == "get_changes":
        await client.connect_with_retry()
        await client.pull()
        client.record_replica("server", caught_up=True)
    elif via == "snapshot":
        await client.connect_with_retry()
        outcome = await client.snapshot()
        client.record_replica("snapshot", caught_up=outcome.get("ended") == "complete")
    elif via == "http_snapshot":
        outcome = await client.http_snapshot()
        client.record_replica("snapshot", caught_up=outcome.get("ended") == "complete")
    else:
        raise ValueError(f"unknown way to read the server state: {via!r}")
    await client.close()


async def catch_up_all(clients: list[SyncClient], timeout_s: float = 30.0) -> list[str]:
    """The run's final phase, once every behaviour ended: each client reconnects, pulls what it
    lacks and records its replica, so that convergence compares replicas of one quiet state.
    Returns the ids of the clients that could not catch up (their replicas are not recorded)."""
    failed: list[str] = []

    async def one(client: SyncClient) -> None:
        try:
            async with asyncio.timeout(timeout_s):
                if not client.connected:
                    await client.connect_with_retry()
                await client.catch_up()
        except (*_RECOVERABLE, TimeoutError):
            failed.append(client.client_id)
        finally:
            with contextlib.suppress(Exception):
                await client.close()

    await asyncio.gather(*(one(c) for c in clients))
    return failed


BEHAVIOURS: dict[str, type[Behaviour]] = {
    cls.name: cls
    for cls in (
        Writer,
        Conflicter,
        Reader,
        Pager,
        Subscriber,
        SlowReader,
        Churner,
        Snapshotter,
        BadInput,
        Intruder,
    )
}
