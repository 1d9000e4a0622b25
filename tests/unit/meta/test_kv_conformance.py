"""Every metadata backend against the shared conformance suite and a dict model."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from store.errors import Unavailable
from store.meta import sqlite as sqlite_backend
from store.meta import sqlite_log
from store.meta.api import KV, MIN_LEASE_TTL_S, Compacted, Compare, Delete, Put, RangeResult
from store.meta.memory import MemoryKV
from store.meta.sqlite import open_sqlite_kv
from store.testing.kv_conformance import (
    CHECKS,
    SHARED_CHECKS,
    Check,
    SharedCheck,
    batches_until,
    next_batch,
)

BACKENDS = ["memory", "sqlite"]
Wait = Callable[[float], Awaitable[None]]


def fake_clock(start: float) -> tuple[Callable[[], float], Wait]:
    """A clock for lease deadlines and a wait() that moves it (then lets tasks run, so an idle
    sqlite committer notices expired leases)."""
    now = [start]

    async def jump(seconds: float) -> None:
        now[0] += seconds
        await trio.sleep(0.01)

    return lambda: now[0], jump


@asynccontextmanager
async def open_backend(name: str, tmp: Path) -> AsyncIterator[tuple[KV, Wait]]:
    if name == "memory":
        clock, jump = fake_clock(0.0)
        yield MemoryKV(clock=clock), jump
    else:
        clock, jump = fake_clock(time.time())
        async with open_sqlite_kv(tmp / "meta.sqlite3", clock=clock) as sq:
            yield sq, jump


@asynccontextmanager
async def open_two_handles(name: str, tmp: Path) -> AsyncIterator[tuple[KV, KV, Wait]]:
    if name == "memory":
        clock, jump = fake_clock(0.0)
        kv = MemoryKV(clock=clock)
        yield kv, kv, jump
    else:
        clock, jump = fake_clock(time.time())
        path = tmp / "meta.sqlite3"
        async with (
            open_sqlite_kv(path, clock=clock) as one,
            open_sqlite_kv(path, clock=clock) as two,
        ):
            yield one, two, jump


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("check", CHECKS, ids=[c.__name__ for c in CHECKS])
async def test_conformance(backend: str, check: Check, tmp_path: Path) -> None:
    async with open_backend(backend, tmp_path) as (kv, wait):
        await check(kv, wait)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("check", SHARED_CHECKS, ids=[c.__name__ for c in SHARED_CHECKS])
async def test_shared_conformance(backend: str, check: SharedCheck, tmp_path: Path) -> None:
    async with open_two_handles(backend, tmp_path) as (one, two, wait):
        await check(one, two, wait)


# -- backend specifics: bounds, defaults, the real clock ----------------------------------------


@asynccontextmanager
async def small_history(name: str, tmp: Path, revisions: int) -> AsyncIterator[KV]:
    if name == "memory":
        yield MemoryKV(history_events=revisions)
    else:
        async with open_sqlite_kv(tmp / "m.sqlite3", log_retention_revisions=revisions) as sq:
            yield sq


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_slow_watcher_is_compacted_not_buffered(backend: str, tmp_path: Path) -> None:
    """The history is bounded; a watcher that falls behind it gets Compacted and recovers by
    re-reading and watching from the read's revision."""
    async with small_history(backend, tmp_path, 8) as kv:
        start = await kv.revision()
        async with kv.watch(b"k/", start + 1) as watch:
            first = await kv.put(b"k/0", b"")
            assert (await next_batch(watch)).revision == first
            for i in range(1, 40):
                await kv.put(f"k/{i % 3}".encode(), str(i).encode())
            with pytest.raises(Compacted) as caught:
                await next_batch(watch)
            with pytest.raises(Compacted):  # the watch stays dead
                await next_batch(watch)
        assert start + 2 < caught.value.compact_revision <= await kv.revision()
        read = await kv.range(b"k/", b"k0")
        assert [i.value for i in read.kvs] == [b"39", b"37", b"38"]
        async with kv.watch(b"k/", read.revision + 1) as watch:
            rev = await kv.put(b"k/9", b"new")
            assert (await next_batch(watch)).revision == rev


@pytest.mark.parametrize("backend", BACKENDS)
async def test_watch_raises_unavailable_once_the_store_closes(backend: str, tmp_path: Path) -> None:
    async with open_backend(backend, tmp_path) as (kv, _), kv.watch(b"", 0) as watch:
        await kv.aclose()
        with pytest.raises(Unavailable):
            await next_batch(watch)


