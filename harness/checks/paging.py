"""Paging of the change log (PROTOCOL.md section 2): a `get_changes` answer is ordered by HLC,
holds at most `batchSize` changes unless its last transaction made it larger, never splits a
transaction across the answers of one paging sequence, and a sequence (each request asking from
the largest HLC of the previous answer, until an empty answer) misses nothing and repeats
nothing of the database's log, the requesting site's own changes excepted.

The log to compare with is the runner's final read of each database (process `checker-<db>`,
a fresh site, paging from the start). Change sets are compared by transactionId and change
count, so capped answers (stubs keep siteId, transactionId, hlc, change count and the largest
change HLC) are judged the same as whole ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from harness.checks.excuses import DEFAULT_EXCUSED, ExcusePolicy, excuses
from harness.checks.observations import Observations
from harness.checks.registry import Param, register
from harness.checks.result import CheckResult
from harness.checks.verdict import failed, passed, unknown
from harness.checks.views import applies, connections, first_acknowledged
from harness.history import EventKind, History, Op, OpName
from harness.model.capping import CAPPED, is_capped
from harness.model.codec import CodecError, hlc_key

CHECKER_PREFIX = "checker-"
PAGING_OPS = (OpName.GET_CHANGES, OpName.HTTP_GET_CHANGES)


@dataclass(slots=True)
class Tx:
    """One change set of an answer, as much as a capped one still says."""

    transaction_id: str
    site_id: str | None
    hlc: bytes
    count: int
    max_hlc: bytes


def _key(text: Any) -> bytes | None:
    try:
        return hlc_key(text)
    except (CodecError, TypeError, ValueError):
        return None


def describe(change_set: Any) -> Tx | None:
    """A change set's identity, size and HLC range; None when it has no readable HLC."""
    if not isinstance(change_set, dict):
        return None
    hlc = _key(change_set.get("hlc"))
    if hlc is None:
        return None
    if is_capped(change_set):
        info = change_set[CAPPED]
        count = int(info.get("changes") or 0)
        top = _key(info.get("maxHlc")) or hlc
    else:
        changes = [c for c in change_set.get("changes") or [] if isinstance(c, dict)]
        count = len(changes)
        keys = [k for k in (_key(c.get("hlc")) for c in changes) if k is not None]
        top = max([hlc, *keys])
    return Tx(str(change_set.get("transactionId")), change_set.get("siteId"), hlc, count, top)


@dataclass(slots=True)
class Page:
    invoked: Op
    completed: Op
    database: str | None
    site: str | None
    since: bytes | None
    since_text: str | None
    txs: list[Tx]

    @property
    def count(self) -> int:
        return sum(t.count for t in self.txs)

    @property
    def top(self) -> bytes | None:
        return max((t.max_hlc for t in self.txs), default=None)


@dataclass(slots=True)
class Sequence:
    pages: list[Page] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        """Ended with an empty answer: the requester saw the whole log above its first HLC."""
        return bool(self.pages) and not self.pages[-1].txs


def _answer(op: Op) -> list[Any] | None:
    value = op.value
    if not isinstance(value, dict):
        return None
    if op.f == OpName.HTTP_GET_CHANGES:
        body = value.get("body")
        if not isinstance(body, dict) or body.get("ok") is not True:
            return None
        data = body.get("data")
        changes = data.get("changes") if isinstance(data, dict) else None
        return changes if isinstance(changes, list) else None
    change_sets = value.get("changeSets")
    return change_sets if isinstance(change_sets, list) else None


