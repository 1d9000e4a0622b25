"""Concurrent writers: every race resolves to a state a serial order could give."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trio

from store.errors import (
    NoSuchBucket,
    NoSuchUpload,
    PreconditionFailed,
)
from store.meta.api import Put
from store.objects import keyspace as K
from store.objects import listing
from store.objects.engine import ObjectEngine
from tests.unit.objects.helpers import (
    BUCKET,
    MIN_PART,
    md5,
    upload_parts,
)
from tests.unit.objects.test_engine_model import chunk_references, chunks_on_drives

# -- concurrent writers --------------------------------------------------------------------------


async def test_concurrent_conditional_puts_have_one_winner(engine: ObjectEngine) -> None:
    won: list[int] = []
    lost: list[int] = []

    async def put(i: int) -> None:
        try:
            await engine.put_object(BUCKET, "k", bytes([i]) * (2000 + i), if_none_match="*")
            won.append(i)
        except PreconditionFailed:
            lost.append(i)

    async with trio.open_nursery() as nursery:
        for i in range(8):
            nursery.start_soon(put, i)
    assert len(won) == 1 and len(lost) == 7
    assert (await engine.get_object(BUCKET, "k"))[1] == bytes(won) * (2000 + won[0])
    assert len((await listing.list_versions(engine.kv, BUCKET)).versions) == 1


async def test_concurrent_puts_in_a_versioned_bucket_keep_every_version(
    engine: ObjectEngine,
) -> None:
    await engine.update_bucket(BUCKET, versioning="Enabled")
    async with trio.open_nursery() as nursery:
        for i in range(8):
            nursery.start_soon(engine.put_object, BUCKET, "k", bytes([i]) * 3000)
    versions = (await listing.list_versions(engine.kv, BUCKET)).versions
    assert sorted(v.etag for v, _ in versions) == sorted(md5(bytes([i]) * 3000) for i in range(8))
    assert [latest for _, latest in versions] == [True] + [False] * 7


async def null_versions(engine: ObjectEngine, key: str) -> list[tuple[str, bool]]:
    listed = await listing.list_versions(engine.kv, BUCKET, prefix=key)
    return [(v.public_id, v.delete_marker) for v, _ in listed.versions if v.key == key]


@dataclass
class Hold:
    method: str
    when: Callable[..., bool]
    held: trio.Event = field(default_factory=trio.Event)
    release: trio.Event = field(default_factory=trio.Event)


class HeldKV:
    """Stands in for the engine's KV: the first call of each ``hold(method, when)`` rule waits
    until its ``release`` is set, so a test can order racing writes (a race made deterministic)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.holds: list[Hold] = []

    def hold(self, method: str, when: Callable[..., bool] = lambda *a, **k: True) -> Hold:
        rule = Hold(method, when)
        self.holds.append(rule)
        return rule

    def __getattr__(self, name: str) -> Any:
        call = getattr(self.inner, name)
        rules = [r for r in self.holds if r.method == name]
        if not rules:
            return call

        async def held_call(*args: Any, **kw: Any) -> Any:
            for rule in rules:
                if not rule.held.is_set() and rule.when(*args, **kw):
                    rule.held.set()
                    await rule.release.wait()
                    break
            return await call(*args, **kw)

        return held_call


@asynccontextmanager
async def held_kv(engine: ObjectEngine) -> AsyncIterator[HeldKV]:
    gate = HeldKV(engine.kv)
    engine.kv = engine.multipart.kv = gate
    try:
        with trio.fail_after(30):
            yield gate
    finally:
        engine.kv = engine.multipart.kv = gate.inner


async def race(
    engine: ObjectEngine, first: Callable[[], Awaitable[Any]], second: Callable[[], Awaitable[Any]]
) -> None:
    """``first`` runs up to its first transaction, ``second`` runs to the end, then ``first``
    commits (and retries if its compares fail)."""
    async with held_kv(engine) as gate, trio.open_nursery() as nursery:
        commit = gate.hold("txn")
        nursery.start_soon(first)
        await commit.held.wait()
        await second()
        commit.release.set()


async def test_a_held_commit_retries_after_a_racing_write(engine: ObjectEngine) -> None:
    """The harness itself, where the engine gets it right: two puts to an unversioned key."""
    await race(
        engine,
        lambda: engine.put_object(BUCKET, "k", b"first"),
        lambda: engine.put_object(BUCKET, "k", b"second"),
    )
    assert engine.stats.txn_retries == 1
    assert (await engine.get_object(BUCKET, "k"))[1] == b"first"  # committed last
    assert await null_versions(engine, "k") == [("null", False)]


