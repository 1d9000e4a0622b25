"""Bit rot, scrub, heal, garbage collection and orphans, on a real engine over local drives."""

from __future__ import annotations

import functools
import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import trio

from store.chunk import shardfile
from store.chunk.chunkstore import CRC_BLOCK_BYTES
from store.chunk.shardfile import CRC_BYTES, HEADER_BYTES
from store.meta.api import prefix_end
from store.node import open_local_engine
from store.objects import maintenance


def shard_files(root: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in sorted((root / "drives").glob("d*/shards/*/*"))}


async def test_bit_rot_is_served_around_found_by_scrub_and_healed(tmp_path: Path) -> None:
    rng = random.Random(7)
    async with open_local_engine(tmp_path, inline_bytes=1024) as engine:
        await engine.create_bucket("rot", "me")
        blobs = {
            f"obj{i}": rng.randbytes(rng.choice([5_000, 300_000, 2_500_000])) for i in range(8)
        }
        for key, blob in blobs.items():
            await engine.put_object("rot", key, blob)
        originals = shard_files(tmp_path)
        # Flip one byte in each of a dozen distinct (file, block) spots, never two per stripe
        # position beyond what EC 4+2 can correct: at most 2 shards of one chunk are touched.
        flipped: set[tuple[Path, int]] = set()
        per_chunk: dict[str, set[Path]] = {}
        for path in rng.sample(sorted(originals), len(originals)):
            chunk = path.name.partition(".")[0]
            if len(per_chunk.setdefault(chunk, set())) == 2 or len(flipped) == 12:
                continue
            per_chunk[chunk].add(path)
            raw = bytearray(originals[path])
            # A byte of the data or of the CRC table: either way one block fails its check.
            length = shardfile.decode_header(bytes(raw[:HEADER_BYTES])).length
            pos = rng.randrange(HEADER_BYTES, len(raw))
            raw[pos] ^= 1 << rng.randrange(8)
            path.write_bytes(raw)
            offset = pos - HEADER_BYTES
            block = offset // CRC_BLOCK_BYTES if offset < length else (offset - length) // CRC_BYTES
            flipped.add((path, block))
        for key, blob in blobs.items():
            assert (await engine.get_object("rot", key))[1] == blob
        assert engine.chunks.stats.corrupt_reads > 0

        report = await maintenance.scrub(engine)
        assert report.corrupt == len(flipped) and report.corrupt_blocks == len(flipped)
        assert not report.clean

        healed = await maintenance.scrub(engine, repair=True)
        assert healed.repaired == len(flipped)
        assert shard_files(tmp_path) == originals  # rebuilt byte for byte
        assert (await maintenance.scrub(engine)).clean


def store_cli(*args: str) -> tuple[int, dict[str, object]]:
    run = subprocess.run(
        [sys.executable, "-m", "store.cli", *args, "--json"], capture_output=True, text=True
    )
    assert run.stdout, run.stderr
    return run.returncode, json.loads(run.stdout)


async def test_heal_refills_a_replaced_drive(tmp_path: Path) -> None:
    async with open_local_engine(tmp_path) as engine:
        await engine.create_bucket("hot", "me")
        blob = os.urandom(3_000_000)
        await engine.put_object("hot", "k", blob)
        originals = shard_files(tmp_path)
    shutil.rmtree(tmp_path / "drives" / "d2")  # the disk died and was replaced by an empty one
    rc, summary = store_cli("scrub", "--data", str(tmp_path))
    assert rc == 1 and summary["missing"] == 1 and summary["clean"] is False
    rc, summary = store_cli("heal", "--data", str(tmp_path))
    assert rc == 0 and summary["repaired"] == 1
    assert shard_files(tmp_path) == originals
    rc, summary = store_cli("scrub", "--data", str(tmp_path))
    assert rc == 0 and summary["clean"] is True


async def test_garbage_of_overwrites_deletes_and_aborts_is_collected(tmp_path: Path) -> None:
    async with open_local_engine(tmp_path, inline_bytes=0, min_part_bytes=1) as engine:
        await engine.create_bucket("gc1", "me")
        await engine.put_object("gc1", "a", os.urandom(200_000))
        await engine.put_object("gc1", "a", os.urandom(300_000))  # overwrite: old data garbage
        await engine.put_object("gc1", "b", os.urandom(100_000))
        await engine.delete_object("gc1", "b")
        up = await engine.multipart.create("gc1", "m")
        await engine.multipart.upload_part("gc1", "m", up.upload_id, 1, os.urandom(50_000))
        await engine.multipart.abort("gc1", "m", up.upload_id)
        assert await maintenance.collect_garbage(engine) == 3
        live = shard_files(tmp_path)
        assert len(live) == 6  # just the one chunk of the current "a"
        page = await engine.kv.range(b"G/", prefix_end(b"G/"))
        assert page.kvs == []


async def test_orphans_are_swept_after_the_grace_period(tmp_path: Path) -> None:
    async with open_local_engine(tmp_path) as engine:
        await engine.create_bucket("orph", "me")
        await engine.put_object("orph", "keep", os.urandom(500_000))
        (orphan,) = await engine.chunks.write(os.urandom(400_000))  # data with no metadata
        engine.chunks.release([orphan])
        assert len(shard_files(tmp_path)) == 12
        assert await maintenance.sweep_orphans(engine) == 0  # too young to be an orphan
        assert await maintenance.sweep_orphans(engine, grace_s=-10, dry_run=True) == 6
        assert await maintenance.sweep_orphans(engine, grace_s=-10) == 6
        assert len(shard_files(tmp_path)) == 6
        assert (await engine.get_object("orph", "keep"))[1]


async def test_background_housekeeping_collects_and_heals(tmp_path: Path) -> None:
    async with open_local_engine(tmp_path, inline_bytes=0) as engine:
        await engine.create_bucket("bg1", "me")
        blob = os.urandom(400_000)
        await engine.put_object("bg1", "k", os.urandom(300_000))
        await engine.put_object("bg1", "k", blob)  # the first version's chunk is now garbage
        version = await engine.head_object("bg1", "k")
        (ref,) = version.chunks
        shard = engine.chunks.placement(ref)[1]
        victim = next((tmp_path / "drives" / shard / "shards").rglob(f"{ref.chunk_id}.1"))
        original = victim.read_bytes()
        victim.unlink()
        assert (await engine.get_object("bg1", "k"))[1] == blob  # degraded, queues the repair
        assert ref.chunk_id in engine.damaged
        async with trio.open_nursery() as nursery:
            await nursery.start(
                functools.partial(maintenance.run_housekeeping, engine, gc_interval_s=0.05)
            )
            with trio.fail_after(10):
                while engine.damaged or engine.stats.garbage_collected < 1:  # noqa: ASYNC110
                    await trio.sleep(0.05)
            nursery.cancel_scope.cancel()
        assert victim.read_bytes() == original
        assert len(shard_files(tmp_path)) == 6
