"""The metadata interface: an ordered key-value store shaped after etcd v3.

Keys and values are bytes; keys order by unsigned bytes (memcmp), so a UTF-8 key order is a range
scan. Every successful write transaction bumps the store's **revision** by one; each key records the
revision that created it (``create_revision``), last modified it (``mod_revision``) and how many
times it was written since creation (``version``). Transactions compare first and then apply one
branch atomically, the way etcd's Txn does, which gives conditional writes and read-after-write
consistency to everything above.

**Leases** carry a TTL; keys put with a lease vanish when the lease expires or is revoked. They
give volume exclusivity and node liveness.

Backends: ``memory`` (tests), ``sqlite`` (the embedded default), and etcd (the cluster). One
conformance suite, ``store.testing.kv_conformance``, runs against each.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from store.errors import InvalidArgument

MAX_KEY_BYTES = 4096
MAX_VALUE_BYTES = 1 << 20  # etcd's default request limit is 1.5 MiB; keep values below it


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

    async def lease_grant(self, ttl_s: float) -> int:
        """A new lease id expiring ``ttl_s`` seconds from now unless kept alive."""
        ...

    async def lease_keepalive(self, lease: int) -> float:
        """Renew a lease for its full TTL; returns the TTL. NotFound if it already expired."""
        ...

    async def lease_revoke(self, lease: int) -> None:
        """End a lease now, deleting its keys. Revoking an unknown lease is not an error."""
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


def check_txn(compare: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op]) -> None:
    for cmp in compare:
        check_key(cmp.key)
    for op in (*success, *failure):
        check_op(op)


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
