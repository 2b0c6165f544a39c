"""Snapshot exactness (PROTOCOL.md 3.3 and section 2): a complete WS snapshot comes in the order
header, schema-migration*, (table-start, column-versions*, table-end)*, tombstone*, footer; holds
every cell and tombstone once; its counts agree; no entry is newer than the header's HLC; and its
content is the database's state at that HLC, computed from the final log read (`checker-<db>`):
per cell the change with the largest HLC at most the header's.

A resumed snapshot (resume_snapshot) together with the stream it continues (the cut one whose
checkpoint it sent) must hold each entry exactly once and all of them: skipping too much or too
little shows as missing or repeated entries.

Evidence is read from the `snapshot_chunk` frames of the stream's connection between the op's
invoke and completion; capped frames keep per entry (column, hlc, pk, value digest) and per
tombstone (pk, hlc), see harness/client/capping.py, so values are compared by digest. HTTP
snapshot streams record no chunks in the history (only the reader's summary): not judged here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from harness.checks.convergence import POLICY_PARAM, check_policy
from harness.checks.excuses import PROCESS, ExcusePolicy
from harness.checks.observations import Observations
from harness.checks.paging import CHECKER_PREFIX, _answer, pages, sequences
from harness.checks.registry import register
from harness.checks.result import CheckResult
from harness.checks.verdict import failed, passed, unknown
from harness.checks.views import Apply, Connection, applies, connections
from harness.history import History, Message, Op, OpName
from harness.model.capping import is_capped, value_digest
from harness.model.codec import CodecError, hlc_key
from harness.model.replica import pk_key

WS_OPS = (OpName.SNAPSHOT, OpName.RESUME_SNAPSHOT)
Cell = tuple[str, str, str, str]  # schema, table, pk key, column
Row = tuple[str, str, str]


def _key(text: Any) -> bytes | None:
    try:
        return hlc_key(text)
    except (CodecError, TypeError, ValueError):
        return None


@dataclass(slots=True)
class Stream:
    invoked: Op
    completed: Op | None
    conn: Connection | None
    chunks: list[tuple[Message, dict[str, Any]]]

    @property
    def outcome(self) -> dict[str, Any]:
        value = self.completed.value if self.completed is not None else None
        return value if isinstance(value, dict) else {}

    @property
    def checkpoint_sent(self) -> dict[str, Any] | None:
        value = self.invoked.value if isinstance(self.invoked.value, dict) else {}
        cp = value.get("checkpoint")
        return cp if isinstance(cp, dict) else None

    @property
    def header(self) -> dict[str, Any] | None:
        return next((c for _, c in self.chunks if c.get("type") == "header"), None)


def ws_streams(history: History, with_http: bool = False) -> list[Stream]:
    """Every WS snapshot and resumed snapshot, with the chunk frames it received (and with
    `with_http` the HTTP streams too, without chunks: the history records none of theirs)."""
    conns = connections(history)
    out: list[Stream] = []
    for invoked, completed in history.pairs():
        if invoked.f == OpName.HTTP_SNAPSHOT and with_http:
            out.append(Stream(invoked, completed, None, []))
            continue
        if invoked.f not in WS_OPS:
            continue
        conn = None
        for c in conns:
            if c.process == invoked.process and c.open_index < invoked.index:
                conn = c
        stop = completed.index if completed is not None else float("inf")
        chunks = [
            (m, m.payload["chunk"])
            for m in (conn.messages if conn is not None else [])
            if m.type == "snapshot_chunk"
            and invoked.index < m.index < stop
            and isinstance(m.payload.get("chunk"), dict)
        ]
        out.append(Stream(invoked, completed, conn, chunks))
    return out


# entries -----------------------------------------------------------------------------------------
@dataclass(slots=True)
class Content:
    """What one stream (or a stream and its continuation) holds, entry by entry."""

    cells: dict[Cell, list[tuple[bytes, str]]] = field(default_factory=dict)  # hlc, value digest
    tombs: dict[Row, list[bytes]] = field(default_factory=dict)
    unreadable: int = 0  # entries without a readable shape (capped without $cells, bad HLC)

    def add(self, other: Content) -> None:
        for k, v in other.cells.items():
            self.cells.setdefault(k, []).extend(v)
        for k2, v2 in other.tombs.items():
            self.tombs.setdefault(k2, []).extend(v2)
        self.unreadable += other.unreadable


def chunk_cells(chunk: dict[str, Any]) -> list[tuple[Any, Any, Any, str]] | None:
    """(column, hlc, pk, value digest) per entry of a column-versions chunk; None: not kept."""
    if "$cells" in chunk:
        return [(e[0], e[1], e[2], str(e[3])) for e in chunk["$cells"] if isinstance(e, list) and len(e) == 4]
    entries = chunk.get("entries")
    if not isinstance(entries, list):
        return None
    return [
        (e.get("column"), e.get("hlc"), e.get("pk"), value_digest(e.get("value")))
        for e in entries
        if isinstance(e, dict)
    ]


def chunk_tombs(chunk: dict[str, Any]) -> list[tuple[Any, Any]] | None:
    if "$tombs" in chunk:
        return [(e[0], e[1]) for e in chunk["$tombs"] if isinstance(e, list) and len(e) == 2]
    entries = chunk.get("entries")
    if not isinstance(entries, list):
        return None
    return [(e.get("pk"), e.get("hlc")) for e in entries if isinstance(e, dict)]


def content(stream: Stream) -> Content:
    out = Content()
    for _, chunk in stream.chunks:
        kind = chunk.get("type")
        schema, table = str(chunk.get("schema")), str(chunk.get("table"))
        if kind == "column-versions":
            cells = chunk_cells(chunk)
            if cells is None:
                out.unreadable += int(chunk.get("$entries") or 1)
                continue
            for column, hlc, pk, digest in cells:
                key = _key(hlc)
                if key is None:
                    out.unreadable += 1
                    continue
                out.cells.setdefault((schema, table, pk_key(pk), str(column)), []).append((key, digest))
        elif kind == "tombstone":
            tombs = chunk_tombs(chunk)
            if tombs is None:
                out.unreadable += int(chunk.get("$entries") or 1)
                continue
            for pk, hlc in tombs:
                key = _key(hlc)
                if key is None:
                    out.unreadable += 1
                    continue
                out.tombs.setdefault((schema, table, pk_key(pk)), []).append(key)
    return out


def consumed(stream: Stream) -> Stream:
    """A cut stream as far as its client read it. Frames that arrived after the cut were
    received (and recorded) but not taken: the outcome's `chunks` says how many the client took
    and `entries` how many entries, when its cut fell inside a chunk. Without them, all of it."""
    out = stream.outcome
    taken, wanted = out.get("chunks"), out.get("entries")
    if out.get("ended") != "cut" or not isinstance(taken, int) or isinstance(taken, bool):
        return stream
    chunks = list(stream.chunks[:taken])
    if isinstance(wanted, int) and not isinstance(wanted, bool):
        seen = 0
        for i, (message, chunk) in enumerate(chunks):
            if chunk.get("type") != "column-versions":
                continue
            key = "$cells" if "$cells" in chunk else "entries"
            rows = chunk.get(key)
            if not isinstance(rows, list):
                continue
            keep = max(0, wanted - seen)
            if len(rows) > keep:
                chunks[i] = (message, dict(chunk, **{key: rows[:keep]}))
            seen += min(len(rows), keep)
    return Stream(stream.invoked, stream.completed, stream.conn, chunks)


# order and counts -------------------------------------------------------------------------------
# phase: 0 before the header, 1 header/migrations, 2 inside a table, 3 after a table, 4 tombstones, 5 footer
ALLOWED = {
    "header": ({0}, 1),
    "schema-migration": ({1}, 1),
    "table-start": ({1, 3}, 2),
    "column-versions": ({2}, 2),
    "table-end": ({2}, 3),
    "tombstone": ({1, 3, 4}, 4),
    "footer": ({1, 3, 4}, 5),
}


def order_and_counts(stream: Stream) -> list[str]:
    """Problems with the order of section 3.3 and, for a fresh stream, with its counts."""
    problems: list[str] = []
    phase = 0
    table: tuple[str, str] | None = None
    in_table = total = tables = migrations = 0
    fresh = stream.invoked.f == OpName.SNAPSHOT
    for number, (_, chunk) in enumerate(stream.chunks, 1):
        kind = str(chunk.get("type"))
        if kind not in ALLOWED:
            problems.append(f"chunk {number}: unknown type {kind!r}")
            continue
        before, after = ALLOWED[kind]
        if phase not in before:
            problems.append(f"chunk {number} ({kind}) out of the order of PROTOCOL.md 3.3")
        here = (str(chunk.get("schema")), str(chunk.get("table")))
        if kind == "table-start":
            table, in_table, tables = here, 0, tables + 1
        elif kind == "column-versions":
            if table != here:
                problems.append(f"chunk {number}: column-versions of {here[1]} inside table {table}")
            n = int(chunk["$entries"]) if "$entries" in chunk else len(chunk.get("entries") or [])
            in_table += n
            total += n
        elif kind == "table-end":
            if fresh and chunk.get("entriesWritten") != in_table:
                problems.append(
                    f"table {here[1]}: entriesWritten {chunk.get('entriesWritten')} but {in_table} sent"
                )
            table = None
        elif kind == "schema-migration":
            migrations += 1
        elif kind == "footer" and fresh:
            for field_name, counted in (
                ("totalEntries", total),
                ("totalTables", tables),
                ("totalMigrations", migrations),
            ):
                if chunk.get(field_name) != counted:
                    problems.append(f"footer {field_name} {chunk.get(field_name)} but {counted} sent")
        phase = after
    if stream.outcome.get("ended") == "complete" and phase not in (1, 3, 4, 5):
        problems.append("stream complete inside a table or without a header")
    return problems


# the model: the database at an HLC -----------------------------------------------------------
@dataclass(slots=True)
class Model:
    """Per cell and row, the changes of the final log: (hlc, value digest, certain). A change is
    certain when its write was acknowledged before the snapshot was asked for."""

    cells: dict[Cell, list[tuple[bytes, str, bool]]] = field(default_factory=dict)
    deletes: dict[Row, list[tuple[bytes, bool]]] = field(default_factory=dict)
    unknown_rows: set[Row] = field(default_factory=set)  # rows with changes of unknown content


def _log_change_sets(history: History, database: str) -> list[dict[str, Any]] | None:
    """The change sets of the runner's final log read of `database` (None: no complete read)."""
    for seq in sequences([p for p in pages(history) if p.invoked.process.startswith(CHECKER_PREFIX)]):
        first = seq.pages[0]
        if first.database != database or first.since is not None or not seq.finished:
            continue
        out: list[dict[str, Any]] = []
        for page in seq.pages:
            out += [cs for cs in _answer(page.completed) or [] if isinstance(cs, dict)]
        return out
    return None


