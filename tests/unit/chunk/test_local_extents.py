"""The local drive's extent files behind the seam: the open-file cache under pressure, damage
done to a file a handle holds open, and descriptors running out."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
import trio

from store.chunk import extentfile
from store.chunk.api import ExtentGeometry
from store.chunk.drive import Drive
from store.errors import Conflict, Corrupt, InvalidArgument

BLOCK = 4096
G = ExtentGeometry(8 * BLOCK, BLOCK)


def eid(n: int) -> str:
    return f"{n:016x}.{n:x}"


async def test_a_full_cache_never_closes_a_file_in_use(tmp_path: Path) -> None:
    """With every cached file busy, a new one is opened beyond the limit rather than closing a
    file under a call (or the one just opened)."""
    drive = Drive(tmp_path, open_extents=1)
    for n in (1, 2, 3):
        await drive.extent_create(eid(n), G)
        await drive.extent_write(eid(n), G, 0, bytes([n]) * BLOCK)
    release = trio.Event()

    async def slow_reader(n: int) -> bytes:
        handle = drive._acquire(eid(n), G)  # held like a call waiting for its thread
        try:
            await release.wait()
            return bytes(handle.file.read(0, BLOCK))
        finally:
            drive._done(eid(n), handle)

    results: list[bytes] = []
    async with trio.open_nursery() as nursery:

        async def run(n: int) -> None:
            results.append(await slow_reader(n))

        nursery.start_soon(run, 1)
        await trio.lowlevel.checkpoint()
        assert bytes(await drive.extent_read(eid(2), G, 0, BLOCK)) == b"\x02" * BLOCK
        assert bytes(await drive.extent_read(eid(3), G, 0, BLOCK)) == b"\x03" * BLOCK
        release.set()
    assert results == [b"\x01" * BLOCK]
    assert len(drive._handles) <= 2  # back near the limit once the calls are done


async def test_damage_under_an_open_handle_is_caught(tmp_path: Path) -> None:
    drive = Drive(tmp_path)
    await drive.extent_create(eid(1), G)
    await drive.extent_write(eid(1), G, 0, os.urandom(2 * BLOCK))
    await drive.extent_sync(eid(1), G)
    path = drive.extent_path(eid(1))  # bit rot while the file is cached
    raw = bytearray(path.read_bytes())
    raw[BLOCK + 10] ^= 1
    path.write_bytes(raw)
    assert len(await drive.extent_read(eid(1), G, 0, BLOCK)) == BLOCK  # block 0 is fine
    with pytest.raises(Corrupt):
        await drive.extent_read(eid(1), G, BLOCK, BLOCK)
    with pytest.raises(Corrupt):
        await drive.extent_verify(eid(1), G)
    with pytest.raises(Corrupt):
        await drive.extent_image(eid(1), G)


async def test_a_failed_copy_leaves_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    drive = Drive(tmp_path)
    await drive.extent_create(eid(1), G)
    image = await drive.extent_image(eid(1), G)
    other = ExtentGeometry(16 * BLOCK, BLOCK)
    with pytest.raises(InvalidArgument):
        await drive.extent_create(eid(2), other, image)

    def full(*_: object) -> None:
        raise OSError(errno.ENOSPC, "no space left (injected)")

    monkeypatch.setattr(extentfile, "_copy_data", full)  # fails halfway through the copy
    with pytest.raises(OSError):
        await drive.extent_create(eid(1), G, image)
    files = sorted(p.name for p in (tmp_path / "extents").rglob("*.ext*"))
    assert files == [f"{eid(1)}.ext"]  # no .new file left, the old extent untouched
    await drive.extent_verify(eid(1), G)


async def test_release_without_saving_leaves_the_disk_tables_alone(tmp_path: Path) -> None:
    """A volume that lost its lease drops its tables: the file keeps what was synced."""
    drive = Drive(tmp_path)
    await drive.extent_create(eid(1), G)
    await drive.extent_write(eid(1), G, 0, b"a" * BLOCK)
    await drive.extent_sync(eid(1), G)
    await drive.extent_write(eid(1), G, BLOCK, b"b" * BLOCK)  # data in the file, table not
    await drive.extent_release(save=False)
    with pytest.raises(Corrupt):  # the on-disk table never learnt of block 1's new data
        await drive.extent_read(eid(1), G, BLOCK, BLOCK)
    assert bytes(await drive.extent_read(eid(1), G, 0, BLOCK)) == b"a" * BLOCK


async def test_a_fence_outlives_the_drive_process(tmp_path: Path) -> None:
    """A chunk server restarted keeps refusing the fenced-off owner: the token is on disk."""
    drive = Drive(tmp_path)
    await drive.extent_create(eid(1), G, fence=3)
    await drive.extent_write(eid(1), G, 0, b"n" * BLOCK, fence=9)
    again = Drive(tmp_path)  # as after a restart: nothing in memory
    with pytest.raises(Conflict):
        await again.extent_write(eid(1), G, 0, b"o" * BLOCK, fence=3)
    await again.extent_write(eid(1), G, 0, b"m" * BLOCK, fence=9)
