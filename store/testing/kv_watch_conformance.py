"""The watch half of the metadata conformance suite (store/testing/kv_conformance.py explains the
suite): every change delivered once, in order, from any past revision still kept, filtered by
prefix, lease expiry as deletes, compacted history refused, and another handle's writes seen."""

from __future__ import annotations

import trio

from store.meta.api import (
    KV,
    Compacted,
    Compare,
    Delete,
    Put,
    prefix_end,
)
from store.testing.kv_support import (
    Wait,
    batches_until,
    check,
    expect_invalid,
    granted_ttl,
    next_batch,
    shared_check,
    summary,
)


@check
async def watch_delivers_every_change_in_order(kv: KV, wait: Wait) -> None:
    start = await kv.revision()
    async with kv.watch(b"w/", start + 1) as watch:
        r1 = await kv.put(b"w/a", b"1")
        r2 = await kv.put(b"w/b", b"2")
        await kv.put(b"elsewhere", b"x")  # outside the prefix: no batch
        txn = await kv.txn(
            [], [Put(b"w/a", b"3"), Delete(b"w/b"), Put(b"w/c", b"4"), Put(b"x/1", b"5")]
        )
        await kv.delete(b"w/missing")  # no change, no revision
        r4 = await kv.put(b"w/a", b"3")  # the same value: a revision and an event all the same
        gone = await kv.delete(b"w/", prefix_end(b"w/"))
        assert gone == 2
        end = await kv.revision()
        got = await batches_until(watch, end)
    assert [b.revision for b in got] == [r1, r2, txn.revision, r4, end]
    assert [summary(b) for b in got] == [
        [("put", b"w/a", b"1")],
        [("put", b"w/b", b"2")],
        [("put", b"w/a", b"3"), ("delete", b"w/b", b""), ("put", b"w/c", b"4")],
        [("put", b"w/a", b"3")],
        [("delete", b"w/a", b""), ("delete", b"w/c", b"")],  # a range: keys in byte order
    ]
    first, third, fourth = got[0].events[0].kv, got[2].events[2].kv, got[3].events[0].kv
    assert (first.create_revision, first.mod_revision, first.version) == (r1, r1, 1)
    assert (third.create_revision, third.mod_revision, third.version) == (txn.revision,) * 2 + (1,)
    assert (fourth.create_revision, fourth.mod_revision, fourth.version) == (r1, r4, 3)
    tomb = got[4].events[0].kv
    assert (tomb.create_revision, tomb.mod_revision, tomb.version, tomb.lease) == (0, end, 0, 0)
    assert all(e.kv.mod_revision == b.revision for b in got for e in b.events)


@check
async def watch_replays_history_from_a_past_revision(kv: KV, wait: Wait) -> None:
    first = await kv.put(b"h/1", b"a")
    await kv.put(b"h/2", b"b")
    await kv.delete(b"h/1")
    last = await kv.put(b"h/3", b"c")
    async with kv.watch(b"h/", first + 1) as watch:
        got = await batches_until(watch, last)
    assert [summary(b) for b in got] == [
        [("put", b"h/2", b"b")],
        [("delete", b"h/1", b"")],
        [("put", b"h/3", b"c")],
    ]
    # The same history, whole, for a watch of every key from the first revision.
    async with kv.watch(b"", 1) as watch:
        everything = await batches_until(watch, last)
    assert [b.revision for b in everything] == list(range(first, last + 1))


@check
async def watch_from_now_and_from_the_future(kv: KV, wait: Wait) -> None:
    await kv.put(b"f/old", b"1")
    async with kv.watch(b"f/", 0) as now, kv.watch(b"f/", await kv.revision() + 3) as later:
        r1 = await kv.put(b"f/a", b"1")
        await kv.put(b"f/b", b"2")
        r3 = await kv.put(b"f/c", b"3")
        assert (await next_batch(now)).revision == r1  # not f/old: it came before
        assert r3 == r1 + 2
        batch = await next_batch(later)  # the first revision it accepts
        assert batch.revision == r3 and summary(batch) == [("put", b"f/c", b"3")]


@check
async def watch_filters_by_prefix(kv: KV, wait: Wait) -> None:
    start = await kv.revision()
    async with kv.watch(b"p/", start + 1) as watch, kv.watch(b"p/x", start + 1) as narrow:
        await kv.put(b"p", b"no")  # the prefix itself without the slash: not under b"p/"
        await kv.put(b"p0", b"no")
        mixed = await kv.txn([], [Put(b"q", b"no"), Put(b"p/x1", b"yes"), Put(b"p/y", b"yes")])
        got = await next_batch(watch)
        assert got.revision == mixed.revision
        assert summary(got) == [("put", b"p/x1", b"yes"), ("put", b"p/y", b"yes")]
        got = await next_batch(narrow)
        assert summary(got) == [("put", b"p/x1", b"yes")]


