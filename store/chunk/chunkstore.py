"""Chunks striped over drives: the quorum client between the engine and its drives.

A **chunk** is a run of object data (at most ``CHUNK_BYTES``) stored as ``scheme.width`` shard
files, shard i on drive ``place(cmap, chunk_id, width)[i]``:

- ``ErasureCoded(k, m)``: the data is cut into stripes of k blocks of ``block_bytes`` (the geometry
  is ``codec.stripe.ChunkLayout``); shard i < k holds data block i of every stripe back to back,
  shards k.. hold the parity blocks. Healthy reads touch data shards only, no decoding.
- ``Replicated(n)``: every shard is a full copy of the data (the layout with k = 1).

Shard files frame their bytes in CRC blocks of ``CRC_BLOCK_BYTES`` (see shardfile.py); the fused
encode computes those CRCs while the stripe is in cache. Reed-Solomon works byte by byte, so a
damaged range of one shard is rebuilt from the *same* range of k others: degraded reads and repair
never need more than the bytes asked for.

Quorum: a write is acknowledged once ``write_quorum(scheme)`` shards are durable (k + 1, or every
copy when there are fewer drives); a shard that failed is left for the healer. A read needs k
readable shards for each range; a shard that is missing, unreadable or fails a checksum is
replaced by parity for that range, counted, and reported through ``on_damage`` for repair. With
fewer than k good shards the read raises ``TooFewShards`` and returns nothing partial.
"""

from __future__ import annotations

import errno
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import trio

from store import native
from store.chunk.drive import ShardWriter, new_chunk_id, shard_id
from store.chunk.shardfile import ShardGeometry
from store.codec.stripe import ChunkLayout
from store.errors import (
    Corrupt,
    InvalidArgument,
    NoSpace,
    NotFound,
    StoreError,
    TooFewShards,
    Unavailable,
)
from store.placement.hrw import ClusterMap, place
from store.placement.layout import ErasureCoded, Replicated, Scheme, parse_scheme, write_quorum

log = logging.getLogger(__name__)

CRC_BLOCK_BYTES = 64 << 10  # verification granularity of a read
STRIPE_BLOCK_BYTES = 1 << 20  # per-shard bytes of one full stripe (a multiple of the CRC block)
CHUNK_BYTES = 64 << 20  # data bytes per chunk before a stream rolls over to a new chunk
READ_WINDOW_BYTES = 4 << 20  # per-shard bytes a single read call fetches (mapped, not copied)


class DriveAPI(Protocol):
    """What a chunk store needs from a drive (store.chunk.drive.Drive, or a remote one)."""

    async def create(self, sid: str, block_bytes: int) -> ShardWriter: ...
    async def read(self, sid: str, offset: int = 0, length: int | None = None) -> Any: ...
    async def verify(self, sid: str) -> list[int]: ...
    async def geometry(self, sid: str) -> ShardGeometry: ...
    async def delete(self, sid: str) -> bool: ...
    def list_shards(self) -> AsyncIterator[str]: ...


@dataclass(frozen=True, slots=True)
class ChunkRef:
    """Everything needed to find and read a chunk; stored in object metadata."""

    chunk_id: str
    scheme: Scheme
    block_bytes: int
    length: int

    @property
    def k(self) -> int:
        return self.scheme.k if isinstance(self.scheme, ErasureCoded) else 1

    @property
    def layout(self) -> ChunkLayout:
        return ChunkLayout(self.k, self.block_bytes, self.length)

    def to_json(self) -> list[Any]:
        return [self.chunk_id, str(self.scheme), self.block_bytes, self.length]

    @classmethod
    def from_json(cls, value: Sequence[Any]) -> ChunkRef:
        chunk_id, scheme, block_bytes, length = value
        return cls(str(chunk_id), parse_scheme(scheme), int(block_bytes), int(length))


@dataclass(slots=True)
class ChunkStats:
    """Counters since start (exported as metrics)."""

    chunks_written: int = 0
    bytes_written: int = 0
    shard_write_failures: int = 0
    degraded_reads: int = 0
    corrupt_reads: int = 0
    missing_reads: int = 0
    shards_repaired: int = 0


@dataclass(frozen=True, slots=True)
class ShardProblem:
    index: int
    drive_id: str
    kind: str  # "missing" | "corrupt" | "unreadable"
    bad_blocks: tuple[int, ...] = ()


