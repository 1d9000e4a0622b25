"""Conformance suite for metadata backends (store.meta.api.KV): etcd v3's semantics.

Every backend (memory, sqlite, etcd) must pass every check here. Tests import ``CHECKS`` and run
each against a fresh, empty store of their backend; see tests/unit/meta/test_kv_conformance.py.
``SHARED_CHECKS`` take two handles on one store (two sqlite handles on one file, two etcd
clients; the memory backend passes one object twice): a watch on one sees writes through the
other. Checks that wait for a lease to expire call ``wait(seconds)``, which the caller provides
(a clock jump for a backend with an injected clock, a real sleep otherwise); they ask for short
TTLs and wait in multiples of the TTL the backend granted, which may be longer (etcd's 2 s
minimum). Every wait for a watch event has a deadline, so a missing event fails, never hangs.
"""

from __future__ import annotations

import trio

from store.errors import InvalidArgument, NotFound
from store.meta.api import (
    KV,
    MAX_LEASE_TTL_S,
    MAX_TXN_OPS,
    Compare,
    Delete,
    Get,
    Op,
    Put,
    RangeResult,
    prefix_end,
)
from store.testing.kv_support import (
    CHECKS,
    SHARED_CHECKS,
    Check,
    SharedCheck,
    Wait,
    batches_until,
    check,
    expect_invalid,
    granted_ttl,
    keys,
    next_batch,
)


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
    """etcd (mvcc storeTxnWrite.End) bumps the revision only when a txn recorded a change: a
    put always is one, even of the same value; a delete only when it removed a key."""
    start = await kv.revision()
    await kv.get(b"x")
    await kv.range(b"\0", b"\0")
    assert await kv.delete(b"not-there") == 0
    assert await kv.delete(b"a", b"z") == 0
    nothing = await kv.txn([], [Delete(b"not-there"), Delete(b"n/", prefix_end(b"n/"))])
    assert nothing.succeeded and nothing.revision == start and nothing.responses == [0, 0]
    reads = await kv.txn([], [Get(b"x"), Get(b"a", b"z")])
    assert reads.revision == start
    lease = await kv.lease_grant(60)
    await kv.lease_keepalive(lease)
    assert await kv.revision() == start
    assert await kv.put(b"x", b"1") == start + 1
    # A failed compare with an empty failure branch changes nothing.
    failed = await kv.txn([Compare.value_is(b"x", b"other")], [Put(b"x", b"2")])
    assert not failed.succeeded and failed.revision == start + 1
    # Same value again: still a new revision and a new version.
    assert await kv.put(b"x", b"1") == start + 2
    got = await kv.get(b"x")
    assert got is not None and got.version == 2 and got.mod_revision == start + 2
    assert await kv.delete(b"x") == 1
    assert await kv.revision() == start + 3
    await kv.lease_revoke(lease)  # a lease without keys: nothing to delete
    assert await kv.revision() == start + 3


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
        [], [Put(b"t/1", b"a"), Put(b"t/2", b"b"), Delete(b"t/9"), Get(b"t/", prefix_end(b"t/"))]
    )
    assert result.succeeded and result.revision == before + 1
    listing = result.responses[3]
    assert isinstance(listing, RangeResult) and listing.revision == before + 1
    # Reads in a txn see its earlier writes.
    assert [(i.key, i.value) for i in listing.kvs] == [(b"t/1", b"a"), (b"t/2", b"b")]
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
async def txn_refuses_duplicate_keys(kv: KV, wait: Wait) -> None:
    """etcd's checkIntervals: in one branch, a key may be put once, and not inside any of the
    branch's deletes (before or after the put); deletes may overlap; reads are not counted;
    the two branches are checked apart."""
    await kv.put(b"d/a", b"0")
    before = await kv.revision()
    refused: list[list[Op]] = [
        [Put(b"d/a", b"1"), Put(b"d/a", b"2")],
        [Put(b"d/a", b"1"), Delete(b"d/a")],
        [Delete(b"d/a"), Put(b"d/a", b"1")],
        [Delete(b"d/", prefix_end(b"d/")), Put(b"d/b", b"1")],
        [Put(b"d/zz", b"1"), Delete(b"d/y", b"\0")],
        [Put(b"other", b"1"), Put(b"d/c", b"1"), Put(b"d/c", b"1")],
    ]
    for ops in refused:
        await expect_invalid(kv.txn([], ops))
        await expect_invalid(kv.txn([Compare.absent(b"d/a")], [], ops))  # failure branch too
    assert await kv.revision() == before
    got = await kv.get(b"d/a")
    assert got is not None and got.value == b"0"
    # Allowed: overlapping deletes; a put and a read of one key; a key in both branches; a
    # put just outside a delete's range (the end is exclusive).
    ok = await kv.txn(
        [Compare.exists(b"d/a")],
        [
            Delete(b"d/", prefix_end(b"d/")),
            Delete(b"d/a"),
            Get(b"e"),
            Put(b"e", b"1"),
            Put(prefix_end(b"d/"), b"edge"),
        ],
        [Put(b"e", b"2")],
    )
    assert ok.succeeded and ok.responses[:2] == [1, 0]
    assert ok.revision == before + 1


