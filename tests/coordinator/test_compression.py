"""`--ws-compression off|deflate`: off never negotiates permessage-deflate (even when the
client offers it); deflate negotiates it without server context takeover, and a broadcast's
message is framed and compressed once for every recipient with the same parameters."""

from __future__ import annotations

import zlib
from typing import Any

import pytest
from websockets.extensions.permessage_deflate import PerMessageDeflate

from coordinator.transport.frames import FrameCache, sharing_key
from tests.coordinator.wire import write


@pytest.mark.parametrize("mode", ["off", "deflate", None])
async def test_the_option_decides_what_a_deflate_offer_gets(
    start_coordinator: Any, connect: Any, mode: str | None
) -> None:
    coord = await start_coordinator(*(["--ws-compression", mode] if mode else []))
    a, b = await connect(coord, compression="deflate"), await connect(coord, compression="deflate")
    offered = b.conn.response.headers.get("Sec-WebSocket-Extensions")
    if mode == "deflate":
        assert offered is not None and "server_no_context_takeover" in offered
    else:
        assert offered is None and b.conn.protocol.extensions == []  # the default is off
    await a.handshake()
    await b.handshake()
    for i in range(3):  # several messages: each decodes from its own deflate state
        await a.send({"type": "apply_changes", "changes": [write(a.site_id, "t", i, "x", "v" * 500)]})
        await a.expect("apply_result")
        push = await b.expect("push_changes")
        assert push["changeSets"][0]["changes"][0]["value"] == "v" * 500


def test_a_message_is_compressed_once_and_decodes_on_its_own() -> None:
    cache = FrameCache()
    text = '{"type":"push_changes","changeSets":[],"pad":"' + "x" * 300 + '"}'
    first, second = cache.frame(text, (12,)), cache.frame(text, (12,))
    assert first is second and (cache.built, cache.shared) == (1, 1)
    assert first[0] == 0xC1  # FIN + RSV1 (compressed) + text
    length = first[1] & 0x7F
    payload = first[4:] if length == 126 else first[2:]
    assert len(payload) < len(text)
    decoded = zlib.decompressobj(-12).decompress(payload + b"\x00\x00\xff\xff")  # a fresh inflater
    assert decoded.decode() == text
    plain = cache.frame(text, ())
    assert plain[0] == 0x81 and plain.endswith(text.encode()) and cache.built == 2
    copy = text[:10] + text[10:]  # an equal string, another object: framed on its own
    assert copy is not text and cache.frame(copy, (12,)) == first and cache.built == 3


def test_frames_are_shared_only_without_server_context_takeover() -> None:
    assert sharing_key([]) == ()
    assert sharing_key([PerMessageDeflate(False, True, 12, 10)]) == (10,)
    assert sharing_key([PerMessageDeflate(True, False, 12, 12)]) is None  # server keeps context
