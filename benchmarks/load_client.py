"""WebSocket apply->ack round trips per second from Locust (harness/load's writer users)
beside a plain asyncio `websockets` client, against one coordinator in the same run; then
Locust's distributed mode with one worker and with two. One JSON document on stdout.

    .venv/bin/python -m benchmarks.load_client                 # defaults: about 45 s
    .venv/bin/python -m benchmarks.load_client --sessions 20 --duration-s 10

Every client runs the same closed loop per session: send one change set, wait for its
apply_result, send the next. Locust's users are paced by `constant_throughput(--rate)`; the
default rate is the users' ceiling (harness/load/profiles.py MAX_RATE), far above what one
session achieves here, so the loop is closed in practice. Targets (issue 14): Locust >= 0.5x
the asyncio client; two workers >= 1.6x one worker. On a 2-core machine the server competes
with the clients for the same cores, so the ratios say as much about the machine as the client.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect

from benchmarks._coordinator import Coordinator
from benchmarks._measure import load_info, percentiles_ms
from benchmarks._run import HOST, REPO, run_async
from harness.load import wire
from harness.load.profiles import MAX_RATE, LoadParams

LOCUSTFILE = REPO / "harness" / "load" / "locustfile.py"


async def asyncio_client(url: str, sessions: int, duration_s: float) -> dict[str, Any]:
    """`sessions` websockets sessions, each in a closed apply->ack loop for `duration_s`."""
    latencies: list[int] = []
    stop_at = time.monotonic() + duration_s

    async def session(n: int) -> int:
        site = wire.new_site_id()
        clock = wire.Clock(site)
        done = 0
        async with connect(url, max_size=2**24) as ws:
            hello = {
                "type": "handshake",
                "databaseId": f"bench-asyncio-{n % 4}",
                "siteId": wire.site_id_text(site),
                "protocolVersion": 1,
            }
            await ws.send(json.dumps(hello))
            while json.loads(await ws.recv()).get("type") != "handshake_ack":
                pass
            while time.monotonic() < stop_at:
                done += 1
                rid = f"a{n}:{done}"
                started = time.perf_counter_ns()
                await ws.send(
                    json.dumps(
                        {
                            "type": "apply_changes",
                            "changes": [wire.change_set(clock, f"a{n}", done)],
                            "requestId": rid,
                        }
                    )
                )
                while True:
                    frame = json.loads(await ws.recv())
                    if frame.get("type") == "apply_result" and frame.get("requestId") == rid:
                        break
                latencies.append(time.perf_counter_ns() - started)
        return done

    t0 = time.monotonic()
    counts = await asyncio.gather(*(session(n) for n in range(sessions)))
    elapsed = time.monotonic() - t0
    return {
        "round_trips": sum(counts),
        "seconds": round(elapsed, 3),
        "per_s": round(sum(counts) / elapsed, 1),
        "latency": percentiles_ms(latencies),
    }


async def locust_run(
    http_url: str, sessions: int, duration_s: float, rate: float, workers: int, tmp: Path
) -> dict[str, Any]:
    """One Locust process (workers=0) or a master with `workers` worker processes."""
    params = LoadParams(
        profile="steady",
        users=sessions,
        spawn_rate=500,
        duration_s=duration_s,
        rate=rate,
        databases=4,
        mix={"writer": 1},
        history_max_ops=0,
        database_prefix=f"bench-w{workers}-",
    )
    env = dict(os.environ) | params.to_env()
    env["PYTHONPATH"] = str(REPO)
    stats = tmp / f"stats-{workers}"
    base = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--host",
        http_url,
        "--loglevel",
        "WARNING",
    ]
    main = [*base, "--headless", "--only-summary", "--json-file", str(stats), "--stop-timeout", "3"]
    procs = []
    if workers:
        port = str(_free_port())
        main += [
            "--master",
            "--expect-workers",
            str(workers),
            "--master-bind-host",
            HOST,
            "--master-bind-port",
            port,
        ]
    log = (tmp / f"locust-{workers}.log").open("wb")
    procs.append(await asyncio.create_subprocess_exec(*main, stdout=log, stderr=log, env=env, cwd=str(REPO)))
    for _ in range(workers):
        procs.append(
            await asyncio.create_subprocess_exec(
                *base,
                "--worker",
                "--master-host",
                HOST,
                "--master-port",
                port,
                stdout=log,
                stderr=log,
                env=env,
                cwd=str(REPO),
            )
        )
    try:
        await asyncio.wait_for(procs[0].wait(), duration_s + 60)
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.terminate()
            await proc.wait()
        log.close()
    entries = json.loads((tmp / f"stats-{workers}.json").read_text())
    ack = [e for e in entries if e["name"] == "apply->ack"]
    requests = sum(e["num_requests"] for e in ack)
    start = min(e["start_time"] for e in ack)
    last = max(e["last_request_timestamp"] for e in ack)
    return {
        "workers": workers,
        "round_trips": requests,
        "failures": sum(e["num_failures"] for e in ack),
        "seconds": round(last - start, 3),
        "per_s": round(requests / (last - start), 1) if last > start else 0.0,
        "avg_ms": round(sum(e["total_response_time"] for e in ack) / requests, 3) if requests else None,
    }


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


async def driver(args: argparse.Namespace) -> int:
    coordinator = Coordinator(["--max-connections", "10000"])
    tmp = Path(tempfile.mkdtemp(prefix="bench-load-"))
    try:
        await coordinator.start()
        http_url = f"http://{HOST}:{coordinator.port}{coordinator.base_path}"
        ws_url = f"ws://{HOST}:{coordinator.port}{coordinator.ws_path}"
        plain = await asyncio_client(ws_url, args.sessions, args.duration_s)
        one = await locust_run(http_url, args.sessions, args.duration_s, args.rate, 0, tmp)
        w1 = await locust_run(http_url, args.sessions, args.duration_s, args.rate, 1, tmp)
        w2 = await locust_run(http_url, args.sessions, args.duration_s, args.rate, 2, tmp)
        out = {
            "benchmark": "load_client",
            "sessions": args.sessions,
            "duration_s": args.duration_s,
            "rate_per_user": args.rate,
            "asyncio_websockets": plain,
            "locust_one_process": one,
            "locust_vs_asyncio": round(one["per_s"] / plain["per_s"], 3) if plain["per_s"] else None,
            "locust_one_worker": w1,
            "locust_two_workers": w2,
            "two_vs_one_worker": round(w2["per_s"] / w1["per_s"], 3) if w1["per_s"] else None,
            "targets": {"locust_vs_asyncio": 0.5, "two_vs_one_worker": 1.6},
            "machine": load_info(),
        }
        print(json.dumps(out, indent=2))
        return 0
    finally:
        await coordinator.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sessions", type=int, default=16, help="WebSocket sessions (Locust users) per client"
    )
    parser.add_argument("--duration-s", type=float, default=8.0, help="seconds of each of the four phases")
    parser.add_argument("--rate", type=float, default=MAX_RATE, help="Locust users' requests/s ceiling each")
    args = parser.parse_args()
    return run_async(lambda: driver(args))


if __name__ == "__main__":
    raise SystemExit(main())
