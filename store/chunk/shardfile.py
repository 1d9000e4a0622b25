"""The shard file format (pure: layout math and header bytes, no I/O).

A shard file holds one shard of one chunk: a fixed header, then the shard's bytes cut into blocks,
each block followed by its CRC32C:

    offset 0     header (HEADER_BYTES)
                   magic   b"STSHARD1"           8 bytes   (format version in the magic)
                   block   block size, bytes      u32
                   length  shard length, bytes    u64
                   crc     CRC32C of the above    u32
                   pad     zeros to HEADER_BYTES
    then         block 0 | crc 0 | block 1 | crc 1 | ... | last block (may be short) | crc

Invariants: every block but the last is exactly ``block`` bytes; the CRC after a block covers that
block only, so a range read verifies just the blocks it touches; the header's own CRC guards the
geometry, so a torn or foreign file is never read as data. Files are written under a temporary name,
fsynced, renamed into place and the directory fsynced: a visible shard file is always complete.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from store.errors import Corrupt, InvalidArgument
from store.native import crc32c, crc32c_verify_blocks

MAGIC = b"STSHARD1"
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
        """(file offset, byte count) covering blocks first..last inclusive, with their CRCs.

        >>> ShardGeometry(4096, 10000).block_span(1, 2)
        (4164, 5912)
        """
        start = HEADER_BYTES + first * (self.block_bytes + CRC_BYTES)
        end_data = min(self.length, (last + 1) * self.block_bytes)
        end = HEADER_BYTES + end_data + (last + 1) * CRC_BYTES
        return start, end - start

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


def verify_blocks(
    geometry: ShardGeometry, first: int, raw: bytes | bytearray | memoryview
) -> list[memoryview]:
    """Split ``raw`` (as read from ``block_span(first, ...)``) into verified block payloads.

    Raises Corrupt naming the first block whose CRC does not match.
    """
    view = memoryview(raw)
    blocks = []
    pos = 0
    index = first
    while pos < len(view):
        size = min(geometry.block_bytes, geometry.length - index * geometry.block_bytes)
        if size <= 0 or pos + size + CRC_BYTES > len(view):
            raise Corrupt(f"shard block {index} is truncated")
        payload = view[pos : pos + size]
        (stored,) = struct.unpack_from("<I", view, pos + size)
        if crc32c(payload) != stored:
            raise Corrupt(f"shard block {index} checksum mismatch")
        blocks.append(payload)
        pos += size + CRC_BYTES
        index += 1
    return blocks


def verify_payloads(
    geometry: ShardGeometry, first: int, data: memoryview, crcs: bytes | bytearray
) -> None:
    """Check block payloads read back to back (from block ``first`` on) against their CRCs."""
    bad = crc32c_verify_blocks(data, geometry.block_bytes, crcs)
    if bad >= 0:
        raise Corrupt(f"shard block {first + bad} checksum mismatch")


def crc_trailer(payload: bytes | bytearray | memoryview, crc: int | None = None) -> bytes:
    """The 4 bytes that follow a block: its CRC32C (computed here unless the caller has it)."""
    return struct.pack("<I", crc32c(payload) if crc is None else crc)