def pages(history: History) -> list[Page]:
    """Every answered get_changes (WS) and GET changes (HTTP), with who asked and from where."""
    conns = connections(history)
    clock_sites = {e.process: e.data.get("siteId") for e in history.events if e.kind == EventKind.CLOCK}
    out: list[Page] = []
    for invoked, completed in history.pairs():
        if invoked.f not in PAGING_OPS or completed is None or completed.type != "ok":
            continue
        change_sets = _answer(completed)
        if change_sets is None:
            continue
        request = invoked.value if isinstance(invoked.value, dict) else {}
        since_text = request.get("sinceHLC")
        database, site = request.get("databaseId"), clock_sites.get(invoked.process)
        if invoked.f == OpName.GET_CHANGES:
            conn = None
            for c in conns:
                if c.process == invoked.process and c.open_index < invoked.index:
                    conn = c
            if conn is None:
                continue
            database, site = conn.database_id, conn.site_id or site
        txs = [t for t in (describe(cs) for cs in change_sets) if t is not None]
        since = _key(since_text) if since_text is not None else None
        out.append(Page(invoked, completed, database, site, since, since_text, txs))
    return out


def sequences(all_pages: list[Page]) -> list[Sequence]:
    """Consecutive pages of one process, one route and one database, each asking from the
    previous answer's largest HLC; an empty answer ends a sequence."""
    open_by: dict[tuple[str, str, str | None], Sequence] = {}
    out: list[Sequence] = []
    for page in all_pages:
        key = (page.invoked.process, page.invoked.f, page.database)
        current = open_by.get(key)
        previous = current.pages[-1] if current is not None else None
        if (
            current is None
            or previous is None
            or not previous.txs
            or page.since is None
            or page.since != previous.top
        ):
            current = Sequence()
            out.append(current)
            open_by[key] = current
        current.pages.append(page)
    return out


def final_logs(all_pages: list[Page]) -> dict[str, dict[str, Tx]]:
    """Per database, the runner's final log read (only when it paged to an empty answer)."""
    out: dict[str, dict[str, Tx]] = {}
    for seq in sequences([p for p in all_pages if p.invoked.process.startswith(CHECKER_PREFIX)]):
        first = seq.pages[0]
        if first.since is not None or not seq.finished or first.database is None:
            continue
        log: dict[str, Tx] = {}
        for page in seq.pages:
            for tx in page.txs:
                if tx.transaction_id in log:
                    log[tx.transaction_id].count += tx.count
                    log[tx.transaction_id].max_hlc = max(log[tx.transaction_id].max_hlc, tx.max_hlc)
                else:
                    log[tx.transaction_id] = Tx(tx.transaction_id, tx.site_id, tx.hlc, tx.count, tx.max_hlc)
        out[first.database] = log
    return out


MISSED_IN_SEQUENCE = ExcusePolicy(
    "a logged transaction a paging sequence did not receive (completeness only; order, splits and sizes "
    "are never excused)",
    DEFAULT_EXCUSED,
)


def _may_be_missed(
    history: History, obs: Observations, seq: Sequence, page: Page, tx: Tx, acked_at: dict[str, float]
) -> bool:
    """The excuses of the completeness part, in one place: no attempt at the transaction was
    acknowledged before the request that should have held it was sent (it may have landed after
    that answer, below its HLC: a write of unknown outcome re-applied after a reconnect keeps its
    old HLC), or a fault or process action was in force during the sequence."""
    acked = acked_at.get(tx.transaction_id)
    if acked is None or acked > page.invoked.time:
        return True
    return bool(
        excuses(MISSED_IN_SEQUENCE, history, obs, seq.pages[0].invoked.time, seq.pages[-1].completed.time)
    )


