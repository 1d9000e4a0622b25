"""S3 checksums: known vectors, bitwise reference CRCs, streaming, multipart combining, headers."""

from __future__ import annotations

import base64
import hashlib
import os
import time
import zlib

import pytest
from awscrt import checksums as crt
from hypothesis import given, settings
from hypothesis import strategies as st

from store.codec.checksums import (
    ALGORITHMS,
    CRC_ALGORITHMS,
    CRC_PARAMS,
    DIGEST_BYTES,
    MAX_PARTS,
    checksum_of,
    checksum_type_allowed,
    combine_crc,
    composite_checksum,
    crc_combine,
    default_checksum_type,
    header_name,
    new_checksum,
    parse_b64_checksum,
)
from store.errors import InvalidArgument
from store.native import crc32c as native_crc32c
from store.native import crc32c_with
from store.testing.oracles import reference_digest, reflected_crc

CHECK = b"123456789"
KNOWN = {  # the "check" value of each CRC in the CRC catalogue, and the SHA test vectors
    "CRC32": 0xCBF43926,
    "CRC32C": 0xE3069283,
    "CRC64NVME": 0xAE8B14860A799888,
}


@pytest.mark.parametrize("algorithm", CRC_ALGORITHMS)
def test_known_crc_vectors(algorithm: str) -> None:
    width, poly = CRC_PARAMS[algorithm]
    want = KNOWN[algorithm].to_bytes(width // 8, "big")
    assert checksum_of(algorithm, CHECK) == want
    assert reflected_crc(CHECK, width, poly) == KNOWN[algorithm]
    assert checksum_of(algorithm, b"") == bytes(width // 8)


def test_known_sha_vectors() -> None:
    assert checksum_of("SHA1", b"abc").hex() == "a9993e364706816aba3e25717850c26c9cd0d89d"
    assert (
        checksum_of("SHA256", b"abc").hex()
        == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )


def test_b64_is_what_s3_sends() -> None:
    # The CRC32 and CRC32C of "123456789" as x-amz-checksum-* values (big-endian digests).
    assert new_checksum("CRC32").b64() == "AAAAAA=="
    c = new_checksum("crc32c")
    c.update(CHECK)
    assert c.b64() == base64.b64encode(bytes.fromhex("e3069283")).decode()
    assert c.algorithm == "CRC32C"
    assert c.length == 9


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_digest_sizes_and_names(algorithm: str) -> None:
    c = new_checksum(algorithm.lower())
    assert c.algorithm == algorithm
    assert len(c.digest()) == DIGEST_BYTES[algorithm]
    assert header_name(algorithm) == f"x-amz-checksum-{algorithm.lower()}"


@pytest.mark.parametrize("name", ["MD5", "crc16", "", "SHA512", "crc 32"])
def test_unknown_algorithm(name: str) -> None:
    with pytest.raises(InvalidArgument, match="unknown checksum algorithm"):
        new_checksum(name)


@settings(max_examples=60)
@given(algorithm=st.sampled_from(ALGORITHMS), data=st.binary(max_size=300))
def test_matches_bitwise_reference(algorithm: str, data: bytes) -> None:
    assert checksum_of(algorithm, data) == reference_digest(algorithm, data)


@settings(max_examples=50)
@given(data=st.binary(max_size=20_000))
def test_crc32c_matches_store_native(data: bytes) -> None:
    assert checksum_of("CRC32C", data) == native_crc32c(data).to_bytes(4, "big")


@pytest.mark.parametrize("value", [-1, 1 << 32, 1 << 64])
@pytest.mark.parametrize("kind", [bytes, bytearray])
def test_crc32c_refuses_a_start_value_outside_32_bits(value: int, kind: type) -> None:
    with pytest.raises(ValueError, match="32-bit unsigned CRC"):
        native_crc32c(kind(b"abc"), value)
    with pytest.raises(ValueError, match="32-bit unsigned CRC"):
        crc32c_with("sw", kind(b"abc"), value)
    assert native_crc32c(kind(b"6789"), native_crc32c(b"12345")) == KNOWN["CRC32C"]


@given(
    algorithm=st.sampled_from(ALGORITHMS),
    data=st.binary(max_size=5000),
    cuts=st.lists(st.integers(0, 5000), max_size=8),
    kind=st.sampled_from(["bytes", "bytearray", "memoryview"]),
)
def test_streaming_equals_one_shot(algorithm: str, data: bytes, cuts: list[int], kind: str) -> None:
    bounds = sorted({0, len(data), *(min(c, len(data)) for c in cuts)})
    c = new_checksum(algorithm)
    backing = bytearray(data)  # memoryview pieces are slices of one buffer, never copies
    for start, end in zip(bounds, bounds[1:], strict=False):
        if kind == "bytes":
            c.update(data[start:end])
        elif kind == "bytearray":
            c.update(bytearray(data[start:end]))
        else:
            c.update(memoryview(backing)[start:end])
    assert c.length == len(data)
    assert c.digest() == checksum_of(algorithm, data)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_typed_and_unaligned_memoryviews(algorithm: str) -> None:
    raw = bytearray(os.urandom(64 * 1024 + 3))
    c = new_checksum(algorithm)
    c.update(memoryview(raw)[3:])  # an unaligned start
    assert c.digest() == checksum_of(algorithm, bytes(raw[3:]))
    assert c.length == len(raw) - 3

    words = memoryview(bytearray(raw[: 4 * 1000])).cast("I")  # 1000 items, 4000 bytes
    c = new_checksum(algorithm)
    c.update(words)
    assert c.length == 4000
    assert c.digest() == checksum_of(algorithm, bytes(raw[:4000]))

    grid = memoryview(bytearray(raw[:120])).cast("B", (10, 12))
    c = new_checksum(algorithm)
    c.update(grid)
    assert (c.length, c.digest()) == (120, checksum_of(algorithm, bytes(raw[:120])))

    with pytest.raises(ValueError, match="contiguous"):
        c.update(memoryview(raw)[::2])


# -- multipart: FULL_OBJECT ------------------------------------------------------------------


@st.composite
def split_data(draw: st.DrawFn) -> tuple[bytes, list[bytes]]:
    """Random data of up to several KiB cut into parts, empty parts included."""
    data = draw(st.binary(max_size=12 * 1024))
    cuts = draw(st.lists(st.integers(0, len(data)), max_size=10))
    bounds = [0, *sorted(cuts), len(data)]
    return data, [data[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


@settings(max_examples=80)
@given(algorithm=st.sampled_from(CRC_ALGORITHMS), split=split_data())
def test_combine_crc_of_random_splits(algorithm: str, split: tuple[bytes, list[bytes]]) -> None:
    data, parts = split
    assert b"".join(parts) == data
    digests = [(checksum_of(algorithm, p), len(p)) for p in parts]
    assert combine_crc(algorithm, digests) == checksum_of(algorithm, data)


@pytest.mark.parametrize("algorithm", CRC_ALGORITHMS)
def test_combine_crc_edge_cases(algorithm: str) -> None:
    empty = checksum_of(algorithm, b"")
    assert combine_crc(algorithm, []) == empty
    assert combine_crc(algorithm, [(empty, 0), (empty, 0)]) == empty
    one = checksum_of(algorithm, CHECK)
    assert combine_crc(algorithm, [(one, 9)]) == one
    assert combine_crc(algorithm, [(empty, 0), (one, 9), (empty, 0)]) == one


CRT_COMBINE = {
    "CRC32": crt.combine_crc32,
    "CRC32C": crt.combine_crc32c,
    "CRC64NVME": crt.combine_crc64nvme,
}


@settings(max_examples=100)
@given(
    algorithm=st.sampled_from(CRC_ALGORITHMS),
    crc1=st.integers(0, 2**64 - 1),
    crc2=st.integers(0, 2**64 - 1),
    length2=st.integers(1, 5 * 2**40),  # awscrt ignores crc2 when length2 = 0
)
def test_crc_combine_matches_awscrt_up_to_5_tib(
    algorithm: str, crc1: int, crc2: int, length2: int
) -> None:
    width, poly = CRC_PARAMS[algorithm]
    crc1 &= (1 << width) - 1
    crc2 &= (1 << width) - 1
    want = CRT_COMBINE[algorithm](crc1, crc2, length2)
    assert crc_combine(crc1, crc2, length2, width=width, poly=poly) == want


def test_crc_combine_matches_zlib_over_zeros() -> None:
    # CRC32 of 1 MiB of zeros, assembled from 1024 parts of 1 KiB.
    part = zlib.crc32(bytes(1024)).to_bytes(4, "big")
    assert combine_crc("CRC32", [(part, 1024)] * 1024) == checksum_of("CRC32", bytes(1 << 20))


def test_combine_many_large_parts_is_fast() -> None:
    # 10,000 distinct part lengths near 5 TiB / 10,000 each; equal lengths would hit the cache.
    parts = [(os.urandom(8), (512 << 20) + i) for i in range(MAX_PARTS)]
    start = time.perf_counter()
    got = combine_crc("CRC64NVME", parts)
    elapsed = time.perf_counter() - start
    want = 0
    for digest, length in parts:
        want = crt.combine_crc64nvme(want, int.from_bytes(digest, "big"), length)
    assert got == want.to_bytes(8, "big")
    assert elapsed < 20  # about 2 s on a slow core; O(len) would never finish


def test_combine_crc_rejects() -> None:
    with pytest.raises(InvalidArgument, match="FULL_OBJECT is not supported with SHA256"):
        combine_crc("SHA256", [])
    with pytest.raises(InvalidArgument, match="part 2: a CRC32 digest is 4 bytes, got 8"):
        combine_crc("CRC32", [(bytes(4), 1), (bytes(8), 1)])
    with pytest.raises(InvalidArgument, match="part 1: length -1"):
        combine_crc("CRC32C", [(bytes(4), -1)])
    with pytest.raises(InvalidArgument, match="part 1: an empty part's CRC32C is 0"):
        combine_crc("CRC32C", [(bytes.fromhex("00000001"), 0)])
    with pytest.raises(InvalidArgument, match="at most"):
        combine_crc("CRC32C", [(bytes(4), 1)] * (MAX_PARTS + 1))


# -- multipart: COMPOSITE --------------------------------------------------------------------


@given(
    algorithm=st.sampled_from([a for a in ALGORITHMS if a != "CRC64NVME"]),
    parts=st.lists(st.binary(max_size=200), min_size=1, max_size=20),
)
def test_composite_format(algorithm: str, parts: list[bytes]) -> None:
    digests = [checksum_of(algorithm, p) for p in parts]
    value = composite_checksum(algorithm, digests)
    b64, _, count = value.rpartition("-")
    assert count == str(len(parts))
    assert parse_b64_checksum(algorithm, b64) == reference_digest(algorithm, b"".join(digests))


def test_composite_known_value() -> None:
    digests = [checksum_of("SHA256", b"part one"), checksum_of("SHA256", b"part two")]
    want = base64.b64encode(hashlib.sha256(b"".join(digests)).digest()).decode() + "-2"
    assert composite_checksum("sha256", digests) == want


def test_composite_rejects() -> None:
    with pytest.raises(InvalidArgument, match="COMPOSITE is not supported with CRC64NVME"):
        composite_checksum("CRC64NVME", [bytes(8)])
    with pytest.raises(InvalidArgument, match="1 to 10000 parts, not 0"):
        composite_checksum("CRC32", [])
    with pytest.raises(InvalidArgument, match="part 1: a SHA1 digest is 20 bytes, got 32"):
        composite_checksum("SHA1", [bytes(32)])


def test_checksum_types_per_s3() -> None:
    # The table in the S3 user guide, "Checking object integrity": algorithm -> full, composite.
    table = {
        "CRC64NVME": (True, False),
        "CRC32": (True, True),
        "CRC32C": (True, True),
        "SHA1": (False, True),
        "SHA256": (False, True),
    }
    for algorithm, (full, composite) in table.items():
        assert checksum_type_allowed(algorithm, "FULL_OBJECT") is full
        assert checksum_type_allowed(algorithm.lower(), "COMPOSITE") is composite
        assert checksum_type_allowed(algorithm, default_checksum_type(algorithm))
    assert default_checksum_type("CRC64NVME") == "FULL_OBJECT"
    with pytest.raises(InvalidArgument, match="unknown checksum type"):
        checksum_type_allowed("CRC32", "PARTIAL")


# -- header values ---------------------------------------------------------------------------


@given(algorithm=st.sampled_from(ALGORITHMS), data=st.binary(max_size=100))
def test_parse_roundtrip(algorithm: str, data: bytes) -> None:
    c = new_checksum(algorithm)
    c.update(data)
    assert parse_b64_checksum(algorithm.lower(), c.b64()) == c.digest()


@given(algorithm=st.sampled_from(ALGORITHMS), size=st.integers(0, 40))
def test_parse_rejects_wrong_length(algorithm: str, size: int) -> None:
    value = base64.b64encode(bytes(size)).decode()
    if size == DIGEST_BYTES[algorithm]:
        assert parse_b64_checksum(algorithm, value) == bytes(size)
    else:
        with pytest.raises(InvalidArgument, match=f"base64 of {DIGEST_BYTES[algorithm]} bytes"):
            parse_b64_checksum(algorithm, value)


@pytest.mark.parametrize(
    "value",
    [
        "y/Q5Jg=",  # bad padding
        "y/Q5Jg",  # no padding
        "y/Q5Jg==\n",  # trailing newline
        " y/Q5Jg==",  # leading space
        "y_Q5Jg==",  # urlsafe alphabet
        "y/Q5Jg==-3",  # a composite value is not a part checksum
        "y/Q5Jh==",  # non-zero unused bits: decodes to the same bytes, but not canonical
        "ÿ/Q5Jg==",  # not ASCII
        "",
    ],
)
def test_parse_rejects_bad_base64(value: str) -> None:
    with pytest.raises(InvalidArgument, match="x-amz-checksum-crc32 "):
        parse_b64_checksum("CRC32", value)


def test_parse_rejects_huge_value_quickly() -> None:
    with pytest.raises(InvalidArgument, match="longer value"):
        parse_b64_checksum("SHA256", "A" * 1_000_000)
