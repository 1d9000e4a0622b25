"""Taking a body in: hashing, optional compression, and the hand-off to the chunk store.

A single PUT is bounded by MD5 on one core (the ETag needs every byte, in order), so hashing
runs as its own task in a worker thread, up to two 4 MiB batches ahead of the chunk store, which
copies the same batches into stripes, encodes and writes them on the other core. Bodies that end
within the inline threshold never reach the drives. Compression cuts the raw stream into
``FRAME_BYTES`` frames compressed one by one, so a range read decompresses only what it needs.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterable, Sequence
from typing import Any

import trio
import zstandard

from store.chunk.chunkstore import ChunkStore
from store.codec import checksums
from store.errors import EntityTooLarge, IncompleteBody, collapse_single_group
from store.objects.common import Body, Stored
from store.objects.sealing import Sealing

HASH_BATCH_BYTES = 4 << 20  # hash in worker threads in batches this big (one hop per batch)
FRAME_BYTES = 1 << 20  # raw bytes per zstd frame of a compressed object


async def store_body(
    chunks: ChunkStore,
    body: Body,
    *,
    size: int | None,
    limit: int,
    inline_bytes: int,
    compression: str = "",
    checksum_algorithm: str | None = None,
    sha256: bool = False,
    sealing: Sealing | None = None,
) -> Stored:
    """Write a body to the chunk store, or keep it for inlining when it ends within
    ``inline_bytes``; raise EntityTooLarge / IncompleteBody for a body over ``limit`` or
    shorter or longer than ``size``. Nothing written is referenced yet. With ``sealing`` the
    stored bytes (after compression) are encrypted; digests are of the plaintext."""
    if size is not None and size > limit:
        raise EntityTooLarge(f"{size} bytes is over the {limit}-byte limit")
    hasher = _Hasher(checksum_algorithm, sha256)
    head: list[bytes | bytearray | memoryview] = []
    head_bytes = 0
    source = _iterate(body).__aiter__()
    # Read up to the inline threshold first: small bodies never touch the drives.
    async for piece in source:
        head.append(piece)
        head_bytes += len(piece)
        if head_bytes > inline_bytes:
            break
    else:
        data = b"".join(head)
        _check_size(len(data), size, limit)
        hasher.update([data])
        if sealing is not None:
            stored = await sealing.seal(sealing.encryptor(), [data], final=True)
            return hasher.stored(len(data), inline=bytes(stored))
        return hasher.stored(len(data), inline=data)
    compressor = _Compressor() if compression == "zstd" else None
    encryptor = sealing.encryptor() if sealing is not None else None
    total = 0
    # Hashing runs as its own task, a batch or two ahead of the chunk store at most, so the
    # hashing thread (the bottleneck of a single stream) never waits for a stripe write.
    to_hasher, from_reader = trio.open_memory_channel[list[Any]](2)
    with collapse_single_group():
        async with chunks.open_stream() as stream, trio.open_nursery() as nursery:
            nursery.start_soon(_hash_batches, hasher, from_reader)
            async with to_hasher:
                batch, batch_bytes = head, head_bytes
                done = False
                while not done:
                    async for piece in source:
                        batch.append(piece)
                        batch_bytes += len(piece)
                        if batch_bytes >= HASH_BATCH_BYTES:
                            break
                    else:
                        done = True
                    total += batch_bytes
                    _check_size(total, size, limit, final=done)
                    await to_hasher.send(batch)
                    await _write_batch(stream, compressor, batch, done, sealing, encryptor)
                    batch, batch_bytes = [], 0
            refs = await stream.commit()
    if compressor is None:
        return hasher.stored(total, chunks=tuple(refs))
    return hasher.stored(
        total,
        chunks=tuple(refs),
        compression="zstd",
        frames=tuple(compressor.frames),
        frame_bytes=FRAME_BYTES,
    )


def _check_size(total: int, size: int | None, limit: int, final: bool = True) -> None:
    if total > limit:
        raise EntityTooLarge(f"body is over the {limit}-byte limit")
    if size is not None and (total > size or (final and total < size)):
        raise IncompleteBody(f"body has {total} bytes, the request declared {size}")


async def _iterate(body: Body) -> AsyncIterable[bytes | bytearray | memoryview]:
    if isinstance(body, bytes | bytearray | memoryview):
        yield body
        return
    async for piece in body:
        yield piece


class _Hasher:
    """MD5, and optionally an S3 checksum and the SHA-256 of a signed payload, over the raw
    body, fed in batches. MD5 (~1.4 ns/byte) alone would be the slowest stage of a stream, so
    it runs in one worker thread and the others in a second one, side by side; each thread
    passes over a batch while it is in cache."""

    def __init__(self, algorithm: str | None, sha256: bool = False) -> None:
        self.md5 = hashlib.md5(usedforsecurity=False)
        self.checksum = checksums.new_checksum(algorithm) if algorithm else None
        self.sha256 = hashlib.sha256() if sha256 else None
        self.others = [h for h in (self.checksum, self.sha256) if h is not None]

    def update(self, pieces: Sequence[bytes | bytearray | memoryview]) -> None:
        self.update_md5(pieces)
        self.update_others(pieces)

    def update_md5(self, pieces: Sequence[bytes | bytearray | memoryview]) -> None:
        for piece in pieces:
            self.md5.update(piece)

    def update_others(self, pieces: Sequence[bytes | bytearray | memoryview]) -> None:
        for piece in pieces:
            for h in self.others:
                h.update(piece)

    def stored(self, size: int, **kw: Any) -> Stored:
        return Stored(
            size,
            self.md5.digest(),
            self.checksum.digest() if self.checksum else None,
            sha256=self.sha256.digest() if self.sha256 else None,
            **kw,
        )


class _Compressor:
    """Cuts the raw stream into FRAME_BYTES frames and zstd-compresses each on its own, so a
    range read decompresses only the frames it touches."""

    def __init__(self) -> None:
        self._ctx = zstandard.ZstdCompressor(level=3)
        self._pending = bytearray()
        self.frames: list[int] = []

    def feed(self, pieces: Sequence[bytes | bytearray | memoryview], final: bool) -> list[bytes]:
        for piece in pieces:
            self._pending += piece
        out = []
        while len(self._pending) >= FRAME_BYTES or (final and self._pending):
            frame = self._ctx.compress(bytes(self._pending[:FRAME_BYTES]))
            del self._pending[:FRAME_BYTES]
            self.frames.append(len(frame))
            out.append(frame)
        return out


async def _hash_batches(hasher: _Hasher, batches: trio.MemoryReceiveChannel[list[Any]]) -> None:
    async with batches:
        async for batch in batches:
            if not hasher.others:
                await trio.to_thread.run_sync(hasher.update_md5, batch)
                continue
            async with trio.open_nursery() as lanes:
                lanes.start_soon(trio.to_thread.run_sync, hasher.update_md5, batch)
                lanes.start_soon(trio.to_thread.run_sync, hasher.update_others, batch)


async def _write_batch(
    stream: Any,
    compressor: _Compressor | None,
    batch: list[bytes | bytearray | memoryview],
    final: bool,
    sealing: Sealing | None = None,
    encryptor: Any = None,
) -> None:
    pieces: list[Any] = batch
    if compressor is not None:
        pieces = await trio.to_thread.run_sync(compressor.feed, batch, final)
    if sealing is not None:
        pieces = [await sealing.seal(encryptor, pieces, final)]
    for piece in pieces:
        await stream.write(piece)
