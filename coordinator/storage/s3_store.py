"""The object-store layout of PROTOCOL.md section 5 and a thin blocking boto3 client for it.

Everything here is synchronous: the persistence layer runs these calls in worker threads, behind
the circuit breaker and the outbox. botocore does at most `max_attempts` attempts with short
timeouts, because retrying across an outage is the outbox's job, not botocore's.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
    ReadTimeoutError,
)

_UNSAFE = re.compile(r"[^A-Za-z0-9/_-]")


@dataclass(frozen=True)
class S3Config:
    """Object-store options (CLI `--s3-*`, env `COORDINATOR_S3_*`) and the tuning of the uploader.

    Credentials are not here on purpose: boto3's standard chain (environment, shared config
    files, container/instance roles) finds them.
    """

    bucket: str
    endpoint: str | None = None
    prefix: str = ""
    region: str | None = None
    # Uploader.
    upload_concurrency: int = 4
    backoff_base_s: float = 0.2
    backoff_max_s: float = 10.0
    # Circuit breaker: consecutive failures that open it, and how long it stays open before the
    # single half-open probe.
    breaker_failure_threshold: int = 3
    breaker_open_s: float = 5.0
    # Snapshots: every N applied changes or T seconds (whichever first), keep the newest M.
    snapshot_every_changes: int = 1000
    snapshot_every_s: float = 300.0
    max_retained_snapshots: int = 3
    # botocore: short timeouts and few attempts; the breaker and the outbox do the retrying.
    connect_timeout_s: float = 2.0
    read_timeout_s: float = 5.0
    max_attempts: int = 2
    # Outer bound on one call as seen by the event loop (a stuck thread cannot hold it longer).
    operation_timeout_s: float = 15.0
    # None: path-style when an endpoint is given (MinIO, moto), virtual-hosted otherwise (AWS).
    path_style: bool | None = None
    # Outbox fsync policy: FULL survives power loss, NORMAL only a process crash.
    outbox_synchronous: str = "FULL"

    def __post_init__(self) -> None:
        if not self.bucket:
            raise ValueError("S3Config.bucket must not be empty")
        at_least_one = (
            "upload_concurrency",
            "breaker_failure_threshold",
            "max_retained_snapshots",
            "max_attempts",
        )
        for name in at_least_one:
            if getattr(self, name) < 1:
                raise ValueError(f"S3Config.{name} must be at least 1")
        positive = (
            "backoff_base_s",
            "backoff_max_s",
            "breaker_open_s",
            "snapshot_every_s",
            "operation_timeout_s",
        )
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"S3Config.{name} must be positive")
        if self.snapshot_every_changes < 1:
            raise ValueError("S3Config.snapshot_every_changes must be at least 1")


# --- layout (PROTOCOL.md section 5) -------------------------------------------------------------


def storage_path(database_id: str) -> str:
    """databaseId with `:` as `/` and anything outside [A-Za-z0-9/_-] as `_`."""
    return _UNSAFE.sub("_", database_id.replace(":", "/"))


def iso_timestamp(ms: int) -> str:
    """Fixed-width UTC ISO-8601 with milliseconds, e.g. 2026-11-22T03:32:07.123Z."""
    moment = dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def key_timestamp(ms: int) -> str:
    """The ISO timestamp with `:` and `.` as `-`: fixed width, so key order is time order."""
    return iso_timestamp(ms).replace(":", "-").replace(".", "-")


def database_prefix(key_prefix: str, database_id: str) -> str:
    return f"{key_prefix}{storage_path(database_id)}/"


def batches_prefix(key_prefix: str, database_id: str) -> str:
    return database_prefix(key_prefix, database_id) + "batches/"


def snapshots_prefix(key_prefix: str, database_id: str) -> str:
    return database_prefix(key_prefix, database_id) + "snapshots/"


def batch_key(key_prefix: str, database_id: str, ms: int, object_id: str) -> str:
    return f"{batches_prefix(key_prefix, database_id)}{key_timestamp(ms)}_{object_id}.json"


def snapshot_key(key_prefix: str, database_id: str, ms: int, object_id: str) -> str:
    return f"{snapshots_prefix(key_prefix, database_id)}{key_timestamp(ms)}_{object_id}.json"


def key_time_part(key: str) -> str:
    """The `<timestamp>` part of a batch or snapshot key (what restore compares)."""
    return key.rsplit("/", 1)[-1].split("_", 1)[0]


# --- errors -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class S3Failure:
    """A classified object-store failure: `kind` is stable (metrics, /ready), `message` is for people."""

    kind: str
    message: str


def classify(exc: BaseException, config: S3Config) -> S3Failure:
    """Say which of bucket / endpoint / credentials / server went wrong, in words an operator uses."""
    endpoint = config.endpoint or "the AWS default endpoint"
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        detail = f"{code or status}: {error.get('Message', '')}".strip()
        if code == "NoSuchBucket" or (code in {"404", "NotFound"} and not error.get("Key")):
            return S3Failure("bucket_not_found", f"S3 bucket '{config.bucket}' does not exist at {endpoint}")
        if code in {"InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken"}:
            return S3Failure(
                "credentials_rejected",
                f"S3 credentials rejected by {endpoint} ({detail}); check the AWS credentials",
            )
        if code in {"AccessDenied", "AllAccessDisabled", "403", "Forbidden"}:
            return S3Failure(
                "access_denied",
                f"S3 access denied to bucket '{config.bucket}' prefix '{config.prefix}' ({detail})",
            )
        if code in {"SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded"}:
            return S3Failure("throttled", f"S3 throttled the request ({detail})")
        if isinstance(status, int) and status >= 500:
            return S3Failure("server_error", f"S3 server error from {endpoint} ({detail})")
        return S3Failure("client_error", f"S3 request rejected ({detail})")
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return S3Failure(
            "no_credentials",
            f"no usable AWS credentials found (environment, shared config files, instance role): {exc}",
        )
    if isinstance(exc, EndpointConnectionError | ConnectTimeoutError):
        return S3Failure("endpoint_unreachable", f"S3 endpoint {endpoint} is unreachable ({exc})")
    if isinstance(exc, ReadTimeoutError | TimeoutError):
        return S3Failure("timeout", f"S3 endpoint {endpoint} timed out ({exc or 'no answer in time'})")
    if isinstance(exc, ConnectionClosedError | ConnectionError):
        return S3Failure("connection_closed", f"S3 endpoint {endpoint} closed the connection ({exc})")
    if isinstance(exc, BotoCoreError):
        return S3Failure("client_failure", f"S3 client failure ({type(exc).__name__}: {exc})")
    return S3Failure("unexpected", f"unexpected S3 failure ({type(exc).__name__}: {exc})")


# --- client -------------------------------------------------------------------------------------


class S3Client:
    """Blocking S3 operations on one bucket; safe to call from several worker threads."""

    def __init__(self, config: S3Config) -> None:
        self.config = config
        path_style = config.path_style if config.path_style is not None else config.endpoint is not None
        boto_config = BotoConfig(
            region_name=config.region,
            connect_timeout=config.connect_timeout_s,
            read_timeout=config.read_timeout_s,
            retries={"mode": "standard", "max_attempts": config.max_attempts},
            s3={"addressing_style": "path" if path_style else "auto"},
            max_pool_connections=max(10, config.upload_concurrency * 2),
        )
        session = boto3.session.Session(region_name=config.region)
        self._client: Any = session.client("s3", endpoint_url=config.endpoint, config=boto_config)
        self._attempts_lock = threading.Lock()
        self._http_attempts = 0
        # Every HTTP attempt, botocore's own retries included: what the object store really sees.
        self._client.meta.events.register("before-send.s3", self._count_attempt)

    @property
    def http_attempts(self) -> int:
        with self._attempts_lock:
            return self._http_attempts

    def _count_attempt(self, **_: Any) -> None:
        with self._attempts_lock:
            self._http_attempts += 1

    def validate(self) -> None:
        """One cheap call that needs the endpoint, the credentials and the bucket all to be right.

        ListObjectsV2 rather than HeadBucket: a HEAD answer has no body, so its error code would
        not tell a missing bucket from bad credentials.
        """
        self._client.list_objects_v2(Bucket=self.config.bucket, Prefix=self.config.prefix, MaxKeys=1)

    def put_object(self, key: str, body: bytes, content_type: str) -> None:
        self._client.put_object(Bucket=self.config.bucket, Key=key, Body=body, ContentType=content_type)

    def get_object(self, key: str) -> bytes:
        response = self._client.get_object(Bucket=self.config.bucket, Key=key)
        data = response["Body"].read()
        assert isinstance(data, bytes)
        return data

    def list_keys(self, prefix: str, start_after: str | None = None) -> list[str]:
        """Every key under `prefix` (after `start_after`), in S3's order: ascending UTF-8 bytes."""
        keys: list[str] = []
        kwargs: dict[str, Any] = {"Bucket": self.config.bucket, "Prefix": prefix}
        if start_after:
            kwargs["StartAfter"] = start_after
        paginator = self._client.get_paginator("list_objects_v2")
        for page in paginator.paginate(**kwargs):
            keys.extend(str(item["Key"]) for item in page.get("Contents", []))
        return keys

    def delete_keys(self, keys: list[str]) -> None:
        """Delete in batches of 1000 (the DeleteObjects limit); a per-key error raises."""
        for start in range(0, len(keys), 1000):
            chunk = keys[start : start + 1000]
            response = self._client.delete_objects(
                Bucket=self.config.bucket,
                Delete={"Objects": [{"Key": key} for key in chunk], "Quiet": True},
            )
            errors = response.get("Errors") or []
            if errors:
                first = errors[0]
                error = {"Code": first.get("Code", "DeleteFailed"), "Message": first.get("Message", "")}
                raise ClientError({"Error": error}, "DeleteObjects")

    def close(self) -> None:
        self._client.close()
