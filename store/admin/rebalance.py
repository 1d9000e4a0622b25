"""``cluster.rebalance``: move chunks and volume extents to where the newest map places them.

After a drive is drained, taken out, reweighted or added, new chunks follow the new map but
what was written before stays where its own epoch's map put it. The rebalancer moves it, one
placement group (PG) at a time in effect, never making data unreachable:

1. Barrier: wait until every gateway (``CM/gateways/``) places new chunks by the target epoch
   and holds no unrecorded chunk of an older one, so every older chunk is named by a reference
   (``R/``) or garbage (``G/``) record.
2. Copy: for every chunk of those records placed by an older map, write each shard whose drive
   changes to its new drive (read where it is, decoded from the others if it cannot be read).
   Readers still use the old places, where every shard still is.
3. Switch: record each PG whose chunks all copied as moved to the target epoch (``CM/pgs/``);
   gateways then find those chunks at their new places.
4. Barrier: wait until every gateway has applied the switch, then a grace for reads in flight.
5. Delete the old copies (and, for a PG whose copy failed, the new copies: it stays as it was,
   to be moved by the next run).

6. Volumes' extents placed by older maps: moved extent by extent, frozen layers here and each
   volume's own layer by its writer (store/admin/rebalance_volumes.py).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import trio

from store.admin.rebalance_volumes import move_volumes
from store.chunk.chunkref import ChunkRef
from store.chunk.ids import shard_id
from store.cluster_map import (
    PGS_PREFIX,
    REBALANCE_LOCK,
    REBALANCED_KEY,
    moved_value,
    pg_key,
    read_cluster,
)
from store.errors import (
    Conflict,
    InvalidArgument,
    StoreError,
    Unavailable,
    collapse_single_group,
)
from store.meta.api import KV, Compare, Put, prefix_end, scan_prefix
from store.objects.chunk_refs import REFS_PREFIX, refs_from_value
from store.objects.engine import ObjectEngine
from store.placement.hrw import pg_of
from store.volumes.admin import Volumes

log = logging.getLogger(__name__)

BARRIER_TIMEOUT_S = 60.0
READ_GRACE_S = 2.0  # after every gateway switched: reads that began before finish
TXN_OPS = 128
LOCK_TTL_S = 15


async def wait_for_gateways(
    kv: KV, ready: Callable[[int, int], bool], what: str, timeout_s: float = BARRIER_TIMEOUT_S
) -> None:
    """Until ``ready(settled, revision)`` holds for every live gateway's report."""
    late: list[str] = []
    with trio.move_on_after(timeout_s):
        while True:
            state = await read_cluster(kv)
            late = sorted(n for n, (s, r) in state.gateways.items() if not ready(s, r))
            if not late:
                return
            await trio.sleep(0.2)
    raise Unavailable(f"gateways {', '.join(late)} have not {what} after {timeout_s:.0f} s")


async def rebalance(
    engine: ObjectEngine,
    progress: Callable[[int, int], None] | None = None,
    *,
    volumes: Volumes | None = None,
    barrier_timeout_s: float = BARRIER_TIMEOUT_S,
    read_grace_s: float = READ_GRACE_S,
) -> dict[str, Any]:
    """One rebalance at a time in the cluster (``map_lock``): objects' chunks, then (given
    ``volumes``) volumes' extents."""
    if (await read_cluster(engine.kv)).history is None:
        raise InvalidArgument("the embedded node has one map: there is nothing to rebalance")
    async with map_lock(engine.kv, "a rebalance"):
        summary = await _rebalance(engine, progress, barrier_timeout_s, read_grace_s)
        if volumes is not None:
            summary.update(await move_volumes(volumes, summary["epoch"]))
        return summary


@asynccontextmanager
async def map_lock(kv: KV, what: str) -> AsyncIterator[None]:
    """Exclusive work on where data is (a rebalance, a drive's removal): ``CM/rebalance``, a
    key on a lease of its own kept alive while the body runs."""
    lease = await kv.lease_grant(LOCK_TTL_S)
    try:
        held = await kv.txn(
            [Compare.absent(REBALANCE_LOCK)], [Put(REBALANCE_LOCK, what.encode(), lease=lease)]
        )
        if not held.succeeded:
            running = await kv.get(REBALANCE_LOCK)
            doing = running.value.decode(errors="replace") if running else "another change"
            raise Conflict(f"{doing} is already running (CM/rebalance): wait for it")
        with collapse_single_group():  # the job's own error, not a group of one
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_keep, kv, lease)
                yield
                nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(5):
            await kv.lease_revoke(lease)


async def _keep(kv: KV, lease: int) -> None:
    while True:
        await trio.sleep(LOCK_TTL_S / 3)
        await kv.lease_keepalive(lease)


