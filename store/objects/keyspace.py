"""The object engine's key space (pure): names and their validation, keys, and ids.

Key space (all keys are bytes; the KV orders them bytewise, so UTF-8 object keys list in S3 order).
Bucket names never contain "/", object keys never contain NUL, so the separators are unambiguous:

    B/<bucket>                          bucket record (owner, versioning, compression, settings)
    O/<bucket>/<key>                    the current version of a visible object: a small index
                                        entry (version, size, ETag, mtime) that listings scan
    V/<bucket>/<key>\\0<version>         every version, delete markers included; the full record
    U/<bucket>/<key>\\0<upload id>       multipart uploads in progress
    P/<upload id>/<part number:05d>     uploaded parts
    M/<upload id>                       a completed upload (bucket, key, ETag), for retries
    R/<chunk id>                        reference index: every chunk with shards on the drives
    G/<ns:020d>/<chunk id>              garbage: chunks whose shards are to be removed

Version ids are 16 hex digits of (2^64 - 1 - a hybrid clock in ns) plus 8 random hex digits, so
a key's versions sort newest first and a listing of V/ is S3's ListObjectVersions order. The
"null" version (unversioned or suspended buckets) is stored under such an id too, flagged null.

Invariants: O/<b>/<k> exists iff some V/<b>/<k>\\0* entry exists, and it names the newest one
(flagged when that is a delete marker, which listings skip). So every change to a key's versions
changes O/<b>/<k>, and a transaction comparing it is serialised with all of them.
Every chunk named by a version, a part or a G/ entry has an R/ entry; shards whose chunk has no
R/ entry are orphans of a crash (removed after a grace period).
"""

from __future__ import annotations

import re
import secrets
import threading
import time

from store.errors import InvalidArgument, InvalidBucketName, KeyTooLong, NoSuchUpload
from store.s3.xml import xml_text_ok

MAX_KEY_BYTES = 1024
MAX_PART_NUMBER = 10_000

_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_IPV4 = re.compile(r"\d+\.\d+\.\d+\.\d+")
_VERSION = re.compile(r"[0-9a-f]{24}")
_UPLOAD = re.compile(r"[0-9a-f]{24}")


def check_bucket_name(name: str) -> None:
    """S3's rules for new bucket names (general purpose buckets).

    >>> check_bucket_name("my-bucket.1")
    >>> check_bucket_name("My_Bucket")
    Traceback (most recent call last):
    ...
    store.errors.InvalidBucketName: invalid bucket name 'My_Bucket'
    """
    if (
        not isinstance(name, str)
        or not _BUCKET.fullmatch(name)
        or ".." in name
        or ".-" in name
        or "-." in name
        or _IPV4.fullmatch(name)
        or name.startswith(("xn--", "sthree-", "amzn-s3-demo-"))
        or name.endswith(("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"))
    ):
        raise InvalidBucketName(f"invalid bucket name {name!r}")


_LOOKUP = re.compile(r"[A-Za-z0-9._-]{1,255}")


def check_bucket_lookup(name: str) -> None:
    """Names looked up may predate today's rules, but never contain a separator of the key
    space: a bucket name can never reach into another bucket's keys."""
    if not isinstance(name, str) or not _LOOKUP.fullmatch(name):
        raise InvalidBucketName(f"invalid bucket name {name!r}")


def check_object_key(key: str) -> bytes:
    """The UTF-8 bytes of a valid object key: 1..1024 bytes, no NUL, valid Unicode."""
    if not isinstance(key, str) or not key:
        raise InvalidArgument("object key must not be empty")
    try:
        raw = key.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidArgument("object key is not valid UTF-8") from None
    if len(raw) > MAX_KEY_BYTES:
        raise KeyTooLong(f"object key is {len(raw)} bytes, the limit is {MAX_KEY_BYTES}")
    if b"\0" in raw:
        raise InvalidArgument("object key contains NUL")
    return raw


def check_new_key(key: str) -> bytes:
    """``check_object_key``, plus what a new key may not hold: characters XML 1.0 cannot carry
    (C0 controls other than tab, LF and CR), which no listing could then return well-formed.
    Older keys stay readable and deletable (only writes check this)."""
    raw = check_object_key(key)
    if not xml_text_ok(key):
        raise InvalidArgument(
            "object keys may not contain control characters other than tab, LF and CR "
            "(XML listings cannot carry them)"
        )
    return raw


# -- keys ----------------------------------------------------------------------------------------


def bucket_key(bucket: str) -> bytes:
    return b"B/" + bucket.encode()


def current_prefix(bucket: str) -> bytes:
    return b"O/" + bucket.encode() + b"/"


def current_key(bucket: str, key: str) -> bytes:
    return current_prefix(bucket) + key.encode()


def versions_prefix(bucket: str) -> bytes:
    return b"V/" + bucket.encode() + b"/"


def versions_of(bucket: str, key: str) -> bytes:
    """Prefix of every version of one key."""
    return versions_prefix(bucket) + key.encode() + b"\0"


def version_key(bucket: str, key: str, vid: str) -> bytes:
    return versions_of(bucket, key) + vid.encode()


def uploads_prefix(bucket: str) -> bytes:
    return b"U/" + bucket.encode() + b"/"


def upload_key(bucket: str, key: str, upload_id: str) -> bytes:
    return uploads_prefix(bucket) + key.encode() + b"\0" + upload_id.encode()


def parts_prefix(upload_id: str) -> bytes:
    return b"P/" + upload_id.encode() + b"/"


def part_key(upload_id: str, number: int) -> bytes:
    return parts_prefix(upload_id) + b"%05d" % number


COMPLETED_PREFIX = b"M/"


def completed_key(upload_id: str) -> bytes:
    return COMPLETED_PREFIX + upload_id.encode()


def split_versioned(raw: bytes, prefix: bytes) -> tuple[str, str]:
    """(key, version or upload id) from a V/ or U/ key."""
    key, _, vid = raw[len(prefix) :].rpartition(b"\0")
    return key.decode(), vid.decode()


# -- ids -----------------------------------------------------------------------------------------

_clock_lock = threading.Lock()
_last_ns = 0


def _clock_ns() -> int:
    """Wall-clock ns, strictly increasing within the process."""
    global _last_ns
    with _clock_lock:
        _last_ns = max(time.time_ns(), _last_ns + 1)
        return _last_ns


def new_version_id(before: str | None = None) -> str:
    """Sorts before every earlier id of this process (newest first), unique across processes;
    and before ``before`` (a key's newest version), whatever another host's clock said.

    >>> new_version_id(before="0000000000000005ffffffff")[:16]
    '0000000000000004'
    """
    stamp = (1 << 64) - 1 - _clock_ns()
    if before is not None and before != "null":
        stamp = min(stamp, int(before[:16], 16) - 1)
    return f"{stamp:016x}{secrets.token_hex(4)}"


def new_upload_id() -> str:
    return new_version_id()


def check_version_id(vid: str) -> None:
    if vid != "null" and not _VERSION.fullmatch(vid):
        raise InvalidArgument(f"invalid version id {vid!r}")


def check_upload_id(upload_id: str) -> None:
    """An id this service could have issued; any other names no upload (S3: NoSuchUpload)."""
    if not isinstance(upload_id, str) or not _UPLOAD.fullmatch(upload_id):
        raise NoSuchUpload(f"no upload {upload_id!r}")
