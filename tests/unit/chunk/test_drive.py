"""Shard files on a drive: round trips, range reads, bit rot, crash leftovers, hostile ids."""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from store.chunk import shardfile, uring
from store.chunk.drive import Drive, ShardWriter, new_chunk_id, shard_id
from store.chunk.shardfile import HEADER_BYTES, ShardGeometry
from store.errors import Corrupt, InvalidArgument, NotFound
from store.native import crc32c
from tests.unit.chunk.rings import drive_ring_or_skip


def sid(index: int = 0) -> str:
    return shard_id(new_chunk_id(), index)


async def test_roundtrip_and_geometry(tmp_path: Path) -> None:
    drive = Drive(tmp_path)
    data = os.urandom(10_000)
    s = sid()
    geometry = await drive.write_shard(s, data, 4096)
    assert geometry == ShardGeometry(4096, 10_000)
    assert await drive.read(s) == data
    assert await drive.geometry(s) == geometry
    path = next((tmp_path / "shards").rglob(s))
    assert path.stat().st_size == geometry.file_bytes == HEADER_BYTES + 10_000 + 3 * 4
    assert [x async for x in drive.list_shards()] == [s]
    assert await drive.verify(s) == []


async def test_streaming_writes_in_odd_pieces(tmp_path: Path) -> None:
    drive = Drive(tmp_path)
    data = os.urandom(50_001)
    s = sid(3)
    writer = await drive.create(s, 1000)
    pos = 0
    for step in [1, 999, 1, 5000, 3, 20_000, 23_997]:
        await writer.write(data[pos : pos + step])
        pos += step
    assert pos == len(data)
    await writer.commit()
    assert await drive.read(s) == data


@pytest.mark.parametrize(
    ("how", "pieces"),
    [
        ("write", [50_001]),
        ("write", [1, 4095, 8192, 3]),  # partial blocks wait for the next write, or the commit
        ("append", [50_001]),
        ("append", [4096 * 3, 4096, 77]),  # whole blocks, then the shard's short last one
    ],
)
def test_ring_and_threads_write_the_same_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pieces: list[int], how: str
) -> None:
    """Shard appends and commits go through io_uring where the run has a ring, else a thread:
    the same bytes either way (data, CRC table, header), and both read back verified."""
    data, s, block = os.urandom(sum(pieces)), sid(2), 4096
    files = {}
    for mode in ("threads", "io_uring"):
        monkeypatch.setenv("STORE_DRIVE_IO", mode)

        async def write(mode: str = mode) -> bytes:
            if mode == "io_uring":
                drive_ring_or_skip(monkeypatch)
                with monkeypatch.context() as m:  # the ring's run must not fall back to threads
                    m.setattr(ShardWriter, "_append_sync", _no_thread)
                    m.setattr(ShardWriter, "_commit_sync", _no_thread)
                    return await write_shard(Drive(tmp_path / mode))
            return await write_shard(Drive(tmp_path / mode))

        async def write_shard(drive: Drive) -> bytes:
            writer = await drive.create(s, block)
            pos = 0
            for n in pieces:
                piece = data[pos : pos + n]
                if how == "write":
                    await writer.write(piece)
                else:  # whole blocks with their CRCs, as the chunk writer appends (last short)
                    crcs = [crc32c(piece[i : i + block]) for i in range(0, n, block)]
                    await writer.append(piece, crcs)
                pos += n
            assert await writer.commit() == ShardGeometry(block, len(data))
            assert await drive.read(s) == data and await drive.verify(s) == []
            return next(drive.root.joinpath("shards").rglob(s)).read_bytes()

        files[mode] = trio.run(write)
    assert files["io_uring"] == files["threads"]


def _no_thread(*args: object) -> None:
    raise AssertionError("a shard write went to a thread in a run with a ring")


@pytest.mark.parametrize("path", ["threads", "io_uring"])
def test_a_failed_commit_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    """The sync of a commit fails (EIO): the error reaches the caller, the file is closed and
    removed, nothing is published, and the writer refuses to go on."""

    def eio(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EIO, "Input/output error")

    async def eio_on_sync(self: object, fd: int, data: object, offset: int, *, sync: bool = False):
        if sync:
            eio()
        return await real_pwrite(self, fd, data, offset)

    real_pwrite = uring.Uring.pwrite
    monkeypatch.setenv("STORE_DRIVE_IO", path)

    async def main() -> None:
        if path == "io_uring":
            drive_ring_or_skip(monkeypatch)
            monkeypatch.setattr(uring.Uring, "pwrite", eio_on_sync)
        else:
            monkeypatch.setattr(os, "fsync", eio)
        drive, s = Drive(tmp_path), sid()
        fds = len(os.listdir("/proc/self/fd"))
        writer = await drive.create(s, 4096)
        await writer.write(os.urandom(10_000))
        with pytest.raises(OSError, match="Input/output"):
            await writer.commit()
        monkeypatch.undo()
        assert len(os.listdir("/proc/self/fd")) == fds
        assert list((tmp_path / "tmp").iterdir()) == []
        assert [x async for x in drive.list_shards()] == []
        with pytest.raises(InvalidArgument):
            await writer.commit()

    trio.run(main)