DamageCallback = Callable[[ChunkRef], None]


class ChunkStore:
    def __init__(
        self,
        drives: Mapping[str, DriveAPI],
        cmap: ClusterMap,
        scheme: Scheme,
        *,
        block_bytes: int = STRIPE_BLOCK_BYTES,
        cpu_threads: int = 2,
        on_damage: DamageCallback | None = None,
    ) -> None:
        if block_bytes % CRC_BLOCK_BYTES:
            raise InvalidArgument("stripe block must be a multiple of the CRC block")
        missing = {d.drive_id for d in cmap.drives} - set(drives)
        if missing:
            raise InvalidArgument(f"cluster map names unknown drives {sorted(missing)}")
        self.drives = drives
        self.cmap = cmap
        self.scheme = scheme
        self.block_bytes = block_bytes
        self.stats = ChunkStats()
        self.on_damage = on_damage
        # Encoding is CPU work: bound the threads it takes so drives keep theirs.
        self.cpu = trio.CapacityLimiter(cpu_threads)
        self._codecs: dict[tuple[int, int], native.ErasureCode] = {}
        # Chunks being written now: no metadata names them yet, the orphan sweep must skip them.
        self.inflight: set[str] = set()

    # -- helpers ----------------------------------------------------------------------------------

    def codec(self, scheme: ErasureCoded) -> native.ErasureCode:
        key = (scheme.k, scheme.m)
        if key not in self._codecs:
            self._codecs[key] = native.ErasureCode(scheme.k, scheme.m)
        return self._codecs[key]

    def placement(self, ref: ChunkRef) -> list[str]:
        return place(self.cmap, ref.chunk_id, ref.scheme.width)

    def _damaged(self, ref: ChunkRef, kind: str) -> None:
        if kind == "corrupt":
            self.stats.corrupt_reads += 1
        else:
            self.stats.missing_reads += 1
        if self.on_damage is not None:
            self.on_damage(ref)

    async def _read_shard(
        self, ref: ChunkRef, drive_ids: Sequence[str], index: int, offset: int, length: int
    ) -> Any | None:
        """Bytes of one shard, or None (counted, repair queued) if it cannot be read."""
        try:
            return await self.drives[drive_ids[index]].read(
                shard_id(ref.chunk_id, index), offset, length
            )
        except Corrupt as e:
            log.warning("chunk %s shard %d: %s", ref.chunk_id, index, e)
            self._damaged(ref, "corrupt")
        except NotFound:
            self._damaged(ref, "missing")
        except (StoreError, OSError) as e:
            log.warning("chunk %s shard %d unreadable: %s", ref.chunk_id, index, e)
            self._damaged(ref, "unreadable")
        return None

    # -- writing ----------------------------------------------------------------------------------

    def open_stream(self, scheme: Scheme | None = None) -> StreamWriter:
        """A writer that cuts a byte stream into chunks; use as ``async with``."""
        return StreamWriter(self, scheme or self.scheme)

    async def write(self, data: bytes | bytearray | memoryview) -> list[ChunkRef]:
        async with self.open_stream() as stream:
            await stream.write(data)
            return await stream.commit()

    def release(self, refs: Sequence[ChunkRef]) -> None:
        """The caller has referenced (or deleted) these chunks: the orphan sweep may see them."""
        for ref in refs:
            self.inflight.discard(ref.chunk_id)

    # -- reading ----------------------------------------------------------------------------------

    def windows(self, ref: ChunkRef, offset: int, length: int) -> list[tuple[int, int]]:
        """Split a chunk byte range into pieces of about READ_WINDOW_BYTES per shard."""
        step = max(1, READ_WINDOW_BYTES // ref.block_bytes) * ref.block_bytes * ref.k
        out = []
        pos, end = offset, offset + length
        while pos < end:
            cut = min(end, (pos // step + 1) * step)
            out.append((pos, cut - pos))
            pos = cut
        return out

    async def read(self, ref: ChunkRef, offset: int, length: int) -> list[Any]:
        """Chunk bytes [offset, offset + length) as a list of buffers, verified; degraded reads
        decode from parity. Raises TooFewShards when fewer than k shards can supply the range."""
        if length == 0:
            return []
        drive_ids = self.placement(ref)
        if isinstance(ref.scheme, Replicated):
            for index in range(ref.scheme.copies):
                data = await self._read_shard(ref, drive_ids, index, offset, length)
                if data is not None:
                    if index:
                        self.stats.degraded_reads += 1
                    return [data]
            raise TooFewShards(f"no readable copy of chunk {ref.chunk_id}")
        pieces = ref.layout.data_pieces(offset, length)
        spans: dict[int, tuple[int, int]] = {}
        for p in pieces:
            lo, hi = spans.get(p.shard, (p.shard_offset, p.shard_offset))
            spans[p.shard] = (min(lo, p.shard_offset), max(hi, p.shard_offset + p.length))
        got: dict[int, tuple[int, Any]] = {}

        async def fetch(index: int, lo: int, hi: int) -> None:
            data = await self._read_shard(ref, drive_ids, index, lo, hi - lo)
            if data is not None:
                got[index] = (lo, data)

        async with trio.open_nursery() as nursery:
            for index, (lo, hi) in spans.items():
                nursery.start_soon(fetch, index, lo, hi)
        lost = [i for i in spans if i not in got]
        if lost:
            self.stats.degraded_reads += 1
            lo = min(spans[i][0] for i in lost)
            hi = max(spans[i][1] for i in lost)
            rebuilt = await self._decode_range(ref, drive_ids, lo, hi, lost, exclude=lost)
            got.update((i, (lo, rebuilt[i])) for i in lost)
        out = []
        for p in pieces:
            base, data = got[p.shard]
            start = p.shard_offset - base
            out.append(memoryview(data)[start : start + p.length])
        return out

    async def _decode_range(
        self,
        ref: ChunkRef,
        drive_ids: Sequence[str],
        lo: int,
        hi: int,
        want: Sequence[int],
        exclude: Sequence[int],
    ) -> dict[int, bytearray]:
        """Shards ``want`` over shard bytes [lo, hi), rebuilt from k other shards."""
        assert isinstance(ref.scheme, ErasureCoded)
        k, n = ref.scheme.k, ref.scheme.width
        candidates = [i for i in range(n) if i not in exclude]
        present: dict[int, Any] = {}

        async def fetch(index: int) -> None:
            data = await self._read_shard(ref, drive_ids, index, lo, hi - lo)
            if data is not None:
                present[index] = data

        while len(present) < k and candidates:
            batch, candidates = candidates[: k - len(present)], candidates[k - len(present) :]
            async with trio.open_nursery() as nursery:
                for index in batch:
                    nursery.start_soon(fetch, index)
        if len(present) < k:
            raise TooFewShards(
                f"chunk {ref.chunk_id}: {len(present)} of {n} shards readable, need {k}"
            )
        shards: list[Any] = [present.get(i) for i in range(n)]
        out = {i: bytearray(hi - lo) for i in want}
        ec = self.codec(ref.scheme)
        await trio.to_thread.run_sync(ec.reconstruct_into, shards, out, limiter=self.cpu)
        return out

    # -- housekeeping -----------------------------------------------------------------------------

    async def delete(self, ref: ChunkRef) -> None:
        """Remove every shard of a chunk; absent shards are fine. Raises if a drive fails, so the
        caller keeps its record and retries (garbage collection)."""
        drive_ids = self.placement(ref)
        errors: list[BaseException] = []

        async def drop(index: int) -> None:
            try:
                await self.drives[drive_ids[index]].delete(shard_id(ref.chunk_id, index))
            except (StoreError, OSError) as e:
                errors.append(e)

        async with trio.open_nursery() as nursery:
            for index in range(ref.scheme.width):
                nursery.start_soon(drop, index)
        if errors:
            raise Unavailable(f"could not delete every shard of {ref.chunk_id}: {errors[0]}")

    async def check(self, ref: ChunkRef) -> list[ShardProblem]:
        """Verify every block of every shard (scrub); the shards that need repair."""
        drive_ids = self.placement(ref)
        expected = ShardGeometry(CRC_BLOCK_BYTES, ref.layout.shard_length)
        problems: list[ShardProblem] = []

        async def verify(index: int) -> None:
            drive = self.drives[drive_ids[index]]
            sid = shard_id(ref.chunk_id, index)
            try:
                if await drive.geometry(sid) != expected:
                    problems.append(ShardProblem(index, drive_ids[index], "corrupt"))
                    return
                bad = await drive.verify(sid)
            except NotFound:
                problems.append(ShardProblem(index, drive_ids[index], "missing"))
                return
            except Corrupt:
                problems.append(ShardProblem(index, drive_ids[index], "corrupt"))
                return
            except (StoreError, OSError):
                problems.append(ShardProblem(index, drive_ids[index], "unreadable"))
                return
            if bad:
                problems.append(ShardProblem(index, drive_ids[index], "corrupt", tuple(bad)))

        async with trio.open_nursery() as nursery:
            for index in range(ref.scheme.width):
                nursery.start_soon(verify, index)
        return sorted(problems, key=lambda p: p.index)

    async def repair(
        self,
        ref: ChunkRef,
        shards: Sequence[int],
        pace: Callable[[int], Awaitable[None]] | None = None,
    ) -> int:
        """Rewrite ``shards`` of a chunk from the others; returns the bytes written.

        The new shard files replace the old ones atomically (rename), so a crash mid-repair
        leaves the old state. ``pace(nbytes)`` is awaited per window (a rate limit)."""
        if not shards:
            return 0
        drive_ids = self.placement(ref)
        shard_length = ref.layout.shard_length
        writers = {
            i: await self.drives[drive_ids[i]].create(shard_id(ref.chunk_id, i), CRC_BLOCK_BYTES)
            for i in shards
        }
        written = 0
        try:
            step = max(1, READ_WINDOW_BYTES // CRC_BLOCK_BYTES) * CRC_BLOCK_BYTES
            for lo in range(0, shard_length, step):
                hi = min(shard_length, lo + step)
                if isinstance(ref.scheme, Replicated):
                    source = [i for i in range(ref.scheme.copies) if i not in shards]
                    data = None
                    for index in source:
                        data = await self._read_shard(ref, drive_ids, index, lo, hi - lo)
                        if data is not None:
                            break
                    if data is None:
                        raise TooFewShards(f"no readable copy of chunk {ref.chunk_id}")
                    rebuilt = {i: data for i in shards}
                else:
                    rebuilt = await self._decode_range(ref, drive_ids, lo, hi, shards, shards)
                for i, w in writers.items():
                    await w.write(rebuilt[i])
                    written += hi - lo
                if pace is not None:
                    await pace(hi - lo)
            async with trio.open_nursery() as nursery:
                for w in writers.values():
                    nursery.start_soon(w.commit)
        except BaseException:
            with trio.CancelScope(shield=True):
                for w in writers.values():
                    await w.abort()
            raise
        self.stats.shards_repaired += len(shards)
        return written


class StreamWriter:
    """Cuts a byte stream into chunks of ``CHUNK_BYTES`` and writes them; ``commit()`` returns
    the chunk refs. Encoding and shard writes of one stripe overlap with filling the next, and
    the commit (fsync) of a full chunk overlaps with writing the next chunk.

    Use as an async context manager: leaving it without ``commit()`` (an error, a cancelled
    upload) deletes whatever was written, so nothing is left behind."""

    def __init__(self, store: ChunkStore, scheme: Scheme) -> None:
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
                self._chunk = await _ChunkWriter.start(self._store, self._scheme, self._nursery)
            taken = await self._chunk.write(view[: CHUNK_BYTES - self._chunk.length])
            view = view[taken:]
            if self._chunk.length == CHUNK_BYTES:
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
        self, store: ChunkStore, ref: ChunkRef, drive_ids: list[str], nursery: trio.Nursery
    ) -> None:
        self.store = store
        self.ref = ref
        self.length = 0
        self._nursery = nursery
        self._drive_ids = drive_ids
        self._writers: dict[int, ShardWriter] = {}
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
    async def start(cls, store: ChunkStore, scheme: Scheme, nursery: trio.Nursery) -> _ChunkWriter:
        ref = ChunkRef(new_chunk_id(), scheme, store.block_bytes, 0)
        drive_ids = store.placement(ref)
        self = cls(store, ref, drive_ids, nursery)
        store.inflight.add(ref.chunk_id)

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

            async def append(index: int, w: ShardWriter) -> None:
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

    async def _on_each_writer(
        self, op: Callable[[int, ShardWriter], Awaitable[object]]
    ) -> list[int]:
        """Run ``op`` on every shard writer in parallel; the indices of those that failed."""
        failed: list[int] = []

        async def one(index: int, w: ShardWriter) -> None:
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
        ref = ChunkRef(self.ref.chunk_id, self.ref.scheme, self.ref.block_bytes, self.length)
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
            self.store.inflight.discard(self.ref.chunk_id)
