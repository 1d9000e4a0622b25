"""The object engine's API, one rule at a time: names, conditional and verified writes, checksums,
ranges, parts, copies, tags, bucket deletion, multipart rules, compression, streaming bodies and
reads with drives gone.

Every engine runs on 6 local drives (EC 4+2) under ``tmp_path``; bodies over ``INLINE`` bytes go
to the chunk store, so "nothing stored" is checked by counting shard files on the drives.
"""

from __future__ import annotations

import base64
import hashlib
import os
import random
import shutil
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trio

from store.engine import listing
from store.engine import records as R
from store.engine.multipart import CompletedPart
from store.engine.node import open_local_engine
from store.engine.objects import ObjectEngine
from store.engine.records import Checksum
from store.errors import (
    BadDigest,
    BucketAlreadyExists,
    BucketNotEmpty,
    EntityTooLarge,
    EntityTooSmall,
    IncompleteBody,
    InvalidArgument,
    InvalidBucketName,
    InvalidPart,
    InvalidPartOrder,
    KeyTooLong,
    MethodNotAllowed,
    NoSuchBucket,
    NoSuchKey,
    NoSuchUpload,
    NoSuchVersion,
    OutOfRange,
    PreconditionFailed,
    TooFewShards,
    Unavailable,
)
from store.meta.api import Put
from tests.unit.engine.test_engine_model import chunk_references, chunks_on_drives

BUCKET = "bkt"
INLINE = 1024
MIN_PART = 1000


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[ObjectEngine]:
    async with open_local_engine(
        tmp_path, drives=6, inline_bytes=INLINE, min_part_bytes=MIN_PART
    ) as e:
        await e.create_bucket(BUCKET, "alice")
        yield e


def shard_files(root: Path) -> list[Path]:
    return sorted(p for p in (root / "drives").glob("d*/shards/*/*") if p.is_file())


def tmp_files(root: Path) -> list[Path]:
    return sorted(p for p in (root / "drives").glob("d*/tmp/**/*") if p.is_file())


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def _reflected_crc(data: bytes, width: int, poly: int) -> int:
    """Bitwise reflected CRC, init and xorout all ones: the oracle for CRC32C and CRC64NVME."""
    mask = (1 << width) - 1
    crc = mask
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (poly if crc & 1 else 0)
    return crc ^ mask


def digest_of(algorithm: str, data: bytes) -> bytes:
    """An independent implementation of each S3 checksum (big-endian CRCs)."""
    if algorithm == "CRC32":
        return zlib.crc32(data).to_bytes(4, "big")
    if algorithm == "CRC32C":
        return _reflected_crc(data, 32, 0x82F63B78).to_bytes(4, "big")
    if algorithm == "CRC64NVME":
        return _reflected_crc(data, 64, 0x9A6C9329AC4BC9B5).to_bytes(8, "big")
    return hashlib.new(algorithm.lower(), data).digest()


def test_checksum_oracle_vectors() -> None:
    assert digest_of("CRC32", b"123456789").hex() == "cbf43926"
    assert digest_of("CRC32C", b"123456789").hex() == "e3069283"
    assert digest_of("CRC64NVME", b"123456789").hex() == "ae8b14860a799888"


async def pieces_of(data: bytes, sizes: Iterable[int]) -> AsyncIterator[bytes | memoryview]:
    """``data`` as an async stream, cut at the given piece sizes (cycled)."""
    pos = 0
    cuts = list(sizes)
    i = 0
    while pos < len(data):
        n = cuts[i % len(cuts)]
        i += 1
        yield memoryview(data)[pos : pos + n] if i % 2 else data[pos : pos + n]
        pos += n


def text_body(size: int) -> bytes:
    """Compressible but not trivial: numbered lines of text."""
    out = bytearray()
    i = 0
    while len(out) < size:
        out += f"{i:09d} the quick brown fox jumps over the lazy dog {i % 977}\n".encode()
        i += 1
    return bytes(out[:size])


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


