"""Housekeeping: garbage collection, the orphan sweep, scrub and heal.

- **Garbage collection** works through the G/ queue: remove a chunk's shards from every drive,
  then drop its G/ and R/ entries in one transaction. A crash in between repeats the removal,
  which is idempotent.
- **The orphan sweep** removes shards whose chunk has no R/ entry: chunks a crash left behind
  after writing data and before committing the metadata that would name it. A chunk id carries its
  creation time, and only chunks older than the grace period (and not being written by this
  process) are touched, so an upload in progress is never swept.
- **Scrub** reads every shard of every chunk named in R/ and verifies every block checksum;
  **heal** does the same and rewrites the shards that are missing, corrupt or unreadable (onto a
  replaced, empty drive too) from the others. Both can be paced to a byte rate, report progress,
  and return counters.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import trio

from store.chunk.ids import chunk_created
from store.errors import StoreError
from store.meta.api import KV, MAX_TXN_OPS, Compare, Delete, prefix_end, scan_prefix
from store.objects import chunk_refs as CR
from store.objects import records as R
from store.objects.engine import ObjectEngine
from store.objects.lifecycle import LifecycleRunner

log = logging.getLogger(__name__)

ORPHAN_GRACE_S = 6 * 3600.0


@dataclass(slots=True)
class ScrubReport:
    chunks: int = 0
    shards_checked: int = 0
    bytes_checked: int = 0
    missing: int = 0
    corrupt: int = 0
    corrupt_blocks: int = 0
    unreadable: int = 0
    repaired: int = 0
    unrepairable: int = 0
    seconds: float = 0.0

    @property
    def clean(self) -> bool:
        return not (self.missing or self.corrupt or self.unreadable)

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


class Pacer:
    """Sleep so that work reported through ``__call__`` stays under ``rate`` bytes/s."""

    def __init__(self, rate_bytes_s: float | None) -> None:
        self.rate = rate_bytes_s
        self.start = trio.current_time()
        self.done = 0

    async def __call__(self, nbytes: int) -> None:
        self.done += nbytes
        if self.rate:
            ahead = self.done / self.rate - (trio.current_time() - self.start)
            if ahead > 0:
                await trio.sleep(ahead)


Progress = Callable[[int, int], None]


async def count_chunks(engine: ObjectEngine) -> int:
    count = 0
    async for kv in scan_prefix(engine.kv, CR.REFS_PREFIX, page_size=100):
        count += len(CR.refs_from_value(kv.value))
    return count


async def find_ref(kv: KV, chunk_id: str) -> R.ChunkRef | None:
    """The reference the metadata holds for a chunk, or None if nothing names it."""
    found = await kv.get(CR.ref_key(chunk_id))
    if found is not None:
        for ref in CR.refs_from_value(found.value):
            if ref.chunk_id == chunk_id:
                return ref
    legacy = await kv.get(CR.legacy_ref_key(chunk_id))
    return None if legacy is None else CR.refs_from_value(legacy.value)[0]


async def scrub(
    engine: ObjectEngine,
    *,
    repair: bool = False,
    rate_bytes_s: float | None = None,
    progress: Progress | None = None,
) -> ScrubReport:
    """Verify (and with ``repair``, heal) every chunk the metadata names."""
    report = ScrubReport()
    began = time.monotonic()
    total = await count_chunks(engine) if progress else 0
    pace = Pacer(rate_bytes_s)
    async for kv in scan_prefix(engine.kv, CR.REFS_PREFIX, page_size=20):
        for ref in CR.refs_from_value(kv.value):
            await _scrub_chunk(engine, ref, report, repair, pace)
            if progress:
                progress(report.chunks, max(total, report.chunks))
    report.seconds = time.monotonic() - began
    return report


async def _scrub_chunk(
    engine: ObjectEngine, ref: R.ChunkRef, report: ScrubReport, repair: bool, pace: Pacer
) -> None:
    report.chunks += 1
    width = ref.scheme.width
    report.shards_checked += width
    shard_bytes = ref.layout.shard_length
    report.bytes_checked += shard_bytes * width
    problems = await engine.chunks.check(ref)
    await pace(shard_bytes * width)
    for p in problems:
        if p.kind == "missing":
            report.missing += 1
        elif p.kind == "corrupt":
            report.corrupt += 1
            report.corrupt_blocks += len(p.bad_blocks)
        else:
            report.unreadable += 1
    if problems:
        log.warning(
            "chunk %s: %s", ref.chunk_id, ", ".join(f"shard {p.index} {p.kind}" for p in problems)
        )
    if repair and problems:
        try:
            await engine.chunks.repair(ref, [p.index for p in problems], pace)
            report.repaired += len(problems)
            engine.damaged.discard(ref.chunk_id)
        except StoreError as e:
            report.unrepairable += len(problems)
            log.error("chunk %s could not be repaired: %s", ref.chunk_id, e)


async def heal_damaged(engine: ObjectEngine, *, rate_bytes_s: float | None = None) -> int:
    """Check and repair the chunks reads found damaged; returns shards repaired."""
    repaired = 0
    pace = Pacer(rate_bytes_s)
    for chunk_id in list(engine.damaged):
        engine.damaged.discard(chunk_id)
        ref = await find_ref(engine.kv, chunk_id)
        if ref is None:
            continue
        report = ScrubReport()
        await _scrub_chunk(engine, ref, report, True, pace)
        repaired += report.repaired
    return repaired


async def collect_garbage(engine: ObjectEngine, *, limit: int | None = None) -> int:
    """Remove the chunks queued in G/; returns how many were removed. A record goes once all
    its chunks are gone: their reference records first, then the record itself, in
    transactions of at most MAX_TXN_OPS (a crash in between leaves a record whose chunks are
    gone already, which the next pass finishes)."""
    removed = 0
    start, end = CR.GARBAGE_PREFIX, prefix_end(CR.GARBAGE_PREFIX)
    while limit is None or removed < limit:
        page = await engine.kv.range(start, end, limit=20)
        for kv in page.kvs:
            refs = CR.refs_from_value(kv.value)
            try:
                for ref in refs:
                    await engine.chunks.delete(ref)
            except StoreError as e:
                log.warning("garbage chunks of %s not removed yet: %s", kv.key, e)
                continue
            if CR.is_legacy_record(kv.value):
                names = [CR.legacy_ref_key(r.chunk_id) for r in refs]
            else:
                names = sorted(CR.grouped_refs(refs))
            for at in range(0, len(names), MAX_TXN_OPS):
                await engine.kv.txn([], [Delete(k) for k in names[at : at + MAX_TXN_OPS]])
            await engine.kv.txn([Compare.exists(kv.key)], [Delete(kv.key)], [])
            removed += len(refs)
        if not page.more:
            break
        start = page.kvs[-1].key + b"\0"
    engine.stats.garbage_collected += removed
    return removed


async def sweep_orphans(
    engine: ObjectEngine, *, grace_s: float = ORPHAN_GRACE_S, dry_run: bool = False
) -> int:
    """Remove (or with ``dry_run`` count) shards of chunks no metadata names, and temporary
    files of writes that stopped more than ``grace_s`` ago (a worker that crashed)."""
    cutoff = time.time() - grace_s
    known: dict[str, bool] = {}
    found = 0
    for drive in list(engine.chunks.drives.values()):  # a drive may be removed meanwhile
        if not dry_run:
            try:
                await drive.clean_tmp(older_than_s=grace_s)
            except OSError as e:
                log.warning("cannot clean a drive's tmp directory: %s", e)
        try:
            sids = [sid async for sid in drive.list_shards()]
        except OSError as e:
            log.warning("cannot list a drive: %s", e)
            continue
        for sid in sids:
            chunk_id = sid.partition(".")[0]
            if chunk_id in engine.chunks.inflight or chunk_created(chunk_id) > cutoff:
                continue
            if chunk_id not in known:
                known[chunk_id] = await find_ref(engine.kv, chunk_id) is not None
            if known[chunk_id]:
                continue
            found += 1
            if not dry_run:
                await drive.delete(sid)
    if not dry_run:
        engine.stats.orphans_removed += found
    return found


async def run_housekeeping(
    engine: ObjectEngine,
    *,
    gc_interval_s: float = 30.0,
    scrub_interval_s: float = 7 * 24 * 3600.0,
    scrub_rate_bytes_s: float = 50e6,
    primary: bool = True,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Background loop: collect garbage, heal what reads found damaged, sweep orphans, and scrub
    everything (rate limited) once per ``scrub_interval_s``. Of several processes serving one
    data directory only the ``primary`` collects, sweeps and scrubs; each heals what its own
    reads found damaged."""
    task_status.started()
    last_scrub = time.monotonic()
    while True:
        try:
            if primary:
                await collect_garbage(engine)
            await heal_damaged(engine, rate_bytes_s=scrub_rate_bytes_s)
            if primary:
                await sweep_orphans(engine)
                await engine.multipart.expire_completed()
            if primary and time.monotonic() - last_scrub > scrub_interval_s:
                last_scrub = time.monotonic()
                report = await scrub(engine, repair=True, rate_bytes_s=scrub_rate_bytes_s)
                log.info("scrub: %s", report.as_dict())
        except StoreError as e:
            log.warning("housekeeping pass failed: %s", e)
        await trio.sleep(gc_interval_s)


async def run_lifecycle(
    engine: ObjectEngine,
    *,
    day_s: float = 86400.0,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Background loop: apply buckets' lifecycle rules (engine/lifecycle.py) batch by batch,
    then rest; the rest is a fraction of a day (``day_s``), at most an hour."""
    runner = LifecycleRunner(engine, day_s=day_s)
    rest_s = min(3600.0, max(0.2, day_s / 10))
    task_status.started()
    while True:
        more = False
        try:
            more = await runner.run_pass()
        except StoreError as e:
            log.warning("lifecycle pass failed: %s", e)
        await trio.sleep(0 if more else rest_s)