async def test_memory_default_lease_minimum_is_etcds() -> None:
    kv = MemoryKV()
    lease = await kv.lease_grant(1)
    info = await kv.lease_time_to_live(lease)
    assert MIN_LEASE_TTL_S == 2 and info is not None and info.granted_ttl_s == 2


async def test_sqlite_lease_expires_on_the_wall_clock(tmp_path: Path) -> None:
    """No fake clock: the idle committer revokes the lease by itself and the watch sees it."""
    async with open_sqlite_kv(tmp_path / "meta.sqlite3", min_lease_ttl_s=1) as kv:
        lease = await kv.lease_grant(1)
        rev = await kv.put(b"alive", b"1", lease=lease)
        async with kv.watch(b"alive", rev + 1) as watch:
            began = trio.current_time()
            with trio.fail_after(5):
                batch = await watch.receive()
            assert 0.8 < trio.current_time() - began < 3
        assert [(e.type, e.kv.key) for e in batch.events] == [("delete", b"alive")]
        assert await kv.get(b"alive") is None and await kv.revision() == rev + 1


async def test_sqlite_file_from_before_the_log(tmp_path: Path) -> None:
    """A file written before the revision log existed has no history: watches start after it."""
    path = tmp_path / "meta.sqlite3"
    old = sqlite3.connect(path)
    old.executescript(
        """
        CREATE TABLE kv (key BLOB PRIMARY KEY, value BLOB NOT NULL, create_rev INTEGER NOT NULL,
            mod_rev INTEGER NOT NULL, version INTEGER NOT NULL, lease INTEGER NOT NULL
        ) WITHOUT ROWID;
        CREATE TABLE leases (id INTEGER PRIMARY KEY, ttl_s REAL NOT NULL, deadline REAL NOT NULL);
        CREATE TABLE state (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
        INSERT INTO state VALUES ('revision', 7);
        INSERT INTO kv VALUES (x'61', x'31', 7, 7, 1, 0);
        """
    )
    old.close()
    async with open_sqlite_kv(path) as kv:
        async with kv.watch(b"", 1) as watch:
            with pytest.raises(Compacted) as caught:
                await next_batch(watch)
        assert caught.value.compact_revision == 8
        async with kv.watch(b"", 0) as watch:
            assert await kv.put(b"b", b"2") == 8
            assert (await next_batch(watch)).revision == 8


async def test_sqlite_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "meta.sqlite3"
    async with open_sqlite_kv(path) as kv:
        await kv.put(b"a", b"1")
        rev = await kv.put(b"b", b"2")
    async with open_sqlite_kv(path) as kv:
        got = await kv.get(b"a")
        assert got is not None and got.value == b"1"
        assert await kv.revision() == rev
        assert await kv.put(b"c", b"3") == rev + 1


async def test_sqlite_group_commit_batches_concurrent_writers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Many concurrent writers finish in far fewer commits than writes (one fsync per batch)."""
    batches: list[int] = []
    real = sqlite_backend._commit_batch

    def counting(conn: object, batch: list[object], *args: object) -> None:
        if batch:  # an idle committer's lease-expiry check may commit an empty batch
            batches.append(len(batch))
        real(conn, batch, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(sqlite_backend, "_commit_batch", counting)
    async with open_sqlite_kv(tmp_path / "meta.sqlite3") as kv:
        async with trio.open_nursery() as nursery:
            for i in range(200):
                nursery.start_soon(kv.put, f"k{i:03}".encode(), b"v")
        items = (await kv.range(b"\0", b"\0")).kvs
    assert len(items) == 200 and sum(batches) == 200
    assert len(batches) <= 20, batches
    # Every write still got its own revision, dense and increasing.
    revs = sorted(item.mod_revision for item in items)
    assert revs == list(range(revs[0], revs[0] + 200))


async def test_two_processes_share_one_sqlite_file(tmp_path: Path) -> None:
    """Two handles on one file (as two gateways would be) see each other's writes and leases."""
    path = tmp_path / "meta.sqlite3"
    async with open_sqlite_kv(path) as one, open_sqlite_kv(path) as two:
        lease = await one.lease_grant(30)
        owner = [Compare.absent(b"vol/owner")]
        assert (await one.txn(owner, [Put(b"vol/owner", b"gw1", lease=lease)])).succeeded
        other = await two.lease_grant(30)
        assert not (await two.txn(owner, [Put(b"vol/owner", b"gw2", lease=other)])).succeeded
        await one.lease_revoke(lease)
        assert (await two.txn(owner, [Put(b"vol/owner", b"gw2", lease=other)])).succeeded


