"""Conformance suite for metadata backends (store.meta.api.KV).

Every backend (memory, sqlite, etcd) must pass every check here. Tests import ``CHECKS`` and run
each against a fresh, empty store of their backend; see tests/unit/meta/test_kv_conformance.py.
Checks that wait for a lease to expire call ``wait(seconds)``, which the caller provides (a real
sleep for wall-clock backends, a clock jump for the memory backend).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import trio

from store.errors import InvalidArgument, NotFound
from store.meta.api import KV, Compare, Delete, Get, Put, RangeResult, prefix_end

Wait = Callable[[float], Awaitable[None]]
Check = Callable[[KV, Wait], Awaitable[None]]

CHECKS: list[Check] = []


def check(fn: Check) -> Check:
    CHECKS.append(fn)
    return fn


def keys(result: RangeResult) -> list[bytes]:
    return [kv.key for kv in result.kvs]


@check
async def put_get_roundtrip(kv: KV, wait: Wait) -> None:
    assert await kv.get(b"a") is None
    rev = await kv.put(b"a", b"1")
    got = await kv.get(b"a")
    assert got is not None
    assert (got.value, got.version, got.create_revision, got.mod_revision) == (b"1", 1, rev, rev)
    rev2 = await kv.put(b"a", b"2")
    assert rev2 == rev + 1
    got = await kv.get(b"a")
    assert got is not None
    assert (got.value, got.version, got.create_revision, got.mod_revision) == (b"2", 2, rev, rev2)
    assert await kv.revision() == rev2


@check
async def binary_keys_and_values(kv: KV, wait: Wait) -> None:
    key = bytes(range(1, 256))
    value = bytes(range(256)) * 40
    await kv.put(key, value)
    got = await kv.get(key)
    assert got is not None and got.value == value
    await kv.put(b"empty", b"")
    got = await kv.get(b"empty")
    assert got is not None and got.value == b""


@check
async def range_is_byte_ordered(kv: KV, wait: Wait) -> None:
    names = ["b", "a/1", "a/2", "a0", "a", "é", "z", "a/10", "\x01", "A"]
    for name in names:
        await kv.put(name.encode(), b"v")
    everything = await kv.range(b"\0", b"\0")
    assert keys(everything) == sorted(n.encode() for n in names)
    assert not everything.more
    assert keys(await kv.range(b"a/", prefix_end(b"a/"))) == [b"a/1", b"a/10", b"a/2"]
    assert keys(await kv.range(b"a", b"b")) == [b"a", b"a/1", b"a/10", b"a/2", b"a0"]
    assert keys(await kv.range(b"a")) == [b"a"]
    assert keys(await kv.range(b"missing")) == []


@check
async def range_limit_reverse_keys_only(kv: KV, wait: Wait) -> None:
    for i in range(10):
        await kv.put(f"k{i}".encode(), f"v{i}".encode())
    page = await kv.range(b"k", prefix_end(b"k"), limit=3)
    assert keys(page) == [b"k0", b"k1", b"k2"] and page.more
    rest = await kv.range(b"k3", prefix_end(b"k"), limit=100)
    assert len(rest.kvs) == 7 and not rest.more
    exact = await kv.range(b"k", prefix_end(b"k"), limit=10)
    assert len(exact.kvs) == 10 and not exact.more
    back = await kv.range(b"k", prefix_end(b"k"), limit=2, reverse=True)
    assert keys(back) == [b"k9", b"k8"] and back.more
    bare = await kv.range(b"k", prefix_end(b"k"), keys_only=True)
    assert all(item.value == b"" for item in bare.kvs) and len(bare.kvs) == 10
    assert bare.kvs[0].version == 1


@check
async def delete_key_and_range(kv: KV, wait: Wait) -> None:
    for name in [b"d/1", b"d/2", b"d/3", b"e"]:
        await kv.put(name, b"x")
    assert await kv.delete(b"nope") == 0
    assert await kv.delete(b"d/2") == 1
    assert await kv.get(b"d/2") is None
    assert await kv.delete(b"d/", prefix_end(b"d/")) == 2
    assert keys(await kv.range(b"\0", b"\0")) == [b"e"]
    # Re-creating a deleted key starts a new life: version 1, new create revision.
    rev = await kv.put(b"d/1", b"again")
    got = await kv.get(b"d/1")
    assert got is not None and got.version == 1 and got.create_revision == rev


@check
async def revision_moves_only_on_change(kv: KV, wait: Wait) -> None:
    start = await kv.revision()
    await kv.get(b"x")
    await kv.range(b"\0", b"\0")
    await kv.delete(b"not-there")
    assert await kv.revision() == start
    await kv.put(b"x", b"1")
    assert await kv.revision() == start + 1


@check
async def txn_compare_and_swap(kv: KV, wait: Wait) -> None:
    created = await kv.txn([Compare.absent(b"lock")], [Put(b"lock", b"me")], [Get(b"lock")])
    assert created.succeeded and created.responses == [None]
    again = await kv.txn([Compare.absent(b"lock")], [Put(b"lock", b"you")], [Get(b"lock")])
    assert not again.succeeded
    (held,) = again.responses
    assert isinstance(held, RangeResult) and held.kvs[0].value == b"me"
    current = await kv.get(b"lock")
    assert current is not None
    swapped = await kv.txn([Compare.mod_is(b"lock", current.mod_revision)], [Put(b"lock", b"2")])
    assert swapped.succeeded
    stale = await kv.txn([Compare.mod_is(b"lock", current.mod_revision)], [Put(b"lock", b"3")])
    assert not stale.succeeded
    got = await kv.get(b"lock")
    assert got is not None and got.value == b"2"
    assert (await kv.txn([Compare.value_is(b"lock", b"2")], [Delete(b"lock")])).responses == [1]
    assert await kv.get(b"lock") is None


@check
async def txn_compare_operators(kv: KV, wait: Wait) -> None:
    await kv.put(b"n", b"m")
    await kv.put(b"n", b"m")
    assert (await kv.txn([Compare(b"n", "version", ">", 1)], [])).succeeded
    assert not (await kv.txn([Compare(b"n", "version", "<", 2)], [])).succeeded
    assert (await kv.txn([Compare(b"n", "value", "<", b"n")], [])).succeeded
    assert (await kv.txn([Compare(b"n", "value", "!=", b"x")], [])).succeeded
    # Comparing the value of a missing key is false, whatever the operator.
    assert not (await kv.txn([Compare(b"gone", "value", "!=", b"x")], [])).succeeded
    assert (await kv.txn([Compare(b"gone", "create", "=", 0)], [])).succeeded
    # All compares must hold.
    both = [Compare.exists(b"n"), Compare.exists(b"gone")]
    assert not (await kv.txn(both, [Put(b"x", b"1")])).succeeded
    assert await kv.get(b"x") is None


@check
async def txn_is_atomic_and_single_revision(kv: KV, wait: Wait) -> None:
    before = await kv.revision()
    result = await kv.txn(
        [], [Put(b"t/1", b"a"), Put(b"t/2", b"b"), Put(b"t/1", b"c"), Get(b"t/", prefix_end(b"t/"))]
    )
    assert result.succeeded and result.revision == before + 1
    listing = result.responses[3]
    assert isinstance(listing, RangeResult)
    assert [(i.key, i.value) for i in listing.kvs] == [(b"t/1", b"c"), (b"t/2", b"b")]
    one = await kv.get(b"t/1")
    two = await kv.get(b"t/2")
    assert one is not None and two is not None
    assert one.mod_revision == two.mod_revision == before + 1
    # A txn whose op fails (unknown lease) changes nothing.
    try:
        await kv.txn([], [Put(b"t/3", b"x"), Put(b"t/4", b"y", lease=999_999)])
    except NotFound:
        pass
    else:
        raise AssertionError("put with an unknown lease must fail")
    assert await kv.get(b"t/3") is None
    assert await kv.revision() == before + 1


@check
async def concurrent_increments_never_lose_updates(kv: KV, wait: Wait) -> None:
    await kv.put(b"counter", b"0")

    async def bump() -> None:
        while True:
            cur = await kv.get(b"counter")
            assert cur is not None
            new = str(int(cur.value) + 1).encode()
            res = await kv.txn(
                [Compare.mod_is(b"counter", cur.mod_revision)], [Put(b"counter", new)]
            )
            if res.succeeded:
                return

    async with trio.open_nursery() as nursery:
        for _ in range(40):
            nursery.start_soon(bump)
    final = await kv.get(b"counter")
    assert final is not None and final.value == b"40"


@check
async def leases_expire_and_revoke(kv: KV, wait: Wait) -> None:
    lease = await kv.lease_grant(0.4)
    await kv.put(b"held", b"x", lease=lease)
    await kv.put(b"plain", b"y")
    got = await kv.get(b"held")
    assert got is not None and got.lease == lease
    await wait(0.25)
    assert await kv.lease_keepalive(lease) == 0.4
    await wait(0.25)
    assert await kv.get(b"held") is not None  # kept alive past the first deadline
    await wait(0.5)
    assert await kv.get(b"held") is None
    assert keys(await kv.range(b"\0", b"\0")) == [b"plain"]
    try:
        await kv.lease_keepalive(lease)
    except NotFound:
        pass
    else:
        raise AssertionError("keepalive of an expired lease must fail")
    second = await kv.lease_grant(60)
    await kv.put(b"a", b"1", lease=second)
    await kv.put(b"b", b"2", lease=second)
    await kv.lease_revoke(second)
    assert await kv.get(b"a") is None and await kv.get(b"b") is None
    await kv.lease_revoke(second)  # idempotent


@check
async def lease_guards_exclusive_ownership(kv: KV, wait: Wait) -> None:
    """The volume-lock pattern: create-if-absent with a lease; the next owner waits for expiry."""
    mine = await kv.lease_grant(0.3)
    owner = [Compare.absent(b"owner")]
    assert (await kv.txn(owner, [Put(b"owner", b"gw1", lease=mine)])).succeeded
    theirs = await kv.lease_grant(60)
    assert not (await kv.txn(owner, [Put(b"owner", b"gw2", lease=theirs)])).succeeded
    await wait(0.5)
    assert (await kv.txn(owner, [Put(b"owner", b"gw2", lease=theirs)])).succeeded
    got = await kv.get(b"owner")
    assert got is not None and got.value == b"gw2"


@check
async def invalid_arguments_are_refused(kv: KV, wait: Wait) -> None:
    bad_calls = [
        kv.put(b"", b"x"),
        kv.put(b"k" * 5000, b"x"),
        kv.put(b"k", b"x" * ((1 << 20) + 1)),
        kv.range(b"b", b"a"),
        kv.delete(b"b", b"a"),
        kv.txn([], [Put(b"", b"x")]),
    ]
    for call in bad_calls:
        try:
            await call
        except InvalidArgument:
            continue
        raise AssertionError("expected InvalidArgument")
    assert await kv.range(b"\0", b"\0") == RangeResult([], False, await kv.revision())
