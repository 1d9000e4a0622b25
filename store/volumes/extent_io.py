"""I/O on the replicas of one extent, through the drive seam (store/chunk/api.py).

Reads take the first good replica that reads back verified; a replica that fails is reported
(``on_damage``: a repair is queued) and the next one tried. Writes, zeroing and syncs go to every
good replica at once; a replica that fails is marked stale (``ReplicaSet.degrade``) before the
call returns, and the call fails only when every replica did. Creating an extent copies the
parent layer's extent (copy-on-write) from a replica whose whole image verifies.

Drives that offer the inline capability (a local drive's page cache) serve small reads and
writes without an await: ``read_now``/``write_now`` answer None/False when they cannot, and
nothing was done.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping

import trio

from store.chunk.api import Buffer, DriveAPI, ExtentGeometry, ExtentImage, InlineExtents
from store.errors import Conflict, Corrupt, NotFound, StoreError, Unavailable
from store.volumes.pieces import on_drives
from store.volumes.replicas import ReplicaSet
from store.volumes.state import VolumeState

log = logging.getLogger(__name__)

INLINE_WRITE_BYTES = 64 << 10  # smaller writes go to the page cache from the event loop


class _Drives(Mapping[str, DriveAPI]):
    """The drives as the cluster map has them now (a gateway's watch adds and removes them): a
    drive no longer there is an unreachable replica (Unavailable), never a KeyError."""

    def __init__(self, drives: Mapping[str, DriveAPI]) -> None:
        self._drives = drives

    def __getitem__(self, drive_id: str) -> DriveAPI:
        try:
            return self._drives[drive_id]
        except KeyError:
            raise Unavailable(f"drive {drive_id} is not in the cluster map (removed)") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._drives)

    def __len__(self) -> int:
        return len(self._drives)


class ExtentIO:
    def __init__(
        self,
        name: str,
        drives: Mapping[str, DriveAPI],
        replicas: ReplicaSet,
        geometry: ExtentGeometry,
        on_damage: Callable[[str, int], None],
        state: VolumeState,
        hedge_after_s: float | None = None,
    ) -> None:
        self._name = name
        # Remote drives: a replica that has not answered a read in this long is raced by the
        # next one (None: one after another, only on failure; local drives answer at once).
        self.hedge_after_s = hedge_after_s
        self._state = state  # its fencing token goes with every change; a fenced one ends I/O
        self.drives = _Drives(drives)
        self.replicas = replicas
        self.geometry = geometry
        self._on_damage = on_damage
        self._inline: dict[str, InlineExtents | None] = {
            d: drive.inline_extents() for d, drive in drives.items()
        }

    # -- reads ----------------------------------------------------------------------------------

    def read_now(self, layer: str, index: int, offset: int, length: int) -> bytearray | None:
        """The bytes from the first good replica, if its drive can serve them inline and
        they are cached; else None (the async path then reads, and copes with failures)."""
        eid, good = self.replicas.target(layer, index)
        inline = self._inline.get(good[0]) if good else None
        if inline is None:
            return None
        try:
            return inline.read_now(eid, self.geometry, offset, length)
        except (StoreError, OSError):
            return None

    async def read(self, layer: str, index: int, offset: int, length: int) -> bytearray:
        problems: list[str] = []
        eid = self.replicas.eid(layer, index)
        good = self.replicas.good(layer, index)
        if self.hedge_after_s is not None and len(good) > 1:
            found = await self._hedged_read(layer, index, eid, good, offset, length, problems)
            if found is not None:
                return found
            good = []  # every replica was tried
        for drive_id in good:
            found = await self._read_replica(layer, index, eid, drive_id, offset, length, problems)
            if found is not None:
                return found
        raise Unavailable(
            f"extent {index} of {self._name}: no good replica ({'; '.join(problems)})"
        )

    async def _read_replica(
        self,
        layer: str,
        index: int,
        eid: str,
        drive_id: str,
        offset: int,
        length: int,
        problems: list[str],
    ) -> bytearray | None:
        """One replica's bytes, or None with the reason in ``problems`` (and damage reported,
        unless its chunk server is merely down or suspect)."""
        try:
            return await self.drives[drive_id].extent_read(eid, self.geometry, offset, length)
        except Unavailable as e:
            problems.append(f"{drive_id}: {e}")
        except (Corrupt, NotFound, OSError) as e:
            problems.append(f"{drive_id}: {e}")
            self._on_damage(layer, index)
        return None

    async def _hedged_read(
        self,
        layer: str,
        index: int,
        eid: str,
        good: list[str],
        offset: int,
        length: int,
        problems: list[str],
    ) -> bytearray | None:
        """The first answer of the good replicas, each asked once the one before it failed or
        has not answered within the hedge delay; None if every one failed."""
        assert self.hedge_after_s is not None
        # Most reads: the first replica answers in time, with no task or event to set up.
        with trio.move_on_after(self.hedge_after_s) as first:
            found = await self._read_replica(layer, index, eid, good[0], offset, length, problems)
            if found is not None:
                return found
            good = good[1:]  # failed: the others race
        if first.cancelled_caught:  # slow: the next one at once, the slow one again last
            good = good[1:] + good[:1]
        result: list[bytearray] = []
        async with trio.open_nursery() as nursery:
            for i, drive_id in enumerate(good):
                failed = trio.Event()

                async def one(drive_id: str = drive_id, failed: trio.Event = failed) -> None:
                    data = await self._read_replica(
                        layer, index, eid, drive_id, offset, length, problems
                    )
                    if data is None:
                        failed.set()
                        return
                    if not result:
                        result.append(data)
                        nursery.cancel_scope.cancel()  # the others need not answer

                nursery.start_soon(one)
                if i + 1 < len(good):
                    with trio.move_on_after(self.hedge_after_s):
                        await failed.wait()
        return result[0] if result else None

    async def states(self, layer: str, index: int, offset: int, length: int) -> bytes | None:
        """HOLE/DATA/ZERO of each block, from the first replica that answers; None if none."""
        eid = self.replicas.eid(layer, index)
        for drive_id in self.replicas.good(layer, index):
            try:
                return await self.drives[drive_id].extent_states(eid, self.geometry, offset, length)
            except (Corrupt, NotFound, OSError, Unavailable):
                continue
        return None

    async def image(self, layer: str, index: int) -> ExtentImage:
        """The whole extent from a good replica whose every block verifies."""
        eid = self.replicas.eid(layer, index)
        for drive_id in self.replicas.good(layer, index):
            try:
                return await self.drives[drive_id].extent_image(eid, self.geometry)
            except Unavailable:
                continue
            except (Corrupt, NotFound, OSError):
                self._on_damage(layer, index)
        raise Unavailable(f"extent {index} of {self._name}: no replica is readable")

    # -- writes ---------------------------------------------------------------------------------

    def write_now(self, layer: str, index: int, offset: int, data: Buffer) -> bool:
        """Write to the page cache of every good replica now, if every drive offers it and the
        write is small; else False (then the async path writes it all again)."""
        if len(data) > INLINE_WRITE_BYTES:
            return False
        eid, drives = self.replicas.target(layer, index)
        inline = [self._inline.get(d) for d in drives]
        if not drives or None in inline:
            return False
        try:
            for one in inline:
                assert one is not None
                if not one.write_now(eid, self.geometry, offset, data, fence=self._state.fence):
                    return False
        except (OSError, StoreError):
            return False
        return True

    async def write(self, layer: str, index: int, offset: int, data: Buffer) -> None:
        eid, drives = self.replicas.target(layer, index)
        later = drives
        if len(data) <= INLINE_WRITE_BYTES:
            later = []
            failed: dict[str, Exception] = {}
            for drive_id in drives:  # a page-cache copy: cheaper than a thread hop
                inline = self._inline.get(drive_id)
                try:
                    if inline is None or not inline.write_now(
                        eid, self.geometry, offset, data, fence=self._state.fence
                    ):
                        later.append(drive_id)
                except Conflict:
                    self._fenced_off()
                    raise
                except (OSError, StoreError) as e:
                    failed[drive_id] = e
            if failed:
                await self.replicas.degrade(layer, index, drives, failed)
        if later:
            await self.each(
                layer,
                index,
                lambda d: d.extent_write(eid, self.geometry, offset, data, fence=self._state.fence),
                later,
            )

    async def zero(self, layer: str, index: int, offset: int, length: int, *, punch: bool) -> None:
        eid = self.replicas.eid(layer, index)
        await self.each(
            layer,
            index,
            lambda d: d.extent_zero(
                eid, self.geometry, offset, length, punch=punch, fence=self._state.fence
            ),
        )

    async def sync(self, layer: str, index: int) -> None:
        eid = self.replicas.eid(layer, index)
        await self.each(
            layer, index, lambda d: d.extent_sync(eid, self.geometry, fence=self._state.fence)
        )

    async def create(self, layer: str, index: int, image: ExtentImage | None) -> None:
        """The extent's file on every replica drive (stale or not: each is replaced), holes or
        ``image``; a drive that fails marks its replica stale."""
        eid = self.replicas.eid(layer, index)
        create = functools.partial(self._create_on, eid, image)
        drives = self.replicas.drives(layer, index)
        failed = await self._on_drives(drives, create)
        if failed:
            await self.replicas.degrade(layer, index, drives, failed)

    async def _create_on(self, eid: str, image: ExtentImage | None, drive_id: str) -> None:
        await self.drives[drive_id].extent_create(
            eid, self.geometry, image, fence=self._state.fence
        )

    # -- one replica (repair and scrub) -----------------------------------------------------------

    async def create_replica(
        self, layer: str, index: int, drive_id: str, image: ExtentImage
    ) -> None:
        await self._create_on(self.replicas.eid(layer, index), image, drive_id)

    async def verify_replica(self, layer: str, index: int, drive_id: str) -> None:
        """Every block of one replica against its checksum (Corrupt, NotFound, OSError)."""
        eid = self.replicas.eid(layer, index)
        await self.drives[drive_id].extent_verify(eid, self.geometry)

    async def rebuild_replica(self, layer: str, index: int, drive_id: str) -> int:
        """After a crash: one replica's checksums recomputed from its data."""
        eid = self.replicas.eid(layer, index)
        return await self.drives[drive_id].extent_rebuild(
            eid, self.geometry, fence=self._state.fence
        )

    async def image_of(self, layer: str, index: int, drive_id: str) -> ExtentImage:
        eid = self.replicas.eid(layer, index)
        return await self.drives[drive_id].extent_image(eid, self.geometry)

    async def each(
        self,
        layer: str,
        index: int,
        work: Callable[[DriveAPI], Awaitable[object]],
        drives: list[str] | None = None,
    ) -> None:
        """``work`` on each good replica's drive, in parallel. A replica it fails on is marked
        stale (the rest carry on); if it fails on all, Unavailable."""
        if drives is None:
            drives = self.replicas.good(layer, index)

        async def one(drive_id: str) -> None:
            await work(self.drives[drive_id])

        failed = await self._on_drives(drives, one)
        if failed:
            await self.replicas.degrade(layer, index, drives, failed)

    async def _on_drives(
        self, drives: list[str], work: Callable[[str], Awaitable[None]]
    ) -> dict[str, Exception]:
        try:
            return await on_drives(drives, work)
        except Conflict:
            self._fenced_off()
            raise

    def _fenced_off(self) -> None:
        """A drive refused a change under our token: a newer owner holds the volume. No more
        I/O here (and no stale marks: the replicas are fine, we are the stale one)."""
        if not self._state.lost:
            log.error("volume %s: fenced off by a newer owner; refusing further I/O", self._name)
        self._state.lost = True

    async def release(self, layers: list[str], *, save: bool = True) -> None:
        """Close the open files of these layers' extents on every drive (the volume closes);
        ``save`` false drops their tables unsaved (the lease was lost)."""
        for drive_id, drive in list(self.drives.items()):
            try:
                for layer in layers:
                    await drive.extent_release(layer + ".", save=save)
            except (StoreError, OSError) as e:  # down: what it had open went with it
                log.warning(
                    "volume %s: cannot release its extents on %s: %s", self._name, drive_id, e
                )