@register(
    "changes-paging",
    "reads",
    "get_changes answers are HLC-ordered, cut at transaction boundaries within batch_size, and a "
    "paging sequence misses and repeats nothing of the log (own site excluded)",
    excuses=(MISSED_IN_SEQUENCE,),
    batch_size=Param(None, "the target's batchSize (profile/options); None: answer sizes not judged"),
)
def changes_paging(history: History, obs: Observations, params: dict[str, Any]) -> CheckResult:
    name = "changes-paging"
    batch = params["batch_size"]
    all_pages = pages(history)
    logs = final_logs(all_pages)
    acked_at = first_acknowledged(applies(history))
    violations: list[dict[str, Any]] = []
    answers = judged_sequences = 0
    no_log: set[str] = set()

    def where(page: Page) -> dict[str, Any]:
        return {
            "time": page.completed.time,
            "process": page.invoked.process,
            "op": page.invoked.f,
            "index": page.completed.index,
            "sinceHLC": page.since_text,
        }

    for seq in sequences(all_pages):
        seen: dict[str, int] = {}  # transactionId -> page number in the sequence
        for number, page in enumerate(seq.pages):
            if page.txs:
                answers += 1
            for before, after in zip(page.txs, page.txs[1:], strict=False):
                if after.hlc < before.hlc:
                    violations.append(
                        where(page)
                        | {"problem": f"change set {after.transaction_id} after a newer one: not HLC order"}
                    )
            for tx in page.txs:
                if tx.transaction_id in seen:
                    violations.append(
                        where(page)
                        | {
                            "problem": f"transaction {tx.transaction_id} in answers {seen[tx.transaction_id]} "
                            f"and {number} of one paging sequence: split or repeated"
                        }
                    )
                seen.setdefault(tx.transaction_id, number)
                if page.since is not None and tx.max_hlc <= page.since:
                    violations.append(
                        where(page)
                        | {"problem": f"change set {tx.transaction_id} not above the requested sinceHLC"}
                    )
                if page.site is not None and tx.site_id == page.site:
                    violations.append(
                        where(page) | {"problem": f"the requester's own change set {tx.transaction_id}"}
                    )
            if batch is not None and page.txs:
                before_last = page.count - page.txs[-1].count
                if page.count > int(batch) and before_last >= int(batch):
                    violations.append(
                        where(page)
                        | {
                            "problem": f"{page.count} changes over batch_size {batch}, not cut at the "
                            f"first transaction boundary ({before_last} before the last transaction)"
                        }
                    )
        first, last = seq.pages[0], seq.pages[-1]
        if first.invoked.process.startswith(CHECKER_PREFIX) or first.database is None:
            continue
        top = max((p.top for p in seq.pages if p.top is not None), default=None)
        if top is None:
            continue  # nothing received: completeness has no range to judge
        log = logs.get(first.database)
        if log is None:
            no_log.add(first.database)
            continue
        judged_sequences += 1
        got: dict[str, int] = {}
        for page in seq.pages:
            for tx in page.txs:
                got[tx.transaction_id] = got.get(tx.transaction_id, 0) + tx.count
        for tx in log.values():
            if tx.site_id == first.site or tx.max_hlc > top:
                continue
            if first.since is not None and tx.max_hlc <= first.since:
                continue
            holder = next((p for p in seq.pages if p.top is not None and p.top >= tx.max_hlc), last)
            if got.get(tx.transaction_id, 0) == tx.count:
                continue
            if _may_be_missed(history, obs, seq, holder, tx, acked_at):
                continue
            violations.append(
                where(holder)
                | {
                    "problem": f"transaction {tx.transaction_id}: {got.get(tx.transaction_id, 0)} of its "
                    f"{tx.count} changes received by the paging sequence",
                    "first_since": first.since_text,
                }
            )
    if violations:
        return failed(name, f"{len(violations)} paging violations in {answers} answers", params, violations)
    if answers == 0:
        return unknown(name, "no get_changes answer held a change set", params)
    notes = []
    if batch is None:
        notes.append("batch sizes not judged (batch_size not set)")
    if no_log:
        notes.append(f"no final log read of {', '.join(sorted(no_log))}: completeness not judged")
    note = f"; {'; '.join(notes)}" if notes else ""
    if judged_sequences == 0:
        return unknown(
            name, f"{answers} answers ordered and unsplit, but no sequence judged against a log{note}", params
        )
    return passed(
        name, f"{answers} answers ordered and unsplit, {judged_sequences} sequences complete{note}", params
    )
