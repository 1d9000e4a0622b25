"""Disk images between the two APIs, with no client in the middle: a volume made from an object
holding a raw image, and a snapshot (or detached volume) written out as an object."""

from __future__ import annotations

from collections.abc import AsyncIterator

import trio

from store.errors import Conflict
from store.objects.engine import ObjectEngine
from store.objects.records import Version
from store.volumes.admin import Volumes
from store.volumes.open_volume import OpenVolume
from store.volumes.records import DEFAULT_BLOCK_BYTES, Volume

COPY_BYTES = 4 << 20  # read and written in pieces this big


async def import_object(
    volumes: Volumes,
    engine: ObjectEngine,
    bucket: str,
    key: str,
    name: str,
    *,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
    **options: object,
) -> Volume:
    """Create volume ``name`` from object ``bucket/key`` (a raw disk image; its size is rounded
    up to the block size). Blocks of zeros are not written, so the volume stays thin. On any
    failure the new volume is deleted again."""
    version = await engine.head_object(bucket, key)
    size = -(-max(version.size, 1) // block_bytes) * block_bytes
    volume = await volumes.create(name, size, block_bytes=block_bytes, **options)
    try:
        async with volumes.open(name) as opened, engine.open_object(bucket, key) as reader:
            pending = bytearray()
            offset = 0
            async for piece in reader:
                pending += piece
                while len(pending) >= COPY_BYTES:
                    await _write_nonzero(opened, offset, memoryview(pending)[:COPY_BYTES])
                    del pending[:COPY_BYTES]
                    offset += COPY_BYTES
            if pending:
                pending += bytes(-len(pending) % block_bytes)
                await _write_nonzero(opened, offset, memoryview(pending))
            await opened.flush()
    except BaseException:
        with trio.CancelScope(shield=True):
            await volumes.delete(name)
        raise
    return volume


async def _write_nonzero(volume: OpenVolume, offset: int, data: memoryview) -> None:
    """Write the runs of blocks that are not all zeros (bytes comparison: memcmp speed)."""
    block = volume.geometry.block_bytes
    zero = bytes(block)
    start = None
    for at in range(0, len(data) + block, block):
        is_data = at < len(data) and data[at : at + block] != zero
        if is_data and start is None:
            start = at
        elif not is_data and start is not None:
            await volume.write(offset + start, data[start:at])
            start = None


async def export_volume(
    volumes: Volumes, engine: ObjectEngine, name: str, bucket: str, key: str
) -> Version:
    """Write volume ``name`` to ``bucket/key`` as a raw image (owned by the bucket's owner). A
    snapshot never changes; a volume must be detached, or the image would be torn."""
    volume = await volumes.get(name)
    if not volume.readonly and await volumes.attached(name):
        raise Conflict(f"volume {name} is attached: snapshot it and export the snapshot")
    owner = (await engine.get_bucket(bucket)).owner

    # The volume is opened around the upload, not inside the generator: its nursery must not
    # straddle the generator's yields.
    async with volumes.open(name, writable=False) as opened:

        async def image() -> AsyncIterator[bytes]:
            for offset in range(0, volume.size, COPY_BYTES):
                yield bytes(await opened.read(offset, min(COPY_BYTES, volume.size - offset)))

        return await engine.put_object(
            bucket,
            key,
            image(),
            size=volume.size,
            owner=owner,
            content_type="application/octet-stream",
            metadata={"store-volume": name},
        )