@check
async def txn_ops_limit(kv: KV, wait: Wait) -> None:
    """etcd's --max-txn-ops (default 128) caps the compares and each branch's ops."""
    before = await kv.revision()
    full = [Put(f"o/{i:03}".encode(), b"v") for i in range(MAX_TXN_OPS)]
    one_more = [*full, Put(b"o/extra", b"v")]
    await expect_invalid(kv.txn([], one_more))
    await expect_invalid(kv.txn([], [], one_more))
    await expect_invalid(kv.txn([Compare.absent(b"o/x")] * (MAX_TXN_OPS + 1), []))
    assert await kv.revision() == before
    done = await kv.txn([Compare.absent(b"o/x")] * MAX_TXN_OPS, full, full)
    assert done.succeeded and done.revision == before + 1
    listed = await kv.range(b"o/", prefix_end(b"o/"))
    assert len(listed.kvs) == MAX_TXN_OPS
    assert {item.mod_revision for item in listed.kvs} == {before + 1}


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
    lease = await kv.lease_grant(1)
    ttl = await granted_ttl(kv, lease)
    await kv.put(b"held", b"x", lease=lease)
    await kv.put(b"plain", b"y")
    got = await kv.get(b"held")
    assert got is not None and got.lease == lease
    await wait(ttl * 0.6)
    assert await kv.lease_keepalive(lease) == ttl
    await wait(ttl * 0.6)
    assert await kv.get(b"held") is not None  # kept alive past the first deadline
    before = await kv.revision()
    await wait(ttl + 1)
    assert await kv.get(b"held") is None
    assert keys(await kv.range(b"\0", b"\0")) == [b"plain"]
    assert await kv.lease_time_to_live(lease) is None
    try:
        await kv.lease_keepalive(lease)
    except NotFound:
        pass
    else:
        raise AssertionError("keepalive of an expired lease must fail")
    # The expiry deleted a key: exactly one revision.
    assert await kv.revision() == before + 1
    second = await kv.lease_grant(60)
    await kv.put(b"a", b"1", lease=second)
    await kv.put(b"b", b"2", lease=second)
    before = await kv.revision()
    await kv.lease_revoke(second)
    assert await kv.get(b"a") is None and await kv.get(b"b") is None
    assert await kv.revision() == before + 1  # both keys went in one revision
    await kv.lease_revoke(second)  # idempotent
    assert await kv.revision() == before + 1


@check
async def lease_ttls_are_whole_seconds(kv: KV, wait: Wait) -> None:
    """etcd's TTL is an int64 of seconds, raised to the server's minimum (2 s by default); the
    granted TTL is what counts. Fractions, negatives and more than MaxLeaseTTL are refused."""
    short = await kv.lease_grant(1)
    assert await granted_ttl(kv, short) >= 1
    long = await kv.lease_grant(300)
    assert await granted_ttl(kv, long) == 300
    assert await kv.lease_keepalive(long) == 300
    for bad in (0.5, 2.25, -1, MAX_LEASE_TTL_S + 1):
        await expect_invalid(kv.lease_grant(bad))  # type: ignore[arg-type]
    assert await kv.lease_time_to_live(987_654) is None


@check
async def revoking_an_unknown_lease_is_a_no_op(kv: KV, wait: Wait) -> None:
    """The issue's contract (etcd itself answers ErrLeaseNotFound)."""
    before = await kv.revision()
    await kv.lease_revoke(424_242)
    assert await kv.revision() == before


@check
async def lease_guards_exclusive_ownership(kv: KV, wait: Wait) -> None:
    """The volume-lock pattern: create-if-absent with a lease; the next owner waits for expiry."""
    mine = await kv.lease_grant(1)
    ttl = await granted_ttl(kv, mine)
    owner = [Compare.absent(b"owner")]
    assert (await kv.txn(owner, [Put(b"owner", b"gw1", lease=mine)])).succeeded
    theirs = await kv.lease_grant(600)
    assert not (await kv.txn(owner, [Put(b"owner", b"gw2", lease=theirs)])).succeeded
    await wait(ttl + 1)
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
        await expect_invalid(call)
    for prefix, start in [(b"p", -1), ("p", 0), (b"k" * 5000, 0)]:
        try:
            async with kv.watch(prefix, start):  # type: ignore[arg-type]
                pass
        except InvalidArgument:
            continue
        raise AssertionError("expected InvalidArgument")
    assert await kv.range(b"\0", b"\0") == RangeResult([], False, await kv.revision())


# The watch checks live in a module of their own; importing it registers them in CHECKS.
from store.testing import kv_watch_conformance  # noqa: E402, F401

__all__ = ["CHECKS", "SHARED_CHECKS", "Check", "SharedCheck", "Wait", "batches_until", "next_batch"]
