"""The object engine's records (pure encodings): buckets, versions, index entries, uploads and
parts, as stored under the keys of ``keyspace.py``; and byte ranges of objects.

A version record above ``COMPRESS_ABOVE_BYTES`` (one of thousands of parts or chunks) is stored
zstd-compressed (its value then starts with zstd's frame magic, where a plain record starts with
"{"): chunk ids share their stream's prefix and the record compresses about 13-fold, so the
largest object S3 allows (10,000 parts, 5 TiB in 81,920 chunks) stays under the 1 MiB a
metadata value may be.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field, replace
from typing import Any

import zstandard

from store.chunk.chunkstore import ChunkRef
from store.errors import OutOfRange

# -- records -------------------------------------------------------------------------------------


COMPRESS_ABOVE_BYTES = 64 << 10
MAX_RECORD_BYTES = 256 << 20  # a decompressed version record (5 TiB is ~6 MB)
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
