"""Chunks over drives: round trips at awkward sizes, ranges, degraded reads, damage and repair."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from store.chunk.chunkstore import ChunkRef, ChunkStore
from store.chunk.drive import Drive, shard_id
from store.errors import TooFewShards, Unavailable
from store.placement.hrw import ClusterMap, DriveInfo
from store.placement.layout import ErasureCoded, Replicated, Scheme


def make_store(root: Path, scheme: Scheme, drives: int = 6, block: int = 128 << 10) -> ChunkStore:
    ds = {f"d{i}": Drive(root / f"d{i}") for i in range(drives)}
    cmap = ClusterMap(1, 64, tuple(DriveInfo(d, "local") for d in ds))
    return ChunkStore(ds, cmap, scheme, block_bytes=block)


async def read_all(store: ChunkStore, ref: ChunkRef, offset: int, length: int) -> bytes:
    out = b""
    for off, n in store.windows(ref, offset, length):
        out += b"".join(bytes(b) for b in await store.read(ref, off, n))
    return out


def shard_path(store: ChunkStore, ref: ChunkRef, index: int) -> Path:
    drive = store.drives[store.placement(ref)[index]]
    assert isinstance(drive, Drive)
    sid = shard_id(ref.chunk_id, index)
    return drive.root / "shards" / sid[:2] / sid


SCHEMES = [ErasureCoded(4, 2), ErasureCoded(3, 3), Replicated(3), Replicated(1)]


@pytest.mark.parametrize("scheme", SCHEMES, ids=str)
@pytest.mark.parametrize("size", [1, 1000, 128 << 10, (512 << 10) + 7, 3 * (512 << 10) - 1])
async def test_roundtrip_and_ranges(tmp_path: Path, scheme: Scheme, size: int) -> None:
    store = make_store(tmp_path, scheme)
    data = os.urandom(size)
    (ref,) = await store.write(data)
    assert ref.length == size
    assert await read_all(store, ref, 0, size) == data
    for off, n in [(0, 1), (size - 1, 1), (size // 3, size // 2 or 1)]:
        if off + n <= size:
            assert await read_all(store, ref, off, n) == data[off : off + n]
    assert await store.check(ref) == []


async def test_chunk_refs_record_the_placement_epoch(tmp_path: Path) -> None:
    ds = {f"d{i}": Drive(tmp_path / f"d{i}") for i in range(6)}
    cmap = ClusterMap(7, 64, tuple(DriveInfo(d, "local") for d in ds))
    store = ChunkStore(ds, cmap, ErasureCoded(4, 2), block_bytes=128 << 10)
    (ref,) = await store.write(b"placed under epoch 7")
    assert ref.epoch == 7
    assert ChunkRef.from_json(ref.to_json()) == ref


async def test_stream_rolls_over_chunks(tmp_path: Path) -> None:
    store = make_store(tmp_path, ErasureCoded(4, 2))
    store.chunk_bytes = 300_000
    data = os.urandom(1_000_000)
    async with store.open_stream() as stream:
        for pos in range(0, len(data), 77_777):
            await stream.write(data[pos : pos + 77_777])
        refs = await stream.commit()
    assert [r.length for r in refs] == [300_000, 300_000, 300_000, 100_000]
    got = b"".join([await read_all(store, r, 0, r.length) for r in refs])
    assert got == data


async def test_aborted_stream_leaves_nothing(tmp_path: Path) -> None:
    store = make_store(tmp_path, ErasureCoded(4, 2))
    with pytest.raises(RuntimeError):
        async with store.open_stream() as stream:
            await stream.write(os.urandom(2_000_000))
            raise RuntimeError("client went away")
    for drive in store.drives.values():
        assert isinstance(drive, Drive)
        assert [s async for s in drive.list_shards()] == []
        assert list((drive.root / "tmp").iterdir()) == []


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
async def test_degraded_reads_up_to_m_lost(tmp_path: Path, data: st.DataObject) -> None:
    root = tmp_path / os.urandom(4).hex()
    store = make_store(root, ErasureCoded(4, 2), block=64 << 10)
    size = data.draw(st.integers(1, 700_000))
    payload = os.urandom(size)
    (ref,) = await store.write(payload)
    lost = data.draw(st.lists(st.integers(0, 5), max_size=2, unique=True))
    for index in lost:
        shard_path(store, ref, index).unlink()
    off = data.draw(st.integers(0, size - 1))
    n = data.draw(st.integers(1, size - off))
    assert await read_all(store, ref, off, n) == payload[off : off + n]
    shutil.rmtree(root)


async def test_more_than_m_lost_is_unavailable(tmp_path: Path) -> None:
    store = make_store(tmp_path, ErasureCoded(4, 2))
    (ref,) = await store.write(os.urandom(600_000))
    for index in (0, 4, 5):
        shard_path(store, ref, index).unlink()
    with pytest.raises(TooFewShards):
        await store.read(ref, 0, 600_000)
    await store.read(ref, 128 << 10, 1000)  # shard 1 alone still serves its own bytes


async def test_bit_rot_is_detected_decoded_and_repaired(tmp_path: Path) -> None:
    damaged: list[str] = []
    store = make_store(tmp_path, ErasureCoded(4, 2))
    store.on_damage = lambda ref: damaged.append(ref.chunk_id)
    payload = os.urandom(1_500_000)
    (ref,) = await store.write(payload)
    for index, pos in [(0, 100), (2, 70_000)]:
        path = shard_path(store, ref, index)
        raw = bytearray(path.read_bytes())
        raw[64 + pos] ^= 0x40
        path.write_bytes(raw)
    assert await read_all(store, ref, 0, len(payload)) == payload
    assert store.stats.corrupt_reads >= 2 and damaged
    problems = await store.check(ref)
    assert [(p.index, p.kind) for p in problems] == [(0, "corrupt"), (2, "corrupt")]
    assert problems[0].bad_blocks == (0,) and problems[1].bad_blocks == (1,)
    await store.repair(ref, [p.index for p in problems])
    assert await store.check(ref) == []
    shard_path(store, ref, 5).unlink()
    await store.repair(ref, [5])
    assert await store.check(ref) == []
    assert await read_all(store, ref, 0, len(payload)) == payload


async def test_write_survives_one_dead_drive_not_two(tmp_path: Path) -> None:
    store = make_store(tmp_path, ErasureCoded(4, 2))
    dead = store.drives["d3"]
    assert isinstance(dead, Drive)
    shutil.rmtree(dead.root)
    (ref,) = await store.write(os.urandom(300_000))
    assert await store.read(ref, 0, 10)
    shutil.rmtree(store.drives["d1"].root)  # type: ignore[attr-defined]
    with pytest.raises(Unavailable):
        await store.write(os.urandom(300_000))


async def test_concurrent_writers(tmp_path: Path) -> None:
    store = make_store(tmp_path, ErasureCoded(4, 2))
    blobs = [os.urandom(200_000 + i) for i in range(8)]
    refs: dict[int, ChunkRef] = {}

    async def put(i: int) -> None:
        (refs[i],) = await store.write(blobs[i])

    async with trio.open_nursery() as n:
        for i in range(8):
            n.start_soon(put, i)
    for i, blob in enumerate(blobs):
        assert await read_all(store, refs[i], 0, len(blob)) == blob


THREADS_ONLY = os.environ.get("STORE_DRIVE_IO") == "threads"


@pytest.mark.parametrize(
    "path",
    [
        "threads",
        pytest.param(
            "io_uring",
            marks=pytest.mark.skipif(THREADS_ONLY, reason="STORE_DRIVE_IO=threads: no ring"),
        ),
    ],
)
async def test_full_drives_give_no_space_and_leave_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    import errno

    from store.chunk import uring
    from store.chunk.drive import ShardWriter
    from store.errors import NoSpace
    from tests.unit.chunk.rings import drive_ring_or_skip

    store = make_store(tmp_path, ErasureCoded(4, 2))

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    async def full_ring(*args: object, **kwargs: object) -> None:
        full()

    if path == "threads":
        monkeypatch.setenv("STORE_DRIVE_IO", "threads")  # read at this run's first drive call
        monkeypatch.setattr(ShardWriter, "_pwrite_sync", full)
    else:
        drive_ring_or_skip(monkeypatch)
        monkeypatch.setattr(uring.Uring, "pwrite", full_ring)
    with pytest.raises(NoSpace):
        await store.write(os.urandom(3_000_000))
    for drive in store.drives.values():
        assert isinstance(drive, Drive)
        assert [s async for s in drive.list_shards()] == []
        assert list((drive.root / "tmp").iterdir()) == []


class SlowReads:
    """A drive whose shard reads take ``delay`` seconds (a loaded or paused server)."""

    def __init__(self, drive: Drive, delay: float) -> None:
        self._drive = drive
        self.delay = delay

    def __getattr__(self, name: str) -> object:
        return getattr(self._drive, name)

    async def read(self, sid: str, offset: int, length: int) -> object:
        await trio.sleep(self.delay)
        return await self._drive.read(sid, offset, length)


@pytest.mark.parametrize("size", [100_000, 3 << 20])
async def test_a_slow_shard_is_hedged_around(tmp_path: Path, size: int) -> None:
    store = make_store(tmp_path, ErasureCoded(4, 2))
    data = os.urandom(size)
    (ref,) = await store.write(data)
    slow = store.placement(ref)[0]  # a data shard's drive
    drives = dict(store.drives)
    drives[slow] = SlowReads(store.drives[slow], 2.0)  # type: ignore[arg-type]
    store.drives = drives
    store.hedge_after_s = None
    with trio.move_on_after(1) as waited:
        await read_all(store, ref, 0, size)
    assert waited.cancelled_caught  # without hedging, the read waits for the slow shard
    store.hedge_after_s = 0.05
    began = trio.current_time()
    assert await read_all(store, ref, 0, size) == data
    assert trio.current_time() - began < 1.0
    assert store.stats.hedged_reads >= 1 and store.stats.degraded_reads == 0
    drives[slow].delay = 0  # type: ignore[attr-defined]
    hedged = store.stats.hedged_reads
    assert await read_all(store, ref, 0, size) == data
    assert store.stats.hedged_reads == hedged  # a fast shard is never hedged


async def test_a_hedge_with_nothing_to_decode_from_waits_for_the_shard(tmp_path: Path) -> None:
    store = make_store(tmp_path, ErasureCoded(4, 2))
    data = os.urandom(200_000)
    (ref,) = await store.write(data)
    drive_ids = store.placement(ref)
    for index in (4, 5):  # both parity shards gone
        shard_path(store, ref, index).unlink()
    drives = dict(store.drives)
    drives[drive_ids[1]] = SlowReads(store.drives[drive_ids[1]], 0.3)  # type: ignore[arg-type]
    store.drives = drives
    store.hedge_after_s = 0.05
    assert await read_all(store, ref, 0, len(data)) == data
