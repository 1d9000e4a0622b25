"""Moving volumes' extents to the newest map's drives, the volume half of ``cluster.rebalance``.

Frozen layers (snapshots', which nobody writes) are moved here directly, extent by extent
(store/volumes/migrate.py). A volume's own layer is moved by its writer, with each extent
exclusive while it moves: the gateway holding the volume open is asked to (a ``migrate``
request through the volume's mailbox, store/volumes/requests.py, answered in rounds of a few
seconds); a volume nobody holds is opened for writing here (its lease fences any other writer
meanwhile: an attach elsewhere is refused until it is done). A volume whose move fails is
named in the summary and left where it was, to be moved by the next run.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from store.chunk.api import ExtentGeometry
from store.errors import StoreError
from store.volumes import records as V
from store.volumes import requests as volume_requests
from store.volumes.admin import Volumes
from store.volumes.migrate import move_extent

log = logging.getLogger(__name__)


async def move_volumes(volumes: Volumes, target: int) -> dict[str, Any]:
    """Every extent placed by a map older than ``target``, moved to ``target``'s drives."""
    listed = sorted(await volumes.list_volumes(), key=lambda v: v.name)
    writable = {v.layer: v for v in listed if not v.readonly}
    frozen: dict[str, V.Volume] = {}  # layer -> a volume reading it (its replicas, geometry)
    for volume in listed:
        for layer in await volumes.chain(volume.layer):
            if layer not in writable:
                frozen.setdefault(layer, volume)
    moved = copied = 0
    failed: list[str] = []
    for layer, volume in frozen.items():
        geometry = ExtentGeometry(volume.extent_bytes, volume.block_bytes)

        def place(eid: str, epoch: int, replicas: int = volume.replicas) -> list[str]:
            return volumes.replica_drives(eid, replicas, epoch)

        for index, epoch in sorted((await volumes.extent_epochs(layer)).items()):
            if epoch >= target:
                continue
            try:
                n, switched = await move_extent(
                    volumes.kv, volumes.drives, place, layer, index, geometry, target
                )
            except (StoreError, OSError) as e:
                failed.append(f"{volume.name} (layer {layer}, extent {index}): {e}")
                log.warning("rebalance: extent %d of layer %s not moved: %s", index, layer, e)
                continue
            copied += n
            moved += switched
    for volume in writable.values():
        epochs = await volumes.extent_epochs(volume.layer)
        if all(epoch >= target for epoch in epochs.values()):
            continue
        try:
            done = await _move_writable(volumes, volume.name, target)
        except (StoreError, OSError) as e:
            failed.append(f"{volume.name}: {e}")
            log.warning("rebalance: volume %s not moved: %s", volume.name, e)
            continue
        copied += done["bytes_copied"]
        moved += done["extents_moved"]
    return {"extents_moved": moved, "extent_bytes_copied": copied, "volumes_failed": failed}


async def _move_writable(volumes: Volumes, name: str, target: int) -> dict[str, int]:
    """The writer moves its volume's own extents: the gateway that has it open, in rounds, or
    this one, opening it."""
    total = {"extents_moved": 0, "bytes_copied": 0, "extents_left": 0}
    while True:
        try:
            result = await volume_requests.ask_owner(volumes.kv, name, "migrate", {"epoch": target})
        except volume_requests.NotAttached:
            async with volumes.open(name) as opened:
                result = await opened.migrate(target, budget_s=math.inf)
        for key in total:
            total[key] = total[key] + int(result[key]) if key != "extents_left" else result[key]
        if not result["extents_left"]:
            return total