# -- concurrent writers --------------------------------------------------------------------------


async def test_concurrent_conditional_puts_have_one_winner(engine: ObjectEngine) -> None:
    won: list[int] = []
    lost: list[int] = []

    async def put(i: int) -> None:
        try:
            await engine.put_object(BUCKET, "k", bytes([i]) * (2000 + i), if_none_match="*")
            won.append(i)
        except PreconditionFailed:
            lost.append(i)

    async with trio.open_nursery() as nursery:
        for i in range(8):
            nursery.start_soon(put, i)
    assert len(won) == 1 and len(lost) == 7
    assert (await engine.get_object(BUCKET, "k"))[1] == bytes(won) * (2000 + won[0])
    assert len((await listing.list_versions(engine.kv, BUCKET)).versions) == 1


async def test_concurrent_puts_in_a_versioned_bucket_keep_every_version(
    engine: ObjectEngine,
) -> None:
    await engine.update_bucket(BUCKET, versioning="Enabled")
    async with trio.open_nursery() as nursery:
        for i in range(8):
            nursery.start_soon(engine.put_object, BUCKET, "k", bytes([i]) * 3000)
    versions = (await listing.list_versions(engine.kv, BUCKET)).versions
    assert sorted(v.etag for v, _ in versions) == sorted(md5(bytes([i]) * 3000) for i in range(8))
    assert [latest for _, latest in versions] == [True] + [False] * 7


async def null_versions(engine: ObjectEngine, key: str) -> list[tuple[str, bool]]:
    listed = await listing.list_versions(engine.kv, BUCKET, prefix=key)
    return [(v.public_id, v.delete_marker) for v, _ in listed.versions if v.key == key]


@dataclass
class Hold:
    method: str
    when: Callable[..., bool]
    held: trio.Event = field(default_factory=trio.Event)
    release: trio.Event = field(default_factory=trio.Event)


