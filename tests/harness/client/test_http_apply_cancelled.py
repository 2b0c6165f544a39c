"""An HTTP write cancelled while out (a behaviour's deadline, the end of a run) may have been
applied: its cells must be uncertain in the client's replica, as for a WS write. Seen in
sigkill-under-writes: the server applied a write whose request was cancelled, the replica
did not know, and convergence called the correct server wrong."""

from __future__ import annotations

import asyncio
import random

from harness.client.sync_client import ClientConfig, SyncClient
from harness.history import History
from harness.model.replica import change_cell


async def test_a_cancelled_http_write_leaves_its_cells_uncertain() -> None:
    arrived = asyncio.Event()

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)  # the request is out; never answer
        arrived.set()
        await reader.read()  # until the client goes away
        writer.close()

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = SyncClient(
        "w", ClientConfig(f"ws://127.0.0.1:{port}/sync/ws", "db1"), History(), random.Random(1)
    )
    try:
        wire = [client.builder().set("items", [1], "name", "x").build().to_wire()]
        write = asyncio.create_task(client.http_apply(wire))
        await asyncio.wait_for(arrived.wait(), 10)
        write.cancel()
        await asyncio.gather(write, return_exceptions=True)
        assert change_cell(wire[0]["changes"][0]) in client.uncertain
    finally:
        await client.aclose()
        server.close()
        await server.wait_closed()
