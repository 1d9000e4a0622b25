"""Every metadata backend against the shared conformance suite and a dict model."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from store.meta import sqlite as sqlite_backend
from store.meta.api import KV, Compare, Delete, Put, RangeResult
from store.meta.memory import MemoryKV
from store.meta.sqlite import open_sqlite_kv
from store.testing.kv_conformance import CHECKS, Check

BACKENDS = ["memory", "sqlite"]


@asynccontextmanager
async def open_backend(name: str, tmp: Path) -> AsyncIterator[tuple[KV, Callable[[float], object]]]:
    if name == "memory":
        now = [0.0]
        kv = MemoryKV(clock=lambda: now[0])

        async def jump(seconds: float) -> None:
            now[0] += seconds

        yield kv, jump
    else:
        async with open_sqlite_kv(tmp / "meta.sqlite3") as sq:
            yield sq, trio.sleep


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("check", CHECKS, ids=[c.__name__ for c in CHECKS])
async def test_conformance(backend: str, check: Check, tmp_path: Path) -> None:
    async with open_backend(backend, tmp_path) as (kv, wait):
        await check(kv, wait)  # type: ignore[arg-type]


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

    def counting(conn: object, batch: list[object], lock_fd: int) -> None:
        batches.append(len(batch))
        real(conn, batch, lock_fd)  # type: ignore[arg-type]

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
