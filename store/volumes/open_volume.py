"""I/O on an open block volume (``OpenVolume``): reads, writes, zeroing, flush, block status,
live snapshots, crash recovery and replica repair. ``Volumes.open`` (admin.py) makes one.

Durability. A write is in the page cache of every replica when it is acknowledged; FUA writes and
FLUSH fdatasync what they cover on every replica before answering. Before the first write to an
extent after a flush, its dirty mark is committed to the metadata (a write-intent log, as md's
bitmap): if the gateway dies, the next open rebuilds the marked extents' checksums from their
data and copies one replica over the others, so after a crash no block fails its checksum and
replicas agree; flushed data is never lost.
"""

from __future__ import annotations

import json
import logging
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from functools import partial

import trio

from store.chunk import extentfile
from store.chunk.extentfile import HOLE, ZERO, ExtentFile, ExtentGeometry
from store.errors import (
    Conflict,
    Corrupt,
    InvalidArgument,
    NotFound,
    OutOfRange,
    ReadOnly,
    StoreError,
    Unavailable,
)
from store.meta.api import MAX_TXN_OPS, Delete
from store.volumes import records as V
from store.volumes import unaligned
from store.volumes.pieces import Piece, each_piece, on_drives, split
from store.volumes.repair import VolumeHost, VolumeRepair

log = logging.getLogger(__name__)

OPEN_FILES = 512  # extent files kept open per volume (LRU)
INLINE_WRITE_BYTES = 64 << 10  # smaller writes go to the page cache from the event loop
# Hole, zero and data as NBD base:allocation bits (HOLE = 1, ZERO = 2).
_STATUS = {HOLE: 3, ZERO: 2}


def _zero(f: ExtentFile, *, offset: int, length: int, punch: bool) -> None:
    f.zero(offset, length, punch=punch)


