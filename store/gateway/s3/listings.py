"""The S3 listings: ListObjects (v1, v2), ListObjectVersions, ListMultipartUploads, ListParts.

Each takes the engine and the call (the bucket's access is checked by the caller) and returns
the XML body. ``encoding-type=url`` encodes every field botocore decodes (keys, prefixes,
delimiters, markers); continuation tokens are opaque (base64 of the last key or prefix).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable, Mapping

from store.errors import InvalidArgument
from store.gateway.http import Response
from store.gateway.s3 import messages as m
from store.gateway.s3.call import Call
from store.gateway.s3.handlers import HandlerGroup
from store.objects.engine import ObjectEngine
from store.s3 import xml

TOKEN_VERSION = "1"


def encode_token(marker: str) -> str:
    """An opaque continuation token naming the last key listed.

    >>> decode_token(encode_token("a/b é"))
    'a/b é'
    """
    return TOKEN_VERSION + base64.urlsafe_b64encode(marker.encode()).decode().rstrip("=")


def decode_token(token: str) -> str:
    """The marker of a token ``encode_token`` made; anything else is InvalidArgument, as S3
    answers a token it did not issue."""
    if token == "":  # an empty token is no token: the listing starts at the beginning
        return ""
    bad = InvalidArgument("the continuation token provided is incorrect")
    if not token.startswith(TOKEN_VERSION):
        raise bad
    body = token[len(TOKEN_VERSION) :]
    try:
        marker = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise bad from None
    if encode_token(marker) != token:
        raise bad
    return marker


def int_param(q: Mapping[str, str], name: str, default: int) -> int:
    value = q.get(name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise InvalidArgument(f"{name} must be an integer") from None
    if number < 0:
        raise InvalidArgument(f"{name} must not be negative")
    return number


def _encoder(q: Mapping[str, str]) -> tuple[bool, Callable[[str], str]]:
    encode = q.get("encoding-type") == "url"
    if "encoding-type" in q and not encode:
        raise InvalidArgument("invalid encoding type")

    def enc(value: str) -> str:
        return xml.url_encode(value) if encode else value

    return encode, enc


def _common_prefixes(prefixes: list[str], enc: Callable[[str], str]) -> list[str]:
    return [xml.element("CommonPrefixes", [xml.field("Prefix", enc(cp))]) for cp in prefixes]


def _delimiter_fields(delimiter: str, encode: bool, enc: Callable[[str], str]) -> list[str]:
    out = [xml.field("Delimiter", enc(delimiter))] if delimiter else []
    return out + ([xml.field("EncodingType", "url")] if encode else [])


async def list_objects(engine: ObjectEngine, call: Call) -> bytes:
    q = call.route.query
    v2 = call.route.operation == "ListObjectsV2"
    encode, enc = _encoder(q)
    max_keys = int_param(q, "max-keys", 1000)
    if v2:
        token = q.get("continuation-token")
        after = decode_token(token) if token is not None else q.get("start-after", "")
    else:
        after = q.get("marker", "")
    prefix, delimiter = q.get("prefix", ""), q.get("delimiter", "")
    result = await engine.list_objects(
        call.route.bucket,
        prefix=prefix,
        delimiter=delimiter,
        after=after,
        max_keys=max_keys,
    )

    # S3 url-encodes ListObjects v1's Prefix element not at all (clients decode only Marker,
    # NextMarker, Delimiter and keys there); v2 encodes it.
    out = [xml.field("Name", call.route.bucket), xml.field("Prefix", enc(prefix) if v2 else prefix)]
    # With max-keys=0 nothing is listed and nothing is left out, as S3 reports it.
    truncated = result.truncated and max_keys > 0
    if v2:
        out.append(xml.field("KeyCount", len(result.objects) + len(result.prefixes)))
        if "continuation-token" in q:
            out.append(xml.field("ContinuationToken", q["continuation-token"]))
        if "start-after" in q:
            out.append(xml.field("StartAfter", enc(q["start-after"])))
        if truncated:
            out.append(xml.field("NextContinuationToken", encode_token(result.next_marker)))
    else:
        out.append(xml.field("Marker", enc(after)))
        if truncated and delimiter:
            out.append(xml.field("NextMarker", enc(result.next_marker)))
    out += [xml.field("MaxKeys", max_keys)]
    out += _delimiter_fields(delimiter, encode, enc)
    out.append(xml.field("IsTruncated", truncated))
    fetch_owner = not v2 or q.get("fetch-owner") == "true"
    for entry in result.objects:
        children = [
            xml.field("Key", enc(entry.key)),
            xml.field("LastModified", xml.iso8601(entry.mtime)),
            xml.field("ETag", f'"{entry.etag}"'),
            xml.field("Size", entry.size),
            xml.field("StorageClass", entry.storage_class or "STANDARD"),
        ]
        if fetch_owner:
            children.append(xml.owner(entry.owner))
        out.append(xml.element("Contents", children))
    out += _common_prefixes(result.prefixes, enc)
    return xml.document("ListBucketResult", out)


async def list_versions(engine: ObjectEngine, call: Call) -> bytes:
    q = dict(call.route.query)
    encode, enc = _encoder(q)
    max_keys = int_param(q, "max-keys", 1000)
    prefix, delimiter = q.get("prefix", ""), q.get("delimiter", "")
    key_marker, version_marker = q.get("key-marker", ""), q.get("version-id-marker", "")
    if version_marker and not key_marker:
        raise InvalidArgument("a version-id marker needs a key marker")
    result = await engine.list_versions(
        call.route.bucket,
        prefix=prefix,
        delimiter=delimiter,
        key_marker=key_marker,
        version_marker=version_marker,
        max_keys=max_keys,
    )
    out = [
        xml.field("Name", call.route.bucket),
        xml.field("Prefix", enc(prefix)),
        xml.field("KeyMarker", enc(key_marker)),
        xml.field("VersionIdMarker", version_marker),
    ]
    if result.truncated:
        out.append(xml.field("NextKeyMarker", enc(result.next_key_marker)))
        if result.next_version_marker:
            out.append(xml.field("NextVersionIdMarker", result.next_version_marker))
    out.append(xml.field("MaxKeys", max_keys))
    out += _delimiter_fields(delimiter, encode, enc)
    out.append(xml.field("IsTruncated", result.truncated))
    for version, latest in result.versions:
        children = [
            xml.field("Key", enc(version.key)),
            xml.field("VersionId", version.public_id),
            xml.field("IsLatest", latest),
            xml.field("LastModified", xml.iso8601(version.mtime)),
        ]
        if version.delete_marker:
            out.append(xml.element("DeleteMarker", [*children, xml.owner(version.owner)]))
            continue
        children += [
            xml.field("ETag", f'"{version.etag}"'),
            xml.field("Size", version.size),
            xml.field("StorageClass", version.storage_class or "STANDARD"),
            xml.owner(version.owner),
        ]
        out.append(xml.element("Version", children))
    out += _common_prefixes(result.prefixes, enc)
    return xml.document("ListVersionsResult", out)


async def list_uploads(engine: ObjectEngine, call: Call) -> bytes:
    q = dict(call.route.query)
    encode, enc = _encoder(q)
    max_uploads = int_param(q, "max-uploads", 1000)
    prefix, delimiter = q.get("prefix", ""), q.get("delimiter", "")
    key_marker, upload_marker = q.get("key-marker", ""), q.get("upload-id-marker", "")
    result = await engine.list_uploads(
        call.route.bucket,
        prefix=prefix,
        delimiter=delimiter,
        key_marker=key_marker,
        upload_marker=upload_marker if key_marker else "",
        max_uploads=max_uploads,
    )
    out = [
        xml.field("Bucket", call.route.bucket),
        xml.field("KeyMarker", enc(key_marker)),
        xml.field("UploadIdMarker", upload_marker),
        xml.field("NextKeyMarker", enc(result.next_key_marker if result.truncated else "")),
        xml.field("NextUploadIdMarker", result.next_upload_marker if result.truncated else ""),
        xml.field("Prefix", enc(prefix)),
        xml.field("MaxUploads", max_uploads),
        xml.field("IsTruncated", result.truncated),
    ]
    out += _delimiter_fields(delimiter, encode, enc)
    for upload in result.uploads:
        out.append(
            xml.element(
                "Upload",
                [
                    xml.field("Key", enc(upload.key)),
                    xml.field("UploadId", upload.upload_id),
                    xml.owner(upload.owner, "Initiator"),
                    xml.owner(upload.owner),
                    xml.field("StorageClass", upload.storage_class or "STANDARD"),
                    xml.field("Initiated", xml.iso8601(upload.initiated)),
                ],
            )
        )
    out += _common_prefixes(result.prefixes, enc)
    return xml.document("ListMultipartUploadsResult", out)


async def list_parts(engine: ObjectEngine, call: Call) -> bytes:
    q = dict(call.route.query)
    max_parts = int_param(q, "max-parts", 1000)
    marker = int_param(q, "part-number-marker", 0)
    result = await engine.multipart.list_parts(
        call.route.bucket,
        call.route.key,
        q.get("uploadId", ""),
        marker=marker,
        max_parts=max_parts,
    )
    upload = result.upload
    out = [
        xml.field("Bucket", call.route.bucket),
        xml.field("Key", call.route.key),
        xml.field("UploadId", upload.upload_id),
        xml.owner(upload.owner, "Initiator"),
        xml.owner(upload.owner),
        xml.field("StorageClass", upload.storage_class or "STANDARD"),
        xml.field("PartNumberMarker", marker),
        xml.field("NextPartNumberMarker", result.next_marker),
        xml.field("MaxParts", max_parts),
        xml.field("IsTruncated", result.truncated),
    ]
    if upload.checksum_algorithm:
        out.append(xml.field("ChecksumAlgorithm", upload.checksum_algorithm))
        out.append(xml.field("ChecksumType", upload.checksum_type))
    for part in result.parts:
        children = [
            xml.field("PartNumber", part.number),
            xml.field("LastModified", xml.iso8601(part.mtime)),
            xml.field("ETag", f'"{part.etag}"'),
            xml.field("Size", part.size),
        ]
        alg, _, value = part.checksum.partition(":")
        if value:
            children.append(xml.field("Checksum" + alg, value))
        out.append(xml.element("Part", children))
    return xml.document("ListPartsResult", out)


OPERATIONS: dict[str, str] = {
    "ListObjects": "list_objects",
    "ListObjectsV2": "list_objects",
    "ListObjectVersions": "list_versions",
    "ListMultipartUploads": "list_uploads",
    "ListParts": "list_parts",
}


class ListingHandlers(HandlerGroup):
    OPERATIONS = OPERATIONS

    async def _listed(
        self, call: Call, fn: Callable[[ObjectEngine, Call], Awaitable[bytes]]
    ) -> Response:
        await self._bucket(call)
        return m.xml(200, await fn(self.engine, call))

    async def list_objects(self, call: Call) -> Response:
        return await self._listed(call, list_objects)

    async def list_versions(self, call: Call) -> Response:
        return await self._listed(call, list_versions)

    async def list_uploads(self, call: Call) -> Response:
        return await self._listed(call, list_uploads)

    async def list_parts(self, call: Call) -> Response:
        return await self._listed(call, list_parts)
