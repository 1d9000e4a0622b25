"""Block volumes: reads and writes against a model, thin provisioning, zeroing and status,
leases, replica damage, crash recovery, resize and delete."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from store.chunk.extentfile import ExtentFile, ExtentGeometry
from store.errors import (
    AlreadyExists,
    Conflict,
    InvalidArgument,
    NotFound,
    OutOfRange,
    ReadOnly,
)
from store.node import local_volumes, open_local_engine
from store.volumes import records as V
from store.volumes.admin import Volumes

BLOCK = 4096
EXTENT = 16 * BLOCK  # small extents: requests cross them often
SIZE = 8 * EXTENT


@pytest.fixture
async def volumes(tmp_path: Path) -> AsyncIterator[Volumes]:
    async with open_local_engine(tmp_path, drives=4) as engine:
        yield local_volumes(engine)


async def make(volumes: Volumes, name: str = "vol", **kw: object) -> V.Volume:
    return await volumes.create(name, SIZE, extent_bytes=EXTENT, **kw)


def files_of(tmp_path: Path) -> list[Path]:
    return sorted(tmp_path.glob("drives/*/extents/*/*.ext"))


async def test_unwritten_volume_costs_nothing_and_reads_zeros(
    volumes: Volumes, tmp_path: Path
) -> None:
    await make(volumes)
    async with volumes.open("vol") as vol:
        assert await vol.read(0, SIZE) == bytes(SIZE)
        assert await vol.block_status(0, SIZE) == [(SIZE, 3)]  # hole | zero
    assert files_of(tmp_path) == []


async def test_allocated_extents_record_the_placement_epoch(volumes: Volumes) -> None:
    await make(volumes)
    async with volumes.open("vol") as vol:
        await vol.write(EXTENT, b"e" * BLOCK)
        layer = vol.layer
    found = await volumes.kv.get(V.extent_key(layer, 1))
    assert found is not None and V.extent_epoch(found.value) == volumes.cmap.epoch == 1


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    ops=st.lists(
        st.tuples(
            st.sampled_from(["write", "zero", "punch", "trim", "flush"]),
            st.integers(0, SIZE // BLOCK - 1),
            st.integers(1, 40),
            st.integers(0, 255),
        ),
        max_size=12,
    )
)
async def test_io_matches_a_model(tmp_path_factory: pytest.TempPathFactory, ops: list) -> None:
    root = tmp_path_factory.mktemp("vol")
    async with open_local_engine(root, drives=4) as engine:
        volumes = local_volumes(engine)
        await make(volumes)
        model = bytearray(SIZE)
        trimmed: set[int] = set()
        async with volumes.open("vol") as vol:
            for op, first, count, byte in ops:
                count = min(count, SIZE // BLOCK - first)
                lo, hi = first * BLOCK, (first + count) * BLOCK
                if op == "write":
                    data = bytes([byte]) * (hi - lo)
                    await vol.write(lo, data, fua=byte % 2 == 0)
                    model[lo:hi] = data
                    trimmed -= set(range(first, first + count))
                elif op in ("zero", "punch"):
                    await vol.write_zeroes(lo, hi - lo, punch=op == "punch")
                    model[lo:hi] = bytes(hi - lo)
                    trimmed -= set(range(first, first + count))
                elif op == "trim":
                    await vol.trim(lo, hi - lo)
                    trimmed |= set(range(first, first + count))
                else:
                    await vol.flush()
            got = await vol.read(0, SIZE)
            for block in range(SIZE // BLOCK):  # a trimmed block may read as anything it held
                if block not in trimmed:
                    assert (
                        got[block * BLOCK : (block + 1) * BLOCK]
                        == model[block * BLOCK : (block + 1) * BLOCK]
                    ), block
            status = await vol.block_status(0, SIZE)
            assert sum(n for n, _ in status) == SIZE
            at = 0
            for n, flags in status:  # every block reported as zero reads as zeros
                if flags & 2:
                    assert got[at : at + n] == bytes(n)
                at += n
        async with volumes.open("vol", writable=False) as vol:  # the data outlives the open
            again = await vol.read(0, SIZE)
            assert all(
                again[b * BLOCK : (b + 1) * BLOCK] == got[b * BLOCK : (b + 1) * BLOCK]
                for b in range(SIZE // BLOCK)
                if b not in trimmed
            )


async def test_one_writer_per_volume(volumes: Volumes) -> None:
    await make(volumes)
    async with volumes.open("vol") as vol:
        with pytest.raises(Conflict):
            async with volumes.open("vol"):
                pass
        async with volumes.open("vol", writable=False) as reader:  # readers are fine
            await vol.write(0, b"a" * BLOCK)
            assert await reader.read(0, BLOCK) in (bytes(BLOCK), b"a" * BLOCK)
        with pytest.raises(Conflict):
            await volumes.delete("vol")
        with pytest.raises(Conflict):
            await volumes.resize("vol", SIZE - EXTENT)
    async with volumes.open("vol"):  # released on close
        pass


async def test_a_bad_replica_is_read_around_and_repaired(volumes: Volumes, tmp_path: Path) -> None:
    volume = await make(volumes, replicas=2)
    data = os.urandom(EXTENT)
    async with volumes.open("vol") as vol:
        await vol.write(0, data)
        await vol.flush()
    eid = V.extent_id(volume.layer, 0)
    first, second = (
        volumes.drives[d].extent_path(eid) for d in volumes.replica_drives(eid, 2, volumes.epoch)
    )  # the replica reads go to first, and the other
    _poke(first, 100, b"\xff")  # rot in the replica reads go to
    async with volumes.open("vol") as vol:
        assert await vol.read(0, EXTENT) == data
        assert vol.damaged  # the read found the rot; the repair runs while the volume is open
    geometry = ExtentGeometry(EXTENT, BLOCK)
    for path in (first, second):
        ext = ExtentFile(path, geometry)
        assert ext.read(0, EXTENT) == data  # both replicas verify again
        ext.close()
    second.unlink()  # a lost replica: reads need one good copy; a scrub finds and restores it
    async with volumes.open("vol") as vol:
        assert await vol.read(0, EXTENT) == data
        await vol.repair_extent(vol.layer, 0)
    assert sorted(files_of(tmp_path)) == sorted([first, second])


async def test_crash_before_flush_is_recovered_on_open(volumes: Volumes, tmp_path: Path) -> None:
    """Data landed but its checksum update did not (a crash between the two writes), and the
    replicas differ: the dirty mark makes the next open rebuild and reconcile."""
    await make(volumes, replicas=2)
    async with volumes.open("vol") as vol:
        await vol.write(0, b"o" * EXTENT)
        await vol.flush()
        await vol.write(0, b"n" * BLOCK)  # dirty again, never flushed
        a, b = files_of(tmp_path)
        _poke(a, BLOCK, b"t" * BLOCK)  # torn: data without its CRC
        vol.flush = _no_flush  # type: ignore[method-assign] # the gateway dies: no final flush
    async with volumes.open("vol") as vol:
        first = await vol.read(0, 2 * BLOCK)
        assert first[:BLOCK] == b"n" * BLOCK
        assert first[BLOCK:] in (b"o" * BLOCK, b"t" * BLOCK)
    geometry = ExtentGeometry(EXTENT, BLOCK)
    contents = []
    for path in (a, b):
        ext = ExtentFile(path, geometry)
        contents.append(ext.read(0, EXTENT))  # every block verifies on every replica
        ext.close()
    assert contents[0] == contents[1]  # and the replicas agree


def _poke(path: Path, offset: int, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, data, offset)
    finally:
        os.close(fd)


async def _no_flush() -> None:
    return None


async def test_admin_create_list_resize_delete(volumes: Volumes, tmp_path: Path) -> None:
    await make(volumes, "a")
    await make(volumes, "b", replicas=3)
    with pytest.raises(AlreadyExists):
        await make(volumes, "a")
    for bad in ["", "-x", "a/b", "a@b", "x" * 200]:
        with pytest.raises(InvalidArgument):
            await volumes.create(bad, SIZE)
    with pytest.raises(InvalidArgument):
        await volumes.create("c", 1000)  # not a multiple of the block size
    with pytest.raises(InvalidArgument):
        await volumes.create("c", SIZE, replicas=5)  # 4 drives
    assert [v.name for v in await volumes.list_volumes()] == ["a", "b"]
    async with volumes.open("a") as vol:
        await vol.write(SIZE - BLOCK, b"e" * BLOCK)
        with pytest.raises(OutOfRange):
            await vol.write(SIZE, b"x" * BLOCK)
    grown = await volumes.resize("a", 2 * SIZE)
    async with volumes.open("a") as vol:
        assert vol.size == grown.size == 2 * SIZE
        assert await vol.read(SIZE - BLOCK, 2 * BLOCK) == b"e" * BLOCK + bytes(BLOCK)
    await volumes.resize("a", SIZE - EXTENT)  # the last extent's files go
    async with volumes.open("a") as vol:
        assert await vol.read(0, SIZE - EXTENT) == bytes(SIZE - EXTENT)
    assert files_of(tmp_path) == []
    await volumes.delete("a")
    with pytest.raises(NotFound):
        await volumes.get("a")
    assert [v.name for v in await volumes.list_volumes()] == ["b"]


async def test_snapshots_and_clones_are_isolated(volumes: Volumes, tmp_path: Path) -> None:
    await make(volumes, "base")
    async with volumes.open("base") as vol:
        await vol.write(0, b"1" * EXTENT)
        await vol.write(EXTENT, b"2" * BLOCK)
    files_before = files_of(tmp_path)
    snap = await volumes.snapshot("base", "s1")
    assert snap.readonly and snap.origin == "base"
    assert files_of(tmp_path) == files_before  # nothing copied when it is taken
    clone = await volumes.clone("base@s1", "copy")
    async with volumes.open("base") as vol:
        await vol.write(BLOCK, b"3" * BLOCK)  # copy-on-write of extent 0
    async with volumes.open("copy") as vol:
        assert await vol.read(0, 2 * BLOCK) == b"1" * 2 * BLOCK  # the clone sees the snapshot
        await vol.write(EXTENT, b"4" * BLOCK)
        await vol.write(3 * EXTENT, b"5" * BLOCK)  # an extent nobody had
    async with volumes.open("base@s1") as vol:
        assert not vol.writable
        assert await vol.read(0, 2 * BLOCK) == b"1" * 2 * BLOCK
        assert await vol.read(EXTENT, BLOCK) == b"2" * BLOCK
        assert await vol.read(3 * EXTENT, BLOCK) == bytes(BLOCK)
        with pytest.raises(ReadOnly):
            await vol.write(0, b"x" * BLOCK)
    async with volumes.open("base") as vol:
        assert await vol.read(0, 2 * BLOCK) == b"1" * BLOCK + b"3" * BLOCK
        assert await vol.read(EXTENT, BLOCK) == b"2" * BLOCK  # not the clone's write
    async with volumes.open("copy") as vol:
        assert await vol.read(EXTENT, BLOCK) == b"4" * BLOCK
        assert await vol.read(BLOCK, BLOCK) == b"1" * BLOCK  # not the origin's write
    assert clone.origin == "base@s1"
    names = {v.name: v.readonly for v in await volumes.list_volumes()}
    assert names == {"base": False, "base@s1": True, "copy": False}
    with pytest.raises(AlreadyExists):
        await volumes.snapshot("base", "s1")
    with pytest.raises(InvalidArgument):
        await volumes.clone("base", "x")  # clones come from snapshots
    with pytest.raises(InvalidArgument):
        await volumes.resize("base", SIZE - EXTENT)  # would expose the snapshot's data later
    with pytest.raises(ReadOnly):
        await volumes.resize("base@s1", 2 * SIZE)


async def test_deleting_a_snapshot_keeps_what_clones_read(volumes: Volumes, tmp_path: Path) -> None:
    await make(volumes, "base")
    async with volumes.open("base") as vol:
        await vol.write(0, b"a" * BLOCK)
    await volumes.snapshot("base", "s")
    await volumes.clone("base@s", "c")
    await volumes.delete("base@s")  # hidden: base and c still read through its layer
    async with volumes.open("c") as vol:
        assert await vol.read(0, BLOCK) == b"a" * BLOCK
    await volumes.delete("base")
    async with volumes.open("c") as vol:
        assert await vol.read(0, BLOCK) == b"a" * BLOCK
    assert files_of(tmp_path)  # the snapshot's extent: c still needs it
    await volumes.delete("c")
    assert files_of(tmp_path) == []  # the last reader gone, every layer is freed
    assert (await volumes.kv.range(b"V", b"W")).kvs == []


async def test_live_snapshot_freezes_what_was_written(volumes: Volumes) -> None:
    """A snapshot of an open volume is taken by its owner (through the metadata mailbox):
    writes acknowledged before it, flushed or not, are in it; writes after it are not; a
    writer running across it loses nothing."""
    await make(volumes, "live")
    async with volumes.open("live") as vol:
        await vol.write(0, b"a" * EXTENT)  # not flushed: the snapshot flushes
        done: list[int] = []

        async def writer() -> None:
            for i in range(40):
                await vol.write(EXTENT + i * BLOCK, bytes([i + 1]) * BLOCK)
                done.append(i)
                await trio.sleep(0.005)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(writer)
            await trio.sleep(0.02)
            snap = await volumes.snapshot("live", "s", "while writing")
            before = len(done)
            await vol.write(0, b"b" * BLOCK)
        assert snap.readonly and snap.description == "while writing"
        assert (await volumes.get("live")).layer == vol.layer != (await volumes.get("live@s")).layer
    async with volumes.open("live@s") as frozen:
        assert await frozen.read(0, BLOCK) == b"a" * BLOCK
        blocks = await frozen.read(EXTENT, 40 * BLOCK)
    got = [blocks[i * BLOCK] for i in range(40)]
    # every write acknowledged before the snapshot returned is in it, in order, and none after
    assert got[:before] == [i + 1 for i in range(before)]
    written = sum(1 for b in got if b)
    assert before <= written <= before + 1 and not any(got[written:])
    async with volumes.open("live") as vol:
        assert await vol.read(0, 2 * BLOCK) == b"b" * BLOCK + b"a" * BLOCK
        assert await vol.read(EXTENT + 39 * BLOCK, BLOCK) == bytes([40]) * BLOCK
    with pytest.raises(AlreadyExists):
        async with volumes.open("live"):
            await volumes.snapshot("live", "s")


async def test_snapshot_request_taken_back_when_the_owner_closes(volumes: Volumes) -> None:
    """The owner closes the volume before it answers: the asker takes the snapshot itself."""
    await make(volumes, "leaving")
    async with trio.open_nursery() as nursery:
        opened = trio.Event()

        async def hold() -> None:
            async with volumes.open("leaving") as vol:
                await vol.write(0, b"z" * BLOCK)
                opened.set()
                await trio.sleep(0.01)  # gone before the owner's first look at requests

        nursery.start_soon(hold)
        await opened.wait()
        snap = await volumes.snapshot("leaving", "s")
    async with volumes.open(snap.name) as frozen:
        assert await frozen.read(0, BLOCK) == b"z" * BLOCK


async def test_a_fenced_off_owner_can_never_write_again(volumes: Volumes) -> None:
    """The owner's lease lapses (paused, cut off) and another gateway takes the volume: the
    drives refuse every change the old owner still sends (its token is older), it stops, and
    the volume holds the new owner's data. No stale mark is written by the fenced-off one."""
    await make(volumes, "fenced")
    async with volumes.open("fenced") as old:
        await old.write(0, b"1" * BLOCK)
        await old.flush()
        # Its lease is gone (as etcd would expire it): another gateway takes the volume.
        await volumes.kv.delete(V.owner_key("fenced"))
        other = Volumes(volumes.kv, volumes.drives, volumes.cmap)
        async with other.open("fenced") as new:
            assert new.state.fence > old.state.fence > 0
            await new.write(0, b"2" * BLOCK)
            await new.flush()
            with pytest.raises(Conflict):
                await old.write(0, b"3" * BLOCK)  # inline or not: refused by every drive
            assert old.lost and not old.stale
            with pytest.raises(Conflict):
                await old.read(0, BLOCK)  # and it serves nothing more
            assert await new.read(0, BLOCK) == b"2" * BLOCK
        stale = await volumes.kv.range(b"VS/", b"VS0")
        assert not stale.kvs


async def test_an_owner_past_its_lease_stops_serving(volumes: Volumes) -> None:
    """Measured from the send time of the last renewal that worked, minus a margin: a gateway
    waking from a long pause refuses what it wakes up to, before any renewal could fail."""
    await make(volumes, "late")
    async with volumes.open("late") as vol:
        await vol.write(0, b"x" * BLOCK)
        vol.state.lease_valid_until = time.monotonic() - 0.001
        with pytest.raises(Conflict):
            vol.try_write(0, b"y" * BLOCK)
        assert vol.lost