class OpenVolume(VolumeRepair):
    """A volume open for I/O. Offsets and lengths are bytes; those not multiples of the block
    size are served through whole blocks (store/volumes/unaligned.py)."""

    def __init__(
        self,
        volumes: VolumeHost,
        volume: V.Volume,
        chain: list[str],
        allocated: dict[int, str],
        writable: bool,
        stale: dict[tuple[str, int], frozenset[str]] | None = None,
    ) -> None:
        self.volumes = volumes
        self.volume = volume
        self.name = volume.name
        self.size = volume.size
        self.geometry = ExtentGeometry(volume.extent_bytes, volume.block_bytes)
        self.block_bytes = volume.block_bytes
        self.patch_lock = trio.Lock()  # partial-block writes take turns (unaligned.py)
        self.layer = volume.layer
        self.chain = chain
        self.allocated = allocated  # extent index -> the layer holding it (active or ancestor)
        self.writable = writable
        self.lost = False
        self.nursery: trio.Nursery | None = None
        self._files: OrderedDict[tuple[str, int, str], ExtentFile] = OrderedDict()
        self._placement: dict[tuple[str, int], list[str]] = {}
        self._alloc_locks: dict[int, trio.Lock] = {}
        self._dirty: set[int] = set()  # marked in the metadata since the last flush
        self._marking: dict[int, trio.Event] = {}
        self._written: set[int] = set()  # written (acknowledged) since the last flush
        self._busy: Counter[int] = Counter()  # writes in progress per extent
        self.damaged: set[tuple[str, int]] = set()
        self.repairing = 0
        self.repairs_idle = trio.Event()
        self.repairs_idle.set()
        # Replicas that missed writes (their drive failed them): never read, not written, until
        # repair_extent copies a good replica over them. Mirrors VS/ keys in the metadata.
        self.stale: dict[tuple[str, int], frozenset[str]] = dict(stale or {})
        self._stale_lock = trio.Lock()
        self._repairing_extents: dict[int, trio.Event] = {}  # writes to these wait
        self._busy_gone: dict[int, trio.Event] = {}  # a repair waits for writes to finish
        self._writers = 0  # write calls in progress
        self._paused: trio.Event | None = None  # set while writes wait (a live snapshot)
        self._writers_gone: trio.Event | None = None

    # -- geometry -------------------------------------------------------------------------------

    def pieces(self, offset: int, length: int) -> Iterator[Piece]:
        return split(offset, length, self.geometry.extent_bytes)

    def _check(self, offset: int, length: int, *, write: bool = False) -> None:
        if self.lost:
            raise Conflict(f"volume {self.name} lost its lease")
        if write and not self.writable:
            raise ReadOnly(f"volume {self.name} is open read-only")
        if offset < 0 or length < 0 or offset + length > self.size:
            raise OutOfRange(f"{offset}+{length} is past the end of {self.name}")

    def _drives(self, layer: str, index: int) -> list[str]:
        key = (layer, index)
        found = self._placement.get(key)
        if found is None:  # HRW ranks every drive: worth remembering per extent
            found = self.volumes.replica_drives(V.extent_id(layer, index), self.volume.replicas)
            if len(self._placement) >= OPEN_FILES * 8:
                self._placement.clear()
            self._placement[key] = found
        return found

    def _good_drives(self, layer: str, index: int) -> list[str]:
        """The replicas to read and write: every one but those marked stale."""
        drives = self._drives(layer, index)
        if not self.stale:
            return drives
        stale = self.stale.get((layer, index))
        return [d for d in drives if d not in stale] if stale else drives

    def _file(self, layer: str, index: int, drive_id: str) -> ExtentFile:
        key = (layer, index, drive_id)
        found = self._files.get(key)
        if found is not None:
            self._files.move_to_end(key)
            return found
        drive = self.volumes.drives[drive_id]
        opened = ExtentFile(
            drive.extent_path(V.extent_id(layer, index)),
            self.geometry,
            memory_backed=drive.memory_backed,
        )
        self._files[key] = opened
        while len(self._files) > OPEN_FILES:
            _, old = self._files.popitem(last=False)
            old.close()
        return opened

    def close_files(self) -> None:
        for f in self._files.values():
            f.close()
        self._files.clear()

    # -- reads ----------------------------------------------------------------------------------

    # -- the synchronous fast path: no await, so the NBD server answers a batch of requests in
    # one pass and one send; None/False means "take the async path" (nothing was done).

    def try_read(self, offset: int, length: int) -> bytes | bytearray | None:
        """The bytes, if every block is in the page cache (or a hole) and every replica read
        goes well; else None."""
        self._check(offset, length)
        if not unaligned.is_aligned(self.block_bytes, offset, length):
            return None
        extent = self.geometry.extent_bytes
        index, within = divmod(offset, extent)
        if within + length > extent:
            return None  # crosses extents: the general path
        layer = self.allocated.get(index)
        if layer is None:
            return bytes(length)
        try:
            drive_id = self._good_drives(layer, index)[0]
            return self._file(layer, index, drive_id).read(within, length, nowait=True)
        except (BlockingIOError, StoreError, OSError, IndexError):
            return None

    def try_write(self, offset: int, data: bytes | memoryview) -> bool:
        """Write to the page cache of every replica now, if the extent is this volume's, already
        marked dirty, and the write small and within one extent; else False."""
        self._check(offset, len(data), write=True)
        extent = self.geometry.extent_bytes
        index, within = divmod(offset, extent)
        if (
            not unaligned.is_aligned(self.block_bytes, offset, len(data))
            or within + len(data) > extent
            or self._paused is not None
            or len(data) > INLINE_WRITE_BYTES
            or self.allocated.get(index) != self.layer
            or index not in self._dirty
            or index in self._repairing_extents
        ):
            return False
        try:
            for drive_id in self._good_drives(self.layer, index):
                self._file(self.layer, index, drive_id).write(within, data)
        except (OSError, StoreError):
            return False  # the async path writes it again, and copes with the failure
        self._written.add(index)
        return True

    async def read(self, offset: int, length: int) -> bytes | bytearray:
        self._check(offset, length)
        if not unaligned.is_aligned(self.block_bytes, offset, length):
            return await unaligned.read(self, offset, length)
        if length == 0:
            return b""
        index, within = divmod(offset, self.geometry.extent_bytes)
        if within + length <= self.geometry.extent_bytes:  # one extent: no assembly copy
            layer = self.allocated.get(index)
            if layer is None:
                return bytes(length)
            return await self._read_extent(layer, index, within, length)
        out = bytearray(length)

        async def read_piece(p: Piece) -> None:
            layer = self.allocated.get(p.index)
            if layer is not None:
                out[p.at : p.at + p.length] = await self._read_extent(
                    layer, p.index, p.offset, p.length
                )

        await each_piece(read_piece, self.pieces(offset, length))  # the extents in parallel
        return out

    async def _read_extent(
        self, layer: str, index: int, offset: int, length: int
    ) -> bytes | bytearray:
        problems = []
        for drive_id in self._good_drives(layer, index):
            try:
                ext = self._file(layer, index, drive_id)
                try:
                    return ext.read(offset, length, nowait=True)
                except BlockingIOError:
                    return await self.volumes.drives[drive_id].run(ext.read, offset, length)
            except (Corrupt, NotFound, OSError) as e:
                problems.append(f"{drive_id}: {e}")
                self._found_damage(layer, index)
        raise Unavailable(f"extent {index} of {self.name}: no good replica ({'; '.join(problems)})")

    def _found_damage(self, layer: str, index: int) -> None:
        if (layer, index) not in self.damaged:
            self.damaged.add((layer, index))
            if self.nursery is not None and self.writable:
                if not self.repairing:  # counted now, so a close cannot miss it
                    self.repairs_idle = trio.Event()
                self.repairing += 1
                self.nursery.start_soon(self._repair_quietly, layer, index)

    async def _repair_quietly(self, layer: str, index: int) -> None:
        try:
            await self.repair_extent(layer, index)
        except StoreError as e:
            log.warning("volume %s extent %d: repair failed: %s", self.name, index, e)
        finally:
            self.repairing -= 1
            if not self.repairing:
                self.repairs_idle.set()

    # -- writes ---------------------------------------------------------------------------------

    async def write(self, offset: int, data: bytes | memoryview, *, fua: bool = False) -> None:
        self._check(offset, len(data), write=True)
        if not unaligned.is_aligned(self.block_bytes, offset, len(data)):
            return await unaligned.write(self, offset, data, fua=fua)
        while self._paused is not None:
            await self._paused.wait()
        view = memoryview(data)
        touched: list[int] = []

        async def write_piece(p: Piece) -> None:
            await self._prepare(p.index)
            while p.index in self._repairing_extents:
                await self._repairing_extents[p.index].wait()
            with self._writing(p.index, touched):
                await self._write_replicas(p.index, p.offset, view[p.at : p.at + p.length])

        with self._write_call():
            await each_piece(write_piece, self.pieces(offset, len(data)))  # the extents in parallel
            if fua:
                await self._sync_extents(touched)

    @contextmanager
    def _write_call(self) -> Iterator[None]:
        """Counts a write call (entered with writes not paused), so a live snapshot can wait
        for the calls in progress to finish."""
        self._writers += 1
        try:
            yield
        finally:
            self._writers -= 1
            if not self._writers and self._writers_gone is not None:
                self._writers_gone.set()

    @contextmanager
    def _writing(self, index: int, touched: list[int]) -> Iterator[None]:
        """Around a write to an extent: a flush meanwhile keeps its dirty mark; once written it
        is one to sync at the next flush (and now, for FUA)."""
        self._busy[index] += 1
        try:
            yield
        finally:
            self._busy[index] -= 1
            if not self._busy[index] and index in self._busy_gone:
                self._busy_gone.pop(index).set()
        self._written.add(index)
        touched.append(index)

    async def _write_replicas(self, index: int, offset: int, data: memoryview) -> None:
        drives = self._good_drives(self.layer, index)
        if len(data) <= INLINE_WRITE_BYTES:
            failed: dict[str, Exception] = {}
            for drive_id in drives:  # a page-cache copy: cheaper than a thread hop
                try:
                    self._file(self.layer, index, drive_id).write(offset, data)
                except (OSError, StoreError) as e:
                    failed[drive_id] = e
            if failed:
                await self._degrade(self.layer, index, drives, failed)
            return
        await self._on_replicas(self.layer, index, lambda f: f.write(offset, data), drives=drives)

    async def _on_replicas(
        self,
        layer: str,
        index: int,
        work: Callable[[ExtentFile], object],
        *,
        drives: list[str] | None = None,
    ) -> None:
        """``work`` on each good replica's file, in the drives' threads, in parallel. A replica
        it fails on is marked stale (and the rest carry on); if it fails on all, Unavailable."""
        if drives is None:
            drives = self._good_drives(layer, index)

        async def one(drive_id: str) -> None:
            await self.volumes.drives[drive_id].run(work, self._file(layer, index, drive_id))

        failed = await on_drives(drives, one)
        if failed:
            await self._degrade(layer, index, drives, failed)

    async def _degrade(
        self, layer: str, index: int, drives: list[str], failed: Mapping[str, Exception]
    ) -> None:
        """Some replicas of an extent failed a write: record them stale in the metadata before
        the write is acknowledged (a stale replica passes its checksums with old data, so no
        read may ever use it), and go on with the others. None left: the write fails."""
        problems = "; ".join(f"{d}: {e}" for d, e in failed.items())
        if len(failed) == len(drives):
            raise Unavailable(
                f"extent {index} of {self.name}: no replica could be written ({problems})"
            )
        async with self._stale_lock:
            marked = self.stale.get((layer, index), frozenset()) | failed.keys()
            await self.volumes.kv.put(
                V.stale_key(layer, index), json.dumps(sorted(marked)).encode()
            )
            self.stale[(layer, index)] = marked
        for drive_id in failed:
            self._forget(layer, index, drive_id)
        log.warning(
            "volume %s extent %d: writing degraded, stale replicas: %s", self.name, index, problems
        )

    async def write_zeroes(
        self, offset: int, length: int, *, punch: bool = True, fua: bool = False
    ) -> None:
        """Make the range read as zeros; ``punch`` lets the space be freed (NBD: no NO_HOLE)."""
        self._check(offset, length, write=True)
        if not unaligned.is_aligned(self.block_bytes, offset, length):
            return await unaligned.write_zeroes(self, offset, length, punch=punch, fua=fua)
        while self._paused is not None:
            await self._paused.wait()
        with self._write_call():
            await self._write_zeroes(offset, length, punch=punch, fua=fua)

    async def _write_zeroes(self, offset: int, length: int, *, punch: bool, fua: bool) -> None:
        touched: list[int] = []
        for p in self.pieces(offset, length):
            layer = self.allocated.get(p.index)
            if layer is None:
                continue  # nothing there: it reads as zeros already
            whole = p.length == self.geometry.extent_bytes
            if layer != self.layer and whole and punch:
                await self._prepare(p.index, fresh=True)  # an empty extent hides the parent's
                continue
            await self._prepare(p.index)
            while p.index in self._repairing_extents:
                await self._repairing_extents[p.index].wait()
            with self._writing(p.index, touched):
                await self._on_replicas(
                    self.layer,
                    p.index,
                    partial(_zero, offset=p.offset, length=p.length, punch=punch),
                )
        if fua:
            await self._sync_extents(touched)

    async def trim(self, offset: int, length: int, *, fua: bool = False) -> None:
        """Discard: only extents this volume's own layer holds give space back (a parent's data
        stays visible, which the NBD spec allows after a trim)."""
        self._check(offset, length, write=True)
        if not unaligned.is_aligned(self.block_bytes, offset, length):
            return await unaligned.trim(self, offset, length, fua=fua)
        for p in self.pieces(offset, length):
            if self.allocated.get(p.index) == self.layer:
                await self.write_zeroes(
                    p.index * self.geometry.extent_bytes + p.offset, p.length, fua=fua
                )

    async def _prepare(self, index: int, *, fresh: bool = False) -> None:
        """Make extent ``index`` writable in this volume's layer: allocate it (copying the
        parent's, unless ``fresh``), and mark it dirty in the metadata before its first write
        since the last flush."""
        if self.allocated.get(index) != self.layer:
            lock = self._alloc_locks.setdefault(index, trio.Lock())
            async with lock:
                if self.allocated.get(index) != self.layer:
                    await self._allocate(index, None if fresh else self.allocated.get(index))
        if index not in self._dirty:
            marking = self._marking.get(index)
            if marking is None:
                self._marking[index] = marking = trio.Event()
                try:
                    await self.volumes.kv.put(V.dirty_key(self.layer, index), b"")
                    self._dirty.add(index)
                finally:
                    del self._marking[index]
                    marking.set()
            else:
                await marking.wait()
                if index not in self._dirty:
                    raise Unavailable("marking an extent dirty failed")

    async def _allocate(self, index: int, parent: str | None) -> None:
        eid = V.extent_id(self.layer, index)
        drives = self._drives(self.layer, index)
        source = None
        if parent is not None:  # copy-on-write: the parent's extent, from a replica that verifies
            source = await self._good_replica(parent, index)

        async def create(drive_id: str) -> None:
            drive = self.volumes.drives[drive_id]
            await drive.run(extentfile.create, drive.extent_path(eid), self.geometry, source)

        failed = await on_drives(drives, create)
        for drive_id in drives:
            self._forget(self.layer, index, drive_id)  # a handle of a file just replaced
        if failed:
            await self._degrade(self.layer, index, drives, failed)
        await self.volumes.kv.put(V.extent_key(self.layer, index), b"")
        self.allocated[index] = self.layer

    async def _sync_extents(self, indexes: list[int]) -> None:
        async with trio.open_nursery() as nursery:
            for index in set(indexes):
                nursery.start_soon(self._on_replicas, self.layer, index, ExtentFile.sync)

    async def flush(self) -> None:
        """Make every acknowledged write durable on every replica, then drop the dirty marks of
        extents nothing has written since."""
        if not self.writable:
            return
        if self.lost:
            raise Conflict(f"volume {self.name} lost its lease")
        synced = set(self._written)
        self._written.clear()
        await self._sync_extents(list(synced))
        clean = [
            i
            for i in self._dirty
            if i not in self._written and not self._busy[i] and i not in self._marking
        ]
        if clean:
            for i in clean:
                self._dirty.discard(i)
            for start in range(0, len(clean), MAX_TXN_OPS):
                batch = clean[start : start + MAX_TXN_OPS]
                await self.volumes.kv.txn([], [Delete(V.dirty_key(self.layer, i)) for i in batch])

    # -- live snapshots -------------------------------------------------------------------------

    async def snapshot(self, snap: str, description: str = "") -> V.Volume:
        """Snapshot the volume while it is open: new writes wait, the ones in progress finish,
        everything is flushed, and the volume moves on to a new layer (its extents are copied
        on their next write). Clients see a pause of one flush."""
        if not self.writable:
            raise ReadOnly(f"volume {self.name} is open read-only")
        if self._paused is not None:
            raise Conflict(f"a snapshot of {self.name} is already being taken")
        self._paused = paused = trio.Event()
        try:
            if self._writers:
                self._writers_gone = trio.Event()
                await self._writers_gone.wait()
            await self.flush()
            if self._dirty or self._written:
                raise Conflict(f"volume {self.name} has writes in progress; try again")
            frozen, moved = await self.volumes.commit_snapshot(
                self.name, snap, description, owner=True
            )
            self.volume = replace(moved, size=self.size)
            self.layer = moved.layer
            self.chain = [moved.layer, *self.chain]
            log.info("volume %s: live snapshot %s taken", self.name, frozen.name)
            return frozen
        finally:
            self._writers_gone = None
            self._paused = None
            paused.set()

    async def handle_request(self, action: str, args: dict[str, object]) -> object:
        """A request from another process (volume_requests), answered as JSON."""
        if action == "snapshot":
            frozen = await self.snapshot(str(args["snap"]), str(args.get("description", "")))
            return json.loads(frozen.encode())
        if action == "scrub":
            return await self.scrub(repair=bool(args.get("repair")))
        raise InvalidArgument(f"unknown volume request {action!r}")

    # -- status ---------------------------------------------------------------------------------

    async def block_status(self, offset: int, length: int) -> list[tuple[int, int]]:
        """(length, base:allocation flags) runs covering the range: HOLE|ZERO where nothing was
        written (or it was trimmed), ZERO where zeros are allocated, 0 for data."""
        self._check(offset, length)
        if not unaligned.is_aligned(self.block_bytes, offset, length):
            return await unaligned.block_status(self, offset, length)
        runs: list[tuple[int, int]] = []

        def add(n: int, flags: int) -> None:
            if runs and runs[-1][1] == flags:
                runs[-1] = (runs[-1][0] + n, flags)
            else:
                runs.append((n, flags))

        block = self.geometry.block_bytes
        for p in self.pieces(offset, length):
            layer = self.allocated.get(p.index)
            states = None
            if layer is not None:
                for drive_id in self._good_drives(layer, p.index):
                    try:
                        states = self._file(layer, p.index, drive_id).states(p.offset, p.length)
                        break
                    except (Corrupt, NotFound, OSError):
                        continue
            if states is None:
                add(p.length, 3 if layer is None else 0)  # unreadable: "data" is always safe
                continue
            for state in states:
                add(block, _STATUS.get(state, 0))
        return runs
