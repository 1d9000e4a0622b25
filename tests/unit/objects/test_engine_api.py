"""The object engine's API: names, conditional and verified writes, reads, copy, tags, listings,
compression, streaming and lost drives."""

from __future__ import annotations

import hashlib
import os
import random
import shutil
from pathlib import Path

import pytest

from store.errors import (
    BadDigest,
    BucketAlreadyExists,
    BucketNotEmpty,
    EntityTooLarge,
    IncompleteBody,
    InvalidArgument,
    InvalidBucketName,
    KeyTooLong,
    MethodNotAllowed,
    NoSuchBucket,
    NoSuchKey,
    NoSuchVersion,
    OutOfRange,
    PreconditionFailed,
    TooFewShards,
    Unavailable,
)
from store.node import open_local_engine
from store.objects import listing
from store.objects.engine import ObjectEngine
from store.objects.multipart import CompletedPart
from store.objects.records import Checksum
from tests.unit.objects.helpers import (
    BUCKET,
    INLINE,
    MIN_PART,
    b64,
    digest_of,
    md5,
    pieces_of,
    shard_files,
    text_body,
    tmp_files,
)

# -- names ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "error"),
    [
        ("k" * 1025, KeyTooLong),
        ("é" * 513, KeyTooLong),  # 1026 bytes in 513 characters
        ("😀" * 256 + "x", KeyTooLong),  # 1025 bytes
        ("a\0b", InvalidArgument),
        ("\0", InvalidArgument),
        ("", InvalidArgument),
        ("bad\ud800surrogate", InvalidArgument),
    ],
    ids=["1025-ascii", "1026-2byte", "1025-emoji", "nul-inside", "nul-only", "empty", "surrogate"],
)
async def test_invalid_keys_are_refused_everywhere(
    engine: ObjectEngine, tmp_path: Path, key: str, error: type[Exception]
) -> None:
    with pytest.raises(error):
        await engine.put_object(BUCKET, key, b"x" * 5000)
    with pytest.raises(error):
        await engine.head_object(BUCKET, key)
    with pytest.raises(error):
        await engine.get_object(BUCKET, key)
    with pytest.raises(error):
        await engine.delete_object(BUCKET, key)
    with pytest.raises(error):
        await engine.multipart.create(BUCKET, key)
    assert shard_files(tmp_path) == []


@pytest.mark.parametrize("key", ["k" * 1024, "é" * 512, "😀" * 256, "日本/" * 146 + "xy"])
async def test_keys_of_exactly_1024_bytes_work(engine: ObjectEngine, key: str) -> None:
    assert len(key.encode()) == 1024
    await engine.put_object(BUCKET, key, b"body")
    assert (await engine.get_object(BUCKET, key))[1] == b"body"
    page = await listing.list_objects(engine.kv, BUCKET)
    assert [e.key for e in page.objects] == [key]


@pytest.mark.parametrize(
    "name",
    [
        "A-bucket",
        "bucket_1",
        "-bucket",
        "bucket-",
        ".bucket",
        "a..b",
        "a.-b",
        "a-.b",
        "192.168.0.1",
        "xn--bucket",
        "sthree-bucket",
        "bucket-s3alias",
        "bucket--ol-s3",
        "b" * 64,
        "ab",
        "a",
        "",
        "buck/et",
        "bück",
    ],
)
async def test_invalid_bucket_names(engine: ObjectEngine, name: str) -> None:
    with pytest.raises(InvalidBucketName):
        await engine.create_bucket(name, "alice")


@pytest.mark.parametrize("name", ["abc", "b" * 63, "my.bucket-1", "0bucket9", "a.b.c"])
async def test_valid_bucket_names(engine: ObjectEngine, name: str) -> None:
    await engine.create_bucket(name, "bob")
    assert (await engine.get_bucket(name)).owner == "bob"


