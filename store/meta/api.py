"""The metadata interface: an ordered key-value store with etcd v3's semantics.

Keys and values are bytes; keys order by unsigned bytes (memcmp), so a UTF-8 key order is a range
scan. The store has one **revision** counter. A write that changes something moves it by exactly
one: a put always does (even of the value already there, as in etcd), a delete only when it
removes a key, a transaction only when one of its ops did; reads, compares that fail with an empty
``failure`` branch, lease grants and keep-alives never do. Each key records the revision that
created it (``create_revision``), last modified it (``mod_revision``) and how many times it was
written since creation (``version``). Transactions compare first and then apply one branch
atomically, the way etcd's Txn does, which gives conditional writes and read-after-write
consistency to everything above. As in etcd, a branch may hold at most ``MAX_TXN_OPS`` ops (and a
txn as many compares), and may not name a key twice for writing: two puts of one key, or a put of
a key that a delete of the same branch covers, are refused with InvalidArgument ("duplicate key
given in txn request"); overlapping deletes and reads are fine.

**Leases** carry a TTL in whole seconds; keys put with a lease vanish when the lease expires or is
revoked (one revision per lease, a delete event per key). A TTL below the backend's minimum
(``MIN_LEASE_TTL_S``, etcd's default) is raised to it: read the granted TTL back with
``lease_time_to_live``. They give volume exclusivity and node liveness.

**Watches** follow every change under a key prefix::

    read = await kv.range(prefix, prefix_end(prefix))          # state at read.revision
    async with kv.watch(prefix, read.revision + 1) as changes:  # every change after it
        async for batch in changes:                            # one WatchBatch per revision
            for event in batch.events: ...

``watch`` is an async context manager yielding a ``trio.abc.ReceiveChannel[WatchBatch]``. Batches
come in revision order, never skipping one that touched the prefix; a batch holds every event of
one revision (all the writes of one transaction) and nothing else. A delete event's ``kv`` has the
key, an empty value, zero create revision and version, and the delete's revision as
``mod_revision`` (etcd's tombstone). ``start_revision`` 0 means "after the current revision".

Backends keep a bounded history of revisions (``compact`` drops what is older, and each backend
compacts on its own past a configured retention). A watch whose next revision is older than the
history (it asked for it, or it read too slowly and the history moved past it) raises
``Compacted`` from ``receive``, carrying the oldest revision still available: the caller re-reads
the state and watches again from the read's revision + 1. Nothing is buffered per watcher beyond
one bounded read of the history, so a slow watcher costs no memory: it is compacted instead.

Backends: ``memory`` (tests), ``sqlite`` (the embedded default), and etcd (the cluster). One
conformance suite, ``store.testing.kv_conformance``, runs against each.

Where this contract differs from etcd: revoking an unknown lease is a no-op here (etcd answers
ErrLeaseNotFound; an etcd backend swallows it), and a negative or fractional TTL is refused
(etcd's TTL is an integer, and it clamps any value below its minimum, negatives included).
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Literal, Protocol

import trio

from store.errors import InvalidArgument, StoreError

MAX_KEY_BYTES = 4096
MAX_VALUE_BYTES = 1 << 20  # etcd's default request limit is 1.5 MiB; keep values below it
# etcd's default --max-txn-ops: the most compares, and the most ops in each branch, of one txn.
MAX_TXN_OPS = 128
# etcd grants at least ceil(1.5 * election timeout) seconds: ceil(1.5 * 1 s) = 2 s by default
# (server.go: minTTL = (3 * ElectionTicks / 2) * heartbeat, MinLeaseTTL = ceil(minTTL)).
MIN_LEASE_TTL_S = 2
MAX_LEASE_TTL_S = 9_000_000_000  # etcd's lease.MaxLeaseTTL; longer is ErrLeaseTTLTooLarge


class Compacted(StoreError):
    """The revisions a watch needs are no longer kept (etcd's ErrCompacted).

    ``compact_revision`` is the oldest revision a watch may still start from. The caller re-reads
    what it follows (a range gives the state and its revision R) and watches again from R + 1.
    """

    def __init__(self, compact_revision: int, message: str = "") -> None:
        default = f"required revision has been compacted (watches start at {compact_revision})"
        super().__init__(message or default)
        self.compact_revision = compact_revision


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: bytes
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    lease: int = 0


CompareTarget = Literal["value", "version", "create", "mod", "lease"]
CompareOp = Literal["=", "!=", "<", ">"]


@dataclass(frozen=True, slots=True)
class Compare:
    """A condition on one key. A missing key has version, create and mod revision 0, no value.

    ``Compare.absent(key)`` is ``version == 0``; comparing the value of a missing key is false
    (as in etcd).
    """

    key: bytes
    target: CompareTarget
    op: CompareOp
    operand: bytes | int

    @classmethod
    def absent(cls, key: bytes) -> Compare:
        return cls(key, "version", "=", 0)

    @classmethod
    def exists(cls, key: bytes) -> Compare:
        return cls(key, "version", ">", 0)

    @classmethod
    def value_is(cls, key: bytes, value: bytes) -> Compare:
        return cls(key, "value", "=", value)

    @classmethod
    def mod_is(cls, key: bytes, revision: int) -> Compare:
        return cls(key, "mod", "=", revision)


@dataclass(frozen=True, slots=True)
class Put:
    key: bytes
    value: bytes
    lease: int = 0


@dataclass(frozen=True, slots=True)
class Delete:
    """Delete ``key``, or every key in [key, end) when ``end`` is given."""

    key: bytes
    end: bytes | None = None


@dataclass(frozen=True, slots=True)
class Get:
    """A range read inside a transaction (see KV.range for the arguments)."""

    key: bytes
    end: bytes | None = None
    limit: int = 0


Op = Put | Delete | Get


@dataclass(frozen=True, slots=True)
class RangeResult:
    kvs: list[KeyValue]
    more: bool  # True when ``limit`` cut the result short
    revision: int


EventType = Literal["put", "delete"]


@dataclass(frozen=True, slots=True)
class Event:
    """One change to one key. For a delete, ``kv`` is etcd's tombstone: the key, an empty value,
    create revision, version and lease 0, and ``mod_revision`` the revision of the delete."""

    type: EventType
    kv: KeyValue


@dataclass(frozen=True, slots=True)
class WatchBatch:
    """Every event of one revision under the watched prefix, in the order the writes were made
    (a delete of a range: its keys in byte order)."""

    revision: int
    events: tuple[Event, ...]


@dataclass(frozen=True, slots=True)
class LeaseTTL:
    """A live lease: the TTL it was granted (whole seconds, at least the backend's minimum) and
    the whole seconds left before it expires unless kept alive."""

    id: int
    granted_ttl_s: int
    remaining_s: int


def tombstone(key: bytes, revision: int) -> KeyValue:
    """The ``kv`` of a delete event (what etcd's watch sends for a deleted key)."""
    return KeyValue(key, b"", 0, revision, 0, 0)


@dataclass(frozen=True, slots=True)
class TxnResult:
    succeeded: bool
    revision: int
    # One entry per op of the branch taken: RangeResult for Get, number deleted for Delete,
    # None for Put.
    responses: list[RangeResult | int | None] = field(default_factory=list)


class KV(Protocol):
    """What every metadata backend provides. All methods may raise store.errors.Unavailable."""

    async def get(self, key: bytes) -> KeyValue | None: ...

    async def range(
        self,
        key: bytes = b"",
        end: bytes | None = None,
        *,
        limit: int = 0,
        reverse: bool = False,
        keys_only: bool = False,
    ) -> RangeResult:
        """Keys in [key, end) in byte order (end=None: just ``key``; end=b"\\0": all keys >= key).

        ``limit`` > 0 caps the count; ``reverse`` returns the highest keys first.
        """
        ...

    async def put(self, key: bytes, value: bytes, *, lease: int = 0) -> int:
        """Write ``key``; returns the new revision."""
        ...

    async def delete(self, key: bytes, end: bytes | None = None) -> int:
        """Delete ``key`` (or [key, end)); returns how many keys went."""
        ...

    async def txn(
        self, compare: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op] = ()
    ) -> TxnResult:
        """If every compare holds apply ``success``, else ``failure``; atomically."""
        ...

    async def revision(self) -> int: ...

    def watch(
        self, prefix: bytes, start_revision: int
    ) -> AbstractAsyncContextManager[trio.abc.ReceiveChannel[WatchBatch]]:
        """Every change to keys starting with ``prefix`` (b"": all keys) from ``start_revision``
        on (0: after the current revision), one WatchBatch per revision, in order, never
        skipping one. ``receive`` raises Compacted when that history is gone (see the module
        docstring) and Unavailable once the store is closed; a watch never ends on its own."""
        ...

    async def compact(self, revision: int) -> None:
        """Drop the history before ``revision``: watches may then start at ``revision`` or later.
        Compacted if it was already compacted that far, InvalidArgument for a future revision
        (etcd's ErrCompacted and ErrFutureRev)."""
        ...

    async def lease_grant(self, ttl_s: int) -> int:
        """A new lease id expiring ``ttl_s`` whole seconds from now unless kept alive. A TTL
        below the backend's minimum is raised to it; a negative, fractional or too large one is
        InvalidArgument."""
        ...

    async def lease_keepalive(self, lease: int) -> int:
        """Renew a lease for its full TTL; returns the granted TTL. NotFound if it expired."""
        ...

    async def lease_time_to_live(self, lease: int) -> LeaseTTL | None:
        """A lease's granted and remaining TTL; None once it expired or was revoked."""
        ...

    async def lease_revoke(self, lease: int) -> None:
        """End a lease now, deleting its keys (one revision, if it had any). Revoking an unknown
        lease is not an error (etcd would answer ErrLeaseNotFound)."""
        ...

    async def aclose(self) -> None: ...


def prefix_end(prefix: bytes) -> bytes:
    """The smallest key greater than every key starting with ``prefix`` (etcd's range_end).

    >>> prefix_end(b"a/")
    b'a0'
    >>> prefix_end(b"a\\xff")
    b'b'
    >>> prefix_end(b"")
    b'\\x00'
    """
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return b"\0"  # every key
    return stripped[:-1] + bytes([stripped[-1] + 1])


def check_key(key: bytes) -> None:
    if not isinstance(key, bytes) or not key:
        raise InvalidArgument("metadata keys are non-empty bytes")
    if len(key) > MAX_KEY_BYTES:
        raise InvalidArgument(f"metadata key longer than {MAX_KEY_BYTES} bytes")


def check_value(value: bytes) -> None:
    if not isinstance(value, bytes | bytearray | memoryview):
        raise InvalidArgument("metadata values are bytes")
    if len(value) > MAX_VALUE_BYTES:
        raise InvalidArgument(f"metadata value larger than {MAX_VALUE_BYTES} bytes")


def check_op(op: Op) -> None:
    if isinstance(op, Put):
        check_key(op.key)
        check_value(op.value)
    elif isinstance(op, Delete | Get):
        check_range(op.key, op.end)
    else:
        raise InvalidArgument(f"not a transaction op: {op!r}")


def check_range(key: bytes, end: bytes | None) -> None:
    """Arguments of KV.range / KV.delete: ``key`` may be empty only as the start of a range."""
    if end is None or key:
        check_key(key)
    if end is not None and end != b"\0" and end <= key:
        raise InvalidArgument("range end must sort after its start")


def check_txn(
    compare: Sequence[Compare],
    success: Sequence[Op],
    failure: Sequence[Op],
    max_ops: int = MAX_TXN_OPS,
) -> None:
    """What etcd's Txn refuses before running anything (v3rpc/key.go: checkTxnRequest and
    checkIntervals): more than ``max_ops`` compares or ops in a branch, and a branch that
    writes one key twice.

    >>> check_txn([], [Put(b"a", b"1"), Delete(b"b"), Get(b"a")], [Put(b"a", b"2")])
    >>> check_txn([], [Put(b"a", b"1"), Put(b"a", b"2")], [])
    Traceback (most recent call last):
    store.errors.InvalidArgument: duplicate key given in txn request: b'a'
    >>> check_txn([], [Delete(b"a", b"c"), Put(b"b", b"1")], [])
    Traceback (most recent call last):
    store.errors.InvalidArgument: duplicate key given in txn request: b'b'
    """
    if max(len(compare), len(success), len(failure)) > max_ops:
        raise InvalidArgument(f"too many operations in txn request (at most {max_ops})")
    for cmp in compare:
        check_key(cmp.key)
    for op in (*success, *failure):
        check_op(op)
    check_branch_keys(success)
    check_branch_keys(failure)


def check_branch_keys(ops: Sequence[Op]) -> None:
    """Refuse a branch that puts a key twice or puts a key one of its deletes covers (in either
    order): etcd's "duplicate key given in txn request". Deletes may overlap each other."""
    puts: set[bytes] = set()
    deletes = [op for op in ops if isinstance(op, Delete)]
    for op in ops:
        if not isinstance(op, Put):
            continue
        key = bytes(op.key)
        if key in puts or any(_covers(d, key) for d in deletes):
            raise InvalidArgument(f"duplicate key given in txn request: {key!r}")
        puts.add(key)


def _covers(delete: Delete, key: bytes) -> bool:
    if delete.end is None:
        return key == delete.key
    return delete.key <= key and (delete.end == b"\0" or key < delete.end)


def check_lease_ttl(ttl_s: float, min_ttl_s: int) -> int:
    """The TTL a lease is granted for a request of ``ttl_s`` (whole seconds, at least the
    minimum).

    >>> [check_lease_ttl(ttl, 2) for ttl in (15, 15.0, 1, 0)]
    [15, 15, 2, 2]
    >>> check_lease_ttl(0.5, 2)
    Traceback (most recent call last):
    store.errors.InvalidArgument: lease TTLs are whole seconds, not 0.5
    """
    if isinstance(ttl_s, bool) or not isinstance(ttl_s, int | float):
        raise InvalidArgument(f"lease TTLs are whole seconds, not {ttl_s!r}")
    if isinstance(ttl_s, float) and not (math.isfinite(ttl_s) and ttl_s.is_integer()):
        raise InvalidArgument(f"lease TTLs are whole seconds, not {ttl_s!r}")
    ttl = int(ttl_s)
    if ttl < 0:
        raise InvalidArgument(f"lease TTL must not be negative ({ttl})")
    if ttl > MAX_LEASE_TTL_S:
        raise InvalidArgument(f"lease TTL larger than {MAX_LEASE_TTL_S} s")
    return max(ttl, min_ttl_s)


def check_watch(prefix: bytes, start_revision: int) -> None:
    if not isinstance(prefix, bytes) or len(prefix) > MAX_KEY_BYTES:
        raise InvalidArgument(f"a watch prefix is bytes of at most {MAX_KEY_BYTES}")
    if isinstance(start_revision, bool) or not isinstance(start_revision, int):
        raise InvalidArgument("a watch start revision is an int")
    if start_revision < 0:
        raise InvalidArgument("a watch start revision is 0 (now) or a revision")


def compare_holds(cmp: Compare, kv: KeyValue | None) -> bool:
    """Evaluate one compare against the key's current state (shared by every backend)."""
    if cmp.target == "value":
        if kv is None:
            return False
        actual: bytes | int = kv.value
    elif cmp.target == "version":
        actual = kv.version if kv else 0
    elif cmp.target == "create":
        actual = kv.create_revision if kv else 0
    elif cmp.target == "mod":
        actual = kv.mod_revision if kv else 0
    elif cmp.target == "lease":
        actual = kv.lease if kv else 0
    else:
        raise InvalidArgument(f"unknown compare target {cmp.target!r}")
    if type(actual) is not type(cmp.operand) and not (
        isinstance(actual, bytes) and isinstance(cmp.operand, bytes | bytearray)
    ):
        raise InvalidArgument(f"compare on {cmp.target} needs a {type(actual).__name__}")
    if cmp.op == "=":
        return actual == cmp.operand
    if cmp.op == "!=":
        return actual != cmp.operand
    if cmp.op == "<":
        return actual < cmp.operand  # type: ignore[operator]
    if cmp.op == ">":
        return actual > cmp.operand  # type: ignore[operator]
    raise InvalidArgument(f"unknown compare operator {cmp.op!r}")


async def scan_prefix(
    kv: KV, prefix: bytes, *, keys_only: bool = False, page_size: int = 1000
) -> AsyncIterator[KeyValue]:
    """Every key under ``prefix``, in order, read ``page_size`` at a time (each page its own
    read: a long scan never holds one snapshot)."""
    start, end = prefix, prefix_end(prefix)
    while True:
        page = await kv.range(start, end, limit=page_size, keys_only=keys_only)
        for item in page.kvs:
            yield item
        if not page.more:
            return
        start = page.kvs[-1].key + b"\0"