def build_model(history: History, database: str, asked_at: float, writes: dict[str, Apply]) -> Model | None:
    log = _log_change_sets(history, database)
    if log is None:
        return None
    model = Model()
    for change_set in log:
        tx = str(change_set.get("transactionId"))
        write = writes.get(tx)
        certain = (
            write is not None and write.answered and write.ack_time is not None and write.ack_time <= asked_at
        )
        changes: list[Any] | None = None
        if not is_capped(change_set):
            changes = list(change_set.get("changes") or [])
        elif write is not None:
            sent = [cs for cs in write.change_sets if str(cs.get("transactionId")) == tx]
            sent_changes = [c for cs in sent for c in cs.get("changes") or []]
            if len(sent_changes) == int(change_set["$capped"].get("changes") or -1):
                changes = sent_changes
            else:  # which part of the request the log holds is not known
                model.unknown_rows |= {_row(c) for c in sent_changes if isinstance(c, dict)}
        if changes is None:
            continue
        for change in changes:
            if not isinstance(change, dict):
                continue
            key = _key(change.get("hlc"))
            if key is None:
                continue
            row = _row(change)
            if change.get("type") == "delete":
                model.deletes.setdefault(row, []).append((key, certain))
            else:
                cell = (*row, str(change.get("column")))
                model.cells.setdefault(cell, []).append((key, value_digest(change.get("value")), certain))
    return model