@check
async def watch_sees_lease_expiry_and_revoke_as_deletes(kv: KV, wait: Wait) -> None:
    short = await kv.lease_grant(1)
    ttl = await granted_ttl(kv, short)
    held = await kv.lease_grant(600)
    start = await kv.revision()
    async with kv.watch(b"l/", start + 1) as watch:
        r1 = await kv.put(b"l/b", b"1", lease=short)
        r2 = await kv.put(b"l/a", b"2", lease=short)
        r3 = await kv.put(b"l/c", b"3", lease=held)
        got = await batches_until(watch, r3)
        assert [b.revision for b in got] == [r1, r2, r3]
        assert got[0].events[0].kv.lease == short
        await wait(ttl + 1)
        expired = await next_batch(watch)  # nobody writes: the expiry must reach the watch
        assert expired.revision == r3 + 1
        assert summary(expired) == [("delete", b"l/a", b""), ("delete", b"l/b", b"")]
        await kv.lease_revoke(held)
        revoked = await next_batch(watch)
        assert revoked.revision == r3 + 2 and summary(revoked) == [("delete", b"l/c", b"")]
    assert await kv.revision() == r3 + 2


@check
async def watch_of_compacted_history_raises(kv: KV, wait: Wait) -> None:
    """etcd's ErrCompacted: a watch from before the compaction revision is refused with the
    oldest revision still watchable; from that revision on, the history is whole."""
    revisions = [await kv.put(b"c/k", str(i).encode()) for i in range(5)]
    await kv.compact(revisions[2])
    async with kv.watch(b"c/", revisions[1]) as watch:
        try:
            await next_batch(watch)
        except Compacted as e:
            assert e.compact_revision == revisions[2]
        else:
            raise AssertionError("a watch from a compacted revision must raise Compacted")
    async with kv.watch(b"c/", revisions[2]) as watch:
        got = await batches_until(watch, revisions[4])
    assert [b.revision for b in got] == revisions[2:]
    assert [b.events[0].kv.value for b in got] == [b"2", b"3", b"4"]
    try:
        await kv.compact(revisions[1])
    except Compacted:
        pass
    else:
        raise AssertionError("compacting below the compaction revision must raise Compacted")
    await expect_invalid(kv.compact(revisions[4] + 10))


@check
async def watch_sees_concurrent_writers_once_each(kv: KV, wait: Wait) -> None:
    start = await kv.revision()
    writers, each = 8, 10
    async with kv.watch(b"cw/", start + 1) as a, kv.watch(b"cw/", start + 1) as b:

        async def write(n: int) -> None:
            for i in range(each):
                await kv.put(f"cw/{n}".encode(), str(i).encode())

        async with trio.open_nursery() as nursery:
            for n in range(writers):
                nursery.start_soon(write, n)
        end = await kv.revision()
        assert end == start + writers * each
        seen_a = await batches_until(a, end)
        seen_b = await batches_until(b, end)
    assert [x.revision for x in seen_a] == list(range(start + 1, end + 1))
    assert seen_a == seen_b
    for n in range(writers):  # each writer's values arrive in the order it wrote them
        mine = [e.kv.value for x in seen_a for e in x.events if e.kv.key == f"cw/{n}".encode()]
        assert mine == [str(i).encode() for i in range(each)]


@shared_check
async def watch_sees_another_handles_writes(writer: KV, watcher: KV, wait: Wait) -> None:
    """Two handles on one store (two processes on one sqlite file, two etcd clients)."""
    start = await watcher.revision()
    lease = await writer.lease_grant(600)
    async with watcher.watch(b"s/", start + 1) as watch:
        r1 = await writer.put(b"s/1", b"a", lease=lease)
        r2 = await writer.txn([Compare.absent(b"s/2")], [Put(b"s/2", b"b"), Delete(b"s/1")])
        await writer.lease_revoke(lease)  # s/1 is gone already: nothing to delete
        r3 = await writer.put(b"s/3", b"c")
        got = await batches_until(watch, r3)
    assert [b.revision for b in got] == [r1, r2.revision, r3]
    assert [summary(b) for b in got] == [
        [("put", b"s/1", b"a")],
        [("put", b"s/2", b"b"), ("delete", b"s/1", b"")],
        [("put", b"s/3", b"c")],
    ]
    assert await writer.revision() == await watcher.revision() == r3
