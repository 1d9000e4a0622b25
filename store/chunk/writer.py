"""Writing chunks: a byte stream cut into chunks, each striped, encoded and written in parallel.

``StreamWriter`` rolls over to a new chunk every ``store.chunk_bytes``; a ``_ChunkWriter`` fills
one stripe while the previous one is encoded (with its CRCs, in a worker thread) and appended to
every shard file, and a full chunk's commit (fsync, rename) runs while the next chunk is written.
A write is acknowledged once ``write_quorum(scheme)`` shards are durable; a shard that failed is
left for the healer, and a write that misses its quorum raises (NoSpace if drives were full).
"""

from __future__ import annotations

import errno
import logging
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

import trio

from store import native
from store.chunk.api import DriveAPI, ShardSink
from store.chunk.chunkref import CRC_BLOCK_BYTES, ChunkRef, ChunkStats
from store.chunk.ids import chunk_id_in, new_stream_id, shard_id
from store.errors import NoSpace, StoreError, Unavailable
from store.placement.hrw import ClusterMap
from store.placement.layout import ErasureCoded, Scheme, write_quorum


class ChunkTarget(Protocol):
    """What the writers need of the chunk store (``ChunkStore``): where a chunk's shards go,
    the codec, the drives, the limits, and the bookkeeping of chunks being written."""

    drives: Mapping[str, DriveAPI]
    stats: ChunkStats
    block_bytes: int
    chunk_bytes: int
    cpu: trio.CapacityLimiter
    inflight: dict[str, tuple[int, int]]

    @property
    def placed_revision(self) -> int: ...

    @property
    def cmap(self) -> ClusterMap: ...

    def codec(self, scheme: ErasureCoded) -> native.ErasureCode: ...

    def placement(self, ref: ChunkRef) -> list[str]: ...

    def release(self, refs: Sequence[ChunkRef]) -> None: ...

    async def delete(self, ref: ChunkRef) -> None: ...


log = logging.getLogger(__name__)


class StreamWriter:
    """Cuts a byte stream into chunks of ``store.chunk_bytes`` and writes them; ``commit()`` returns
    the chunk refs. Encoding and shard writes of one stripe overlap with filling the next, and
    the commit (fsync) of a full chunk overlaps with writing the next chunk.

    Use as an async context manager: leaving it without ``commit()`` (an error, a cancelled
    upload) deletes whatever was written, so nothing is left behind."""

    def __init__(self, store: ChunkTarget, scheme: Scheme) -> None:
        self._store = store
        self._scheme = scheme
        self._nursery: trio.Nursery | None = None
        self._cm: Any = None
        self._chunk: _ChunkWriter | None = None
        self._done: list[ChunkRef | None] = []  # None: its commit is still running
        self._committing = trio.Event()
        self._committing.set()
        self._error: BaseException | None = None
        self._committed = False
        self.stream_id = new_stream_id()  # its chunks are numbered within it (chunk/ids.py)
        self._chunks_started = 0

    async def __aenter__(self) -> StreamWriter:
        self._cm = trio.open_nursery()
        self._nursery = await self._cm.__aenter__()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        try:
            if not self._committed:
                with trio.CancelScope(shield=True):
                    await self._discard()
        finally:
            # The background work is done (discard and commit wait for it), so the nursery
            # exits cleanly; the body's own exception, if any, propagates unwrapped.
            await self._cm.__aexit__(None, None, None)

    async def _discard(self) -> None:
        await self._committing.wait()
        if self._chunk is not None:
            await self._chunk.abort()
            self._chunk = None
        refs = [ref for ref in self._done if ref is not None]
        for ref in refs:
            try:
                await self._store.delete(ref)
            except StoreError as e:  # garbage collection of orphans finds it later
                log.warning("could not remove chunk %s of an aborted write: %s", ref.chunk_id, e)
        self._store.release(refs)
        self._done = []

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data).cast("B")
        while len(view):
            if self._error is not None:
                raise self._error
            if self._chunk is None:
                assert self._nursery is not None
                chunk_id = chunk_id_in(self.stream_id, self._chunks_started)
                self._chunks_started += 1
                self._chunk = await _ChunkWriter.start(
                    self._store, self._scheme, self._nursery, chunk_id
                )
            taken = await self._chunk.write(view[: self._store.chunk_bytes - self._chunk.length])
            view = view[taken:]
            if self._chunk.length == self._store.chunk_bytes:
                chunk, self._chunk = self._chunk, None
                await self._committing.wait()  # one chunk commit in flight at a time
                self._committing = trio.Event()
                self._done.append(None)
                assert self._nursery is not None
                self._nursery.start_soon(
                    self._commit_chunk, chunk, len(self._done) - 1, self._committing
                )

    async def _commit_chunk(self, chunk: _ChunkWriter, slot: int, done: trio.Event) -> None:
        try:
            self._done[slot] = await chunk.commit()
        except Exception as e:  # surfaced by the next write or commit
            self._error = e
        finally:
            done.set()

    async def commit(self) -> list[ChunkRef]:
        if self._chunk is not None:
            chunk, self._chunk = self._chunk, None
            if chunk.length:
                self._done.append(await chunk.commit())
            else:
                await chunk.abort()
        await self._committing.wait()
        if self._error is not None:
            raise self._error
        self._committed = True
        refs = [ref for ref in self._done if ref is not None]
        assert len(refs) == len(self._done)
        return refs


