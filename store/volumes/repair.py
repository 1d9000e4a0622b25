"""Crash recovery, replica repair, scrub and stale-replica healing of an open volume: the repair
half of ``OpenVolume`` (a mixin; ``_Host`` names what it needs of the volume it runs on).

Repair rewrites the replicas of an extent that are stale, missing or fail verification from one
that passes, with the extent exclusive (writes wait); a stale replica is never the source, and
is stale no more once rewritten. Scrub verifies every replica of every extent the volume reads
through (its snapshots' layers too) and reports, or repairs, what it finds.
"""

from __future__ import annotations

import json
import logging
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Protocol

import trio

from store.chunk import extentfile
from store.chunk.drive import Drive
from store.chunk.extentfile import ExtentFile, ExtentGeometry
from store.errors import Corrupt, NotFound, ReadOnly, StoreError, Unavailable
from store.meta.api import KV, prefix_end
from store.volumes import records as V

log = logging.getLogger(__name__)


class VolumeHost(Protocol):
    """What an open volume needs of the volumes it belongs to (``Volumes`` in admin.py): the
    metadata, the drives, placement, the extents of a layer, and the snapshot commit."""

    kv: KV
    drives: Mapping[str, Drive]

    def replica_drives(self, eid: str, replicas: int) -> list[str]: ...

    async def allocated(self, layer: str) -> list[int]: ...

    async def commit_snapshot(
        self, name: str, snap: str, description: str, *, owner: bool = False
    ) -> tuple[V.Volume, V.Volume]: ...


class _Host(Protocol):
    """The open volume a repair runs on."""

    volumes: VolumeHost
    volume: V.Volume
    name: str
    layer: str
    writable: bool
    geometry: ExtentGeometry
    allocated: dict[int, str]
    chain: list[str]
    stale: dict[tuple[str, int], frozenset[str]]
    damaged: set[tuple[str, int]]
    _files: OrderedDict[tuple[str, int, str], ExtentFile]
    _busy: Counter[int]
    _busy_gone: dict[int, trio.Event]
    _stale_lock: trio.Lock
    _repairing_extents: dict[int, trio.Event]

    def _drives(self, layer: str, index: int) -> list[str]: ...

    def _good_drives(self, layer: str, index: int) -> list[str]: ...

    def _file(self, layer: str, index: int, drive_id: str) -> ExtentFile: ...

    def _found_damage(self, layer: str, index: int) -> None: ...

    async def _degrade(
        self, layer: str, index: int, drives: list[str], failed: Mapping[str, Exception]
    ) -> None: ...

    def _forget(self, layer: str, index: int, drive_id: str) -> None: ...

    async def repair_extent(self, layer: str, index: int, *, rebuild: bool = False) -> int: ...

    def _exclusive(self, layer: str, index: int) -> AbstractAsyncContextManager[None]: ...

    async def _repair(self, layer: str, index: int, rebuild: bool) -> int: ...

    async def _clear_stale(self, layer: str, index: int, fixed: list[str]) -> None: ...

    async def _good_replica(self, layer: str, index: int) -> ExtentFile: ...


