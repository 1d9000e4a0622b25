"""I/O not aligned to a volume's block size, done with aligned I/O (store/volumes/open_volume.py
sends such calls here; the NBD endpoint advertises a minimum block of 1 so clients that ignore
block sizes, like the Linux kernel's 512-byte I/O, are served rather than refused).

Blocks are checksummed whole, so a write covering part of a block reads that block, patches it
and writes it back (read-modify-write). Two such writes to one block would lose one if they
interleaved, so patches take turns: one lock per open volume, held for a partial block's read
and write only; the whole blocks in the middle of a write go straight through. A patch racing an
aligned write of the same block overlaps it, and the NBD spec leaves overlapping writes in flight
unordered. Reads round out to whole blocks and slice. Zeroing zeroes the whole blocks inside and
patches zeros over the partial ones. A trim, advisory, discards only the whole blocks inside (the
spec lets a server discard less than asked). Block status rounds out and reports the range asked.
"""

from __future__ import annotations

from typing import Protocol

import trio


class BlockIO(Protocol):
    """The aligned calls of an open volume (OpenVolume)."""

    block_bytes: int
    patch_lock: trio.Lock

    async def read(self, offset: int, length: int) -> bytes | bytearray: ...

    async def write(self, offset: int, data: bytes | memoryview, *, fua: bool = False) -> None: ...

    async def write_zeroes(
        self, offset: int, length: int, *, punch: bool = True, fua: bool = False
    ) -> None: ...

    async def trim(self, offset: int, length: int, *, fua: bool = False) -> None: ...

    async def block_status(self, offset: int, length: int) -> list[tuple[int, int]]: ...


def is_aligned(block: int, offset: int, length: int) -> bool:
    return not (offset % block or length % block)


def _down(block: int, n: int) -> int:
    return n - n % block


def _up(block: int, n: int) -> int:
    return -(-n // block) * block


async def read(volume: BlockIO, offset: int, length: int) -> bytes | bytearray:
    block = volume.block_bytes
    start = _down(block, offset)
    data = await volume.read(start, _up(block, offset + length) - start)
    return data[offset - start : offset - start + length]


async def write(volume: BlockIO, offset: int, data: bytes | memoryview, *, fua: bool) -> None:
    view = memoryview(data)
    block, end = volume.block_bytes, offset + len(view)
    at = offset
    if at % block:  # the partial block at the start (perhaps the whole write)
        stop = min(end, _up(block, at))
        await _patch(volume, at, view[: stop - offset], fua=fua)
        at = stop
    whole_end = _down(block, end)
    if at < whole_end:
        await volume.write(at, view[at - offset : whole_end - offset], fua=fua)
        at = whole_end
    if at < end:  # the partial block at the end
        await _patch(volume, at, view[at - offset :], fua=fua)


async def write_zeroes(
    volume: BlockIO, offset: int, length: int, *, punch: bool, fua: bool
) -> None:
    block, end = volume.block_bytes, offset + length
    inner_start, inner_end = _up(block, offset), _down(block, end)
    if inner_start >= inner_end:  # within one block, or two partial ones
        await write(volume, offset, bytes(length), fua=fua)
        return
    if offset < inner_start:
        await _patch(volume, offset, bytes(inner_start - offset), fua=fua)
    await volume.write_zeroes(inner_start, inner_end - inner_start, punch=punch, fua=fua)
    if inner_end < end:
        await _patch(volume, inner_end, bytes(end - inner_end), fua=fua)


async def trim(volume: BlockIO, offset: int, length: int, *, fua: bool) -> None:
    block = volume.block_bytes
    inner_start, inner_end = _up(block, offset), _down(block, offset + length)
    if inner_start < inner_end:
        await volume.trim(inner_start, inner_end - inner_start, fua=fua)


async def block_status(volume: BlockIO, offset: int, length: int) -> list[tuple[int, int]]:
    block = volume.block_bytes
    start = _down(block, offset)
    runs = await volume.block_status(start, _up(block, offset + length) - start)
    skip, left = offset - start, length  # skip: the rounded range before the range asked
    out: list[tuple[int, int]] = []
    for n, flags in runs:
        if skip >= n:
            skip -= n
            continue
        n, skip = min(n - skip, left), 0
        out.append((n, flags))
        left -= n
        if not left:
            break
    return out


async def _patch(volume: BlockIO, at: int, piece: memoryview | bytes, *, fua: bool) -> None:
    """Write ``piece`` (within one block) at ``at`` by rewriting its whole block."""
    start = _down(volume.block_bytes, at)
    async with volume.patch_lock:
        data = bytearray(await volume.read(start, volume.block_bytes))
        data[at - start : at - start + len(piece)] = piece
        await volume.write(start, memoryview(data), fua=fua)
