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

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import trio

from store import native
from store.chunk.api import DriveAPI
from store.chunk.chunkref import (
    CHUNK_BYTES,
    CRC_BLOCK_BYTES,
    READ_WINDOW_BYTES,
    STRIPE_BLOCK_BYTES,
    ChunkRef,
    ChunkStats,
    ShardProblem,
)
from store.chunk.ids import shard_id
from store.chunk.shardfile import ShardGeometry
from store.chunk.writer import StreamWriter
from store.errors import (
    Corrupt,
    InvalidArgument,
    NotFound,
    StoreError,
    TooFewShards,
    Unavailable,
)
from store.placement.history import MapHistory
from store.placement.hrw import ClusterMap, drives_for_pg, pg_of
from store.placement.layout import ErasureCoded, Replicated, Scheme

log = logging.getLogger(__name__)

HEDGE_LATENCY_MULTIPLE = 4  # a shard read this many times the average is slow


DamageCallback = Callable[[ChunkRef], None]


class ChunkStore:
    def __init__(
        self,
        drives: Mapping[str, DriveAPI],
        maps: MapHistory | ClusterMap,
        scheme: Scheme,
        *,
        block_bytes: int = STRIPE_BLOCK_BYTES,
        chunk_bytes: int = CHUNK_BYTES,
        cpu_threads: int = 2,
        on_damage: DamageCallback | None = None,
        hedge_after_s: float | None = None,
        fence_key: bytes | None = None,
    ) -> None:
        if block_bytes % CRC_BLOCK_BYTES:
            raise InvalidArgument("stripe block must be a multiple of the CRC block")
        if isinstance(maps, ClusterMap):
            maps = MapHistory([maps])
        missing = maps.drive_ids() - set(drives)
        if missing:
            raise InvalidArgument(f"cluster map names unknown drives {sorted(missing)}")
        self.drives = drives  # a cluster gateway adds the drives of new maps (cluster_drives)
        self.maps = maps
        self.scheme = scheme
        self.block_bytes = block_bytes
        self.chunk_bytes = chunk_bytes
        self.stats = ChunkStats()
        self.on_damage = on_damage
        # Encoding is CPU work: bound the threads it takes so drives keep theirs.
        self.cpu = trio.CapacityLimiter(cpu_threads)
        self._codecs: dict[tuple[int, int], native.ErasureCode] = {}
        # Chunks being written, or written and not yet named by the metadata (the orphan sweep
        # skips them), each with the epoch it is placed under (the rebalancer waits for them).
        self.inflight: dict[str, tuple[int, int]] = {}  # id -> (epoch, map revision)
        self._placements: dict[tuple[int, int, int], list[str]] = {}
        # Hedged reads (cluster gateways): a shard slower than this, or than a few times the
        # average, is decoded around. None on local drives: a hedge there only adds reads.
        self.hedge_after_s = hedge_after_s
        self.fence_key = fence_key  # bumped by every rebalance switch (cluster gateways)
        self._read_latency = 0.0

    # -- helpers ----------------------------------------------------------------------------------

    def codec(self, scheme: ErasureCoded) -> native.ErasureCode:
        key = (scheme.k, scheme.m)
        if key not in self._codecs:
            self._codecs[key] = native.ErasureCode(scheme.k, scheme.m)
        return self._codecs[key]

    @property
    def cmap(self) -> ClusterMap:
        """The map new chunks are placed by."""
        return self.maps.current

    def placement(self, ref: ChunkRef) -> list[str]:
        """Drive ids of the chunk's shards (shard i on entry i), by the map of the epoch it was
        written under. Rankings are cached per map and placement group (maps never change)."""
        if not self.maps.known(ref.epoch):
            raise Unavailable(
                f"chunk {ref.chunk_id} was placed by map epoch {ref.epoch}, newer than this "
                f"gateway's {self.maps.current.epoch}: retry in a moment"
            )
        pg = pg_of(ref.chunk_id, self.maps.current.pg_count)  # fixed for the cluster's life
        cmap = self.maps.for_chunk(ref.epoch, pg)
        key = (cmap.epoch, pg, ref.scheme.width)
        found = self._placements.get(key)
        if found is None:
            found = self._placements[key] = drives_for_pg(cmap, *key[1:])
        return found

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
            self.inflight.pop(ref.chunk_id, None)

    def settled_epoch(self) -> int:
        """The lowest epoch a chunk not yet named by the metadata was placed under (the
        current one when there is none): the rebalancer's barrier."""
        return min((epoch for epoch, _ in self.inflight.values()), default=self.cmap.epoch)

    @property
    def placed_revision(self) -> int:
        """The cluster map revision new chunks are placed under (0 on the embedded node)."""
        return self.maps.revision

    def commit_fence(self, refs: Sequence[ChunkRef]) -> tuple[bytes, int] | None:
        """What a metadata commit naming these new chunks must check: that no rebalance has
        switched a placement group (``fence_key`` changed) since the oldest of them was
        placed; else its chunks may sit where no map now looks. (key, that revision), or
        None when nothing needs fencing (the embedded node; chunks already recorded)."""
        if self.fence_key is None:
            return None
        placed = [self.inflight[r.chunk_id][1] for r in refs if r.chunk_id in self.inflight]
        return None if not placed else (self.fence_key, min(placed))

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
        all_in = trio.Event()

        failed: set[int] = set()

        async def fetch(index: int, lo: int, hi: int) -> None:
            began = trio.current_time()
            try:
                data = await self._read_shard(ref, drive_ids, index, lo, hi - lo)
                if data is not None:
                    got[index] = (lo, data)
                    self._took(trio.current_time() - began)
            finally:  # answered, failed or cancelled: the hedge stops waiting for it
                if index not in got:
                    failed.add(index)
                if all(i in got or i in failed for i in spans):
                    all_in.set()

        async with trio.open_nursery() as nursery:
            for index, (lo, hi) in spans.items():
                nursery.start_soon(fetch, index, lo, hi)
            hedge = self.hedge_delay()
            if hedge is not None:
                with trio.move_on_after(hedge):
                    await all_in.wait()
                if not all_in.is_set():
                    # A slow shard: decode its range from the others (parity), and take
                    # whichever comes first, its own bytes or the decoded ones.
                    slow = [i for i in spans if i not in got and i not in failed]
                    cancel_reads = nursery.cancel_scope.cancel

                    async def hedged() -> None:
                        if await self._hedge(ref, drive_ids, spans, got, slow):
                            cancel_reads()

                    async with trio.open_nursery() as race:
                        race.start_soon(hedged)
                        await all_in.wait()
                        race.cancel_scope.cancel()
        lost = [i for i in spans if i not in got]
        if lost:
            self.stats.degraded_reads += 1
            lo = min(spans[i][0] for i in lost)
            hi = max(spans[i][1] for i in lost)
            rebuilt = await self._decode_range(ref, drive_ids, lo, hi, lost, exclude=lost, have=got)
            got.update((i, (lo, rebuilt[i])) for i in lost)
        out = []
        for p in pieces:
            base, data = got[p.shard]
            start = p.shard_offset - base
            out.append(memoryview(data)[start : start + p.length])
        return out

    def _took(self, seconds: float) -> None:
        """A shard read's latency, into the running average that sets the hedge delay."""
        self._read_latency += (seconds - self._read_latency) * 0.05

    def hedge_delay(self) -> float | None:
        """How long a read waits for a slow shard before decoding around it (None: never)."""
        if self.hedge_after_s is None:
            return None
        return max(self.hedge_after_s, HEDGE_LATENCY_MULTIPLE * self._read_latency)

    async def _hedge(
        self,
        ref: ChunkRef,
        drive_ids: Sequence[str],
        spans: dict[int, tuple[int, int]],
        got: dict[int, tuple[int, Any]],
        slow: list[int],
    ) -> bool:
        """Decode the ``slow`` shards' ranges into ``got``; True if done before they came in."""
        lo = min(spans[i][0] for i in slow)
        hi = max(spans[i][1] for i in slow)
        self.stats.hedged_reads += 1
        try:
            rebuilt = await self._decode_range(
                ref, drive_ids, lo, hi, slow, exclude=slow, have=dict(got)
            )
        except TooFewShards:
            return False  # nothing else to read from: wait for the slow ones
        for i in slow:
            if i not in got:
                got[i] = (lo, rebuilt[i])
        return True

    async def _decode_range(
        self,
        ref: ChunkRef,
        drive_ids: Sequence[str],
        lo: int,
        hi: int,
        want: Sequence[int],
        exclude: Sequence[int],
        have: Mapping[int, tuple[int, Any]] | None = None,
    ) -> dict[int, bytearray]:
        """Shards ``want`` over shard bytes [lo, hi), rebuilt from k other shards: those of
        ``have`` (shard -> (offset, bytes) already read) that cover the range, then parity."""
        assert isinstance(ref.scheme, ErasureCoded)
        k, n = ref.scheme.k, ref.scheme.width
        present: dict[int, Any] = {}
        for index, (base, data) in (have or {}).items():
            if index not in exclude and base <= lo and base + len(data) >= hi:
                present[index] = memoryview(data)[lo - base : hi - base]
        candidates = [i for i in range(n) if i not in exclude and i not in present]
        candidates.sort(key=lambda i: i < k)  # parity first: the data shards were just tried

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

    async def copy_shard(
        self,
        ref: ChunkRef,
        index: int,
        to_drive: str,
        pace: Callable[[int], Awaitable[None]] | None = None,
    ) -> int:
        """Shard ``index`` of a chunk, as placed now, written to ``to_drive`` (read where it is,
        or decoded from the others where it cannot be); the bytes written. The copy lands by
        rename, so a crash leaves no partial shard."""
        drive_ids = self.placement(ref)
        shard_length = ref.layout.shard_length
        sid = shard_id(ref.chunk_id, index)
        writer = await self.drives[to_drive].create(sid, CRC_BLOCK_BYTES)
        step = max(1, READ_WINDOW_BYTES // CRC_BLOCK_BYTES) * CRC_BLOCK_BYTES
        try:
            for lo in range(0, shard_length, step):
                hi = min(shard_length, lo + step)
                data = await self._read_shard(ref, drive_ids, index, lo, hi - lo)
                if data is None and isinstance(ref.scheme, Replicated):
                    for other in range(ref.scheme.copies):
                        if other != index:
                            data = await self._read_shard(ref, drive_ids, other, lo, hi - lo)
                            if data is not None:
                                break
                    if data is None:
                        raise TooFewShards(f"no readable copy of chunk {ref.chunk_id}")
                elif data is None:
                    data = (await self._decode_range(ref, drive_ids, lo, hi, [index], [index]))[
                        index
                    ]
                await writer.write(data)
                if pace is not None:
                    await pace(hi - lo)
            await writer.commit()
        except BaseException:
            with trio.CancelScope(shield=True):
                await writer.abort()
            raise
        return shard_length

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
