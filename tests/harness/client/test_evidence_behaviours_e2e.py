"""The behaviours that give the stronger checks their evidence, against the correct coordinator:
pagers page from the largest HLC of each answer until an empty one (WS and HTTP) over
transactions larger than the batch size, and subscribers that leave by dropping TCP are
announced as gone to the others."""

from __future__ import annotations

import asyncio
import itertools
import random
from pathlib import Path
from typing import Any

from harness.checks import Observations, load_all, run_check
from harness.checks.capabilities import REFERENCE_COORDINATOR
from harness.client.behaviours import Pager, Subscriber, Writer
from harness.client.sync_client import ClientConfig, SyncClient
from harness.history import History
from harness.model.changesets import max_hlc_text
from tests.harness.client.coordinator_process import RunningCoordinator, coordinator

PAGE_OPS = ("get_changes", "http_get_changes")


def _client(server: RunningCoordinator, history: History, name: str, seed: int) -> SyncClient:
    return SyncClient(name, ClientConfig(server.ws_url, "shared"), history, random.Random(seed))


def _answer(f: str, value: Any) -> list[dict[str, Any]]:
    if f == "get_changes":
        return list(value.get("changeSets") or [])
    return list(((value.get("body") or {}).get("data") or {}).get("changes") or [])


def _sequences(history: History, process: str) -> list[list[tuple[str | None, list[dict[str, Any]]]]]:
    """The pager's paging sequences: (sinceHLC, answer) per request, each ending at an empty answer."""
    out: list[list[tuple[str | None, list[dict[str, Any]]]]] = [[]]
    for invoked, done in history.pairs():
        if invoked.process != process or invoked.f not in PAGE_OPS:
            continue
        assert done is not None and done.type == "ok", done
        batch = _answer(invoked.f, done.value)
        out[-1].append((invoked.value.get("sinceHLC"), batch))
        if not batch:
            out.append([])
    return [s for s in out if s]


async def test_pagers_page_whole_transactions_from_the_last_hlc_received(tmp_path: Path) -> None:
    history = History(payload_cap=None)
    with coordinator(tmp_path, "--batch-size", "5") as server:
        writer = Writer(
            client=_client(server, history, "writer", 1),
            rng=random.Random(1),
            count=6,
            interval_s=0.0,
            keys=1000,
            changes_per_set=8,  # every transaction larger than a batch
            delete_share=0.0,
            duration_s=20,
        )
        assert await writer.run() == "done"
        pagers = [
            Pager(
                client=_client(server, history, f"pager-{via}", 2 + i),
                rng=random.Random(2),
                rounds=2,
                interval_s=0.0,
                http_share=share,
                restart_share=0.0,
                duration_s=20,
                final_catch_up=False,  # its catch-up is a full WS pull, judged elsewhere
            )
            for i, (via, share) in enumerate((("ws", 0.0), ("http", 1.0)))
        ]
        assert await asyncio.gather(*(p.run() for p in pagers)) == ["done", "done"]
    for pager in ("pager-ws", "pager-http"):
        sequences = _sequences(history, pager)
        assert len(sequences) == 2, sequences  # two rounds, each until an empty answer
        first, second = sequences
        assert first[0][0] is None and len(first) == 7  # six transactions, one per page, then empty
        for (_, previous), (since, _) in itertools.pairwise(first):
            assert since == max_hlc_text(previous)  # from the largest HLC of the previous answer
        assert all(len(cs["changes"]) == 8 for _, batch in first for cs in batch)  # never split
        ids = [cs["hlc"] for _, batch in first for cs in batch]
        assert len(ids) == len(set(ids)) == 6  # nothing missed, nothing repeated
        assert second == [(max_hlc_text(first[-2][1]), [])]  # goes on from the last HLC
    ops = {op.f for op in history.ops if op.process == "pager-http"}
    assert "http_get_changes" in ops and "get_changes" not in ops


async def test_a_subscriber_that_drops_tcp_is_announced_gone(tmp_path: Path) -> None:
    load_all()
    history, obs = History(), Observations(capabilities=dict(REFERENCE_COORDINATOR))
    with coordinator(tmp_path, "--heartbeat-interval-ms", "200") as server:
        watcher = Subscriber(
            client=_client(server, history, "watcher", 1), rng=random.Random(1), listen_s=2.5, duration_s=20
        )
        dropper = Subscriber(
            client=_client(server, history, "dropper", 2),
            rng=random.Random(2),
            listen_s=0.5,
            abort_share=1.0,
            duration_s=20,
            final_catch_up=False,
        )
        await asyncio.gather(watcher.run(), dropper.run())
    sent = [m for m in history.messages if m.process == "dropper" and m.direction == "send"]
    assert sent and not any(m.payload.get("type") == "close" for m in sent)
    assert {
        e.data.get("sent_code") for e in history.events if e.process == "dropper" and e.kind == "close"
    } == {None}
    dropper = next(
        e.data["connectionId"] for e in history.events if e.process == "dropper" and e.kind == "session"
    )
    seen, gone = False, False  # the full presence list, or presence_delta: clients accept both
    for m in history.received(process="watcher"):
        if m.payload.get("type") == "presence":
            ids = {s.get("connectionId") for s in m.payload.get("sessions") or []}
            seen, gone = seen or dropper in ids, gone or (seen and dropper not in ids)
        elif m.payload.get("type") == "presence_delta":
            seen = seen or dropper in {s.get("connectionId") for s in m.payload.get("joined") or []}
            gone = gone or dropper in (m.payload.get("left") or [])
    assert seen and gone, "the watcher was never told the dropper left"
    result = run_check("presence-accuracy", history, obs, {})
    assert result.status == "pass", result.summary
