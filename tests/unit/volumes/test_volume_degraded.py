"""Degraded writes: a replica whose drive fails a write is recorded stale in the metadata and
never read again until a repair rewrites it; the write succeeds on the others."""

from __future__ import annotations

import errno
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import trio

from store.chunk.extentfile import ExtentFile
from store.errors import Unavailable
from store.node import local_volumes, open_local_engine
from store.volumes import records as V
from store.volumes.admin import Volumes

BLOCK = 4096
EXTENT = 16 * BLOCK
SIZE = 4 * EXTENT


@pytest.fixture
async def volumes(tmp_path: Path) -> AsyncIterator[Volumes]:
    async with open_local_engine(tmp_path, drives=4) as engine:
        yield local_volumes(engine)


@contextmanager
def failing(monkeypatch: pytest.MonkeyPatch, *roots: Path) -> Iterator[None]:
    """Extent files under these drive roots fail every write, zeroing, sync and creation with
    EIO, as a dying disk would."""
    from store.chunk import extentfile

    def broken(path: Path) -> bool:
        return any(str(path).startswith(str(r)) for r in roots)

    def fail(*_: object) -> None:
        raise OSError(errno.EIO, "injected I/O error")

    with monkeypatch.context() as m:
        for name in ("write", "zero", "sync"):
            real = getattr(ExtentFile, name)

            def patched(self: ExtentFile, *a: object, real=real, **k: object) -> object:
                if broken(self.path):
                    fail()
                return real(self, *a, **k)

            m.setattr(ExtentFile, name, patched)
        real_create = extentfile.create

        def create(path: Path, *a: object) -> None:
            if broken(path):
                fail()
            real_create(path, *a)  # type: ignore[arg-type]

        m.setattr(extentfile, "create", create)
        yield


async def stale_marks(volumes: Volumes) -> dict[bytes, bytes]:
    found = await volumes.kv.range(b"VS/", b"VS0")
    return {kv.key: kv.value for kv in found.kvs}


async def test_a_failing_replica_is_marked_stale_and_never_read(
    volumes: Volumes, monkeypatch: pytest.MonkeyPatch
) -> None:
    await volumes.create("deg", SIZE, extent_bytes=EXTENT)
    async with volumes.open("deg") as vol:
        await vol.write(0, b"o" * EXTENT)  # old data, on both replicas
        await vol.flush()
        first, second = vol.replicas.drives(vol.layer, 0)
        with failing(monkeypatch, volumes.drives[first].root):
            await vol.write(0, b"n" * BLOCK)  # small: the inline path
            await vol.write(BLOCK, b"m" * 2 * EXTENT, fua=True)  # large, across extents
            await vol.write_zeroes(8 * BLOCK, BLOCK, punch=False)
            await vol.flush()
            assert (vol.layer, 0) in vol.stale and first in vol.stale[(vol.layer, 0)]
            expect = b"n" * BLOCK + b"m" * 7 * BLOCK + bytes(BLOCK) + b"m" * 7 * BLOCK
            assert await vol.read(0, EXTENT) == expect
            assert vol.try_read(0, BLOCK) == b"n" * BLOCK
        layer = vol.layer
    assert V.stale_key(layer, 0) in await stale_marks(volumes)
    # Reopened: the stale replica (the first in placement order, still holding "o", which
    # passes its checksums) is skipped because the metadata says so.
    async with volumes.open("deg", writable=False) as vol:
        assert await vol.read(0, EXTENT) == expect
        stale_file = ExtentFile(
            volumes.drives[first].extent_path(V.extent_id(layer, 0)), vol.geometry
        )
        assert stale_file.read(0, BLOCK) == b"o" * BLOCK
        stale_file.close()
    # The drive works again: the volume's healer rewrites the stale replica.
    async with volumes.open("deg") as vol:
        for stale_layer, index in list(vol.stale):
            assert await vol.repair_extent(stale_layer, index) >= 1
        assert not vol.stale
    assert not await stale_marks(volumes)
    for drive_id in (first, second):
        f = ExtentFile(volumes.drives[drive_id].extent_path(V.extent_id(layer, 0)), vol.geometry)
        assert f.read(0, EXTENT) == expect
        f.close()


