"""Version records of the largest objects S3 allows fit a metadata value: 10,000 parts in 81,920
chunks (5 TiB) encode, compressed, under the 1 MiB every backend enforces (etcd's request limit
is 1.5 MiB), and decode to the same record; an object whose record is compressed reads, lists,
copies and deletes like any other."""

from __future__ import annotations

import base64
import os
import time

import pytest

from store.chunk.chunkref import ChunkRef
from store.chunk.ids import chunk_id_in, new_stream_id
from store.meta.api import MAX_VALUE_BYTES
from store.objects import keyspace as K
from store.objects import listing, records
from store.objects.engine import ObjectEngine
from store.objects.records import PartInfo, Version
from store.placement.layout import parse_scheme
from tests.unit.objects.helpers import BUCKET, MIN_PART, upload_parts

CHUNK = 64 << 20


def big_version(parts: int, chunks_per_part: int) -> Version:
    scheme = parse_scheme("ec:4+2")
    chunks: list[ChunkRef] = []
    for _ in range(parts):
        stream = new_stream_id()  # a part's chunks share its stream's prefix
        chunks += [
            ChunkRef(chunk_id_in(stream, i), scheme, 1 << 20, CHUNK, 7)
            for i in range(chunks_per_part)
        ]
    infos = tuple(
        PartInfo(CHUNK * chunks_per_part, os.urandom(16).hex(), base64.b64encode(os.urandom(4)))
        for _ in range(parts)
    )
    return Version(
        BUCKET,
        "huge",
        "0" * 24,
        size=CHUNK * len(chunks),
        etag=os.urandom(16).hex() + f"-{parts}",
        mtime=time.time(),
        parts=tuple(PartInfo(p.size, p.etag, p.checksum.decode()) for p in infos),
        chunks=tuple(chunks),
    )


@pytest.mark.parametrize(("parts", "per_part"), [(10_000, 1), (10_000, 8), (9_999, 8)])
def test_the_largest_objects_records_fit_a_metadata_value(parts: int, per_part: int) -> None:
    version = big_version(parts, per_part)
    raw = version.encode()
    assert len(raw) < MAX_VALUE_BYTES
    assert Version.decode(BUCKET, "huge", raw) == version


def test_five_tebibytes_in_ten_thousand_parts_fit() -> None:
    # 5 TiB / 64 MiB = 81,920 chunks over 10,000 parts (8 or 9 per part).
    version = big_version(10_000, 8)
    extra = big_version(1_920, 1)
    whole = version.with_(chunks=version.chunks + extra.chunks)
    assert len(whole.chunks) == 81_920
    raw = whole.encode()
    assert len(raw) < MAX_VALUE_BYTES, len(raw)
    assert Version.decode(BUCKET, "huge", raw).chunks == whole.chunks


def test_small_records_stay_plain_json() -> None:
    version = big_version(3, 1)
    assert version.encode().startswith(b"{")


async def test_a_compressed_record_serves_like_any_other(
    engine: ObjectEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(records, "COMPRESS_ABOVE_BYTES", 16)  # every record compressed
    parts = [os.urandom(MIN_PART), os.urandom(MIN_PART), os.urandom(5)]
    upload_id, done = await upload_parts(engine, "mp", parts)
    version = await engine.multipart.complete(BUCKET, "mp", upload_id, done)
    stored = await engine.kv.get(K.version_key(BUCKET, "mp", version.version_id))
    assert stored is not None and stored.value.startswith(b"\x28\xb5\x2f\xfd")
    assert (await engine.get_object(BUCKET, "mp"))[1] == b"".join(parts)
    assert (await engine.head_object(BUCKET, "mp")).etag == version.etag
    page = await listing.list_objects(engine.kv, BUCKET)
    assert [o.key for o in page.objects] == ["mp"]
    await engine.copy_object(BUCKET, "mp", BUCKET, "copy")
    assert (await engine.get_object(BUCKET, "copy"))[1] == b"".join(parts)
    await engine.delete_object(BUCKET, "mp")
    await engine.delete_object(BUCKET, "copy")
    assert (await listing.list_objects(engine.kv, BUCKET)).objects == []
