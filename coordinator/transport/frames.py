"""WebSocket frames built once per message and shared by every recipient.

A broadcast offers the same `str` object to every session's queue, so the transport can frame
(and, with permessage-deflate, compress) it once and write the same bytes to every socket that
negotiated the same parameters. That is only sound without server context takeover: each
message is then compressed from a fresh deflate state, so its bytes do not depend on what the
connection sent before. `ws_compression = deflate` therefore always answers an offer with
`server_no_context_takeover`.
"""

from __future__ import annotations

from websockets.extensions.base import Extension
from websockets.extensions.permessage_deflate import PerMessageDeflate, ServerPerMessageDeflateFactory
from websockets.frames import Frame, Opcode

# Window and memory of the server's compressor (uvicorn's own choice, smaller than zlib's).
SERVER_MAX_WINDOW_BITS = 12
COMPRESS_SETTINGS = {"memLevel": 5}
_CACHE_LIMIT = 64  # recent messages kept framed: a broadcast's sends all come within one round


def deflate_factory() -> ServerPerMessageDeflateFactory:
    """Negotiate permessage-deflate without server context takeover (shareable frames)."""
    return ServerPerMessageDeflateFactory(
        server_no_context_takeover=True,
        server_max_window_bits=SERVER_MAX_WINDOW_BITS,
        client_max_window_bits=SERVER_MAX_WINDOW_BITS,
        compress_settings=COMPRESS_SETTINGS,
    )


def sharing_key(extensions: list[Extension]) -> tuple[int, ...] | None:
    """What decides a frame's bytes on this connection: () for no extension, (window bits,) for
    stateless deflate; None when frames cannot be shared (context takeover, other extensions)."""
    if not extensions:
        return ()
    if len(extensions) == 1 and isinstance(extensions[0], PerMessageDeflate):
        ext = extensions[0]
        if ext.local_no_context_takeover:
            return (ext.local_max_window_bits,)
    return None


class FrameCache:
    """text (by identity) -> its serialized server frame, per sharing key."""

    def __init__(self) -> None:
        self._frames: dict[tuple[int, tuple[int, ...]], tuple[str, bytes]] = {}
        self._encoders: dict[tuple[int, ...], list[Extension]] = {}
        self.built = 0  # frames serialized (and compressed), for the tests and the benchmarks
        self.shared = 0  # sends that reused one

    def frame(self, text: str, key: tuple[int, ...]) -> bytes:
        slot = (id(text), key)
        hit = self._frames.get(slot)
        if hit is not None and hit[0] is text:
            self.shared += 1
            return hit[1]
        data = Frame(Opcode.TEXT, text.encode()).serialize(mask=False, extensions=self._encoder(key))
        if len(self._frames) >= _CACHE_LIMIT:
            self._frames.clear()
        self._frames[slot] = (text, data)  # holding `text` keeps its id from being reused
        self.built += 1
        return data

    def _encoder(self, key: tuple[int, ...]) -> list[Extension]:
        encoder = self._encoders.get(key)
        if encoder is None:
            encoder = self._encoders[key] = (
                [PerMessageDeflate(False, True, SERVER_MAX_WINDOW_BITS, key[0], COMPRESS_SETTINGS)]
                if key
                else []
            )
        return encoder


FRAMES = FrameCache()  # one per process: every connection shares it
