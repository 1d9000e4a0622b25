"""The object engine: buckets, objects, versions, on a metadata KV and a chunk store.

Every change is one KV transaction that compares what it read (the bucket record's and the
object's revisions), so concurrent writers and a concurrent bucket deletion never leave the key
space inconsistent (see keyspace.py for the invariants); a transaction that lost a race re-reads and
retries. Data is written (and fsynced) before the transaction that makes it visible; data that
becomes unreachable moves to the garbage queue in the same transaction.

Writes stream: the body is hashed (MD5 for the ETag, plus an optional S3 checksum) in a worker
thread while the chunk store encodes and writes the previous stripe, so a single PUT uses two
cores. Bodies up to ``inline_bytes`` are stored inside the version record instead.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import trio

from store.chunk.chunkstore import ChunkStore
from store.codec import checksums, encryption
from store.errors import (
    Conflict,
    InvalidArgument,
    Locked,
    MethodNotAllowed,
    NoSuchKey,
    NoSuchVersion,
    PreconditionFailed,
    StoreError,
)
from store.meta.api import KV, Compare, Delete, KeyValue, Op, Put, prefix_end
from store.objects import ingest, listing
from store.objects import keyspace as K
from store.objects import records as R
from store.objects.buckets import BucketMethods
from store.objects.chunk_refs import garbage_ops, ref_ops
from store.objects.common import (
    Body,
    EngineStats,
    ExpectedChecksum,
    Prepared,
    Stored,
    check_fence,
    chunk_spans,
    commit_fence,
    verify_stored,
)
from store.objects.multipart import Multipart
from store.objects.reader import ObjectReader
from store.objects.records import Bucket, Version
from store.objects.sealing import Sealing, Unsealer

log = logging.getLogger(__name__)

INLINE_BYTES = 64 << 10
MAX_PUT_BYTES = 5 << 30  # S3's single-request limit
TXN_RETRIES = 20


@dataclass(frozen=True, slots=True)
class DeleteResult:
    version_id: str  # the version removed or the delete marker created ("null" possible)
    delete_marker: bool


class ObjectEngine(BucketMethods):
    def __init__(
        self,
        kv: KV,
        chunks: ChunkStore,
        *,
        inline_bytes: int = INLINE_BYTES,
        min_part_bytes: int = 5 << 20,
        max_put_bytes: int = MAX_PUT_BYTES,
    ) -> None:
        self.kv = kv
        self.chunks = chunks
        self.inline_bytes = inline_bytes
        self.min_part_bytes = min_part_bytes
        self.max_put_bytes = max_put_bytes
        self.stats = EngineStats()
        self.multipart = Multipart(self)
        # Chunks a read found damaged (missing or corrupt shards): the healer's work queue.
        self.damaged: set[str] = set()
        chunks.on_damage = lambda ref: self.damaged.add(ref.chunk_id)

    # -- writing data -----------------------------------------------------------------------------

    async def store_body(
        self,
        body: Body,
        *,
        size: int | None,
        compression: str = "",
        checksum_algorithm: str | None = None,
        limit: int | None = None,
        inline_bytes: int | None = None,
        sha256: bool = False,
        sealing: Sealing | None = None,
    ) -> Stored:
        """Write a body to the chunk store (or keep it for inlining), hashing it on the way
        (see ingest.py). The caller verifies digests and then references the result in a
        transaction, or calls ``discard`` on it."""
        stored = await ingest.store_body(
            self.chunks,
            body,
            size=size,
            limit=self.max_put_bytes if limit is None else limit,
            inline_bytes=self.inline_bytes if inline_bytes is None else inline_bytes,
            compression=compression,
            checksum_algorithm=checksum_algorithm,
            sha256=sha256,
            sealing=sealing,
        )
        self.stats.bytes_in += stored.size
        return stored

    async def discard(self, stored: Stored) -> None:
        for ref in stored.chunks:
            try:
                await self.chunks.delete(ref)
            except StoreError as e:  # the orphan sweep finds them later
                log.warning("could not remove chunk %s: %s", ref.chunk_id, e)

    # -- objects: write ---------------------------------------------------------------------------

    async def put_object(
        self,
        bucket: str,
        key: str,
        body: Body,
        *,
        size: int | None = None,
        owner: str = "",
        content_type: str = "",
        metadata: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        tags: dict[str, str] | None = None,
        content_md5: bytes | None = None,
        checksum_algorithm: str | None = None,
        expected_checksum: ExpectedChecksum = None,
        if_match: str | None = None,
        if_none_match: str | None = None,
        payload_sha256: str | None = None,
        attributes: Mapping[str, Any] | None = None,
        sealing: Sealing | None = None,
    ) -> Version:
        """Store a new version of ``bucket/key`` from a byte stream.

        ``content_md5`` (raw digest) and ``expected_checksum`` (base64, or a callable giving it
        once the body has been read, for checksums sent as trailers) are verified before anything
        becomes visible: a mismatch raises BadDigest and keeps nothing. ``if_match`` and
        ``if_none_match`` (an ETag or "*") are checked atomically with the commit.
        ``attributes`` are the version's gateway-owned fields (``records.ATTRIBUTES``).
        With ``sealing`` the stored bytes are encrypted (sealing.py); an SSE-C version's ETag is
        not the MD5 of its plaintext (which would tell about data the key protects), as in S3.
        """
        K.check_new_key(key)
        bucket_rec, bucket_kv = await self.bucket_record(bucket)
        algorithm = (
            checksums.canonical_algorithm(checksum_algorithm) if checksum_algorithm else None
        )
        if algorithm is None and expected_checksum is not None:
            raise InvalidArgument("a checksum value needs its algorithm")
        stored = await self.store_body(
            body,
            size=size,
            compression=bucket_rec.compression,
            checksum_algorithm=algorithm,
            sha256=payload_sha256 is not None,
            sealing=sealing,
        )
        try:
            checksum = verify_stored(
                stored, content_md5, algorithm, expected_checksum, payload_sha256
            )
            extra = dict(_attributes(attributes))
            etag = stored.md5.hex()
            if sealing is not None:
                extra["encryption"] = sealing.record()
                if sealing.envelope.mode == encryption.CUSTOMER:
                    etag = secrets.token_hex(16)
            version = Version(
                bucket=bucket,
                key=key,
                version_id="",
                size=stored.size,
                etag=etag,
                mtime=time.time(),
                owner=owner,
                content_type=content_type,
                metadata=dict(metadata or {}),
                headers=dict(headers or {}),
                checksum=checksum,
                tags=dict(tags or {}),
                chunks=stored.chunks,
                inline=stored.inline,
                compression=stored.compression,
                frames=stored.frames,
                frame_bytes=stored.frame_bytes,
                **extra,
            )
            committed = await self.commit_version(
                version,
                if_match=if_match,
                if_none_match=if_none_match,
                bucket_read=(bucket_rec, bucket_kv),
            )
        except BaseException:
            with trio.CancelScope(shield=True):
                await self.discard(stored)
            raise
        finally:
            self.chunks.release(stored.chunks)
        self.stats.puts += 1
        return committed

    async def commit_version(
        self,
        version: Version | None = None,
        *,
        prepare: Callable[[], Awaitable[Prepared]] | None = None,
        if_match: str | None = None,
        if_none_match: str | None = None,
        bucket_read: tuple[Bucket, KeyValue] | None = None,
        index_chunks: bool = True,
    ) -> Version:
        """Make ``version`` the newest version of its key (a delete marker too).

        ``prepare`` (instead of ``version``) is called on every attempt and returns the version
        plus operations and compares to commit with it: multipart completion re-reads its parts
        there, so a part uploaded meanwhile is never lost. The version id is drawn at commit
        time and always sorts before the key's newest version, so commit order is version order.
        ``bucket_read`` is the caller's read of the bucket, used by the first attempt (the
        transaction compares its revision; a retry reads it again). ``index_chunks`` false: the
        version's chunks are in the reference index already (a completed upload's parts).
        """
        for attempt in range(TXN_RETRIES):
            extra_ops: Sequence[Op] = ()
            extra_compares: Sequence[Compare] = ()
            if prepare is not None:
                version, extra_ops, extra_compares = await prepare()
            assert version is not None
            okey = K.current_key(version.bucket, version.key)
            if attempt == 0 and bucket_read is not None:
                bucket, bkv = bucket_read
            else:
                bucket, bkv = await self.bucket_record(version.bucket)
            current = await self.kv.get(okey)
            entry = R.IndexEntry.decode(version.key, current.value) if current else None
            _check_preconditions(entry, if_match, if_none_match, version.key)
            null = bucket.versioning != "Enabled"
            vid = K.new_version_id(before=entry.version_id if entry else None)
            new = version.with_(null=null, version_id=vid)
            vkey = K.version_key(new.bucket, new.key, vid)
            compares = [
                Compare.mod_is(bkv.key, bkv.mod_revision),
                Compare.mod_is(okey, current.mod_revision) if current else Compare.absent(okey),
                Compare.absent(vkey),
                *extra_compares,
            ]
            # O/ always names the newest version, delete markers included (listings skip those),
            # so every change to a key's versions changes O/ and the compare above serialises them.
            ops: list[Op] = [Put(vkey, new.encode()), Put(okey, new.index_entry()), *extra_ops]
            fence: list[Compare] = []
            if index_chunks:
                ops += ref_ops(new.chunks, vkey)
                fence = commit_fence(self.chunks, new.chunks)
                compares += fence
            if null and current is not None:  # the new null version replaces the old one
                old = await self._find_null(new.bucket, new.key)
                if old is not None:
                    kv, rec = old
                    compares.append(Compare.mod_is(kv.key, kv.mod_revision))
                    ops.append(Delete(kv.key))
                    ops += garbage_ops(rec.chunks)
            result = await self.kv.txn(compares, ops, [])
            if result.succeeded:
                return new
            await check_fence(self.kv, fence)
            self.stats.txn_retries += 1
        raise Conflict("the object is changing too fast; retry")

    async def _find_null(self, bucket: str, key: str) -> tuple[KeyValue, Version] | None:
        kv = await listing.find_null_version(self.kv, bucket, key)
        return None if kv is None else (kv, Version.decode(bucket, key, kv.value))

    async def delete_object(
        self,
        bucket: str,
        key: str,
        version_id: str | None = None,
        *,
        owner: str = "",
        bypass_governance: bool = False,
    ) -> DeleteResult:
        """S3 DeleteObject: without a version id, remove the object (unversioned) or add a
        delete marker (versioned); with one, remove exactly that version. Deleting what is not
        there succeeds (S3 semantics). A version under object lock (a legal hold, or retention
        not yet over; GOVERNANCE yields to ``bypass_governance``) is never removed: Locked."""
        K.check_object_key(key)
        self.stats.deletes += 1
        if version_id is None:
            bucket_rec = await self.get_bucket(bucket)
            if bucket_rec.versioning == "":
                return await self._delete_version(bucket, key, None, bypass_governance)
            marker = Version(bucket, key, "", delete_marker=True, mtime=time.time(), owner=owner)
            new = await self.commit_version(marker)
            return DeleteResult(new.public_id, True)
        K.check_version_id(version_id)
        return await self._delete_version(bucket, key, version_id, bypass_governance)

    async def _delete_version(
        self, bucket: str, key: str, version_id: str | None, bypass_governance: bool = False
    ) -> DeleteResult:
        """Remove one version (``None``: the null version) and repoint the current entry."""
        okey = K.current_key(bucket, key)
        bucket_key = K.bucket_key(bucket)
        for _ in range(TXN_RETRIES):
            _, bkv = await self.bucket_record(bucket)
            found = await self._lookup_version(bucket, key, version_id or "null")
            if found is None:
                return DeleteResult(version_id or "null", False)
            kv, rec = found
            why = rec.locked(time.time(), bypass_governance)
            if why is not None:
                raise Locked(why)
            current = await self.kv.get(okey)
            compares = [
                Compare.mod_is(bucket_key, bkv.mod_revision),
                Compare.mod_is(kv.key, kv.mod_revision),
                Compare.mod_is(okey, current.mod_revision) if current else Compare.absent(okey),
            ]
            ops: list[Op] = [Delete(kv.key), *garbage_ops(rec.chunks)]
            newest = await self._newest_other(bucket, key, kv.key)
            if newest is None:
                if current is not None:
                    ops.append(Delete(okey))
            else:
                compares.append(Compare.mod_is(newest[0].key, newest[0].mod_revision))
                ops.append(Put(okey, newest[1].index_entry()))
            result = await self.kv.txn(compares, ops, [])
            if result.succeeded:
                return DeleteResult(rec.public_id, rec.delete_marker)
            self.stats.txn_retries += 1
        raise Conflict(f"{bucket}/{key} is changing too fast; retry")

    async def _newest_other(
        self, bucket: str, key: str, skip: bytes
    ) -> tuple[KeyValue, Version] | None:
        prefix = K.versions_of(bucket, key)
        page = await self.kv.range(prefix, prefix_end(prefix), limit=2)
        for kv in page.kvs:
            if kv.key != skip:
                return kv, Version.decode(bucket, key, kv.value)
        return None

    async def _lookup_version(
        self, bucket: str, key: str, version_id: str
    ) -> tuple[KeyValue, Version] | None:
        if version_id == "null":
            return await self._find_null(bucket, key)
        kv = await self.kv.get(K.version_key(bucket, key, version_id))
        return None if kv is None else (kv, Version.decode(bucket, key, kv.value))

    # -- objects: read ----------------------------------------------------------------------------

    async def head_object(self, bucket: str, key: str, version_id: str | None = None) -> Version:
        """The version record (GET without the data). NoSuchKey (with ``delete_marker`` set when
        the newest version is one) or NoSuchVersion; MethodNotAllowed for a delete marker asked
        for by id."""
        K.check_bucket_lookup(bucket)
        K.check_object_key(key)
        if version_id is not None:
            await self.get_bucket(bucket)
            K.check_version_id(version_id)
            found = await self._lookup_version(bucket, key, version_id)
            if found is None:
                raise NoSuchVersion(f"no version {version_id} of {key!r}")
            rec = found[1]
            if rec.delete_marker:
                raise MethodNotAllowed(
                    "the version is a delete marker", delete_marker=True, version_id=version_id
                )
            return rec
        current = await self.kv.get(K.current_key(bucket, key))
        if current is not None:  # a version exists, so its bucket does: no bucket read needed
            entry = R.IndexEntry.decode(key, current.value)
            if entry.delete_marker:
                raise NoSuchKey(
                    f"no object {key!r}", delete_marker=True, version_id=entry.public_id
                )
            kv = await self.kv.get(K.version_key(bucket, key, entry.version_id))
            if kv is not None:
                return Version.decode(bucket, key, kv.value)
        await self.get_bucket(bucket)
        raise NoSuchKey(f"no object {key!r}")

    def open_object(
        self,
        bucket: str,
        key: str,
        *,
        version_id: str | None = None,
        byte_range: tuple[int | None, int | None] | None = None,
        part_number: int | None = None,
        version: Version | None = None,
        deferred: bool = False,
        data_key: bytes | None = None,
    ) -> ObjectReader:
        """``async with engine.open_object(...) as reader``: ``reader.version``, ``.offset``,
        ``.length``; iterate it for the bytes. Errors (no such key, range not satisfiable, too
        few shards for the first bytes) raise on entry, before any byte is returned."""
        return ObjectReader(
            self, bucket, key, version_id, byte_range, part_number, version, deferred, data_key
        )

    async def get_object(self, bucket: str, key: str, **kw: Any) -> tuple[Version, bytes]:
        """The whole (or ranged) object in memory: for tests and small objects."""
        async with self.open_object(bucket, key, **kw) as reader:
            return reader.version, b"".join([bytes(p) async for p in reader])

    async def read_stored(
        self, version: Version, offset: int, length: int, data_key: bytes | None = None
    ) -> list[Any]:
        """Bytes [offset, offset+length) of a version's data as it was stored (its compressed
        form if it is), decrypted with ``data_key`` when the version is encrypted."""
        if version.encryption is None:
            return await self._read_raw(version, offset, length)
        if data_key is None:
            raise InvalidArgument("the object is encrypted: its key is needed to read it")
        unsealer = Unsealer(version.encryption, stream_sizes(version), data_key)
        out: list[Any] = []
        for span in unsealer.spans(offset, length):
            raw = await self._read_raw(version, span.stored_offset, span.stored_length)
            out.append(await unsealer.open(span, raw))
        return out

    async def _read_raw(self, version: Version, offset: int, length: int) -> list[Any]:
        if version.inline is not None:
            return [memoryview(version.inline)[offset : offset + length]]
        out: list[Any] = []
        for ref, off, n in chunk_spans(version.chunks, offset, length):
            for w_off, w_len in self.chunks.windows(ref, off, n):
                out += await self.chunks.read(ref, w_off, w_len)
        return out

    # -- listings (the bucket must exist; see listing.py) ---------------------------------------

    async def list_objects(self, bucket: str, **kw: Any) -> listing.ObjectListing:
        await self.get_bucket(bucket)
        return await listing.list_objects(self.kv, bucket, **kw)

    async def list_versions(self, bucket: str, **kw: Any) -> listing.VersionListing:
        await self.get_bucket(bucket)
        return await listing.list_versions(self.kv, bucket, **kw)

    async def list_uploads(self, bucket: str, **kw: Any) -> listing.UploadListing:
        await self.get_bucket(bucket)
        return await listing.list_uploads(self.kv, bucket, **kw)

    # -- copy and tags ----------------------------------------------------------------------------

    async def copy_object(
        self,
        src_bucket: str,
        src_key: str,
        dst_bucket: str,
        dst_key: str,
        *,
        src_version_id: str | None = None,
        owner: str = "",
        replace_metadata: bool = False,
        content_type: str = "",
        metadata: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        tags: dict[str, str] | None = None,
        checksum_algorithm: str | None = None,
        condition: Callable[[Version], None] | None = None,
        byte_range: tuple[int | None, int | None] | None = None,
        attributes: Mapping[str, Any] | None = None,
        source_key: Callable[[Version], bytes | None] | None = None,
        sealing: Sealing | None = None,
    ) -> tuple[Version, Version]:
        """Server-side copy: (source version, new version). ``condition`` checks the source's
        x-amz-copy-source-if-* headers before any byte moves; ``source_key`` gives the data key
        of an encrypted source; ``sealing`` encrypts the copy."""
        version = await self.head_object(src_bucket, src_key, src_version_id)
        if condition is not None:
            condition(version)
        data_key = source_key(version) if source_key is not None else None
        async with self.open_object(
            src_bucket, src_key, version=version, byte_range=byte_range, data_key=data_key
        ) as reader:
            src = reader.version
            if replace_metadata:
                meta_kw: dict[str, Any] = dict(
                    content_type=content_type, metadata=metadata, headers=headers
                )
            else:
                meta_kw = dict(
                    content_type=src.content_type, metadata=src.metadata, headers=src.headers
                )
            algorithm = checksum_algorithm or (src.checksum.algorithm if src.checksum else None)
            new = await self.put_object(
                dst_bucket,
                dst_key,
                reader,
                size=reader.length,
                owner=owner,
                tags=src.tags if tags is None else tags,
                checksum_algorithm=algorithm,
                attributes=attributes,
                sealing=sealing,
                **meta_kw,
            )
        return src, new

    async def set_object_tags(
        self, bucket: str, key: str, tags: dict[str, str], version_id: str | None = None
    ) -> Version:
        """Replace a version's tag set (PutObjectTagging / DeleteObjectTagging)."""
        return await self.update_version(
            bucket, key, version_id, lambda rec: rec.with_(tags=dict(tags))
        )

    async def update_version(
        self,
        bucket: str,
        key: str,
        version_id: str | None,
        change: Callable[[Version], Version],
    ) -> Version:
        """Rewrite one version's record with ``change`` (tags, ACL, retention, legal hold),
        compare-and-swapped: ``change`` sees the record as committed and may raise to refuse."""
        for _ in range(TXN_RETRIES):
            rec = await self.head_object(bucket, key, version_id)
            vkey = K.version_key(bucket, key, rec.version_id)
            kv = await self.kv.get(vkey)
            if kv is None:
                continue
            new = change(Version.decode(bucket, key, kv.value))
            assert new.version_id == rec.version_id and new.chunks == rec.chunks
            ok = await self.kv.txn(
                [Compare.mod_is(vkey, kv.mod_revision)], [Put(vkey, new.encode())], []
            )
            if ok.succeeded:
                return new
        raise Conflict(f"{bucket}/{key} is changing too fast; retry")