@dataclass(slots=True)
class _Buffer:
    stripe: native.Stripe | None
    views: list[memoryview]


class _ChunkWriter:
    """One chunk being written: fills a stripe, encodes it with CRCs in a thread and appends the
    shards in parallel while the next stripe fills (two stripe buffers)."""

    def __init__(
        self, store: ChunkTarget, ref: ChunkRef, drive_ids: list[str], nursery: trio.Nursery
    ) -> None:
        self.store = store
        self.ref = ref
        self.length = 0
        self._nursery = nursery
        self._drive_ids = drive_ids
        self._writers: dict[int, ShardSink] = {}
        self._k = ref.k
        width = ref.scheme.width
        self._quorum = write_quorum(ref.scheme)
        self._ec = store.codec(ref.scheme) if isinstance(ref.scheme, ErasureCoded) else None
        self._buffers = [self._new_buffer(width) for _ in range(2)]
        self._fill = 0  # data bytes in the current buffer
        self._flushed = trio.Event()
        self._flushed.set()
        self._error: BaseException | None = None
        self._out_of_space = False

    def _new_buffer(self, width: int) -> _Buffer:
        """One stripe's buffers: k data views then parity (EC), or a single copy."""
        if self._ec is not None:
            stripe = native.Stripe(self._ec, self.ref.block_bytes)
            return _Buffer(stripe, list(stripe.shards))
        return _Buffer(None, [memoryview(bytearray(self.ref.block_bytes))])

    @classmethod
    async def start(
        cls, store: ChunkTarget, scheme: Scheme, nursery: trio.Nursery, chunk_id: str
    ) -> _ChunkWriter:
        ref = ChunkRef(chunk_id, scheme, store.block_bytes, 0, store.cmap.epoch)
        drive_ids = store.placement(ref)
        self = cls(store, ref, drive_ids, nursery)
        store.inflight[ref.chunk_id] = (ref.epoch, store.placed_revision)

        async def open_one(index: int) -> None:
            try:
                drive = store.drives[drive_ids[index]]
                sid = shard_id(ref.chunk_id, index)
                self._writers[index] = await drive.create(sid, CRC_BLOCK_BYTES)
            except (StoreError, OSError) as e:
                self._note_failure(index, e)
                store.stats.shard_write_failures += 1

        async with trio.open_nursery() as n:
            for index in range(scheme.width):
                n.start_soon(open_one, index)
        if len(self._writers) < self._quorum:
            await self.abort()
            raise self._short(f"{len(self._writers)} drives writable, need {self._quorum}")
        return self

    async def write(self, view: memoryview) -> int:
        """Copy as much of ``view`` as fits in the current stripe; flush it when full."""
        stripe_bytes = self._k * self.ref.block_bytes
        take = min(len(view), stripe_bytes - self._fill)
        block = self.ref.block_bytes
        buf = self._buffers[0].views
        pos = 0
        while pos < take:
            shard, within = divmod(self._fill + pos, block)
            n = min(block - within, take - pos)
            buf[shard][within : within + n] = view[pos : pos + n]
            pos += n
        self._fill += take
        self.length += take
        if self._fill == stripe_bytes:
            await self._flush(block)
        return take

    async def _flush(self, shard_bytes: int) -> None:
        """Hand the current stripe to a background flush once the previous one is done."""
        await self._flushed.wait()
        self._raise_error()
        stripe = self._buffers[0]
        self._buffers.reverse()
        self._fill = 0
        self._flushed = trio.Event()
        self._nursery.start_soon(self._flush_stripe, stripe, shard_bytes, self._flushed)

    async def _flush_stripe(self, stripe: _Buffer, size: int, done: trio.Event) -> None:
        try:
            crcs = await trio.to_thread.run_sync(self._encode, stripe, size, limiter=self.store.cpu)
            per_shard = math.ceil(size / CRC_BLOCK_BYTES)

            async def append(index: int, w: ShardSink) -> None:
                source = stripe.views[index] if self._ec is not None else stripe.views[0]
                mine = crcs[index * per_shard : (index + 1) * per_shard] if self._ec else crcs
                await w.append(source[:size], mine)

            await self._drop(await self._on_each_writer(append))
        except BaseException as e:  # noqa: BLE001 - surfaced by the next write or commit
            self._error = e
            if not isinstance(e, Exception):
                raise
        finally:
            done.set()

    @staticmethod
    def _encode(stripe: _Buffer, size: int) -> Sequence[int]:
        if stripe.stripe is not None:
            return stripe.stripe.encode_with_crcs(CRC_BLOCK_BYTES, size)
        view = stripe.views[0][:size]
        return [
            native.crc32c(view[p : p + CRC_BLOCK_BYTES]) for p in range(0, size, CRC_BLOCK_BYTES)
        ]

    async def _drop(self, failed: list[int]) -> None:
        for index in failed:
            self.store.stats.shard_write_failures += 1
            await self._writers.pop(index).abort()
        if len(self._writers) < self._quorum:
            raise self._short(
                f"chunk {self.ref.chunk_id}: {len(self._writers)} shards written, "
                f"need {self._quorum}"
            )

    async def _on_each_writer(self, op: Callable[[int, ShardSink], Awaitable[object]]) -> list[int]:
        """Run ``op`` on every shard writer in parallel; the indices of those that failed."""
        failed: list[int] = []

        async def one(index: int, w: ShardSink) -> None:
            try:
                await op(index, w)
            except (StoreError, OSError) as e:
                self._note_failure(index, e)
                failed.append(index)

        async with trio.open_nursery() as n:
            for index, w in list(self._writers.items()):
                n.start_soon(one, index, w)
        return failed

    def _note_failure(self, index: int, error: BaseException) -> None:
        log.warning(
            "shard %d of %s on %s failed: %s",
            index,
            self.ref.chunk_id,
            self._drive_ids[index],
            error,
        )
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            self._out_of_space = True

    def _short(self, message: str) -> StoreError:
        """The error for a write that missed its quorum: NoSpace when drives were full."""
        return NoSpace(message) if self._out_of_space else Unavailable(message)

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    def _relayout_tail(self) -> int:
        """Spread the partial last stripe as the layout wants it (block = ceil(rest / k))."""
        rest = self._fill
        block = -(-rest // self._k)
        if self._k == 1 or block == self.ref.block_bytes:
            return block
        buf = self._buffers[0].views
        whole = self.ref.block_bytes
        data = b"".join(
            bytes(buf[j][: min(whole, rest - j * whole)])
            for j in range(self._k)
            if rest > j * whole
        )
        for j in range(self._k):
            piece = data[j * block : (j + 1) * block]
            buf[j][: len(piece)] = piece
            buf[j][len(piece) : block] = bytes(block - len(piece))
        return block

    async def commit(self) -> ChunkRef:
        if self._fill:
            await self._flush(self._relayout_tail())
        await self._flushed.wait()
        self._raise_error()
        for index in await self._on_each_writer(lambda _, w: w.commit()):
            self.store.stats.shard_write_failures += 1
            self._writers.pop(index)
        ref = replace(self.ref, length=self.length)
        if len(self._writers) < self._quorum:
            durable = len(self._writers)
            self._writers.clear()
            await self.store.delete(ref)
            raise self._short(
                f"chunk {ref.chunk_id}: {durable} shards durable, need {self._quorum}"
            )
        self.store.stats.chunks_written += 1
        self.store.stats.bytes_written += self.length
        return ref

    async def abort(self) -> None:
        with trio.CancelScope(shield=True):
            await self._flushed.wait()
            for w in self._writers.values():
                await w.abort()
            self._writers.clear()
            self.store.inflight.pop(self.ref.chunk_id, None)
