"""snapshot-exactness on hand-made histories: WS snapshot streams against the state at their
header's HLC, computed from the final log read of `checker-db1`."""

from __future__ import annotations

from typing import Any

from harness.checks.registry import run_check
from harness.history import OpName
from harness.model.capping import cap_history
from harness.model.changesets import max_hlc_text
from tests.harness.checks.script import WALL0, Script, run

BIG = "x" * 5000


def _entry(change: dict[str, Any], value: Any = None) -> dict[str, Any]:
    return {
        "column": change["column"],
        "hlc": change["hlc"],
        "value": change["value"] if value is None else value,
        "pk": change["pk"],
    }


def _chunks(
    header_hlc: str,
    entries: list[dict[str, Any]],
    tombs: list[dict[str, Any]] | None = None,
    entries_written: int | None = None,
    tombstones_first: bool = False,
) -> list[dict[str, Any]]:
    tomb_chunks = (
        [{"type": "tombstone", "schema": "main", "table": "t", "entries": tombs}] if tombs is not None else []
    )
    table = [
        {"type": "table-start", "schema": "main", "table": "t", "estimatedEntries": len(entries)},
        {"type": "column-versions", "schema": "main", "table": "t", "entries": entries},
        {
            "type": "table-end",
            "schema": "main",
            "table": "t",
            "entriesWritten": len(entries) if entries_written is None else entries_written,
        },
    ]
    header = {
        "type": "header",
        "siteId": "A" * 22,
        "hlc": header_hlc,
        "snapshotFormat": 1,
        "tableCount": 1,
        "migrationCount": 0,
        "snapshotId": "snap-1",
    }
    footer = {
        "type": "footer",
        "snapshotId": "snap-1",
        "totalTables": 1,
        "totalEntries": len(entries),
        "totalMigrations": 0,
    }
    body = tomb_chunks + table if tombstones_first else table + tomb_chunks
    return [header, *body, footer]


def _stream(
    s: Script,
    process: str,
    chunks: list[dict[str, Any]],
    checkpoint: dict[str, Any] | None = None,
    cut_checkpoint: dict[str, Any] | None = None,
) -> None:
    f = OpName.SNAPSHOT if checkpoint is None else OpName.RESUME_SNAPSHOT
    op = s.history.invoke(process, f, {"checkpoint": checkpoint, "cutAfterChunks": None})
    s.t += 0.01
    for chunk in chunks:
        s.recv(process, {"type": "snapshot_chunk", "chunk": chunk})
    if cut_checkpoint is not None:
        s.history.complete(op, "fail", {"ended": "cut", "checkpoint": cut_checkpoint}, "cut_by_client")
        return
    s.recv(process, {"type": "snapshot_complete"})
    s.history.complete(op, "ok", {"ended": "complete", "checkpoint": None})


def _log(s: Script, change_sets: list[dict[str, Any]]) -> None:
    s.connect("checker-db1")
    invoked = s.history.invoke("checker-db1", OpName.GET_CHANGES, {"sinceHLC": None})
    s.history.complete(invoked, "ok", {"type": "changes", "changeSets": change_sets})
    invoked = s.history.invoke("checker-db1", OpName.GET_CHANGES, {"sinceHLC": max_hlc_text(change_sets)})
    s.history.complete(invoked, "ok", {"type": "changes", "changeSets": []})


def _world(value: Any = 1) -> tuple[Script, list[dict[str, Any]], dict[str, Any]]:
    """w writes pk 1 twice (the second wins) and pk 2 and 3 once, then deletes pk 3."""
    s = Script()
    s.at(0.0).connect("w").connect("r")
    sets = [
        s.change_set("w", value=value, pk=1),
        s.change_set("w", value="newer", pk=1),
        s.change_set("w", value=value, pk=2),
        s.change_set("w", value=value, pk=3),
    ]
    for i, cs in enumerate(sets):
        s.at(1.0 + i).apply("w", [cs])
    delete = s.delete_set("w", pk=3)
    s.at(5.0).apply("w", [delete])
    return s, [*sets, delete], delete


