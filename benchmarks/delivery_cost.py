"""Per-delivery cost of each layer of the coordinator's push path, measured without a profiler.

Why: cProfile roughly doubles the cost of Python calls, so its split of a delivery's time is
skewed. This takes the same layers the coordinator runs for each push_changes it sends and times
them one by one on uvloop, with real loopback TCP connections drained by a child process:

1. JSON: `orjson.dumps` of the push message (the coordinator does it once per broadcast);
2. our queue: `Session.offer` plus the session's writer task waking up and taking the frame
   (coordinator/service/session.py, used as is, with a no-op send);
3. WebSocket framing: `websockets` `send_text(text.encode())` + `data_to_send()` + `b"".join`,
   as uvicorn's websockets-sansio `send` does for each message;
4. the socket: `transport.write` of a ~450-byte frame, one connection after the other;
5. all of 2-4 chained, as the coordinator does it (an ASGI-like send coroutine per message);
6. the alternative: frame the message once and `transport.write` the same bytes to every
   connection from the broadcasting loop (no task per session).

    .venv/bin/python -m benchmarks.delivery_cost --connections 1000 --rounds 50
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from websockets.protocol import OPEN, Protocol, Side

from benchmarks._measure import load_info
from benchmarks._run import HOST, loop_factory
from benchmarks._workers import die_with_parent
from coordinator.service.session import RateLimiter, Session

_DRAIN = """
import selectors, socket, sys
listener = socket.socket(); listener.bind(("127.0.0.1", 0)); listener.listen(4096)
print(listener.getsockname()[1], flush=True)
sel = selectors.DefaultSelector(); sel.register(listener, selectors.EVENT_READ)
while True:
    for key, _ in sel.select(timeout=60):
        if key.fileobj is listener:
            conn, _ = listener.accept(); conn.setblocking(False)
            sel.register(conn, selectors.EVENT_READ)
        else:
            try:
                data = key.fileobj.recv(1 << 20)
            except OSError:
                data = b""
            if not data:
                sel.unregister(key.fileobj); key.fileobj.close()
                if len(sel.get_map()) == 1:
                    sys.exit(0)
"""


def push_message(seq: int) -> dict[str, Any]:
    """A push_changes like the fanout benchmark's (one change set with one column change)."""
    hlc = "AAABmqb4Tx4AAEnhWm2ZjVjA7tR3VQ4Yi4wAAAAA"
    change = {
        "type": "column",
        "schema": "main",
        "table": "bench",
        "pk": [seq],
        "hlc": hlc,
        "column": "v",
        "value": str(time.monotonic_ns()),
    }
    change_set = {
        "siteId": "SeFabZmNWMDu1HdVDhiLjA",
        "transactionId": "1763783000000:0:SeFabZmNWMDu1HdVDhiLjA",
        "hlc": hlc,
        "changes": [change],
        "schemaMigrations": [],
    }
    return {"type": "push_changes", "changeSets": [change_set], "seq": seq}


