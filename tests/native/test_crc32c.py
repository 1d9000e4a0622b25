"""CRC32C: known answers, chaining, and every kernel against the table-driven oracle."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from store import native
from store.native import crc32c, crc32c_with

from .conftest import CRC_KERNELS

# RFC 3720 (iSCSI) appendix B.4 test vectors, and the standard check value.
KNOWN = [
    (b"123456789", 0xE3069283),
    (b"", 0x00000000),
    (bytes(32), 0x8A9136AA),
    (b"\xff" * 32, 0x62A8AB43),
    (bytes(range(32)), 0x46DD794E),
    (bytes(range(31, -1, -1)), 0x113FDB5C),
    (
        bytes.fromhex(
            "01c00000000000000000000000000000"
            "14000000000004000000001400000018"
            "28000000000000000200000000000000"
        ),
        0xD9963A56,
    ),
]


@pytest.mark.parametrize("kernel", CRC_KERNELS)
@pytest.mark.parametrize(("data", "expected"), KNOWN)
def test_known_answers(kernel: str, data: bytes, expected: int) -> None:
    assert crc32c_with(kernel, data) == expected
    assert crc32c(data) == expected


@pytest.mark.parametrize("kernel", CRC_KERNELS)
@given(
    data=st.binary(max_size=5000),
    # ... and each chunk size of the three-stream kernel (3 x 4096, 3 x 1024, 3 x 256), +- 1
    length=st.sampled_from(
        [0, 1, 15, 16, 63, 64, 127, 128, 255, 256, 511, 512, 513, 767, 768, 769, 3071, 3072]
        + [3073, 4097, 12287, 12288, 12289, 16127, 24577, 65536 + 8]
    ),
    seed=st.integers(0, 2**32 - 1),
    offset=st.integers(0, 63),
)
def test_kernel_equals_table_oracle(
    kernel: str, data: bytes, length: int, seed: int, offset: int
) -> None:
    blob = (data * (1 + length // max(1, len(data))))[:length] if data else bytes(length)
    view = memoryview(bytearray(offset) + blob)[offset:]  # unaligned, ends at the allocation
    assert crc32c_with(kernel, view, seed) == crc32c_with("sw", blob, seed)


@given(a=st.binary(max_size=3000), b=st.binary(max_size=3000))
def test_chaining(a: bytes, b: bytes) -> None:
    assert crc32c(b, value=crc32c(a)) == crc32c(a + b)


def test_large_buffer_all_kernels_agree() -> None:
    blob = bytes(range(256)) * (4 << 12) + b"tail!"  # 4 MiB + 5
    expected = crc32c_with("sw", blob)
    assert {crc32c_with(k, blob) for k in CRC_KERNELS} == {expected}


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        crc32c(b"x", value=-1)
    with pytest.raises(ValueError):
        crc32c(b"x", value=1 << 32)
    with pytest.raises(ValueError):
        crc32c_with("crc64", b"x")
    with pytest.raises(ValueError):
        crc32c(memoryview(b"abcdef")[::2])
    for kernel in set(native.CRC_KERNELS) - set(CRC_KERNELS):
        with pytest.raises(ValueError, match="not supported"):
            crc32c_with(kernel, b"x")


@given(
    data=st.binary(max_size=5000),
    block=st.integers(1, 700),
    flip=st.one_of(st.none(), st.integers(0, 4999)),
)
def test_verify_blocks_finds_the_first_bad_block(data: bytes, block: int, flip: int | None) -> None:
    import struct

    blocks = [data[i : i + block] for i in range(0, len(data), block)]
    crcs = b"".join(struct.pack("<I", crc32c(b)) for b in blocks)
    assert native.crc32c_blocks(data, block) == crcs  # the table, in one call
    assert native.crc32c_verify_blocks(data, block, crcs) == -1
    if flip is not None and flip < len(data):
        bad = bytearray(data)
        bad[flip] ^= 0x10
        assert native.crc32c_verify_blocks(bad, block, crcs) == flip // block
    with pytest.raises(ValueError):
        native.crc32c_verify_blocks(data + b"x" * block, block, crcs)
