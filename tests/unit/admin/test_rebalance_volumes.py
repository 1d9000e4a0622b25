"""The rebalancer moves volumes' extents too: a drive taken to weight 0 ends with no extent
files, every volume, snapshot and clone reads as before, through handles opened before the move
as well (they find moved extents anew), a volume held open is moved by its writer while it
writes, and the drive can then be removed."""

from __future__ import annotations

import os
from pathlib import Path

import trio

from store.admin.rebalance import rebalance
from store.admin.remove import remove_drive
from store.cluster_map import change_drive, read_cluster
from store.volumes.admin import Volumes
from tests.unit.admin.test_rebalance import cluster_engine
from tests.unit.admin.test_remove import follow

MIB = 1 << 20


def extents_on(root: Path, drive: str) -> list[Path]:
    found = (root / drive / "extents").rglob("*.ext")
    return [p for p in found if p.is_file()]


async def test_volumes_move_off_a_drive_with_their_snapshots_and_readers(tmp_path: Path) -> None:
    engine, kv = await cluster_engine(tmp_path)
    volumes = Volumes(kv, engine.chunks.drives, engine.chunks.maps)
    await volumes.create("v", 32 * MIB, extent_bytes=MIB, replicas=2)
    first = {i: os.urandom(4096) for i in range(0, 32, 2)}
    async with volumes.open("v") as vol:
        for i, data in first.items():
            await vol.write(i * MIB, data, fua=True)
    await volumes.snapshot("v", "s")  # v's extents so far: a frozen layer
    await volumes.clone("v@s", "c")
    second = {i: os.urandom(4096) for i in range(0, 32, 4)}
    async with volumes.open("v") as vol:
        for i, data in second.items():
            await vol.write(i * MIB, data, fua=True)  # copied up into v's new layer
    busy = "h0.d0"
    held = len(extents_on(tmp_path, busy))
    assert held > 0

    await change_drive(kv, busy, weight=0, min_drives=6)
    await follow(engine, kv)
    async with volumes.open("v@s", writable=False) as before:  # opened before the move
        async with volumes.open("c") as clone, trio.open_nursery() as nursery:
            # The clone is held open and written while the rebalancer moves it (by asking it).
            async def keep_writing() -> None:
                for n in range(40):
                    await clone.write((n % 32) * MIB + 8192, bytes([n]) * 4096, fua=True)

            nursery.start_soon(keep_writing)
            summary = await rebalance(engine, volumes=volumes, read_grace_s=0)
        assert summary["volumes_failed"] == [] and summary["extents_moved"] >= held
        for i, data in first.items():
            assert await before.read(i * MIB, 4096) == data  # found where it is now
    left = extents_on(tmp_path, busy)
    layers = {v.name: v.layer for v in await volumes.list_volumes()}
    assert left == [], (left, layers, summary)

    expect_v = {**first, **second}
    async with volumes.open("v", writable=False) as vol:
        for i, data in expect_v.items():
            assert await vol.read(i * MIB, 4096) == data
    async with volumes.open("c", writable=False) as clone:
        for i, data in first.items():
            assert await clone.read(i * MIB, 4096) == data
        for n in range(8, 40):  # the last writes to each offset
            assert await clone.read((n % 32) * MIB + 8192, 4096) == bytes([n]) * 4096
    again = await rebalance(engine, volumes=volumes, read_grace_s=0)
    assert again["extents_moved"] == 0 and again["volumes_failed"] == []
    await remove_drive(engine, volumes, busy)
    assert busy not in (await read_cluster(kv)).drives


async def test_an_open_clone_reads_a_parent_extent_whose_every_replica_moved(
    tmp_path: Path,
) -> None:
    """Both replicas of a snapshot's extent leave their drives while a clone of it is open for
    writing (reads hedged, as on a cluster gateway): the clone's read misses, its background
    repair looks too, and the read still finds the extent where it went, once."""
    engine, kv = await cluster_engine(tmp_path)
    volumes = Volumes(kv, engine.chunks.drives, engine.chunks.maps, hedge_after_s=0.05)
    await volumes.create("v", 4 * MIB, extent_bytes=MIB, replicas=2)
    data = os.urandom(4096)
    async with volumes.open("v") as vol:
        await vol.write(0, data, fua=True)
        layer = vol.layer
    await volumes.snapshot("v", "s")
    await volumes.clone("v@s", "c")
    eid = f"{layer}.0"
    holders = sorted(d for d in engine.chunks.drives if (tmp_path / d / "extents").rglob(eid + "*"))
    holders = [d for d in holders if list((tmp_path / d / "extents").rglob(f"{eid}.ext"))]
    assert len(holders) == 2
    async with volumes.open("c") as clone:
        for drive in holders:
            await change_drive(kv, drive, weight=0, min_drives=6)
        await follow(engine, kv)
        summary = await rebalance(engine, volumes=volumes, read_grace_s=0)
        assert summary["volumes_failed"] == []
        for drive in holders:
            assert not list((tmp_path / drive / "extents").rglob(f"{eid}.ext"))
        assert await clone.read(0, 4096) == data
        await clone.repair.repairs_idle.wait()  # a look its miss started finds nothing wrong
        assert clone.damaged == set()
        runs = await clone.block_status(0, MIB)  # where it is now: data, then holes
        assert runs[0] == (4096, 0) and runs[-1][1] == 3
