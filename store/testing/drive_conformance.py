"""Conformance suite for drive backends (store.chunk.api.DriveAPI): the contract of the drive seam.

Every backend (the local drive; the chunk server's remote drive through the chunk RPC) must pass
every check here. A test runs each of ``DRIVE_CHECKS`` against a fresh, empty drive of its
backend; see tests/unit/chunk/test_drive_conformance.py. The checks speak only the seam (no
paths, no files): what a caller may rely on whichever drive answers. Damage done behind the
drive's back (bit rot, truncation) is backend-specific and tested with each backend.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Awaitable, Callable

import trio

from store.chunk.api import DATA, HOLE, ZERO, DriveAPI, ExtentGeometry, ShardGeometry
from store.chunk.ids import new_chunk_id, shard_id
from store.errors import Conflict, Corrupt, InvalidArgument, NotFound
from store.native import crc32c

DriveCheck = Callable[[DriveAPI], Awaitable[None]]
DRIVE_CHECKS: list[DriveCheck] = []

BLOCK = 4096
G = ExtentGeometry(16 * BLOCK, BLOCK)
HOSTILE_IDS = ["../etc/passwd", "a" * 32, "A" * 32 + ".0", "0" * 32 + ".0/..", "", "0" * 31 + ".0"]


def drive_check(fn: DriveCheck) -> DriveCheck:
    DRIVE_CHECKS.append(fn)
    return fn


async def raises(kind: type[BaseException], call: Awaitable[object]) -> None:
    try:
        await call
    except kind:
        return
    raise AssertionError(f"expected {kind.__name__}")


def new_sid(index: int = 0) -> str:
    return shard_id(new_chunk_id(), index)


def eid(n: int = 1) -> str:
    return f"{n:016x}.{n:x}"


# -- shards -------------------------------------------------------------------------------------


@drive_check
async def shard_write_commit_read(drive: DriveAPI) -> None:
    data = os.urandom(3 * BLOCK + 100)
    sid = new_sid()
    sink = await drive.create(sid, BLOCK)
    for at in range(0, len(data), 5000):  # pieces that do not line up with blocks
        await sink.write(data[at : at + 5000])
    assert await sink.commit() == ShardGeometry(BLOCK, len(data))
    assert bytes(await drive.read(sid)) == data
    assert bytes(await drive.read(sid, BLOCK - 1, 2)) == data[BLOCK - 1 : BLOCK + 1]
    assert await drive.geometry(sid) == ShardGeometry(BLOCK, len(data))
    assert await drive.verify(sid) == []
    assert [s async for s in drive.list_shards()] == [sid]


@drive_check
async def shard_append_keeps_the_callers_crcs(drive: DriveAPI) -> None:
    """Blocks arrive with the CRCs the encoder computed. A block that no longer matches its CRC
    (damaged on the way) is never served as good: the append is refused (Corrupt, a remote
    drive checking on receipt), or reads and verify report the block (a local drive stores the
    CRCs it was given)."""
    blocks = [os.urandom(BLOCK) for _ in range(3)]
    crcs = [crc32c(b) for b in blocks]
    sid = new_sid(1)
    sink = await drive.create(sid, BLOCK)
    await sink.append(b"".join(blocks[:2]), crcs[:2])
    damaged = bytearray(blocks[2])
    damaged[7] ^= 1
    try:
        await sink.append(bytes(damaged), crcs[2:])
    except Corrupt:
        await sink.abort()
        await raises(NotFound, drive.read(sid))
        return
    await sink.commit()
    assert bytes(await drive.read(sid, 0, 2 * BLOCK)) == b"".join(blocks[:2])
    await raises(Corrupt, drive.read(sid, 2 * BLOCK, 10))
    assert await drive.verify(sid) == [2]


@drive_check
async def shard_append_checks_its_arguments(drive: DriveAPI) -> None:
    sink = await drive.create(new_sid(), BLOCK)
    await raises(InvalidArgument, sink.append(bytes(2 * BLOCK), [0]))  # one CRC for two blocks
    await sink.write(b"partial")
    await raises(InvalidArgument, sink.append(bytes(BLOCK), [crc32c(bytes(BLOCK))]))
    await sink.abort()
    await sink.abort()  # idempotent
    await raises(InvalidArgument, sink.write(b"after abort"))


@drive_check
async def shard_read_blocks_returns_whole_blocks_and_crcs(drive: DriveAPI) -> None:
    data = os.urandom(5 * BLOCK + 10)
    sid = new_sid()
    sink = await drive.create(sid, BLOCK)
    await sink.write(data)
    await sink.commit()
    got = await drive.read_blocks(sid, BLOCK + 5, 3 * BLOCK)  # blocks 1..4
    assert got.first_block == 1 and got.geometry == ShardGeometry(BLOCK, len(data))
    assert bytes(got.data) == data[BLOCK : 5 * BLOCK]
    assert struct.unpack(f"<{4}I", got.crcs) == tuple(
        crc32c(data[b * BLOCK : (b + 1) * BLOCK]) for b in range(1, 5)
    )
    tail = await drive.read_blocks(sid, 5 * BLOCK, 10)  # the short last block
    assert bytes(tail.data) == data[5 * BLOCK :] and tail.first_block == 5
    await raises(InvalidArgument, drive.read_blocks(sid, len(data) - 1, 2))


@drive_check
async def shard_uncommitted_is_invisible_and_abort_leaves_nothing(drive: DriveAPI) -> None:
    sid = new_sid()
    sink = await drive.create(sid, BLOCK)
    await sink.write(os.urandom(9000))
    await raises(NotFound, drive.read(sid))
    assert [s async for s in drive.list_shards()] == []
    await sink.abort()
    await raises(NotFound, drive.geometry(sid))
    assert await drive.clean_tmp() == 0


@drive_check
async def shard_ranges_outside_are_refused(drive: DriveAPI) -> None:
    sid = new_sid()
    sink = await drive.create(sid, BLOCK)
    await sink.write(b"x" * 100)
    await sink.commit()
    for offset, length in [(-1, 1), (0, 101), (100, 1), (50, 51)]:
        await raises(InvalidArgument, drive.read(sid, offset, length))
    assert await drive.read(sid, 100, 0) == b""


@drive_check
async def shard_delete_and_missing(drive: DriveAPI) -> None:
    sid = new_sid()
    sink = await drive.create(sid, BLOCK)
    await sink.write(b"gone soon")
    await sink.commit()
    assert await drive.delete(sid)
    assert not await drive.delete(sid)
    for call in (drive.read(sid), drive.geometry(sid), drive.verify(sid)):
        await raises(NotFound, call)
    assert [s async for s in drive.list_shards()] == []


@drive_check
async def shard_hostile_ids_are_refused(drive: DriveAPI) -> None:
    for bad in HOSTILE_IDS:
        await raises(InvalidArgument, drive.create(bad, BLOCK))
        await raises(InvalidArgument, drive.read(bad))
        await raises(InvalidArgument, drive.delete(bad))
    await raises(InvalidArgument, drive.create(new_sid(), 0))  # no such block size


@drive_check
async def shard_commit_replaces_a_shard_whole(drive: DriveAPI) -> None:
    """Repair rewrites a shard under its id: the new one replaces the old at commit, and a
    reader meanwhile sees the old one whole."""
    sid = new_sid()
    old, new = os.urandom(2 * BLOCK), os.urandom(3 * BLOCK)
    sink = await drive.create(sid, BLOCK)
    await sink.write(old)
    await sink.commit()
    sink = await drive.create(sid, BLOCK)
    await sink.write(new)
    assert bytes(await drive.read(sid)) == old
    await sink.commit()
    assert bytes(await drive.read(sid)) == new
    assert [s async for s in drive.list_shards()] == [sid]


@drive_check
async def shard_sink_is_done_after_commit(drive: DriveAPI) -> None:
    sink = await drive.create(new_sid(), BLOCK)
    await sink.write(b"once")
    await sink.commit()
    await raises(InvalidArgument, sink.write(b"again"))
    await raises(InvalidArgument, sink.commit())
    await sink.abort()  # after commit: nothing to drop, the shard stays
    assert len([s async for s in drive.list_shards()]) == 1


@drive_check
async def drive_stat_reports_space(drive: DriveAPI) -> None:
    stat = await drive.stat()
    assert 0 <= stat.free_bytes <= stat.total_bytes and stat.total_bytes > 0


# -- extents ------------------------------------------------------------------------------------


@drive_check
async def extent_starts_as_holes(drive: DriveAPI) -> None:
    await drive.extent_create(eid(), G)
    assert bytes(await drive.extent_read(eid(), G, 0, G.extent_bytes)) == bytes(G.extent_bytes)
    assert await drive.extent_states(eid(), G, 0, G.extent_bytes) == bytes([HOLE]) * G.blocks
    await drive.extent_verify(eid(), G)


@drive_check
async def extent_write_zero_read_states(drive: DriveAPI) -> None:
    await drive.extent_create(eid(), G)
    data = os.urandom(3 * BLOCK)
    await drive.extent_write(eid(), G, BLOCK, data)
    await drive.extent_zero(eid(), G, 6 * BLOCK, 2 * BLOCK, punch=False)
    await drive.extent_write(eid(), G, 10 * BLOCK, os.urandom(2 * BLOCK))
    await drive.extent_zero(eid(), G, 10 * BLOCK, 2 * BLOCK, punch=True)
    assert bytes(await drive.extent_read(eid(), G, BLOCK, 3 * BLOCK)) == data
    assert bytes(await drive.extent_read(eid(), G, 6 * BLOCK, 6 * BLOCK)) == bytes(6 * BLOCK)
    states = await drive.extent_states(eid(), G, 0, G.extent_bytes)
    assert states[:4] == bytes([HOLE, DATA, DATA, DATA])
    assert states[6:8] == bytes([ZERO, ZERO])
    assert set(states[10:12]) <= {HOLE, ZERO}  # punched, or zeros where it cannot punch
    await drive.extent_sync(eid(), G)
    await drive.extent_verify(eid(), G)


@drive_check
async def extent_survives_release_and_reopen(drive: DriveAPI) -> None:
    await drive.extent_create(eid(), G)
    data = os.urandom(2 * BLOCK)
    await drive.extent_write(eid(), G, 4 * BLOCK, data)
    await drive.extent_sync(eid(), G)
    await drive.extent_release()
    assert bytes(await drive.extent_read(eid(), G, 4 * BLOCK, 2 * BLOCK)) == data
    assert (await drive.extent_states(eid(), G, 4 * BLOCK, 2 * BLOCK)) == bytes([DATA, DATA])
    assert await drive.extent_rebuild(eid(), G) == 0  # the tables were right: nothing to fix
    await drive.extent_verify(eid(), G)


@drive_check
async def extent_release_keeps_unsynced_writes(drive: DriveAPI) -> None:
    """Releasing (a volume closing) loses nothing written: not durable until a sync, but
    readable, with its states and checksums, by whoever opens the extent next."""
    await drive.extent_create(eid(), G)
    data = os.urandom(BLOCK)
    await drive.extent_write(eid(), G, 2 * BLOCK, data)
    await drive.extent_zero(eid(), G, 3 * BLOCK, BLOCK, punch=False)
    await drive.extent_release()
    assert bytes(await drive.extent_read(eid(), G, 2 * BLOCK, BLOCK)) == data
    assert await drive.extent_states(eid(), G, 2 * BLOCK, 2 * BLOCK) == bytes([DATA, ZERO])
    await drive.extent_verify(eid(), G)


@drive_check
async def extent_calls_during_a_replacement_see_the_new_file(drive: DriveAPI) -> None:
    """A read that arrives while the extent is being recreated (a repair) must not keep the old
    file open: afterwards every call, writes included, lands in the new one."""
    await drive.extent_create(eid(), G)
    await drive.extent_write(eid(), G, 0, b"x" * BLOCK)
    await drive.extent_sync(eid(), G)
    got: list[bytes] = []

    async def read_meanwhile() -> None:
        got.append(bytes(await drive.extent_read(eid(), G, 0, BLOCK)))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(drive.extent_create, eid(), G)
        await trio.lowlevel.checkpoint()  # the create is under way
        nursery.start_soon(read_meanwhile)
    assert got[0] in (b"x" * BLOCK, bytes(BLOCK))  # before or after: never a mix
    assert bytes(await drive.extent_read(eid(), G, 0, BLOCK)) == bytes(BLOCK)
    await drive.extent_write(eid(), G, BLOCK, b"y" * BLOCK)
    await drive.extent_sync(eid(), G)
    await drive.extent_release()
    assert bytes(await drive.extent_read(eid(), G, BLOCK, BLOCK)) == b"y" * BLOCK
    assert bytes(await drive.extent_read(eid(), G, 0, BLOCK)) == bytes(BLOCK)


@drive_check
async def extent_writes_in_parallel_all_land(drive: DriveAPI) -> None:
    await drive.extent_create(eid(), G)
    blocks = {i: os.urandom(BLOCK) for i in range(G.blocks)}
    async with trio.open_nursery() as nursery:
        for i, data in blocks.items():
            nursery.start_soon(drive.extent_write, eid(), G, i * BLOCK, data)
    whole = bytes(await drive.extent_read(eid(), G, 0, G.extent_bytes))
    assert whole == b"".join(blocks[i] for i in range(G.blocks))
    await drive.extent_sync(eid(), G)
    await drive.extent_verify(eid(), G)


@drive_check
async def extent_image_copies_onto_another_extent(drive: DriveAPI) -> None:
    await drive.extent_create(eid(1), G)
    await drive.extent_write(eid(1), G, 2 * BLOCK, os.urandom(BLOCK))
    await drive.extent_zero(eid(1), G, 5 * BLOCK, BLOCK, punch=False)
    image = await drive.extent_image(eid(1), G)
    await drive.extent_create(eid(2), G, image)
    whole = G.extent_bytes
    assert await drive.extent_read(eid(2), G, 0, whole) == await drive.extent_read(
        eid(1), G, 0, whole
    )
    assert await drive.extent_states(eid(2), G, 0, whole) == image.states
    await drive.extent_write(eid(2), G, 2 * BLOCK, bytes(BLOCK))  # the copy is its own
    assert bytes(await drive.extent_read(eid(1), G, 2 * BLOCK, BLOCK)) == bytes(
        image.data[2 * BLOCK : 3 * BLOCK]
    )


@drive_check
async def extent_create_replaces(drive: DriveAPI) -> None:
    await drive.extent_create(eid(), G)
    await drive.extent_write(eid(), G, 0, os.urandom(BLOCK))
    await drive.extent_create(eid(), G)  # while open, with unsynced tables
    assert bytes(await drive.extent_read(eid(), G, 0, BLOCK)) == bytes(BLOCK)
    assert await drive.extent_states(eid(), G, 0, BLOCK) == bytes([HOLE])
    await drive.extent_verify(eid(), G)


@drive_check
async def extent_ranges_and_geometry_are_checked(drive: DriveAPI) -> None:
    await drive.extent_create(eid(), G)
    for offset, length in [(1, BLOCK), (0, 100), (G.extent_bytes, BLOCK), (-BLOCK, BLOCK)]:
        await raises(InvalidArgument, drive.extent_read(eid(), G, offset, length))
        await raises(InvalidArgument, drive.extent_write(eid(), G, offset, bytes(max(length, 0))))
        await raises(InvalidArgument, drive.extent_zero(eid(), G, offset, length, punch=True))
        await raises(InvalidArgument, drive.extent_states(eid(), G, offset, length))
    other = ExtentGeometry(2 * G.extent_bytes, BLOCK)
    for call in (
        drive.extent_read(eid(), other, 0, BLOCK),
        drive.extent_write(eid(), other, 0, bytes(BLOCK)),
        drive.extent_states(eid(), other, 0, BLOCK),
        drive.extent_sync(eid(), other),
    ):
        try:
            await call
        except (InvalidArgument, Corrupt):
            continue
        raise AssertionError("an extent call with another geometry was served")
    image = await drive.extent_image(eid(), G)
    await raises(InvalidArgument, drive.extent_create(eid(2), other, image))
    await raises(NotFound, drive.extent_read(eid(2), G, 0, BLOCK))  # nothing was made


@drive_check
async def extent_missing_and_delete(drive: DriveAPI) -> None:
    for call in (
        drive.extent_read(eid(9), G, 0, BLOCK),
        drive.extent_states(eid(9), G, 0, BLOCK),
        drive.extent_verify(eid(9), G),
        drive.extent_image(eid(9), G),
    ):
        await raises(NotFound, call)
    assert not await drive.extent_delete(eid(9))
    await drive.extent_create(eid(9), G)
    await drive.extent_write(eid(9), G, 0, b"d" * BLOCK)
    assert await drive.extent_delete(eid(9))
    await raises(NotFound, drive.extent_read(eid(9), G, 0, BLOCK))


@drive_check
async def extent_hostile_ids_are_refused(drive: DriveAPI) -> None:
    for bad in [*HOSTILE_IDS, "0" * 16 + "./x", "g" * 16 + ".1"]:
        for call in (
            drive.extent_create(bad, G),
            drive.extent_read(bad, G, 0, BLOCK),
            drive.extent_write(bad, G, 0, bytes(BLOCK)),
            drive.extent_states(bad, G, 0, BLOCK),
            drive.extent_verify(bad, G),
            drive.extent_image(bad, G),
            drive.extent_rebuild(bad, G),
            drive.extent_delete(bad),
        ):
            await raises(InvalidArgument, call)


@drive_check
async def extent_changes_under_an_older_fence_are_refused(drive: DriveAPI) -> None:
    """A newer owner's token fences the older one off, on every call that changes an extent
    of that layer, and for good; reads are not fenced, other layers not touched."""
    await drive.extent_create(eid(1), G, fence=5)
    await drive.extent_write(eid(1), G, 0, b"a" * BLOCK, fence=5)
    await drive.extent_write(eid(1), G, BLOCK, b"b" * BLOCK, fence=7)  # a new owner
    for call in (
        drive.extent_write(eid(1), G, 0, b"z" * BLOCK, fence=5),
        drive.extent_zero(eid(1), G, 0, BLOCK, punch=True, fence=5),
        drive.extent_sync(eid(1), G, fence=6),
        drive.extent_rebuild(eid(1), G, fence=5),
        drive.extent_create(eid(1), G, fence=5),
    ):
        await raises(Conflict, call)
    assert bytes(await drive.extent_read(eid(1), G, 0, 2 * BLOCK)) == b"a" * BLOCK + b"b" * BLOCK
    inline = drive.inline_extents()
    if inline is not None:
        try:
            written = inline.write_now(eid(1), G, 0, b"z" * BLOCK, fence=5)
        except Conflict:
            written = False
        assert not written
    await drive.extent_sync(eid(1), G, fence=7)
    await drive.extent_release()
    await raises(Conflict, drive.extent_write(eid(1), G, 0, b"z" * BLOCK, fence=6))
    assert bytes(await drive.extent_read(eid(1), G, 0, BLOCK)) == b"a" * BLOCK
    other = "0000000000000002.1"  # another layer: its own owners
    await drive.extent_create(other, G, fence=1)
    await drive.extent_write(other, G, 0, b"o" * BLOCK, fence=1)


@drive_check
async def extent_inline_capability_agrees_with_the_async_calls(drive: DriveAPI) -> None:
    inline = drive.inline_extents()
    if inline is None:
        return  # a remote drive offers none: nothing to check
    await drive.extent_create(eid(), G)
    data = os.urandom(BLOCK)
    if not inline.write_now(eid(), G, 3 * BLOCK, data):
        await drive.extent_write(eid(), G, 3 * BLOCK, data)  # declined: nothing was written
    assert bytes(await drive.extent_read(eid(), G, 3 * BLOCK, BLOCK)) == data
    got = inline.read_now(eid(), G, 3 * BLOCK, BLOCK)
    assert got is None or bytes(got) == data
    await drive.extent_sync(eid(), G)
    await drive.extent_release()
    got = inline.read_now(eid(), G, 3 * BLOCK, BLOCK)
    assert got is None or bytes(got) == data