def _row(change: dict[str, Any]) -> Row:
    return (str(change.get("schema")), str(change.get("table")), pk_key(change.get("pk")))


def sent_once(got: Content, at: bytes | None) -> list[str]:
    """Problems of a stream's entries on their own: sent twice, or (with `at`) newer than the
    header's HLC."""
    problems: list[str] = []
    for cell, entries in got.cells.items():
        if len(entries) > 1:
            problems.append(f"cell {list(cell)} sent {len(entries)} times")
    for row, hlcs in got.tombs.items():
        if len(hlcs) > 1:
            problems.append(f"tombstone {list(row)} sent {len(hlcs)} times")
    if at is None:
        return problems
    for cell, entries in got.cells.items():
        if any(hlc > at for hlc, _ in entries):
            problems.append(f"cell {list(cell)} newer than the header's HLC")
    for row, hlcs in got.tombs.items():
        if any(h > at for h in hlcs):
            problems.append(f"tombstone {list(row)} newer than the header's HLC")
    return problems


def judge_content(got: Content, model: Model, at: bytes, policy: str | None) -> tuple[list[str], int, int]:
    """(problems, entries judged, cells of deleted rows left out) of `got` against the model at `at`."""
    problems = sent_once(got, at)
    judged = left_out = 0

    def tomb_at(row: Row) -> tuple[bytes | None, bool]:
        """The row's newest delete at `at`, and whether uncertain deletes could be newer."""
        known = [h for h, c in model.deletes.get(row, []) if c and h <= at]
        best = max(known, default=None)
        maybe = any(not c and h <= at and (best is None or h > best) for h, c in model.deletes.get(row, []))
        return best, maybe

    # cells
    for cell in set(model.cells) | set(got.cells):
        row = cell[:3]
        if row in model.unknown_rows:
            continue
        changes = [(h, d, c) for h, d, c in model.cells.get(cell, []) if h <= at]
        certain = max((h for h, _, c in changes if c), default=None)
        allowed = {h for h, _, c in changes if certain is None or h >= certain}
        tomb, maybe_tomb = tomb_at(row)
        if tomb is not None or maybe_tomb or model.deletes.get(row):
            if policy is None:
                left_out += 1
                continue
            # a cell older than its row's tombstone may or may not be kept: judge the newer only
            newest_delete = max((h for h, _ in model.deletes.get(row, []) if h <= at), default=None)
            if newest_delete is not None and (certain is None or certain < newest_delete):
                continue
        sent = got.cells.get(cell, [])
        judged += 1
        if not sent:
            if certain is not None:
                problems.append(f"cell {list(cell)} missing (the log holds it at the header's HLC)")
            continue
        hlc, digest = sent[0]
        if hlc not in allowed:
            what = (
                "an older value than the log's newest" if certain is not None and hlc < certain else "an HLC"
            )
            problems.append(f"cell {list(cell)} holds {what} not the state at the header's HLC")
            continue
        if digest not in {d for h, d, _ in changes if h == hlc}:
            problems.append(f"cell {list(cell)}: value differs from the logged change of its HLC")
    # tombstones
    for row in set(model.deletes) | set(got.tombs):
        if row in model.unknown_rows:
            continue
        if policy is None:
            left_out += 1
            continue
        tomb, maybe = tomb_at(row)
        possible = {h for h, _ in model.deletes.get(row, []) if h <= at and (tomb is None or h >= tomb)}
        sent_tombs = got.tombs.get(row, [])
        revived = any(
            h > (tomb or b"") and c
            for cell, chs in model.cells.items()
            if cell[:3] == row
            for h, _, c in chs
            if h <= at
        )
        judged += 1
        if not sent_tombs:
            if tomb is not None and not revived and not maybe:
                problems.append(f"tombstone {list(row)} missing (the log deleted the row)")
            continue
        if sent_tombs[0] not in possible:
            problems.append(f"tombstone {list(row)} with an HLC the log does not hold at the header's HLC")
    return problems, judged, left_out