async def test_no_replica_written_fails_the_write(
    volumes: Volumes, monkeypatch: pytest.MonkeyPatch
) -> None:
    await volumes.create("dead", SIZE, extent_bytes=EXTENT)
    async with volumes.open("dead") as vol:
        await vol.write(0, b"x" * BLOCK)
        roots = [volumes.drives[d].root for d in vol.replicas.drives(vol.layer, 0)]
        with failing(monkeypatch, *roots), pytest.raises(Unavailable):
            await vol.write(0, b"y" * 32 * BLOCK)
        roots = [volumes.drives[d].root for d in vol.replicas.drives(vol.layer, 2)]
        with failing(monkeypatch, *roots), pytest.raises(Unavailable):
            await vol.write(EXTENT * 2, b"z" * BLOCK)  # allocation fails on every drive


async def test_allocation_on_a_failing_drive_degrades(
    volumes: Volumes, monkeypatch: pytest.MonkeyPatch
) -> None:
    await volumes.create("alloc", SIZE, extent_bytes=EXTENT)
    async with volumes.open("alloc") as vol:
        first = vol.replicas.drives(vol.layer, 3)[0]
        with failing(monkeypatch, volumes.drives[first].root):
            await vol.write(3 * EXTENT, b"a" * BLOCK)
        assert vol.stale[(vol.layer, 3)] == {first}
        assert await vol.read(3 * EXTENT, BLOCK) == b"a" * BLOCK
        await vol.repair_extent(vol.layer, 3)
        assert not vol.stale


