"""What the chunk layer's modules share: chunk references, sizes, counters (the drive protocol is
in api.py)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from store.codec.stripe import ChunkLayout
from store.placement.layout import ErasureCoded, Scheme, parse_scheme

CRC_BLOCK_BYTES = 64 << 10  # verification granularity of a read
STRIPE_BLOCK_BYTES = 1 << 20  # per-shard bytes of one full stripe (a multiple of the CRC block)
CHUNK_BYTES = 64 << 20  # data bytes per chunk before a stream rolls over to a new chunk
READ_WINDOW_BYTES = 4 << 20  # per-shard bytes a single read call fetches (mapped, not copied)


@dataclass(frozen=True, slots=True)
class ChunkRef:
    """Everything needed to find and read a chunk; stored in object metadata. ``epoch`` is the
    cluster map's epoch the chunk was placed under (so a rebalance can tell which map put its
    shards where they are; 0 in records older than the field)."""

    chunk_id: str
    scheme: Scheme
    block_bytes: int
    length: int
    epoch: int = 0

    @property
    def k(self) -> int:
        return self.scheme.k if isinstance(self.scheme, ErasureCoded) else 1

    @property
    def layout(self) -> ChunkLayout:
        return ChunkLayout(self.k, self.block_bytes, self.length)

    def to_json(self) -> list[Any]:
        return [self.chunk_id, str(self.scheme), self.block_bytes, self.length, self.epoch]

    @classmethod
    def from_json(cls, value: Sequence[Any]) -> ChunkRef:
        """The inverse of ``to_json`` (which older records wrote without the epoch).

        >>> ChunkRef.from_json(["ab" * 16, "ec:4+2", 1048576, 10, 3]).epoch
        3
        >>> ChunkRef.from_json(["ab" * 16, "ec:4+2", 1048576, 10]).epoch
        0
        """
        chunk_id, scheme, block_bytes, length, *rest = value
        epoch = int(rest[0]) if rest else 0
        return cls(str(chunk_id), parse_scheme(scheme), int(block_bytes), int(length), epoch)


@dataclass(slots=True)
class ChunkStats:
    """Counters since start (exported as metrics)."""

    chunks_written: int = 0
    bytes_written: int = 0
    shard_write_failures: int = 0
    degraded_reads: int = 0
    hedged_reads: int = 0  # reads that decoded around a slow shard
    corrupt_reads: int = 0
    missing_reads: int = 0
    shards_repaired: int = 0


@dataclass(frozen=True, slots=True)
class ShardProblem:
    index: int
    drive_id: str
    kind: str  # "missing" | "corrupt" | "unreadable"
    bad_blocks: tuple[int, ...] = ()