def _excused_resume(stream: Stream, previous: list[Stream], writes: list[Apply]) -> bool:
    """The excuse of the resume part, in one place: a write to the database between the first
    stream's request and the resume's end changes what the entries after the checkpoint are
    (a resume reads the database again), so the union is not judged then."""
    start = previous[0].invoked.time if previous else stream.invoked.time
    end = stream.completed.time if stream.completed is not None else stream.invoked.time
    database = stream.conn.database_id if stream.conn is not None else None
    return any(
        w.database_id == database and w.invoked.time <= end and (w.ack_time is None or w.ack_time >= start)
        for w in writes
    )


# The code below reads the target's process events itself (a pause loses nothing, so it is no
# excuse); the policy declares it for `harness list` and docs/checks.md.
RESTARTED = ExcusePolicy(
    "content differing from the final log after a kill or restart (not a pause) between the stream and "
    "the log read; order, counts and repeats are never excused",
    frozenset({PROCESS}),
)


def _server_restarted(obs: Observations, stream: Stream, log_read_at: float | None) -> bool:
    """The excuse of the content part, in one place: after a kill or restart between the stream
    and the final log read, changes the stream held may be gone from the log (writes never
    acknowledged need not survive). The graceful shutdown after the final reads is no excuse."""
    start = stream.invoked.time
    end = log_read_at if log_read_at is not None else float("inf")
    return any(e.kind not in ("start", "sigstop", "sigcont") and start <= e.time <= end for e in obs.process)


