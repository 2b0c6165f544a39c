"""The harness's own codec for sync protocol v1, written from PROTOCOL.md section 1 and 3.3.

It never imports the coordinator: an oracle that shares code with the server it judges cannot
see that code's bugs. Decoders are strict (they reject what the protocol calls invalid) so that
a server sending a malformed value is noticed, not silently accepted.
"""

from __future__ import annotations

import base64
import binascii
import re
import struct
from dataclasses import dataclass
from typing import Any

SITE_ID_BYTES = 16
SITE_ID_CHARS = 22
HLC_BYTES = 30
MAX_SAFE_INTEGER = 2**53 - 1
_U64_MAX = 2**64 - 1
_U16_MAX = 2**16 - 1
_U32_MAX = 2**32 - 1
_BASE64URL_NO_PAD = re.compile(r"^[A-Za-z0-9_-]{22}$")
_BASE64_STD = re.compile(r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$")
_HLC_STRUCT = struct.Struct(">QH16sI")
DATABASE_ID = re.compile(r"^[A-Za-z0-9_:.-]{1,128}$")


class CodecError(ValueError):
    """A value does not follow the wire encoding of PROTOCOL.md."""


# site ids ------------------------------------------------------------------------------------
def encode_site_id(site_id: bytes) -> str:
    """16 bytes to exactly 22 characters of base64url without padding."""
    if not isinstance(site_id, bytes | bytearray) or len(site_id) != SITE_ID_BYTES:
        raise CodecError(f"a site id is {SITE_ID_BYTES} bytes")
    return base64.urlsafe_b64encode(bytes(site_id)).rstrip(b"=").decode("ascii")


def decode_site_id(text: Any) -> bytes:
    """Exactly 22 base64url characters (no padding) to 16 bytes; anything else is rejected."""
    if not isinstance(text, str) or not _BASE64URL_NO_PAD.match(text):
        raise CodecError(f"a site id is {SITE_ID_CHARS} base64url characters without padding")
    raw = base64.urlsafe_b64decode(text + "==")
    # 22 characters carry 132 bits: the last 4 must be zero for a canonical 16-byte encoding.
    if encode_site_id(raw) != text:
        raise CodecError("a site id must be the canonical encoding of 16 bytes")
    return raw


# standard base64 -----------------------------------------------------------------------------
def encode_b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def decode_b64(text: Any) -> bytes:
    """Strict standard base64 with padding; rejects the url alphabet and stray characters."""
    if not isinstance(text, str) or not _BASE64_STD.match(text):
        raise CodecError("not standard base64 with padding")
    try:
        raw = base64.b64decode(text, validate=True)
    except binascii.Error as exc:
        raise CodecError(f"not standard base64: {exc}") from exc
    if encode_b64(raw) != text:
        raise CodecError("not the canonical base64 encoding")
    return raw


# HLCs ----------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True, order=True)
class HLC:
    """A hybrid logical clock value. Field order is the protocol's order, so `order=True` sorts
    HLCs exactly as their 30-byte big-endian form does."""

    wall_time: int
    counter: int
    site_id: bytes
    op_seq: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.wall_time <= _U64_MAX:
            raise CodecError("HLC wallTime is a u64")
        if not 0 <= self.counter <= _U16_MAX:
            raise CodecError("HLC counter is a u16")
        if not isinstance(self.site_id, bytes) or len(self.site_id) != SITE_ID_BYTES:
            raise CodecError("HLC siteId is 16 bytes")
        if not 0 <= self.op_seq <= _U32_MAX:
            raise CodecError("HLC opSeq is a u32")

    def to_bytes(self) -> bytes:
        return _HLC_STRUCT.pack(self.wall_time, self.counter, self.site_id, self.op_seq)

    @classmethod
    def from_bytes(cls, raw: bytes) -> HLC:
        if len(raw) != HLC_BYTES:
            raise CodecError(f"an HLC is {HLC_BYTES} bytes, got {len(raw)}")
        wall, counter, site, op_seq = _HLC_STRUCT.unpack(raw)
        return cls(wall, counter, site, op_seq)

    def encode(self) -> str:
        return encode_b64(self.to_bytes())

    @classmethod
    def decode(cls, text: Any) -> HLC:
        return cls.from_bytes(decode_b64(text))

    def transaction_id(self) -> str:
        """`<wallTime>:<counter>:<siteId base64url>` of a change set's HLC."""
        return f"{self.wall_time}:{self.counter}:{encode_site_id(self.site_id)}"


def encode_hlc(hlc: HLC) -> str:
    return hlc.encode()


def decode_hlc(text: Any) -> HLC:
    return HLC.decode(text)


def hlc_key(text: Any) -> bytes:
    """The sort key of an encoded HLC (its 30 bytes); raises CodecError when malformed."""
    raw = decode_b64(text)
    if len(raw) != HLC_BYTES:
        raise CodecError(f"an HLC is {HLC_BYTES} bytes, got {len(raw)}")
    return raw


def parse_transaction_id(text: Any) -> tuple[int, int, bytes]:
    """`"<wallTime>:<counter>:<siteId>"` to its parts; rejects anything else."""
    if not isinstance(text, str):
        raise CodecError("a transactionId is a string")
    parts = text.split(":")
    if len(parts) != 3 or not parts[0].isdigit() or not parts[1].isdigit():
        raise CodecError("a transactionId is <wallTime>:<counter>:<siteId>")
    wall, counter = int(parts[0]), int(parts[1])
    if wall > _U64_MAX or counter > _U16_MAX:
        raise CodecError("transactionId wallTime or counter out of range")
    return wall, counter, decode_site_id(parts[2])


# SQL values ----------------------------------------------------------------------------------
SqlValue = None | bool | int | float | str | bytes


def encode_value(value: SqlValue) -> Any:
    """A Python SQL value to its JSON form: bytes as __bin, unsafe integers as __bigint."""
    if value is None or isinstance(value, bool | str | float):
        return value
    if isinstance(value, int):
        if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
            return value
        return {"__bigint": str(value)}
    if isinstance(value, bytes | bytearray):
        return {"__bin": encode_b64(bytes(value))}
    raise CodecError(f"not a SQL value: {type(value).__name__}")


def decode_value(wire: Any) -> SqlValue:
    """The JSON form back to a Python SQL value; rejects objects other than __bin / __bigint."""
    if wire is None or isinstance(wire, bool | str | float):
        return wire
    if isinstance(wire, int):
        if not -MAX_SAFE_INTEGER <= wire <= MAX_SAFE_INTEGER:
            raise CodecError("an integer outside ±(2^53-1) must travel as __bigint")
        return wire
    if isinstance(wire, dict) and len(wire) == 1:
        if "__bin" in wire:
            return decode_b64(wire["__bin"])
        if "__bigint" in wire:
            text = wire["__bigint"]
            if not isinstance(text, str) or not re.fullmatch(r"-?[0-9]+", text):
                raise CodecError("__bigint is a decimal string")
            return int(text)
    raise CodecError(f"not an encoded SQL value: {wire!r}")


def is_json_safe(wire: Any) -> bool:
    """True when a decoded JSON document only holds values JSON can carry losslessly; a
    serializer that leaks raw bytes or unsafe integers produces the opposite."""
    if isinstance(wire, dict):
        return all(isinstance(k, str) and is_json_safe(v) for k, v in wire.items())
    if isinstance(wire, list):
        return all(is_json_safe(v) for v in wire)
    if isinstance(wire, bool) or wire is None or isinstance(wire, str | float):
        return True
    if isinstance(wire, int):
        return -MAX_SAFE_INTEGER <= wire <= MAX_SAFE_INTEGER
    return False