async def test_buckets_exist_once_and_list_by_owner(engine: ObjectEngine) -> None:
    with pytest.raises(BucketAlreadyExists) as info:
        await engine.create_bucket(BUCKET, "bob")
    assert info.value.owner == "alice"
    await engine.create_bucket("bobs", "bob")
    assert [b.name for b in await engine.list_buckets("bob")] == ["bobs"]
    assert [b.name for b in await engine.list_buckets("alice")] == [BUCKET]
    assert sorted(b.name for b in await engine.list_buckets()) == [BUCKET, "bobs"]
    with pytest.raises(NoSuchBucket):
        await engine.get_bucket("nobody")
    with pytest.raises(NoSuchBucket):
        await engine.put_object("nobody", "k", b"x")
    with pytest.raises(NoSuchBucket):
        await engine.head_object("nobody", "k")
    for bad in ("On", "enabled", ""):
        with pytest.raises(InvalidArgument):
            await engine.update_bucket(BUCKET, versioning=bad)
    with pytest.raises(InvalidArgument):
        await engine.update_bucket(BUCKET, compression="gzip")
    with pytest.raises(InvalidArgument):
        await engine.create_bucket("zipped", "alice", compression="gzip")


# -- conditional and verified writes -------------------------------------------------------------


async def test_conditional_put(engine: ObjectEngine, tmp_path: Path) -> None:
    first = await engine.put_object(BUCKET, "k", b"one" * 1000, if_none_match="*")
    files = shard_files(tmp_path)
    with pytest.raises(PreconditionFailed):
        await engine.put_object(BUCKET, "k", b"two" * 1000, if_none_match="*")
    with pytest.raises(PreconditionFailed):
        await engine.put_object(BUCKET, "k", b"two" * 1000, if_none_match=f'"{first.etag}"')
    with pytest.raises(PreconditionFailed):
        await engine.put_object(BUCKET, "k", b"two" * 1000, if_match='"' + "0" * 32 + '"')
    with pytest.raises(PreconditionFailed):
        await engine.put_object(BUCKET, "k", b"two", if_match="0" * 32)
    assert (await engine.get_object(BUCKET, "k"))[1] == b"one" * 1000
    assert shard_files(tmp_path) == files  # the refused bodies were removed again
    assert tmp_files(tmp_path) == []
    second = await engine.put_object(BUCKET, "k", b"two", if_match=f'"x", "{first.etag}"')
    third = await engine.put_object(BUCKET, "k", b"three", if_match=second.etag)
    await engine.put_object(BUCKET, "k", b"four", if_none_match='"' + "0" * 32 + '"')
    assert third.etag == md5(b"three")
    assert (await engine.get_object(BUCKET, "k"))[1] == b"four"
    # No object, or only a delete marker: If-None-Match: * succeeds, If-Match fails.
    await engine.put_object(BUCKET, "fresh", b"x", if_none_match="*")
    await engine.update_bucket(BUCKET, versioning="Enabled")
    await engine.delete_object(BUCKET, "fresh")
    with pytest.raises((PreconditionFailed, NoSuchKey)):
        await engine.put_object(BUCKET, "fresh", b"y", if_match="*")
    await engine.put_object(BUCKET, "fresh", b"z", if_none_match="*")
    assert (await engine.get_object(BUCKET, "fresh"))[1] == b"z"


@pytest.mark.parametrize("size", [10, 5000, 300_000])
async def test_content_md5_mismatch_keeps_nothing(
    engine: ObjectEngine, tmp_path: Path, size: int
) -> None:
    data = os.urandom(size)
    with pytest.raises(BadDigest):
        await engine.put_object(BUCKET, "k", data, content_md5=hashlib.md5(b"other").digest())
    with pytest.raises(NoSuchKey):
        await engine.head_object(BUCKET, "k")
    assert shard_files(tmp_path) == []
    assert tmp_files(tmp_path) == []
    assert (await listing.list_versions(engine.kv, BUCKET)).versions == []
    v = await engine.put_object(BUCKET, "k", data, content_md5=hashlib.md5(data).digest())
    assert v.etag == md5(data)
    assert (await engine.get_object(BUCKET, "k"))[1] == data


ALGORITHMS = ["CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256"]


