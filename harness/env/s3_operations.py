"""Name the S3 operation of an HTTP request from its method, path and query, as AWS does.

Path-style addressing (`/bucket/key`), which is what boto3 uses against a custom endpoint such
as moto or the fault layer. A request that matches nothing known is "Unknown" (and still
counted), so a new client call never goes unseen.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit


@dataclass(frozen=True)
class S3Request:
    operation: str
    bucket: str | None
    key: str | None


_BUCKET_SUBRESOURCES = {
    "acl": "Acl",
    "cors": "Cors",
    "lifecycle": "LifecycleConfiguration",
    "location": "Location",
    "policy": "Policy",
    "tagging": "Tagging",
    "versioning": "Versioning",
    "encryption": "Encryption",
    "notification": "NotificationConfiguration",
    "website": "Website",
    "logging": "Logging",
}


def classify(method: str, target: str, headers: dict[str, str] | None = None) -> S3Request:
    """`target` is the request target (path and query); `headers` keys in lower case."""
    headers = headers or {}
    parts = urlsplit(target)
    query = parse_qs(parts.query, keep_blank_values=True)
    path = unquote(parts.path)
    bucket, _, key = path.lstrip("/").partition("/")
    method = method.upper()
    if not bucket:
        return S3Request("ListBuckets" if method == "GET" else "Unknown", None, None)
    if not key:
        return S3Request(_bucket_operation(method, query), bucket, None)
    return S3Request(_object_operation(method, query, headers), bucket, key)


def _bucket_operation(method: str, query: dict[str, list[str]]) -> str:
    if method == "GET":
        if query.get("list-type") == ["2"]:
            return "ListObjectsV2"
        if "versions" in query:
            return "ListObjectVersions"
        if "uploads" in query:
            return "ListMultipartUploads"
        for sub, name in _BUCKET_SUBRESOURCES.items():
            if sub in query:
                return f"GetBucket{name}"
        return "ListObjects"
    if method == "PUT":
        for sub, name in _BUCKET_SUBRESOURCES.items():
            if sub in query:
                return f"PutBucket{name}"
        return "CreateBucket"
    if method == "HEAD":
        return "HeadBucket"
    if method == "DELETE":
        for sub, name in _BUCKET_SUBRESOURCES.items():
            if sub in query:
                return f"DeleteBucket{name}"
        return "DeleteBucket"
    if method == "POST" and "delete" in query:
        return "DeleteObjects"
    return "Unknown"


def _object_operation(method: str, query: dict[str, list[str]], headers: dict[str, str]) -> str:
    copy = "x-amz-copy-source" in headers
    if method == "PUT":
        if "partNumber" in query and "uploadId" in query:
            return "UploadPartCopy" if copy else "UploadPart"
        if "tagging" in query:
            return "PutObjectTagging"
        if "acl" in query:
            return "PutObjectAcl"
        return "CopyObject" if copy else "PutObject"
    if method == "GET":
        if "uploadId" in query:
            return "ListParts"
        if "tagging" in query:
            return "GetObjectTagging"
        if "acl" in query:
            return "GetObjectAcl"
        return "GetObject"
    if method == "HEAD":
        return "HeadObject"
    if method == "DELETE":
        if "uploadId" in query:
            return "AbortMultipartUpload"
        if "tagging" in query:
            return "DeleteObjectTagging"
        return "DeleteObject"
    if method == "POST":
        if "uploads" in query:
            return "CreateMultipartUpload"
        if "uploadId" in query:
            return "CompleteMultipartUpload"
        if "restore" in query:
            return "RestoreObject"
    return "Unknown"