def _finish(s: Script, log: list[dict[str, Any]]) -> Script:
    s.at(20.0)
    _log(s, log)
    return s


def _good_entries(sets: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [_entry(sets[1]["changes"][0]), _entry(sets[2]["changes"][0]), _entry(sets[3]["changes"][0])]


def _tomb(delete: dict[str, Any]) -> dict[str, Any]:
    return {"pk": delete["changes"][0]["pk"], "hlc": delete["changes"][0]["hlc"], "createdAt": 0}


def _judge(entries_of: Any, policy: str | None = "revive", **chunk_args: Any) -> Any:
    s, log, delete = _world()
    entries = entries_of(log)
    s.at(10.0)
    _stream(s, "r", _chunks(log[-1]["hlc"], entries, [_tomb(delete)], **chunk_args))
    return run(_finish(s, log), "snapshot-exactness", tombstone_policy=policy)


def test_the_state_at_the_header_hlc_in_order_passes() -> None:
    result = _judge(_good_entries)
    assert result.status == "pass", result.evidence
    assert "3 entries" in result.summary  # pk 3's cell is older than its tombstone: not judged


def test_without_a_policy_deleted_rows_are_left_out_and_said() -> None:
    result = _judge(_good_entries, policy=None)
    assert result.status == "pass" and "not judged (tombstone_policy not set)" in result.summary


def test_chunks_out_of_order_fail() -> None:
    result = _judge(_good_entries, tombstones_first=True)
    assert result.status == "fail" and "out of the order" in result.evidence[0]["problem"]


def test_a_cell_sent_twice_fails() -> None:
    result = _judge(lambda log: [*_good_entries(log), _entry(log[2]["changes"][0])])
    assert result.status == "fail"
    assert any("sent 2 times" in e["problem"] for e in result.evidence)


def test_an_older_value_of_a_cell_fails() -> None:
    result = _judge(lambda log: [_entry(log[0]["changes"][0]), *_good_entries(log)[1:]])
    assert result.status == "fail" and "older value" in result.evidence[0]["problem"]


def test_a_missing_cell_fails() -> None:
    result = _judge(lambda log: _good_entries(log)[::2])
    assert result.status == "fail" and "missing" in result.evidence[0]["problem"]


def test_a_wrong_value_for_its_hlc_fails() -> None:
    result = _judge(lambda log: [_entry(log[1]["changes"][0], value="forged"), *_good_entries(log)[1:]])
    assert result.status == "fail" and "value differs" in result.evidence[0]["problem"]


def test_counts_that_disagree_fail() -> None:
    result = _judge(_good_entries, entries_written=7)
    assert result.status == "fail" and "entriesWritten 7" in result.evidence[0]["problem"]


def test_an_entry_newer_than_the_header_fails() -> None:
    s, log, delete = _world()
    s.at(10.0)
    _stream(s, "r", _chunks(log[0]["hlc"], _good_entries(log), [_tomb(delete)]))
    result = run(_finish(s, log), "snapshot-exactness", tombstone_policy="revive")
    assert result.status == "fail"
    assert any(
        e["problem"].startswith("cell") and "newer than the header" in e["problem"] for e in result.evidence
    )


def test_a_missing_tombstone_fails_under_a_policy() -> None:
    s, log, _ = _world()
    s.at(10.0)
    _stream(s, "r", _chunks(log[-1]["hlc"], _good_entries(log), None))
    result = run(_finish(s, log), "snapshot-exactness", tombstone_policy="revive")
    assert result.status == "fail" and "tombstone" in result.evidence[0]["problem"]


def test_a_write_acknowledged_after_the_snapshot_was_asked_may_be_absent() -> None:
    s, log, delete = _world()
    s.at(10.0)
    _stream(s, "r", _chunks(log[-1]["hlc"], _good_entries(log), [_tomb(delete)]))
    s.connect("v")
    late = s.raced_change_set("v", wall_ms=int(WALL0), value="late", pk=9)  # a lagging clock: below H
    s.at(11.0).apply("v", [late])
    assert run(_finish(s, [*log, late]), "snapshot-exactness", tombstone_policy="revive").status == "pass"


def test_capped_chunks_are_judged_by_value_digest() -> None:
    def world(forge: bool) -> Script:
        s, log, delete = _world(value=BIG)
        entries = _good_entries(log)
        if forge:
            entries[1] = _entry(log[2]["changes"][0], value=BIG + "!")
        s.at(10.0)
        _stream(s, "r", _chunks(log[-1]["hlc"], entries, [_tomb(delete)]))
        return _finish(s, log)

    for forge, expected in ((False, "pass"), (True, "fail")):
        s = world(forge)
        capped = cap_history(s.history)
        chunk = next(
            m.payload["chunk"]
            for m in capped.messages
            if m.type == "snapshot_chunk" and "$cells" in m.payload["chunk"]
        )
        assert BIG not in str(chunk)
        result = run_check("snapshot-exactness", capped, s.obs, {"tombstone_policy": "revive"})
        assert result.status == expected, result.evidence
        assert run(s, "snapshot-exactness", tombstone_policy="revive").status == expected


def _resumed(skip: int) -> Script:
    """A stream cut after the first entry of table t, resumed from its checkpoint; the resumed
    stream skips `skip` entries (1 is right)."""
    s, log, delete = _world()
    entries = _good_entries(log)
    at = log[-1]["hlc"]
    head = [
        *_chunks(at, entries)[:2],
        {"type": "column-versions", "schema": "main", "table": "t", "entries": entries[:1]},
    ]
    checkpoint = {
        "snapshotId": "snap-1",
        "siteId": "A" * 22,
        "hlc": at,
        "lastTableIndex": 0,
        "lastEntryIndex": 1,
        "completedTables": [],
        "entriesProcessed": 1,
        "createdAt": 0,
    }
    s.at(10.0)
    _stream(s, "r", head, cut_checkpoint=checkpoint)
    s.close("r", by_client=True).connect("r")
    rest = _chunks(at, entries[skip:], [_tomb(delete)])
    _stream(s, "r", rest, checkpoint=checkpoint)
    return _finish(s, log)


def _cut_with_frames_after(counts: dict[str, int] | None) -> Script:
    """The cut stream's frames run past its cut (they arrived before the client closed): the
    client took the header, table-start and the first entry of a 3-entry chunk (`counts`, as its
    outcome records them), then resumed from entry 1."""
    s, log, delete = _world()
    entries = _good_entries(log)
    at = log[-1]["hlc"]
    received = _chunks(at, entries, [_tomb(delete)])  # the whole stream reached the socket
    checkpoint = {
        "snapshotId": "snap-1",
        "siteId": "A" * 22,
        "hlc": at,
        "lastTableIndex": 0,
        "lastEntryIndex": 1,
        "completedTables": [],
        "entriesProcessed": 1,
        "createdAt": 0,
    }
    s.at(10.0)
    op = s.history.invoke("r", OpName.SNAPSHOT, {"checkpoint": None, "cutAfterChunks": None})
    for chunk in received:
        s.recv("r", {"type": "snapshot_chunk", "chunk": chunk})
    s.history.complete(
        op, "fail", {"ended": "cut", "checkpoint": checkpoint, **(counts or {})}, "cut_by_client"
    )
    s.close("r", by_client=True).connect("r")
    _stream(s, "r", _chunks(at, entries[1:], [_tomb(delete)]), checkpoint=checkpoint)
    return _finish(s, log)


def test_frames_received_after_a_cut_are_not_counted_as_read() -> None:
    result = run(
        _cut_with_frames_after({"chunks": 3, "entries": 1}), "snapshot-exactness", tombstone_policy="revive"
    )
    assert result.status == "pass", result.evidence
    # Without the counts the whole recorded stream is the first part: its entries 2 and 3 repeat.
    result = run(_cut_with_frames_after(None), "snapshot-exactness", tombstone_policy="revive")
    assert result.status == "fail" and "sent 2 times" in result.evidence[0]["problem"]


def _resumed_after_http(cut_at: float) -> Script:
    """An HTTP stream (no chunks recorded) cut after one entry of the state at log[2]'s HLC,
    resumed over WS at 10 s with pk 3 (written at 4 s, deleted at 5 s), newer than that HLC."""
    s, log, delete = _world()
    entries = _good_entries(log)
    at = log[2]["hlc"]
    checkpoint = {
        "snapshotId": "snap-1",
        "siteId": "A" * 22,
        "hlc": at,
        "lastTableIndex": 0,
        "lastEntryIndex": 1,
        "completedTables": [],
        "entriesProcessed": 1,
        "createdAt": 0,
    }
    s.at(cut_at)
    op = s.history.invoke("r", OpName.HTTP_SNAPSHOT, {"databaseId": "db1", "cutAfterChunks": None})
    outcome = {"ended": "cut", "checkpoint": checkpoint, "chunks": 3, "entries": 1}
    s.history.complete(op, "fail", outcome, "cut_by_client")
    s.at(10.0)
    _stream(s, "r", _chunks(at, entries[1:], [_tomb(delete)]), checkpoint=checkpoint)
    return _finish(s, log)


def test_a_resume_after_writes_may_hold_newer_entries_even_after_an_http_first_part() -> None:
    result = run(_resumed_after_http(3.5), "snapshot-exactness", tombstone_policy="revive")
    # repeats only: nothing judged against the log, so unknown, never a false "newer" failure
    assert result.status == "unknown" and "written between a cut and its resume" in result.summary
    # Cut after every write: nothing was written between, so the newer entry is not excused.
    result = run(_resumed_after_http(6.0), "snapshot-exactness", tombstone_policy="revive")
    assert result.status == "fail" and "newer than the header's HLC" in result.evidence[0]["problem"]


def test_a_resume_that_yields_exactly_the_rest_passes() -> None:
    result = run(_resumed(1), "snapshot-exactness", tombstone_policy="revive")
    assert result.status == "pass", result.evidence


def test_a_resume_that_repeats_an_entry_fails() -> None:
    result = run(_resumed(0), "snapshot-exactness", tombstone_policy="revive")
    assert result.status == "fail" and "sent 2 times" in result.evidence[0]["problem"]


def test_a_resume_that_skips_too_much_fails() -> None:
    result = run(_resumed(2), "snapshot-exactness", tombstone_policy="revive")
    assert result.status == "fail" and "missing" in result.evidence[0]["problem"]


def test_no_snapshot_is_unknown_and_no_log_leaves_content_unknown() -> None:
    s, _, _ = _world()
    assert run(s, "snapshot-exactness").status == "unknown"
    s2, log, delete = _world()
    _stream(s2, "r", _chunks(log[-1]["hlc"], _good_entries(log), [_tomb(delete)]))
    result = run(s2, "snapshot-exactness", tombstone_policy="revive")
    assert result.status == "unknown" and "no final log" in result.summary


def test_a_kill_between_the_stream_and_the_log_read_excuses_content_but_a_later_shutdown_does_not() -> None:
    from harness.checks.observations import ProcessEvent

    s, log, delete = _world()
    s.at(10.0)
    entries = _good_entries(log)[::2]  # a cell missing
    _stream(s, "r", _chunks(log[-1]["hlc"], entries, [_tomb(delete)]))
    _finish(s, log)
    s.obs.process.append(ProcessEvent(30.0, "sigterm", None, True))  # the graceful end, after the reads
    assert run(s, "snapshot-exactness", tombstone_policy="revive").status == "fail"
    s.obs.process.append(ProcessEvent(15.0, "sigkill", None, True))
    result = run(s, "snapshot-exactness", tombstone_policy="revive")
    assert result.status == "unknown" and "killed or restarted" in result.summary