class HeldKV:
    """Stands in for the engine's KV: the first call of each ``hold(method, when)`` rule waits
    until its ``release`` is set, so a test can order racing writes (a race made deterministic)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.holds: list[Hold] = []

    def hold(self, method: str, when: Callable[..., bool] = lambda *a, **k: True) -> Hold:
        rule = Hold(method, when)
        self.holds.append(rule)
        return rule

    def __getattr__(self, name: str) -> Any:
        call = getattr(self.inner, name)
        rules = [r for r in self.holds if r.method == name]
        if not rules:
            return call

        async def held_call(*args: Any, **kw: Any) -> Any:
            for rule in rules:
                if not rule.held.is_set() and rule.when(*args, **kw):
                    rule.held.set()
                    await rule.release.wait()
                    break
            return await call(*args, **kw)

        return held_call


@asynccontextmanager
async def held_kv(engine: ObjectEngine) -> AsyncIterator[HeldKV]:
    gate = HeldKV(engine.kv)
    engine.kv = engine.multipart.kv = gate
    try:
        with trio.fail_after(30):
            yield gate
    finally:
        engine.kv = engine.multipart.kv = gate.inner


async def race(
    engine: ObjectEngine, first: Callable[[], Awaitable[Any]], second: Callable[[], Awaitable[Any]]
) -> None:
    """``first`` runs up to its first transaction, ``second`` runs to the end, then ``first``
    commits (and retries if its compares fail)."""
    async with held_kv(engine) as gate, trio.open_nursery() as nursery:
        commit = gate.hold("txn")
        nursery.start_soon(first)
        await commit.held.wait()
        await second()
        commit.release.set()


async def test_a_held_commit_retries_after_a_racing_write(engine: ObjectEngine) -> None:
    """The harness itself, where the engine gets it right: two puts to an unversioned key."""
    await race(
        engine,
        lambda: engine.put_object(BUCKET, "k", b"first"),
        lambda: engine.put_object(BUCKET, "k", b"second"),
    )
    assert engine.stats.txn_retries == 1
    assert (await engine.get_object(BUCKET, "k"))[1] == b"first"  # committed last
    assert await null_versions(engine, "k") == [("null", False)]


async def test_overlapping_puts_agree_on_the_latest_version(engine: ObjectEngine) -> None:
    await engine.update_bucket(BUCKET, versioning="Enabled")
    await race(
        engine,
        lambda: engine.put_object(BUCKET, "k", b"first"),
        lambda: engine.put_object(BUCKET, "k", b"second"),
    )
    current, data = await engine.get_object(BUCKET, "k")
    versions = (await listing.list_versions(engine.kv, BUCKET)).versions
    assert len(versions) == 2
    latest = [(v.version_id, v.etag) for v, is_latest in versions if is_latest]
    assert latest == [(current.version_id, md5(data))]
    page = await listing.list_objects(engine.kv, BUCKET)
    assert [e.version_id for e in page.objects] == [current.version_id]


async def test_racing_deletes_in_a_suspended_bucket_leave_one_null_marker(
    engine: ObjectEngine,
) -> None:
    await engine.update_bucket(BUCKET, versioning="Suspended")
    await race(
        engine,
        lambda: engine.delete_object(BUCKET, "k"),
        lambda: engine.delete_object(BUCKET, "k"),
    )
    assert await null_versions(engine, "k") == [("null", True)]


async def test_racing_put_and_delete_in_a_suspended_bucket_leave_one_null_version(
    engine: ObjectEngine,
) -> None:
    await engine.update_bucket(BUCKET, versioning="Suspended")
    await race(
        engine,
        lambda: engine.put_object(BUCKET, "k", b"data"),
        lambda: engine.delete_object(BUCKET, "k"),
    )
    assert len(await null_versions(engine, "k")) == 1


async def test_a_part_uploaded_during_completion_is_not_leaked(
    engine: ObjectEngine, tmp_path: Path
) -> None:
    upload_id, done = await upload_parts(engine, "mp", [b"a" * MIN_PART])
    late: list[object] = []

    async def upload_late_part() -> None:
        try:
            await engine.multipart.upload_part(BUCKET, "mp", upload_id, 2, b"late" * 1000)
            late.append("stored")
        except NoSuchUpload:
            late.append("refused")

    await race(
        engine,
        lambda: engine.multipart.complete(BUCKET, "mp", upload_id, done),
        upload_late_part,
    )
    assert (await engine.get_object(BUCKET, "mp"))[1] == b"a" * MIN_PART
    refs, named = await chunk_references(engine)
    assert named <= refs
    assert refs == named, f"late part {late[0]}; chunks referenced by nothing: {refs - named}"
    assert chunks_on_drives(tmp_path) == refs


async def test_a_part_uploaded_during_abort_is_not_leaked(
    engine: ObjectEngine, tmp_path: Path
) -> None:
    upload_id, _ = await upload_parts(engine, "mp", [b"a" * MIN_PART])

    async def upload_late_part() -> None:
        await engine.multipart.upload_part(BUCKET, "mp", upload_id, 2, b"late" * 1000)

    await race(engine, lambda: engine.multipart.abort(BUCKET, "mp", upload_id), upload_late_part)
    with pytest.raises(NoSuchUpload):
        await engine.multipart.list_parts(BUCKET, "mp", upload_id)
    refs, named = await chunk_references(engine)
    assert refs == named, f"chunks referenced by nothing: {refs - named}"
    assert chunks_on_drives(tmp_path) == refs


async def test_an_upload_created_during_bucket_deletion_does_not_survive_it(
    engine: ObjectEngine,
) -> None:
    created = trio.Event()
    refused: list[NoSuchBucket] = []

    async def create_upload() -> None:
        try:
            await engine.multipart.create(BUCKET, "mp")
        except NoSuchBucket as e:  # its compare failed and it found the bucket going away
            refused.append(e)
        finally:
            created.set()

    async with held_kv(engine) as gate, trio.open_nursery() as nursery:
        upload_commit = gate.hold(
            "txn", lambda compares, ops, *_: any(isinstance(o, Put) for o in ops)
        )
        bucket_removal = gate.hold("delete", lambda key, *_: key == R.bucket_key(BUCKET))
        nursery.start_soon(create_upload)
        await upload_commit.held.wait()  # create has seen the bucket; its write waits
        nursery.start_soon(engine.delete_bucket, BUCKET)
        await bucket_removal.held.wait()  # marked deleting, uploads aborted, record not yet gone
        upload_commit.release.set()
        await created.wait()
        bucket_removal.release.set()
    with pytest.raises(NoSuchBucket):
        await engine.get_bucket(BUCKET)
    await engine.create_bucket(BUCKET, "bob")
    assert (await listing.list_uploads(engine.kv, BUCKET)).uploads == []
    assert refused


async def test_racing_deletes_in_a_suspended_bucket_with_a_current_object(
    engine: ObjectEngine,
) -> None:
    """With a current object the O/ compare catches the race: one null marker remains."""
    await engine.put_object(BUCKET, "k", b"data")
    await engine.update_bucket(BUCKET, versioning="Suspended")
    await race(
        engine,
        lambda: engine.delete_object(BUCKET, "k"),
        lambda: engine.delete_object(BUCKET, "k"),
    )
    assert await null_versions(engine, "k") == [("null", True)]


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
    keys = ["a", "a/b", "a b", "a+b", "é", "日本", "😀", "\uffff", "z", "ab", "a/", "A"]
    for key in keys:
        await engine.put_object(BUCKET, key, key.encode())
    listed = [e.key for e in (await listing.list_objects(engine.kv, BUCKET)).objects]
    assert listed == sorted(keys, key=lambda k: k.encode())
    # U+FFFF sorts before U+1F600 in UTF-8 (and in code points) but after it in UTF-16.
    assert listed.index("\uffff") < listed.index("😀")
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


# -- multipart -----------------------------------------------------------------------------------


async def upload_parts(
    engine: ObjectEngine, key: str, parts: list[bytes], **create_kw: str
) -> tuple[str, list[CompletedPart]]:
    upload = await engine.multipart.create(BUCKET, key, **create_kw)
    done = []
    for n, data in enumerate(parts, 1):
        p = await engine.multipart.upload_part(BUCKET, key, upload.upload_id, n, data)
        done.append(CompletedPart(n, p.etag, p.checksum.partition(":")[2]))
    return upload.upload_id, done


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
    with pytest.raises(NoSuchUpload):
        await engine.multipart.complete(BUCKET, "mp", upload_id, listed)
    with pytest.raises(NoSuchUpload):
        await engine.multipart.upload_part(BUCKET, "mp", upload_id, 4, b"late")
    assert (await listing.list_uploads(engine.kv, BUCKET)).uploads == []


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
    with pytest.raises(InvalidArgument):
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
        for drive in ("d0", "d1"):
            shutil.rmtree(tmp_path / "drives" / drive)
        assert (await engine.get_object(BUCKET, "big"))[1] == data
        got = await engine.get_object(BUCKET, "big", byte_range=(700_000, 900_000))
        assert got[1] == data[700_000:900_001]
        assert engine.damaged  # the lost shards were reported for repair
        shutil.rmtree(tmp_path / "drives" / "d2")
        with pytest.raises(Unavailable) as info:
            await engine.get_object(BUCKET, "big")
        assert isinstance(info.value, TooFewShards)
        assert (await engine.get_object(BUCKET, "small"))[1] == b"inline bytes"
        assert (await engine.head_object(BUCKET, "big")).size == len(data)