@pytest.mark.parametrize("size", [0, 100, 70_000])
@pytest.mark.parametrize("algorithm", ALGORITHMS)
async def test_checksum_mismatch_is_bad_digest(
    engine: ObjectEngine, tmp_path: Path, algorithm: str, size: int
) -> None:
    data = os.urandom(size)
    wrong = b64(digest_of(algorithm, data + b"!"))
    with pytest.raises(BadDigest):
        await engine.put_object(
            BUCKET, "k", data, checksum_algorithm=algorithm, expected_checksum=wrong
        )
    with pytest.raises(BadDigest):  # a trailer: the value is known once the body is read
        await engine.put_object(
            BUCKET, "k", data, checksum_algorithm=algorithm, expected_checksum=lambda: wrong
        )
    with pytest.raises(NoSuchKey):
        await engine.head_object(BUCKET, "k")
    assert shard_files(tmp_path) == []


@pytest.mark.parametrize("algorithm", ALGORITHMS)
async def test_checksum_is_stored_and_returned(engine: ObjectEngine, algorithm: str) -> None:
    for key, data in [("small", b"123456789"), ("big", os.urandom(200_001))]:
        value = b64(digest_of(algorithm, data))
        v = await engine.put_object(
            BUCKET, key, data, checksum_algorithm=algorithm.lower(), expected_checksum=value
        )
        want = Checksum(algorithm, "FULL_OBJECT", value)
        assert v.checksum == want
        assert (await engine.head_object(BUCKET, key)).checksum == want
        # Without an expected value the checksum is computed and kept all the same.
        v = await engine.put_object(BUCKET, key + "2", data, checksum_algorithm=algorithm)
        assert v.checksum == want
        got, body = await engine.get_object(BUCKET, key + "2")
        assert got.checksum == want and body == data


async def test_checksum_arguments_are_checked(engine: ObjectEngine) -> None:
    with pytest.raises(InvalidArgument):
        await engine.put_object(BUCKET, "k", b"x", expected_checksum=b64(digest_of("CRC32", b"x")))
    with pytest.raises(InvalidArgument):
        await engine.put_object(BUCKET, "k", b"x", checksum_algorithm="MD5")
    with pytest.raises(InvalidArgument):  # not canonical: 3 bytes, not 4
        await engine.put_object(
            BUCKET, "k", b"x", checksum_algorithm="CRC32", expected_checksum="y/Q5"
        )
    with pytest.raises(NoSuchKey):
        await engine.head_object(BUCKET, "k")


async def test_size_limits_and_declared_sizes(tmp_path: Path) -> None:
    async with open_local_engine(tmp_path, inline_bytes=INLINE, max_put_bytes=100_000) as engine:
        await engine.create_bucket(BUCKET, "alice")
        with pytest.raises(EntityTooLarge):
            await engine.put_object(BUCKET, "k", b"x" * 100_001)
        with pytest.raises(EntityTooLarge):
            await engine.put_object(BUCKET, "k", pieces_of(b"x" * 100_001, [7777]))
        with pytest.raises(EntityTooLarge):
            await engine.put_object(BUCKET, "k", b"", size=100_001)
        for data, declared in [(b"x" * 50_000, 50_001), (b"x" * 50_000, 49_999), (b"ab", 3)]:
            with pytest.raises(IncompleteBody):
                await engine.put_object(BUCKET, "k", pieces_of(data, [999]), size=declared)
        with pytest.raises(NoSuchKey):
            await engine.head_object(BUCKET, "k")
        assert shard_files(tmp_path) == []
        assert tmp_files(tmp_path) == []
        v = await engine.put_object(BUCKET, "k", b"x" * 100_000, size=100_000)
        assert v.size == 100_000


# -- reads ---------------------------------------------------------------------------------------

RANGES = [
    ((0, 0), slice(0, 1)),
    ((0, 99), slice(0, 100)),
    ((1, 1), slice(1, 2)),
    ((10, None), slice(10, None)),
    ((None, 1), slice(-1, None)),
    ((None, 500), slice(-500, None)),
    ((0, 10**12), slice(0, None)),  # a last byte past the end means the end
    ((None, 10**12), slice(0, None)),  # a suffix longer than the object is the object
]


