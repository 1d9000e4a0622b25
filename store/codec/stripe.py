"""Stripe geometry and range math for one chunk (pure).

A chunk of ``length`` bytes is cut into stripes of ``k * block`` data bytes. Stripe s puts data
bytes [s*k*block + j*block, ... + block) in data shard j at shard offset s*block, and the m parity
blocks in shards k..k+m-1 at the same offset. The last stripe may be short: its r remaining bytes
use a block of ``ceil(r / k)`` bytes (the tail of its last data blocks is zero padding, never
returned), so every shard of a chunk has the same length ``shard_length``:

    length = 10, k = 2, block = 4:   stripe 0: shard0 = d[0:4]  shard1 = d[4:8]
                                     stripe 1: r = 2, block 1: shard0 = d[8:9], shard1 = d[9:10]
    shard_length = 4 + 1 = 5

Reads map a byte range of the chunk to the pieces of data shards that hold it (``data_pieces``);
a degraded read needs whole stripe blocks from k shards (``stripe_span``).
"""

from __future__ import annotations

from dataclasses import dataclass

from store.errors import InvalidArgument


@dataclass(frozen=True, slots=True)
class Piece:
    """``length`` bytes at ``shard_offset`` of data shard ``shard``, landing at ``out_offset`` of
    the range being read; ``stripe`` is the stripe they belong to."""

    stripe: int
    shard: int
    shard_offset: int
    length: int
    out_offset: int


@dataclass(frozen=True, slots=True)
class ChunkLayout:
    k: int
    block_bytes: int
    length: int

    def __post_init__(self) -> None:
        if self.k < 1 or self.block_bytes < 1 or self.length < 0:
            raise InvalidArgument(f"bad chunk layout {self}")

    @property
    def stripe_bytes(self) -> int:
        return self.k * self.block_bytes

    @property
    def stripes(self) -> int:
        return -(-self.length // self.stripe_bytes)

    def block_len(self, stripe: int) -> int:
        """Block size of ``stripe`` (every block of the stripe, data and parity, has this size).

        >>> ChunkLayout(2, 4, 10).block_len(0), ChunkLayout(2, 4, 10).block_len(1)
        (4, 1)
        """
        if not 0 <= stripe < self.stripes:
            raise InvalidArgument(f"stripe {stripe} outside 0..{self.stripes - 1}")
        if stripe < self.stripes - 1:
            return self.block_bytes
        rest = self.length - stripe * self.stripe_bytes
        return -(-rest // self.k)

    def stripe_data_len(self, stripe: int) -> int:
        """Real (unpadded) data bytes in ``stripe``."""
        return min(self.stripe_bytes, self.length - stripe * self.stripe_bytes)

    @property
    def shard_length(self) -> int:
        """Bytes in every shard of this chunk.

        >>> ChunkLayout(2, 4, 10).shard_length
        5
        """
        if self.length == 0:
            return 0
        return (self.stripes - 1) * self.block_bytes + self.block_len(self.stripes - 1)

    def stripe_span(self, offset: int, length: int) -> tuple[int, int, int, int]:
        """(first stripe, last stripe, shard offset, shard bytes) covering a chunk byte range:
        what each of k shards must supply to decode those stripes.

        >>> ChunkLayout(2, 4, 10).stripe_span(3, 6)
        (0, 1, 0, 5)
        """
        self._check(offset, length)
        first = offset // self.stripe_bytes
        last = (offset + length - 1) // self.stripe_bytes
        start = first * self.block_bytes
        end = last * self.block_bytes + self.block_len(last)
        return first, last, start, end - start

    def data_pieces(self, offset: int, length: int) -> list[Piece]:
        """The pieces of data shards holding chunk bytes [offset, offset + length), in order.

        >>> [(p.shard, p.shard_offset, p.length) for p in ChunkLayout(2, 4, 10).data_pieces(3, 6)]
        [(0, 3, 1), (1, 0, 4), (0, 4, 1)]
        """
        self._check(offset, length)
        pieces = []
        pos = offset
        end = offset + length
        while pos < end:
            stripe, within = divmod(pos, self.stripe_bytes)
            block = self.block_len(stripe)
            shard, in_block = divmod(within, block)
            take = min(block - in_block, end - pos)
            shard_offset = stripe * self.block_bytes + in_block
            pieces.append(Piece(stripe, shard, shard_offset, take, pos - offset))
            pos += take
        return pieces

    def _check(self, offset: int, length: int) -> None:
        if offset < 0 or length <= 0 or offset + length > self.length:
            raise InvalidArgument(f"range {offset}+{length} outside chunk of {self.length} bytes")


def split_stripe(data: bytes | memoryview, k: int, block: int) -> list[bytes]:
    """One stripe's data cut into k blocks of ``block`` bytes, zero-padded (reference helper).

    >>> split_stripe(b"abcde", 2, 3)
    [b'abc', b'de\\x00']
    """
    padded = bytes(data) + bytes(k * block - len(data))
    return [padded[j * block : (j + 1) * block] for j in range(k)]
