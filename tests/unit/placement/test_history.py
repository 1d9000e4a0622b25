"""Map history: data stays where its own epoch's map put it, new data goes by the newest."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from store.chunk.chunkstore import ChunkStore
from store.chunk.drive import Drive
from store.errors import InvalidArgument
from store.placement.history import MapHistory
from store.placement.hrw import ClusterMap, DriveInfo
from store.placement.layout import ErasureCoded


def test_maps_go_forward_only() -> None:
    one = ClusterMap(1, 64, (DriveInfo("a", "h"),))
    history = MapHistory([one])
    history.add(one)  # seen again: nothing new
    with pytest.raises(InvalidArgument):
        history.add(ClusterMap(0, 64, (DriveInfo("a", "h"),)))
    with pytest.raises(InvalidArgument):
        MapHistory([])


async def test_old_chunks_are_read_by_their_epoch_new_ones_avoid_a_drained_drive(
    tmp_path: Path,
) -> None:
    drives = {f"d{i}": Drive(tmp_path / f"d{i}") for i in range(8)}
    first = ClusterMap(1, 64, tuple(DriveInfo(d, d) for d in drives))
    history = MapHistory([first])
    store = ChunkStore(drives, history, ErasureCoded(4, 2), block_bytes=128 << 10)
    old = [os.urandom(300_000) for _ in range(20)]
    refs = [(await store.write(data))[0] for data in old]
    assert any("d0" in store.placement(ref) for ref in refs)
    # d0 drained: the next epoch's map leaves it out.
    history.add(ClusterMap(2, 64, tuple(DriveInfo(d, d) for d in drives if d != "d0")))
    for ref, data in zip(refs, old, strict=True):
        assert ref.epoch == 1
        got = b"".join(bytes(b) for b in await store.read(ref, 0, ref.length))
        assert got == data
    new = [(await store.write(os.urandom(1000)))[0] for _ in range(20)]
    assert all(ref.epoch == 2 and "d0" not in store.placement(ref) for ref in new)
    shard_dirs = list((tmp_path / "d0" / "shards").glob("*/*"))
    assert len(shard_dirs) == sum("d0" in store.placement(ref) for ref in refs)


async def test_a_chunk_of_a_map_newer_than_ours_is_not_looked_for_in_the_wrong_place(
    tmp_path: Path,
) -> None:
    """Another gateway already follows epoch 2: until our watch brings it, its chunks are
    Unavailable (the client retries), never read or repaired by our older map."""
    from dataclasses import replace

    from store.errors import Unavailable

    drives = {f"d{i}": Drive(tmp_path / f"d{i}") for i in range(6)}
    history = MapHistory([ClusterMap(1, 64, tuple(DriveInfo(d, d) for d in drives))])
    store = ChunkStore(drives, history, ErasureCoded(4, 2), block_bytes=128 << 10)
    (ref,) = await store.write(b"epoch one")
    with pytest.raises(Unavailable, match="newer"):
        store.placement(replace(ref, epoch=2))
    history.add(ClusterMap(2, 64, tuple(DriveInfo(d, d) for d in drives)))
    assert store.placement(replace(ref, epoch=2)) == store.placement(ref)
