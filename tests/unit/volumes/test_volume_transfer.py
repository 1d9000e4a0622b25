"""Disk images between objects and volumes: import stays thin, export is the exact image."""

from __future__ import annotations

import os

import pytest

from store.errors import Conflict, NoSuchKey, NotFound
from store.node import local_volumes
from store.objects.engine import ObjectEngine
from store.volumes import transfer as volume_transfer
from tests.unit.objects.helpers import BUCKET

MIB = 1 << 20


async def test_import_then_export_round_trip(engine: ObjectEngine) -> None:
    volumes = local_volumes(engine)
    image = os.urandom(3 * MIB) + bytes(6 * MIB) + os.urandom(MIB + 1000)  # not block-aligned
    await engine.put_object(BUCKET, "disk.raw", image, owner="alice")
    volume = await volume_transfer.import_object(volumes, engine, BUCKET, "disk.raw", "vm")
    assert volume.size == -(-len(image) // 4096) * 4096
    async with volumes.open("vm", writable=False) as vol:
        assert await vol.read(0, volume.size) == image + bytes(volume.size - len(image))
        status = await vol.block_status(3 * MIB, 6 * MIB)
        assert status == [(6 * MIB, 3)]  # the zeros were not written: thin
    await volumes.snapshot("vm", "gold")
    version = await volume_transfer.export_volume(volumes, engine, "vm@gold", BUCKET, "gold.raw")
    _, body = await engine.get_object(BUCKET, "gold.raw")
    assert body == image + bytes(volume.size - len(image))
    assert version.size == volume.size
    assert version.metadata["store-volume"] == "vm@gold"


async def test_export_of_an_attached_volume_is_refused(engine: ObjectEngine) -> None:
    volumes = local_volumes(engine)
    await volumes.create("live", 8 * MIB)
    async with volumes.open("live"):
        with pytest.raises(Conflict):
            await volume_transfer.export_volume(volumes, engine, "live", BUCKET, "x.raw")
    with pytest.raises(NoSuchKey):
        await engine.head_object(BUCKET, "x.raw")


async def test_a_failed_import_leaves_no_volume(engine: ObjectEngine) -> None:
    volumes = local_volumes(engine)
    with pytest.raises(NoSuchKey):
        await volume_transfer.import_object(volumes, engine, BUCKET, "missing", "vm")
    with pytest.raises(NotFound):
        await volumes.get("vm")
