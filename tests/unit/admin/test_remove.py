"""`store cluster remove` on local drives and an in-memory cluster map: refused while the drive's
server runs, while the newest map names it, while chunks or volume extents are still found on it
or through maps naming it; after weight 0 and a rebalance it goes, with the maps that named it,
and everything still reads."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from store.admin.rebalance import rebalance
from store.admin.remove import remove_drive
from store.cluster_map import ALIVE_PREFIX, change_drive, read_cluster
from store.errors import Conflict, InvalidArgument, NotFound
from store.meta.memory import MemoryKV
from store.objects.engine import ObjectEngine
from store.volumes.admin import Volumes
from tests.unit.admin.test_rebalance import cluster_engine, shards_on


async def follow(engine: ObjectEngine, kv: MemoryKV) -> None:
    """What a gateway's watch does: the maps added, the pruned ones dropped."""
    state = await read_cluster(kv)
    assert state.history is not None
    maps = engine.chunks.maps
    for epoch in state.history.epochs:
        if epoch > maps.current.epoch:
            maps.add(state.history.at(epoch))
    for epoch in maps.epochs:
        if epoch not in state.history.epochs:
            maps.drop(epoch)
    maps.moved = dict(state.moved)


async def test_a_drive_is_removed_only_once_nothing_is_found_through_it(tmp_path: Path) -> None:
    engine, kv = await cluster_engine(tmp_path)
    volumes = Volumes(kv, engine.chunks.drives, engine.chunks.maps)
    bodies = {f"k{i}": os.urandom(60_000 + i * 30_000) for i in range(12)}
    for key, body in bodies.items():
        await engine.put_object("bkt", key, body)
    assert shards_on(tmp_path, "h0.d0")

    with pytest.raises(NotFound):
        await remove_drive(engine, volumes, "nope")
    await kv.put(ALIVE_PREFIX + b"h0.d0", b'{"address": "127.0.0.1:1"}')
    with pytest.raises(InvalidArgument, match="chunk server is running"):
        await remove_drive(engine, volumes, "h0.d0")
    await kv.delete(ALIVE_PREFIX + b"h0.d0")
    with pytest.raises(InvalidArgument, match="set-weight h0.d0 0"):
        await remove_drive(engine, volumes, "h0.d0")

    await change_drive(kv, "h0.d0", weight=0, min_drives=6)
    await follow(engine, kv)
    with pytest.raises(Conflict, match="still holds"):  # its shards are still there
        await remove_drive(engine, volumes, "h0.d0")
    await rebalance(engine, read_grace_s=0)
    assert shards_on(tmp_path, "h0.d0") == []

    summary = await remove_drive(engine, volumes, "h0.d0")
    state = await read_cluster(kv)
    assert "h0.d0" not in state.drives and state.history is not None
    assert summary["maps_pruned"] == [e for e in range(1, state.epoch)]
    assert state.history.epochs == [state.epoch]  # the maps before the weight change named it
    await follow(engine, kv)
    for key, body in bodies.items():
        assert (await engine.get_object("bkt", key))[1] == body


def extents_on(root: Path, drive: str) -> list[Path]:
    return [p for p in (root / drive / "extents").rglob("*") if p.is_file()]


async def test_a_volume_extent_on_the_drive_holds_it_back(tmp_path: Path) -> None:
    engine, kv = await cluster_engine(tmp_path)
    volumes = Volumes(kv, engine.chunks.drives, engine.chunks.maps)
    await volumes.create("v", 64 << 20, extent_bytes=1 << 20, replicas=2)
    async with volumes.open("v") as vol:
        for i in range(16):
            await vol.write(i << 20, bytes([i + 1]) * 4096, fua=True)
    holder = next(d for d in sorted(engine.chunks.drives) if extents_on(tmp_path, d))
    await change_drive(kv, holder, weight=0, min_drives=6)
    await follow(engine, kv)
    await rebalance(engine, read_grace_s=0)
    with pytest.raises(Conflict, match="volume extents"):
        await remove_drive(engine, volumes, holder)
    assert extents_on(tmp_path, holder)  # the rebalancer leaves volumes where they are
    await volumes.delete("v")
    await remove_drive(engine, volumes, holder)
    assert holder not in (await read_cluster(kv)).drives


async def test_the_embedded_node_has_no_map_to_remove_from(tmp_path: Path) -> None:
    from store.chunk.chunkstore import ChunkStore
    from store.chunk.drive import Drive
    from store.placement.hrw import ClusterMap, DriveInfo
    from store.placement.layout import ErasureCoded

    ids = [f"d{i}" for i in range(6)]
    cmap = ClusterMap(1, 64, tuple(DriveInfo(d, "h") for d in ids))
    drives = {d: Drive(tmp_path / d) for d in ids}
    kv = MemoryKV()
    engine = ObjectEngine(kv, ChunkStore(drives, cmap, ErasureCoded(4, 2)))
    with pytest.raises(InvalidArgument, match="embedded"):
        await remove_drive(engine, Volumes(kv, drives, cmap), "d0")