async def test_uncommitted_shard_is_invisible(tmp_path: Path) -> None:
    drive = Drive(tmp_path)
    s = sid()
    writer = await drive.create(s, 4096)
    await writer.write(os.urandom(9000))
    with pytest.raises(NotFound):
        await drive.read(s)
    await writer.abort()
    assert list((tmp_path / "tmp").iterdir()) == []
    assert [x async for x in drive.list_shards()] == []


@settings(max_examples=60, deadline=None)
@given(
    length=st.integers(1, 20_000),
    block=st.sampled_from([1, 7, 512, 4096]),
    data=st.data(),
)
def test_range_reads_match_slices(
    length: int, block: int, data: st.DataObject, tmp_path_factory: pytest.TempPathFactory
) -> None:
    root = tmp_path_factory.mktemp("drive")
    payload = os.urandom(length)
    offset = data.draw(st.integers(0, length - 1))
    size = data.draw(st.integers(1, length - offset))

    async def main() -> None:
        drive = Drive(root)
        s = sid()
        await drive.write_shard(s, payload, block)
        assert await drive.read(s, offset, size) == payload[offset : offset + size]

    trio.run(main)


async def test_bit_rot_is_caught_only_where_it_is(tmp_path: Path) -> None:
    drive = Drive(tmp_path)
    data = os.urandom(4 * 4096)
    s = sid()
    await drive.write_shard(s, data, 4096)
    path = next((tmp_path / "shards").rglob(s))
    raw = bytearray(path.read_bytes())
    start, _ = ShardGeometry(4096, len(data)).block_span(2, 2)
    raw[start + 100] ^= 0x40  # flip one bit in block 2
    path.write_bytes(raw)
    with pytest.raises(Corrupt, match="block 2"):
        await drive.read(s)
    with pytest.raises(Corrupt):
        await drive.read(s, 2 * 4096 + 50, 10)
    # Ranges that do not touch block 2 still read, verified.
    assert await drive.read(s, 0, 2 * 4096) == data[: 2 * 4096]
    assert await drive.read(s, 3 * 4096, 4096) == data[3 * 4096 :]
    assert await drive.verify(s) == [2]


async def test_corrupt_header_and_truncation(tmp_path: Path) -> None:
    drive = Drive(tmp_path)
    s = sid()
    await drive.write_shard(s, os.urandom(5000), 1024)
    path = next((tmp_path / "shards").rglob(s))
    raw = bytearray(path.read_bytes())
    path.write_bytes(raw[:-10])
    with pytest.raises(Corrupt, match="truncated"):
        await drive.read(s)
    raw[9] ^= 1
    path.write_bytes(raw)
    with pytest.raises(Corrupt, match="header"):
        await drive.read(s)
    with pytest.raises(Corrupt):
        await drive.verify(s)


async def test_delete_and_missing(tmp_path: Path) -> None:
    drive = Drive(tmp_path)
    s = sid()
    await drive.write_shard(s, b"x" * 10, 4096)
    assert await drive.delete(s)
    assert not await drive.delete(s)
    with pytest.raises(NotFound):
        await drive.read(s)
    with pytest.raises(NotFound):
        await drive.verify(s)


@pytest.mark.parametrize(
    "bad",
    [
        "../etc/passwd",
        "a" * 32,
        "A" * 32 + ".0",
        "0" * 32 + ".0/..",
        "0" * 31 + ".0",
        "",
        "0" * 32 + ".100",
    ],
)
async def test_hostile_shard_ids_never_become_paths(tmp_path: Path, bad: str) -> None:
    drive = Drive(tmp_path / "d")
    with pytest.raises(InvalidArgument):
        await drive.read(bad)
    with pytest.raises(InvalidArgument):
        await drive.create(bad, 4096)
    assert not (tmp_path / "etc").exists()


async def test_clean_tmp_removes_crash_leftovers(tmp_path: Path) -> None:
    drive = Drive(tmp_path)
    writer = await drive.create(sid(), 4096)
    await writer.write(b"partial")
    # A crash leaves the temp file; a restarted drive cleans it without touching shards.
    s = sid(1)
    await drive.write_shard(s, b"kept", 4096)
    assert await Drive(tmp_path).clean_tmp() == 1
    assert await drive.read(s) == b"kept"


async def test_clean_tmp_with_an_age_spares_writes_in_progress(tmp_path: Path) -> None:
    """Another process sharing the drive may be writing: only files untouched for the grace
    period go."""
    drive = Drive(tmp_path)
    stale_sid, live_sid = sid(), sid()
    stale = await drive.create(stale_sid, 4096)
    await stale.write(b"left by a crashed worker")
    live = await drive.create(live_sid, 4096)
    await live.write(b"being written")
    (old,) = [p for p in (tmp_path / "tmp").iterdir() if p.name.startswith(stale_sid)]
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    assert await Drive(tmp_path).clean_tmp(older_than_s=3600) == 1
    assert [p.name.startswith(live_sid) for p in (tmp_path / "tmp").iterdir()] == [True]
    await live.write(b" and finished")
    await live.commit()
    assert await drive.read(live_sid) == b"being written and finished"


def test_header_is_self_checking() -> None:
    head = shardfile.encode_header(ShardGeometry(4096, 123))
    assert len(head) == HEADER_BYTES
    assert shardfile.decode_header(head) == ShardGeometry(4096, 123)
    with pytest.raises(Corrupt):
        shardfile.decode_header(b"X" + head[1:])
    with pytest.raises(InvalidArgument):
        shardfile.encode_header(ShardGeometry(0, 1))
