"""Encodings of PROTOCOL.md section 1: site ids, HLCs, SQL values, transaction ids.

HLCs are kept as their 30-byte big-endian form everywhere inside the coordinator, because the
byte order of that form is the HLC order: comparing `bytes` compares HLCs.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from coordinator.protocol.errors import InvalidPayload

SITE_ID_BYTES = 16
HLC_BYTES = 30
MAX_SAFE_INTEGER = 2**53 - 1
_SITE_ID_RE = re.compile(r"[A-Za-z0-9_-]{22}")  # used with fullmatch: `$` would allow a final "\n"

SqlValue = None | bool | int | float | str | bytes


def decode_site_id(value: Any, field: str = "siteId") -> bytes:
    """16 bytes from exactly 22 base64url characters without padding."""
    if not isinstance(value, str) or not _SITE_ID_RE.fullmatch(value):
        raise InvalidPayload(field, "must be 22 base64url characters (16 bytes, no padding)")
    raw = base64.urlsafe_b64decode(value + "==")
    if encode_site_id(raw) != value:  # non-zero trailing bits: not the canonical form of 16 bytes
        raise InvalidPayload(field, "is not the canonical base64url form of 16 bytes")
    return raw


def encode_site_id(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_hlc(value: Any, field: str = "hlc") -> bytes:
    """30 bytes from standard base64 with padding."""
    if not isinstance(value, str):
        raise InvalidPayload(field, "must be a base64 string")
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidPayload(field, "is not valid standard base64") from None
    if len(raw) != HLC_BYTES:
        raise InvalidPayload(field, f"must encode {HLC_BYTES} bytes, got {len(raw)}")
    return raw


def encode_hlc(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def decode_value(value: Any, field: str) -> SqlValue:
    """A SQL value from its JSON form; bytes and big integers arrive as tagged objects."""
    if value is None or isinstance(value, bool | str | float):
        return value
    if isinstance(value, int):
        if abs(value) > MAX_SAFE_INTEGER:
            raise InvalidPayload(field, 'integer outside ±(2^53-1) must be sent as {"__bigint": "..."}')
        return value
    if isinstance(value, dict) and len(value) == 1:
        if "__bin" in value:
            encoded = value["__bin"]
            if not isinstance(encoded, str):
                raise InvalidPayload(f"{field}.__bin", "must be a base64 string")
            try:
                return base64.b64decode(encoded, validate=True)
            except (binascii.Error, ValueError):
                raise InvalidPayload(f"{field}.__bin", "is not valid standard base64") from None
        if "__bigint" in value:
            digits = value["__bigint"]
            if not isinstance(digits, str) or not re.fullmatch(r"-?[0-9]{1,400}", digits):
                raise InvalidPayload(f"{field}.__bigint", "must be a decimal integer string")
            return int(digits)
    raise InvalidPayload(field, "must be null, a number, a string, a boolean, {__bin} or {__bigint}")


def encode_value(value: SqlValue) -> Any:
    """The JSON form of a SQL value (the inverse of `decode_value`)."""
    if isinstance(value, bytes):
        return {"__bin": base64.b64encode(value).decode("ascii")}
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_SAFE_INTEGER:
        return {"__bigint": str(value)}
    return value
