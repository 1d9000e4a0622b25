"""``cluster.remove``: forget a drive for good, once nothing is found through it any more.

A drive leaves the placement maps in two steps the operator takes first: a weight of 0 (``store
cluster set-weight DRIVE 0``: the next epoch's map no longer names it, so new data avoids it and
the other drives' draws are the only ones left) and ``store cluster rebalance`` (what older maps
placed on it moves to the newest map's drives). Removing is then bookkeeping, refused unless it
is safe:

- its chunk server is stopped (a running one would register the drive again);
- the newest map does not name it, and every gateway has applied that map and recorded every
  chunk it placed by an older one (the rebalancer's barrier);
- no chunk (``R/``) and no volume extent (``VE/``) is placed on it by the map it is read with,
  and no map it is read with names the drive.

Then, in one transaction that compares the epoch and the drive's record as read, its record and
every map that names it go; the gateways' watches drop them from their histories. The scan and
the transaction run under ``CM/rebalance`` (``map_lock``), so no rebalance moves a placement
group between them.
"""

from __future__ import annotations

from typing import Any

from store.admin.rebalance import BARRIER_TIMEOUT_S, map_lock, wait_for_gateways
from store.cluster_map import (
    ALIVE_PREFIX,
    DRIVES_PREFIX,
    EPOCH_KEY,
    REBALANCED_KEY,
    map_key,
    moved_value,
    read_cluster,
)
from store.errors import Conflict, InvalidArgument, NotFound
from store.meta.api import Compare, Delete, Put, scan_prefix
from store.objects.chunk_refs import REFS_PREFIX, refs_from_value
from store.objects.engine import ObjectEngine
from store.placement.hrw import pg_of, place
from store.volumes import records as V
from store.volumes.admin import Volumes

TXN_OPS = 128


async def remove_drive(
    engine: ObjectEngine,
    volumes: Volumes,
    drive_id: str,
    *,
    barrier_timeout_s: float = BARRIER_TIMEOUT_S,
) -> dict[str, Any]:
    """Delete ``drive_id`` from the cluster map, with the maps only it kept alive; the summary."""
    kv = engine.kv
    state = await read_cluster(kv)
    if state.history is None:
        raise InvalidArgument("the embedded node's drives are its own: there is no cluster map")
    record = state.drives.get(drive_id)
    if record is None:
        raise NotFound(f"no drive {drive_id!r} in the cluster map")
    if drive_id in state.alive:
        raise InvalidArgument(
            f"drive {drive_id}'s chunk server is running: stop it (or start it without this "
            "drive) first"
        )
    if any(d.drive_id == drive_id for d in state.history.current.drives):
        raise InvalidArgument(
            f"drive {drive_id} is in the newest placement map (state {record.state}, weight "
            f"{record.weight:g}): `store cluster set-weight {drive_id} 0`, then `store cluster "
            "rebalance`, then remove it"
        )
    async with map_lock(kv, f"the removal of drive {drive_id}"):
        await wait_for_gateways(
            kv,
            lambda settled, seen: settled >= state.epoch and seen >= state.revision,
            f"applied epoch {state.epoch} and recorded the chunks of older ones",
            barrier_timeout_s,
        )
        after = await read_cluster(kv)
        if after.epoch != state.epoch or after.drives.get(drive_id) != record:
            raise Conflict("the cluster map changed meanwhile: try again")
        history = after.history
        assert history is not None
        used = await _epochs_in_use(engine, volumes, drive_id)
        naming = [
            e for e in history.epochs if any(d.drive_id == drive_id for d in history.at(e).drives)
        ]
        if used["chunks_on_it"] or used["extents_on_it"]:
            raise Conflict(
                f"drive {drive_id} still holds {used['chunks_on_it']} chunks' and "
                f"{used['extents_on_it']} volume extents' data: run `store cluster rebalance` "
                "(and see its summary for what it could not move)"
            )
        needed = sorted(set(naming) & used["epochs"])
        if needed:
            raise Conflict(
                f"data is still found through the maps of epochs {needed}, which name drive "
                f"{drive_id}: run `store cluster rebalance` first"
            )
        # Maps first, in batches; the last transaction takes the drive's record with the rest.
        deletes = [Delete(map_key(e)) for e in naming]
        per = TXN_OPS - 2  # room in the last for the record and the fence
        batches = [deletes[i : i + per] for i in range(0, len(deletes), per)]
        drive_key = DRIVES_PREFIX + drive_id.encode()
        for i, batch in enumerate(batches or [[]]):
            last = i == len(batches or [[]]) - 1
            compares = [
                Compare(EPOCH_KEY, "mod", "=", after.epoch_revision),
                Compare(drive_key, "mod", "=", after.drive_revisions[drive_id]),
                Compare.absent(ALIVE_PREFIX + drive_id.encode()),
            ]
            # The last one bumps the commit fence too: chunks a paused gateway placed by a map
            # pruned here can never be recorded after it (objects/common.py).
            ops: list[Put | Delete] = list(batch)
            if last:
                ops += [Delete(drive_key), Put(REBALANCED_KEY, moved_value(state.epoch))]
            if not (await kv.txn(compares, ops)).succeeded:
                raise Conflict("the cluster map changed meanwhile (or the drive came back)")
    return {
        "drive": drive_id,
        "epoch": state.epoch,
        "maps_pruned": naming,
        "chunks_checked": used["chunks"],
        "extents_checked": used["extents"],
    }


async def _epochs_in_use(engine: ObjectEngine, volumes: Volumes, drive_id: str) -> dict[str, Any]:
    """Every epoch whose map some chunk or extent is read with, and how many of them have a
    shard or replica on ``drive_id``."""
    chunks, maps = engine.chunks, engine.chunks.maps
    epochs: set[int] = {maps.current.epoch}
    counts = {"chunks": 0, "chunks_on_it": 0, "extents": 0, "extents_on_it": 0}
    pg_count = maps.current.pg_count
    async for item in scan_prefix(engine.kv, REFS_PREFIX):
        for ref in refs_from_value(item.value):
            counts["chunks"] += 1
            epochs.add(maps.for_chunk(ref.epoch, pg_of(ref.chunk_id, pg_count)).epoch)
            counts["chunks_on_it"] += drive_id in chunks.placement(ref)
    # An extent is read with its reader's replica count: every volume's chain, as it reads it
    # (a layer under several volumes is read from the metadata once).
    layers: dict[str, dict[int, int]] = {}
    for volume in await volumes.list_volumes():
        for layer in await volumes.chain(volume.layer):
            if layer not in layers:
                layers[layer] = await volumes.extent_epochs(layer)
            for index, epoch in layers[layer].items():
                cmap = maps.at(epoch)
                counts["extents"] += 1
                epochs.add(cmap.epoch)
                eid = V.extent_id(layer, index)
                counts["extents_on_it"] += drive_id in place(cmap, eid, volume.replicas)
    return {**counts, "epochs": epochs}
