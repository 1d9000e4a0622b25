"""Multipart uploads: parts are written as chunks of their own; completion only writes metadata.

Completing an upload concatenates the listed parts' chunk lists into the new version's record in
one transaction that also removes the upload and part records, so no byte is copied and a crash
leaves either the upload (retryable) or the object. Parts uploaded but not listed, replaced parts
and aborted uploads go to the garbage queue in the transaction that drops them.

Rules as S3 has them: part numbers 1..10,000; parts listed in strictly ascending order
(InvalidPartOrder); every listed part uploaded with that ETag (InvalidPart); every part but the
last at least ``min_part_bytes`` (EntityTooSmall, 5 MiB by default). The ETag is the MD5 of the
concatenated binary part MD5s, then "-N".
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import trio

from store.chunk.chunkstore import ChunkStore
from store.codec import checksums, encryption
from store.errors import (
    BadDigest,
    Conflict,
    EntityTooSmall,
    InvalidArgument,
    InvalidPart,
    InvalidPartOrder,
    NoSuchKey,
    NoSuchUpload,
)
from store.meta.api import KV, Compare, Delete, KeyValue, Op, Put, prefix_end
from store.objects import keyspace as K
from store.objects.chunk_refs import garbage_ops, ref_ops
from store.objects.common import (
    Body,
    ExpectedChecksum,
    Prepared,
    Stored,
    b64,
    check_fence,
    commit_fence,
    verify_stored,
)
from store.objects.records import Bucket, Checksum, Part, PartInfo, Upload, Version
from store.objects.sealing import Sealing, part_stream


class UploadTarget(Protocol):
    """What multipart uploads need of the object engine (``ObjectEngine``)."""

    kv: KV
    chunks: ChunkStore
    min_part_bytes: int

    async def bucket_record(self, name: str) -> tuple[Bucket, KeyValue]: ...

    async def get_bucket(self, name: str) -> Bucket: ...

    async def head_object(
        self, bucket: str, key: str, version_id: str | None = None
    ) -> Version: ...

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
    ) -> Stored: ...

    async def discard(self, stored: Stored) -> None: ...

    async def commit_version(
        self,
        version: Version | None = None,
        *,
        prepare: Callable[[], Awaitable[Prepared]] | None = None,
        if_match: str | None = None,
        if_none_match: str | None = None,
        bucket_read: tuple[Bucket, KeyValue] | None = None,
        index_chunks: bool = True,
    ) -> Version: ...


MAX_PART_BYTES = 5 << 30
COMPLETED_KEEP_S = 24 * 3600.0  # how long a retried Complete still gets its result


@dataclass(frozen=True, slots=True)
class CompletedPart:
    number: int
    etag: str
    checksum: str = ""  # base64, in the upload's algorithm, when the client sends one


@dataclass(frozen=True, slots=True)
class PartListing:
    upload: Upload
    parts: list[Part]
    truncated: bool
    next_marker: int


class Multipart:
    def __init__(self, engine: UploadTarget) -> None:
        self.engine = engine
        self.kv = engine.kv

    async def create(
        self,
        bucket: str,
        key: str,
        *,
        owner: str = "",
        content_type: str = "",
        metadata: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        tags: dict[str, str] | None = None,
        checksum_algorithm: str = "",
        checksum_type: str = "",
        attributes: Mapping[str, Any] | None = None,
    ) -> Upload:
        """A new upload; ``attributes`` (``records.ATTRIBUTES``: ACL, storage class, object lock,
        encryption) go to the completed object's version."""
        K.check_new_key(key)
        if checksum_algorithm:
            checksum_algorithm = checksums.canonical_algorithm(checksum_algorithm)
            checksum_type = checksum_type or checksums.default_checksum_type(checksum_algorithm)
            if not checksums.checksum_type_allowed(checksum_algorithm, checksum_type):
                raise InvalidArgument(
                    f"checksum type {checksum_type} is not supported for {checksum_algorithm}"
                )
        elif checksum_type:
            raise InvalidArgument("a checksum type needs a checksum algorithm")
        upload = Upload(
            bucket,
            key,
            K.new_upload_id(),
            time.time(),
            owner,
            content_type,
            dict(metadata or {}),
            dict(headers or {}),
            dict(tags or {}),
            checksum_algorithm,
            checksum_type,
            **dict(attributes or {}),
        )
        ukey = K.upload_key(bucket, key, upload.upload_id)
        for _ in range(20):
            # Comparing the bucket record's revision fails if the bucket is being deleted.
            _, bkv = await self.engine.bucket_record(bucket)
            result = await self.kv.txn(
                [Compare.mod_is(bkv.key, bkv.mod_revision)], [Put(ukey, upload.encode())], []
            )
            if result.succeeded:
                return upload
        raise Conflict(f"bucket {bucket} is changing too fast; retry")

    async def get(self, bucket: str, key: str, upload_id: str) -> Upload:
        K.check_object_key(key)
        K.check_upload_id(upload_id)
        kv = await self.kv.get(K.upload_key(bucket, key, upload_id))
        if kv is None:
            await self.engine.get_bucket(bucket)
            raise NoSuchUpload(f"no upload {upload_id} for {key!r}")
        return Upload.decode(bucket, key, upload_id, kv.value)

    async def upload_part(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        number: int,
        body: Body,
        *,
        size: int | None = None,
        content_md5: bytes | None = None,
        checksum_algorithm: str | None = None,
        expected_checksum: ExpectedChecksum = None,
        payload_sha256: str | None = None,
        data_key: Callable[[Upload], bytes | None] | None = None,
    ) -> Part:
        """Store one part. For an encrypted upload ``data_key`` gives the upload's data key
        (checked against the upload's envelope: the same SSE-C key for every part)."""
        if not 1 <= number <= K.MAX_PART_NUMBER:
            raise InvalidArgument(f"part number must be 1..{K.MAX_PART_NUMBER}")
        upload = await self.get(bucket, key, upload_id)
        sealing = None
        if upload.encryption is not None:
            key_bytes = data_key(upload) if data_key is not None else None
            if key_bytes is None:
                raise InvalidArgument("the upload is encrypted: its key is needed for every part")
            sealing = part_stream(upload.encryption, key_bytes, upload_id, number)
        algorithm = upload.checksum_algorithm or (
            checksum_algorithm and checksums.canonical_algorithm(checksum_algorithm)
        )
        if (
            checksum_algorithm
            and upload.checksum_algorithm
            and (checksums.canonical_algorithm(checksum_algorithm) != upload.checksum_algorithm)
        ):
            raise InvalidArgument(
                f"the upload uses {upload.checksum_algorithm}, not {checksum_algorithm}"
            )
        stored = await self.engine.store_body(
            body,
            size=size,
            checksum_algorithm=algorithm or None,
            limit=MAX_PART_BYTES,
            inline_bytes=0,
            sha256=payload_sha256 is not None,
            sealing=sealing,
        )
        try:
            checksum = verify_stored(
                stored, content_md5, algorithm or None, expected_checksum, payload_sha256
            )
            sse_c = sealing is not None and sealing.envelope.mode == encryption.CUSTOMER
            part = Part(
                number,
                stored.size,
                secrets.token_hex(16) if sse_c else stored.md5.hex(),
                time.time(),
                f"{checksum.algorithm}:{checksum.value}" if checksum else "",
                stored.chunks,
                nonce=sealing.envelope.to_json()["nonce"] if sealing is not None else "",
            )
            await self._commit_part(upload, part)
        except BaseException:
            with trio.CancelScope(shield=True):
                await self.engine.discard(stored)
            raise
        finally:
            self.engine.chunks.release(stored.chunks)
        return part

    async def _commit_part(self, upload: Upload, part: Part) -> None:
        ukey = K.upload_key(upload.bucket, upload.key, upload.upload_id)
        pkey = K.part_key(upload.upload_id, part.number)
        for _ in range(20):
            old = await self.kv.get(pkey)
            ukv = await self.kv.get(ukey)
            if ukv is None:
                raise NoSuchUpload(f"upload {upload.upload_id} was completed or aborted")
            # Rewriting the upload record bumps its revision: a completion or abort that read the
            # parts before this one fails its compare and re-reads them.
            compares = [Compare.mod_is(ukey, ukv.mod_revision)]
            ops: list[Op] = [Put(pkey, part.encode()), Put(ukey, ukv.value)]
            ops += ref_ops(part.chunks, pkey)
            fence = commit_fence(self.engine.chunks, part.chunks)
            compares += fence
            if old is None:
                compares.append(Compare.absent(pkey))
            else:
                compares.append(Compare.mod_is(pkey, old.mod_revision))
                ops += garbage_ops(Part.decode(part.number, old.value).chunks)
            result = await self.kv.txn(compares, ops, [])
            if result.succeeded:
                return
            await check_fence(self.kv, fence)
            if await self.kv.get(ukey) is None:
                raise NoSuchUpload(f"upload {upload.upload_id} was completed or aborted")
        raise Conflict(f"part {part.number} is changing too fast; retry")

    async def _all_parts(self, upload_id: str) -> list[tuple[bytes, int, Part]]:
        """(KV key, mod revision, part) of every uploaded part, by number."""
        out = []
        start, end = K.parts_prefix(upload_id), prefix_end(K.parts_prefix(upload_id))
        while True:
            page = await self.kv.range(start, end, limit=1000)
            for kv in page.kvs:
                number = int(kv.key.rpartition(b"/")[2])
                out.append((kv.key, kv.mod_revision, Part.decode(number, kv.value)))
            if not page.more:
                return out
            start = page.kvs[-1].key + b"\0"

    async def list_parts(
        self, bucket: str, key: str, upload_id: str, *, marker: int = 0, max_parts: int = 1000
    ) -> PartListing:
        upload = await self.get(bucket, key, upload_id)
        if max_parts < 0 or marker < 0:
            raise InvalidArgument("max-parts and part-number-marker must not be negative")
        start = K.part_key(upload_id, marker) + b"\0" if marker else K.parts_prefix(upload_id)
        page = await self.kv.range(
            start, prefix_end(K.parts_prefix(upload_id)), limit=min(max_parts, 1000) or 1
        )
        kvs = page.kvs[: min(max_parts, 1000)]
        parts = [Part.decode(int(kv.key.rpartition(b"/")[2]), kv.value) for kv in kvs]
        truncated = page.more or len(kvs) < len(page.kvs)
        return PartListing(upload, parts, truncated, parts[-1].number if parts else 0)

    async def complete(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        listed: Sequence[CompletedPart],
        *,
        expected_checksum: str | None = None,
        checksum_type: str = "",
        if_match: str | None = None,
        if_none_match: str | None = None,
    ) -> Version:
        if not listed:
            raise InvalidArgument("a multipart upload needs at least one part")
        numbers = [p.number for p in listed]
        if any(b <= a for a, b in zip(numbers, numbers[1:], strict=False)):
            raise InvalidPartOrder("the list of parts was not in ascending order")
        ukey = K.upload_key(bucket, key, upload_id)

        async def prepare() -> Prepared:
            """Re-read on every attempt: a part uploaded meanwhile bumps the upload record, so a
            stale view of the parts can never commit (and drop that part's data unaccounted)."""
            upload = await self.get(bucket, key, upload_id)
            ukv = await self.kv.get(ukey)
            if ukv is None:
                raise NoSuchUpload(f"upload {upload_id} was completed or aborted")
            if checksum_type and upload.checksum_type and checksum_type != upload.checksum_type:
                raise InvalidArgument(f"the upload's checksum type is {upload.checksum_type}")
            uploaded = {p.number: p for _, _, p in await self._all_parts(upload_id)}
            chosen = self._choose(listed, uploaded)
            md5 = hashlib.md5(b"".join(bytes.fromhex(p.etag) for p in chosen))
            etag = f"{md5.hexdigest()}-{len(chosen)}"
            done = json.dumps({"b": bucket, "k": key, "etag": etag, "t": time.time()}).encode()
            ops: list[Op] = [
                Delete(ukey),
                Delete(K.parts_prefix(upload_id), prefix_end(K.parts_prefix(upload_id))),
                Put(K.completed_key(upload_id), done),
            ]
            keep = set(numbers)
            unused = [c for n, p in uploaded.items() if n not in keep for c in p.chunks]
            ops += garbage_ops(unused)  # a few records, however many parts went unused
            version = Version(
                bucket=bucket,
                key=key,
                version_id="",
                size=sum(p.size for p in chosen),
                etag=etag,
                mtime=time.time(),
                owner=upload.owner,
                content_type=upload.content_type,
                metadata=upload.metadata,
                headers=upload.headers,
                checksum=self._object_checksum(upload, chosen, expected_checksum),
                parts=tuple(PartInfo(p.size, p.etag, p.checksum.partition(":")[2]) for p in chosen),
                tags=upload.tags,
                chunks=tuple(c for p in chosen for c in p.chunks),
                **upload.attributes(),
            )
            if upload.encryption is not None:
                record = {
                    **upload.encryption,
                    "upload": upload_id,
                    "parts": [p.nonce for p in chosen],
                    "numbers": [p.number for p in chosen],
                }
                version = version.with_(encryption=record)
            return version, ops, [Compare.mod_is(ukey, ukv.mod_revision)]

        try:
            return await self.engine.commit_version(
                prepare=prepare,
                if_match=if_match,
                if_none_match=if_none_match,
                index_chunks=False,  # each part indexed its chunks when it was uploaded
            )
        except NoSuchUpload:
            done = await self._completed(bucket, key, upload_id, listed)
            if done is None:
                raise
            return done

    async def _completed(
        self, bucket: str, key: str, upload_id: str, listed: Sequence[CompletedPart]
    ) -> Version | None:
        """A retried Complete of an upload that completed: S3 answers it with the same result
        (clients retry after a timeout), as long as the object it made is still the key's."""
        K.check_upload_id(upload_id)
        kv = await self.kv.get(K.completed_key(upload_id))
        if kv is None:
            return None
        done = json.loads(kv.value)
        if (done["b"], done["k"]) != (bucket, key):
            return None
        md5 = hashlib.md5(b"".join(bytes.fromhex(p.etag.strip().strip('"')) for p in listed))
        if done["etag"] != f"{md5.hexdigest()}-{len(listed)}":
            return None
        try:
            current = await self.engine.head_object(bucket, key)
        except NoSuchKey:
            return None
        return current if current.etag == done["etag"] else None

    async def expire_completed(self, older_than_s: float = COMPLETED_KEEP_S) -> int:
        """Drop the records of completions older than ``older_than_s`` (retries come soon)."""
        dropped = 0
        start, end = K.COMPLETED_PREFIX, prefix_end(K.COMPLETED_PREFIX)
        cutoff = time.time() - older_than_s
        while True:
            page = await self.kv.range(start, end, limit=1000)
            old = [kv for kv in page.kvs if json.loads(kv.value)["t"] < cutoff]
            for kv in old:
                await self.kv.txn([Compare.mod_is(kv.key, kv.mod_revision)], [Delete(kv.key)], [])
            dropped += len(old)
            if not page.more:
                return dropped
            start = page.kvs[-1].key + b"\0"

    def _choose(self, listed: Sequence[CompletedPart], uploaded: dict[int, Part]) -> list[Part]:
        chosen: list[Part] = []
        for i, want in enumerate(listed):
            part = uploaded.get(want.number)
            if part is None or part.etag != want.etag.strip().strip('"').lower():
                raise InvalidPart(f"part {want.number} was not uploaded with that ETag")
            if want.checksum and part.checksum.partition(":")[2] != want.checksum:
                raise InvalidPart(f"part {want.number}: the checksum does not match")
            if i < len(listed) - 1 and part.size < self.engine.min_part_bytes:
                raise EntityTooSmall(
                    f"part {want.number} is {part.size} bytes; the minimum is "
                    f"{self.engine.min_part_bytes} except for the last part"
                )
            chosen.append(part)
        return chosen

    @staticmethod
    def _object_checksum(
        upload: Upload, parts: Sequence[Part], expected: str | None
    ) -> Checksum | None:
        algorithm = upload.checksum_algorithm
        if not algorithm:
            return None
        digests = []
        for p in parts:
            alg, _, value = p.checksum.partition(":")
            if alg != algorithm:
                raise InvalidPart(f"a part was uploaded without its {algorithm} checksum")
            digests.append(checksums.parse_b64_checksum(algorithm, value))
        if upload.checksum_type == checksums.FULL_OBJECT:
            whole = checksums.combine_crc(
                algorithm, [(d, p.size) for d, p in zip(digests, parts, strict=True)]
            )
            value = b64(whole)
            if expected is not None and expected != value:
                raise BadDigest(f"the {algorithm} you specified did not match the calculated one")
        else:
            value = checksums.composite_checksum(algorithm, digests)
            if expected is not None and expected.partition("-")[0] != value.partition("-")[0]:
                raise BadDigest(f"the {algorithm} you specified did not match the calculated one")
        return Checksum(algorithm, upload.checksum_type, value)

    async def abort(self, bucket: str, key: str, upload_id: str) -> None:
        await self.get(bucket, key, upload_id)
        await self._drop(K.upload_key(bucket, key, upload_id), upload_id)

    async def _drop(self, ukey: bytes, upload_id: str) -> None:
        for _ in range(20):
            ukv = await self.kv.get(ukey)
            if ukv is None:
                raise NoSuchUpload(f"upload {upload_id} was completed or aborted")
            parts = await self._all_parts(upload_id)
            compares = [Compare.mod_is(ukey, ukv.mod_revision)]
            ops: list[Op] = [
                Delete(ukey),
                Delete(K.parts_prefix(upload_id), prefix_end(K.parts_prefix(upload_id))),
            ]
            ops += garbage_ops([c for _, _, part in parts for c in part.chunks])
            result = await self.kv.txn(compares, ops, [])
            if result.succeeded:
                return
            if await self.kv.get(ukey) is None:
                raise NoSuchUpload(f"upload {upload_id} was completed or aborted")
        raise Conflict(f"upload {upload_id} is changing too fast; retry")

    async def abort_all(self, bucket: str) -> int:
        """Abort every upload in a bucket (when the bucket is deleted)."""
        count = 0
        base = K.uploads_prefix(bucket)
        while True:
            page = await self.kv.range(base, prefix_end(base), limit=100)
            for kv in page.kvs:
                _, upload_id = K.split_versioned(kv.key, base)
                try:
                    await self._drop(kv.key, upload_id)
                    count += 1
                except NoSuchUpload:
                    pass
            if not page.more:
                return count