def cpu() -> tuple[float, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


async def timed(name: str, deliveries: int, body: Callable[[], Awaitable[None]]) -> dict[str, Any]:
    """Wall and CPU (user/sys) per delivery of `body`, which performs `deliveries` deliveries."""
    u0, s0 = cpu()
    w0 = time.perf_counter()
    await body()
    wall = time.perf_counter() - w0
    u1, s1 = cpu()
    return {
        "layer": name,
        "deliveries": deliveries,
        "wallUsPerDelivery": round(1e6 * wall / deliveries, 2),
        "userUsPerDelivery": round(1e6 * (u1 - u0) / deliveries, 2),
        "sysUsPerDelivery": round(1e6 * (s1 - s0) / deliveries, 2),
    }


class Sink(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]


def new_session(i: int) -> Session:
    return Session(f"c{i}", "bench", 1000, 8 << 20, RateLimiter(1000.0, 2000, 2000.0, 0.0))


async def run(args: argparse.Namespace, port: int) -> dict[str, Any]:
    n, rounds = args.connections, args.rounds
    total = n * rounds
    loop = asyncio.get_running_loop()
    results: list[dict[str, Any]] = []
    sinks: list[Sink] = []
    try:
        for _ in range(n):
            _, sink = await loop.create_connection(Sink, HOST, port)
            sinks.append(sink)
        text = orjson.dumps(push_message(1)).decode()
        protocols = []
        for _ in range(n):
            protocol = Protocol(Side.SERVER, state=OPEN)
            protocols.append(protocol)

        async def json_once_per_broadcast() -> None:
            for r in range(rounds):
                orjson.dumps(push_message(r)).decode()

        result = await timed("1. JSON (once per broadcast)", rounds, json_once_per_broadcast)
        for key in ("wallUsPerDelivery", "userUsPerDelivery", "sysUsPerDelivery"):
            result[key] = round(result[key] / n, 3)  # per delivery: one encoding serves n sessions
        result["deliveries"] = total
        results.append(result)

        async def queue_and_wakeup() -> None:
            sessions = [new_session(i) for i in range(n)]
            delivered = [0]

            async def writer(session: Session) -> None:
                while True:
                    frames = await session.next_frames()
                    if frames is None:
                        return
                    delivered[0] += len(frames)

            tasks = [asyncio.create_task(writer(s)) for s in sessions]
            await asyncio.sleep(0)
            for _ in range(rounds):
                for s in sessions:
                    s.offer(text)
                await asyncio.sleep(0)  # the writers run, as after a broadcast
            for s in sessions:
                s.close(1000)
            await asyncio.gather(*tasks)
            assert delivered[0] == total

        results.append(await timed("2. our queue: offer + writer task wake-up", total, queue_and_wakeup))

        async def framing() -> None:
            for _ in range(rounds):
                for p in protocols:
                    p.send_text(text.encode())
                    b"".join(p.data_to_send())

        results.append(await timed("3. websockets framing (send_text/data_to_send/join)", total, framing))

        frame = b"".join([b"\x81\x7e", len(text.encode()).to_bytes(2, "big"), text.encode()])

        async def socket_write() -> None:
            for _ in range(rounds):
                for sink in sinks:
                    assert sink.transport is not None
                    sink.transport.write(frame)
                await asyncio.sleep(0)

        results.append(await timed("4. transport.write (syscall, loopback TCP)", total, socket_write))

        async def as_shipped() -> None:
            sessions = [new_session(i) for i in range(n)]
            writable = asyncio.Event()
            writable.set()

            async def send(index: int, message: dict[str, Any]) -> None:  # uvicorn's send, in short
                await writable.wait()
                protocol = protocols[index]
                protocol.send_text(message["text"].encode())
                transport = sinks[index].transport
                assert transport is not None
                transport.write(b"".join(protocol.data_to_send()))

            async def writer(index: int, session: Session) -> None:  # coordinator/transport/websocket.py
                while True:
                    frames = await session.next_frames()
                    if frames is None:
                        return
                    for t in frames:
                        await send(index, {"type": "websocket.send", "text": t})

            tasks = [asyncio.create_task(writer(i, s)) for i, s in enumerate(sessions)]
            await asyncio.sleep(0)
            for _ in range(rounds):
                for s in sessions:
                    s.offer(text)
                await asyncio.sleep(0)
            for s in sessions:
                s.close(1000)
            await asyncio.gather(*tasks)

        results.append(await timed("5. all of 2-4, as the coordinator chains them", total, as_shipped))

        async def frame_once_write_all() -> None:
            for r in range(rounds):
                encoded = orjson.dumps(push_message(r))
                header = b"\x81\x7e" + len(encoded).to_bytes(2, "big") if len(encoded) < 65536 else b""
                data = header + encoded
                for sink in sinks:
                    assert sink.transport is not None
                    sink.transport.write(data)
                await asyncio.sleep(0)

        results.append(
            await timed("6. alternative: frame once, write bytes to each", total, frame_once_write_all)
        )
    finally:
        for sink in sinks:
            if sink.transport is not None:
                sink.transport.close()
        await asyncio.sleep(0.2)
    return {
        "benchmark": "delivery_cost",
        "params": {"connections": n, "rounds": rounds, "frameBytes": len(text) + 4},
        "load": load_info(),
        "pid": os.getpid(),
        "layers": results,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=50, help="broadcasts per layer")
    args = parser.parse_args(argv)
    if not (0 < args.connections <= 5000 and 0 < args.rounds <= 10_000):
        parser.error("--connections in 1..5000, --rounds in 1..10000")
    drain = subprocess.Popen(  # the peer of every connection: reads and discards
        [sys.executable, "-c", _DRAIN], stdout=subprocess.PIPE, text=True, preexec_fn=die_with_parent
    )
    try:
        assert drain.stdout is not None
        port = int(drain.stdout.readline())
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            print(json.dumps(runner.run(run(args, port)), indent=2))
    finally:
        try:
            drain.wait(timeout=5)
        except subprocess.TimeoutExpired:
            drain.kill()
            drain.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