@pytest.mark.parametrize("size", [700, INLINE, INLINE + 1, 600_000, 2_500_001])
async def test_ranges(engine: ObjectEngine, size: int) -> None:
    data = random.Random(size).randbytes(size)
    v = await engine.put_object(BUCKET, "k", data)
    assert (v.inline is not None) == (size <= INLINE)
    spans = [
        *RANGES,
        ((size - 1, None), slice(size - 1, None)),
        ((size - 1, size), slice(-1, None)),
    ]
    if size > 600_000:  # across stripes (4 x 512 KiB) and read windows
        spans += [((524_287, 524_288 * 5), slice(524_287, 524_288 * 5 + 1))]
        spans += [((2_097_151, 2_097_152), slice(2_097_151, 2_097_153))]
    for byte_range, want in spans:
        got_v, got = await engine.get_object(BUCKET, "k", byte_range=byte_range)
        assert got == data[want], byte_range
        assert got_v.size == size
        async with engine.open_object(BUCKET, "k", byte_range=byte_range) as reader:
            start, stop, _ = want.indices(size)
            assert (reader.offset, reader.length) == (start, stop - start)
    for bad in [(size, None), (size, size + 10), (10**9, None), (None, 0)]:
        with pytest.raises(OutOfRange):
            await engine.get_object(BUCKET, "k", byte_range=bad)


async def test_ranges_of_an_empty_object(engine: ObjectEngine) -> None:
    await engine.put_object(BUCKET, "empty", b"")
    assert (await engine.get_object(BUCKET, "empty"))[1] == b""
    for bad in [(0, None), (0, 0), (5, None)]:
        with pytest.raises(OutOfRange):
            await engine.get_object(BUCKET, "empty", byte_range=bad)


async def test_part_number_reads(engine: ObjectEngine) -> None:
    parts = [os.urandom(MIN_PART + 17), os.urandom(MIN_PART), os.urandom(5)]
    upload = await engine.multipart.create(BUCKET, "mp")
    done = []
    for n, data in enumerate(parts, 1):
        p = await engine.multipart.upload_part(BUCKET, "mp", upload.upload_id, n, data)
        done.append(CompletedPart(n, p.etag))
    await engine.multipart.complete(BUCKET, "mp", upload.upload_id, done)
    for n, data in enumerate(parts, 1):
        v, got = await engine.get_object(BUCKET, "mp", part_number=n)
        assert got == data
        assert v.parts[n - 1].size == len(data)
    for bad in (0, 4):
        with pytest.raises(OutOfRange):
            await engine.get_object(BUCKET, "mp", part_number=bad)
    with pytest.raises(InvalidArgument):
        await engine.get_object(BUCKET, "mp", part_number=1, byte_range=(0, 1))
    plain = os.urandom(3000)
    await engine.put_object(BUCKET, "plain", plain)
    assert (await engine.get_object(BUCKET, "plain", part_number=1))[1] == plain
    with pytest.raises(OutOfRange):
        await engine.get_object(BUCKET, "plain", part_number=2)


async def test_versions_and_delete_markers(engine: ObjectEngine) -> None:
    await engine.update_bucket(BUCKET, versioning="Enabled")
    v1 = await engine.put_object(BUCKET, "k", b"one")
    v2 = await engine.put_object(BUCKET, "k", b"two" * 1000)
    assert v1.public_id != "null" and v1.version_id != v2.version_id
    marker = await engine.delete_object(BUCKET, "k")
    assert marker.delete_marker and marker.version_id not in (v1.version_id, v2.version_id)
    with pytest.raises(NoSuchKey) as info:
        await engine.get_object(BUCKET, "k")
    assert info.value.delete_marker and info.value.version_id == marker.version_id
    with pytest.raises(MethodNotAllowed):
        await engine.get_object(BUCKET, "k", version_id=marker.version_id)
    with pytest.raises(MethodNotAllowed):
        await engine.head_object(BUCKET, "k", version_id=marker.version_id)
    with pytest.raises(NoSuchVersion):
        await engine.get_object(BUCKET, "k", version_id="0" * 24)
    with pytest.raises(NoSuchVersion):
        await engine.get_object(BUCKET, "k", version_id="null")
    with pytest.raises(InvalidArgument):
        await engine.get_object(BUCKET, "k", version_id="not-a-version")
    assert (await engine.get_object(BUCKET, "k", version_id=v1.version_id))[1] == b"one"
    removed = await engine.delete_object(BUCKET, "k", marker.version_id)
    assert removed.delete_marker and removed.version_id == marker.version_id
    assert (await engine.get_object(BUCKET, "k"))[1] == b"two" * 1000
    await engine.delete_object(BUCKET, "k", v2.version_id)
    assert (await engine.get_object(BUCKET, "k"))[1] == b"one"
    # Suspended: puts and deletes replace the one null version.
    await engine.update_bucket(BUCKET, versioning="Suspended")
    n1 = await engine.put_object(BUCKET, "k", b"null-1")
    n2 = await engine.put_object(BUCKET, "k", b"null-2")
    assert n1.public_id == n2.public_id == "null"
    dm = await engine.delete_object(BUCKET, "k")
    assert (dm.version_id, dm.delete_marker) == ("null", True)
    listed = await listing.list_versions(engine.kv, BUCKET)
    assert [(v.public_id, v.delete_marker, latest) for v, latest in listed.versions] == [
        ("null", True, True),
        (v1.version_id, False, False),
    ]