class VolumeRepair:
    async def recover(self: _Host) -> int:
        """After a crash: extents marked dirty get their checksums rebuilt from the first
        replica that opens, which is then copied over the others. Returns how many."""
        prefix = V.dirty_prefix(self.layer)
        page = await self.volumes.kv.range(prefix, prefix_end(prefix), keys_only=True)
        indexes = [V.index_of(kv.key) for kv in page.kvs]
        for index in indexes:
            if self.allocated.get(index) == self.layer:
                await self.repair_extent(self.layer, index, rebuild=True)
        if indexes:
            log.info(
                "volume %s: recovered %d extents written before a crash", self.name, len(indexes)
            )
            await self.volumes.kv.delete(prefix, prefix_end(prefix))
        return len(indexes)

    async def _good_replica(self: _Host, layer: str, index: int) -> ExtentFile:
        for drive_id in self._good_drives(layer, index):
            try:
                f = self._file(layer, index, drive_id)
                await self.volumes.drives[drive_id].run(f.verify)
                return f
            except (Corrupt, NotFound, OSError):
                self._found_damage(layer, index)
        raise Unavailable(f"extent {index} of {self.name}: no replica is readable")

    def _forget(self: _Host, layer: str, index: int, drive_id: str) -> None:
        found = self._files.pop((layer, index, drive_id), None)
        if found is not None:
            found.close()

    async def repair_extent(self: _Host, layer: str, index: int, *, rebuild: bool = False) -> int:
        """Rewrite the replicas of an extent that are stale, missing or fail verification from
        one that passes (with ``rebuild``: from the first that opens, its checksums recomputed
        first, and every other replica rewritten). Stale replicas are never the source; once
        rewritten they are stale no more. Writes to the extent wait meanwhile. Returns the
        replicas rewritten."""
        async with self._exclusive(layer, index):
            return await self._repair(layer, index, rebuild)

    @asynccontextmanager
    async def _exclusive(self: _Host, layer: str, index: int) -> AsyncIterator[None]:
        """No write to the extent runs inside (new ones wait, those in progress finish first);
        only this volume's own layer is ever written."""
        if not (self.writable and layer == self.layer):
            yield
            return
        while index in self._repairing_extents:
            await self._repairing_extents[index].wait()
        self._repairing_extents[index] = done = trio.Event()
        try:
            if self._busy[index]:
                self._busy_gone[index] = gone = trio.Event()
                await gone.wait()
            yield
        finally:
            del self._repairing_extents[index]
            done.set()

    async def scrub(self: _Host, *, repair: bool = False) -> dict[str, object]:
        """Read every replica of every allocated extent this volume reads through (its layer
        and its ancestors'), verifying every block; with ``repair``, rewrite the bad ones
        from a good one. A report of what was found (and fixed)."""
        if repair and not self.writable:
            raise ReadOnly(f"{self.name} is open read-only: repair it through its volume")
        found: dict[str, list[str]] = {"corrupt": [], "missing": [], "stale": []}
        checked = extents = repaired = 0
        unrepairable: list[str] = []
        for layer in self.chain:
            for index in await self.volumes.allocated(layer):
                extents += 1
                bad = False
                async with self._exclusive(layer, index):
                    stale = self.stale.get((layer, index), frozenset())
                    for drive_id in self._drives(layer, index):
                        where = f"{layer}.{index:x}@{drive_id}"
                        checked += 1
                        if drive_id in stale:
                            found["stale"].append(where)
                            bad = True
                            continue
                        try:
                            f = self._file(layer, index, drive_id)
                            await self.volumes.drives[drive_id].run(f.verify)
                        except NotFound:
                            found["missing"].append(where)
                            bad = True
                        except (Corrupt, OSError):
                            found["corrupt"].append(where)
                            bad = True
                if bad and repair:
                    try:
                        repaired += await self.repair_extent(layer, index)
                    except StoreError as e:
                        unrepairable.append(f"{layer}.{index:x}: {e}")
                    if (layer, index) in self.stale:
                        unrepairable.append(f"{layer}.{index:x}: a replica is still stale")
        problems = sum(len(v) for v in found.values())
        return {
            "volume": self.name,
            "extents": extents,
            "replicas_checked": checked,
            **found,
            "repaired": repaired,
            "unrepairable": unrepairable,
            "clean": problems == 0 or (repair and not unrepairable),
        }

    async def _repair(self: _Host, layer: str, index: int, rebuild: bool) -> int:
        good = None
        for drive_id in self._good_drives(layer, index):
            try:
                f = self._file(layer, index, drive_id)
                run = self.volumes.drives[drive_id].run
                if rebuild:
                    await run(f.rebuild_table)
                await run(f.verify)
                good = drive_id
                break
            except (Corrupt, NotFound, OSError):
                continue
        if good is None:
            raise Unavailable(f"extent {index} of {self.name}: no replica is readable")
        source = self._file(layer, index, good)
        eid = V.extent_id(layer, index)
        stale = self.stale.get((layer, index), frozenset())
        rewritten, fixed, failed = 0, [], {}
        for drive_id in self._drives(layer, index):
            if drive_id == good:
                continue
            if not rebuild and drive_id not in stale:
                try:
                    f = self._file(layer, index, drive_id)
                    await self.volumes.drives[drive_id].run(f.verify)
                    continue
                except (Corrupt, NotFound, OSError):
                    pass
            self._forget(layer, index, drive_id)
            drive = self.volumes.drives[drive_id]
            try:
                await drive.run(extentfile.create, drive.extent_path(eid), self.geometry, source)
            except (OSError, StoreError) as e:
                failed[drive_id] = e
                continue
            rewritten += 1
            if drive_id in stale:
                fixed.append(drive_id)
        if fixed:
            await self._clear_stale(layer, index, fixed)
        if failed:
            if not self.writable:
                raise Unavailable(f"extent {index} of {self.name}: repair failed: {failed}")
            # A replica left behind (by a crash, or damaged) must not be read: stale until a
            # later repair can write it.
            await self._degrade(layer, index, self._drives(layer, index), failed)
        self.damaged.discard((layer, index))
        return rewritten

    async def _clear_stale(self: _Host, layer: str, index: int, fixed: list[str]) -> None:
        async with self._stale_lock:
            left = self.stale.get((layer, index), frozenset()) - set(fixed)
            key = V.stale_key(layer, index)
            if left:
                await self.volumes.kv.put(key, json.dumps(sorted(left)).encode())
                self.stale[(layer, index)] = left
            else:
                await self.volumes.kv.delete(key)
                self.stale.pop((layer, index), None)
        log.info("volume %s extent %d: stale replicas rewritten: %s", self.name, index, fixed)

    async def heal_stale(self: _Host, interval_s: float) -> None:
        """While open for writing: retry rewriting stale replicas (a drive that failed writes
        may work again: space freed, a path remounted) every ``interval_s``."""
        while True:
            await trio.sleep(interval_s)
            for layer, index in list(self.stale):
                if layer in self.chain:
                    try:
                        await self.repair_extent(layer, index)
                    except StoreError as e:
                        log.warning("volume %s extent %d: still degraded: %s", self.name, index, e)