async def test_crash_recovery_never_copies_from_a_stale_replica(
    volumes: Volumes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A dirty extent with a stale replica: recovery rebuilds from a good one."""
    await volumes.create("crash", SIZE, extent_bytes=EXTENT)
    async with volumes.open("crash") as vol:
        await vol.write(0, b"1" * EXTENT)
        await vol.flush()
        first = vol.replicas.drives(vol.layer, 0)[0]
        with failing(monkeypatch, volumes.drives[first].root):
            await vol.write(0, b"2" * BLOCK)
        layer = vol.layer
        vol.lost = True  # "crash": no flush at close, the dirty mark stays
    assert V.dirty_key(layer, 0) in {kv.key for kv in (await volumes.kv.range(b"VD/", b"VD0")).kvs}
    async with volumes.open("crash") as vol:  # recovery
        assert await vol.read(0, 2 * BLOCK) == b"2" * BLOCK + b"1" * BLOCK
        assert not vol.stale  # recovery rewrote every other replica from the good one


async def test_scrub_finds_and_repairs_every_kind_of_damage(
    volumes: Volumes, monkeypatch: pytest.MonkeyPatch
) -> None:
    await volumes.create("scrubbed", SIZE, extent_bytes=EXTENT)
    async with volumes.open("scrubbed") as vol:
        for index in range(3):
            await vol.write(index * EXTENT, bytes([index + 1]) * EXTENT)
        layer = vol.layer
        first = vol.replicas.drives(layer, 2)[0]
        with failing(monkeypatch, volumes.drives[first].root):
            await vol.write(2 * EXTENT, b"s" * BLOCK)  # extent 2: one stale replica
    corrupt_drive = volumes.drives[
        volumes.replica_drives(V.extent_id(layer, 0), 2, volumes.epoch)[1]
    ]
    with corrupt_drive.extent_path(V.extent_id(layer, 0)).open("r+b") as f:
        f.seek(5 * BLOCK + 7)
        f.write(b"rot")  # extent 0: one replica fails its checksum
    missing_drive = volumes.drives[
        volumes.replica_drives(V.extent_id(layer, 1), 2, volumes.epoch)[0]
    ]
    missing_drive.extent_path(V.extent_id(layer, 1)).unlink()  # extent 1: a replica is gone
    report = await volumes.scrub("scrubbed")
    assert (len(report["corrupt"]), len(report["missing"]), len(report["stale"])) == (1, 1, 1)
    assert report["extents"] == 3 and report["replicas_checked"] == 6
    assert not report["clean"] and report["repaired"] == 0
    report = await volumes.scrub("scrubbed", repair=True)
    assert report["repaired"] == 3 and not report["unrepairable"] and report["clean"]
    report = await volumes.scrub("scrubbed")
    assert report["clean"] and not (report["corrupt"] or report["missing"] or report["stale"])
    async with volumes.open("scrubbed") as vol:
        assert await vol.read(0, BLOCK) == b"\x01" * BLOCK
        assert await vol.read(2 * EXTENT, 2 * BLOCK) == b"s" * BLOCK + b"\x03" * BLOCK


async def test_scrub_of_an_attached_volume_is_done_by_its_owner(volumes: Volumes) -> None:
    await volumes.create("busy", SIZE, extent_bytes=EXTENT)
    async with volumes.open("busy") as vol:
        await vol.write(0, b"b" * EXTENT)
        report = await volumes.scrub("busy")  # through the mailbox: we hold the lease
        assert report["clean"] and report["extents"] == 1
        await vol.write(BLOCK, b"c" * BLOCK)


class Unreachable:
    """A replica's drive whose chunk server cannot be reached (down, or suspect): every read
    fails with Unavailable, as a RemoteDrive's does; it offers no inline path."""

    def __init__(self, drive: object) -> None:
        self._drive = drive

    def __getattr__(self, name: str) -> object:
        return getattr(self._drive, name)

    def inline_extents(self) -> None:
        return None

    async def extent_read(self, *args: object, **kw: object) -> bytearray:
        raise Unavailable("chunk server 10.0.0.9:7480: no answer in time")

    async def extent_states(self, *args: object, **kw: object) -> bytes:
        raise Unavailable("chunk server 10.0.0.9:7480: no answer in time")


async def first_replica_of(volumes: Volumes, name: str, fill: bytes) -> tuple[str, str]:
    """A volume whose extent 0 holds ``fill``: its layer, and the drive of its first replica."""
    await volumes.create(name, SIZE, extent_bytes=EXTENT)
    async with volumes.open(name) as vol:
        await vol.write(0, fill * EXTENT)
        layer = vol.layer
    return layer, volumes.replica_drives(V.extent_id(layer, 0), 2, volumes.epoch)[0]


async def test_reads_go_to_the_next_replica_when_a_server_is_unreachable(
    volumes: Volumes,
) -> None:
    layer, first = await first_replica_of(volumes, "reachable", b"r")
    drives = {**volumes.drives, first: Unreachable(volumes.drives[first])}
    cut_off = Volumes(volumes.kv, drives, volumes.maps)  # type: ignore[arg-type]
    async with cut_off.open("reachable", writable=False) as vol:
        assert await vol.read(0, EXTENT) == b"r" * EXTENT
        assert await vol.read(BLOCK, 2 * BLOCK) == b"r" * 2 * BLOCK
        assert vol.repair.damaged == set()  # unreachable is not damaged: nothing to repair


async def test_a_scrub_reports_an_unreachable_replica_and_is_not_clean(volumes: Volumes) -> None:
    layer, first = await first_replica_of(volumes, "far", b"f")

    class Silent(Unreachable):
        async def extent_verify(self, *args: object, **kw: object) -> None:
            raise Unavailable("chunk server 10.0.0.9:7480: no answer in time")

    drives = {**volumes.drives, first: Silent(volumes.drives[first])}
    cut_off = Volumes(volumes.kv, drives, volumes.maps)  # type: ignore[arg-type]
    for repair in (False, True):
        report = await cut_off.scrub("far", repair=repair)
        assert report["unreachable"] == [f"{layer}.0@{first}"] and not report["clean"]
        assert report["corrupt"] == report["missing"] == [] and report["repaired"] == 0


class Paused(Unreachable):
    """A replica's chunk server that is paused: its reads answer only after ``delay``."""

    delay = 3.0

    async def extent_read(self, *args: object, **kw: object) -> bytearray:
        await trio.sleep(self.delay)
        return await self._drive.extent_read(*args, **kw)  # type: ignore[attr-defined]


async def test_a_slow_replica_is_raced_by_the_next(volumes: Volumes) -> None:
    layer, first = await first_replica_of(volumes, "raced", b"h")
    drives = {**volumes.drives, first: Paused(volumes.drives[first])}
    for hedge, bound in ((None, None), (0.05, 1.0)):
        slow = Volumes(volumes.kv, drives, volumes.maps, hedge_after_s=hedge)  # type: ignore[arg-type]
        async with slow.open("raced", writable=False) as vol:
            began = trio.current_time()
            with trio.move_on_after(1.5) as waited:
                assert await vol.read(0, 2 * BLOCK) == b"h" * 2 * BLOCK
            if bound is None:
                assert waited.cancelled_caught  # without the hedge it waits for the paused one
            else:
                assert not waited.cancelled_caught and trio.current_time() - began < bound
