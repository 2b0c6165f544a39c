"""The storage errors a request may be told about: one `StoreUnavailable` for the whole
coordinator (a store that cannot be opened now, or an object store that is down)."""

from __future__ import annotations


class StoreError(Exception):
    """Base of the errors a client may be told about; `code` is the protocol-level error code."""

    code = "STORE_ERROR"


class StoreUnavailable(StoreError):
    """The store cannot be reached or opened now (object store down, breaker open, shutting
    down): retry later."""

    code = "STORE_UNAVAILABLE"


class StoreCorrupted(StoreError):
    """An object in the store cannot be parsed: retrying will not help."""

    code = "STORE_CORRUPTED"


class S3ConfigError(StoreError):
    """`start()` found the configuration unusable; `problem` says which part
    (bucket_not_found, endpoint_unreachable, credentials_rejected, no_credentials, access_denied,
    timeout, ...) and the message says it in words, for the log and for /ready."""

    code = "STORE_MISCONFIGURED"

    def __init__(self, problem: str, message: str) -> None:
        super().__init__(message)
        self.problem = problem