async def _rebalance(
    engine: ObjectEngine,
    progress: Callable[[int, int], None] | None,
    barrier_timeout_s: float,
    read_grace_s: float,
) -> dict[str, Any]:
    chunks, kv = engine.chunks, engine.kv
    maps = chunks.maps
    target = (await read_cluster(kv)).epoch  # the cluster's newest, not only what we know
    with trio.move_on_after(barrier_timeout_s):
        while maps.current.epoch < target:  # noqa: ASYNC110 (the history is pure)
            await trio.sleep(0.05)
    if maps.current.epoch < target:
        raise Unavailable(f"this gateway has not seen epoch {target} of the cluster map")
    found = await kv.range(PGS_PREFIX, prefix_end(PGS_PREFIX))
    pg_revisions = {int(i.key[len(PGS_PREFIX) :], 16): i.mod_revision for i in found.kvs}
    await wait_for_gateways(
        kv,
        lambda settled, _: settled >= target,
        f"settled on epoch {target} (chunks of older epochs still unrecorded)",
        barrier_timeout_s,
    )
    pg_count = maps.current.pg_count
    moves: list[tuple[ChunkRef, list[tuple[int, str, str]]]] = []
    failed: set[int] = set()
    copied_bytes = checked = 0
    # Garbage (G/) is not moved: the collector deletes where the newest placement says (absent
    # shards are fine) and the orphan sweep takes the old copies once no record names them.
    total = sum([1 async for _ in scan_prefix(kv, REFS_PREFIX, keys_only=True)])
    done = 0
    async for item in scan_prefix(kv, REFS_PREFIX):
        for ref in refs_from_value(item.value):
            checked += 1
            pg = pg_of(ref.chunk_id, pg_count)
            if max(ref.epoch, maps.moved.get(pg, 0)) >= target or pg in failed:
                continue
            src = chunks.placement(ref)
            dst = chunks.placement(replace(ref, epoch=target))
            changed = [(i, src[i], dst[i]) for i in range(len(src)) if src[i] != dst[i]]
            if not changed:
                continue
            moves.append((ref, changed))
            try:
                for index, _, to_drive in changed:
                    copied_bytes += await chunks.copy_shard(ref, index, to_drive)
            except (StoreError, OSError) as e:
                log.warning("rebalance: chunk %s not copied (PG %d stays): %s", ref.chunk_id, pg, e)
                failed.add(pg)
        done += 1
        if progress is not None:
            progress(min(done, total), total)
    candidates = [
        pg for pg in range(pg_count) if pg not in failed and maps.moved.get(pg, 0) < target
    ]
    switched: list[int] = []
    changed_under_us: set[int] = set()
    revision = 0
    for first in range(0, len(candidates), TXN_OPS - 1):
        batch = candidates[first : first + TXN_OPS - 1]
        # Each group exactly as read at the start (another rebalance may not have moved it),
        # and the fence key bumped: a commit of chunks placed before this (a paused gateway's,
        # or one whose map lagged) now fails and is retried by its client.
        compares = [Compare(pg_key(pg), "mod", "=", pg_revisions.get(pg, 0)) for pg in batch]
        ops = [Put(pg_key(pg), moved_value(target)) for pg in batch]
        result = await kv.txn(compares, [*ops, Put(REBALANCED_KEY, moved_value(target))])
        if result.succeeded:
            switched += batch
            revision = result.revision
        else:
            changed_under_us.update(batch)
    maps.moved.update(dict.fromkeys(switched, target))  # this gateway at once
    maps.revision = max(maps.revision, revision)
    if revision:
        await wait_for_gateways(
            kv, lambda _, seen: seen >= revision, "applied the moved PGs", barrier_timeout_s
        )
        await trio.sleep(read_grace_s)
    deleted = 0
    for ref, changed in moves:
        pg = pg_of(ref.chunk_id, pg_count)
        for index, from_drive, to_drive in changed:
            if pg in changed_under_us:
                continue  # someone else moved it: its copies are theirs to judge; leave both
            stale = to_drive if pg in failed else from_drive
            try:
                deleted += await chunks.drives[stale].delete(shard_id(ref.chunk_id, index))
            except (StoreError, OSError) as e:  # left behind: the next run or scrub sees it
                log.warning(
                    "rebalance: shard %d of %s stays on %s: %s", index, ref.chunk_id, stale, e
                )
    return {
        "epoch": target,
        "chunks_checked": checked,
        "chunks_moved": sum(1 for ref, _ in moves if pg_of(ref.chunk_id, pg_count) not in failed),
        "shards_copied": sum(len(c) for _, c in moves),
        "bytes_copied": copied_bytes,
        "old_shards_deleted": deleted,
        "pgs_switched": len(switched),
        "pgs_failed": sorted(failed | changed_under_us),
    }