def stream_sizes(version: Version) -> list[int]:
    """The plaintext sizes of the streams a version's stored bytes were encrypted as: one (its
    compressed size when compressed), or one per part of a multipart upload."""
    if version.encryption is not None and "parts" in version.encryption:
        return [p.size for p in version.parts]
    return [sum(version.frames) if version.compression else version.size]


def _attributes(attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    if not attributes:
        return {}
    unknown = set(attributes) - set(R.ATTRIBUTES)
    assert not unknown, unknown
    return dict(attributes)


def _check_preconditions(
    entry: R.IndexEntry | None, if_match: str | None, if_none_match: str | None, key: str
) -> None:
    etag = entry.etag if entry is not None and not entry.delete_marker else None
    if if_match is not None:
        if etag is None:  # AWS answers a conditional write on a missing key with 404
            raise NoSuchKey(f"If-Match: no object {key!r}")
        if not _etag_matches(if_match, etag):
            raise PreconditionFailed("If-Match: the object's ETag differs")
    if if_none_match is not None and etag is not None and _etag_matches(if_none_match, etag):
        raise PreconditionFailed("If-None-Match: the object exists")


def _etag_matches(condition: str, etag: str) -> bool:
    """Does an If-Match/If-None-Match header value (a list of quoted ETags or *) match?"""
    for item in condition.split(","):
        item = item.strip()
        if item == "*" or item.removeprefix("W/").strip('"') == etag:
            return True
    return False
