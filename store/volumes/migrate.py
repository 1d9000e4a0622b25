"""Moving one extent to where a newer cluster map places it (``store cluster rebalance``).

An extent's record (``VE/<layer>/<index>``) names the map epoch its replicas were placed by. To
move it: read a good replica whole (every block verified), write it durably to each drive the
target map adds, then switch the record to the target epoch in a transaction that compares the
record as read (and drop its stale marks: every replica the new placement names now holds the
good data), and only then delete the replicas the new placement drops. A reader that still
places the extent by the old epoch finds its old replicas until that switch, and after it gets
NotFound and reads the record again (``OpenVolume``).

Only what nobody writes may be moved this way: a frozen layer (a snapshot's), or a volume's own
layer by the gateway holding the volume open for writing, with the extent exclusive meanwhile.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping

from store.chunk.api import DriveAPI, ExtentGeometry, ExtentImage
from store.errors import Conflict, Corrupt, NotFound, StoreError, Unavailable
from store.meta.api import KV, Compare, Delete, Put
from store.volumes import records as V

log = logging.getLogger(__name__)

_BAD = (Corrupt, NotFound, OSError, Unavailable)  # a source to skip


class SwitchUnknown(Unavailable):
    """The switch's transaction went out and no answer came back, nor could the record be
    read since: whether the extent moved is not known (its writer must stop writing it)."""


async def move_extent(
    kv: KV,
    drives: Mapping[str, DriveAPI],
    place: Callable[[str, int], list[str]],
    layer: str,
    index: int,
    geometry: ExtentGeometry,
    target: int,
    *,
    fence: int = 0,
    owner: bytes = b"",
    switched: Callable[[], None] | None = None,
) -> tuple[int, bool]:
    """Move extent ``index`` of ``layer`` to the drives ``place(eid, target)`` names (``place``
    gives an extent's replica drives by a map epoch); ``switched`` runs once its record names
    ``target``, before the old replicas go. Returns (bytes copied, whether it moved); a record
    already at ``target`` or newer is left alone. A writer passes its ``owner`` key and
    ``fence``: the switch then holds only while that key is still the one it created."""
    eid = V.extent_id(layer, index)
    record = await kv.get(V.extent_key(layer, index))
    if record is None:
        return 0, False  # deleted meanwhile
    epoch = V.extent_epoch(record.value)
    if epoch >= target:
        return 0, False
    stale_kv = await kv.get(V.stale_key(layer, index))
    stale = set(json.loads(stale_kv.value)) if stale_kv is not None else set()
    old, new = place(eid, epoch), place(eid, target)
    good = [d for d in old if d not in stale]
    fill = [d for d in new if d not in old or d in stale]
    copied = 0
    if fill:
        image = await _image(drives, eid, geometry, good)
        for drive_id in fill:
            await drives[drive_id].extent_create(eid, geometry, image, fence=fence)
            copied += geometry.extent_bytes
    compares = [Compare.mod_is(record.key, record.mod_revision)]
    if stale_kv is not None:
        compares.append(Compare.mod_is(stale_kv.key, stale_kv.mod_revision))
    else:
        compares.append(Compare.absent(V.stale_key(layer, index)))
    if owner:  # a writer that lost the volume (paused past its lease) switches nothing
        compares.append(Compare(owner, "create", "=", fence))
    ops: list[Put | Delete] = [
        Put(record.key, V.extent_value(target)),
        Delete(V.stale_key(layer, index)),
    ]
    try:
        succeeded = (await kv.txn(compares, ops)).succeeded
    except (StoreError, OSError) as e:  # it may have been applied: look
        try:
            again = await kv.get(record.key)
        except (StoreError, OSError):
            raise SwitchUnknown(f"extent {eid}: the move's outcome is unknown ({e})") from e
        if again is None or again.mod_revision == record.mod_revision:
            raise  # not applied
        succeeded = V.extent_epoch(again.value) == target  # only its mover changes it
    if not succeeded:
        raise Conflict(f"extent {eid} changed while it was being moved")
    if switched is not None:
        switched()
    for drive_id in old:
        if drive_id not in new:
            try:
                await drives[drive_id].extent_delete(eid)
            except (StoreError, OSError) as e:  # no record names it: unused space, not data
                log.warning("rebalance: the old replica of %s on %s stays: %s", eid, drive_id, e)
    return copied, True


async def _image(
    drives: Mapping[str, DriveAPI], eid: str, geometry: ExtentGeometry, good: list[str]
) -> ExtentImage:
    problems = []
    for drive_id in good:
        try:
            return await drives[drive_id].extent_image(eid, geometry)
        except _BAD as e:
            problems.append(f"{drive_id}: {e}")
    raise Unavailable(f"extent {eid}: no good replica to copy ({'; '.join(problems)})")
