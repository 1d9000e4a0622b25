"""Routing: (method, request target, Host, headers) -> the S3 operation it names (sans-IO).

Addressing: path style (``/bucket/key``) always works; virtual-hosted style
(``bucket.<base domain>/key``) is used when the Host ends with one of the configured base
domains. IP literals and other hosts fall back to path style. The key is the percent-decoded rest
of the path after the bucket's slash (``+`` is literal in a path), kept exactly: ``a//b`` and
``a/`` are keys of their own. Sub-resources in the query (``?uploads``, ``?versioning``,
``?tagging``...) and a few headers (``x-amz-copy-source``) pick the operation from the endpoint
table (``store.s3.endpoints``), which refuses anything it does not name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import unquote, unquote_to_bytes

from store.s3 import endpoints
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
    operation = _operation(method, bucket, key, query, headers)
    return Route(operation, bucket, key, query, raw_path, raw_query)


def _operation(
    method: str, bucket: str, key: str, query: Mapping[str, str], headers: Mapping[str, str]
) -> str:
    target = endpoints.OBJECT if key else endpoints.BUCKET if bucket else endpoints.SERVICE
    return endpoints.find(target, method, query, headers).operation
