"""Crash recovery, replica repair, scrub and stale-replica healing of an open volume.

Repair rewrites the replicas of an extent that are stale, missing or fail verification from one
that passes, with the extent exclusive (writes wait); a stale replica is never the source, and
is stale no more once rewritten. Scrub verifies every replica of every extent the volume reads
through (its snapshots' layers too) and reports, or repairs, what it finds. Damage that reads
find (``found_damage``) is repaired in the background, in the volume's nursery.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import trio

from store.errors import Corrupt, NotFound, ReadOnly, StoreError, Unavailable
from store.meta.api import KV, prefix_end
from store.volumes import records as V
from store.volumes.extent_io import ExtentIO
from store.volumes.gates import ExtentGuard
from store.volumes.state import VolumeState

log = logging.getLogger(__name__)

# What a replica may answer that leaves it unusable for now (Unavailable: its chunk server
# is down): a source to skip, a target to leave stale.
_BAD = (Corrupt, NotFound, OSError, Unavailable)


class VolumeRepair:
    def __init__(
        self,
        state: VolumeState,
        kv: KV,
        io: ExtentIO,
        guard: ExtentGuard,
        allocated_in: Callable[[str], Awaitable[list[int]]],
        moved: Callable[[str, int], Awaitable[bool]] | None = None,
    ) -> None:
        self._state = state
        # Whether an extent was moved by the rebalancer since it was placed here (then what a
        # read missed is where it went, not damage): checked before repairing what reads found.
        self._moved = moved
        self._kv = kv
        self._io = io
        self._replicas = io.replicas
        self._guard = guard
        self._allocated_in = allocated_in  # a layer's extents, from the metadata
        self.damaged: set[tuple[str, int]] = set()
        self.repairing = 0
        self.repairs_idle = trio.Event()
        self.repairs_idle.set()
        self.nursery: trio.Nursery | None = None  # where repairs found by reads run

    # -- damage found by reads ------------------------------------------------------------------

    def found_damage(self, layer: str, index: int) -> None:
        if (layer, index) in self.damaged:
            return
        self.damaged.add((layer, index))
        if self.nursery is not None and self._state.writable:
            if not self.repairing:  # counted now, so a close cannot miss it
                self.repairs_idle = trio.Event()
            self.repairing += 1
            self.nursery.start_soon(self._repair_quietly, layer, index)

    async def _repair_quietly(self, layer: str, index: int) -> None:
        try:
            if (layer, index) not in self.damaged:
                return  # found where it was moved to meanwhile
            if self._moved is not None and await self._moved(layer, index):
                self.damaged.discard((layer, index))
                return
            await self.repair_extent(layer, index)
        except StoreError as e:
            log.warning("volume %s extent %d: repair failed: %s", self._state.name, index, e)
        finally:
            self.repairing -= 1
            if not self.repairing:
                self.repairs_idle.set()

    # -- recovery and repair --------------------------------------------------------------------

    async def recover(self) -> int:
        """After a crash: extents marked dirty get their checksums rebuilt from the first
        replica that opens, which is then copied over the others. Returns how many."""
        layer = self._state.layer
        prefix = V.dirty_prefix(layer)
        page = await self._kv.range(prefix, prefix_end(prefix), keys_only=True)
        indexes = [V.index_of(kv.key) for kv in page.kvs]
        for index in indexes:
            if self._state.allocated.get(index) == layer:
                await self.repair_extent(layer, index, rebuild=True)
        if indexes:
            log.info(
                "volume %s: recovered %d extents written before a crash",
                self._state.name,
                len(indexes),
            )
            await self._kv.delete(prefix, prefix_end(prefix))
        return len(indexes)

    async def repair_extent(self, layer: str, index: int, *, rebuild: bool = False) -> int:
        """Rewrite the replicas of an extent that are stale, missing or fail verification from
        one that passes (with ``rebuild``: from the first that opens, its checksums recomputed
        first, and every other replica rewritten). Stale replicas are never the source; once
        rewritten they are stale no more. Writes to the extent wait meanwhile. Returns the
        replicas rewritten."""
        if self._moved is not None:  # placed where its record says now, moved or not
            await self._moved(layer, index)
        async with self._exclusive(layer, index):
            return await self._repair(layer, index, rebuild)

    @asynccontextmanager
    async def _exclusive(self, layer: str, index: int) -> AsyncIterator[None]:
        """Only this volume's own layer is ever written: other layers need no exclusion."""
        if not (self._state.writable and layer == self._state.layer):
            yield
            return
        async with self._guard.exclusive(index):
            yield

    async def _repair(self, layer: str, index: int, rebuild: bool) -> int:
        io = self._io
        source = good = None
        for drive_id in self._replicas.good(layer, index):
            try:
                if rebuild:
                    await io.rebuild_replica(layer, index, drive_id)
                source = await io.image_of(layer, index, drive_id)
                good = drive_id
                break
            except _BAD:
                continue
        if source is None:
            raise Unavailable(f"extent {index} of {self._state.name}: no replica is readable")
        stale = self._replicas.stale.get((layer, index), frozenset())
        rewritten, fixed, failed = 0, [], {}
        for drive_id in self._replicas.drives(layer, index):
            if drive_id == good:
                continue
            if not rebuild and drive_id not in stale:
                try:
                    await io.verify_replica(layer, index, drive_id)
                    continue
                except _BAD:
                    pass
            try:
                await io.create_replica(layer, index, drive_id, source)
            except (OSError, StoreError) as e:
                failed[drive_id] = e
                continue
            rewritten += 1
            if drive_id in stale:
                fixed.append(drive_id)
        if fixed:
            await self._replicas.clear(layer, index, fixed)
        if failed:
            if not self._state.writable:
                raise Unavailable(f"extent {index} of {self._state.name}: repair failed: {failed}")
            # A replica left behind (by a crash, or damaged) must not be read: stale until a
            # later repair can write it.
            await self._replicas.degrade(layer, index, self._replicas.drives(layer, index), failed)
        self.damaged.discard((layer, index))
        return rewritten

    # -- scrub ----------------------------------------------------------------------------------

    async def scrub(self, *, repair: bool = False) -> dict[str, object]:
        """Read every replica of every allocated extent this volume reads through (its layer
        and its ancestors'), verifying every block; with ``repair``, rewrite the bad ones
        from a good one. A report of what was found (and fixed)."""
        if repair and not self._state.writable:
            raise ReadOnly(f"{self._state.name} is open read-only: repair it through its volume")
        found: dict[str, list[str]] = {"corrupt": [], "missing": [], "stale": [], "unreachable": []}
        checked = extents = repaired = 0
        unrepairable: list[str] = []
        for layer in list(self._state.chain):
            for index in await self._allocated_in(layer):
                extents += 1
                if self._moved is not None:
                    await self._moved(layer, index)
                async with self._exclusive(layer, index):
                    problems = await self._check_replicas(layer, index)
                checked += len(self._replicas.drives(layer, index))
                for kind, where in problems:
                    found[kind].append(where)
                if repair:  # nothing to rewrite it from here: left for a later scrub
                    unrepairable += [f"{w}: unreachable" for k, w in problems if k == "unreachable"]
                problems = [p for p in problems if p[0] != "unreachable"]
                if problems and repair:
                    try:
                        repaired += await self.repair_extent(layer, index)
                    except StoreError as e:
                        unrepairable.append(f"{layer}.{index:x}: {e}")
                    if (layer, index) in self._replicas.stale:
                        unrepairable.append(f"{layer}.{index:x}: a replica is still stale")
        problems_found = sum(len(v) for v in found.values())
        return {
            "volume": self._state.name,
            "extents": extents,
            "replicas_checked": checked,
            **found,
            "repaired": repaired,
            "unrepairable": unrepairable,
            "clean": problems_found == 0 or (repair and not unrepairable),
        }

    async def _check_replicas(self, layer: str, index: int) -> list[tuple[str, str]]:
        """(kind, where) of each bad replica of an extent: stale, missing or corrupt."""
        out = []
        stale = self._replicas.stale.get((layer, index), frozenset())
        for drive_id in self._replicas.drives(layer, index):
            where = f"{layer}.{index:x}@{drive_id}"
            if drive_id in stale:
                out.append(("stale", where))
                continue
            try:
                await self._io.verify_replica(layer, index, drive_id)
            except NotFound:
                out.append(("missing", where))
            except (Corrupt, OSError):
                out.append(("corrupt", where))
            except Unavailable:  # its chunk server is down: not checked, not clean either
                out.append(("unreachable", where))
        return out

    async def heal_stale(self, interval_s: float) -> None:
        """While open for writing: retry rewriting stale replicas (a drive that failed writes
        may work again: space freed, a path remounted) every ``interval_s``."""
        while True:
            await trio.sleep(interval_s)
            for layer, index in list(self._replicas.stale):
                if layer in self._state.chain:
                    try:
                        await self.repair_extent(layer, index)
                    except StoreError as e:
                        log.warning(
                            "volume %s extent %d: still degraded: %s", self._state.name, index, e
                        )
