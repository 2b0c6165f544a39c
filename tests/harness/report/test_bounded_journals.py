"""Bounded journals: large frames are recorded as stubs that keep what the checks read, so every
check gives the same verdict on a capped and a full history; the journal is gzip-compressed,
stores a repeated replica state once, and a plain `journal.json` is still read."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import random
from pathlib import Path
from typing import Any

import orjson

from harness.checks import Observations, load_all, run_check
from harness.checks.capabilities import REFERENCE_COORDINATOR
from harness.client.behaviours import BadInput, Reader, Snapshotter, Subscriber, Writer, catch_up_all
from harness.client.recorder import Recorder
from harness.client.sync_client import ClientConfig, SyncClient
from harness.history import DEFAULT_PAYLOAD_CAP, History, OpName
from harness.model.capping import CAPPED, cap_history, cap_payload, is_capped
from harness.report import load_journal, record_from_journal, write_run_report
from harness.report.journal import JOURNAL_NAME, dumps_journal, journal_path
from tests.harness.checks.script import Script
from tests.harness.client.coordinator_process import RunningCoordinator, coordinator
from tests.harness.report.builders import make_run

BIG = "v" * 6000  # one value over the 4 KiB cap


def _verdicts(history: History, obs: Observations) -> dict[str, tuple[str, str]]:
    return {name: (r.status, r.summary) for name in load_all() if (r := run_check(name, history, obs))}


def _assert_same_verdicts(full: History, obs: Observations) -> History:
    capped = cap_history(full)
    assert any(is_capped(m.payload) for m in capped.messages), "nothing was capped: the test proves nothing"
    assert _verdicts(capped, obs) == _verdicts(full, obs)
    return capped


# stubs ------------------------------------------------------------------------------------------
def test_a_large_push_keeps_seq_transaction_ids_and_the_digest_of_its_raw_text() -> None:
    s = Script()
    change_sets = [s.change_set("w", value=BIG, pk=1), s.change_set("w", value=BIG, pk=2)]
    payload = {"type": "push_changes", "seq": 7, "changeSets": change_sets}
    raw = orjson.dumps(payload).decode()
    stub = cap_payload(payload, DEFAULT_PAYLOAD_CAP, raw)
    assert stub["type"] == "push_changes" and stub["seq"] == 7
    assert stub[CAPPED] == {"bytes": len(raw), "sha256": hashlib.sha256(raw.encode()).hexdigest()}
    assert [cs["transactionId"] for cs in stub["changeSets"]] == [cs["transactionId"] for cs in change_sets]
    assert [cs["hlc"] for cs in stub["changeSets"]] == [cs["hlc"] for cs in change_sets]
    assert [cs[CAPPED] for cs in stub["changeSets"]] == [
        {"changes": 1, "migrations": 0, "maxHlc": cs["changes"][0]["hlc"]} for cs in change_sets
    ]
    assert BIG not in json.dumps(stub) and len(json.dumps(stub)) < 1000
    small = {"type": "push_changes", "seq": 8, "changeSets": [s.change_set("w")]}
    assert cap_payload(small, DEFAULT_PAYLOAD_CAP) is small
    assert cap_payload(payload, None) is payload  # --full-payloads


def test_sent_frames_and_unknown_types_keep_only_small_fields() -> None:
    s = Script()
    sent = {"type": "apply_changes", "requestId": "w-1", "changes": [s.change_set("w", value=BIG)]}
    stub = cap_payload(sent, DEFAULT_PAYLOAD_CAP, direction="send")
    assert stub["requestId"] == "w-1" and "changes" not in stub and stub[CAPPED]["dropped"] == ["changes"]
    chunk = {"type": "snapshot_chunk", "chunk": {"type": "column-versions", "table": "t", "entries": [BIG]}}
    kept = cap_payload(chunk, DEFAULT_PAYLOAD_CAP)["chunk"]
    assert kept == {"type": "column-versions", "table": "t", "$entries": 1}


def test_the_recorder_caps_by_the_historys_cap() -> None:
    payload = {"type": "changes", "changeSets": [Script().change_set("w", value=BIG)]}
    capped, full = History(), History(payload_cap=None)
    Recorder(capped, "c").message("recv", payload)
    Recorder(full, "c").message("recv", payload)
    assert is_capped(capped.messages[0].payload) and full.messages[0].payload is payload


# same verdicts ----------------------------------------------------------------------------------
def _rich_script(bad: bool) -> Script:
    """Writers with large values, pushes (one malformed when `bad`), presence, a seq gap when
    `bad`: histories where capped stubs carry every verdict."""
    s = Script()
    s.connect("w")
    s.connect("r")
    s.at(0.5)
    sets = [s.change_set("w", value=BIG, pk=n) for n in range(3)]
    for n, cs in enumerate(sets):
        s.at(1 + n)
        s.apply("w", [cs], seq=n + 1)
        if bad and n == 1:
            continue  # a write never delivered, a seq skipped
        pushed = [cs]
        if bad and n == 2:
            pushed = [cs | {"hlc": "not base64!"}]  # malformed: must be kept whole and reported
        s.push("r", pushed, seq=n + 1)
    s.recv("r", {"type": "presence", "databaseId": "db1", "sessions": [{"connectionId": "x"}] * 80})
    s.heartbeat("r")
    pulled = [cs | {"changes": [{"type": "column"}]} for cs in sets[:1]] if bad else sets
    body = {"ok": True, "data": {"changes": pulled + sets}}
    s.op("r", OpName.HTTP_GET_CHANGES, "ok", {"databaseId": "db1"}, {"status": 200, "body": body})
    s.at(10.0)
    s.replica("w", sets)
    s.replica("r", sets if not bad else sets[:1])
    return s


def test_every_check_gives_the_same_verdict_capped_and_full_on_hand_made_histories() -> None:
    for bad in (False, True):
        s = _rich_script(bad)
        capped = _assert_same_verdicts(s.history, s.obs)
        wire = run_check("well-formed-messages", capped, s.obs)
        assert wire.status == ("fail" if bad else "pass"), wire.summary
        assert len(wire.evidence) == (2 if bad else 0)  # the push and the HTTP answer
        http = next(o for o in capped.ops if o.f == OpName.HTTP_GET_CHANGES and o.type == "ok")
        assert CAPPED in http.value and BIG not in json.dumps(http.value["body"]["data"]["changes"][-1])
        delivery = run_check("broadcast-delivery", capped, s.obs)
        assert delivery.status == ("fail" if bad else "pass"), delivery.summary
    empty = Script()
    assert _verdicts(cap_history(empty.history), empty.obs) == _verdicts(empty.history, empty.obs)
    assert run_check("well-formed-messages", cap_history(empty.history), empty.obs).status == "unknown"


def _client(server: RunningCoordinator, history: History, name: str, seed: int) -> SyncClient:
    return SyncClient(name, ClientConfig(server.ws_url, "shared"), history, random.Random(seed))


async def test_every_check_gives_the_same_verdict_on_a_real_recorded_history(tmp_path: Path) -> None:
    """Clients against the coordinator, recorded whole, then capped: no verdict moves."""
    history, obs = History(payload_cap=None), Observations(capabilities=dict(REFERENCE_COORDINATOR))
    with coordinator(tmp_path, "--heartbeat-interval-ms", "200") as server:
        behaviours = [
            Writer(
                client=_client(server, history, "writer", 1),
                rng=random.Random(11),
                count=12,
                interval_s=0.02,
                value_bytes=8000,
                changes_per_set=2,
                duration_s=20,
            ),
            Subscriber(
                client=_client(server, history, "sub", 2), rng=random.Random(12), listen_s=1.5, duration_s=20
            ),
            Reader(
                client=_client(server, history, "reader", 3),
                rng=random.Random(13),
                polls=3,
                interval_s=0.1,
                duration_s=20,
            ),
            Snapshotter(
                client=_client(server, history, "snap", 4), rng=random.Random(14), count=2, duration_s=20
            ),
            BadInput(client=_client(server, history, "prober", 5), rng=random.Random(15), duration_s=20),
        ]
        reasons = await asyncio.gather(*(b.run() for b in behaviours))
        assert all(r == "done" for r in reasons), reasons
        assert await catch_up_all([b.client for b in behaviours[:4]]) == []
    capped = _assert_same_verdicts(history, obs)
    frames = len(orjson.dumps(capped.to_json()["messages"]))
    assert frames < len(orjson.dumps(history.to_json()["messages"])) / 3
    passed = {n for n, (status, _) in _verdicts(capped, obs).items() if status == "pass"}
    assert passed >= {"well-formed-messages", "ordered-seq", "convergence", "presence-accuracy"}, passed


# the journal file ---------------------------------------------------------------------------------
def test_the_journal_is_gzip_and_stores_a_repeated_replica_state_once(reports: Path) -> None:
    run = make_run()
    state = {"cells": [["t", "[1]", "c", BIG]], "tombstones": [], "maxHlc": None}
    for process in ("a", "b", "a"):
        run.history.event(process, "replica", source="client", caught_up=True, state=state)
    run_dir = write_run_report(reports, run)
    path = run_dir / JOURNAL_NAME
    assert path.name == "journal.json.gz" and journal_path(run_dir) == path
    text = gzip.decompress(path.read_bytes()).decode()
    assert text.count(BIG) == 1 and text.count('"$same_as"') == 2
    journal = load_journal(run_dir)
    replicas = [e for e in journal["history"]["events"] if e["kind"] == "replica"]
    assert [e["data"]["state"] for e in replicas] == [state] * 3
    assert record_from_journal(journal).history.to_json() == run.history.to_json()


def test_a_plain_journal_json_is_still_read(tmp_path: Path) -> None:
    journal: dict[str, Any] = {"format": "sync-chaos-harness/journal", "format_version": 1, "run_id": "x"}
    (tmp_path / "journal.json").write_text(dumps_journal(journal))
    assert journal_path(tmp_path) == tmp_path / "journal.json"
    assert load_journal(tmp_path)["run_id"] == "x"


def test_verify_reads_the_gzip_journal_of_its_job(reports: Path) -> None:
    from harness.verify import Job, _own_journal

    run_dir = write_run_report(reports, make_run())
    job = Job("some-bug", Path("scenarios/bugs/smoke.yaml"), True, 1, reports)
    found = _own_journal(job)
    assert not isinstance(found, str), found
    assert found[0] == run_dir and found[1]["run_id"] == run_dir.name
    (run_dir / JOURNAL_NAME).write_bytes(b"\x1f\x8b cut short")
    assert "unreadable journal" in str(_own_journal(job))


def test_full_payloads_is_an_option_of_run_and_suite() -> None:
    from harness.cli import _parser

    parser = _parser()
    assert parser.parse_args(["run", "x.yaml", "--full-payloads"]).full_payloads is True
    assert parser.parse_args(["run", "x.yaml"]).full_payloads is False
    assert parser.parse_args(["suite", "--full-payloads"]).full_payloads is True