# -- copy and tags -------------------------------------------------------------------------------


async def test_copy_object(engine: ObjectEngine) -> None:
    await engine.create_bucket("other", "alice", versioning="Enabled")
    data = os.urandom(123_457)
    src = await engine.put_object(
        BUCKET,
        "src",
        data,
        content_type="application/x-test",
        metadata={"color": "blue"},
        tags={"t": "1"},
        checksum_algorithm="CRC32C",
    )
    got_src, new = await engine.copy_object(BUCKET, "src", "other", "dst", owner="bob")
    assert got_src.version_id == src.version_id
    assert (new.etag, new.size, new.content_type) == (md5(data), len(data), "application/x-test")
    assert new.metadata == {"color": "blue"} and new.tags == {"t": "1"} and new.owner == "bob"
    assert new.checksum == Checksum("CRC32C", "FULL_OBJECT", b64(digest_of("CRC32C", data)))
    assert new.public_id != "null"
    assert (await engine.get_object("other", "dst"))[1] == data
    _, replaced = await engine.copy_object(
        BUCKET,
        "src",
        BUCKET,
        "src",
        replace_metadata=True,
        content_type="text/plain",
        metadata={"size": "big"},
        tags={},
    )
    assert (replaced.content_type, replaced.metadata, replaced.tags) == (
        "text/plain",
        {"size": "big"},
        {},
    )
    assert (await engine.get_object(BUCKET, "src"))[1] == data
    _, part = await engine.copy_object(BUCKET, "src", BUCKET, "slice", byte_range=(1000, 1999))
    assert (await engine.get_object(BUCKET, "slice"))[1] == data[1000:2000]
    assert part.etag == md5(data[1000:2000])
    # A multipart source becomes a single-part copy with a plain MD5 ETag.
    upload = await engine.multipart.create(BUCKET, "mp")
    a = await engine.multipart.upload_part(BUCKET, "mp", upload.upload_id, 1, data[:MIN_PART])
    b = await engine.multipart.upload_part(BUCKET, "mp", upload.upload_id, 2, data[MIN_PART:])
    await engine.multipart.complete(
        BUCKET, "mp", upload.upload_id, [CompletedPart(1, a.etag), CompletedPart(2, b.etag)]
    )
    _, flat = await engine.copy_object(BUCKET, "mp", BUCKET, "flat")
    assert flat.etag == md5(data) and flat.parts == ()
    # Copies of older versions, and of what is not there.
    v1 = (await engine.put_object("other", "dst", b"newer")).version_id
    _, old = await engine.copy_object("other", "dst", BUCKET, "old", src_version_id=new.version_id)
    assert (await engine.get_object(BUCKET, "old"))[1] == data and old.etag == md5(data)
    assert v1 != new.version_id
    with pytest.raises(NoSuchKey):
        await engine.copy_object(BUCKET, "missing", BUCKET, "x")
    with pytest.raises(NoSuchBucket):
        await engine.copy_object(BUCKET, "src", "nobucket", "x")
    with pytest.raises(NoSuchKey):
        await engine.head_object(BUCKET, "x")


async def test_copy_condition_runs_before_any_byte_moves(engine: ObjectEngine) -> None:
    await engine.put_object(BUCKET, "src", b"s" * 5000)

    def refuse(_: object) -> None:
        raise PreconditionFailed("copy-source-if-match")

    with pytest.raises(PreconditionFailed):
        await engine.copy_object(BUCKET, "src", BUCKET, "dst", condition=refuse)
    with pytest.raises(NoSuchKey):
        await engine.head_object(BUCKET, "dst")


