"""Error codes and close codes of PROTOCOL.md section 3.4, and the exceptions that carry them.

Handlers raise a `ProtocolError` with the specific code; the transport turns it into the wire
form. Nothing below the transport ever produces a generic error for a known failure.
"""

from __future__ import annotations

# WebSocket error codes
PROTOCOL_VERSION_MISMATCH = "PROTOCOL_VERSION_MISMATCH"
MISSING_DATABASE_ID = "MISSING_DATABASE_ID"
AUTH_FAILED = "AUTH_FAILED"
ALREADY_AUTHENTICATED = "ALREADY_AUTHENTICATED"
NOT_AUTHENTICATED = "NOT_AUTHENTICATED"
GET_CHANGES_ERROR = "GET_CHANGES_ERROR"
APPLY_CHANGES_ERROR = "APPLY_CHANGES_ERROR"
SNAPSHOT_ERROR = "SNAPSHOT_ERROR"
UNKNOWN_MESSAGE = "UNKNOWN_MESSAGE"
MESSAGE_ERROR = "MESSAGE_ERROR"
INVALID_PAYLOAD = "INVALID_PAYLOAD"
NOT_AUTHORIZED = "NOT_AUTHORIZED"
MESSAGE_TOO_LARGE = "MESSAGE_TOO_LARGE"
RATE_LIMITED = "RATE_LIMITED"
STORE_UNAVAILABLE = "STORE_UNAVAILABLE"

# HTTP error codes
INVALID_DATABASE_ID = "INVALID_DATABASE_ID"
INVALID_BODY = "INVALID_BODY"
GET_CHANGES_FAILED = "GET_CHANGES_FAILED"
APPLY_CHANGES_FAILED = "APPLY_CHANGES_FAILED"
# [ext] HTTP codes of the operational routes
NOT_READY = "NOT_READY"  # /ready while starting, shutting down or misconfigured (503)
FAILPOINTS_DISABLED = "FAILPOINTS_DISABLED"  # admin failpoint routes without --enable-failpoints (404)
INTERNAL_ERROR = "INTERNAL_ERROR"  # an operational route failed unexpectedly (500)

# Close codes
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008
CLOSE_TOO_LARGE = 1009
CLOSE_INTERNAL = 1011
CLOSE_TRY_AGAIN_LATER = 1013
CLOSE_AUTH_FAILED = 4001
CLOSE_MISSING_DATABASE_ID = 4002
CLOSE_PROTOCOL_VERSION = 4003

FATAL_CLOSE_CODES: dict[str, int] = {
    PROTOCOL_VERSION_MISMATCH: CLOSE_PROTOCOL_VERSION,
    MISSING_DATABASE_ID: CLOSE_MISSING_DATABASE_ID,
    AUTH_FAILED: CLOSE_AUTH_FAILED,
    ALREADY_AUTHENTICATED: CLOSE_POLICY,
    MESSAGE_TOO_LARGE: CLOSE_TOO_LARGE,
}


class ProtocolError(Exception):
    """A failure with a protocol error code. Fatal errors end the session with their close code."""

    def __init__(self, code: str, message: str, *, fatal: bool | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.fatal = code in FATAL_CLOSE_CODES if fatal is None else fatal

    @property
    def close_code(self) -> int | None:
        return FATAL_CLOSE_CODES.get(self.code, CLOSE_POLICY) if self.fatal else None


class InvalidPayload(ProtocolError):
    """The client's fault: a field has the wrong shape or encoding. Always names the field."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(INVALID_PAYLOAD, f"{field}: {problem}", fatal=False)
        self.field = field
