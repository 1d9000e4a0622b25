"""What the chunk layer's modules share: chunk references, sizes, counters, the drive protocol."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from store.chunk.drive import ShardWriter
from store.chunk.shardfile import ShardGeometry
from store.codec.stripe import ChunkLayout
from store.placement.layout import ErasureCoded, Scheme, parse_scheme

CRC_BLOCK_BYTES = 64 << 10  # verification granularity of a read
STRIPE_BLOCK_BYTES = 1 << 20  # per-shard bytes of one full stripe (a multiple of the CRC block)
CHUNK_BYTES = 64 << 20  # data bytes per chunk before a stream rolls over to a new chunk
READ_WINDOW_BYTES = 4 << 20  # per-shard bytes a single read call fetches (mapped, not copied)


class DriveAPI(Protocol):
    """What a chunk store needs from a drive (store.chunk.drive.Drive, or a remote one)."""

    async def create(self, sid: str, block_bytes: int) -> ShardWriter: ...
    async def read(self, sid: str, offset: int = 0, length: int | None = None) -> Any: ...
    async def verify(self, sid: str) -> list[int]: ...
    async def geometry(self, sid: str) -> ShardGeometry: ...
    async def delete(self, sid: str) -> bool: ...
    def list_shards(self) -> AsyncIterator[str]: ...
    async def clean_tmp(self, older_than_s: float = 0.0) -> int: ...


@dataclass(frozen=True, slots=True)
class ChunkRef:
    """Everything needed to find and read a chunk; stored in object metadata."""

    chunk_id: str
    scheme: Scheme
    block_bytes: int
    length: int

    @property
    def k(self) -> int:
        return self.scheme.k if isinstance(self.scheme, ErasureCoded) else 1

    @property
    def layout(self) -> ChunkLayout:
        return ChunkLayout(self.k, self.block_bytes, self.length)

    def to_json(self) -> list[Any]:
        return [self.chunk_id, str(self.scheme), self.block_bytes, self.length]

    @classmethod
    def from_json(cls, value: Sequence[Any]) -> ChunkRef:
        chunk_id, scheme, block_bytes, length = value
        return cls(str(chunk_id), parse_scheme(scheme), int(block_bytes), int(length))


@dataclass(slots=True)
class ChunkStats:
    """Counters since start (exported as metrics)."""

    chunks_written: int = 0
    bytes_written: int = 0
    shard_write_failures: int = 0
    degraded_reads: int = 0
    corrupt_reads: int = 0
    missing_reads: int = 0
    shards_repaired: int = 0


@dataclass(frozen=True, slots=True)
class ShardProblem:
    index: int
    drive_id: str
    kind: str  # "missing" | "corrupt" | "unreadable"
    bad_blocks: tuple[int, ...] = ()
