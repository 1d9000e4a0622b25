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
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from typing import Protocol

import trio

from store.chunk.api import HOLE, ZERO, DriveAPI, ExtentGeometry, ExtentImage
from store.errors import Conflict, InvalidArgument, OutOfRange, ReadOnly, Unavailable
from store.meta.api import KV, MAX_TXN_OPS, Delete
from store.volumes import records as V
from store.volumes import unaligned
from store.volumes.extent_io import INLINE_WRITE_BYTES, ExtentIO
from store.volumes.gates import ExtentGuard, WriteGate
from store.volumes.migrate import SwitchUnknown, move_extent
from store.volumes.pieces import Piece, each_piece, split
from store.volumes.repair import VolumeRepair
from store.volumes.replicas import ReplicaSet
from store.volumes.state import VolumeState

log = logging.getLogger(__name__)

# Hole, zero and data as NBD base:allocation bits (HOLE = 1, ZERO = 2).
_STATUS = {HOLE: 3, ZERO: 2}


class VolumeHost(Protocol):
    """What an open volume needs of the volumes it belongs to (``Volumes`` in admin.py): the
    metadata, the drives, placement and its epoch, the extents of a layer, and the snapshot
    commit."""

    kv: KV
    drives: Mapping[str, DriveAPI]
    hedge_after_s: float | None  # replica reads raced after this long (cluster gateways)

    @property
    def epoch(self) -> int: ...

    def replica_drives(self, eid: str, replicas: int, epoch: int) -> list[str]: ...

    async def allocated(self, layer: str) -> list[int]: ...

    async def commit_snapshot(
        self, name: str, snap: str, description: str, *, owner: bool = False
    ) -> tuple[V.Volume, V.Volume]: ...


