"""Multipart uploads: part rules, listing, completion, abort, checksums."""

from __future__ import annotations

import hashlib
import os
import zlib
from pathlib import Path

import pytest

from store.errors import (
    BadDigest,
    EntityTooSmall,
    InvalidArgument,
    InvalidPart,
    InvalidPartOrder,
    NoSuchBucket,
    NoSuchKey,
    NoSuchUpload,
)
from store.objects import listing
from store.objects.engine import ObjectEngine
from store.objects.multipart import CompletedPart
from store.objects.records import Checksum
from tests.unit.objects.helpers import (
    BUCKET,
    MIN_PART,
    b64,
    digest_of,
    shard_files,
    upload_parts,
)
from tests.unit.objects.test_engine_model import chunk_references

# -- multipart -----------------------------------------------------------------------------------


async def test_multipart_etag_and_content(engine: ObjectEngine, tmp_path: Path) -> None:
    parts = [os.urandom(MIN_PART), os.urandom(70_001), os.urandom(1)]
    upload_id, done = await upload_parts(engine, "mp", parts)
    # Quoted and upper-case ETags in the completion list are the same ETags.
    listed = [CompletedPart(p.number, f'"{p.etag.upper()}"') for p in done]
    v = await engine.multipart.complete(BUCKET, "mp", upload_id, listed)
    md5s = b"".join(hashlib.md5(p).digest() for p in parts)
    assert v.etag == f"{hashlib.md5(md5s).hexdigest()}-3"
    assert v.size == sum(map(len, parts)) and len(v.parts) == 3
    assert (await engine.get_object(BUCKET, "mp"))[1] == b"".join(parts)
    assert (await engine.head_object(BUCKET, "mp")).etag == v.etag
    got = await engine.get_object(BUCKET, "mp", byte_range=(MIN_PART - 2, MIN_PART + 2))
    assert got[1] == b"".join(parts)[MIN_PART - 2 : MIN_PART + 3]
    # A retried Complete gets the same result (S3 does; clients retry after a timeout), but
    # only with the same parts and while the object it made is the key's.
    again = await engine.multipart.complete(BUCKET, "mp", upload_id, listed)
    assert (again.version_id, again.etag) == (v.version_id, v.etag)
    with pytest.raises(NoSuchUpload):
        await engine.multipart.complete(BUCKET, "mp", upload_id, listed[:2])
    with pytest.raises(NoSuchUpload):
        await engine.multipart.upload_part(BUCKET, "mp", upload_id, 4, b"late")
    assert (await listing.list_uploads(engine.kv, BUCKET)).uploads == []
    await engine.put_object(BUCKET, "mp", b"replaced")
    with pytest.raises(NoSuchUpload):
        await engine.multipart.complete(BUCKET, "mp", upload_id, listed)
    assert await engine.multipart.expire_completed(older_than_s=0) == 1
    assert await engine.multipart.expire_completed(older_than_s=0) == 0


async def test_multipart_skipped_and_replaced_parts(engine: ObjectEngine) -> None:
    upload = await engine.multipart.create(BUCKET, "mp")
    uid = upload.upload_id
    p1 = await engine.multipart.upload_part(BUCKET, "mp", uid, 1, b"1" * MIN_PART)
    p1b = await engine.multipart.upload_part(BUCKET, "mp", uid, 1, b"one" * MIN_PART)
    await engine.multipart.upload_part(BUCKET, "mp", uid, 2, b"2" * MIN_PART)
    p5 = await engine.multipart.upload_part(BUCKET, "mp", uid, 5, b"five")
    with pytest.raises(InvalidPart):  # the replaced part's ETag is gone
        await engine.multipart.complete(
            BUCKET, "mp", uid, [CompletedPart(1, p1.etag), CompletedPart(5, p5.etag)]
        )
    v = await engine.multipart.complete(
        BUCKET, "mp", uid, [CompletedPart(1, p1b.etag), CompletedPart(5, p5.etag)]
    )
    assert (await engine.get_object(BUCKET, "mp"))[1] == b"one" * MIN_PART + b"five"
    assert v.etag.endswith("-2")
    assert (await engine.get_object(BUCKET, "mp", part_number=2))[1] == b"five"