async def test_tags(engine: ObjectEngine) -> None:
    await engine.update_bucket(BUCKET, versioning="Enabled")
    v1 = await engine.put_object(BUCKET, "k", b"one", tags={"a": "1"})
    v2 = await engine.put_object(BUCKET, "k", b"two" * 2000)
    assert (await engine.head_object(BUCKET, "k")).tags == {}
    tagged = await engine.set_object_tags(BUCKET, "k", {"b": "2", "ключ": "значение"})
    assert tagged.version_id == v2.version_id
    assert (await engine.head_object(BUCKET, "k")).tags == {"b": "2", "ключ": "значение"}
    await engine.set_object_tags(BUCKET, "k", {}, version_id=v1.version_id)
    assert (await engine.head_object(BUCKET, "k", v1.version_id)).tags == {}
    assert (await engine.get_object(BUCKET, "k"))[1] == b"two" * 2000  # data untouched
    assert (await engine.head_object(BUCKET, "k")).etag == v2.etag
    with pytest.raises(NoSuchKey):
        await engine.set_object_tags(BUCKET, "missing", {"a": "1"})
    marker = await engine.delete_object(BUCKET, "k")
    with pytest.raises(NoSuchKey):
        await engine.set_object_tags(BUCKET, "k", {"a": "1"})
    with pytest.raises(MethodNotAllowed):
        await engine.set_object_tags(BUCKET, "k", {"a": "1"}, version_id=marker.version_id)


@pytest.mark.parametrize("versioning", ["On", "enabled"])
async def test_create_bucket_checks_versioning(engine: ObjectEngine, versioning: str) -> None:
    with pytest.raises(InvalidArgument):
        await engine.create_bucket("fresh", "alice", versioning=versioning)


# -- buckets with contents -----------------------------------------------------------------------


async def test_delete_bucket_only_when_empty(engine: ObjectEngine) -> None:
    await engine.put_object(BUCKET, "k", b"x")
    with pytest.raises(BucketNotEmpty):
        await engine.delete_bucket(BUCKET)
    await engine.update_bucket(BUCKET, versioning="Enabled")
    marker = await engine.delete_object(BUCKET, "k")
    with pytest.raises(BucketNotEmpty):  # the null version and a delete marker remain
        await engine.delete_bucket(BUCKET)
    await engine.delete_object(BUCKET, "k", "null")
    with pytest.raises(BucketNotEmpty):  # a delete marker alone still counts
        await engine.delete_bucket(BUCKET)
    await engine.delete_object(BUCKET, "k", marker.version_id)
    upload = await engine.multipart.create(BUCKET, "pending")
    await engine.multipart.upload_part(BUCKET, "pending", upload.upload_id, 1, b"p" * 5000)
    assert (await engine.get_bucket(BUCKET)).versioning == "Enabled"
    await engine.delete_bucket(BUCKET)  # uploads in progress do not keep a bucket alive
    with pytest.raises(NoSuchBucket):
        await engine.get_bucket(BUCKET)
    assert await engine.list_buckets() == []
    with pytest.raises(NoSuchBucket):
        await engine.put_object(BUCKET, "k", b"x")
    assert (await listing.list_uploads(engine.kv, BUCKET)).uploads == []
    await engine.create_bucket(BUCKET, "bob")  # the name is free again, with a clean slate
    assert (await engine.get_bucket(BUCKET)).versioning == ""
    assert (await listing.list_versions(engine.kv, BUCKET)).versions == []
    with pytest.raises(NoSuchBucket):
        await engine.delete_bucket("nobody")


# -- listings ------------------------------------------------------------------------------------


async def test_listing_arguments_are_checked(engine: ObjectEngine) -> None:
    with pytest.raises(InvalidArgument):
        await listing.list_objects(engine.kv, BUCKET, max_keys=-1)
    with pytest.raises(InvalidArgument):
        await listing.list_objects(engine.kv, BUCKET, delimiter="\0")
    with pytest.raises(InvalidArgument):
        await listing.list_versions(engine.kv, BUCKET, key_marker="k", version_marker="bogus")


