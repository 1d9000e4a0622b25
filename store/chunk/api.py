"""The drive seam: everything objects and volumes may ask of a drive, local or remote.

Every call is async and takes and returns plain values (ids, offsets, bytes, frozen records), so
the chunk server of a cluster can serve this same interface over the chunk RPC. Nothing here
hands out a path, a file object or a thread runner; the local implementation is
``store.chunk.drive.Drive``, and ``store.testing.drive_conformance`` checks any implementation.

Shards are immutable once committed (``store/chunk/shardfile.py`` has the format). A shard is
written through a ``ShardSink``: blocks appended with the CRC32Cs the encoder computed, then one
``commit`` makes it durable and visible, or ``abort`` leaves nothing. Reads verify every block
they touch: ``read`` returns the bytes asked for, ``read_blocks`` the whole blocks covering them
with their stored CRCs, so a caller across a network can check them again end to end.

Extents are replicas of volume extents, overwritten in place (``store/chunk/extentfile.py``); the
volume's owner (one gateway, under a lease) is their only writer. Every call that changes an
extent carries the owner's **fencing token** (``fence``: its owner key's create revision, higher
for every new owner); a drive remembers, per layer, the highest token it has seen (durably) and
refuses a change carrying a lower one with Conflict, so a former owner that was paused or cut
off can never write again once a newer one has. ``fence=0`` means unfenced (tools, tests).
Reads verify every block;
``sync`` makes written blocks durable; ``image`` reads a whole extent verified, the source of a
copy-on-write or of a repair, which ``create`` writes onto another drive. Block states are
HOLE (never written or punched: reads as zeros), DATA, and ZERO (zeros allocated).

A local drive can serve some calls synchronously from the page cache, cheaper than a thread hop
per 4 KiB request. That is a capability (``inline_extents``), not part of the contract: a remote
drive returns None and the volume layer takes the async calls.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from store.chunk.extentfile import DATA, HOLE, ZERO, ExtentGeometry, ExtentImage
from store.chunk.shardfile import ShardGeometry

__all__ = [
    "DATA",
    "HOLE",
    "ZERO",
    "Buffer",
    "DriveAPI",
    "DriveStat",
    "ExtentGeometry",
    "ExtentImage",
    "InlineExtents",
    "ShardBlocks",
    "ShardGeometry",
    "ShardSink",
]

Buffer = bytes | bytearray | memoryview


@dataclass(frozen=True, slots=True)
class DriveStat:
    total_bytes: int
    free_bytes: int


@dataclass(frozen=True, slots=True)
class ShardBlocks:
    """Whole blocks of a shard, verified where they were read: ``data`` holds blocks
    ``first_block``.. back to back (the last may be the shard's short one); ``crcs`` their
    CRC32Cs as stored, little-endian u32 each."""

    geometry: ShardGeometry
    first_block: int
    data: Buffer
    crcs: bytes


class ShardSink(Protocol):
    """A shard being written; nothing is visible until ``commit``."""

    async def write(self, data: Buffer) -> None:
        """Append bytes (the sink cuts blocks and computes their CRCs)."""

    async def append(self, data: Buffer, crcs: Sequence[int]) -> None:
        """Append whole blocks whose CRC32Cs the caller has (the last append may end short)."""

    async def commit(self) -> ShardGeometry:
        """Durable and visible when this returns."""

    async def abort(self) -> None:
        """Drop what was written (idempotent)."""


class InlineExtents(Protocol):
    """Synchronous extent I/O served without waiting for a device (a local drive's page
    cache). The volume layer uses it for small requests when a drive offers it."""

    def read_now(
        self, eid: str, geometry: ExtentGeometry, offset: int, length: int
    ) -> bytearray | None:
        """The verified bytes, or None when serving them would wait for the device."""

    def write_now(
        self, eid: str, geometry: ExtentGeometry, offset: int, data: Buffer, *, fence: int = 0
    ) -> bool:
        """Write into the page cache now (durable at the next ``extent_sync``); False when it
        cannot be done without waiting (nothing was written: use ``extent_write``)."""


class DriveAPI(Protocol):
    """One drive: shards and extents. Errors: NotFound (absent), Corrupt (a checksum or a
    header fails), InvalidArgument (a bad id or range), OSError (the drive failed)."""

    # -- shards ---------------------------------------------------------------------------------

    async def create(self, sid: str, block_bytes: int) -> ShardSink: ...

    async def read(self, sid: str, offset: int = 0, length: int | None = None) -> Buffer: ...

    async def read_blocks(self, sid: str, offset: int, length: int) -> ShardBlocks: ...

    async def geometry(self, sid: str) -> ShardGeometry: ...

    async def verify(self, sid: str) -> list[int]: ...

    async def delete(self, sid: str) -> bool: ...

    def list_shards(self) -> AsyncIterator[str]: ...

    async def clean_tmp(self, older_than_s: float = 0.0) -> int: ...

    async def stat(self) -> DriveStat: ...

    # -- extents --------------------------------------------------------------------------------

    async def extent_create(
        self,
        eid: str,
        geometry: ExtentGeometry,
        image: ExtentImage | None = None,
        *,
        fence: int = 0,
    ) -> None: ...

    async def extent_read(
        self, eid: str, geometry: ExtentGeometry, offset: int, length: int
    ) -> bytearray: ...

    async def extent_write(
        self, eid: str, geometry: ExtentGeometry, offset: int, data: Buffer, *, fence: int = 0
    ) -> None: ...

    async def extent_zero(
        self,
        eid: str,
        geometry: ExtentGeometry,
        offset: int,
        length: int,
        *,
        punch: bool,
        fence: int = 0,
    ) -> None: ...

    async def extent_sync(self, eid: str, geometry: ExtentGeometry, *, fence: int = 0) -> None: ...

    async def extent_verify(self, eid: str, geometry: ExtentGeometry) -> None: ...

    async def extent_image(self, eid: str, geometry: ExtentGeometry) -> ExtentImage: ...

    async def extent_rebuild(
        self, eid: str, geometry: ExtentGeometry, *, fence: int = 0
    ) -> int: ...

    async def extent_states(
        self, eid: str, geometry: ExtentGeometry, offset: int, length: int
    ) -> bytes: ...

    async def extent_delete(self, eid: str) -> bool: ...

    async def extent_release(self, prefix: str = "", *, save: bool = True) -> None: ...

    def inline_extents(self) -> InlineExtents | None: ...
