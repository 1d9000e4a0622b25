"""``cluster.rebalance``: move objects' chunks to where the newest cluster map places them.

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

Volumes' extents are not moved yet: they stay where their epoch's map put them.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

import trio

from store.chunk.chunkref import ChunkRef
from store.chunk.ids import shard_id
from store.cluster_map import moved_value, pg_key, read_cluster
from store.errors import InvalidArgument, StoreError, Unavailable
from store.meta.api import KV, KeyValue, Put, scan_prefix
from store.objects.chunk_refs import GARBAGE_PREFIX, REFS_PREFIX, refs_from_value
from store.objects.engine import ObjectEngine
from store.placement.hrw import pg_of

log = logging.getLogger(__name__)

BARRIER_TIMEOUT_S = 60.0
READ_GRACE_S = 2.0  # after every gateway switched: reads that began before finish
TXN_OPS = 128


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
    barrier_timeout_s: float = BARRIER_TIMEOUT_S,
    read_grace_s: float = READ_GRACE_S,
) -> dict[str, Any]:
    chunks, kv = engine.chunks, engine.kv
    maps = chunks.maps
    target = maps.current.epoch
    if (await read_cluster(kv)).history is None:
        raise InvalidArgument("the embedded node has one map: there is nothing to rebalance")
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
    prefixes = (REFS_PREFIX, GARBAGE_PREFIX)
    total = 0
    for prefix in prefixes:
        total += sum([1 async for _ in scan_prefix(kv, prefix, keys_only=True)])
    done = 0
    async for item in _records(kv, prefixes):
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
    switched = [pg for pg in range(pg_count) if pg not in failed and maps.moved.get(pg, 0) < target]
    revision = 0
    for first in range(0, len(switched), TXN_OPS):
        batch = switched[first : first + TXN_OPS]
        result = await kv.txn([], [Put(pg_key(pg), moved_value(target)) for pg in batch])
        revision = result.revision
    maps.moved.update(dict.fromkeys(switched, target))  # this gateway at once
    if revision:
        await wait_for_gateways(
            kv, lambda _, seen: seen >= revision, "applied the moved PGs", barrier_timeout_s
        )
        await trio.sleep(read_grace_s)
    deleted = 0
    for ref, changed in moves:
        pg = pg_of(ref.chunk_id, pg_count)
        for index, from_drive, to_drive in changed:
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
        "pgs_failed": sorted(failed),
    }


async def _records(kv: KV, prefixes: tuple[bytes, ...]) -> AsyncIterator[KeyValue]:
    for prefix in prefixes:
        async for item in scan_prefix(kv, prefix):
            yield item
