"""Listings as range scans: objects, versions and multipart uploads, with S3's delimiter roll-up.

One scanner serves all three. It walks a key range in byte order (UTF-8 order of object keys),
rolls keys that contain the delimiter after the prefix up into a common prefix, and jumps past the
rest of that prefix with a new range start instead of reading it, so a directory of a million
keys costs one entry. ``max_items`` counts entries and common prefixes together, as S3's max-keys
does; ``last`` is where the next page starts (a key or a common prefix).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from store.errors import InvalidArgument
from store.meta.api import KV, KeyValue, prefix_end
from store.objects import keyspace as K
from store.objects import records as R
from store.objects.records import IndexEntry, Upload, Version

MAX_LIST = 1000
_PAGE = 1000


@dataclass(frozen=True, slots=True)
class Scan:
    entries: list[tuple[str, KeyValue]]
    prefixes: list[str]
    truncated: bool
    last: str  # the last key or common prefix returned ("" if none)


async def scan(
    kv: KV,
    base: bytes,
    *,
    prefix: str,
    delimiter: str,
    start: bytes,
    max_items: int,
    key_of: Callable[[bytes], str],
    keep: Callable[[KeyValue], bool] | None = None,
) -> Scan:
    """Entries under ``base + prefix`` from KV key ``start`` on (inclusive); entries ``keep``
    rejects are passed over as if absent (they neither count nor roll up)."""
    lo = max(start, base + prefix.encode())
    hi = prefix_end(base + prefix.encode()) if prefix else prefix_end(base)
    entries: list[tuple[str, KeyValue]] = []
    prefixes: list[str] = []
    last = ""
    while True:
        if lo >= hi:
            return Scan(entries, prefixes, False, last)
        page = await kv.range(lo, hi, limit=_PAGE)
        if not page.kvs:
            return Scan(entries, prefixes, False, last)
        jumped = False
        for item in page.kvs:
            if keep is not None and not keep(item):
                lo = item.key + b"\0"
                continue
            key = key_of(item.key)
            rolled = _rollup(key, prefix, delimiter)
            if len(entries) + len(prefixes) == max_items:
                return Scan(entries, prefixes, True, last)
            if rolled is not None:
                prefixes.append(rolled)
                last = rolled
                lo = prefix_end(base + rolled.encode())
                jumped = True
                break
            entries.append((key, item))
            last = key
            lo = item.key + b"\0"
        if not jumped and not page.more:
            return Scan(entries, prefixes, False, last)


def _rollup(key: str, prefix: str, delimiter: str) -> str | None:
    if not delimiter:
        return None
    at = key.find(delimiter, len(prefix))
    return None if at < 0 else key[: at + len(delimiter)]


def _after_key(base: bytes, marker: str, prefix: str, delimiter: str) -> bytes:
    """Start of the range strictly after ``marker`` (and after everything under it when it is a
    common prefix the previous page ended with)."""
    if not marker:
        return base
    if delimiter and _rollup(marker, prefix, delimiter) == marker and marker.startswith(prefix):
        return prefix_end(base + marker.encode())
    return base + marker.encode() + b"\0"


def _after_all_of(base: bytes, marker: str, prefix: str, delimiter: str) -> bytes:
    """Start of the range after every version (or upload) of key ``marker``: those keys are
    ``marker\\0<id>``, so ``marker\\1`` is past them all (keys never contain NUL)."""
    start = _after_key(base, marker, prefix, delimiter)
    if start == base + marker.encode() + b"\0":
        start = base + marker.encode() + b"\1"
    return start


async def _scan_ids(
    kv: KV, base: bytes, prefix: str, delimiter: str, start: bytes, max_items: int
) -> Scan:
    """A scan of ``<key>\\0<id>`` entries (versions, uploads), rolled up by key."""
    return await scan(
        kv,
        base,
        prefix=prefix,
        delimiter=delimiter,
        start=start,
        max_items=min(max_items, MAX_LIST),
        key_of=lambda raw: raw[len(base) :].rpartition(b"\0")[0].decode(),
    )


def _check(max_items: int, delimiter: str, bucket: str) -> None:
    K.check_bucket_lookup(bucket)
    if max_items < 0:
        raise InvalidArgument("max-keys must not be negative")
    if "\0" in delimiter:
        raise InvalidArgument("delimiter contains NUL")


# -- objects -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ObjectListing:
    objects: list[IndexEntry]
    prefixes: list[str]
    truncated: bool
    next_marker: str  # start-after / marker for the next page (the last key or prefix)


async def list_objects(
    kv: KV,
    bucket: str,
    *,
    prefix: str = "",
    delimiter: str = "",
    after: str = "",
    max_keys: int = MAX_LIST,
) -> ObjectListing:
    """ListObjects (v1 marker, v2 start-after / continuation): keys strictly after ``after``."""
    _check(max_keys, delimiter, bucket)
    base = K.current_prefix(bucket)
    result = await scan(
        kv,
        base,
        prefix=prefix,
        delimiter=delimiter,
        start=_after_key(base, after, prefix, delimiter),
        max_items=min(max_keys, MAX_LIST),
        key_of=lambda raw: raw[len(base) :].decode(),
        keep=lambda item: b'"dm":true' not in item.value,
    )
    objects = [IndexEntry.decode(key, item.value) for key, item in result.entries]
    return ObjectListing(objects, result.prefixes, result.truncated, result.last)


# -- versions ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VersionListing:
    versions: list[tuple[Version, bool]]  # (version or delete marker, is latest)
    prefixes: list[str]
    truncated: bool
    next_key_marker: str
    next_version_marker: str


async def list_versions(
    kv: KV,
    bucket: str,
    *,
    prefix: str = "",
    delimiter: str = "",
    key_marker: str = "",
    version_marker: str = "",
    max_keys: int = MAX_LIST,
) -> VersionListing:
    """ListObjectVersions: newest first within a key, keys in byte order."""
    _check(max_keys, delimiter, bucket)
    base = K.versions_prefix(bucket)
    if version_marker and key_marker:
        if version_marker == "null":
            found = await find_null_version(kv, bucket, key_marker)
            start = (found.key + b"\0") if found else base + key_marker.encode() + b"\1"
        else:
            K.check_version_id(version_marker)
            start = K.version_key(bucket, key_marker, version_marker) + b"\0"
    elif key_marker:
        start = _after_all_of(base, key_marker, prefix, delimiter)
    else:
        start = base
    result = await _scan_ids(kv, base, prefix, delimiter, start, max_keys)
    versions = []
    previous = key_marker if version_marker else None
    for key, item in result.entries:
        versions.append((Version.decode(bucket, key, item.value), key != previous))
        previous = key
    next_version = ""
    if result.truncated and result.entries and result.last == result.entries[-1][0]:
        next_version = versions[-1][0].public_id
    return VersionListing(versions, result.prefixes, result.truncated, result.last, next_version)


async def find_null_version(kv: KV, bucket: str, key: str) -> KeyValue | None:
    """The V/ entry of a key's "null" version, if it has one (any number of versions)."""
    prefix = K.versions_of(bucket, key)
    start, end = prefix, prefix_end(prefix)
    while True:
        page = await kv.range(start, end, limit=MAX_LIST)
        for item in page.kvs:
            if b'"null":true' in R.plain_record(item.value).partition(b"\0")[0]:
                return item
        if not page.more:
            return None
        start = page.kvs[-1].key + b"\0"


# -- multipart uploads ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UploadListing:
    uploads: list[Upload]
    prefixes: list[str]
    truncated: bool
    next_key_marker: str
    next_upload_marker: str


async def list_uploads(
    kv: KV,
    bucket: str,
    *,
    prefix: str = "",
    delimiter: str = "",
    key_marker: str = "",
    upload_marker: str = "",
    max_uploads: int = MAX_LIST,
) -> UploadListing:
    _check(max_uploads, delimiter, bucket)
    base = K.uploads_prefix(bucket)
    if key_marker and upload_marker:
        K.check_upload_id(upload_marker)
        start = K.upload_key(bucket, key_marker, upload_marker) + b"\0"
    elif key_marker:
        start = _after_all_of(base, key_marker, prefix, delimiter)
    else:
        start = base
    result = await _scan_ids(kv, base, prefix, delimiter, start, max_uploads)
    uploads = []
    for key, item in result.entries:
        _, upload_id = K.split_versioned(item.key, base)
        uploads.append(Upload.decode(bucket, key, upload_id, item.value))
    next_upload = ""
    if result.truncated and uploads and result.last == uploads[-1].key:
        next_upload = uploads[-1].upload_id
    return UploadListing(uploads, result.prefixes, result.truncated, result.last, next_upload)