async def test_listing_methods_need_the_bucket(engine: ObjectEngine) -> None:
    await engine.put_object(BUCKET, "k", b"x")
    assert [e.key for e in (await engine.list_objects(BUCKET)).objects] == ["k"]
    assert len((await engine.list_versions(BUCKET)).versions) == 1
    assert (await engine.list_uploads(BUCKET)).uploads == []
    for list_method in (engine.list_objects, engine.list_versions, engine.list_uploads):
        with pytest.raises(NoSuchBucket):
            await list_method("nobody")
        with pytest.raises(InvalidBucketName):  # a name that would reach into another key space
            await list_method("bkt/k")


async def test_listing_in_utf8_byte_order(engine: ObjectEngine) -> None:
    keys = ["a", "a/b", "a b", "a+b", "é", "日本", "😀", "\ufffd", "z", "ab", "a/", "A"]
    for key in keys:
        await engine.put_object(BUCKET, key, key.encode())
    listed = [e.key for e in (await listing.list_objects(engine.kv, BUCKET)).objects]
    assert listed == sorted(keys, key=lambda k: k.encode())
    # U+FFFD sorts before U+1F600 in UTF-8 (and in code points) but after it in UTF-16.
    assert listed.index("\ufffd") < listed.index("😀")
    page = await listing.list_objects(engine.kv, BUCKET, prefix="a", delimiter="/")
    assert [e.key for e in page.objects] == ["a", "a b", "a+b", "ab"]
    assert page.prefixes == ["a/"]


async def test_listings_past_a_thousand_entries(engine: ObjectEngine) -> None:
    keys = sorted(f"k{i:04d}" for i in range(1003))
    for key in keys:
        await engine.put_object(BUCKET, key, b"")
    first = await listing.list_objects(engine.kv, BUCKET, max_keys=5000)
    assert len(first.objects) == 1000 and first.truncated
    rest = await listing.list_objects(engine.kv, BUCKET, after=first.next_marker)
    assert [e.key for e in first.objects + rest.objects] == keys and not rest.truncated
    versions = await listing.list_versions(engine.kv, BUCKET, prefix="k1")
    assert len(versions.versions) == 3 and not versions.truncated


async def test_version_listing_resumes_after_a_null_version_behind_a_thousand_others(
    engine: ObjectEngine,
) -> None:
    await engine.update_bucket(BUCKET, versioning="Enabled")
    oldest = await engine.put_object(BUCKET, "k", b"oldest")
    await engine.update_bucket(BUCKET, versioning="Suspended")
    await engine.put_object(BUCKET, "k", b"null")
    await engine.update_bucket(BUCKET, versioning="Enabled")
    for i in range(1000):
        await engine.put_object(BUCKET, "k", b"%d" % i)
    first = await listing.list_versions(engine.kv, BUCKET, max_keys=1000)
    second = await listing.list_versions(
        engine.kv,
        BUCKET,
        key_marker=first.next_key_marker,
        version_marker=first.next_version_marker,
        max_keys=1,
    )
    assert [v.public_id for v, _ in second.versions] == ["null"]
    assert (second.next_key_marker, second.next_version_marker) == ("k", "null")
    third = await listing.list_versions(
        engine.kv, BUCKET, key_marker="k", version_marker="null", max_keys=1000
    )
    assert [v.version_id for v, _ in third.versions] == [oldest.version_id]


# -- compression, streaming, lost drives ---------------------------------------------------------


