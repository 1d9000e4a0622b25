"""A volume request cut into the pieces that fall in one extent each, and work fanned out at once
over pieces or over an extent's replica drives (structured: one nursery per fan-out)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass

import trio

from store.errors import Conflict, StoreError


@dataclass(frozen=True, slots=True)
class Piece:
    """The part of a request that falls in one extent."""

    index: int  # extent number
    offset: int  # within the extent
    length: int
    at: int  # within the request


def split(offset: int, length: int, extent_bytes: int) -> Iterator[Piece]:
    """The pieces of ``length`` bytes at ``offset``, in order."""
    at = 0
    while at < length:
        index, within = divmod(offset + at, extent_bytes)
        n = min(extent_bytes - within, length - at)
        yield Piece(index, within, n, at)
        at += n


async def on_drives(
    drives: list[str], work: Callable[[str], Awaitable[None]]
) -> dict[str, Exception]:
    """``work`` for every drive at once; the drives it failed on (OSError, StoreError), and why.
    A Conflict (a drive fenced this writer off: a newer owner holds the volume) is no failure of
    the drive: it is raised, once every drive has answered."""
    failed: dict[str, Exception] = {}
    fenced: list[Conflict] = []

    async def one(drive_id: str) -> None:
        try:
            await work(drive_id)
        except Conflict as e:
            fenced.append(e)
        except (OSError, StoreError) as e:
            failed[drive_id] = e

    async with trio.open_nursery() as nursery:
        for drive_id in drives:
            nursery.start_soon(one, drive_id)
    if fenced:
        raise fenced[0]
    return failed


async def each_piece(work: Callable[[Piece], Awaitable[None]], pieces: Iterable[Piece]) -> None:
    """``work`` on every piece at once; the first StoreError raised as it is (not in a group)."""
    errors: list[StoreError] = []

    async def one(piece: Piece) -> None:
        try:
            await work(piece)
        except StoreError as e:
            errors.append(e)

    async with trio.open_nursery() as nursery:
        for piece in pieces:
            nursery.start_soon(one, piece)
    if errors:
        raise errors[0]
