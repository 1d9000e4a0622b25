"""Block volumes: thin-provisioned, replicated, checksummed; what the NBD endpoint serves.

A volume is cut into fixed-size extents (4 MiB by default). An extent that was never written
has no files and reads as zeros. A written one has a file on each of ``replicas`` drives, chosen
by HRW from its id like a chunk's shards, overwritten in place (store/chunk/extentfile.py: every
block carries a CRC32C, verified on every read; a bad or missing replica is read around and
repaired from a good one).

Ownership. Opening a volume for writing takes ``VO/<name>`` with a metadata lease kept alive
while open: a second gateway (or process) cannot open it for writing until that lease is
released or expires. All NBD connections to a volume in one gateway share one ``OpenVolume``, so
a flush on any connection covers the writes of all of them (NBD multi-conn).
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import trio

from store.chunk.api import DriveAPI
from store.errors import (
    AlreadyExists,
    Conflict,
    Corrupt,
    InvalidArgument,
    NotFound,
    ReadOnly,
    StoreError,
    Unavailable,
)
from store.meta.api import KV, Compare, Delete, Put, prefix_end, scan_prefix
from store.placement.history import MapHistory
from store.placement.hrw import ClusterMap, place
from store.volumes import records as V
from store.volumes import requests as volume_requests
from store.volumes.open_volume import OpenVolume

log = logging.getLogger(__name__)

LEASE_TTL_S = 15
LEASE_MARGIN_S = 3.0  # the owner stops this much before its lease could have expired
SCRUB_TIMEOUT_S = 24 * 3600.0  # how long a scrub by the volume's gateway may take
STALE_RETRY_S = 30.0  # an open volume retries rewriting its stale replicas this often
REPAIR_WAIT_S = 30.0  # closing a volume waits this long for repairs in progress


class _Attached(Exception):
    """A detached-only operation found the volume open."""


class Volumes:
    """Volume admin (create, list, resize, delete) and ``open`` for I/O."""

    def __init__(
        self,
        kv: KV,
        drives: Mapping[str, DriveAPI],
        maps: MapHistory | ClusterMap,
        *,
        hedge_after_s: float | None = None,
    ) -> None:
        self.kv = kv
        self.drives = drives
        self.hedge_after_s = hedge_after_s
        self.maps = MapHistory([maps]) if isinstance(maps, ClusterMap) else maps

    async def create(self, name: str, size: int, **options: object) -> V.Volume:
        layer = secrets.token_hex(8)
        volume = V.new_volume(name, size, layer, **options)  # type: ignore[arg-type]
        if volume.replicas > len(self.drives):
            raise InvalidArgument(f"{volume.replicas} replicas need as many drives")
        result = await self.kv.txn(
            [Compare.absent(V.volume_key(name))],
            [
                Put(V.volume_key(name), volume.encode()),
                Put(V.layer_key(layer), V.Layer("", name).encode()),
            ],
        )
        if not result.succeeded:
            raise AlreadyExists(f"volume {name} exists")
        return volume

    async def get(self, name: str) -> V.Volume:
        found = await self.kv.get(V.volume_key(name))
        if found is None:
            raise NotFound(f"no volume {name}")
        return V.Volume.decode(found.value)

    async def list_volumes(self) -> list[V.Volume]:
        return [V.Volume.decode(kv.value) async for kv in scan_prefix(self.kv, b"VV/")]

    async def attached(self, name: str) -> bool:
        return await self.kv.get(V.owner_key(name)) is not None

    async def resize(self, name: str, size: int) -> V.Volume:
        """Grow at any time (clients see the new size when they reconnect); shrink only while no
        gateway has the volume open, dropping the extents past the new end."""
        volume = await self.get(name)
        if volume.readonly:
            raise ReadOnly("a snapshot cannot be resized")
        V.check_size(size, volume.block_bytes)
        if size < volume.size and await self.attached(name):
            raise Conflict(f"volume {name} is attached: shrinking it is refused")
        if size < volume.size and (await self._layer(volume.layer)).parent:
            # Growing it again would show the parent's data past the cut, not zeros.
            raise InvalidArgument(f"volume {name} has a snapshot or is a clone: it cannot shrink")
        resized = volume.resized(size)
        key = V.volume_key(name)
        current = await self.kv.get(key)
        assert current is not None
        result = await self.kv.txn(
            [Compare.mod_is(key, current.mod_revision), Compare.absent(V.owner_key(name))]
            if size < volume.size
            else [Compare.mod_is(key, current.mod_revision)],
            [Put(key, resized.encode())],
        )
        if not result.succeeded:
            raise Conflict(f"volume {name} changed or was attached meanwhile; try again")
        if size < volume.size:
            first = -(-size // volume.extent_bytes)
            await self._drop_extents(volume, volume.layer, first)
        return resized

    async def snapshot(self, name: str, snap: str, description: str = "") -> V.Volume:
        """``name@snap``: the volume as it is now, read-only. Nothing is copied: the volume's
        layer becomes the snapshot's, and the volume continues on a new empty layer above it.
        While a gateway has the volume open, that gateway takes the snapshot (it must switch
        layers itself): the request goes to it through the metadata (volume_requests)."""
        V.check_name(f"{name}@{snap}", snapshot=True)

        async def here() -> V.Volume:
            return (await self.commit_snapshot(name, snap, description))[0]

        args = {"snap": snap, "description": description}
        found = await self._here_or_at_owner(name, here, "snapshot", args)
        return found if isinstance(found, V.Volume) else V.Volume(**found)

    async def _here_or_at_owner(
        self,
        name: str,
        here: Callable[[], Awaitable[Any]],
        action: str,
        args: dict[str, Any],
        timeout_s: float = volume_requests.ANSWER_TIMEOUT_S,
    ) -> Any:
        """``here()`` while the volume is detached (it raises _Attached if it finds it opened
        meanwhile), else ``action`` by the gateway holding it open (its JSON answer)."""
        while True:
            if not await self.attached(name):
                try:
                    return await here()
                except _Attached:
                    pass  # opened meanwhile: ask its gateway
            try:
                return await volume_requests.ask_owner(
                    self.kv, name, action, args, timeout_s=timeout_s
                )
            except volume_requests.NotAttached:
                continue  # closed meanwhile: do it here

    async def commit_snapshot(
        self, name: str, snap: str, description: str, *, owner: bool = False
    ) -> tuple[V.Volume, V.Volume]:
        """The metadata side of a snapshot: (the snapshot, the volume on its new layer). With
        ``owner`` the caller holds the volume open and has flushed it (its writes paused);
        without, the volume must be detached and clean."""
        full = f"{name}@{snap}"
        volume = await self.get(name)
        if volume.readonly:
            raise InvalidArgument(f"{name} is a snapshot: clone it, then snapshot the clone")
        prefix = V.dirty_prefix(volume.layer)
        if not owner and (await self.kv.range(prefix, prefix_end(prefix), limit=1)).kvs:
            raise Conflict(f"volume {name} was not closed cleanly: attach it once to recover")
        layer = await self._layer(volume.layer)
        key, owner_key = V.volume_key(name), V.owner_key(name)
        current = await self.kv.get(key)
        assert current is not None
        above = secrets.token_hex(8)
        frozen = replace(
            volume, name=full, readonly=True, origin=name, created=time.time(),
            description=description,
        )  # fmt: skip
        moved = replace(volume, layer=above)
        result = await self.kv.txn(
            [
                Compare.mod_is(key, current.mod_revision),
                Compare.exists(owner_key) if owner else Compare.absent(owner_key),
                Compare.absent(V.volume_key(full)),
            ],
            [
                Put(V.volume_key(full), frozen.encode()),
                Put(V.layer_key(volume.layer), V.Layer(layer.parent, full).encode()),
                Put(V.layer_key(above), V.Layer(volume.layer, name).encode()),
                Put(key, moved.encode()),
            ],
        )
        if not result.succeeded:
            if await self.kv.get(V.volume_key(full)) is not None:
                raise AlreadyExists(f"snapshot {full} exists")
            if not owner and await self.attached(name):
                raise _Attached(name)
            raise Conflict(f"volume {name} changed meanwhile; try again")
        return frozen, moved

    async def scrub(self, name: str, *, repair: bool = False) -> dict[str, object]:
        """Verify every replica of a volume's extents (``OpenVolume.scrub``). An attached volume
        is scrubbed by the gateway holding it (its writes to an extent pause while that extent
        is read), a detached one here."""

        async def here() -> dict[str, object]:
            volume = await self.get(name)
            if repair and volume.readonly:
                raise InvalidArgument(
                    f"{name} is a snapshot: repair it through its volume or a clone"
                )
            try:  # writable: the lease keeps writers away while the extents are read
                async with self.open(name, writable=not volume.readonly) as opened:
                    return await opened.scrub(repair=repair)
            except Conflict:
                raise _Attached(name) from None

        report: dict[str, object] = await self._here_or_at_owner(
            name, here, "scrub", {"repair": repair}, SCRUB_TIMEOUT_S
        )
        return report

    async def clone(self, snapshot: str, name: str, description: str = "") -> V.Volume:
        """A new writable volume that starts as ``snapshot`` (copy-on-write, nothing copied)."""
        source = await self.get(snapshot)
        if not source.readonly:
            raise InvalidArgument(f"{snapshot} is not a snapshot: snapshot it, then clone that")
        V.check_name(name)
        layer = secrets.token_hex(8)
        volume = replace(
            source, name=name, layer=layer, readonly=False, origin=snapshot, created=time.time(),
            description=description,
        )  # fmt: skip
        result = await self.kv.txn(
            [Compare.absent(V.volume_key(name)), Compare.exists(V.volume_key(snapshot))],
            [
                Put(V.volume_key(name), volume.encode()),
                Put(V.layer_key(layer), V.Layer(source.layer, name).encode()),
            ],
        )
        if not result.succeeded:
            raise AlreadyExists(f"volume {name} exists (or {snapshot} was just deleted)")
        return volume

    async def delete(self, name: str) -> None:
        """Delete a volume or snapshot. Its layer's extents go once no volume reads through it:
        a snapshot with clones (or its origin volume) above it stays, hidden, until they go."""
        volume = await self.get(name)
        layer = await self._layer(volume.layer)
        result = await self.kv.txn(
            [Compare.absent(V.owner_key(name)), Compare.exists(V.volume_key(name))],
            [
                Delete(V.volume_key(name)),
                Put(V.layer_key(volume.layer), V.Layer(layer.parent, "").encode()),
            ],
        )
        if not result.succeeded:
            raise Conflict(f"volume {name} is attached")
        await self._free_unused(volume.layer, volume)

    async def _free_unused(self, layer_id: str, volume: V.Volume) -> None:
        """Free a layer no volume names and no layer sits on, then its parent the same way."""
        while layer_id:
            layer = await self._layer(layer_id)
            if layer.volume or layer_id in await self._parents():
                return
            await self._drop_extents(volume, layer_id, 0)
            dirty, stale = V.dirty_prefix(layer_id), V.stale_prefix(layer_id)
            await self.kv.txn(
                [],
                [
                    Delete(V.layer_key(layer_id)),
                    Delete(dirty, prefix_end(dirty)),
                    Delete(stale, prefix_end(stale)),
                ],
            )
            layer_id = layer.parent

    async def _layer(self, layer_id: str) -> V.Layer:
        found = await self.kv.get(V.layer_key(layer_id))
        if found is None:
            raise Corrupt(f"layer {layer_id} is missing from the metadata")
        return V.Layer.decode(found.value)

    async def _parents(self) -> set[str]:
        """Every layer some other layer sits on."""
        found = {V.Layer.decode(kv.value).parent async for kv in scan_prefix(self.kv, b"VL/")}
        return found - {""}

    async def _drop_extents(self, volume: V.Volume, layer: str, first: int) -> None:
        """Delete a layer's extents from ``first`` on: files first, then their keys (a crash in
        between leaves keys naming missing files, which read as damage, never as others' data)."""
        for index, epoch in (await self.extent_epochs(layer)).items():
            if index < first:
                continue
            eid = V.extent_id(layer, index)
            for drive_id in self.replica_drives(eid, volume.replicas, epoch):
                await self.drives[drive_id].extent_delete(eid)
            await self.kv.txn(
                [], [Delete(V.extent_key(layer, index)), Delete(V.stale_key(layer, index))]
            )

    async def allocated(self, layer: str) -> list[int]:
        """The extents a layer holds."""
        keys = scan_prefix(self.kv, V.extents_prefix(layer), keys_only=True, page_size=10000)
        return [V.index_of(kv.key) async for kv in keys]

    async def extent_epochs(self, layer: str) -> dict[int, int]:
        """The extents a layer holds, each with the map epoch its replicas were placed by."""
        found = scan_prefix(self.kv, V.extents_prefix(layer), page_size=10000)
        return {V.index_of(kv.key): V.extent_epoch(kv.value) async for kv in found}

    @property
    def cmap(self) -> ClusterMap:
        return self.maps.current

    @property
    def epoch(self) -> int:
        """The cluster map's epoch: new extents record it."""
        return self.maps.current.epoch

    def replica_drives(self, eid: str, replicas: int, epoch: int) -> list[str]:
        """An extent's replica drives, by the map of the epoch it was placed under."""
        if not self.maps.known(epoch):
            raise Unavailable(f"extent {eid} was placed by map epoch {epoch}, newer than ours")
        return place(self.maps.at(epoch), eid, replicas)

    async def chain(self, layer: str) -> list[str]:
        """The layer and its ancestors, top first."""
        chain = [layer]
        while parent := (await self._layer(chain[-1])).parent:
            chain.append(parent)
        return chain

    @asynccontextmanager
    async def open(self, name: str, *, writable: bool = True) -> AsyncIterator[OpenVolume]:
        volume = await self.get(name)
        writable = writable and not volume.readonly
        lease = fence = 0
        granted_at = time.monotonic()
        if writable:
            lease = await self.kv.lease_grant(LEASE_TTL_S)
            try:
                fence = await self._take_ownership(name, lease)
            except BaseException:
                with trio.CancelScope(shield=True):
                    await self.kv.lease_revoke(lease)
                raise
        try:
            chain = await self.chain(volume.layer)
            allocated: dict[int, str] = {}
            epochs: dict[str, int] = {}
            for layer in reversed(chain):  # upper layers override lower ones
                for index, epoch in (await self.extent_epochs(layer)).items():
                    allocated[index] = layer
                    epochs[V.extent_id(layer, index)] = epoch
            stale = {}
            for layer in chain:
                async for kv in scan_prefix(self.kv, V.stale_prefix(layer)):
                    stale[(layer, V.index_of(kv.key))] = frozenset(json.loads(kv.value))
            opened = OpenVolume(
                self, volume, chain, allocated, writable, stale, fence=fence, epochs=epochs
            )
            opened.state.lease_valid_until = granted_at + LEASE_TTL_S - LEASE_MARGIN_S
            failed: Exception | None = None  # raised by the caller's block: re-raised as is,
            try:
                async with trio.open_nursery() as nursery:  # not wrapped in an ExceptionGroup
                    if writable:
                        nursery.start_soon(self._keep_lease, lease, opened)
                        await opened.recover()
                        nursery.start_soon(
                            volume_requests.serve_requests, self.kv, name, opened.handle_request
                        )
                        nursery.start_soon(opened.repair.heal_stale, STALE_RETRY_S)
                    opened.repair.nursery = nursery
                    try:
                        yield opened
                    except Exception as e:
                        failed = e
                    finally:
                        with trio.CancelScope(shield=True):
                            with trio.move_on_after(REPAIR_WAIT_S):  # repairs found by reads
                                await opened.repair.repairs_idle.wait()
                            if writable and not opened.lost:
                                await opened.flush()
                        nursery.cancel_scope.cancel()
            finally:
                # After the nursery: nothing of this volume runs any more to reopen a file.
                with trio.CancelScope(shield=True):
                    await opened.release()
            if failed is not None:
                raise failed
        finally:
            if lease:
                with trio.CancelScope(shield=True):
                    await self.kv.lease_revoke(lease)

    async def _take_ownership(self, name: str, lease: int) -> int:
        """Put ``VO/<name>`` under our lease, unless another gateway holds it. An owner that was
        a process of this machine (same boot) and is dead left a lease that will expire by
        itself; it is taken over at once, so a restart after a crash does not wait out the TTL.
        Returns the fencing token: the revision that created the key (its create_revision),
        higher for every later owner."""
        key = V.owner_key(name)
        mine = V.owner_record()
        for _ in range(2):
            taken = await self.kv.txn([Compare.absent(key)], [Put(key, mine, lease=lease)])
            if taken.succeeded:
                # The fencing token: the owner key's create revision, new for every owner.
                return taken.revision
            found = await self.kv.get(key)
            if found is None or not V.owner_is_dead_here(found.value):
                break
            log.warning("volume %s: its owner died on this machine; taking it over", name)
            await self.kv.txn([Compare.mod_is(key, found.mod_revision)], [Delete(key)])
        raise Conflict(f"volume {name} is open for writing on another gateway")

    async def _keep_lease(self, lease: int, opened: OpenVolume) -> None:
        """Renew the owner's lease every third of its TTL. The volume serves I/O only while
        the lease is surely alive: until TTL - margin after the *send* time of the last renewal
        that succeeded (a gateway paused past that refuses the requests it wakes up to, as
        another gateway may own the volume by then)."""
        while True:
            await trio.sleep(LEASE_TTL_S / 3)
            sent = time.monotonic()
            try:
                await self.kv.lease_keepalive(lease)
                opened.state.lease_valid_until = sent + LEASE_TTL_S - LEASE_MARGIN_S
            except StoreError as e:
                log.error("volume %s: lost its lease (%s); refusing further I/O", opened.name, e)
                opened.lost = True
                return