class OpenVolume:
    """A volume open for I/O. Offsets and lengths are bytes; those not multiples of the block
    size are served through whole blocks (store/volumes/unaligned.py). Its parts: the replica
    set (placement, stale marks), extent I/O over the drive seam, the write gate (live
    snapshots) and extent guard (repairs), and the repair half (recovery, scrub, healing)."""

    def __init__(
        self,
        volumes: VolumeHost,
        volume: V.Volume,
        chain: list[str],
        allocated: dict[int, str],
        writable: bool,
        stale: dict[tuple[str, int], frozenset[str]] | None = None,
        *,
        fence: int = 0,
        epochs: dict[str, int] | None = None,
    ) -> None:
        self._host = volumes
        # Extent id -> the map epoch its replicas were placed by; new extents take the current.
        self._epochs = dict(epochs or {})
        self._kv = volumes.kv
        self.state = VolumeState(volume, chain, allocated, writable, fence=fence)
        self.name = volume.name
        self.geometry = ExtentGeometry(volume.extent_bytes, volume.block_bytes)
        self.block_bytes = volume.block_bytes
        self.patch_lock = trio.Lock()  # partial-block writes take turns (unaligned.py)
        self.replicas = ReplicaSet(
            self._kv,
            self.name,
            lambda eid: volumes.replica_drives(
                eid, volume.replicas, self._epochs.get(eid, volumes.epoch)
            ),
            stale,
        )
        self.io = ExtentIO(
            self.name,
            volumes.drives,
            self.replicas,
            self.geometry,
            self._damaged,
            self.state,
            hedge_after_s=volumes.hedge_after_s,
        )
        self.gate = WriteGate()
        self.guard = ExtentGuard()
        self.repair = VolumeRepair(
            self.state, self._kv, self.io, self.guard, volumes.allocated, self._moved
        )
        self._alloc_locks: dict[int, trio.Lock] = {}
        self._dirty: set[int] = set()  # marked in the metadata since the last flush
        self._marking: dict[int, trio.Event] = {}
        self._written: set[int] = set()  # written (acknowledged) since the last flush

    # -- what it is -----------------------------------------------------------------------------

    @property
    def volume(self) -> V.Volume:
        return self.state.volume

    @property
    def size(self) -> int:
        return self.state.volume.size

    @property
    def layer(self) -> str:
        return self.state.layer

    @property
    def chain(self) -> list[str]:
        return self.state.chain

    @property
    def allocated(self) -> dict[int, str]:
        return self.state.allocated

    @property
    def writable(self) -> bool:
        return self.state.writable

    @property
    def lost(self) -> bool:
        return self.state.lost

    @lost.setter
    def lost(self, value: bool) -> None:
        self.state.lost = value

    @property
    def stale(self) -> dict[tuple[str, int], frozenset[str]]:
        return self.replicas.stale

    @property
    def damaged(self) -> set[tuple[str, int]]:
        return self.repair.damaged

    def _damaged(self, layer: str, index: int) -> None:
        self.repair.found_damage(layer, index)

    def pieces(self, offset: int, length: int) -> Iterator[Piece]:
        return split(offset, length, self.geometry.extent_bytes)

    def _check(self, offset: int, length: int, *, write: bool = False) -> None:
        if not self.state.lost and time.monotonic() > self.state.lease_valid_until:
            # Paused or cut off past the lease's safe end: another gateway may own the volume.
            log.error("volume %s: its lease may have expired; refusing further I/O", self.name)
            self.state.lost = True
        if self.state.lost:
            raise Conflict(f"volume {self.name} lost its lease")
        if write and not self.state.writable:
            raise ReadOnly(f"volume {self.name} is open read-only")
        if offset < 0 or length < 0 or offset + length > self.size:
            raise OutOfRange(f"{offset}+{length} is past the end of {self.name}")

    # -- the lifecycle (Volumes.open) -----------------------------------------------------------

    async def recover(self) -> int:
        return await self.repair.recover()

    async def scrub(self, *, repair: bool = False) -> dict[str, object]:
        return await self.repair.scrub(repair=repair)

    async def repair_extent(self, layer: str, index: int, *, rebuild: bool = False) -> int:
        return await self.repair.repair_extent(layer, index, rebuild=rebuild)

    async def release(self) -> None:
        """Close the extent files this volume opened: their tables saved, unless the lease was
        lost (another gateway may own the volume now, and its tables are the right ones)."""
        await self.io.release(self.chain, save=not self.state.lost)

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
        layer = self.state.allocated.get(index)
        if layer is None:
            return bytes(length)
        return self.io.read_now(layer, index, within, length)

    def try_write(self, offset: int, data: bytes | memoryview) -> bool:
        """Write to the page cache of every replica now, if the extent is this volume's, already
        marked dirty, and the write small and within one extent; else False."""
        self._check(offset, len(data), write=True)
        extent = self.geometry.extent_bytes
        index, within = divmod(offset, extent)
        layer = self.state.layer
        if (
            not unaligned.is_aligned(self.block_bytes, offset, len(data))
            or within + len(data) > extent
            or self.gate.is_paused
            or len(data) > INLINE_WRITE_BYTES
            or self.state.allocated.get(index) != layer
            or index not in self._dirty
            or self.guard.held(index)
        ):
            return False
        if not self.io.write_now(layer, index, within, data):
            return False
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
            layer = self.state.allocated.get(index)
            if layer is None:
                return bytes(length)
            return await self._read_extent(layer, index, within, length)
        out = bytearray(length)

        async def read_piece(p: Piece) -> None:
            layer = self.state.allocated.get(p.index)
            if layer is not None:
                data = await self._read_extent(layer, p.index, p.offset, p.length)
                out[p.at : p.at + p.length] = data

        await each_piece(read_piece, self.pieces(offset, length))  # the extents in parallel
        return out

    async def _read_extent(self, layer: str, index: int, offset: int, length: int) -> bytearray:
        placed = self._epochs.get(V.extent_id(layer, index))
        try:
            return await self.io.read(layer, index, offset, length)
        except Unavailable:
            if not await self._placed_since(layer, index, placed):
                raise
            return await self.io.read(layer, index, offset, length)

    async def _image(self, layer: str, index: int) -> ExtentImage:
        placed = self._epochs.get(V.extent_id(layer, index))
        try:
            return await self.io.image(layer, index)
        except Unavailable:
            if not await self._placed_since(layer, index, placed):
                raise
            return await self.io.image(layer, index)

    async def _placed_since(self, layer: str, index: int, placed: int | None) -> bool:
        """Whether the extent is placed by another epoch than ``placed`` (what a read that
        failed used) once its record is read again: then that read is worth another try."""
        await self._moved(layer, index)
        return self._epochs.get(V.extent_id(layer, index)) != placed

    async def _moved(self, layer: str, index: int) -> bool:
        """Whether the extent's record names another placement epoch than the one this volume
        has (the rebalancer moved it since the volume opened): then it is placed anew, with its
        stale marks as they are now."""
        found = await self._kv.get(V.extent_key(layer, index))
        eid = V.extent_id(layer, index)
        if found is None or V.extent_epoch(found.value) == self._epochs.get(eid):
            return False
        stale = await self._kv.get(V.stale_key(layer, index))
        marks = frozenset(json.loads(stale.value)) if stale is not None else frozenset()
        self._place_anew(layer, index, V.extent_epoch(found.value), marks)
        self.repair.damaged.discard((layer, index))  # not damage: no longer there
        log.info("volume %s: extent %s was moved; reading it where it is now", self.name, eid)
        return True

    def _place_anew(self, layer: str, index: int, epoch: int, stale: frozenset[str]) -> None:
        """The extent is placed by ``epoch``'s map now, with these stale replicas."""
        self._epochs[V.extent_id(layer, index)] = epoch
        self.replicas.forget(layer, index)
        if stale:
            self.replicas.stale[(layer, index)] = stale
        else:
            self.replicas.stale.pop((layer, index), None)

    # -- moving extents (store cluster rebalance) -------------------------------------------------

    async def migrate(self, target: int, budget_s: float = 20.0) -> dict[str, int]:
        """Move this volume's own extents placed by maps older than ``target`` to the drives
        ``target``'s map names (store/volumes/migrate.py), each exclusive while it moves, for
        at most ``budget_s``; what is moved, copied and left."""
        if not self.state.writable:
            raise ReadOnly(f"volume {self.name} is open read-only: its writer moves it")
        if target > self._host.epoch:
            raise Unavailable(f"this gateway has not seen epoch {target} of the cluster map")
        layer = self.state.layer
        todo = [
            i
            for i, owner in sorted(self.state.allocated.items())
            if owner == layer and self._epochs.get(V.extent_id(layer, i), 0) < target
        ]
        moved = copied = processed = 0
        deadline = trio.current_time() + budget_s  # checked between extents, never in one
        for index in todo:
            if trio.current_time() > deadline:
                break
            self._check(0, 0)  # the lease still ours (else: Conflict, and nothing more moves)

            def switched(index: int = index) -> None:  # our own reads follow at once
                self._place_anew(layer, index, target, frozenset())  # the move rewrote all

            async with self.guard.exclusive(index):
                try:
                    n, was_moved = await move_extent(
                        self._kv,
                        self._host.drives,
                        lambda eid, epoch: self._host.replica_drives(
                            eid, self.volume.replicas, epoch
                        ),
                        layer,
                        index,
                        self.geometry,
                        target,
                        fence=self.state.fence,
                        owner=V.owner_key(self.name),
                        switched=switched,
                    )
                except SwitchUnknown:
                    # Its writes might go where no reader looks: stop, as on a lost lease.
                    log.error("volume %s: a move's outcome is unknown; no more I/O", self.name)
                    self.state.lost = True
                    raise
            copied += n
            moved += was_moved
            processed += 1  # moved, or nothing to move any more (trimmed, already there)
        left = len(todo) - processed
        return {"extents_moved": moved, "bytes_copied": copied, "extents_left": left}

    # -- writes ---------------------------------------------------------------------------------

    async def write(self, offset: int, data: bytes | memoryview, *, fua: bool = False) -> None:
        self._check(offset, len(data), write=True)
        if not unaligned.is_aligned(self.block_bytes, offset, len(data)):
            return await unaligned.write(self, offset, data, fua=fua)
        await self.gate.wait_open()
        view = memoryview(data)
        touched: list[int] = []

        async def write_piece(p: Piece) -> None:
            await self._prepare(p.index)
            await self.guard.wait(p.index)
            with self._writing(p.index, touched):
                await self.io.write(
                    self.state.layer, p.index, p.offset, view[p.at : p.at + p.length]
                )

        with self.gate.call():
            await each_piece(write_piece, self.pieces(offset, len(data)))  # the extents in parallel
            if fua:
                await self._sync_extents(touched)

    @contextmanager
    def _writing(self, index: int, touched: list[int]) -> Iterator[None]:
        """Around a write to an extent: a flush meanwhile keeps its dirty mark; once written it
        is one to sync at the next flush (and now, for FUA)."""
        with self.guard.writing(index):
            yield
        self._written.add(index)
        touched.append(index)

    async def write_zeroes(
        self, offset: int, length: int, *, punch: bool = True, fua: bool = False
    ) -> None:
        """Make the range read as zeros; ``punch`` lets the space be freed (NBD: no NO_HOLE)."""
        self._check(offset, length, write=True)
        if not unaligned.is_aligned(self.block_bytes, offset, length):
            return await unaligned.write_zeroes(self, offset, length, punch=punch, fua=fua)
        await self.gate.wait_open()
        with self.gate.call():
            await self._write_zeroes(offset, length, punch=punch, fua=fua)

    async def _write_zeroes(self, offset: int, length: int, *, punch: bool, fua: bool) -> None:
        touched: list[int] = []
        for p in self.pieces(offset, length):
            layer = self.state.allocated.get(p.index)
            if layer is None:
                continue  # nothing there: it reads as zeros already
            whole = p.length == self.geometry.extent_bytes
            if layer != self.state.layer and whole and punch:
                await self._prepare(p.index, fresh=True)  # an empty extent hides the parent's
                continue
            await self._prepare(p.index)
            await self.guard.wait(p.index)
            with self._writing(p.index, touched):
                await self.io.zero(self.state.layer, p.index, p.offset, p.length, punch=punch)
        if fua:
            await self._sync_extents(touched)

    async def trim(self, offset: int, length: int, *, fua: bool = False) -> None:
        """Discard: only extents this volume's own layer holds give space back (a parent's data
        stays visible, which the NBD spec allows after a trim)."""
        self._check(offset, length, write=True)
        if not unaligned.is_aligned(self.block_bytes, offset, length):
            return await unaligned.trim(self, offset, length, fua=fua)
        for p in self.pieces(offset, length):
            if self.state.allocated.get(p.index) == self.state.layer:
                await self.write_zeroes(
                    p.index * self.geometry.extent_bytes + p.offset, p.length, fua=fua
                )

    async def _prepare(self, index: int, *, fresh: bool = False) -> None:
        """Make extent ``index`` writable in this volume's layer: allocate it (copying the
        parent's, unless ``fresh``), and mark it dirty in the metadata before its first write
        since the last flush."""
        if self.state.allocated.get(index) != self.state.layer:
            lock = self._alloc_locks.setdefault(index, trio.Lock())
            async with lock:
                if self.state.allocated.get(index) != self.state.layer:
                    parent = None if fresh else self.state.allocated.get(index)
                    await self._allocate(index, parent)
        if index not in self._dirty:
            marking = self._marking.get(index)
            if marking is None:
                self._marking[index] = marking = trio.Event()
                try:
                    await self._kv.put(V.dirty_key(self.state.layer, index), b"")
                    self._dirty.add(index)
                finally:
                    del self._marking[index]
                    marking.set()
            else:
                await marking.wait()
                if index not in self._dirty:
                    raise Unavailable("marking an extent dirty failed")

    async def _allocate(self, index: int, parent: str | None) -> None:
        """The extent's replicas in this layer (a copy of the parent's, copy-on-write, from a
        replica that verifies), then its key naming the placement epoch it was written under."""
        layer = self.state.layer
        image = None if parent is None else await self._image(parent, index)
        epoch = self._epochs[V.extent_id(layer, index)] = self._host.epoch
        self.replicas.forget(layer, index)
        await self.io.create(layer, index, image)
        await self._kv.put(V.extent_key(layer, index), V.extent_value(epoch))
        self.state.allocated[index] = layer

    async def _sync_extents(self, indexes: list[int]) -> None:
        async with trio.open_nursery() as nursery:
            for index in set(indexes):
                nursery.start_soon(self.io.sync, self.state.layer, index)

    async def flush(self) -> None:
        """Make every acknowledged write durable on every replica, then drop the dirty marks of
        extents nothing has written since."""
        if not self.state.writable:
            return
        if self.state.lost:
            raise Conflict(f"volume {self.name} lost its lease")
        synced = set(self._written)
        self._written.clear()
        await self._sync_extents(list(synced))
        clean = [
            i
            for i in self._dirty
            if i not in self._written and not self.guard.busy(i) and i not in self._marking
        ]
        if clean:
            for i in clean:
                self._dirty.discard(i)
            layer = self.state.layer
            for start in range(0, len(clean), MAX_TXN_OPS):
                batch = clean[start : start + MAX_TXN_OPS]
                await self._kv.txn([], [Delete(V.dirty_key(layer, i)) for i in batch])

    # -- live snapshots -------------------------------------------------------------------------

    async def snapshot(self, snap: str, description: str = "") -> V.Volume:
        """Snapshot the volume while it is open: new writes wait, the ones in progress finish,
        everything is flushed, and the volume moves on to a new layer (its extents are copied
        on their next write). Clients see a pause of one flush."""
        if not self.state.writable:
            raise ReadOnly(f"volume {self.name} is open read-only")
        if self.gate.is_paused:
            raise Conflict(f"a snapshot of {self.name} is already being taken")
        async with self.gate.paused():
            await self.flush()
            if self._dirty or self._written:
                raise Conflict(f"volume {self.name} has writes in progress; try again")
            frozen, moved = await self._host.commit_snapshot(
                self.name, snap, description, owner=True
            )
            self.state.volume = replace(moved, size=self.size)
            self.state.chain = [moved.layer, *self.state.chain]
            log.info("volume %s: live snapshot %s taken", self.name, frozen.name)
            return frozen

    async def handle_request(self, action: str, args: dict[str, object]) -> object:
        """A request from another process (volume_requests), answered as JSON."""
        if action == "snapshot":
            frozen = await self.snapshot(str(args["snap"]), str(args.get("description", "")))
            return json.loads(frozen.encode())
        if action == "scrub":
            return await self.scrub(repair=bool(args.get("repair")))
        if action == "migrate":
            epoch = args.get("epoch")
            if not isinstance(epoch, int) or isinstance(epoch, bool):
                raise InvalidArgument("migrate: epoch must be an integer")
            return await self.migrate(epoch)
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
            layer = self.state.allocated.get(p.index)
            states = None
            if layer is not None:
                placed = self._epochs.get(V.extent_id(layer, p.index))
                states = await self.io.states(layer, p.index, p.offset, p.length)
                if states is None and await self._placed_since(layer, p.index, placed):
                    states = await self.io.states(layer, p.index, p.offset, p.length)
            if states is None:
                add(p.length, 3 if layer is None else 0)  # unreadable: "data" is always safe
                continue
            for state in states:
                add(block, _STATUS.get(state, 0))
        return runs