def log_read_time(history: History, database: str | None) -> float | None:
    """When the runner's final log read of `database` began."""
    times = [
        p.invoked.time
        for p in pages(history)
        if p.invoked.process.startswith(CHECKER_PREFIX) and p.database == database
    ]
    return min(times) if times else None


def _same_checkpoint(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
    if a is None or b is None:
        return False
    keys = ("snapshotId", "hlc", "lastTableIndex", "lastEntryIndex", "entriesProcessed")
    return all(a.get(k) == b.get(k) for k in keys)


def _chain(stream: Stream, all_streams: list[Stream], through_http: bool = False) -> list[Stream] | None:
    """The streams a resumed stream continues, oldest first (None: its checkpoint's stream is
    not in the history, or, unless `through_http`, an HTTP stream whose entries are not)."""
    chain: list[Stream] = []
    current = stream
    while current.checkpoint_sent is not None:
        before = [
            s
            for s in all_streams
            if s.invoked.index < current.invoked.index
            and s.invoked.process == current.invoked.process
            and _same_checkpoint(s.outcome.get("checkpoint"), current.checkpoint_sent)
        ]
        if not before:
            return None
        current = before[-1]
        if (
            not through_http
            and current.invoked.f == OpName.HTTP_SNAPSHOT
            and int((current.outcome.get("checkpoint") or {}).get("entriesProcessed") or 0)
        ):
            return None  # its entries are not in the history
        chain.insert(0, current)
    return chain


@register(
    "snapshot-exactness",
    "streams",
    "a complete snapshot is in the order of 3.3, holds every cell and tombstone once and exactly the "
    "database's state at its header's HLC; a resumed one adds exactly what its checkpoint had not",
    excuses=(RESTARTED,),
    tombstone_policy=POLICY_PARAM,
)
def snapshot_exactness(history: History, obs: Observations, params: dict[str, Any]) -> CheckResult:
    name = "snapshot-exactness"
    policy = check_policy(params)
    all_streams = ws_streams(history)
    with_http = ws_streams(history, with_http=True)
    all_writes = applies(history)
    writes: dict[str, Apply] = {}
    for w in all_writes:
        for change_set in w.change_sets:
            writes.setdefault(str(change_set.get("transactionId")), w)
    violations: list[dict[str, Any]] = []
    judged = entries = left_out = 0
    notes: set[str] = set()
    for stream in all_streams:
        if stream.outcome.get("ended") != "complete" or stream.completed is None:
            continue
        if stream.invoked.process.startswith(CHECKER_PREFIX):
            continue
        where = {
            "time": stream.completed.time,
            "process": stream.invoked.process,
            "op": stream.invoked.f,
            "op_id": stream.invoked.op_id,
        }
        judged += 1
        problems = order_and_counts(stream)
        header = stream.header
        at = _key((header or {}).get("hlc"))
        database = stream.conn.database_id if stream.conn is not None else None
        got = content(stream)
        chain: list[Stream] | None = []
        alone = None  # a resumed stream judged by itself: "first part unknown" or "written between"
        if stream.invoked.f == OpName.RESUME_SNAPSHOT:
            chain = _chain(stream, with_http)
            origin = chain if chain is not None else _chain(stream, with_http, through_http=True)
            if origin is not None and _excused_resume(stream, origin, all_writes):
                # a resume reads the database again: entries written since its first part's
                # request may be newer than the header's HLC, whether or not that part's
                # entries are in the history (HTTP streams record none)
                alone = "a database written between a cut and its resume: that resume judged for repeats only"
            elif chain is None:
                alone = "a resumed stream whose first part is not in the history: only itself judged"
            else:
                for earlier in chain:
                    # tombstones are not covered by a checkpoint (3.3 names tables and entries):
                    # a resume sends them all again, so a chain's come from its last stream
                    part = content(consumed(earlier))
                    part.tombs = {}
                    got.add(part)
        if alone is not None:
            notes.add(alone)
            problems += sent_once(got, at if alone.startswith("a resumed") else None)
        elif _server_restarted(obs, stream, log_read_time(history, database)):
            notes.add("the server was killed or restarted after a stream: its content not judged")
            problems += sent_once(got, at)
        elif got.unreadable:
            notes.add("entries without kept content (capped without $cells): content not judged")
        elif at is not None and database is not None:
            asked = chain[0].invoked.time if chain else stream.invoked.time
            model = build_model(history, database, asked, writes)
            if model is None:
                notes.add(f"no final log read of {database}: content not judged")
                problems += sent_once(got, at)
            else:
                found, n, out = judge_content(got, model, at, policy)
                problems += found
                entries += n
                left_out += out
        violations += [where | {"problem": p} for p in problems[:10]]
    note = ""
    if left_out:
        note += f"; {left_out} cells or tombstones of deleted rows not judged (tombstone_policy not set)"
    if notes:
        note += "; " + "; ".join(sorted(notes))
    if violations:
        return failed(
            name, f"{len(violations)} snapshot inexactnesses in {judged} streams{note}", params, violations
        )
    if judged == 0:
        return unknown(
            name, "no complete WS snapshot stream was read (HTTP streams record no chunks)", params
        )
    if entries == 0:
        return unknown(name, f"{judged} streams in order, but no entry judged against the log{note}", params)
    return passed(
        name, f"{judged} streams in order, {entries} entries exactly the state at their HLC{note}", params
    )
