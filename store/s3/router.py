"""Routing: (method, request target, Host, headers) -> the S3 operation it names (sans-IO).

Addressing: path style (``/bucket/key``) always works; virtual-hosted style
(``bucket.<base domain>/key``) is used when the Host ends with one of the configured base
domains. IP literals and other hosts fall back to path style. The key is the percent-decoded rest
of the path after the bucket's slash (``+`` is literal in a path), kept exactly: ``a//b`` and
``a/`` are keys of their own. Sub-resources in the query (``?uploads``, ``?versioning``,
``?tagging``...) and a few headers (``x-amz-copy-source``) pick the operation, as in AWS's API
reference; anything else is NotImplemented.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import unquote, unquote_to_bytes

from store.s3.errors import S3Error

MAX_URL_BYTES = 8192


@dataclass(frozen=True, slots=True)
class Route:
    operation: str  # the AWS API action name, e.g. "GetObject"
    bucket: str = ""
    key: str = ""
    query: Mapping[str, str] = field(default_factory=dict)
    raw_path: str = "/"  # as sent, for the signature
    raw_query: str = ""


def parse_query(raw: str) -> dict[str, str]:
    """Query parameters, percent-decoded ('+' is a space in a query); the first value wins.

    >>> parse_query("list-type=2&prefix=a%2Fb+c&uploads")
    {'list-type': '2', 'prefix': 'a/b c', 'uploads': ''}
    """
    out: dict[str, str] = {}
    for item in raw.split("&") if raw else ():
        name, _, value = item.partition("=")
        name = unquote(name.replace("+", " "))
        if name and name not in out:
            out[name] = unquote(value.replace("+", " "))
    return out


def _decode_path(raw: str) -> str:
    try:
        return unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise S3Error("InvalidURI", 400, "the path is not valid UTF-8") from None


def _bucket_from_host(host: str, base_domains: Sequence[str]) -> str | None:
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    name = name.lower().rstrip(".")
    for domain in base_domains:
        domain = domain.lower().rstrip(".")
        if name.endswith("." + domain):
            return name[: -len(domain) - 1]
    return None


def route(
    method: str,
    target: str,
    host: str = "",
    headers: Mapping[str, str] | None = None,
    base_domains: Sequence[str] = (),
) -> Route:
    """The operation a request names.

    >>> route("GET", "/bkt?list-type=2&prefix=a").operation
    'ListObjectsV2'
    >>> r = route("PUT", "/k%2By/a b", host="bkt.s3.local:9000", base_domains=["s3.local"])
    >>> (r.operation, r.bucket, r.key)
    ('PutObject', 'bkt', 'k+y/a b')
    """
    if len(target) > MAX_URL_BYTES:
        raise S3Error("RequestURITooLong", 414, "the request URI is too long")
    if not target.startswith("/"):
        raise S3Error("InvalidURI", 400, "the request target must be an absolute path")
    raw_path, _, raw_query = target.partition("?")
    query = parse_query(raw_query)
    headers = headers or {}
    bucket = _bucket_from_host(host, base_domains)
    if bucket is not None:
        key = _decode_path(raw_path[1:])
    else:
        bucket_raw, slash, key_raw = raw_path[1:].partition("/")
        bucket = _decode_path(bucket_raw)
        key = _decode_path(key_raw) if slash else ""
    operation = _operation(method, bool(bucket), bool(key), query, headers)
    return Route(operation, bucket, key, query, raw_path, raw_query)


_BUCKET_SUBRESOURCES = ("versioning", "cors", "policy", "tagging", "location", "lifecycle")


def _operation(
    method: str, has_bucket: bool, has_key: bool, q: Mapping[str, str], h: Mapping[str, str]
) -> str:
    if method == "OPTIONS" and has_bucket:
        return "PreflightRequest"
    if not has_bucket:
        if method in ("GET", "HEAD"):
            return "ListBuckets"
        raise S3Error("MethodNotAllowed", 405, f"{method} is not allowed on the service")
    if not has_key:
        return _bucket_operation(method, q)
    return _object_operation(method, q, h)


def _bucket_operation(method: str, q: Mapping[str, str]) -> str:
    sub = next((s for s in _BUCKET_SUBRESOURCES if s in q), None)
    names = {
        "versioning": "BucketVersioning",
        "cors": "BucketCors",
        "policy": "BucketPolicy",
        "tagging": "BucketTagging",
        "lifecycle": "BucketLifecycleConfiguration",
    }
    if method == "GET":
        if sub == "location":
            return "GetBucketLocation"
        if sub is not None:
            return "Get" + names[sub]
        if "uploads" in q:
            return "ListMultipartUploads"
        if "versions" in q:
            return "ListObjectVersions"
        return "ListObjectsV2" if q.get("list-type") == "2" else "ListObjects"
    if method == "PUT":
        return "Put" + names[sub] if sub in names else "CreateBucket"
    if method == "DELETE":
        return "Delete" + names[sub] if sub in names else "DeleteBucket"
    if method == "HEAD":
        return "HeadBucket"
    if method == "POST":
        return "DeleteObjects" if "delete" in q else "PostObject"
    raise S3Error("MethodNotAllowed", 405, f"{method} is not allowed on a bucket")


def _object_operation(method: str, q: Mapping[str, str], h: Mapping[str, str]) -> str:
    copy = "x-amz-copy-source" in h
    if method == "PUT":
        if "uploadId" in q or "partNumber" in q:
            return "UploadPartCopy" if copy else "UploadPart"
        if "tagging" in q:
            return "PutObjectTagging"
        return "CopyObject" if copy else "PutObject"
    if method == "GET":
        if "uploadId" in q:
            return "ListParts"
        if "tagging" in q:
            return "GetObjectTagging"
        if "attributes" in q:
            return "GetObjectAttributes"
        return "GetObject"
    if method == "HEAD":
        return "HeadObject"
    if method == "DELETE":
        if "uploadId" in q:
            return "AbortMultipartUpload"
        return "DeleteObjectTagging" if "tagging" in q else "DeleteObject"
    if method == "POST":
        if "uploads" in q:
            return "CreateMultipartUpload"
        if "uploadId" in q:
            return "CompleteMultipartUpload"
        raise S3Error("NotImplemented", 501, "this POST on an object is not implemented")
    raise S3Error("MethodNotAllowed", 405, f"{method} is not allowed on an object")