# -- model-based: random programs against a dict ------------------------------------------------

KEYS = st.sampled_from([b"a", b"a/b", b"a/c", b"b", b"b\xff", b"c", "é/x".encode()])
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("put"), KEYS, st.binary(max_size=8)),
        st.tuples(st.just("delete"), KEYS, st.none()),
        st.tuples(st.just("delete_range"), KEYS, KEYS),
        st.tuples(st.just("cas"), KEYS, st.binary(max_size=8)),
        st.tuples(st.just("range"), KEYS, st.integers(0, 4)),
    ),
    max_size=40,
)


async def run_program(kv: KV, program: list[tuple[str, bytes, object]]) -> None:
    model: dict[bytes, bytes] = {}
    start = await kv.revision()
    for op, key, arg in program:
        if op == "put":
            assert isinstance(arg, bytes)
            await kv.put(key, arg)
            model[key] = arg
        elif op == "delete":
            assert await kv.delete(key) == (1 if key in model else 0)
            model.pop(key, None)
        elif op == "delete_range":
            assert isinstance(arg, bytes)
            lo, hi = sorted((key, arg))
            if lo == hi:
                continue
            gone = [k for k in model if lo <= k < hi]
            assert await kv.delete(lo, hi) == len(gone)
            for k in gone:
                del model[k]
        elif op == "cas":
            assert isinstance(arg, bytes)
            # Write only if the value is still what the model says (or absent).
            cond = Compare.value_is(key, model[key]) if key in model else Compare.absent(key)
            res = await kv.txn([cond], [Put(key, arg)], [Delete(key)])
            assert res.succeeded
            model[key] = arg
        elif op == "range":
            assert isinstance(arg, int)
            got = await kv.range(key, b"\0", limit=arg)
            want = sorted(k for k in model if k >= key)
            assert isinstance(got, RangeResult)
            assert [i.key for i in got.kvs] == (want[:arg] if arg else want)
            assert got.more == (bool(arg) and len(want) > arg)
    everything = await kv.range(b"\0", b"\0")
    assert {i.key: i.value for i in everything.kvs} == model
    # Replaying the watch history from the start rebuilds the same state, one batch per
    # revision, no revision missing.
    replayed: dict[bytes, bytes] = {}
    if everything.revision > start:
        async with kv.watch(b"", start + 1) as watch:
            batches = await batches_until(watch, everything.revision)
        assert [b.revision for b in batches] == list(range(start + 1, everything.revision + 1))
        for batch in batches:
            for event in batch.events:
                if event.type == "put":
                    replayed[event.kv.key] = event.kv.value
                else:
                    del replayed[event.kv.key]
    assert replayed == model


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=60)
@given(program=OPS)
def test_random_programs_match_dict_model(
    backend: str, program: list[tuple[str, bytes, object]], tmp_path_factory: pytest.TempPathFactory
) -> None:
    tmp = tmp_path_factory.mktemp("kv")

    async def main() -> None:
        async with open_backend(backend, tmp) as (kv, _):
            await run_program(kv, program)

    trio.run(main)


async def test_sqlite_watch_never_splits_a_revision(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A watch reads the log a few rows at a time; a revision is still delivered whole, even
    one larger than a read."""
    monkeypatch.setattr(sqlite_log, "WATCH_FETCH_ROWS", 3)
    async with open_sqlite_kv(tmp_path / "meta.sqlite3") as kv:
        start = await kv.revision()
        async with kv.watch(b"", start + 1) as watch:
            small = [await kv.put(f"a/{i}".encode(), b"x") for i in range(2)]
            big = await kv.txn([], [Put(f"b/{i:02}".encode(), b"y") for i in range(20)])
            gone = await kv.delete(b"\0", b"\0")
            end = await kv.revision()
            got = await batches_until(watch, end)
    assert gone == 22
    assert [b.revision for b in got] == [*small, big.revision, end]
    assert [len(b.events) for b in got] == [1, 1, 20, 22]
    assert [e.kv.key for e in got[3].events] == sorted(e.kv.key for e in got[3].events)