async def test_overlapping_puts_agree_on_the_latest_version(engine: ObjectEngine) -> None:
    await engine.update_bucket(BUCKET, versioning="Enabled")
    await race(
        engine,
        lambda: engine.put_object(BUCKET, "k", b"first"),
        lambda: engine.put_object(BUCKET, "k", b"second"),
    )
    current, data = await engine.get_object(BUCKET, "k")
    versions = (await listing.list_versions(engine.kv, BUCKET)).versions
    assert len(versions) == 2
    latest = [(v.version_id, v.etag) for v, is_latest in versions if is_latest]
    assert latest == [(current.version_id, md5(data))]
    page = await listing.list_objects(engine.kv, BUCKET)
    assert [e.version_id for e in page.objects] == [current.version_id]


async def test_racing_deletes_in_a_suspended_bucket_leave_one_null_marker(
    engine: ObjectEngine,
) -> None:
    await engine.update_bucket(BUCKET, versioning="Suspended")
    await race(
        engine,
        lambda: engine.delete_object(BUCKET, "k"),
        lambda: engine.delete_object(BUCKET, "k"),
    )
    assert await null_versions(engine, "k") == [("null", True)]


async def test_racing_put_and_delete_in_a_suspended_bucket_leave_one_null_version(
    engine: ObjectEngine,
) -> None:
    await engine.update_bucket(BUCKET, versioning="Suspended")
    await race(
        engine,
        lambda: engine.put_object(BUCKET, "k", b"data"),
        lambda: engine.delete_object(BUCKET, "k"),
    )
    assert len(await null_versions(engine, "k")) == 1


async def test_a_part_uploaded_during_completion_is_not_leaked(
    engine: ObjectEngine, tmp_path: Path
) -> None:
    upload_id, done = await upload_parts(engine, "mp", [b"a" * MIN_PART])
    late: list[object] = []

    async def upload_late_part() -> None:
        try:
            await engine.multipart.upload_part(BUCKET, "mp", upload_id, 2, b"late" * 1000)
            late.append("stored")
        except NoSuchUpload:
            late.append("refused")

    await race(
        engine,
        lambda: engine.multipart.complete(BUCKET, "mp", upload_id, done),
        upload_late_part,
    )
    assert (await engine.get_object(BUCKET, "mp"))[1] == b"a" * MIN_PART
    refs, named = await chunk_references(engine)
    assert named <= refs
    assert refs == named, f"late part {late[0]}; chunks referenced by nothing: {refs - named}"
    assert chunks_on_drives(tmp_path) == refs


async def test_a_part_uploaded_during_abort_is_not_leaked(
    engine: ObjectEngine, tmp_path: Path
) -> None:
    upload_id, _ = await upload_parts(engine, "mp", [b"a" * MIN_PART])

    async def upload_late_part() -> None:
        await engine.multipart.upload_part(BUCKET, "mp", upload_id, 2, b"late" * 1000)

    await race(engine, lambda: engine.multipart.abort(BUCKET, "mp", upload_id), upload_late_part)
    with pytest.raises(NoSuchUpload):
        await engine.multipart.list_parts(BUCKET, "mp", upload_id)
    refs, named = await chunk_references(engine)
    assert refs == named, f"chunks referenced by nothing: {refs - named}"
    assert chunks_on_drives(tmp_path) == refs


async def test_an_upload_created_during_bucket_deletion_does_not_survive_it(
    engine: ObjectEngine,
) -> None:
    created = trio.Event()
    refused: list[NoSuchBucket] = []

    async def create_upload() -> None:
        try:
            await engine.multipart.create(BUCKET, "mp")
        except NoSuchBucket as e:  # its compare failed and it found the bucket going away
            refused.append(e)
        finally:
            created.set()

    async with held_kv(engine) as gate, trio.open_nursery() as nursery:
        upload_commit = gate.hold(
            "txn", lambda compares, ops, *_: any(isinstance(o, Put) for o in ops)
        )
        bucket_removal = gate.hold("delete", lambda key, *_: key == K.bucket_key(BUCKET))
        nursery.start_soon(create_upload)
        await upload_commit.held.wait()  # create has seen the bucket; its write waits
        nursery.start_soon(engine.delete_bucket, BUCKET)
        await bucket_removal.held.wait()  # marked deleting, uploads aborted, record not yet gone
        upload_commit.release.set()
        await created.wait()
        bucket_removal.release.set()
    with pytest.raises(NoSuchBucket):
        await engine.get_bucket(BUCKET)
    await engine.create_bucket(BUCKET, "bob")
    assert (await listing.list_uploads(engine.kv, BUCKET)).uploads == []
    assert refused


async def test_racing_deletes_in_a_suspended_bucket_with_a_current_object(
    engine: ObjectEngine,
) -> None:
    """With a current object the O/ compare catches the race: one null marker remains."""
    await engine.put_object(BUCKET, "k", b"data")
    await engine.update_bucket(BUCKET, versioning="Suspended")
    await race(
        engine,
        lambda: engine.delete_object(BUCKET, "k"),
        lambda: engine.delete_object(BUCKET, "k"),
    )
    assert await null_versions(engine, "k") == [("null", True)]
