"""Server-side copies: CopyObject and UploadPartCopy (x-amz-copy-source, its conditions, ranges)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import unquote

from store.errors import InvalidArgument
from store.gateway.s3 import encryption as s3_sse
from store.gateway.s3 import messages as m
from store.gateway.s3.call import Call
from store.objects.engine import ObjectEngine
from store.objects.records import Upload, Version
from store.objects.sealing import Sealing
from store.s3 import xml
from store.s3.errors import S3Error


def parse_copy_source(value: str) -> tuple[str, str, str | None]:
    """(bucket, key, version id) of an x-amz-copy-source header.

    >>> parse_copy_source("/bkt/a%20b.txt?versionId=v1")
    ('bkt', 'a b.txt', 'v1')
    """
    path, _, query = value.partition("?")
    bucket, slash, key = unquote(path).lstrip("/").partition("/")
    if not bucket or not slash or not key:
        raise InvalidArgument("x-amz-copy-source must be /bucket/key")
    version = None
    for item in query.split("&") if query else ():
        name, _, val = item.partition("=")
        if name == "versionId":
            version = unquote(val)
        else:
            raise InvalidArgument(f"unexpected {name!r} in x-amz-copy-source")
    return bucket, key, version


def source_conditions(call: Call) -> Callable[[Version], None]:
    """A check of the x-amz-copy-source-if-* headers against the source version."""
    req = call.request
    headers = {
        name: req.header("x-amz-copy-source-" + name)
        for name in ("if-match", "if-none-match", "if-modified-since", "if-unmodified-since")
    }

    def check(src: Version) -> None:
        try:
            m.check_read_conditions_from(headers, src)
        except m.NotModified:
            raise m.precondition_failed() from None

    return check


Checker = Callable[[str, str, str | None], Awaitable[object]]
Result = tuple[list[tuple[str, str]], bytes]


async def copy_object(
    engine: ObjectEngine,
    call: Call,
    can_read: Checker,
    *,
    owner: str,
    attributes: Mapping[str, Any],
    source_key: Callable[[Version], bytes | None],
    sealing: Sealing | None,
) -> Result:
    """CopyObject; the new version is ``owner``'s, with ``attributes`` (ACL, storage class,
    object lock, encryption: from this request, never copied from the source)."""
    req = call.request
    src_bucket, src_key, src_version = parse_copy_source(req.header("x-amz-copy-source") or "")
    await can_read(src_bucket, src_key, src_version)
    directive = (req.header("x-amz-metadata-directive") or "COPY").upper()
    if directive not in ("COPY", "REPLACE"):
        raise InvalidArgument("x-amz-metadata-directive must be COPY or REPLACE")
    same = (src_bucket, src_key) == (call.route.bucket, call.route.key)
    if same and directive == "COPY" and src_version is None:
        raise S3Error(
            "InvalidRequest",
            400,
            "this copy request is illegal because it is trying to copy an "
            "object to itself without changing the object's metadata",
        )
    tagging = (req.header("x-amz-tagging-directive") or "COPY").upper()
    tags = m.parse_tagging_header(req.header("x-amz-tagging")) if tagging == "REPLACE" else None
    src, new = await engine.copy_object(
        src_bucket,
        src_key,
        call.route.bucket,
        call.route.key,
        src_version_id=src_version,
        owner=owner,
        attributes=attributes,
        replace_metadata=directive == "REPLACE",
        content_type=req.header("content-type") or "",
        metadata=m.user_metadata(req),
        headers=m.stored_headers(req),
        tags=tags,
        checksum_algorithm=req.header("x-amz-checksum-algorithm"),
        condition=source_conditions(call),
        source_key=source_key,
        sealing=sealing,
    )
    body = xml.document(
        "CopyObjectResult",
        [
            xml.field("LastModified", xml.iso8601(new.mtime)),
            xml.field("ETag", f'"{new.etag}"'),
        ],
    )
    headers = m.version_headers(new) + s3_sse.response_headers(req, new.encryption)
    if not src.null:
        headers.append(("x-amz-copy-source-version-id", src.public_id))
    return headers, body


async def upload_part_copy(
    engine: ObjectEngine,
    call: Call,
    can_read: Checker,
    *,
    source_key: Callable[[Version], bytes | None],
    part_key: Callable[[Upload], bytes | None],
) -> Result:
    req, q = call.request, call.route.query
    src_bucket, src_key, src_version = parse_copy_source(req.header("x-amz-copy-source") or "")
    await can_read(src_bucket, src_key, src_version)
    try:
        number = int(q.get("partNumber", ""))
    except ValueError:
        raise InvalidArgument("partNumber must be an integer") from None
    byte_range = None
    raw_range = req.header("x-amz-copy-source-range")
    if raw_range is not None:
        byte_range = m.parse_range(raw_range)
        if byte_range is None or byte_range[0] is None or byte_range[1] is None:
            raise InvalidArgument("x-amz-copy-source-range must be bytes=first-last")
    source = await engine.head_object(src_bucket, src_key, src_version)
    source_conditions(call)(source)
    if byte_range is not None and (byte_range[1] or 0) >= source.size:
        # a copy range must lie within the source (unlike a GET's, which is clipped)
        raise S3Error(
            "InvalidRange",
            416,
            f"the range {raw_range} is not within the {source.size}-byte source",
        )
    async with engine.open_object(
        src_bucket, src_key, version=source, byte_range=byte_range, data_key=source_key(source)
    ) as reader:
        part = await engine.multipart.upload_part(
            call.route.bucket,
            call.route.key,
            q.get("uploadId", ""),
            number,
            reader,
            size=reader.length,
            data_key=part_key,
        )
    body = xml.document(
        "CopyPartResult",
        [
            xml.field("LastModified", xml.iso8601(part.mtime)),
            xml.field("ETag", f'"{part.etag}"'),
        ],
    )
    headers = []
    if not reader.version.null:
        headers.append(("x-amz-copy-source-version-id", reader.version.public_id))
    return headers, body