async def test_zstd_bucket(engine: ObjectEngine, tmp_path: Path) -> None:
    await engine.create_bucket("zipped", "alice", compression="zstd")
    data = text_body(3 << 20)
    v = await engine.put_object("zipped", "big", data, checksum_algorithm="CRC32")
    assert v.compression == "zstd" and len(v.frames) == 3
    assert v.etag == md5(data) and v.size == len(data)
    assert v.checksum is not None and v.checksum.value == b64(digest_of("CRC32", data))
    assert v.stored_size < len(data) // 4
    on_disk = sum(p.stat().st_size for p in shard_files(tmp_path))
    assert on_disk < len(data) // 2
    assert (await engine.get_object("zipped", "big"))[1] == data
    mib = 1 << 20
    for first, last in [
        (0, 0),
        (5, 5000),
        (mib - 10, mib + 10),  # across frames
        (mib, 2 * mib - 1),  # exactly one frame
        (mib - 1, 2 * mib),  # one byte either side of a frame
        (100, 3 * mib - 100),  # all three frames
        (2 * mib + 12345, None),
        (None, 77),
        (len(data) - 1, None),
    ]:
        got = (await engine.get_object("zipped", "big", byte_range=(first, last)))[1]
        want = data[-last:] if first is None else data[first : None if last is None else last + 1]
        assert got == want, (first, last)
    # Copies out of the compressed bucket come back as plain bytes; small ones are inlined.
    await engine.copy_object("zipped", "big", BUCKET, "plain")
    plain = await engine.head_object(BUCKET, "plain")
    assert plain.compression == "" and plain.stored_size == len(data)
    assert (await engine.get_object(BUCKET, "plain", byte_range=(mib - 3, mib + 3)))[1] == data[
        mib - 3 : mib + 4
    ]
    small = await engine.put_object("zipped", "small", b"tiny")
    assert small.inline == b"tiny"
    await engine.update_bucket("zipped", compression="")
    random_data = os.urandom(200_000)
    await engine.put_object("zipped", "random", random_data)
    assert (await engine.head_object("zipped", "random")).compression == ""
    assert (await engine.get_object("zipped", "big"))[1] == data  # old frames still decode


async def test_streaming_put(engine: ObjectEngine) -> None:
    data = random.Random(2).randbytes(2 << 20)
    for sizes, declared in [([1, 4095, 65_537, 7, 0, 333_333], None), ([1_000_003], len(data))]:
        v = await engine.put_object(BUCKET, "s", pieces_of(data, sizes), size=declared)
        assert (v.etag, v.size) == (md5(data), len(data))
        assert (await engine.get_object(BUCKET, "s"))[1] == data
        pieces = []
        async with engine.open_object(BUCKET, "s") as reader:
            assert (reader.offset, reader.length) == (0, len(data))
            async for piece in reader:
                pieces.append(bytes(piece))
        assert b"".join(pieces) == data
    # A reader left after its first piece stops reading ahead and closes cleanly.
    async with engine.open_object(BUCKET, "s") as reader:
        async for piece in reader:
            assert bytes(piece) == data[: len(piece)]
            break
    # A stream that stays under the inline threshold is inlined whatever its pieces.
    v = await engine.put_object(BUCKET, "tiny", pieces_of(b"abcdefg", [1, 2]))
    assert v.inline == b"abcdefg"


async def test_reads_survive_two_lost_drives_not_three(tmp_path: Path) -> None:
    data = random.Random(3).randbytes(1_500_001)
    async with open_local_engine(tmp_path, drives=6, inline_bytes=INLINE) as engine:
        await engine.create_bucket(BUCKET, "alice")
        await engine.put_object(BUCKET, "big", data)
        await engine.put_object(BUCKET, "small", b"inline bytes")
        # Lose the drives of two *data* shards (parity shards are not read when data is whole).
        drives = tmp_path / "drives"
        holders = {f.name.rsplit(".", 1)[1]: f.parts[-4] for f in drives.glob("d*/shards/*/*")}
        for index in ("0", "1"):
            shutil.rmtree(drives / holders[index])
        assert (await engine.get_object(BUCKET, "big"))[1] == data
        got = await engine.get_object(BUCKET, "big", byte_range=(700_000, 900_000))
        assert got[1] == data[700_000:900_001]
        assert engine.damaged  # the lost shards were reported for repair
        shutil.rmtree(drives / holders["2"])
        with pytest.raises(Unavailable) as info:
            await engine.get_object(BUCKET, "big")
        assert isinstance(info.value, TooFewShards)
        assert (await engine.get_object(BUCKET, "small"))[1] == b"inline bytes"
        assert (await engine.head_object(BUCKET, "big")).size == len(data)


def test_checksum_oracle_vectors() -> None:
    assert digest_of("CRC32", b"123456789").hex() == "cbf43926"
    assert digest_of("CRC32C", b"123456789").hex() == "e3069283"
    assert digest_of("CRC64NVME", b"123456789").hex() == "ae8b14860a799888"