async def test_multipart_rules(engine: ObjectEngine) -> None:
    upload_id, done = await upload_parts(
        engine, "mp", [b"a" * MIN_PART, b"b" * (MIN_PART - 1), b"c" * MIN_PART]
    )
    one, two, three = done
    with pytest.raises(InvalidPartOrder):
        await engine.multipart.complete(BUCKET, "mp", upload_id, [two, one])
    with pytest.raises(InvalidPartOrder):
        await engine.multipart.complete(BUCKET, "mp", upload_id, [one, one])
    with pytest.raises(InvalidPart):
        await engine.multipart.complete(BUCKET, "mp", upload_id, [CompletedPart(1, two.etag)])
    with pytest.raises(InvalidPart):
        await engine.multipart.complete(BUCKET, "mp", upload_id, [one, CompletedPart(4, "0" * 32)])
    with pytest.raises(EntityTooSmall):
        await engine.multipart.complete(BUCKET, "mp", upload_id, [one, two, three])
    with pytest.raises(InvalidArgument):
        await engine.multipart.complete(BUCKET, "mp", upload_id, [])
    for number in (0, 10_001):
        with pytest.raises(InvalidArgument):
            await engine.multipart.upload_part(BUCKET, "mp", upload_id, number, b"x")
    with pytest.raises(BadDigest):
        await engine.multipart.upload_part(
            BUCKET, "mp", upload_id, 4, b"x" * 10, content_md5=hashlib.md5(b"y").digest()
        )
    with pytest.raises(NoSuchKey):  # nothing became visible on the way
        await engine.head_object(BUCKET, "mp")
    refs, named = await chunk_references(engine)
    assert refs == named  # the refused part's chunk was removed, not left behind
    # A small part is fine when it is the last one listed.
    v = await engine.multipart.complete(BUCKET, "mp", upload_id, [one, two])
    assert (await engine.get_object(BUCKET, "mp"))[1] == b"a" * MIN_PART + b"b" * (MIN_PART - 1)
    assert v.size == 2 * MIN_PART - 1


async def test_multipart_abort(engine: ObjectEngine, tmp_path: Path) -> None:
    upload_id, done = await upload_parts(engine, "mp", [os.urandom(5000), os.urandom(5000)])
    assert len(shard_files(tmp_path)) == 12
    await engine.multipart.abort(BUCKET, "mp", upload_id)
    with pytest.raises(NoSuchUpload):
        await engine.multipart.list_parts(BUCKET, "mp", upload_id)
    with pytest.raises(NoSuchUpload):
        await engine.multipart.upload_part(BUCKET, "mp", upload_id, 3, b"x")
    with pytest.raises(NoSuchUpload):
        await engine.multipart.complete(BUCKET, "mp", upload_id, done)
    with pytest.raises(NoSuchUpload):
        await engine.multipart.abort(BUCKET, "mp", upload_id)
    with pytest.raises(NoSuchUpload):  # a well formed id that never existed
        await engine.multipart.abort(BUCKET, "mp", "0" * 24)
    with pytest.raises(NoSuchUpload):  # an id this service never issues names no upload (S3)
        await engine.multipart.abort(BUCKET, "mp", "not-an-upload")
    with pytest.raises(NoSuchKey):
        await engine.head_object(BUCKET, "mp")
    assert (await listing.list_uploads(engine.kv, BUCKET)).uploads == []
    with pytest.raises(NoSuchBucket):
        await engine.multipart.create("nobody", "mp")


async def test_list_parts_paging(engine: ObjectEngine) -> None:
    upload = await engine.multipart.create(BUCKET, "mp")
    numbers = [1, 2, 3, 5, 8, 13, 21]
    for n in numbers:
        await engine.multipart.upload_part(BUCKET, "mp", upload.upload_id, n, bytes([n]) * n)
    for max_parts in (1, 2, 3, 7, 8, 1000):
        seen: list[int] = []
        marker = 0
        while True:
            page = await engine.multipart.list_parts(
                BUCKET, "mp", upload.upload_id, marker=marker, max_parts=max_parts
            )
            assert len(page.parts) <= max_parts
            seen += [p.number for p in page.parts]
            assert [p.size for p in page.parts] == [p.number for p in page.parts]
            assert page.upload.upload_id == upload.upload_id
            assert page.truncated == (len(seen) < len(numbers)), (max_parts, seen)
            if not page.truncated:
                break
            assert page.next_marker == seen[-1]
            marker = page.next_marker
        assert seen == numbers, max_parts
    page = await engine.multipart.list_parts(BUCKET, "mp", upload.upload_id, marker=21)
    assert (page.parts, page.truncated) == ([], False)
    page = await engine.multipart.list_parts(BUCKET, "mp", upload.upload_id, marker=4)
    assert [p.number for p in page.parts] == [5, 8, 13, 21]


