"""Pieces shared by the object engine's modules: stored data, digest checks, garbage ops."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterable, Callable, Sequence
from dataclasses import dataclass

from store.chunk.chunkstore import ChunkRef, ChunkStore
from store.codec import checksums
from store.errors import BadDigest, PayloadDigestMismatch, Unavailable
from store.meta.api import KV, Compare, Op, compare_holds
from store.objects.records import Checksum, Version

Body = AsyncIterable[bytes | bytearray | memoryview] | bytes | bytearray | memoryview
ExpectedChecksum = str | Callable[[], str | None] | None


@dataclass(slots=True)
class EngineStats:
    puts: int = 0
    gets: int = 0
    deletes: int = 0
    txn_retries: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    garbage_collected: int = 0
    orphans_removed: int = 0
    lifecycle_expired: int = 0  # current versions expired by lifecycle rules
    lifecycle_noncurrent_expired: int = 0
    lifecycle_markers_removed: int = 0
    lifecycle_uploads_aborted: int = 0
    lifecycle_locked_skipped: int = 0  # versions a rule would remove, kept by object lock


# A version to commit, with the extra operations and compares of its transaction.
Prepared = tuple[Version, Sequence[Op], Sequence[Compare]]


@dataclass(frozen=True, slots=True)
class Stored:
    """Data written for a new version or part, not yet referenced by metadata."""

    size: int
    md5: bytes
    checksum: bytes | None
    chunks: tuple[ChunkRef, ...] = ()
    inline: bytes | None = None
    compression: str = ""
    frames: tuple[int, ...] = ()
    frame_bytes: int = 0
    sha256: bytes | None = None  # when asked for (to check a signed payload)


def verify_stored(
    stored: Stored,
    content_md5: bytes | None,
    algorithm: str | None,
    expected: ExpectedChecksum,
    payload_sha256: str | None = None,
) -> Checksum | None:
    if payload_sha256 is not None and (stored.sha256 or b"").hex() != payload_sha256:
        raise PayloadDigestMismatch(
            "the provided x-amz-content-sha256 does not match what was computed"
        )
    if content_md5 is not None and content_md5 != stored.md5:
        raise BadDigest("the Content-MD5 you specified did not match what we received")
    if algorithm is None or stored.checksum is None:
        return None
    value = expected() if callable(expected) else expected
    if value is not None and checksums.parse_b64_checksum(algorithm, value) != stored.checksum:
        raise BadDigest(f"the {algorithm} you specified did not match the calculated checksum")
    return Checksum(algorithm, checksums.FULL_OBJECT, b64(stored.checksum))


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def chunk_spans(
    chunks: Sequence[ChunkRef], offset: int, length: int
) -> list[tuple[ChunkRef, int, int]]:
    """(chunk, offset in chunk, bytes) covering stored bytes [offset, offset + length)."""
    out = []
    pos = 0
    end = offset + length
    for ref in chunks:
        lo, hi = max(offset, pos), min(end, pos + ref.length)
        if lo < hi:
            out.append((ref, lo - pos, hi - lo))
        pos += ref.length
        if pos >= end:
            break
    return out


def commit_fence(chunks: ChunkStore, refs: Sequence[ChunkRef]) -> list[Compare]:
    """The compare that keeps a commit of new chunks from landing after a rebalance switched
    their placement group (store/admin/rebalance.py): the fence key unchanged since they were
    placed."""
    found = chunks.commit_fence(refs)
    return [] if found is None else [Compare(found[0], "mod", "<", found[1] + 1)]


async def check_fence(kv: KV, fence: Sequence[Compare]) -> None:
    """After a failed commit: Unavailable if its fence is what failed (the client retries;
    the new chunks then go where the newest map puts them)."""
    for cmp in fence:
        if not compare_holds(cmp, await kv.get(cmp.key)):
            raise Unavailable("a rebalance moved placement while this was written: retry")
