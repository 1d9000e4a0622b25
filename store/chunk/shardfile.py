"""The shard file format (pure: layout math and header bytes, no I/O).

A shard file holds one shard of one chunk: a fixed header, the shard's bytes, then a table with
one CRC32C per block of the bytes:

    offset 0                  header (HEADER_BYTES)
                                magic   b"STSHARD2"         8 bytes   (format version in the magic)
                                block   block size, bytes    u32
                                length  shard length, bytes  u64
                                crc     CRC32C of the above  u32
                                pad     zeros to HEADER_BYTES
    HEADER_BYTES              the shard's bytes, contiguous (``length`` bytes)
    HEADER_BYTES + length     CRC table: u32 little-endian per block (``nblocks`` entries)

Invariants: every block but the last is exactly ``block`` bytes; CRC entry i covers block i only,
so a range read verifies just the blocks it touches; the header's own CRC guards the geometry, so
a torn or foreign file is never read as data. The bytes are contiguous so that a read can map
them (or send them) without a copy. Files are written under a temporary name,
fsynced, renamed into place and the directory fsynced: a visible shard file is always complete.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

from store.errors import Corrupt, InvalidArgument
from store.native import crc32c, crc32c_verify_blocks

MAGIC = b"STSHARD2"
HEADER_BYTES = 64
CRC_BYTES = 4
_HEADER = struct.Struct("<8sIQ")
MAX_BLOCK_BYTES = 16 << 20


@dataclass(frozen=True, slots=True)
class ShardGeometry:
    block_bytes: int
    length: int

    @property
    def nblocks(self) -> int:
        return -(-self.length // self.block_bytes)

    @property
    def file_bytes(self) -> int:
        return HEADER_BYTES + self.length + self.nblocks * CRC_BYTES

    def block_span(self, first: int, last: int) -> tuple[int, int]:
        """(file offset, byte count) of the bytes of blocks first..last inclusive.

        >>> ShardGeometry(4096, 10000).block_span(1, 2)
        (4160, 5904)
        """
        start = first * self.block_bytes
        end = min(self.length, (last + 1) * self.block_bytes)
        return HEADER_BYTES + start, end - start

    def crc_span(self, first: int, last: int) -> tuple[int, int]:
        """(file offset, byte count) of the CRC entries of blocks first..last inclusive.

        >>> ShardGeometry(4096, 10000).crc_span(1, 2)
        (10068, 8)
        """
        return HEADER_BYTES + self.length + first * CRC_BYTES, (last - first + 1) * CRC_BYTES

    def blocks_for(self, offset: int, length: int) -> tuple[int, int]:
        """The first and last block a byte range of the shard touches.

        >>> ShardGeometry(4096, 10000).blocks_for(4095, 2)
        (0, 1)
        """
        if offset < 0 or length <= 0 or offset + length > self.length:
            raise InvalidArgument(f"range {offset}+{length} outside shard of {self.length} bytes")
        return offset // self.block_bytes, (offset + length - 1) // self.block_bytes


def encode_header(geometry: ShardGeometry) -> bytes:
    if not 0 < geometry.block_bytes <= MAX_BLOCK_BYTES or geometry.length < 0:
        raise InvalidArgument(f"bad shard geometry {geometry}")
    body = _HEADER.pack(MAGIC, geometry.block_bytes, geometry.length)
    head = body + struct.pack("<I", crc32c(body))
    return head + bytes(HEADER_BYTES - len(head))


def decode_header(raw: bytes) -> ShardGeometry:
    if len(raw) < HEADER_BYTES:
        raise Corrupt("shard file shorter than its header")
    body = raw[: _HEADER.size]
    (crc,) = struct.unpack_from("<I", raw, _HEADER.size)
    if crc32c(body) != crc:
        raise Corrupt("shard header checksum mismatch")
    magic, block_bytes, length = _HEADER.unpack(body)
    if magic != MAGIC:
        raise Corrupt(f"not a shard file (magic {magic!r})")
    if not 0 < block_bytes <= MAX_BLOCK_BYTES:
        raise Corrupt(f"shard header has block size {block_bytes}")
    return ShardGeometry(block_bytes, length)


def first_bad_block(
    geometry: ShardGeometry, first: int, data: bytes | bytearray | memoryview, crcs: bytes
) -> int:
    """Index of the first block of ``data`` (blocks ``first``.. back to back) whose CRC differs
    from ``crcs``, or -1."""
    if len(crcs) < CRC_BYTES * -(-len(data) // geometry.block_bytes):
        return first
    bad = crc32c_verify_blocks(data, geometry.block_bytes, crcs)
    return bad if bad < 0 else first + bad


def crc_table(crcs: Sequence[int]) -> bytes:
    return struct.pack(f"<{len(crcs)}I", *crcs)