async def test_list_uploads_with_delimiter_and_paging(engine: ObjectEngine) -> None:
    ids: dict[str, list[str]] = {}
    for key in ["a/1", "a/2", "b", "b", "c/d/e", "c", "é/x", "z"]:
        ids.setdefault(key, []).append((await engine.multipart.create(BUCKET, key)).upload_id)
    page = await listing.list_uploads(engine.kv, BUCKET, delimiter="/")
    assert [u.key for u in page.uploads] == ["b", "b", "c", "z"]
    assert sorted(u.upload_id for u in page.uploads if u.key == "b") == sorted(ids["b"])
    assert page.prefixes == ["a/", "c/", "é/"]
    assert not page.truncated
    page = await listing.list_uploads(engine.kv, BUCKET, prefix="c/", delimiter="/")
    assert (page.uploads, page.prefixes) == ([], ["c/d/"])
    page = await listing.list_uploads(engine.kv, BUCKET, prefix="a/")
    assert [(u.key, u.upload_id) for u in page.uploads] == [
        ("a/1", ids["a/1"][0]),
        ("a/2", ids["a/2"][0]),
    ]
    # Paging by (key marker, upload marker) visits every upload and prefix once.
    for max_uploads in (1, 2, 3):
        items: list[str] = []
        key_marker = upload_marker = ""
        for _ in range(20):
            page = await listing.list_uploads(
                engine.kv,
                BUCKET,
                delimiter="/",
                key_marker=key_marker,
                upload_marker=upload_marker,
                max_uploads=max_uploads,
            )
            assert len(page.uploads) + len(page.prefixes) <= max_uploads
            items += [u.upload_id for u in page.uploads] + page.prefixes
            if not page.truncated:
                break
            key_marker, upload_marker = page.next_key_marker, page.next_upload_marker
        want = [*ids["b"], *ids["c"], *ids["z"], "a/", "c/", "é/"]
        assert sorted(items) == sorted(want), max_uploads


@pytest.mark.parametrize("algorithm", ["CRC32", "CRC32C", "SHA1", "SHA256"])
async def test_multipart_composite_checksum(engine: ObjectEngine, algorithm: str) -> None:
    parts = [os.urandom(MIN_PART + 3), os.urandom(MIN_PART), os.urandom(77)]
    upload_id, done = await upload_parts(
        engine, "mp", parts, checksum_algorithm=algorithm, checksum_type="COMPOSITE"
    )
    for data, part in zip(parts, done, strict=True):
        assert part.checksum == b64(digest_of(algorithm, data))
    wrong = [done[0], done[1], CompletedPart(3, done[2].etag, done[0].checksum)]
    with pytest.raises(InvalidPart):
        await engine.multipart.complete(BUCKET, "mp", upload_id, wrong)
    v = await engine.multipart.complete(BUCKET, "mp", upload_id, done)
    whole = digest_of(algorithm, b"".join(digest_of(algorithm, p) for p in parts))
    assert v.checksum == Checksum(algorithm, "COMPOSITE", f"{b64(whole)}-3")
    assert v.checksum.value.endswith("-3")
    assert (await engine.head_object(BUCKET, "mp")).checksum == v.checksum
    assert [p.checksum for p in v.parts] == [p.checksum for p in done]


@pytest.mark.parametrize("algorithm", ["CRC32", "CRC32C", "CRC64NVME"])
async def test_multipart_full_object_checksum(engine: ObjectEngine, algorithm: str) -> None:
    parts = [os.urandom(MIN_PART * 3), os.urandom(MIN_PART), os.urandom(1)]
    upload_id, done = await upload_parts(
        engine, "mp", parts, checksum_algorithm=algorithm, checksum_type="FULL_OBJECT"
    )
    whole = b"".join(parts)
    value = b64(digest_of(algorithm, whole))
    with pytest.raises(BadDigest):
        await engine.multipart.complete(
            BUCKET, "mp", upload_id, done, expected_checksum=b64(digest_of(algorithm, b"x"))
        )
    v = await engine.multipart.complete(BUCKET, "mp", upload_id, done, expected_checksum=value)
    assert v.checksum == Checksum(algorithm, "FULL_OBJECT", value)
    if algorithm == "CRC32":
        assert value == b64(zlib.crc32(whole).to_bytes(4, "big"))
    assert (await engine.get_object(BUCKET, "mp"))[1] == whole


async def test_multipart_checksum_arguments(engine: ObjectEngine) -> None:
    for algorithm, kind in [("SHA256", "FULL_OBJECT"), ("CRC64NVME", "COMPOSITE")]:
        with pytest.raises(InvalidArgument):
            await engine.multipart.create(
                BUCKET, "mp", checksum_algorithm=algorithm, checksum_type=kind
            )
    with pytest.raises(InvalidArgument):
        await engine.multipart.create(BUCKET, "mp", checksum_type="COMPOSITE")
    upload = await engine.multipart.create(BUCKET, "mp", checksum_algorithm="crc64nvme")
    assert (upload.checksum_algorithm, upload.checksum_type) == ("CRC64NVME", "FULL_OBJECT")
    with pytest.raises(InvalidArgument):
        await engine.multipart.upload_part(
            BUCKET, "mp", upload.upload_id, 1, b"x", checksum_algorithm="CRC32"
        )
    with pytest.raises(BadDigest):
        await engine.multipart.upload_part(
            BUCKET,
            "mp",
            upload.upload_id,
            1,
            b"x" * 3000,
            expected_checksum=b64(digest_of("CRC64NVME", b"y")),
        )
    part = await engine.multipart.upload_part(
        BUCKET,
        "mp",
        upload.upload_id,
        1,
        b"x" * 3000,
        expected_checksum=b64(digest_of("CRC64NVME", b"x" * 3000)),
    )
    assert part.checksum == "CRC64NVME:" + b64(digest_of("CRC64NVME", b"x" * 3000))
