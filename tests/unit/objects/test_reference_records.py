"""Reference and garbage records batched per stream: an object of many chunks, an upload of
many parts, and their removal all fit etcd's 128 operations per transaction (the embedded
SQLite store enforces the same limit); records of the one-chunk format are still read."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from store.chunk.chunkstore import ChunkRef
from store.errors import InvalidArgument
from store.meta.api import MAX_TXN_OPS, Put, scan_prefix
from store.objects import chunk_refs as CR
from store.objects import maintenance
from store.objects import records as R
from store.objects.engine import ObjectEngine
from store.objects.multipart import CompletedPart
from store.placement.layout import ErasureCoded
from tests.unit.objects.helpers import BUCKET, INLINE, shard_files

CHUNK = 64 << 10  # small chunks: many of them per object


async def test_the_embedded_store_enforces_etcds_limit(engine: ObjectEngine) -> None:
    """What makes the tests below mean something: the engine's store refuses larger txns."""
    with pytest.raises(InvalidArgument):
        await engine.kv.txn([], [Put(b"x/%d" % i, b"") for i in range(MAX_TXN_OPS + 1)])


async def referenced(engine: ObjectEngine) -> set[str]:
    return {
        r.chunk_id
        async for kv in scan_prefix(engine.kv, CR.REFS_PREFIX)
        for r in CR.refs_from_value(kv.value)
    }


async def test_an_object_of_many_chunks_commits_and_goes_within_the_op_limit(
    engine: ObjectEngine, tmp_path: Path
) -> None:
    engine.chunks.chunk_bytes = CHUNK
    engine.chunks.block_bytes = CHUNK
    count = 3 * MAX_TXN_OPS  # far more chunks than one transaction has ops
    data = os.urandom(count * CHUNK)
    version = await engine.put_object(BUCKET, "big", data)
    assert len(version.chunks) == count
    assert {c.chunk_id for c in version.chunks} <= await referenced(engine)
    records = [kv async for kv in scan_prefix(engine.kv, CR.REFS_PREFIX)]
    assert len(records) == 1  # one stream, one page
    await engine.delete_object(BUCKET, "big")
    assert await maintenance.collect_garbage(engine) == count
    assert await referenced(engine) == set()
    assert shard_files(tmp_path) == []


async def test_an_upload_of_many_parts_completes_and_aborts_within_the_op_limit(
    engine: ObjectEngine,
) -> None:
    parts, size = MAX_TXN_OPS + 20, 2 * INLINE  # each part a chunk of its own
    upload = await engine.multipart.create(BUCKET, "mp")
    done = []
    for n in range(1, parts + 1):
        p = await engine.multipart.upload_part(BUCKET, "mp", upload.upload_id, n, b"p" * size)
        assert len(p.chunks) == 1
        done.append(CompletedPart(n, p.etag))
    # Completing with every other part: the rest becomes garbage in the same transaction.
    await engine.multipart.complete(BUCKET, "mp", upload.upload_id, done[::2])
    version, got = await engine.get_object(BUCKET, "mp")
    assert got == b"p" * size * len(done[::2]) == b"p" * version.size
    removed = await maintenance.collect_garbage(engine)
    assert removed == parts - len(done[::2])
    other = await engine.multipart.create(BUCKET, "gone")
    for n in range(1, parts + 1):
        await engine.multipart.upload_part(BUCKET, "gone", other.upload_id, n, b"q" * size)
    await engine.multipart.abort(BUCKET, "gone", other.upload_id)
    assert await maintenance.collect_garbage(engine) == parts
    await engine.delete_object(BUCKET, "mp")
    await maintenance.collect_garbage(engine)
    assert await referenced(engine) == set()


async def test_records_of_the_one_chunk_format_are_still_read(
    engine: ObjectEngine, tmp_path: Path
) -> None:
    """Data written before streams: R/<chunk id> and G/ records of one chunk each. Scrub,
    the orphan sweep and garbage collection still read them."""
    kept = (await engine.chunks.write(b"kept, named the old way"))[0]
    dropped = (await engine.chunks.write(b"garbage, queued the old way"))[0]
    engine.chunks.release([kept, dropped])

    def old_value(ref: ChunkRef) -> bytes:
        return R._dumps({"ref": ref.to_json(), "owner": "V/old"})

    await engine.kv.txn(
        [],
        [
            Put(CR.legacy_ref_key(kept.chunk_id), old_value(kept)),
            Put(CR.legacy_ref_key(dropped.chunk_id), old_value(dropped)),
            Put(CR.garbage_key(dropped.chunk_id), old_value(dropped)),
        ],
    )
    report = await maintenance.scrub(engine)
    assert report.chunks == 2 and report.clean
    assert await maintenance.sweep_orphans(engine, grace_s=-10) == 0  # both are named
    assert await maintenance.find_ref(engine.kv, kept.chunk_id) == kept
    assert await maintenance.collect_garbage(engine) == 1
    assert await engine.kv.get(CR.legacy_ref_key(dropped.chunk_id)) is None
    assert await referenced(engine) == {kept.chunk_id}
    left = {p.name.partition(".")[0] for p in shard_files(tmp_path)}
    assert left == {kept.chunk_id}


def test_chunk_ids_of_a_stream_share_its_record() -> None:
    stream = "0123456789abcdef01234567"
    ids = [f"{stream}{n:08x}" for n in (0, 1, CR.REFS_PER_RECORD - 1, CR.REFS_PER_RECORD)]
    keys = [CR.ref_key(i) for i in ids]
    assert keys[0] == keys[1] == keys[2] != keys[3]
    ref = ChunkRef(ids[0], ErasureCoded(4, 2), 1 << 20, 5, 1)
    assert CR.refs_from_value(CR.refs_value([ref], b"V/x")) == [ref]
