"""The rebalancer on local drives and an in-memory cluster map: after a drive is taken out, it
moves every chunk placed by an older map to the newest map's drives, reads work before, during
and after, and the drive ends empty; a second run moves nothing."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from store.admin.rebalance import rebalance
from store.chunk.chunkstore import ChunkStore
from store.chunk.drive import Drive
from store.cluster_map import DriveRecord, change_drive, read_cluster, register_drives
from store.errors import InvalidArgument
from store.meta.memory import MemoryKV
from store.objects.engine import ObjectEngine
from store.placement.layout import ErasureCoded


async def cluster_engine(root: Path, drives: int = 8) -> tuple[ObjectEngine, MemoryKV]:
    kv = MemoryKV()
    ids = [f"h{i}.d0" for i in range(drives)]
    await register_drives(kv, [DriveRecord(d, "127.0.0.1:1", d.split(".")[0]) for d in ids])
    state = await read_cluster(kv)
    assert state.history is not None
    local = {d: Drive(root / d) for d in ids}
    chunks = ChunkStore(local, state.history, ErasureCoded(4, 2), block_bytes=64 << 10)
    engine = ObjectEngine(kv, chunks, inline_bytes=1024)
    await engine.create_bucket("bkt", "alice")
    return engine, kv


def shards_on(root: Path, drive: str) -> list[Path]:
    return [p for p in (root / drive / "shards").glob("*/*") if p.is_file()]


async def take_out(engine: ObjectEngine, kv: MemoryKV, drive: str) -> None:
    """What the gateway's watch does after `store cluster out`: the new epoch's map."""
    await change_drive(kv, drive, state="out", min_drives=6)
    state = await read_cluster(kv)
    assert state.history is not None
    engine.chunks.maps.add(state.history.current)


async def test_an_out_drive_is_emptied_and_everything_reads(tmp_path: Path) -> None:
    engine, kv = await cluster_engine(tmp_path)
    bodies = {f"k{i}": os.urandom(50_000 + i * 40_000) for i in range(24)}
    for key, body in bodies.items():
        await engine.put_object("bkt", key, body)
    held = len(shards_on(tmp_path, "h0.d0"))
    assert held > 0
    await take_out(engine, kv, "h0.d0")
    await engine.put_object("bkt", "after", b"n" * 100_000)
    assert len(shards_on(tmp_path, "h0.d0")) == held  # new data avoids it, old data stays

    steps: list[tuple[int, int]] = []
    summary = await rebalance(engine, lambda d, t: steps.append((d, t)), read_grace_s=0)
    assert shards_on(tmp_path, "h0.d0") == []
    # The shards h0 held moved, and few others (algorithm 2 keeps the other positions).
    assert summary["pgs_failed"] == [] and summary["old_shards_deleted"] == summary["shards_copied"]
    assert held <= summary["shards_copied"] <= held * 1.6
    assert steps and steps[-1][0] == steps[-1][1]
    for key, body in {**bodies, "after": b"n" * 100_000}.items():
        assert (await engine.get_object("bkt", key))[1] == body
    state = await read_cluster(kv)
    assert set(state.moved.values()) == {state.epoch} and len(state.moved) == 256
    again = await rebalance(engine, read_grace_s=0)
    assert again["shards_copied"] == 0 and again["pgs_switched"] == 0


async def test_a_chunk_that_cannot_be_copied_leaves_its_pg_as_it_was(tmp_path: Path) -> None:
    engine, kv = await cluster_engine(tmp_path)
    body = os.urandom(300_000)
    await engine.put_object("bkt", "k", body)
    shards = sorted(p for d in range(8) for p in shards_on(tmp_path, f"h{d}.d0"))
    (second,) = [p for p in shards if p.name.endswith(".1")]
    await take_out(engine, kv, second.parts[-4])  # the drive holding shard 1 leaves
    for path in shards:  # and every shard but the first is lost: nothing to copy from
        if not path.name.endswith(".0"):
            path.unlink()
    summary = await rebalance(engine, read_grace_s=0)
    assert len(summary["pgs_failed"]) == 1 and summary["chunks_moved"] == 0
    state = await read_cluster(kv)
    assert summary["pgs_failed"][0] not in state.moved and len(state.moved) == 255
    assert sorted(p for d in range(8) for p in shards_on(tmp_path, f"h{d}.d0")) == [
        p for p in shards if p.name.endswith(".0")
    ]  # the copies it made were taken back


async def test_a_gateway_still_writing_under_an_older_epoch_holds_it_back(
    tmp_path: Path,
) -> None:
    engine, kv = await cluster_engine(tmp_path)
    await take_out(engine, kv, "h0.d0")
    from store.cluster_map import GATEWAYS_PREFIX, gateway_value

    await kv.put(GATEWAYS_PREFIX + b"slow", gateway_value(1, 0))  # still has epoch-1 chunks
    with trio.fail_after(5), pytest.raises(Exception, match="slow"):
        await rebalance(engine, barrier_timeout_s=0.5, read_grace_s=0)


async def test_the_embedded_node_has_nothing_to_rebalance(tmp_path: Path) -> None:
    from store.node import open_local_engine

    async with open_local_engine(tmp_path, drives=4) as engine:
        with pytest.raises(InvalidArgument, match="embedded"):
            await rebalance(engine)


async def test_one_rebalance_at_a_time(tmp_path: Path) -> None:
    from store.cluster_map import REBALANCE_LOCK
    from store.errors import Conflict

    engine, kv = await cluster_engine(tmp_path)
    await take_out(engine, kv, "h0.d0")
    await kv.put(REBALANCE_LOCK, b"running")  # another one holds it
    with pytest.raises(Conflict, match="already running"):
        await rebalance(engine, read_grace_s=0)
    await kv.delete(REBALANCE_LOCK)
    await rebalance(engine, read_grace_s=0)
    assert await kv.get(REBALANCE_LOCK) is None  # let go when done


async def test_chunks_placed_before_a_switch_cannot_be_committed_after_it(tmp_path: Path) -> None:
    """A writer paused between writing its chunks and recording them (or one whose map lagged)
    must not record them once a rebalance switched their groups: no map would look there."""
    from store.cluster_map import REBALANCED_KEY
    from store.errors import Unavailable

    engine, kv = await cluster_engine(tmp_path)
    engine.chunks.fence_key = REBALANCED_KEY
    await take_out(engine, kv, "h0.d0")
    released = trio.Event()
    resume = trio.Event()

    async def body() -> AsyncIterator[bytes]:
        yield os.urandom(200_000)
        released.set()
        await resume.wait()  # its chunks are written; the commit waits for us

    async def writer() -> None:
        with pytest.raises(Unavailable, match="rebalance"):
            await engine.put_object("bkt", "late", body())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer)
        await released.wait()
        await kv.put(REBALANCED_KEY, b"a switch happened")
        resume.set()
    engine.chunks.maps.revision = await kv.revision()  # what the gateway's watch does
    await engine.put_object("bkt", "retried", b"r" * 200_000)  # a retry goes through
    assert (await engine.get_object("bkt", "retried"))[1] == b"r" * 200_000
