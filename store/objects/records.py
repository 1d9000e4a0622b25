"""Metadata keys and records of the object engine (pure: names, encodings, validation).

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

A version record above ``COMPRESS_ABOVE_BYTES`` (one of thousands of parts or chunks) is stored
zstd-compressed (its value then starts with zstd's frame magic, where a plain record starts with
"{"): chunk ids share their stream's prefix and the record compresses about 13-fold, so the
largest object S3 allows (10,000 parts, 5 TiB in 81,920 chunks) stays under the 1 MiB a
metadata value may be.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any

import zstandard

from store.chunk.chunkstore import ChunkRef
from store.errors import InvalidArgument, InvalidBucketName, KeyTooLong, NoSuchUpload, OutOfRange
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


# -- records -------------------------------------------------------------------------------------


COMPRESS_ABOVE_BYTES = 64 << 10
MAX_RECORD_BYTES = 256 << 20  # a decompressed version record (5 TiB of chunks is ~55 MB)
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def plain_record(raw: bytes) -> bytes:
    """A stored version record as ``Version.encode`` made it before compression."""
    if raw.startswith(_ZSTD_MAGIC):
        return zstandard.ZstdDecompressor().decompress(raw, max_output_size=MAX_RECORD_BYTES)
    return raw


def _dumps(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True, slots=True)
class Bucket:
    name: str
    owner: str
    created: float
    versioning: str = ""  # "" (never enabled) | "Enabled" | "Suspended"
    compression: str = ""  # "" | "zstd"
    settings: dict[str, Any] = field(default_factory=dict)  # CORS, policy, tags: gateway-owned
    deleting: bool = False

    def encode(self) -> bytes:
        return _dumps(
            {
                "name": self.name,
                "owner": self.owner,
                "created": self.created,
                "versioning": self.versioning,
                "compression": self.compression,
                "settings": self.settings,
                "deleting": self.deleting,
            }
        )

    @classmethod
    def decode(cls, raw: bytes) -> Bucket:
        return cls(**json.loads(raw))


@dataclass(frozen=True, slots=True)
class Checksum:
    """A stored additional checksum: algorithm, type (FULL_OBJECT or COMPOSITE), base64 value."""

    algorithm: str
    type: str
    value: str


@dataclass(frozen=True, slots=True)
class PartInfo:
    """A part of a completed multipart object (for GetObjectAttributes and ?partNumber=)."""

    size: int
    etag: str
    checksum: str = ""


@dataclass(frozen=True, slots=True)
class Version:
    """One version of an object (or a delete marker)."""

    bucket: str
    key: str
    version_id: str  # the stored id; ``public_id`` is what clients see
    null: bool = False
    delete_marker: bool = False
    size: int = 0
    etag: str = ""  # hex MD5, or hex MD5-of-MD5s "-N" (no quotes)
    mtime: float = 0.0
    owner: str = ""
    content_type: str = ""
    metadata: dict[str, str] = field(default_factory=dict)  # x-amz-meta-*, names lowercased
    headers: dict[str, str] = field(default_factory=dict)  # cache-control, content-encoding, ...
    checksum: Checksum | None = None
    parts: tuple[PartInfo, ...] = ()
    tags: dict[str, str] = field(default_factory=dict)
    chunks: tuple[ChunkRef, ...] = ()
    inline: bytes | None = None  # small objects live in the record
    compression: str = ""  # "zstd": data is zstd frames, ``frames`` their stored sizes
    frames: tuple[int, ...] = ()
    frame_bytes: int = 0  # raw bytes per frame (the last may be short)
    # Gateway-owned attributes (see ATTRIBUTES): the ACL's grants ([kind, grantee, permission]
    # lists; None: the owner's private ACL), the storage class ("" for STANDARD), object lock
    # (retention [mode, until epoch s]; legal hold), server-side encryption (the envelope).
    acl: tuple[tuple[str, str, str], ...] | None = None
    storage_class: str = ""
    retention: tuple[str, float] | None = None
    legal_hold: bool = False
    encryption: dict[str, str] | None = None

    @property
    def public_id(self) -> str:
        return "null" if self.null else self.version_id

    def locked(self, now: float, bypass_governance: bool = False) -> str | None:
        """Why this version may not be deleted now (object lock), or None."""
        if self.legal_hold:
            return "the object version is under a legal hold"
        if self.retention is not None and self.retention[1] > now:
            mode = self.retention[0]
            if mode == "COMPLIANCE" or not bypass_governance:
                return f"the object version is locked in {mode} mode until {self.retention[1]:.0f}"
        return None

    @property
    def stored_size(self) -> int:
        return sum(c.length for c in self.chunks) if self.inline is None else len(self.inline)

    def encode(self) -> bytes:
        body: dict[str, Any] = {"v": self.version_id, "mtime": self.mtime, "owner": self.owner}
        if self.null:
            body["null"] = True
        if self.delete_marker:
            body["dm"] = True
        else:
            body.update(size=self.size, etag=self.etag, ct=self.content_type)
            for name, value in [
                ("meta", self.metadata),
                ("hdr", self.headers),
                ("tags", self.tags),
            ]:
                if value:
                    body[name] = value
            if self.checksum:
                c = self.checksum
                body["ck"] = [c.algorithm, c.type, c.value]
            if self.parts:
                body["parts"] = [[p.size, p.etag, p.checksum] for p in self.parts]
            if self.chunks:
                body["chunks"] = [c.to_json() for c in self.chunks]
            if self.compression:
                body["z"] = [self.compression, self.frame_bytes, _pack(self.frames)]
            _encode_attributes(self, body)
        # Inline data follows the JSON after a NUL (JSON text never contains a raw NUL).
        head = _dumps(body)
        if self.inline is not None:
            return head + b"\0" + self.inline
        if len(head) > COMPRESS_ABOVE_BYTES:
            return zstandard.ZstdCompressor(level=3).compress(head)
        return head

    @classmethod
    def decode(cls, bucket: str, key: str, raw: bytes) -> Version:
        head, sep, inline = plain_record(raw).partition(b"\0")
        body = json.loads(head)
        z = body.get("z")
        ck = body.get("ck")
        return cls(
            bucket=bucket,
            key=key,
            version_id=body["v"],
            null=body.get("null", False),
            delete_marker=body.get("dm", False),
            size=body.get("size", 0),
            etag=body.get("etag", ""),
            mtime=body["mtime"],
            owner=body.get("owner", ""),
            content_type=body.get("ct", ""),
            metadata=body.get("meta", {}),
            headers=body.get("hdr", {}),
            checksum=Checksum(*ck) if ck else None,
            parts=tuple(PartInfo(*p) for p in body.get("parts", ())),
            tags=body.get("tags", {}),
            chunks=tuple(ChunkRef.from_json(c) for c in body.get("chunks", ())),
            inline=inline if sep else None,
            compression=z[0] if z else "",
            frame_bytes=z[1] if z else 0,
            frames=_unpack(z[2]) if z else (),
            **_decode_attributes(body),
        )

    def index_entry(self) -> bytes:
        """The O/ entry naming this version (what listings need without the full record)."""
        body: dict[str, Any] = {
            "v": self.version_id,
            "size": self.size,
            "etag": self.etag,
            "mtime": self.mtime,
            "owner": self.owner,
        }
        if self.null:
            body["null"] = True
        if self.delete_marker:
            body["dm"] = True
        if self.storage_class:
            body["sc"] = self.storage_class
        return _dumps(body)

    def with_(self, **changes: Any) -> Version:
        return replace(self, **changes)


@dataclass(frozen=True, slots=True)
class IndexEntry:
    key: str
    version_id: str
    size: int
    etag: str
    mtime: float
    owner: str
    null: bool = False
    delete_marker: bool = False  # the newest version is a delete marker: listings skip it
    storage_class: str = ""

    @property
    def public_id(self) -> str:
        return "null" if self.null else self.version_id

    @classmethod
    def decode(cls, key: str, raw: bytes) -> IndexEntry:
        b = json.loads(raw)
        return cls(
            key,
            b["v"],
            b["size"],
            b["etag"],
            b["mtime"],
            b.get("owner", ""),
            b.get("null", False),
            b.get("dm", False),
            b.get("sc", ""),
        )


@dataclass(frozen=True, slots=True)
class Upload:
    bucket: str
    key: str
    upload_id: str
    initiated: float
    owner: str = ""
    content_type: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    checksum_algorithm: str = ""
    checksum_type: str = ""
    # What the completed object's version gets (see Version).
    acl: tuple[tuple[str, str, str], ...] | None = None
    storage_class: str = ""
    retention: tuple[str, float] | None = None
    legal_hold: bool = False
    encryption: dict[str, str] | None = None

    def encode(self) -> bytes:
        body = {
            "initiated": self.initiated,
            "owner": self.owner,
            "ct": self.content_type,
            "meta": self.metadata,
            "hdr": self.headers,
            "tags": self.tags,
            "ck": [self.checksum_algorithm, self.checksum_type],
        }
        _encode_attributes(self, body)
        return _dumps(body)

    @classmethod
    def decode(cls, bucket: str, key: str, upload_id: str, raw: bytes) -> Upload:
        b = json.loads(raw)
        return cls(
            bucket,
            key,
            upload_id,
            b["initiated"],
            b["owner"],
            b["ct"],
            b["meta"],
            b["hdr"],
            b["tags"],
            *b["ck"],
            **_decode_attributes(b),
        )

    def attributes(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in ATTRIBUTES}


@dataclass(frozen=True, slots=True)
class Part:
    number: int
    size: int
    etag: str  # hex MD5
    mtime: float
    checksum: str = ""  # base64 digest in the upload's algorithm
    chunks: tuple[ChunkRef, ...] = ()
    inline: bytes | None = None
    nonce: str = ""  # an encrypted upload's part: its stream's nonce prefix (base64)

    def encode(self) -> bytes:
        body: dict[str, Any] = {
            "size": self.size,
            "etag": self.etag,
            "mtime": self.mtime,
            "ck": self.checksum,
            "chunks": [c.to_json() for c in self.chunks],
        }
        if self.nonce:
            body["np"] = self.nonce
        head = _dumps(body)
        return head if self.inline is None else head + b"\0" + self.inline

    @classmethod
    def decode(cls, number: int, raw: bytes) -> Part:
        head, sep, inline = raw.partition(b"\0")
        b = json.loads(head)
        chunks = tuple(ChunkRef.from_json(c) for c in b["chunks"])
        return cls(
            number,
            b["size"],
            b["etag"],
            b["mtime"],
            b["ck"],
            chunks,
            inline if sep else None,
            b.get("np", ""),
        )


ATTRIBUTES = ("acl", "storage_class", "retention", "legal_hold", "encryption")


def _encode_attributes(rec: Version | Upload, body: dict[str, Any]) -> None:
    if rec.acl is not None:
        body["acl"] = [list(g) for g in rec.acl]
    if rec.storage_class:
        body["sc"] = rec.storage_class
    if rec.retention is not None:
        body["ret"] = list(rec.retention)
    if rec.legal_hold:
        body["lh"] = True
    if rec.encryption is not None:
        body["enc"] = rec.encryption


def _decode_attributes(body: dict[str, Any]) -> dict[str, Any]:
    acl = body.get("acl")
    ret = body.get("ret")
    return {
        "acl": tuple(tuple(g) for g in acl) if acl is not None else None,
        "storage_class": body.get("sc", ""),
        "retention": (ret[0], ret[1]) if ret else None,
        "legal_hold": body.get("lh", False),
        "encryption": body.get("enc"),
    }


def _pack(values: tuple[int, ...]) -> str:
    return base64.b64encode(b"".join(v.to_bytes(4, "little") for v in values)).decode()


def _unpack(text: str) -> tuple[int, ...]:
    raw = base64.b64decode(text)
    return tuple(int.from_bytes(raw[i : i + 4], "little") for i in range(0, len(raw), 4))


# -- byte ranges ---------------------------------------------------------------------------------


def resolve_range(first: int | None, last: int | None, size: int) -> tuple[int, int]:
    """(offset, length) of an HTTP byte range ``first-last`` (``-last`` is a suffix) of an
    object of ``size`` bytes; OutOfRange when it is not satisfiable (RFC 9110 14.1.2).

    >>> resolve_range(0, 99, 1000), resolve_range(None, 10, 1000), resolve_range(990, None, 1000)
    ((0, 100), (990, 10), (990, 10))
    >>> resolve_range(500, 2000, 1000)
    (500, 500)
    """
    if first is None:
        if last is None or last <= 0 or size == 0:
            raise OutOfRange(f"suffix range -{last} of a {size}-byte object")
        n = min(last, size)
        return size - n, n
    if first >= size or (last is not None and last < first):
        raise OutOfRange(f"range {first}-{last} of a {size}-byte object")
    end = size - 1 if last is None else min(last, size - 1)
    return first, end - first + 1
